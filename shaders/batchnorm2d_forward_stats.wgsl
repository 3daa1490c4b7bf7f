// BatchNorm2d, train mode, step 1 of 3: per channel and chunk of its M = N*HW values, the count,
// mean and sum of squared deviations (M2). Each invocation runs Welford over per_thread values
// (LANES at a time, strided by 256 * LANES, so neighbours read neighbours), then the workgroup
// merges its 256 partials as a tree (Chan et al.): accurate at any batch size, no long f32 sums.
// inp: (N, C, HW); partials: (C, chunks, 3) [count, mean, M2], overwritten.
// Dispatch: one workgroup of 256 per (channel, chunk): C*chunks workgroups (2-D grid); chunk k of
// channel c covers m in [k*256*per_thread, (k+1)*256*per_thread) where m = n*HW + s. The
// `_per_channel` variant (PER_CHANNEL true, crate::shaders::PER_CHANNEL; CPU adapters:
// ops::batchnorm2d::per_channel) takes one invocation per (channel, chunk) instead, the first PC of
// each workgroup's (ceil(C*chunks / PC) workgroups): no workgroup memory and no barrier, where
// lavapipe switches between all of a workgroup's invocations at each barrier (bias_backward.wgsl).
// It takes its chunk in blocks of BLOCK loads, each block's sums of x - shift and their squares
// (shift: the mean so far, at first the chunk's first value, so that they cancel little) merged
// into the running (count, mean, M2) as the tree merges two partials.
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
// Loads per block of the `_per_channel` variant.
const BLOCK: u32 = 16u;

// The type of inp's elements: f32, or four of them in the `_vec4` variant
// (crate::shaders::VEC4), which ops::batchnorm2d takes where the planes are runs of vec4s (HW a
// multiple of 4) on CPU adapters, per_thread then a multiple of 4: LANES values a load. CPU
// adapters take the `_per_channel` form; the workgroup form, which only GPUs take (LANES = 1), is
// written for LANES values a load because the `_vec4` family covers the whole file.
alias elem = f32;
const LANES: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<elem>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

var<workgroup> wn: array<f32, WG>;
var<workgroup> wmean: array<f32, WG>;
var<workgroup> wm2: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let M = p.N * p.HW;
    if (PER_CHANNEL) {
        let u = g * PC + li;
        if (li < PC && u < p.C * p.chunks) {
            let c = u / p.chunks;
            // The chunk's values m in [start, end), LANES a load, walked as (image, position)
            // without a division per value.
            let start = (u % p.chunks) * WG * p.per_thread;
            let end = min(start + WG * p.per_thread, M);
            var img = start / p.HW;
            var pos = start % p.HW;
            var n = 0.0;
            var mean = vec4<f32>(inp[((img * p.C + c) * p.HW + pos) / LANES]).x;
            var m2 = 0.0;
            for (var m0 = start; m0 < end; m0 += BLOCK * LANES) {
                let shift = mean;
                var s1 = vec4<f32>(0.0);
                var s2 = vec4<f32>(0.0);
                for (var m = m0; m < min(m0 + BLOCK * LANES, end); m += LANES) {
                    let d = vec4<f32>(inp[((img * p.C + c) * p.HW + pos) / LANES]) - shift;
                    s1 += d;
                    s2 += d * d;
                    pos += LANES;
                    let wrap = pos >= p.HW;
                    pos = select(pos, 0u, wrap);
                    img += select(0u, 1u, wrap);
                }
                // The loads' LANES values (a scalar made a vec4 repeats it; only its first is used).
                var t1 = 0.0;
                var t2 = 0.0;
                for (var e = 0u; e < LANES; e++) {
                    t1 += s1[e];
                    t2 += s2[e];
                }
                let nb = f32(min(m0 + BLOCK * LANES, end) - m0);
                let nt = n + nb;
                // The block's mean shift + t1 / nb and M2 t2 - t1^2 / nb, merged with the chunk's so far.
                let d = shift + t1 / nb - mean;
                mean += d * nb / nt;
                m2 += t2 - t1 * t1 / nb + d * d * n * nb / nt;
                n = nt;
            }
            partials[u * 3u] = n;
            partials[u * 3u + 1u] = mean;
            partials[u * 3u + 2u] = m2;
        }
        return;
    }
    if (g >= p.C * p.chunks) {
        return;
    }
    let c = g / p.chunks;
    let k = g % p.chunks;
    let start = k * WG * p.per_thread;
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    // m = start + (j * WG + li) * LANES, walked as (image, position) = (m / HW, m % HW) without a
    // division per value (CPU adapters run integer division lane by lane).
    let step = WG * LANES;
    var m = start + li * LANES;
    var img = m / p.HW;
    var pos = m % p.HW;
    for (var j = 0u; j < p.per_thread / LANES; j++) {
        if (m < M) {
            // The load's LANES values (a scalar made a vec4 repeats it; only its first is used).
            let v = vec4<f32>(inp[((img * p.C + c) * p.HW + pos) / LANES]);
            for (var e = 0u; e < LANES; e++) {
                let x = v[e];
                n += 1.0;
                let d = x - mean;
                mean += d / n;
                m2 += d * (x - mean);
            }
        }
        m += step;
        pos += step % p.HW;
        let wrap = pos >= p.HW;
        pos = select(pos, pos - p.HW, wrap);
        img += step / p.HW + select(0u, 1u, wrap);
    }
    wn[li] = n;
    wmean[li] = mean;
    wm2[li] = m2;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            let na = wn[li];
            let nb = wn[li + s];
            let nt = na + nb;
            if (nt > 0.0) {
                let d = wmean[li + s] - wmean[li];
                wmean[li] += d * nb / nt;
                wm2[li] += wm2[li + s] + d * d * na * nb / nt;
                wn[li] = nt;
            }
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        partials[g * 3u] = wn[0];
        partials[g * 3u + 1u] = wmean[0];
        partials[g * 3u + 2u] = wm2[0];
    }
}
