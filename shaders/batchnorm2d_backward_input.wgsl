// BatchNorm2d backward, step 3 of 3: the input gradient. With batch statistics it flows through
// them: dinp = weight*invstd * (dout - sum dout / M - xhat * sum(dout*xhat) / M); with the running
// statistics (eval mode) they are constants: dinp = dout * weight * invstd. weight is 1 when
// affine = 0.
// inp, dout, dinp: (N, C, HW), dinp overwritten; mean, stat, weight: (C,); sums: (2, C).
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

// The type of inp, dout and dinp's elements: f32, or four of them in the `_vec4` variant
// (crate::shaders::VEC4), which ops::batchnorm2d takes where per_invocation is a multiple of 4:
// LANES elements a load.
alias elem = f32;
const LANES: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<elem>;
@group(0) @binding(2) var<storage, read> dout: array<elem>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> stat: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> dinp: array<elem>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i0 = ((wid.x + wid.y * nwg.x) * WG + li) * p.per_invocation;
    if (i0 >= p.N * p.C * p.HW) {
        return;
    }
    let c = (i0 / p.HW) % p.C;
    var scale = stat[c];
    if (p.batch_stats == 0u) {
        scale = 1.0 / sqrt(stat[c] + p.eps);
    }
    if (p.affine == 1u) {
        scale *= weight[c];
    }
    let end = (i0 + p.per_invocation) / LANES;
    if (p.batch_stats == 0u) {
        for (var u = i0 / LANES; u < end; u++) {
            dinp[u] = dout[u] * scale;
        }
        return;
    }
    let M = f32(p.N * p.HW);
    let m = mean[c];
    let invstd = stat[c];
    let mdy = sums[c] / M;
    let mdyx = sums[p.C + c] / M;
    for (var u = i0 / LANES; u < end; u++) {
        let xhat = (inp[u] - m) * invstd;
        dinp[u] = scale * (dout[u] - mdy - xhat * mdyx);
    }
}
