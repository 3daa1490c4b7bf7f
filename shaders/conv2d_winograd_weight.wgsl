// Conv2d by Winograd's minimal filtering (ops::conv2d::winograd_gpu), once per step: the weight
// transformed, u[(xi, ic, oc)] = (G g GT)[xi] for the R x R kernel g of output channel oc and input
// channel ic, g[kh, kw] = weight[origin + oc SOC + ic SIC + kh SKH + kw SKW] (the forward's weight
// (OC, IC, R, R), or the input gradient's flipped, transposed view of it); zero for oc >= OC.
// weight: as the strides reach; u: (XI, IC, OCP), overwritten.
// Dispatch: one invocation per (ic, oc) of IC x OCP, oc fastest; ceil(IC OCP / 64) workgroups
// (2-D grid past 65,535).
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

// Winograd's F(4, R) (ops::conv2d::winograd_gpu): a row of 4 outputs of a correlation with R taps
// from A = R + 3 inputs d as AT [(G g) . (BT d)], each 2-D tile as AT [(G g GT) . (BT d B)] A;
// points 0, +-1, +-2 and infinity for R = 3, and +-1/2 too for R = 5. The functions winograd3 and
// winograd5 below are what tests/golden/winograd_transforms.py prints (it checks them exactly).
// This kernel is written for R = 3; its `_5x5` variant has R = 5 and calls winograd5
// (crate::shaders::WINOGRAD_5X5).
const R: u32 = 3u;
const M: u32 = 4u;
const A: u32 = M + R - 1u;

// G x for R = 3 and R = 5.
fn winograd3(x: array<f32, 3>) -> array<f32, 6> {
    return array<f32, 6>(
        0.25 * x[0],
        (1.0 / 6.0) * x[0] + (1.0 / 6.0) * x[1] + (1.0 / 6.0) * x[2],
        (1.0 / 6.0) * x[0] - (1.0 / 6.0) * x[1] + (1.0 / 6.0) * x[2],
        (1.0 / 24.0) * x[0] + (1.0 / 12.0) * x[1] + (1.0 / 6.0) * x[2],
        (1.0 / 24.0) * x[0] - (1.0 / 12.0) * x[1] + (1.0 / 6.0) * x[2],
        x[2],
    );
}

fn winograd5(x: array<f32, 5>) -> array<f32, 8> {
    return array<f32, 8>(
        x[0],
        (2.0 / 9.0) * x[0] + (2.0 / 9.0) * x[1] + (2.0 / 9.0) * x[2] + (2.0 / 9.0) * x[3] + (2.0 / 9.0) * x[4],
        (2.0 / 9.0) * x[0] - (2.0 / 9.0) * x[1] + (2.0 / 9.0) * x[2] - (2.0 / 9.0) * x[3] + (2.0 / 9.0) * x[4],
        (1.0 / 360.0) * x[0] + (1.0 / 180.0) * x[1] + (1.0 / 90.0) * x[2] + (1.0 / 45.0) * x[3] + (2.0 / 45.0) * x[4],
        (1.0 / 360.0) * x[0] - (1.0 / 180.0) * x[1] + (1.0 / 90.0) * x[2] - (1.0 / 45.0) * x[3] + (2.0 / 45.0) * x[4],
        (16.0 / 45.0) * x[0] + (8.0 / 45.0) * x[1] + (4.0 / 45.0) * x[2] + (2.0 / 45.0) * x[3] + (1.0 / 45.0) * x[4],
        (16.0 / 45.0) * x[0] - (8.0 / 45.0) * x[1] + (4.0 / 45.0) * x[2] - (2.0 / 45.0) * x[3] + (1.0 / 45.0) * x[4],
        x[4],
    );
}

fn g(x: array<f32, R>) -> array<f32, A> {
    return winograd3(x);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.IC * p.OCP) {
        return;
    }
    let ic = i / p.OCP;
    let oc = i % p.OCP;
    var k: array<array<f32, R>, R>;
    if (oc < p.OC) {
        let base = i32(p.origin) + i32(oc) * p.SOC + i32(ic) * p.SIC;
        for (var kh = 0u; kh < R; kh++) {
            for (var kw = 0u; kw < R; kw++) {
                k[kh][kw] = weight[u32(base + i32(kh) * p.SKH + i32(kw) * p.SKW)];
            }
        }
    }
    // G g (its columns), then (G g) GT (its rows).
    var e: array<array<f32, R>, A>;
    for (var c = 0u; c < R; c++) {
        var col: array<f32, R>;
        for (var j = 0u; j < R; j++) {
            col[j] = k[j][c];
        }
        let t = g(col);
        for (var a = 0u; a < A; a++) {
            e[a][c] = t[a];
        }
    }
    for (var a = 0u; a < A; a++) {
        let row = g(e[a]);
        for (var b = 0u; b < A; b++) {
            u[((a * A + b) * p.IC + ic) * p.OCP + oc] = row[b];
        }
    }
}
