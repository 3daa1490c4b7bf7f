// BatchNorm2d, train mode, step 2 of 3: per channel, merges its chunks' (count, mean, M2) in chunk
// order (Chan et al.), saves mean and invstd = 1/sqrt(M2/M + eps) for the normalisation and the
// backward, and (update_running) updates the running statistics as PyTorch does:
// running_mean = momentum*mean + (1-momentum)*running_mean, running_var likewise with the unbiased
// variance M2/(M-1).
// partials: (C, chunks, 3); mean, invstd: (C,), overwritten; running_mean, running_var: (C,),
// updated in place (placeholders when update_running = 0).
// Dispatch: one invocation per channel; ceil(C / 64) workgroups of 64.
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
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> invstd_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.C) {
        return;
    }
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let at = (c * p.chunks + k) * 3u;
        let nb = partials[at];
        let nt = n + nb;
        if (nt > 0.0) {
            let d = partials[at + 1u] - mean;
            mean += d * nb / nt;
            m2 += partials[at + 2u] + d * d * n * nb / nt;
            n = nt;
        }
    }
    mean_out[c] = mean;
    invstd_out[c] = 1.0 / sqrt(m2 / n + p.eps);
    if (p.update_running == 1u) {
        running_mean[c] = p.momentum * mean + (1.0 - p.momentum) * running_mean[c];
        running_var[c] = p.momentum * (m2 / (n - 1.0)) + (1.0 - p.momentum) * running_var[c];
    }
}
