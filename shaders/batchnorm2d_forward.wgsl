// BatchNorm2d, the normalisation: out = (x - mean[c]) * invstd[c] * weight[c] + bias[c] (without
// weight and bias when affine = 0). With batch_stats = 1, mean and stat are the batch's mean and
// invstd (from batchnorm2d_forward_finalize); else (eval mode) the running mean and variance, and
// invstd = 1/sqrt(running_var + eps).
// inp, out: (N, C, HW), out overwritten; mean, stat, weight, bias: (C,) (weight and bias are
// placeholders when affine = 0).
// Dispatch: one invocation per run of per_invocation consecutive elements of one plane (HW is a
// multiple of it; CPU adapters take up to 64, so that each run gathers its channel's values once);
// ceil(N*C*HW / (256*per_invocation)) workgroups of 256 (2-D grid).
struct Params {
    N: u32,
    C: u32,
    HW: u32,
    chunks: u32,
    per_thread: u32,
    batch_stats: u32,
    update_running: u32,
    affine: u32,
    eps: f32,
    momentum: f32,
    per_invocation: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

// The type of inp and out's elements: f32, or four of them in the `_vec4` variant
// (crate::shaders::VEC4), which ops::batchnorm2d takes where per_invocation is a multiple of 4:
// LANES elements a load.
alias elem = f32;
const LANES: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<elem>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> stat: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i0 = ((wid.x + wid.y * nwg.x) * WG + li) * p.per_invocation;
    if (i0 >= p.N * p.C * p.HW) {
        return;
    }
    let c = (i0 / p.HW) % p.C;
    var invstd = stat[c];
    if (p.batch_stats == 0u) {
        invstd = 1.0 / sqrt(stat[c] + p.eps);
    }
    let m = mean[c];
    var w = 1.0;
    var b = 0.0;
    if (p.affine == 1u) {
        w = weight[c];
        b = bias[c];
    }
    for (var u = i0 / LANES; u < (i0 + p.per_invocation) / LANES; u++) {
        var y = (inp[u] - m) * invstd;
        if (p.affine == 1u) {
            y = y * w + b;
        }
        out[u] = y;
    }
}
