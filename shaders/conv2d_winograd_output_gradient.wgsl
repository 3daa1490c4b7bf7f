// Conv2d's weight gradient by Winograd's minimal filtering (ops::conv2d::winograd_gpu), step 2 of
// 4: the output gradient's tiles transformed, dm[(xi, oc, t)] = (A dY A^T)[xi] for the 4 x 4 tile
// dY of image N0 + n, channel oc, rows 4 th .., columns 4 tw .. (zero past OH and OW), of each tile
// t = (n, th, tw) of the chunk (the gradient of the products M the forward transforms back); zero
// for t past its NB TH TW tiles (up to TP) and oc past OC (up to OCP).
// dout: (N, OC, OH, OW); dm: (XI, OCP, TP), overwritten.
// Dispatch: one invocation per (oc, t), t fastest; ceil(OCP TP / 64) workgroups (2-D grid past
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

// A x for R = 3 and R = 5.
fn winograd3(x: array<f32, 4>) -> array<f32, 6> {
    return array<f32, 6>(
        x[0],
        x[0] + x[1] + x[2] + x[3],
        x[0] - x[1] + x[2] - x[3],
        x[0] + 2.0 * x[1] + 4.0 * x[2] + 8.0 * x[3],
        x[0] - 2.0 * x[1] + 4.0 * x[2] - 8.0 * x[3],
        x[3],
    );
}

fn winograd5(x: array<f32, 4>) -> array<f32, 8> {
    return array<f32, 8>(
        x[0],
        x[0] + x[1] + x[2] + x[3],
        x[0] - x[1] + x[2] - x[3],
        x[0] + 2.0 * x[1] + 4.0 * x[2] + 8.0 * x[3],
        x[0] - 2.0 * x[1] + 4.0 * x[2] - 8.0 * x[3],
        x[0] + 0.5 * x[1] + 0.25 * x[2] + 0.125 * x[3],
        x[0] - 0.5 * x[1] + 0.25 * x[2] - 0.125 * x[3],
        x[3],
    );
}

// The same for four columns at once (each x[k] a vec4): what the script prints with --vec4.
fn winograd3v(x: array<vec4<f32>, 4>) -> array<vec4<f32>, 6> {
    return array<vec4<f32>, 6>(
        x[0],
        x[0] + x[1] + x[2] + x[3],
        x[0] - x[1] + x[2] - x[3],
        x[0] + 2.0 * x[1] + 4.0 * x[2] + 8.0 * x[3],
        x[0] - 2.0 * x[1] + 4.0 * x[2] - 8.0 * x[3],
        x[3],
    );
}

fn winograd5v(x: array<vec4<f32>, 4>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        x[0],
        x[0] + x[1] + x[2] + x[3],
        x[0] - x[1] + x[2] - x[3],
        x[0] + 2.0 * x[1] + 4.0 * x[2] + 8.0 * x[3],
        x[0] - 2.0 * x[1] + 4.0 * x[2] - 8.0 * x[3],
        x[0] + 0.5 * x[1] + 0.25 * x[2] + 0.125 * x[3],
        x[0] - 0.5 * x[1] + 0.25 * x[2] - 0.125 * x[3],
        x[3],
    );
}

fn a(x: array<f32, M>) -> array<f32, A> {
    return winograd3(x);
}

fn av(x: array<vec4<f32>, M>) -> array<vec4<f32>, A> {
    return winograd3v(x);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dm: array<f32>;

// dout[base + oh OW + ow], or zero past the image.
fn gradient(base: u32, oh: u32, ow: u32) -> f32 {
    if (oh >= p.OH || ow >= p.OW) {
        return 0.0;
    }
    return dout[base + oh * p.OW + ow];
}

// The tile is transformed four columns at a time along its rows (`av`, on vec4s: M = 4 columns),
// then row by row: the kernel holds no two-level private array, which the NVIDIA compiler kept in
// memory rather than registers in the direct kernels (docs/PERFORMANCE.md, history 14 and 53; the
// weight's transforms, once a step, keep theirs).
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i >= p.OCP * p.TP) {
        return;
    }
    let oc = i / p.TP;
    let t = i % p.TP;
    let per = p.TH * p.TW;
    var y: array<vec4<f32>, M>;
    if (t < p.NB * per && oc < p.OC) {
        let n = p.N0 + t / per;
        let th = (t % per) / p.TW;
        let tw = t % p.TW;
        let base = (n * p.OC + oc) * p.OH * p.OW;
        let ow = M * tw;
        for (var j = 0u; j < M; j++) {
            let oh = M * th + j;
            y[j] = vec4<f32>(gradient(base, oh, ow), gradient(base, oh, ow + 1u), gradient(base, oh, ow + 2u),
                             gradient(base, oh, ow + 3u));
        }
    }
    let e = av(y);
    for (var k = 0u; k < A; k++) {
        let r = a(array<f32, M>(e[k].x, e[k].y, e[k].z, e[k].w));
        for (var b = 0u; b < A; b++) {
            dm[((k * A + b) * p.OCP + oc) * p.TP + t] = r[b];
        }
    }
}
