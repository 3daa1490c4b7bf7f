// Bias gradient of Conv2d and Linear: dbias[c] = sum_{n, s} dout[n, c, s].
// dout: (N, C, S) with S = OH*OW for Conv2d and 1 for Linear; dbias: (C,), overwritten.
// Dispatch: one workgroup of 256 per channel (2-D grid past 65,535); the invocations stride over
// (n, s) and combine as a tree in workgroup memory.
struct Params {
    N: u32,
    C: u32,
    S: u32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let c = wid.x + wid.y * nwg.x;
    let cc = min(c, p.C - 1u);
    var acc = 0.0;
    for (var i = li; i < p.N * p.S; i += WG) {
        acc += dout[((i / p.S) * p.C + cc) * p.S + i % p.S];
    }
    part[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u && c < p.C) {
        dbias[c] = part[0];
    }
}
