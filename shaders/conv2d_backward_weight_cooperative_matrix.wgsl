enable f16;
enable wgpu_cooperative_matrix;
// Conv2d backward w.r.t. the weight on cooperative matrices, for mixed precision
// (ConvKernels::CooperativeMatrix): for split s, the GEMM
//   part[s, oc, k] = sum over output pixels q in [s*chunk, (s+1)*chunk) of (n, oh, ow) of
//   dout[n, oc, oh, ow] * inp[n, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW, ic],  k = (ic, kh, kw),
// with f16 operands (ops::cast_f16's copies: the input the forward's channels-last one, its
// channels padded to ICP, a multiple of RUN; the output gradient scaled by 2^e, e at scale_at) and
// f32 accumulators. inp: (N, H, W, ICP) f16; dout: (N, OC, OH, OW) f16; part: (splits, OC,
// IC*KH*KW), overwritten (dweight itself with one split; otherwise sum_splits adds the splits).
// Dispatch and tiling as conv2d_forward_cooperative_matrix.wgsl: one workgroup per split and tile
// of BM output channels x BN weight columns k, k tiles fastest; 2-D grid past 65,535; the `_16x16`
// variant (crate::shaders) has T = 16 with subgroups of 32. The (n, oh, ow) of a stage's pixel rows
// are worked out once per row (Rows), not once per staged element.
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
// Workgroup-memory rows are padded by PAD halves (16 bytes) so that the rows of a tile fall in
// different banks: unpadded, Bs's rows of 128 bytes all begin in bank 0 on NVIDIA.
const PAD: u32 = 8u;
const AK: u32 = BK + PAD; // As's row stride
const BQ: u32 = BN + PAD; // Bs's row stride

// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f16>;
@group(0) @binding(2) var<storage, read> dout: array<f16>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

var<workgroup> As: array<f16, BM * AK>; // [m][q], rows of BK
var<workgroup> Bs: array<f16, BK * BQ>; // [q][k], rows of BN
var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup
// The current stage's pixel rows q = (n, oh, ow), as (n * IC*H*W + oh*SH * W + ow*SW, oh * SH,
// ow * SW, n * OC*OH*OW + oh * OW + ow); rows past the split's end have oh * SH = OUT, so that
// they fail the bounds test (and w clamped to the split's last pixel; the caller tests q < q_end
// for the output gradient itself).
var<workgroup> Rows: array<vec4<u32>, BK>;

// Far outside any tensor: an input row at OUT or beyond fails the unsigned bounds test, and two of
// them added stay below 2^31.
const OUT: u32 = 0x20000000u;

// Channels per run of the input's copy (ops::cast_f16::CHANNEL_RUN).
const RUN: u32 = 8u;

// The input copy's channels, padded.
fn icp() -> u32 {
    return (p.IC + RUN - 1u) / RUN * RUN;
}

// Pixel row q.
fn row(q: u32, q_end: u32) -> vec4<u32> {
    let OHW = p.OH * p.OW;
    let qr = min(q, q_end - 1u);
    let n = qr / OHW;
    let pix = qr % OHW;
    let y = (pix / p.OW) * p.SH;
    let x = (pix % p.OW) * p.SW;
    let d = n * p.OC * OHW + pix;
    if (q >= q_end) {
        return vec4<u32>(0u, OUT, 0u, d);
    }
    return vec4<u32>((n * p.H * p.W + y * p.W + x) * icp(), y, x, d);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let KHW = p.KH * p.KW;
    let K = p.IC * KHW;
    let ktiles = (K + BN - 1u) / BN;
    let tiles = ktiles * ((p.OC + BM - 1u) / BM);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let m0 = (t / ktiles) * BM;
    let n0 = (t % ktiles) * BN;
    let OHW = p.OH * p.OW;
    let HW = p.H * p.W;
    let P = p.N * OHW;
    let q_begin = s * p.chunk;
    let q_end = min((s + 1u) * p.chunk, P);

    // The weight column k whose input values this invocation stages (WG is a multiple of BN):
    // n0 + bcol, at pixel rows bq + WG / BN * e.
    // Staging an element is then two adds and an unsigned test for the bounds (a column past
    // the weight's has dh = OUT) and one add for its offset, base + Rows[kk].x.
    let bcol = li % BN;
    let bq = li / BN;
    let kc = n0 + bcol;
    let rr = min(kc, K - 1u) % KHW;
    let dy = i32((rr / p.KW) * p.DH) - i32(p.PH);
    let dw = i32((rr % p.KW) * p.DW) - i32(p.PW);
    let dh = select(i32(OUT), dy, kc < K);
    let base = i32(min(kc, K - 1u) / KHW) + (dy * i32(p.W) + dw) * i32(icp());
    // The output pixel whose gradient it stages (WG is a multiple of BK): q0 + ak, channels
    // am + WG / BK * e.
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
        Rows[li] = row(q_begin + li, q_end);
    }
    workgroupBarrier();
    var c00 = coopLoadT<tile_c>(&Cs[slot], T);
    var c01 = c00;
    var c10 = c00;
    var c11 = c00;

    for (var q0 = q_begin; q0 < q_end; q0 += BK) {
        let qa = q0 + ak;
        let drow = Rows[ak].w;
        for (var e = 0u; e < BM * BK / WG; e++) {
            let m = am + (WG / BK) * e;
            let ok = m0 + m < p.OC && qa < q_end;
            As[m * AK + ak] = select(0.0h, dout[select(0u, drow + (m0 + m) * OHW, ok)], ok);
        }
        for (var e = 0u; e < BK * BN / WG; e++) {
            let kk = bq + (WG / BN) * e;
            let rw = Rows[kk];
            let ok = u32(i32(rw.y) + dh) < p.H && u32(i32(rw.z) + dw) < p.W;
            let x = inp[select(0u, u32(i32(rw.x) + base), ok)];
            Bs[kk * BQ + bcol] = select(0.0h, x, ok);
        }
        workgroupBarrier();
        // The next stage's rows: Rows is read again only after this stage's closing barrier.
        if (li < BK) {
            Rows[li] = row(q0 + BK + li, q_end);
        }
        for (var kk = 0u; kk < BK; kk += T) {
            let a0 = coopLoadT<tile_a>(&As[(2u * sm) * T * AK + kk], AK);
            let a1 = coopLoadT<tile_a>(&As[(2u * sm + 1u) * T * AK + kk], AK);
            let b0 = coopLoadT<tile_b>(&Bs[kk * BQ + (2u * sn) * T], BQ);
            let b1 = coopLoadT<tile_b>(&Bs[kk * BQ + (2u * sn + 1u) * T], BQ);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }

    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16).
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(dout[p.scale_at]));
    }
    // Tile i of this subgroup's 2 x 2: rows (output channels) from m0 + (2 sm + i / 2) T, columns
    // (k) from n0 + (2 sn + i % 2) T.
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
            let k = n0 + (2u * sn + i % 2u) * T + idx % T;
            if (oc < p.OC && k < K) {
                part[s * p.OC * K + oc * K + k] = Cs[slot + idx] * unscale;
            }
        }
        workgroupBarrier();
    }
}
