// GroupNorm's input gradient: with xhat = (x - mean[g]) * rstd[g], dxhat = dout * weight[c] (dout
// without affine parameters, p.affine 0: weight is then not read) and the group's sums
// (group_norm_backward_stats) over its M = C/G * HW values:
// dinp[i] = rstd[g] * (dxhat - sums[2g] / M - xhat * sums[2g + 1] / M).
// inp, dout, dinp: (N, C, HW) f32; dinp is overwritten. mean, rstd: (N * G). weight: (C,).
// sums: (N * G, 2).
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
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> dinp: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.N * p.C * p.HW) {
        return;
    }
    let m = p.C / p.G * p.HW;
    let g = i / m;
    var d = dout[i];
    if (p.affine != 0u) {
        d *= weight[(i / p.HW) % p.C];
    }
    let r = rstd[g];
    let xhat = (inp[i] - mean[g]) * r;
    dinp[i] = r * (d - sums[2u * g] / f32(m) - xhat * (sums[2u * g + 1u] / f32(m)));
}
