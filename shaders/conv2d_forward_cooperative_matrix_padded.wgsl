enable f16;
enable wgpu_cooperative_matrix;
// Conv2d forward on cooperative matrices for mixed precision, where the layer has unit strides and
// dilations, whole runs of 8 input channels and kernel rows of whole tiles (KW * IC a multiple of
// 16; ops::conv2d::padded_forward); and the input gradient of a layer, as the convolution of its
// output gradient with its flipped, transposed weight, where that convolution is such
// (ops::conv2d::padded_input_gradient): the implicit GEMM
//   out[n, oc, oh, ow] = bias[oc] + sum_{kh, j} weight'[oc, kh, j] * inp'[n, oh + kh, ow + j / IC, j % IC]
// over copies (ops::cast_f16, Layout::Padded) that let every tile be loaded straight from memory,
// with no staging, no bounds tests and no barriers in the loop:
// - inp' (N, HP, WP, IC) f16: the input channels last with its padding as zeros (HP = H + 2 PH,
//   WP = W + 2 PW), then slack for the loads of the last image's dropped columns;
// - weight' (OCP, KH, J) f16: each kernel row's KW taps of IC channels, J = KW * IC halves; OCP
//   rows, zero past OC.
// Since a kernel row's taps are consecutive pixels, the j-th reduction row of kernel row kh for
// output pixel (oh, ow) is half j of inp' from pixel (oh + kh, ow): a column of col is IC halves
// on from its neighbour's. Output pixels are therefore taken over "virtual" columns
// v = oh * WP + ow, ow < WP (the ow >= OW ones computed and dropped: their windows run into the
// next row or image), in tiles of T per image; a tile of col is then one column-major load of
// stride IC, and a tile of the weight one row-major load of stride KH * J.
// The input copy may be scaled by 2^e (an output gradient's, for the input gradient), e stored
// at element scale_at; the sums are then scaled back.
// bias: (OC,) f32 (read when has_bias); out: (N, OC, OH, OW) overwritten (never split).
// Dispatch: one workgroup per block of MT T output channels and 4 NT column tiles (column tiles
// fastest), 2-D grid past 65,535; each of its four subgroups multiplies MT x NT tiles of T x T,
// the same channels, NT consecutive column tiles of its own. Results leave through workgroup
// memory, one tile per subgroup at a time, so that ragged edges and dropped columns are skipped.
// As written, T = 8 with subgroups of 8 (lavapipe); its `_16x16` variant (crate::shaders) has
// T = 16 with subgroups of 32 (NVIDIA). Loads from memory need 16-byte aligned pointers and
// strides: IC is a multiple of 8 (CHANNELS), J of 16 (ROWS), which the host checks.
struct Params {
    N: u32,
    IC: u32,
    H: u32,
    W: u32,
    OC: u32,
    OH: u32,
    OW: u32,
    KH: u32,
    KW: u32,
    SH: u32,
    SW: u32,
    PH: u32,
    PW: u32,
    DH: u32,
    DW: u32,
    has_bias: u32,
    splits: u32,
    chunk: u32,
    scale_at: u32,
    stride: u32,
}

const T: u32 = 8u;
const SG: u32 = 8u;
alias tile_a = coop_mat8x8<f16, A>;
alias tile_b = coop_mat8x8<f16, B>;
alias tile_c = coop_mat8x8<f32, C>;
// Invocations per workgroup (Rust declares the same in its shaders! entry): four subgroups.
const WG: u32 = 4u * SG;
// Tiles per subgroup: MT of channels by NT of columns (ops::conv2d::PADDED_TILES).
const MT: u32 = 2u;
const NT: u32 = 4u;
// What the channels and a kernel row's reduction rows are multiples of (ops::conv2d::PADDED_*).
const CHANNELS: u32 = 8u;
const ROWS: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f16>;
@group(0) @binding(2) var<storage, read> weight: array<f16>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup

