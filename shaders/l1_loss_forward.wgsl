// L1Loss: |inp - tgt| per element.
// inp, tgt: (n,) f32
// out: reduction 'none' (0) -> (n,) f32 losses; 'sum'/'mean' -> (n,) vec2 pairs (loss, 1) stored
//      flat as 2n floats, which reduce_sum then reduces (overwritten)
// Dispatch: ceil(n / 256) workgroups of 256 (2-D grid past 65,535), one element per invocation.
struct Params {
    n: u32,
    reduction: u32,
    _pad0: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let l = abs(inp[i] - tgt[i]);
    if (p.reduction == 0u) {
        out[i] = l;
    } else {
        out[2u * i] = l;
        out[2u * i + 1u] = 1.0;
    }
}
