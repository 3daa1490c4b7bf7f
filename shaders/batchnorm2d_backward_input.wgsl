// BatchNorm2d backward, step 3 of 3: the input gradient. With batch statistics it flows through
// them: dinp = weight*invstd * (dout - sum dout / M - xhat * sum(dout*xhat) / M); with the running
// statistics (eval mode) they are constants: dinp = dout * weight * invstd. weight is 1 when
// affine = 0.
// inp, dout, dinp: (N, C, HW), dinp overwritten; mean, stat, weight: (C,); sums: (2, C).
// Dispatch: one invocation per element; ceil(N*C*HW / 256) workgroups of 256 (2-D grid).
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
    _pad0: u32,
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> stat: array<f32>;
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
    let c = (i / p.HW) % p.C;
    var scale = stat[c];
    if (p.batch_stats == 0u) {
        scale = 1.0 / sqrt(stat[c] + p.eps);
    }
    if (p.affine == 1u) {
        scale *= weight[c];
    }
    if (p.batch_stats == 0u) {
        dinp[i] = dout[i] * scale;
        return;
    }
    let M = f32(p.N * p.HW);
    let xhat = (inp[i] - mean[c]) * stat[c];
    dinp[i] = scale * (dout[i] - sums[c] / M - xhat * (sums[p.C + c] / M));
}
