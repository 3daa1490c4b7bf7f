// Conv2d backward w.r.t. the weight, split over the batch: for split s,
//   part[s, oc, k] = sum over output pixels q in [s*chunk, (s+1)*chunk) of (n, oh, ow) of
//   dout[n, oc, oh, ow] * inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW],  k = (ic, kh, kw).
// inp: (N, IC, H, W); dout: (N, OC, OH, OW); part: (splits, OC, IC*KH*KW), overwritten. With one
// split, part is dweight itself; otherwise sum_splits adds the splits in order.
// Dispatch: one invocation per (split, TC output channels, TK k: 8 and 8; 16 and 6 in the `_wide`
// variant), the k strided across `stride` invocations per tile of channels (a multiple of the
// subgroup size), or, for kernels 3 or 5 wide with stride and dilation 1 along the rows, the taps
// of TK / KW whole kernel rows each (ops::conv2d::weight_tile_k); ceil(count / 64) workgroups of 64
// (2-D grid past 65,535).
// Register-blocked, no workgroup memory, no atomics.
// The `_subgroups` form of conv2d_backward_weight.wgsl, for CPU adapters with subgroups of at least 8
// (lavapipe; ConvKernels::Subgroups): the operands a tile of channels shares are loaded once per
// subgroup and broadcast (tile_operands), and `stride` is chosen so that no subgroup spans two tiles.
// Accumulators are acc[j][i] with loops of at most 4 or 8, which lavapipe unrolls into registers
// (an NVIDIA compiler did not: docs/PERFORMANCE.md, history 14), hence a kernel of its own.
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
    // Invocations per tile of channels (ops::conv2d::Product): at least the tiles of the other
    // dimension, a multiple of the subgroup size.
    stride: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

// The operands' element type; the kernel's `_f16` variant reads them as f16 (crate::shaders).
alias operand = f32;
// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<operand>;
@group(0) @binding(2) var<storage, read> dout: array<operand>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

// Channels per tile (ops::conv2d::TILE_CHANNELS), held as TV vec4s; 16 in the `_wide` variant
// (crate::shaders::WIDE, ops::conv2d::WIDE_TILE_CHANNELS), which takes 6 k instead of 8
// (ops::conv2d::WIDE_SUBGROUPS_WEIGHT_TILE_K): two rows of a 3 wide kernel or one of a 5 wide one,
// for the sliding window below. lavapipe keeps up to about 96 accumulators per invocation in
// registers; 128 (16 channels by 8 k, or 8 by 16) it kept in memory, 3-5x slower (history 54).
const WIDE: bool = false;
const TC: u32 = 8u;
const TV: u32 = TC / 4u;
const TK: u32 = select(8u, 6u, WIDE);

// The tile's TC shared operands (its channels' output gradients), channel c's at rows[c / 4][c % 4] + at:
// invocation `lane` of each subgroup loads channels lane % 8, lane % 8 + 8, ... and
// subgroupBroadcast hands them round. On lavapipe every storage load is a loop over the SIMD lanes,
// so one load per invocation instead of TC saves most of them. Only vec4 components are chosen per
// invocation: an array index that varied per invocation would put the array in scratch memory.
fn tile_operands(rows: array<vec4<u32>, TV>, at: u32, lane: u32) -> array<vec4<f32>, TV> {
    let c = lane % 8u;
    var v: array<vec4<f32>, TV>;
    for (var h = 0u; h < TV; h += 2u) {
        let m = f32(dout[select(rows[h + 1u][c % 4u], rows[h][c % 4u], c < 4u) + at]);
        v[h] = vec4<f32>(subgroupBroadcast(m, 0u), subgroupBroadcast(m, 1u), subgroupBroadcast(m, 2u), subgroupBroadcast(m, 3u));
        v[h + 1u] = vec4<f32>(subgroupBroadcast(m, 4u), subgroupBroadcast(m, 5u), subgroupBroadcast(m, 6u), subgroupBroadcast(m, 7u));
    }
    return v;
}

