// Add (out = a + b), elementwise: the residual merge, and the sum of a value's gradient
// contributions where it feeds several nodes. Add's backward is no kernel: both inputs' gradients
// are the output's.
// a, b, out: (n,) f32; out is overwritten (and never bound as a or b).
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
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    out[i] = a[i] + b[i];
}
