// CrossEntropyLoss per row (n, s) = LogSoftmax over dim 1 + NLLLoss, with label smoothing eps:
//   class targets t: loss = (1 - eps) * (-w[t] * logp[t]) + eps / C * (-sum_c w[c] * logp[c]),
//                    0 (weight 0) where t == ignore_index; pair weight w[t]
//   probability targets q: loss = -sum_c w[c] * ((1 - eps) * q[c] + eps / C) * logp[c]; pair weight 1
// inp: (N, C, S) f32 logits; tgt: (N, S) i32 classes or (N, C, S) f32 probabilities, as raw words;
// weight: (C,) f32; logp: (N, C, S) f32 log-probabilities for the backward (overwritten);
// out: 'none' (0) -> (N, S) losses; 'sum'/'mean' -> (N * S,) pairs (loss, weight) stored flat.
// Dispatch: one workgroup of 64 per row, N * S workgroups (2-D grid past 65,535); the invocations
// stride over C and combine max, sum of exponentials and the weighted sum as trees.
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
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> logp: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, WG>;

fn tree_sum(li: u32, v: f32) -> f32 {
    part[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = wid.x + wid.y * nwg.x;
    let valid = row < p.rows;
    let r = min(row, p.rows - 1u);
    let base = (r / p.S) * p.C * p.S + r % p.S;

    // The lowest finite f32, not -inf: WGSL has no infinite constant (Chromium's compiler refuses
    // bitcast<f32>(0xff800000u)). Rows of finite logits give the same maximum either way.
    var m = -0x1.fffffep+127f;
    for (var c = li; c < p.C; c += WG) {
        m = max(m, inp[base + c * p.S]);
    }
    part[li] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] = max(part[li], part[li + s]);
        }
        workgroupBarrier();
    }
    let mx = part[0];
    workgroupBarrier();

    var se = 0.0;
    for (var c = li; c < p.C; c += WG) {
        se += exp(inp[base + c * p.S] - mx);
    }
    // log-probabilities as (x - max) - log(sum exp(x - max)), in that order, as log_softmax_forward.
    let ls = log(tree_sum(li, se));

    let eps = p.smoothing;
    let uniform_q = eps / f32(p.C);
    var acc = 0.0;
    for (var c = li; c < p.C; c += WG) {
        let i = base + c * p.S;
        let lp = (inp[i] - mx) - ls;
        if (valid) {
            logp[i] = lp;
        }
        if (p.prob_targets == 1u) {
            acc += weight[c] * ((1.0 - eps) * bitcast<f32>(tgt[i]) + uniform_q) * lp;
        } else {
            acc += weight[c] * lp;
        }
    }
    let wsum = tree_sum(li, acc);

    if (valid && li == 0u) {
        var l = 0.0;
        var w = 1.0;
        if (p.prob_targets == 1u) {
            l = -wsum;
        } else {
            let t = bitcast<i32>(tgt[r]);
            if (t == p.ignore_index) {
                w = 0.0;
            } else {
                let tc = u32(clamp(t, 0, i32(p.C) - 1));
                w = weight[tc];
                l = (1.0 - eps) * (-w * ((inp[base + tc * p.S] - mx) - ls)) - uniform_q * wsum;
            }
        }
        if (p.reduction == 0u) {
            out[r] = l;
        } else {
            out[2u * r] = l;
            out[2u * r + 1u] = w;
        }
    }
}
