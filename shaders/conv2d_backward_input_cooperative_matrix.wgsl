enable f16;
enable wgpu_cooperative_matrix;
// Conv2d backward w.r.t. the input on cooperative matrices, for mixed precision
// (ConvKernels::CooperativeMatrix): the GEMM
//   dinp[n, ic, h, w] = sum_r weight[oc, kh, kw, ic] * dout[n, oh, ow, oc],  r = (kh, kw, oc),
// over the (kh, kw, oc) with h = oh*SH - PH + kh*DH and w = ow*SW - PW + kw*DW for an output pixel
// (oh, ow), with f16 operands and f32 accumulators. The operands are ops::cast_f16's channels-last
// copies, their channels padded with zeros to multiples of RUN: the forward's weight copy, and the
// output gradient's, scaled by 2^e (e at scale_at). A run of RUN reduction rows of one tap is then
// RUN contiguous halves of the output gradient, and a run of RUN input channels RUN contiguous
// halves of the weight.
// weight: (OC, KH, KW, ICP) f16; dout: (N, OH, OW, OCP) f16; dinp: (N, IC, H, W) overwritten, or
// split s's partial sums at s * N*IC*H*W when the output channels are split in chunks (of whole
// runs).
// Dispatch and tiling as conv2d_forward_cooperative_matrix.wgsl: one workgroup per split and tile
// of BM input channels x BN input pixels (over (n, h, w) together), pixel tiles fastest; 2-D grid
// past 65,535; the `_16x16` variant (crate::shaders) has T = 16 with subgroups of 32. Each stage
// stages BK reduction rows: of the weight, a run of input channels of one row by one 8-byte load;
// of the output gradient, a run of rows of one pixel by one; each stored as four consecutive
// halves (the weight's tile as [r][m], the output gradient's as [q][r], both read column-major).
// The (kh, kw, oc) of a stage's rows are worked out once per row (Rows), not once per staged run.
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
// The four subgroups lie SM x SN over the workgroup's tile, each multiplying 2 x 2 tiles of T x T:
// BM rows (channels) by BN columns, BK reduction rows per stage (ops::conv2d::cooperative_shader).
// The `_narrow` variant (crate::shaders::NARROW) has 1 x 4, 2 T rows by 8 T columns, for products
// of at most 2 T rows, of which 2 x 2 would leave half the tiles empty; only the `_16x16` kernels
// have it (WG must be a multiple of BN).
const SM: u32 = 2u;
const SN: u32 = 2u;
const BM: u32 = 2u * SM * T;
const BN: u32 = 2u * SN * T;
const BK: u32 = 2u * T;
// Channels per run (ops::cast_f16::CHANNEL_RUN), one vec4<f16>, and runs per stage.
const RUN: u32 = 4u;
const BG: u32 = BK / RUN;
// Workgroup-memory rows are padded by PAD halves (16 bytes) so that the rows of a tile fall in
// different banks: unpadded, rows of 64 or 128 bytes begin in two banks or one on NVIDIA.
const PAD: u32 = 8u;
const MS: u32 = BM + PAD; // As's row stride (input channels contiguous)
const KS: u32 = BK + PAD; // Bs's row stride (reduction rows contiguous)

// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weight: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

var<workgroup> As: array<f16, BK * MS>; // [r][m], rows of BM
var<workgroup> Bs: array<f16, BN * KS>; // [q][r], rows of BK
var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup
// Two stages' reduction rows r = (kh, kw, oc) (the one staged and the one loaded ahead), as
// (oc, kh * DH, kw * DW, (oc * KH*KW + kh * KW + kw) * ICP, the weight's row); rows past the
// split's end have kh * DH = OUT, so that they fail the output gradient's bounds test, and
// oc = OC, so that they fail the weight's.
var<workgroup> Rows: array<vec4<u32>, 2u * BK>; // stage i's at (i % 2) * BK

// Far outside any tensor: an output row at -OUT or below fails the unsigned bounds test, and two
// of them added stay above -2^31.
const OUT: u32 = 0x20000000u;

// The taps a workgroup's input pixels reach the output through: kh = kh0 + sh * i (i < nh),
// kw = kw0 + sw * j (j < nw). Every tap (kh0 = kw0 = 0, sh = sw = 1) but where the input pixels
// are taken by sub-pixel phase (see main).
struct Taps {
    kh0: u32,
    kw0: u32,
    nh: u32,
    nw: u32,
    sh: u32,
    sw: u32,
}

// The runs an invocation stages per stage: of the weight, and of the output gradient.
const NA: u32 = BM / RUN * BK / WG;
const NB: u32 = BG * BN / WG;

