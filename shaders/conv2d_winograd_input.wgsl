// Conv2d by Winograd's minimal filtering (ops::conv2d::winograd_gpu), step 1: the input's tiles
// transformed, v[(xi, ic, t)] = (BT d B)[xi] for the A x A patch d of image N0 + n, channel ic, rows
// 4 th - PH .., columns 4 tw - PW .. (zero outside the image), of each tile t = (n, th, tw) of the
// chunk; zero for t past its NB TH TW tiles (up to TP) and ic past IC (up to ICP).
// inp: (N, IC, H, W); v: (XI, ICP, TP), overwritten.
// Dispatch: one invocation per (ic, t), t fastest; ceil(ICP TP / 64) workgroups (2-D grid past
// 65,535).
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

// BT x for R = 3 and R = 5.
fn winograd3(x: array<f32, 6>) -> array<f32, 6> {
    return array<f32, 6>(
        4.0 * x[0] - 5.0 * x[2] + x[4],
        4.0 * x[1] + 4.0 * x[2] - x[3] - x[4],
        -4.0 * x[1] + 4.0 * x[2] + x[3] - x[4],
        -2.0 * x[1] - x[2] + 2.0 * x[3] + x[4],
        2.0 * x[1] - x[2] - 2.0 * x[3] + x[4],
        4.0 * x[1] - 5.0 * x[3] + x[5],
    );
}

fn winograd5(x: array<f32, 8>) -> array<f32, 8> {
    return array<f32, 8>(
        x[0] - 5.25 * x[2] + 5.25 * x[4] - x[6],
        -x[1] - x[2] + 4.25 * x[3] + 4.25 * x[4] - x[5] - x[6],
        x[1] - x[2] - 4.25 * x[3] + 4.25 * x[4] + x[5] - x[6],
        2.0 * x[1] + x[2] - 10.0 * x[3] - 5.0 * x[4] + 8.0 * x[5] + 4.0 * x[6],
        -2.0 * x[1] + x[2] + 10.0 * x[3] - 5.0 * x[4] - 8.0 * x[5] + 4.0 * x[6],
        4.0 * x[1] + 8.0 * x[2] - 5.0 * x[3] - 10.0 * x[4] + x[5] + 2.0 * x[6],
        -4.0 * x[1] + 8.0 * x[2] + 5.0 * x[3] - 10.0 * x[4] - x[5] + 2.0 * x[6],
        -x[1] + 5.25 * x[3] - 5.25 * x[5] + x[7],
    );
}

fn bt(x: array<f32, A>) -> array<f32, A> {
    return winograd3(x);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.ICP * p.TP) {
        return;
    }
    let ic = i / p.TP;
    let t = i % p.TP;
    let per = p.TH * p.TW;
    var d: array<array<f32, A>, A>;
    if (t < p.NB * per && ic < p.IC) {
        let n = p.N0 + t / per;
        let th = (t % per) / p.TW;
        let tw = t % p.TW;
        let ih0 = i32(M * th) - i32(p.PH);
        let iw0 = i32(M * tw) - i32(p.PW);
        let base = (n * p.IC + ic) * p.H * p.W;
        for (var a = 0u; a < A; a++) {
            let ih = ih0 + i32(a);
            for (var b = 0u; b < A; b++) {
                let iw = iw0 + i32(b);
                if (ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W)) {
                    d[a][b] = inp[base + u32(ih) * p.W + u32(iw)];
                }
            }
        }
    }
    // BT d (its columns), then (BT d) B (its rows).
    for (var b = 0u; b < A; b++) {
        var c: array<f32, A>;
        for (var a = 0u; a < A; a++) {
            c[a] = d[a][b];
        }
        c = bt(c);
        for (var a = 0u; a < A; a++) {
            d[a][b] = c[a];
        }
    }
    for (var a = 0u; a < A; a++) {
        let row = bt(d[a]);
        for (var b = 0u; b < A; b++) {
            v[((a * A + b) * p.ICP + ic) * p.TP + t] = row[b];
        }
    }
}
