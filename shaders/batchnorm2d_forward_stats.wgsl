// BatchNorm2d, train mode, step 1 of 3: per channel and chunk of its M = N*HW values, the count,
// mean and sum of squared deviations (M2). Each invocation runs Welford over per_thread values
// (LANES at a time, strided by 256 * LANES, so neighbours read neighbours), then the workgroup
// merges its 256 partials as a tree (Chan et al.): accurate at any batch size, no long f32 sums.
// inp: (N, C, HW); partials: (C, chunks, 3) [count, mean, M2], overwritten.
// Dispatch: one workgroup of 256 per (channel, chunk): C*chunks workgroups (2-D grid); chunk k of
// channel c covers m in [k*256*per_thread, (k+1)*256*per_thread) where m = n*HW + s.
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
    fan: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

// The type of inp's elements: f32, or four of them in the `_vec4` variant
// (crate::shaders::VEC4), which ops::batchnorm2d takes where the planes are runs of vec4s (HW a
// multiple of 4) on CPU adapters, per_thread then a multiple of 4: LANES values a load.
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
    if (g >= p.C * p.chunks) {
        return;
    }
    let c = g / p.chunks;
    let k = g % p.chunks;
    let M = p.N * p.HW;
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
    // The workgroup's partials merge in levels of `fan`, each of the first s invocations taking
    // li + s, li + 2s, ... li + (fan - 1)s: 2 on GPUs, a tree of 8 levels; 16 on CPU adapters, two
    // levels, where each barrier switches between all the workgroup's invocations
    // (ops::batchnorm2d::fan).
    for (var s = WG / p.fan; s > 0u; s /= p.fan) {
        if (li < s) {
            var na = wn[li];
            var ma = wmean[li];
            var m2a = wm2[li];
            for (var t = 1u; t < p.fan; t++) {
                let o = li + t * s;
                let nb = wn[o];
                let nt = na + nb;
                if (nt > 0.0) {
                    let d = wmean[o] - ma;
                    ma += d * nb / nt;
                    m2a += wm2[o] + d * d * na * nb / nt;
                    na = nt;
                }
            }
            wn[li] = na;
            wmean[li] = ma;
            wm2[li] = m2a;
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        partials[g * 3u] = wn[0];
        partials[g * 3u + 1u] = wmean[0];
        partials[g * 3u + 2u] = wm2[0];
    }
}
