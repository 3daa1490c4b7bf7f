// ReLU: out = max(x, 0), with NaN passed through as PyTorch does.
// inp, out: (n,) f32; out is overwritten.
// Dispatch: one invocation per element; ceil(n / 256) workgroups of 256 (2-D grid).
struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let x = inp[i];
    // NaN passes through. Tested on the bits: GL compilers may fold `x < 0 ? 0 : x` into max(x, 0),
    // which gives 0 for NaN.
    let nan = (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
    out[i] = select(select(x, 0.0, x < 0.0), x, nan);
}
