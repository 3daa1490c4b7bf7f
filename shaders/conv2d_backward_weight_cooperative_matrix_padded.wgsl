enable f16;
enable wgpu_cooperative_matrix;
// Conv2d weight gradient on cooperative matrices for mixed precision, from the padded copies of
// conv2d_forward_cooperative_matrix_padded.wgsl's forward (ops::conv2d::padded_weight_gradient):
//   dweight[oc, ic, kh, kw] = sum_{n, v} dout'[n, v, oc] * inp'[n, (v + kh * WP) * IC + kw * IC + ic]
// over each image's virtual columns v = oh * WP + ow (ow < WP; dout' is zero at ow >= OW and
// past the OH rows, so that the columns the forward drops add nothing), with f16 operands and
// f32 accumulators:
// - inp' (N, HP, WP, IC) f16: the input channels last with its padding as zeros, then slack;
// - dout' (N, YP, WP, OC) f16: the output gradient channels last, scaled by 2^e (e at scale_at),
//   zero past OW in each row and past OH rows: YP rows hold the image's columns in whole tiles;
//   then slack. A block of channels past OC loads the next pixel's (or the slack) as its last
//   rows, whose sums are dropped.
// A tile of dout' (channels by columns) is then one column-major load of stride OC, and a tile of
// inp' (columns by a kernel row's reduction rows j = kw * IC + ic) one row-major load of stride
// IC; neither is staged.
// out: dweight (OC, IC, KH, KW) f32, overwritten, or split s's partial sums at s * OC*IC*KH*KW
// when the images are split in chunks of `chunk`.
// Dispatch: one workgroup per split and block of MT T output channels and 4 NT column tiles of
// (kh, kw, ic) (column tiles fastest, then blocks, then splits), 2-D grid past 65,535; each of its
// four subgroups multiplies MT x NT tiles of T x T, the same channels, NT consecutive column tiles
// of its own. Results leave through workgroup memory, one tile per subgroup at a time.
// As written, T = 8 with subgroups of 8 (lavapipe); its `_16x16` variant (crate::shaders) has
// T = 16 with subgroups of 32 (NVIDIA). Loads from memory need 16-byte aligned pointers and
// strides: IC and OC are multiples of 8, KW * IC of 16, which the host checks.
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
// The output gradient copy's image: whole tiles of 16 columns (ops::conv2d::PADDED_ROWS).
const ROWS: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f16>;
@group(0) @binding(2) var<storage, read> dout: array<f16>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup

// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let IC = p.IC;
    let OC = p.OC;
    let HP = p.H + 2u * p.PH;
    let WP = p.W + 2u * p.PW;
    let J = p.KW * IC;
    let K = p.KH * J;
    let V = p.OH * WP; // virtual columns per image
    let VT = (V + T - 1u) / T * T; // of them in whole tiles
    let YP = ((V + ROWS - 1u) / ROWS * ROWS + WP - 1u) / WP;
    let ctiles = K / T;
    let groups = (ctiles + 4u * NT - 1u) / (4u * NT);
    let blocks = (OC + MT * T - 1u) / (MT * T);
    // Whole workgroups return or none of their subgroups does (the barriers below).
    if (g >= groups * blocks * p.splits) {
        return;
    }
    let s = g / (groups * blocks);
    let m0 = (g / groups % blocks) * MT * T;
    let sg = li / SG;
    let lane = li % SG;
    let c0 = (g % groups) * 4u * NT + sg * NT;

    // Each column tile's offset in an image of inp' from its first virtual column: kernel row kh,
    // reduction rows j0.. of it (J is whole tiles). Tiles past the last are loaded as the last and
    // dropped.
    var boff: array<u32, NT>;
    for (var i = 0u; i < NT; i++) {
        let k0 = min(c0 + i, ctiles - 1u) * T;
        boff[i] = (k0 / J) * WP * IC + k0 % J;
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
    let n_end = min((s + 1u) * p.chunk, p.N);
    for (var n = s * p.chunk; n < n_end; n++) {
        let xbase = n * HP * WP * IC;
        let dbase = n * YP * WP * OC;
        for (var v = 0u; v < VT; v += T) {
            let a0 = coopLoad<tile_a>(&dout[dbase + v * OC + m0], OC);
            let a1 = coopLoad<tile_a>(&dout[dbase + v * OC + m0 + T], OC);
            let x = xbase + v * IC;
            let b0 = coopLoadT<tile_b>(&inp[x + boff[0]], IC);
            let b1 = coopLoadT<tile_b>(&inp[x + boff[1]], IC);
            let b2 = coopLoadT<tile_b>(&inp[x + boff[2]], IC);
            let b3 = coopLoadT<tile_b>(&inp[x + boff[3]], IC);
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
        unscale = exp2(-f32(dout[p.scale_at]));
    }
    // Tile (r, i) of this subgroup's MT x NT: channels from m0 + r T, column tile c0 + i, the
    // columns (kh, kw, ic) of the weight (OC, IC, KH, KW).
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
        for (var e = 0u; e < T * T / SG; e++) {
            let idx = lane + e * SG;
            let oc = m0 + (t / NT) * T + idx / T;
            let k = c * T + idx % T;
            if (c < ctiles && oc < OC) {
                let kh = k / J;
                let kw = k % J / IC;
                let ic = k % IC;
                out[s * OC * K + ((oc * IC + ic) * p.KH + kh) * p.KW + kw] = Cs[slot + idx] * unscale;
            }
        }
        workgroupBarrier();
    }
}