// What an invocation stages, the same in every stage: of the weight, row ak of the stage at input
// channels m0 + (am + WG / BK * e) * RUN; of the output gradient, runs bg + WG / BN * e for the
// input pixel at (hp - PH, wp - PW) of the image whose output gradient begins at pixel dbase.
struct Stager {
    m0: u32,
    am: u32,
    ak: u32,
    bg: u32,
    ICP: u32,
    OCP: u32,
    dbase: u32,
    hp: i32,
    wp: i32,
    phased: bool,
}

// A stage's runs as an invocation loads them, zero where out of range.
struct Loaded {
    a: array<vec4<f16>, NA>,
    b: array<vec4<f16>, NB>,
}

// The runs of the stage whose Rows are at `at`.
fn load(at: u32, st: Stager) -> Loaded {
    var l: Loaded;
    let zero = vec4<f16>(0.0h);
    let wrow = Rows[at + st.ak];
    for (var e = 0u; e < NA; e++) {
        // Input channels m .. m + RUN of weight row wrow.
        let m = st.m0 + (st.am + (WG / BK) * e) * RUN;
        let ok = m < st.ICP && wrow.x < p.OC;
        l.a[e] = select(zero, weight[select(0u, (wrow.w + m) / 4u, ok)], ok);
    }
    for (var e = 0u; e < NB; e++) {
        let rw = Rows[at + (st.bg + (WG / BN) * e) * RUN];
        // The output pixel (oh, ow) that reads this input pixel through tap (kh, kw), if any.
        let th = st.hp - i32(rw.y);
        let tw = st.wp - i32(rw.z);
        // Undivided, a negative th or tw wraps to past any row or column: one unsigned test.
        var oh = u32(th);
        var ow = u32(tw);
        var ok = true;
        // Uniform: strided convolutions divide, the others (most) need not; by phase, every tap
        // divides.
        if (p.SH != 1u || p.SW != 1u) {
            ok = th >= 0 && tw >= 0 && (st.phased || (oh % p.SH == 0u && ow % p.SW == 0u));
            oh /= p.SH;
            ow /= p.SW;
        }
        ok = ok && oh < p.OH && ow < p.OW;
        // Output channels rw.x .. rw.x + RUN of that pixel.
        let i = ((st.dbase + oh * p.OW + ow) * st.OCP + rw.x) / 4u;
        l.b[e] = select(zero, dout[select(0u, i, ok)], ok);
    }
    return l;
}

