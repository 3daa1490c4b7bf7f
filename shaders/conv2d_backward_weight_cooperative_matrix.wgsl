enable f16;
enable wgpu_cooperative_matrix;
// Conv2d backward w.r.t. the weight on cooperative matrices, for mixed precision
// (ConvKernels::CooperativeMatrix): for split s, the GEMM
//   part[s, oc, (ic, kh, kw)] = sum over the output pixels q = (n, oh, ow) in [s*chunk,
//   (s+1)*chunk) of dout[n, oh, ow, oc] * inp[n, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW, ic],
// with f16 operands and f32 accumulators. The operands are ops::cast_f16's channels-last copies,
// their channels padded with zeros to multiples of RUN: the forward's input copy, and the output
// gradient's, scaled by 2^e (e at scale_at). The kernel's columns are c = (kh, kw, ic) over
// KH*KW*ICP, so that a run of RUN columns is RUN contiguous halves of the input, and a run of RUN
// output channels RUN contiguous halves of the output gradient.
// inp: (N, H, W, ICP) f16; dout: (N, OH, OW, OCP) f16; part: (splits, OC, IC*KH*KW), overwritten
// (dweight itself with one split; otherwise sum_splits adds the splits).
// Dispatch and tiling as conv2d_forward_cooperative_matrix.wgsl: one workgroup per split and tile
// of BM output channels x BN columns c, column tiles fastest; 2-D grid past 65,535; the `_16x16`
// variant (crate::shaders) has T = 16 with subgroups of 32. Each stage stages BK pixel rows: of
// the output gradient, a run of output channels of one pixel by one 8-byte load; of the input, a
// run of columns of one pixel by one; each stored as four consecutive halves (the output
// gradient's tile as [q][m], read column-major). The (n, oh, ow) of a stage's pixel rows are
// worked out once per row (Rows), not once per staged run.
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
// Channels per run (ops::cast_f16::CHANNEL_RUN), one vec4<f16>.
const RUN: u32 = 4u;
// Workgroup-memory rows are padded by PAD halves (16 bytes) so that the rows of a tile fall in
// different banks: unpadded, rows of 64 or 128 bytes begin in two banks or one on NVIDIA.
const PAD: u32 = 8u;
const MS: u32 = BM + PAD; // As's row stride (output channels contiguous)
const BQ: u32 = BN + PAD; // Bs's row stride (columns contiguous)

// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

var<workgroup> As: array<f16, BK * MS>; // [q][m], rows of BM
var<workgroup> Bs: array<f16, BK * BQ>; // [q][c], rows of BN
var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup
// Two stages' pixel rows q = (n, oh, ow) (the one staged and the one loaded ahead), as
// ((n * H*W + oh*SH * W + ow*SW) * ICP, oh * SH, ow * SW, q * OCP); rows past the split's end
// have oh * SH = OUT, so that they fail the input's bounds test (the output gradient's rows are
// tested against the split's end).
var<workgroup> Rows: array<vec4<u32>, 2u * BK>; // stage i's at (i % 2) * BK

// Far outside any tensor: an input row at OUT or beyond fails the unsigned bounds test, and two of
// them added stay below 2^31.
const OUT: u32 = 0x20000000u;

// The runs an invocation stages per stage: of the output gradient, and of the input.
const NA: u32 = BM / RUN * BK / WG;
const NB: u32 = BK * (BN / RUN) / WG;

// What an invocation stages, the same in every stage: of the output gradient, pixel row ak of the
// stage at output channels m0 + (am + WG / BK * e) * RUN; of the input, pixel rows
// bq + WG / (BN / RUN) * e of its run of columns, at (dh, dw) from the output pixel's top left
// (dh = OUT past the columns) and base from its offset.
struct Stager {
    m0: u32,
    am: u32,
    ak: u32,
    bq: u32,
    OCP: u32,
    q_end: u32,
    dh: i32,
    dw: i32,
    base: i32,
}

// A stage's runs as an invocation loads them, zero where out of range.
struct Loaded {
    a: array<vec4<f16>, NA>,
    b: array<vec4<f16>, NB>,
}

// The runs of the stage beginning at pixel row q0, whose Rows are at `at`.
fn load(q0: u32, at: u32, st: Stager) -> Loaded {
    var l: Loaded;
    let zero = vec4<f16>(0.0h);
    let drow = Rows[at + st.ak].w;
    for (var e = 0u; e < NA; e++) {
        // Output channels m .. m + RUN of pixel row ak.
        let m = st.m0 + (st.am + (WG / BK) * e) * RUN;
        let ok = m < st.OCP && q0 + st.ak < st.q_end;
        l.a[e] = select(zero, dout[select(0u, (drow + m) / 4u, ok)], ok);
    }
    for (var e = 0u; e < NB; e++) {
        let rw = Rows[at + st.bq + (WG / (BN / RUN)) * e];
        let ok = u32(i32(rw.y) + st.dh) < p.H && u32(i32(rw.z) + st.dw) < p.W;
        l.b[e] = select(zero, inp[select(0u, u32(i32(rw.x) + st.base) / 4u, ok)], ok);
    }
    return l;
}

