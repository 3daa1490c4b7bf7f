// LogSoftmax over dim 1: out[n, c, s] = (inp[n, c, s] - max) - log(sum_c exp(inp[n, c, s] - max)),
// in that order (as PyTorch: subtracting max + log(sum) from x instead loses digits of small values).
// inp, out: (N, C, S) f32 with S = d1 * d2 * ...; out is overwritten.
// Dispatch: one workgroup of 64 per row (n, s), N * S workgroups (2-D grid past 65,535); the
// invocations stride over C and combine max and sum as trees in workgroup memory.
struct Params {
    rows: u32,
    C: u32,
    S: u32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, WG>;

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
    part[li] = se;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    let ls = log(part[0]);
    if (valid) {
        for (var c = li; c < p.C; c += WG) {
            out[base + c * p.S] = (inp[base + c * p.S] - mx) - ls;
        }
    }
}