// Reduction row r, over `taps` and the output channels of a split (beginning at c0, spanning len,
// whole runs); `rows` of them.
fn row(r: u32, rows: u32, c0: u32, len: u32, ICP: u32, taps: Taps) -> vec4<u32> {
    if (r >= rows) {
        return vec4<u32>(p.OC, OUT, 0u, 0u);
    }
    let tap = r / len;
    let kh = taps.kh0 + (tap / taps.nw) * taps.sh;
    let kw = taps.kw0 + (tap % taps.nw) * taps.sw;
    let oc = c0 + r % len;
    return vec4<u32>(oc, kh * p.DH, kw * p.DW, ((oc * p.KH + kh) * p.KW + kw) * ICP);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let HW = p.H * p.W;
    // Strided, undilated convolutions whose input sides are multiples of the strides take their
    // input pixels by sub-pixel phase (h % SH, w % SW), each workgroup's of one phase, and reduce
    // over only the taps that reach it (about one in SH * SW): ops::conv2d::phased decides the
    // same. The others have one phase, every tap.
    // (`&` and `|`, which do not short-circuit: naga takes what `&&` makes for non-uniform.)
    let phased = ((p.SH != 1u) | (p.SW != 1u)) & (p.DH == 1u) & (p.DW == 1u) & (p.H % p.SH == 0u)
        & (p.W % p.SW == 0u);
    let FH = select(1u, p.SH, phased);
    let FW = select(1u, p.SW, phased);
    // A phase's rows and columns of an image, its pixels of an image and over the batch.
    let PR = p.H / FH;
    let PC = p.W / FW;
    let PP = PR * PC;
    let P = p.N * PP;
    let ptiles = (P + BN - 1u) / BN;
    let mtiles = (p.IC + BM - 1u) / BM;
    let tiles = ptiles * mtiles * FH * FW;
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let phase = t / (ptiles * mtiles);
    let m0 = (t % (ptiles * mtiles) / ptiles) * BM;
    let n0 = (t % ptiles) * BN;
    let rh = phase / FW;
    let rw = phase % FW;
    // By phase, the taps with kh = (rh + PH) mod SH (and kw likewise) reach the output.
    let kh0 = select(0u, (rh + p.PH) % FH, phased);
    let kw0 = select(0u, (rw + p.PW) % FW, phased);
    let taps = Taps(kh0, kw0, (p.KH + FH - 1u - kh0) / FH, (p.KW + FW - 1u - kw0) / FW, FH, FW);
    let ICP = (p.IC + RUN - 1u) / RUN * RUN;
    let OCP = (p.OC + RUN - 1u) / RUN * RUN;
    let c0 = s * p.chunk;
    let len = min(c0 + p.chunk, OCP) - c0;
    let rows = taps.nh * taps.nw * len;

    // The input pixel whose column this invocation stages (WG is a multiple of BN): n0 + bq of the
    // phase, at runs bg + WG / BN * e. A column past the pixels has hp = -OUT, so that it fails
    // the bounds test.
    let bq = li % BN;
    let bg = li / BN;
    let q = n0 + bq;
    let r = min(q, P - 1u) % PP;
    let dbase = (min(q, P - 1u) / PP) * p.OH * p.OW;
    let hp = select(-i32(OUT), i32(rh + (r / PC) * FH + p.PH), q < P);
    let wp = i32(rw + (r % PC) * FW + p.PW);
    // The weight's rows it stages (WG is a multiple of BK): row ak of each stage, at runs of input
    // channels am + WG / BK * e.
    let ak = li % BK;
    let am = li / BK;

    let sg = li / SG;
    let lane = li % SG;
    let sm = sg / SN;
    let sn = sg % SN;
    let slot = sg * T * T;
    for (var e = 0u; e < T * T / SG; e++) {
        Cs[slot + lane + e * SG] = 0.0;
    }
    if (li < BK) {
        Rows[li] = row(li, rows, c0, len, ICP, taps);
        Rows[BK + li] = row(BK + li, rows, c0, len, ICP, taps);
    }
    workgroupBarrier();
    var c00 = coopLoadT<tile_c>(&Cs[slot], T);
    var c01 = c00;
    var c10 = c00;
    var c11 = c00;

    // Each stage's global loads are issued a stage ahead, before the products of the stage
    // before it, and stored to workgroup memory after them.
    let st = Stager(m0, am, ak, bg, ICP, OCP, dbase, hp, wp, phased);
    var next = load(0u, st);
    var i = 0u;
    for (var k0 = 0u; k0 < rows; k0 += BK) {
        let l = next;
        for (var e = 0u; e < NA; e++) {
            let to = ak * MS + (am + (WG / BK) * e) * RUN;
            for (var j = 0u; j < 4u; j++) {
                As[to + j] = l.a[e][j];
            }
        }
        for (var e = 0u; e < NB; e++) {
            let to = bq * KS + (bg + (WG / BN) * e) * RUN;
            for (var j = 0u; j < 4u; j++) {
                Bs[to + j] = l.b[e][j];
            }
        }
        workgroupBarrier();
        if (k0 + BK < rows) {
            next = load(((i + 1u) % 2u) * BK, st);
        }
        for (var kk = 0u; kk < BK; kk += T) {
            let a0 = coopLoad<tile_a>(&As[kk * MS + (2u * sm) * T], MS);
            let a1 = coopLoad<tile_a>(&As[kk * MS + (2u * sm + 1u) * T], MS);
            let b0 = coopLoad<tile_b>(&Bs[(2u * sn) * T * KS + kk], KS);
            let b1 = coopLoad<tile_b>(&Bs[(2u * sn + 1u) * T * KS + kk], KS);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
        // Stage i + 2's rows, where stage i's were: read last by stage i's loads, a stage ago.
        if (li < BK) {
            Rows[(i % 2u) * BK + li] = row(k0 + 2u * BK + li, rows, c0, len, ICP, taps);
        }
        i++;
    }

    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16), a
    // multiple of RUN.
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(dout[p.scale_at / 4u].x));
    }
    // Tile i of this subgroup's 2 x 2: rows (input channels) from m0 + (2 sm + i / 2) T, columns
    // (the phase's input pixels) from n0 + (2 sn + i % 2) T.
    for (var i = 0u; i < 4u; i++) {
        if (i == 0u) {
            coopStoreT(c00, &Cs[slot], T);
        } else if (i == 1u) {
            coopStoreT(c01, &Cs[slot], T);
        } else if (i == 2u) {
            coopStoreT(c10, &Cs[slot], T);
        } else {
            coopStoreT(c11, &Cs[slot], T);
        }
        workgroupBarrier();
        for (var e = 0u; e < T * T / SG; e++) {
            let idx = lane + e * SG;
            let ic = m0 + (2u * sm + i / 2u) * T + idx / T;
            let qi = n0 + (2u * sn + i % 2u) * T + idx % T;
            if (ic < p.IC && qi < P) {
                let h = rh + (qi % PP / PC) * FH;
                let w = rw + (qi % PC) * FW;
                let at = ((s * p.N + qi / PP) * p.IC + ic) * HW + h * p.W + w;
                dinp[at] = Cs[slot + idx] * unscale;
            }
        }
        workgroupBarrier();
    }
}