// Pixel row q.
fn row(q: u32, q_end: u32, ICP: u32, OCP: u32) -> vec4<u32> {
    if (q >= q_end) {
        return vec4<u32>(0u, OUT, 0u, 0u);
    }
    let OHW = p.OH * p.OW;
    let n = q / OHW;
    let pix = q % OHW;
    let y = (pix / p.OW) * p.SH;
    let x = (pix % p.OW) * p.SW;
    return vec4<u32>((n * p.H * p.W + y * p.W + x) * ICP, y, x, q * OCP);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let KHW = p.KH * p.KW;
    let ICP = (p.IC + RUN - 1u) / RUN * RUN;
    let OCP = (p.OC + RUN - 1u) / RUN * RUN;
    let KP = KHW * ICP;
    let ctiles = (KP + BN - 1u) / BN;
    let tiles = ctiles * ((p.OC + BM - 1u) / BM);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let m0 = (t / ctiles) * BM;
    let n0 = (t % ctiles) * BN;
    let K = p.IC * KHW;
    let P = p.N * p.OH * p.OW;
    let q_begin = s * p.chunk;
    let q_end = min((s + 1u) * p.chunk, P);

    // The run of columns whose input values this invocation stages (WG is a multiple of BN / RUN):
    // n0 + bc * RUN, at pixel rows bq + WG / (BN / RUN) * e. Staging a run is then two adds and an
    // unsigned test for the bounds (a run past the columns has dh = OUT) and one add for its
    // offset, base + Rows[kk].x.
    let bc = li % (BN / RUN);
    let bq = li / (BN / RUN);
    let c = n0 + bc * RUN;
    let tap = min(c, KP - 1u) / ICP;
    let dy = i32((tap / p.KW) * p.DH) - i32(p.PH);
    let dw = i32((tap % p.KW) * p.DW) - i32(p.PW);
    let dh = select(i32(OUT), dy, c < KP);
    let base = (dy * i32(p.W) + dw) * i32(ICP) + i32(min(c, KP - 1u) % ICP);
    // The pixel row whose output gradient it stages (WG is a multiple of BK): q0 + ak, at runs of
    // output channels am + WG / BK * e.
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
        Rows[li] = row(q_begin + li, q_end, ICP, OCP);
        Rows[BK + li] = row(q_begin + BK + li, q_end, ICP, OCP);
    }
    workgroupBarrier();
    var c00 = coopLoadT<tile_c>(&Cs[slot], T);
    var c01 = c00;
    var c10 = c00;
    var c11 = c00;

    // Each stage's global loads are issued a stage ahead, before the products of the stage
    // before it, and stored to workgroup memory after them.
    let st = Stager(m0, am, ak, bq, OCP, q_end, dh, dw, base);
    var next = load(q_begin, 0u, st);
    var i = 0u;
    for (var q0 = q_begin; q0 < q_end; q0 += BK) {
        let l = next;
        for (var e = 0u; e < NA; e++) {
            let to = ak * MS + (am + (WG / BK) * e) * RUN;
            for (var j = 0u; j < 4u; j++) {
                As[to + j] = l.a[e][j];
            }
        }
        for (var e = 0u; e < NB; e++) {
            let to = (bq + (WG / (BN / RUN)) * e) * BQ + bc * RUN;
            for (var j = 0u; j < 4u; j++) {
                Bs[to + j] = l.b[e][j];
            }
        }
        workgroupBarrier();
        if (q0 + BK < q_end) {
            next = load(q0 + BK, ((i + 1u) % 2u) * BK, st);
        }
        for (var kk = 0u; kk < BK; kk += T) {
            let a0 = coopLoad<tile_a>(&As[kk * MS + (2u * sm) * T], MS);
            let a1 = coopLoad<tile_a>(&As[kk * MS + (2u * sm + 1u) * T], MS);
            let b0 = coopLoadT<tile_b>(&Bs[kk * BQ + (2u * sn) * T], BQ);
            let b1 = coopLoadT<tile_b>(&Bs[kk * BQ + (2u * sn + 1u) * T], BQ);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
        // Stage i + 2's rows, where stage i's were: read last by stage i's loads, a stage ago.
        if (li < BK) {
            Rows[(i % 2u) * BK + li] = row(q0 + 2u * BK + li, q_end, ICP, OCP);
        }
        i++;
    }

    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16), a
    // multiple of RUN.
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(dout[p.scale_at / 4u].x));
    }
    // Tile i of this subgroup's 2 x 2: rows (output channels) from m0 + (2 sm + i / 2) T, columns
    // c = (kh, kw, ic) from n0 + (2 sn + i % 2) T, stored at (oc, ic, kh, kw).
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
            let oc = m0 + (2u * sm + i / 2u) * T + idx / T;
            let col = n0 + (2u * sn + i % 2u) * T + idx % T;
            let ic = col % ICP;
            if (oc < p.OC && col < KP && ic < p.IC) {
                part[s * p.OC * K + oc * K + ic * KHW + col / ICP] = Cs[slot + idx] * unscale;
            }
        }
        workgroupBarrier();
    }
}
