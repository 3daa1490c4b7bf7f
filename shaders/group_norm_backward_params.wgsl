// GroupNorm's parameter gradients: for each channel c (in group g = c / (C/G)),
// dweight[c] = sum over images n and the channel's HW values of dout * (x - mean[n, g]) * rstd[n, g],
// dbias[c] = sum of dout over the same values.
// inp, dout: (N, C, HW) f32. mean, rstd: (N * G). dweight, dbias: (C,), overwritten.
// Dispatch: one workgroup of 256 per channel, C workgroups (2-D grid past 65,535); the invocations
// stride over (n, s) and merge their sums in workgroup memory as a tree.
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
@group(0) @binding(5) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbias: array<f32>;

var<workgroup> part: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = wid.x + wid.y * nwg.x;
    let c = min(row, p.C - 1u);
    let g = c / (p.C / p.G);
    var s = vec2<f32>(0.0, 0.0);
    for (var k = li; k < p.N * p.HW; k += WG) {
        let n = k / p.HW;
        let at = (n * p.C + c) * p.HW + k % p.HW;
        let ng = n * p.G + g;
        let d = dout[at];
        s += vec2<f32>(d * (inp[at] - mean[ng]) * rstd[ng], d);
    }
    part[li] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (li < h) {
            part[li] += part[li + h];
        }
        workgroupBarrier();
    }
    if (li == 0u && row < p.C) {
        dweight[c] = part[0].x;
        dbias[c] = part[0].y;
    }
}
