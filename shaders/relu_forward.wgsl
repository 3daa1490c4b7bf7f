// ReLU: out = max(x, 0), with NaN passed through as PyTorch does.
// inp, out: (n,) f32; out is overwritten.
// Dispatch: one invocation per element; ceil(n / 256) workgroups of 256 (2-D grid).
struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + li;
    if (i >= p.n) {
        return;
    }
    let x = inp[i];
    out[i] = select(x, 0.0, x < 0.0);
}
