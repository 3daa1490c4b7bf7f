// MSELoss backward: dinp = 2 (inp - tgt) * dout.
// inp, tgt: (n,) f32
// dout: reduction 'none' (0) -> (n,) f32; 'sum'/'mean' -> (1,) f32, scaled by p.scale (1 or 1/n)
// dinp: (n,) f32 (overwritten)
// Dispatch: ceil(n / 256) workgroups of 256 (2-D grid past 65,535), one element per invocation.
struct Params {
    n: u32,
    reduction: u32,
    scale: f32,
    _pad: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    var g: f32;
    if (p.reduction == 0u) {
        g = dout[i];
    } else {
        g = dout[0] * p.scale;
    }
    dinp[i] = 2.0 * (inp[i] - tgt[i]) * g;
}
