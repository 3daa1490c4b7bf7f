enable f16;
enable wgpu_cooperative_matrix;
// Conv2d forward on cooperative matrices (tensor cores on NVIDIA), for mixed precision
// (ConvKernels::CooperativeMatrix): the implicit GEMM
//   out[n, oc, oh, ow] = bias[oc] + sum_k weight[oc, k] * col[k, (n, oh, ow)],
//   k = (kh, kw, ic), col[k, q] = inp[n, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW, ic] (0 outside),
// with f16 operands and f32 accumulators. The operands are the channels-last copies ops::cast_f16
// stages, their channels padded with zeros to ICP, a multiple of RUN, so that a run of RUN
// reduction rows (channels) is RUN contiguous halves in both.
// inp: (N, H, W, ICP) f16; weight: (OC, KH, KW, ICP) f16; bias: (OC,) f32 (read when has_bias);
// out: (N, OC, OH, OW) overwritten, or split s's partial sums at s * N*OC*OH*OW when the channels
// are split in chunks (of whole runs).
// Dispatch: one workgroup per split and tile of BM output channels x BN output pixels (pixels over
// (n, oh, ow) together), pixel tiles fastest; 2-D grid past 65,535. Each stage stages BK reduction
// rows, BK / RUN runs, of the weight (BM x BK) and of col (BK x BN, stored as its transpose) in
// workgroup memory, a run by one 8-byte load and four consecutive halves stored, zero where out
// of range; the (kh, kw, ic) of its runs are worked out once per run (Runs), not once per staged
// run; four subgroups, SM x SN over the workgroup's tile, multiply 2 x 2 tiles of T x T each.
// Results leave through workgroup memory, one tile per subgroup at a time, so that ragged edges
// are skipped.
// As written, T = 8 with subgroups of 8 (lavapipe); its `_16x16` variant (crate::shaders) has
// T = 16 with subgroups of 32 (NVIDIA). The host runs a variant only where the adapter multiplies
// T x T x T f16 matrices into f32 with subgroups of exactly SG invocations, which are taken to be
// aligned runs of the workgroup (as on every adapter seen).
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
// Both operands lie in workgroup memory with the reduction contiguous (the weight as [m][k], col
// as [q][k], read column-major), so that a staged run is 4 consecutive halves. Their rows are
// padded by PAD halves (16 bytes) so that the rows of a tile fall in different banks: unpadded,
// rows of 64 bytes begin in two banks only on NVIDIA.
const PAD: u32 = 8u;
const KS: u32 = BK + PAD; // the row stride of As and Bs

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<f16, BM * KS>; // [m][k], rows of BK
var<workgroup> Bs: array<f16, BN * KS>; // [q][k], rows of BK
var<workgroup> Cs: array<f32, 4u * T * T>; // one T x T tile per subgroup
// Two stages' runs (the one staged and the one loaded ahead), each as (its col offset
// (kh*DH * W + kw*DW) * ICP + ic, kh * DH, kw * DW, its weight offset (kh * KW + kw) * ICP + ic),
// ic its first channel; runs past the split's end have kh * DH = OUT, so that they fail the
// bounds test.
var<workgroup> Runs: array<vec4<u32>, 2u * BG>; // stage i's at (i % 2) * BG

// Far outside any tensor: an input row at OUT or beyond fails the unsigned bounds test, and two of
// them added stay below 2^31.
const OUT: u32 = 0x20000000u;

// The runs an invocation stages per stage: of the weight, and of col.
const NA: u32 = BM * BG / WG;
const NB: u32 = BG * BN / WG;

// What an invocation stages, the same in every stage: weight runs ag of the stage for channels
// m0 + am + WG / BG * e; col runs bg + WG / BN * e of pixel column bq, whose input rows and
// columns begin at ih0 and iw0, its offset base.
struct Stager {
    m0: u32,
    am: u32,
    ag: u32,
    bg: u32,
    runs: u32,
    KP: u32,
    ih0: i32,
    iw0: i32,
    base: i32,
}

// A stage's runs as an invocation loads them, zero where out of range.
struct Loaded {
    a: array<vec4<f16>, NA>,
    b: array<vec4<f16>, NB>,
}

// The runs of the stage beginning at run g0, whose Runs are at `at`.
fn load(g0: u32, at: u32, st: Stager) -> Loaded {
    var l: Loaded;
    let zero = vec4<f16>(0.0h);
    let wrun = Runs[at + st.ag].w;
    for (var e = 0u; e < NA; e++) {
        let m = st.m0 + st.am + (WG / BG) * e;
        let ok = m < p.OC && g0 + st.ag < st.runs;
        l.a[e] = select(zero, weight[select(0u, (m * st.KP + wrun) / 4u, ok)], ok);
    }
    for (var e = 0u; e < NB; e++) {
        let rw = Runs[at + st.bg + (WG / BN) * e];
        let ok = u32(st.ih0 + i32(rw.y)) < p.H && u32(st.iw0 + i32(rw.z)) < p.W;
        l.b[e] = select(zero, inp[select(0u, u32(st.base + i32(rw.x)) / 4u, ok)], ok);
    }
    return l;
}

