// LogSoftmax backward: dinp[n, c, s] = dout[n, c, s] - exp(out[n, c, s]) * sum_c dout[n, c, s].
// out (the forward's output), dout, dinp: (N, C, S) f32; dinp is overwritten.
// Dispatch: one workgroup of 64 per row (n, s), N * S workgroups (2-D grid past 65,535).
struct Params {
    rows: u32,
    C: u32,
    S: u32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = wid.x + wid.y * nwg.x;
    let valid = row < p.rows;
    let r = min(row, p.rows - 1u);
    let base = (r / p.S) * p.C * p.S + r % p.S;

    var acc = 0.0;
    for (var c = li; c < p.C; c += WG) {
        acc += dout[base + c * p.S];
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
            dinp[i] = dout[i] - exp(out[i]) * total;
        }
    }
}
