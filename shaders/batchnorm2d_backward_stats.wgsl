// BatchNorm2d backward, step 1 of 3: per channel and chunk (as in batchnorm2d_forward_stats), the
// sums of dout and of dout * xhat, xhat = (x - mean) * invstd; each invocation sums per_thread
// values (LANES at a time, as in batchnorm2d_forward_stats), then the workgroup adds its 256
// partials as a tree.
// inp, dout: (N, C, HW); mean, stat: (C,) as in batchnorm2d_forward.wgsl; partials: (C, chunks, 2)
// [sum dout, sum dout*xhat], overwritten.
// Dispatch: one workgroup of 256 per (channel, chunk): C*chunks workgroups (2-D grid). The
// `_per_channel` variant (PER_CHANNEL true, crate::shaders::PER_CHANNEL; CPU adapters:
// ops::batchnorm2d::per_channel) takes one invocation per (channel, chunk) instead, the first PC of
// each workgroup's (ceil(C*chunks / PC) workgroups), each summing its chunk's values in blocks: no
// workgroup memory and no barrier, where lavapipe switches between all of a workgroup's
// invocations at each barrier (bias_backward.wgsl).
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
// One invocation per (channel, chunk) (the `_per_channel` variant), PC of them a workgroup: one
// SIMD group of lavapipe's 8 lanes (crate::shaders::PER_CHANNEL_WORKGROUP).
const PER_CHANNEL: bool = false;
const PC: u32 = 8u;
// Loads per block of the `_per_channel` variant's sums.
const BLOCK: u32 = 16u;

// The type of inp and dout's elements: f32, or four of them in the `_vec4` variant
// (crate::shaders::VEC4), which ops::batchnorm2d takes where the planes are runs of vec4s (HW a
// multiple of 4) on CPU adapters, per_thread then a multiple of 4: LANES values a load. CPU
// adapters take the `_per_channel` form; the workgroup form, which only GPUs take (LANES = 1), is
// written for LANES values a load because the `_vec4` family covers the whole file.
alias elem = f32;
const LANES: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<elem>;
@group(0) @binding(2) var<storage, read> dout: array<elem>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> stat: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

var<workgroup> wdy: array<f32, WG>;
var<workgroup> wdyx: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let M = p.N * p.HW;
    if (PER_CHANNEL) {
        let u = g * PC + li;
        if (li < PC && u < p.C * p.chunks) {
            let c = u / p.chunks;
            var invstd = stat[c];
            if (p.batch_stats == 0u) {
                invstd = 1.0 / sqrt(stat[c] + p.eps);
            }
            let mu = mean[c];
            // The chunk's values m in [start, end), LANES a load, walked as (image, position)
            // without a division per value; blocks of BLOCK loads summed apart, then added.
            let start = (u % p.chunks) * WG * p.per_thread;
            let end = min(start + WG * p.per_thread, M);
            var img = start / p.HW;
            var pos = start % p.HW;
            var sdy = 0.0;
            var sdyx = 0.0;
            for (var m0 = start; m0 < end; m0 += BLOCK * LANES) {
                var bdy = vec4<f32>(0.0);
                var bdyx = vec4<f32>(0.0);
                for (var m = m0; m < min(m0 + BLOCK * LANES, end); m += LANES) {
                    let at = ((img * p.C + c) * p.HW + pos) / LANES;
                    let dy = vec4<f32>(dout[at]);
                    bdy += dy;
                    bdyx += dy * (vec4<f32>(inp[at]) - mu) * invstd;
                    pos += LANES;
                    let wrap = pos >= p.HW;
                    pos = select(pos, 0u, wrap);
                    img += select(0u, 1u, wrap);
                }
                // The loads' LANES values (a scalar made a vec4 repeats it; only its first is used).
                for (var e = 0u; e < LANES; e++) {
                    sdy += bdy[e];
                    sdyx += bdyx[e];
                }
            }
            partials[u * 2u] = sdy;
            partials[u * 2u + 1u] = sdyx;
        }
        return;
    }
    if (g >= p.C * p.chunks) {
        return;
    }
    let c = g / p.chunks;
    let k = g % p.chunks;
    var invstd = stat[c];
    if (p.batch_stats == 0u) {
        invstd = 1.0 / sqrt(stat[c] + p.eps);
    }
    let mu = mean[c];
    let start = k * WG * p.per_thread;
    var sdy = 0.0;
    var sdyx = 0.0;
    // m = start + (j * WG + li) * LANES, walked as (image, position) = (m / HW, m % HW) without a
    // division per value (CPU adapters run integer division lane by lane).
    let step = WG * LANES;
    var m = start + li * LANES;
    var img = m / p.HW;
    var pos = m % p.HW;
    for (var j = 0u; j < p.per_thread / LANES; j++) {
        if (m < M) {
            let at = ((img * p.C + c) * p.HW + pos) / LANES;
            // The loads' LANES values (a scalar made a vec4 repeats it; only its first is used).
            let dy = vec4<f32>(dout[at]);
            let x = vec4<f32>(inp[at]);
            for (var e = 0u; e < LANES; e++) {
                sdy += dy[e];
                sdyx += dy[e] * (x[e] - mu) * invstd;
            }
        }
        m += step;
        pos += step % p.HW;
        let wrap = pos >= p.HW;
        pos = select(pos, pos - p.HW, wrap);
        img += step / p.HW + select(0u, 1u, wrap);
    }
    wdy[li] = sdy;
    wdyx[li] = sdyx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            wdy[li] += wdy[li + s];
            wdyx[li] += wdyx[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        partials[g * 2u] = wdy[0];
        partials[g * 2u + 1u] = wdyx[0];
    }
}