// The rows of tile_operands: channel first + c's (clamped to `last`) times `step`.
fn tile_rows(first: u32, last: u32, step: u32) -> array<vec4<u32>, TV> {
    var rows: array<vec4<u32>, TV>;
    for (var i = 0u; i < TV; i++) {
        let c = vec4<u32>(first + 4u * i) + vec4<u32>(0u, 1u, 2u, 3u);
        rows[i] = min(c, vec4<u32>(last)) * step;
    }
    return rows;
}

// inp at column iw of the row at `row` (of the image at xb; -1 where the row is padding); zero in
// the padding.
fn input(xb: u32, row: i32, iw: i32) -> f32 {
    let ok = row >= 0 && iw >= 0 && iw < i32(p.W);
    return select(0.0, f32(inp[xb + u32(select(0, row + iw, ok))]), ok);
}

// acc += the products of output pixels q .. q_end - 1 (of N * OH * OW), output row by output row:
// each column j's input row offset (or -1 where that row is padding) is worked out once per row,
// and the loop over a row's pixels has no branches. KW: the width of the kernels whose whole rows
// the invocation takes in a sliding window (3 or 5, slide_rows), or 0, each of the TK columns then
// loading its own input. main calls this once per KW, so that KW is a constant once inlined: every
// loop over the columns unrolls, x and acc stay in registers, and the columns past TK / KW * KW are
// never touched (with them in the loop over rows, lavapipe kept them in registers: Tudui's weight
// gradients 49 -> 57 ms at batch 64).
fn accumulate(acc: ptr<function, array<array<vec4<f32>, TV>, TK>>, KW: u32, q_start: u32, q_end: u32,
              xoff: array<u32, TK>, dh: array<i32, TK>, dw: array<i32, TK>, doc: array<vec4<u32>, TV>,
              lane: u32) {
    let OHW = p.OH * p.OW;
    var q = q_start;
    var n = q / OHW;
    var oh = (q % OHW) / p.OW;
    var ow0 = q % p.OW;
    while (q < q_end) {
        let ow_end = min(p.OW, ow0 + (q_end - q));
        var row: array<i32, TK>;
        for (var j = 0u; j < TK; j++) {
            let ih = i32(oh * p.SH) + dh[j];
            row[j] = select(-1, i32(xoff[j]) + ih * i32(p.W), ih >= 0 && ih < i32(p.H));
        }
        let db = n * p.OC * OHW + oh * p.OW;
        let xb = n * p.IC * p.H * p.W;
        if (KW == 0u) {
            for (var ow = ow0; ow < ow_end; ow++) {
                let d = tile_operands(doc, db + ow, lane);
                let iw0 = i32(ow * p.SW);
                for (var j = 0u; j < TK; j++) {
                    let x = input(xb, row[j], iw0 + dw[j]);
                    for (var i = 0u; i < TV; i++) {
                        (*acc)[j][i] = fma(d[i], vec4<f32>(x), (*acc)[j][i]);
                    }
                }
            }
        } else {
            slide_rows(acc, KW, xb, row, dw, ow0, ow_end, doc, db, lane);
        }
        q += ow_end - ow0;
        ow0 = 0u;
        oh += 1u;
        if (oh == p.OH) {
            oh = 0u;
            n += 1u;
        }
    }
}

