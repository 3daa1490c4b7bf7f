// GroupNorm's statistics: for each image n and group g, the mean of its M = C/G * HW values (one
// contiguous run of inp, at (n * G + g) * M) and rstd = 1 / sqrt(var + eps), var the biased
// variance, from a second pass over (x - mean)^2 (a one-pass variance loses the digits of a group
// far from zero).
// inp: (N, C, HW) f32. mean, rstd: (N * G) f32, overwritten.
// Dispatch: one workgroup of 256 per (image, group), N * G workgroups (2-D grid past 65,535); the
// invocations stride over the group and merge their sums in workgroup memory as a tree.
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
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;

var<workgroup> part: array<f32, WG>;

// The sum of the workgroup's `v`s (every invocation calls it, with its own).
fn total(li: u32, v: f32) -> f32 {
    part[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            part[li] += part[li + s];
        }
        workgroupBarrier();
    }
    let t = part[0];
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let groups = p.N * p.G;
    let row = wid.x + wid.y * nwg.x;
    let ng = min(row, groups - 1u);
    let m = p.C / p.G * p.HW;
    let base = ng * m;
    var s = 0.0;
    for (var i = li; i < m; i += WG) {
        s += inp[base + i];
    }
    let mu = total(li, s) / f32(m);
    var q = 0.0;
    for (var i = li; i < m; i += WG) {
        let d = inp[base + i] - mu;
        q += d * d;
    }
    let var_ = total(li, q) / f32(m);
    if (li == 0u && row < groups) {
        mean[ng] = mu;
        rstd[ng] = 1.0 / sqrt(var_ + p.eps);
    }
}
