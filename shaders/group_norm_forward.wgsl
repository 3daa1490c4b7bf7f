// GroupNorm's normalisation: out[i] = (inp[i] - mean[g]) * rstd[g] * weight[c] + bias[c], for
// element i of channel c in group g = i / (C/G * HW) (image and group); without affine
// parameters (p.affine 0) weight is not read, and bias neither without a bias (p.bias 0): they are
// then bound to other buffers.
// inp, out: (N, C, HW) f32; out is overwritten. mean, rstd: (N * G) (group_norm_forward_stats).
// weight, bias: (C,).
// Dispatch: one invocation per element; ceil(N * C * HW / 256) workgroups of 256 (2-D grid).
struct Params {
    N: u32,
    C: u32,
    G: u32,
    HW: u32,
    eps: f32,
    affine: u32,
    bias: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.N * p.C * p.HW) {
        return;
    }
    let g = i / (p.C / p.G * p.HW);
    var y = (inp[i] - mean[g]) * rstd[g];
    let c = (i / p.HW) % p.C;
    if (p.affine != 0u) {
        y *= weight[c];
    }
    if (p.bias != 0u) {
        y += bias[c];
    }
    out[i] = y;
}
