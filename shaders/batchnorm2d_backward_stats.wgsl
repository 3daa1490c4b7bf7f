// BatchNorm2d backward, step 1 of 3: per channel and chunk (as in batchnorm2d_forward_stats), the
// sums of dout and of dout * xhat, xhat = (x - mean) * invstd; each invocation sums per_thread
// values (LANES at a time, as in batchnorm2d_forward_stats), then the workgroup adds its 256
// partials as a tree.
// inp, dout: (N, C, HW); mean, stat: (C,) as in batchnorm2d_forward.wgsl; partials: (C, chunks, 2)
// [sum dout, sum dout*xhat], overwritten.
// Dispatch: one workgroup of 256 per (channel, chunk): C*chunks workgroups (2-D grid).
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

// The type of inp and dout's elements: f32, or four of them in the `_vec4` variant
// (crate::shaders::VEC4), which ops::batchnorm2d takes where the planes are runs of vec4s (HW a
// multiple of 4) on CPU adapters, per_thread then a multiple of 4: LANES values a load.
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
    if (g >= p.C * p.chunks) {
        return;
    }
    let c = g / p.chunks;
    let k = g % p.chunks;
    let M = p.N * p.HW;
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
    // The workgroup's partials add up in levels of `fan`, each of the first s invocations taking
    // li + s, li + 2s, ... li + (fan - 1)s: 2 on GPUs, a tree of 8 levels; 16 on CPU adapters, two
    // levels, where each barrier switches between all the workgroup's invocations
    // (ops::batchnorm2d::fan).
    for (var s = WG / p.fan; s > 0u; s /= p.fan) {
        if (li < s) {
            for (var t = 1u; t < p.fan; t++) {
                wdy[li] += wdy[li + t * s];
                wdyx[li] += wdyx[li + t * s];
            }
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        partials[g * 2u] = wdy[0];
        partials[g * 2u + 1u] = wdyx[0];
    }
}