// scale_at when the input is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let IC = p.IC;
    let HP = p.H + 2u * p.PH;
    let WP = p.W + 2u * p.PW;
    let J = p.KW * IC;
    let KJ = p.KH * J;
    let V = p.OH * WP; // virtual columns per image
    let per_image = (V + T - 1u) / T;
    let ctiles = p.N * per_image;
    let groups = (ctiles + 4u * NT - 1u) / (4u * NT);
    let blocks = (p.OC + MT * T - 1u) / (MT * T);
    // Whole workgroups return or none of their subgroups does (the barriers below).
    if (g >= groups * blocks) {
        return;
    }
    let m0 = (g / groups) * MT * T;
    let sg = li / SG;
    let lane = li % SG;
    let c0 = (g % groups) * 4u * NT + sg * NT;

    // Each column tile's first half in inp': its image's, and its first virtual column's. Tiles
    // past the last are loaded as the last and dropped.
    var base: array<u32, NT>;
    for (var i = 0u; i < NT; i++) {
        let c = min(c0 + i, ctiles - 1u);
        base[i] = (c / per_image) * HP * WP * IC + (c % per_image) * T * IC;
    }
    let slot = sg * T * T;
    for (var e = 0u; e < T * T / SG; e++) {
        Cs[slot + lane + e * SG] = 0.0;
    }
    workgroupBarrier();
    // Accumulators c<r><i>: tile r of channels, column tile i (MT = 2, NT = 4, spelt out: the
    // matrices are not array elements).
    var c00 = coopLoadT<tile_c>(&Cs[slot], T);
    var c01 = c00;
    var c02 = c00;
    var c03 = c00;
    var c10 = c00;
    var c11 = c00;
    var c12 = c00;
    var c13 = c00;
    for (var kh = 0u; kh < p.KH; kh++) {
        let arow = m0 * KJ + kh * J;
        let brow = kh * WP * IC;
        for (var j = 0u; j < J; j += T) {
            let a0 = coopLoadT<tile_a>(&weight[arow + j], KJ);
            let a1 = coopLoadT<tile_a>(&weight[arow + T * KJ + j], KJ);
            let b0 = coopLoad<tile_b>(&inp[base[0] + brow + j], IC);
            let b1 = coopLoad<tile_b>(&inp[base[1] + brow + j], IC);
            let b2 = coopLoad<tile_b>(&inp[base[2] + brow + j], IC);
            let b3 = coopLoad<tile_b>(&inp[base[3] + brow + j], IC);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
        }
    }

    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(inp[p.scale_at]));
    }
    // Tile (r, i) of this subgroup's MT x NT: channels from m0 + r T, column tile c0 + i.
    for (var t = 0u; t < MT * NT; t++) {
        switch t {
            case 0u: { coopStoreT(c00, &Cs[slot], T); }
            case 1u: { coopStoreT(c01, &Cs[slot], T); }
            case 2u: { coopStoreT(c02, &Cs[slot], T); }
            case 3u: { coopStoreT(c03, &Cs[slot], T); }
            case 4u: { coopStoreT(c10, &Cs[slot], T); }
            case 5u: { coopStoreT(c11, &Cs[slot], T); }
            case 6u: { coopStoreT(c12, &Cs[slot], T); }
            default: { coopStoreT(c13, &Cs[slot], T); }
        }
        workgroupBarrier();
        let c = c0 + t % NT;
        let n = c / per_image;
        let v0 = (c % per_image) * T;
        for (var e = 0u; e < T * T / SG; e++) {
            let idx = lane + e * SG;
            let oc = m0 + (t / NT) * T + idx / T;
            let v = v0 + idx % T;
            let oh = v / WP;
            let ow = v % WP;
            if (c < ctiles && oc < p.OC && oh < p.OH && ow < p.OW) {
                var val = Cs[slot + idx] * unscale;
                if (p.has_bias == 1u) {
                    val += bias[oc];
                }
                out[((n * p.OC + oc) * p.OH + oh) * p.OW + ow] = val;
            }
        }
        workgroupBarrier();
    }
}
