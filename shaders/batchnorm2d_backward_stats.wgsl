// BatchNorm2d backward, step 1 of 3: per channel and chunk (as in batchnorm2d_forward_stats), the
// sums of dout and of dout * xhat, xhat = (x - mean) * invstd; each invocation sums per_thread
// values, then the workgroup adds its 256 partials as a tree.
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
    _pad1: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
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
    // m = start + j * WG + li, walked as (image, position) = (m / HW, m % HW) without a division
    // per value (CPU adapters run integer division lane by lane).
    var m = start + li;
    var img = m / p.HW;
    var pos = m % p.HW;
    for (var j = 0u; j < p.per_thread; j++) {
        if (m < M) {
            let at = (img * p.C + c) * p.HW + pos;
            let dy = dout[at];
            sdy += dy;
            sdyx += dy * (inp[at] - mu) * invstd;
        }
        m += WG;
        pos += WG % p.HW;
        let wrap = pos >= p.HW;
        pos = select(pos, pos - p.HW, wrap);
        img += WG / p.HW + select(0u, 1u, wrap);
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
