// Conv2d by Winograd's minimal filtering (ops::conv2d::winograd_gpu), step 2: the products of the
// transformed weight and input, one matrix product per position xi of the A x A tile:
//   m[(xi, oc, t)] = sum_ic u[(xi, ic, oc)] v[(xi, ic, t)].
// u: (XI, IC, OCP); v: (XI, ICP, TP); m: (XI, OCP, TP), overwritten (OCP and TP multiples of 8).
// Dispatch: one invocation per xi, block of 8 channels and block of 8 tiles (tiles fastest);
// ceil(XI OCP TP / 64 / 64) workgroups (2-D grid past 65,535). Register-blocked: each step of the
// reduction loads 2 vec4 of u and 2 of v for 64 multiply-adds.
// Params (ops::conv2d::winograd_gpu::Params, the same in every Winograd kernel): the images
// N0 .. N0 + NB of a chunk; the convolution's IC, H, W, OC, OH, OW, PH, PW (stride and dilation
// 1, kernel R x R); ICP and OCP: IC and OC rounded up to 8; TH x TW: the 4 x 4 output tiles of an
// image; TP: the chunk's tiles NB TH TW rounded up to 8; XI: A * A; the weight read at
// origin + oc SOC + ic SIC + kh SKH + kw SKW (strides may be negative: the input gradient's
// flipped, transposed weight); the weight gradient's tiles per split TS and the chunk's first
// partial sum S0.
struct Params {
    N0: u32,
    NB: u32,
    IC: u32,
    ICP: u32,
    H: u32,
    W: u32,
    OC: u32,
    OCP: u32,
    OH: u32,
    OW: u32,
    PH: u32,
    PW: u32,
    TH: u32,
    TW: u32,
    TP: u32,
    XI: u32,
    has_bias: u32,
    origin: u32,
    SOC: i32,
    SIC: i32,
    SKH: i32,
    SKW: i32,
    TS: u32,
    S0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> u: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let tb = p.TP / 8u;
    let cb = p.OCP / 8u;
    if (i >= p.XI * cb * tb) {
        return;
    }
    let t8 = i % tb;
    let c8 = (i / tb) % cb;
    let xi = i / (tb * cb);
    // vec4 strides of a reduction row.
    let us = p.OCP / 4u;
    let vs = p.TP / 4u;
    var ui = xi * p.IC * us + 2u * c8;
    var vi = xi * p.ICP * vs + 2u * t8;
    var acc: array<vec4<f32>, 16>;
    for (var k = 0u; k < p.IC; k++) {
        let a0 = u[ui];
        let a1 = u[ui + 1u];
        let b0 = v[vi];
        let b1 = v[vi + 1u];
        acc[0] += a0.x * b0;
        acc[1] += a0.x * b1;
        acc[2] += a0.y * b0;
        acc[3] += a0.y * b1;
        acc[4] += a0.z * b0;
        acc[5] += a0.z * b1;
        acc[6] += a0.w * b0;
        acc[7] += a0.w * b1;
        acc[8] += a1.x * b0;
        acc[9] += a1.x * b1;
        acc[10] += a1.y * b0;
        acc[11] += a1.y * b1;
        acc[12] += a1.z * b0;
        acc[13] += a1.z * b1;
        acc[14] += a1.w * b0;
        acc[15] += a1.w * b1;
        ui += us;
        vi += vs;
    }
    var o = (xi * p.OCP + 8u * c8) * vs + 2u * t8;
    for (var r = 0u; r < 8u; r++) {
        m[o] = acc[2u * r];
        m[o + 1u] = acc[2u * r + 1u];
        o += vs;
    }
}
