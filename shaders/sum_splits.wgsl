// Adds the partial results of a kernel whose reduction was split (Conv2d's forward and both
// backward products, Linear's matmul) in a fixed order: deterministic, no atomics.
// out[i] = sum_s part[s * M + i].
// part: (splits, M) f32; out: (M,) f32, overwritten.
// Dispatch: one invocation per output element; ceil(M / 256) workgroups of 256 (2-D grid).
struct Params {
    M: u32,
    splits: u32,
    _pad0: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.M) {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        acc += part[s * p.M + i];
    }
    out[i] = acc;
}