// Run r of a split whose channels begin at c0 and span len (whole runs); `runs` of them.
fn run_at(r: u32, runs: u32, c0: u32, len: u32, ICP: u32) -> vec4<u32> {
    if (r >= runs) {
        return vec4<u32>(0u, OUT, 0u, 0u);
    }
    let tap = (r * RUN) / len;
    let ic = c0 + (r * RUN) % len;
    let y = (tap / p.KW) * p.DH;
    let x = (tap % p.KW) * p.DW;
    return vec4<u32>((y * p.W + x) * ICP + ic, y, x, tap * ICP + ic);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let OHW = p.OH * p.OW;
    let P = p.N * OHW;
    let ptiles = (P + BN - 1u) / BN;
    let tiles = ptiles * ((p.OC + BM - 1u) / BM);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let m0 = (t / ptiles) * BM;
    let n0 = (t % ptiles) * BN;
    let HW = p.H * p.W;
    let KHW = p.KH * p.KW;
    let ICP = (p.IC + RUN - 1u) / RUN * RUN;
    let c0 = s * p.chunk;
    let len = min(c0 + p.chunk, ICP) - c0;
    let runs = KHW * len / RUN;

    // The column of col this invocation stages (WG is a multiple of BN): pixel n0 + bq, at runs
    // bg + WG / BN * e. Staging a run is then two adds and an unsigned test for the bounds (a
    // column past the pixels has ih0 = OUT) and one add for its offset, base + Runs[gg].x.
    let bq = li % BN;
    let bg = li / BN;
    let q = n0 + bq;
    let r = min(q, P - 1u) % OHW;
    let ih = i32((r / p.OW) * p.SH) - i32(p.PH);
    let iw0 = i32((r % p.OW) * p.SW) - i32(p.PW);
    let ih0 = select(i32(OUT), ih, q < P);
    let base = i32((min(q, P - 1u) / OHW) * HW * ICP) + (ih * i32(p.W) + iw0) * i32(ICP);
    // The weight's run it stages (WG is a multiple of BG): run ag of each stage, of channels
    // am + WG / BG * e.
    let ag = li % BG;
    let am = li / BG;
    let KP = KHW * ICP;

    let sg = li / SG;
    let lane = li % SG;
    let sm = sg / SN;
    let sn = sg % SN;
    let slot = sg * T * T;
    for (var e = 0u; e < T * T / SG; e++) {
        Cs[slot + lane + e * SG] = 0.0;
    }
    if (li < BG) {
        Runs[li] = run_at(li, runs, c0, len, ICP);
        Runs[BG + li] = run_at(BG + li, runs, c0, len, ICP);
    }
    workgroupBarrier();
    var c00 = coopLoadT<tile_c>(&Cs[slot], T);
    var c01 = c00;
    var c10 = c00;
    var c11 = c00;

    // Each stage's global loads are issued a stage ahead, before the products of the stage
    // before it, and stored to workgroup memory after them.
    let st = Stager(m0, am, ag, bg, runs, KP, ih0, iw0, base);
    var next = load(0u, 0u, st);
    var i = 0u;
    for (var g0 = 0u; g0 < runs; g0 += BG) {
        let l = next;
        for (var e = 0u; e < NA; e++) {
            let to = (am + (WG / BG) * e) * KS + ag * RUN;
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
        if (g0 + BG < runs) {
            next = load(g0 + BG, ((i + 1u) % 2u) * BG, st);
        }
        for (var kk = 0u; kk < BK; kk += T) {
            let a0 = coopLoadT<tile_a>(&As[(2u * sm) * T * KS + kk], KS);
            let a1 = coopLoadT<tile_a>(&As[(2u * sm + 1u) * T * KS + kk], KS);
            let b0 = coopLoad<tile_b>(&Bs[(2u * sn) * T * KS + kk], KS);
            let b1 = coopLoad<tile_b>(&Bs[(2u * sn + 1u) * T * KS + kk], KS);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
        // Stage i + 2's runs, where stage i's were: read last by stage i's loads, a stage ago.
        if (li < BG) {
            Runs[(i % 2u) * BG + li] = run_at(g0 + 2u * BG + li, runs, c0, len, ICP);
        }
        i++;
    }

    // Tile i of this subgroup's 2 x 2: rows (channels) from m0 + (2 sm + i / 2) T, columns
    // (pixels) from n0 + (2 sn + i % 2) T.
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
            let qo = n0 + (2u * sn + i % 2u) * T + idx % T;
            if (oc < p.OC && qo < P) {
                var v = Cs[slot + idx];
                if (p.has_bias == 1u && s == 0u) {
                    v += bias[oc];
                }
                out[s * P * p.OC + (qo / OHW) * p.OC * OHW + oc * OHW + qo % OHW] = v;
            }
        }
        workgroupBarrier();
    }
}