// The sliding window along output pixels ow0 .. ow_end - 1 of one output row, for kernels KW wide:
// the invocation's TK / KW kernel rows, column j = r * KW + c of row r reading the input row at
// row[j] (the same for the whole kernel row). Along an output row each kernel row's inputs for the
// next pixel are those for this one moved by a column, so a pixel loads one input per kernel row
// instead of KW (as in conv2d_forward_subgroups.wgsl; history 56).
fn slide_rows(acc: ptr<function, array<array<vec4<f32>, TV>, TK>>, KW: u32, xb: u32, row: array<i32, TK>,
              dw: array<i32, TK>, ow0: u32, ow_end: u32, doc: array<vec4<u32>, TV>, db: u32, lane: u32) {
    let rows = TK / KW;
    // x[j]: column j's input for the current pixel.
    var x: array<f32, TK>;
    for (var r = 0u; r < rows; r++) {
        for (var c = 1u; c < KW; c++) {
            x[r * KW + c] = input(xb, row[r * KW], i32(ow0) + dw[r * KW + c - 1u]);
        }
    }
    for (var ow = ow0; ow < ow_end; ow++) {
        let d = tile_operands(doc, db + ow, lane);
        for (var r = 0u; r < rows; r++) {
            for (var c = 0u; c < KW - 1u; c++) {
                x[r * KW + c] = x[r * KW + c + 1u];
            }
            let last = r * KW + KW - 1u;
            x[last] = input(xb, row[last], i32(ow) + dw[last]);
        }
        for (var j = 0u; j < rows * KW; j++) {
            for (var i = 0u; i < TV; i++) {
                (*acc)[j][i] = fma(d[i], vec4<f32>(x[j]), (*acc)[j][i]);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + li;
    let KK = p.KH * p.KW;
    let K = p.IC * KK;
    // k goes to invocations with a stride, so neighbouring invocations read neighbouring inputs:
    // with tiles_k >= ceil(K / TK) invocations per channel tile, invocation l takes l + tiles_k j.
    let tiles_k = p.stride;
    let tiles_oc = (p.OC + TC - 1u) / TC;
    if (t >= p.splits * tiles_oc * tiles_k) {
        return;
    }
    let s = t / (tiles_oc * tiles_k);
    let oc0 = ((t / tiles_k) % tiles_oc) * TC;
    let k0 = t % tiles_k;
    let OHW = p.OH * p.OW;
    let HW = p.H * p.W;
    let P = p.N * OHW;

    // With stride and dilation 1 along the rows and kernels 3 or 5 wide, invocation k0 takes
    // instead the TK / KW whole kernel rows (of IC * KH) from k0 * TK / KW on, in a sliding window
    // (slide_rows, history 57).
    let slide = p.SW == 1u && p.DW == 1u && (p.KW == 3u || p.KW == 5u);
    // Its weight elements k0 * tk + j, j < tk.
    let tk = select(TK, TK / p.KW * p.KW, slide);
    var xoff: array<u32, TK>;
    var dh: array<i32, TK>;
    var dw: array<i32, TK>;
    for (var j = 0u; j < TK; j++) {
        let k = min(select(k0 + tiles_k * j, k0 * tk + j, slide), K - 1u);
        xoff[j] = (k / KK) * HW;
        dh[j] = i32(((k % KK) / p.KW) * p.DH) - i32(p.PH);
        dw[j] = i32((k % p.KW) * p.DW) - i32(p.PW);
    }

    let q_end = min((s + 1u) * p.chunk, P);
    let doc = tile_rows(oc0, p.OC - 1u, OHW);
    // acc[j][i]: column j's channels 4i to 4i + 3.
    var acc: array<array<vec4<f32>, TV>, TK>;
    if (!slide) {
        accumulate(&acc, 0u, s * p.chunk, q_end, xoff, dh, dw, doc, lane);
    } else if (p.KW == 3u) {
        accumulate(&acc, 3u, s * p.chunk, q_end, xoff, dh, dw, doc, lane);
    } else {
        accumulate(&acc, 5u, s * p.chunk, q_end, xoff, dh, dw, doc, lane);
    }

    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16).
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(dout[p.scale_at]));
    }
    let base = s * p.OC * K;
    for (var j = 0u; j < TK; j++) {
        let k = select(k0 + tiles_k * j, k0 * tk + j, slide);
        if (j < tk && k < K) {
            // Loops of at most four (see conv2d_forward.wgsl).
            for (var i = 0u; i < TV; i++) {
                let v = acc[j][i] * unscale;
                for (var e = 0u; e < 4u; e++) {
                    let c = oc0 + 4u * i + e;
                    if (c < p.OC) {
                        part[base + c * K + k] = v[e];
                    }
                }
            }
        }
    }
}
