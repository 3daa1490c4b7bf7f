// Conv2d by Winograd's minimal filtering (ops::conv2d::winograd_gpu), step 3: each output tile
// transformed back, out[N0 + n, oc, 4 th + j, 4 tw + l] = bias[oc] + (AT M A)[j, l] for the tile
// t = (n, th, tw) of the chunk, M[xi] = m[(xi, oc, t)]; pixels past OH or OW are not written.
// m: (XI, OCP, TP); bias: (OC,) (read when has_bias); out: (N, OC, OH, OW), overwritten.
// Dispatch: one invocation per (oc, t) of the chunk's NB TH TW tiles, t fastest;
// ceil(OC NB TH TW / 64) workgroups (2-D grid past 65,535).
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

// AT x for R = 3 and R = 5.
fn winograd3(x: array<f32, 6>) -> vec4<f32> {
    return vec4<f32>(
        x[0] + x[1] + x[2] + x[3] + x[4],
        x[1] - x[2] + 2.0 * x[3] - 2.0 * x[4],
        x[1] + x[2] + 4.0 * x[3] + 4.0 * x[4],
        x[1] - x[2] + 8.0 * x[3] - 8.0 * x[4] + x[5],
    );
}

fn winograd5(x: array<f32, 8>) -> vec4<f32> {
    return vec4<f32>(
        x[0] + x[1] + x[2] + x[3] + x[4] + x[5] + x[6],
        x[1] - x[2] + 2.0 * x[3] - 2.0 * x[4] + 0.5 * x[5] - 0.5 * x[6],
        x[1] + x[2] + 4.0 * x[3] + 4.0 * x[4] + 0.25 * x[5] + 0.25 * x[6],
        x[1] - x[2] + 8.0 * x[3] - 8.0 * x[4] + 0.125 * x[5] - 0.125 * x[6] + x[7],
    );
}

// The same for four columns at once (each x[k] a vec4): what the script prints with --vec4.
fn winograd3v(x: array<vec4<f32>, 6>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        x[0] + x[1] + x[2] + x[3] + x[4],
        x[1] - x[2] + 2.0 * x[3] - 2.0 * x[4],
        x[1] + x[2] + 4.0 * x[3] + 4.0 * x[4],
        x[1] - x[2] + 8.0 * x[3] - 8.0 * x[4] + x[5],
    );
}

fn winograd5v(x: array<vec4<f32>, 8>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        x[0] + x[1] + x[2] + x[3] + x[4] + x[5] + x[6],
        x[1] - x[2] + 2.0 * x[3] - 2.0 * x[4] + 0.5 * x[5] - 0.5 * x[6],
        x[1] + x[2] + 4.0 * x[3] + 4.0 * x[4] + 0.25 * x[5] + 0.25 * x[6],
        x[1] - x[2] + 8.0 * x[3] - 8.0 * x[4] + 0.125 * x[5] - 0.125 * x[6] + x[7],
    );
}

fn at(x: array<f32, A>) -> vec4<f32> {
    return winograd3(x);
}

fn atv(x: array<vec4<f32>, A>) -> array<vec4<f32>, M> {
    return winograd3v(x);
}

// A row of the tile from its columns 0..3 (`l`) and 4.. (`h`), for A = 6 and A = 8.
fn row6(l: vec4<f32>, h: vec4<f32>) -> array<f32, 6> {
    return array<f32, 6>(l.x, l.y, l.z, l.w, h.x, h.y);
}

fn row8(l: vec4<f32>, h: vec4<f32>) -> array<f32, 8> {
    return array<f32, 8>(l.x, l.y, l.z, l.w, h.x, h.y, h.z, h.w);
}

fn row(l: vec4<f32>, h: vec4<f32>) -> array<f32, A> {
    return row6(l, h);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// m[pos], or zero for the columns `col` past the tile's A.
fn product(pos: u32, col: u32) -> f32 {
    if (col >= A) {
        return 0.0;
    }
    return m[pos];
}

// The tile is transformed four columns at a time along its rows (the `v` functions, on vec4s), then
// row by row: the kernel holds no two-level private array, which the NVIDIA compiler kept in memory
// rather than registers in the direct kernels (docs/PERFORMANCE.md, history 14 and 53; the weight's
// transforms, once a step, keep theirs).
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    let per = p.TH * p.TW;
    let T = p.NB * per;
    if (i >= p.OC * T) {
        return;
    }
    let oc = i / T;
    let t = i % T;
    // AT M (its columns), then (AT M) A (its rows).
    // M[(a, b)] at m[((a A + b) OCP + oc) TP + t]: the columns b lie `step` apart.
    let step = p.OCP * p.TP;
    var lo: array<vec4<f32>, A>;
    var hi: array<vec4<f32>, A>;
    for (var a = 0u; a < A; a++) {
        let pos = (a * A * p.OCP + oc) * p.TP + t;
        lo[a] = vec4<f32>(m[pos], m[pos + step], m[pos + 2u * step], m[pos + 3u * step]);
        hi[a] = vec4<f32>(product(pos + 4u * step, 4u), product(pos + 5u * step, 5u), product(pos + 6u * step, 6u),
                          product(pos + 7u * step, 7u));
    }
    let el = atv(lo);
    let eh = atv(hi);
    var add = 0.0;
    if (p.has_bias == 1u) {
        add = bias[oc];
    }
    let n = p.N0 + t / per;
    let th = (t % per) / p.TW;
    let tw = t % p.TW;
    let base = (n * p.OC + oc) * p.OH * p.OW;
    for (var j = 0u; j < M; j++) {
        let oh = M * th + j;
        let y = at(row(el[j], eh[j])) + add;
        for (var l = 0u; l < M; l++) {
            let ow = M * tw + l;
            if (oh < p.OH && ow < p.OW) {
                out[base + oh * p.OW + ow] = y[l];
            }
        }
    }
}
