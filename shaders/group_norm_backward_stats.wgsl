// GroupNorm's backward sums: for each image n and group g, over its M = C/G * HW values (one
// contiguous run, at (n * G + g) * M), with xhat = (x - mean) * rstd and dxhat = dout * weight[c]
// (dout without affine parameters, p.affine 0: weight is then not read):
// sums[2 * ng] = sum dxhat, sums[2 * ng + 1] = sum dxhat * xhat.
// inp, dout: (N, C, HW) f32. mean, rstd: (N * G). weight: (C,). sums: (N * G, 2), overwritten.
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
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> sums: array<f32>;

var<workgroup> part: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let groups = p.N * p.G;
    let row = wid.x + wid.y * nwg.x;
    let ng = min(row, groups - 1u);
    let m = p.C / p.G * p.HW;
    let base = ng * m;
    // The group's first channel: its channels are c0, c0 + 1, … (HW values each).
    let c0 = (ng % p.G) * (p.C / p.G);
    let mu = mean[ng];
    let r = rstd[ng];
    var s = vec2<f32>(0.0, 0.0);
    for (var i = li; i < m; i += WG) {
        var d = dout[base + i];
        if (p.affine != 0u) {
            d *= weight[c0 + i / p.HW];
        }
        s += vec2<f32>(d, d * (inp[base + i] - mu) * r);
    }
    part[li] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (li < k) {
            part[li] += part[li + k];
        }
        workgroupBarrier();
    }
    if (li == 0u && row < groups) {
        sums[2u * ng] = part[0].x;
        sums[2u * ng + 1u] = part[0].y;
    }
}
