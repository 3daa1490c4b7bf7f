// CrossEntropyLoss backward w.r.t. the logits, per row (n, s):
//   dlogp[c] = -g * ((1 - eps) * w[t] * [c == t] + eps / C * w[c])   (class targets; 0 if ignored)
//   dlogp[c] = -g * w[c] * ((1 - eps) * q[c] + eps / C)               (probability targets)
//   dinp[c]  = dlogp[c] - exp(logp[c]) * sum_c dlogp[c]
// with g = dout[n, s] ('none'), dout[0] ('sum') or dout[0] / total weight ('mean', stats[0].y).
// logp: (N, C, S) f32 from the forward; tgt: raw words as in the forward; weight: (C,) f32;
// dout: (N, S) or (1,) f32; stats: (1,) vec2; dinp: (N, C, S) f32 (overwritten).
// Dispatch: one workgroup of 64 per row, N * S workgroups (2-D grid past 65,535).
struct Params {
    rows: u32,
    C: u32,
    S: u32,
    reduction: u32,
    ignore_index: i32,
    smoothing: f32,
    prob_targets: u32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logp: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dinp: array<f32>;

var<workgroup> part: array<f32, WG>;

fn dlogp(c: u32, i: u32, g: f32, t: i32) -> f32 {
    let eps = p.smoothing;
    let uniform_q = eps / f32(p.C);
    if (p.prob_targets == 1u) {
        return -g * weight[c] * ((1.0 - eps) * bitcast<f32>(tgt[i]) + uniform_q);
    }
    if (t == p.ignore_index) {
        return 0.0;
    }
    var v = uniform_q * weight[c];
    if (u32(t) == c) {
        v += (1.0 - eps) * weight[c];
    }
    return -g * v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = wid.x + wid.y * nwg.x;
    let valid = row < p.rows;
    let r = min(row, p.rows - 1u);
    let base = (r / p.S) * p.C * p.S + r % p.S;

    var g: f32;
    if (p.reduction == 0u) {
        g = dout[r];
    } else if (p.reduction == 1u) {
        g = dout[0];
    } else {
        g = dout[0] / stats[0].y;
    }
    var t = 0;
    if (p.prob_targets == 0u) {
        t = bitcast<i32>(tgt[r]);
    }

    var acc = 0.0;
    for (var c = li; c < p.C; c += WG) {
        acc += dlogp(c, base + c * p.S, g, t);
    }
    part[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    let total = part[0];
    if (valid) {
        for (var c = li; c < p.C; c += WG) {
            let i = base + c * p.S;
            dinp[i] = dlogp(c, i, g, t) - exp(logp[i]) * total;
        }
    }
}
