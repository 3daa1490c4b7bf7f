// Conv2d backward w.r.t. the input: dinp[n, ic, ih, iw] =
//   sum over (oc, kh, kw) with oh = (ih + PH - kh*DH) / SH and ow = (iw + PW - kw*DW) / SW exact and
//   in range of weight[oc, ic, kh, kw] * dout[n, oc, oh, ow].
// weight: (OC, IC, KH, KW); dout: (N, OC, OH, OW); dinp: (N, IC, H, W), overwritten; with
// splits > 1 the output channels are split in chunks of `chunk`, dinp is (splits, N, IC, H, W) and
// sum_splits adds them.
// Dispatch: one invocation per split and tile of TC input channels (8; 16 in the `_wide` variant)
// x a run of TP = 8 consecutive input pixels of one row of a phase (below; the whole input where
// there are no phases), ceil(WP / 8) runs per row, the last one cut short; `stride` invocations per
// tile of channels (at least the runs, a multiple of the subgroup size); ceil(tiles / 64)
// workgroups of 64 (2-D grid past 65,535).
// Register-blocked, no workgroup memory.
// With stride and dilation 1 along the rows, the run's output gradients for tap kw - 1 are those for
// kw moved by one column: each tap loads one per invocation instead of TP (a sliding window, as in
// conv2d_forward_subgroups.wgsl; history 55).
// The `_subgroups` form of conv2d_backward_input.wgsl, for CPU adapters with subgroups of at least 8
// (lavapipe; ConvKernels::Subgroups): the operands a tile of channels shares are loaded once per
// subgroup and broadcast (tile_operands), and `stride` is chosen so that no subgroup spans two tiles.
// Accumulators are acc[j][i] with loops of at most 4 or 8, which lavapipe unrolls into registers
// (an NVIDIA compiler did not: docs/PERFORMANCE.md, history 14), hence a kernel of its own.
// Strided convolutions take their input pixels by sub-pixel phase as conv2d_backward_input.wgsl
// does, each phase's invocations a multiple of the subgroup size (so that a subgroup's invocations
// visit the same taps).
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
    // Invocations per tile of channels (ops::conv2d::Product): at least the runs of pixels, a
    // multiple of the subgroup size.
    stride: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

// The operands' element type; the kernel's `_f16` variant reads them as f16 (crate::shaders).
alias operand = f32;
// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weight: array<operand>;
@group(0) @binding(2) var<storage, read> dout: array<operand>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

const TP: u32 = 8u;
// Channels per tile (ops::conv2d::TILE_CHANNELS), held as TV vec4s; 16 in the `_wide` variant
// (crate::shaders::WIDE, ops::conv2d::WIDE_TILE_CHANNELS), which needs no lines of its own here.
const WIDE: bool = false;
const TC: u32 = 8u;
const TV: u32 = TC / 4u;

// The tile's TC shared operands (its channels' weights), channel c's at rows[c / 4][c % 4] + at:
// invocation `lane` of each subgroup loads channels lane % 8, lane % 8 + 8, ... and
// subgroupBroadcast hands them round. On lavapipe every storage load is a loop over the SIMD lanes,
// so one load per invocation instead of TC saves most of them. Only vec4 components are chosen per
// invocation: an array index that varied per invocation would put the array in scratch memory.
fn tile_operands(rows: array<vec4<u32>, TV>, at: u32, lane: u32) -> array<vec4<f32>, TV> {
    let c = lane % 8u;
    var v: array<vec4<f32>, TV>;
    for (var h = 0u; h < TV; h += 2u) {
        let m = f32(weight[select(rows[h + 1u][c % 4u], rows[h][c % 4u], c < 4u) + at]);
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

// dout at column ow of the row at `row` (oh * OW, when row_ok) of the plane at db; zero outside it.
fn gradient(db: u32, row_ok: bool, row: i32, ow: i32) -> f32 {
    let ok = row_ok && ow >= 0 && ow < i32(p.OW);
    return select(0.0, f32(dout[db + u32(select(0, row + ow, ok))]), ok);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + li;
    let HW = p.H * p.W;
    let P = p.N * HW;
    let L = p.stride;
    let tiles = L * ((p.IC + TC - 1u) / TC);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let oc_end = min((s + 1u) * p.chunk, p.OC);
    let ic0 = (t / L) * TC;
    let OHW = p.OH * p.OW;
    let KK = p.KH * p.KW;

    // The phase (ph, pw) of this invocation's pixels and their grid (conv2d_backward_input.wgsl).
    let phased = (p.SH > 1u || p.SW > 1u) && p.DH == 1u && p.DW == 1u && p.H % p.SH == 0u && p.W % p.SW == 0u;
    let SY = select(1u, p.SH, phased);
    let SX = select(1u, p.SW, phased);
    let LP = L / (SY * SX);
    let phase = (t % L) / LP;
    let ph = phase / SX;
    let pw = phase % SX;
    let HP = p.H / SY;
    let WP = p.W / SX;
    // Runs of TP pixels of the phase: RW per row, R in all; invocations past the last run compute
    // the last run again and write nothing.
    let RW = (WP + TP - 1u) / TP;
    let R = p.N * HP * RW;
    let live = (t % L) % LP < R;
    let run = min((t % L) % LP, R - 1u);
    let c0 = (run % RW) * TP;
    let n = run / RW / HP;
    let ih = (run / RW % HP) * SY + ph;
    // Pixel j's column: (c0 + j) * SX + pw.
    let iw0 = c0 * SX + pw;
    let db = n * p.OC * OHW;
    let slide = p.SH == 1u && p.SW == 1u && p.DW == 1u;

    // The taps that reach the phase: kh with (ih + PH - kh) a multiple of SY (every tap when SY = 1).
    let kh0 = (ph + p.PH) % SY;
    let kw0 = (pw + p.PW) % SX;
    let wic = tile_rows(ic0, p.IC - 1u, KK);
    // acc[j][i]: pixel j's channels 4i to 4i + 3.
    var acc: array<array<vec4<f32>, TV>, TP>;
    if (slide) {
        // Taps from the last to the first along each row: output-gradient columns o0 to o0 + TP - 2
        // go to x[1..TP], and each tap moves them down one and loads the next.
        let o0 = i32(iw0 + p.PW) - i32(p.KW - 1u);
        for (var kh = 0u; kh < p.KH; kh++) {
            let oh = i32(ih + p.PH) - i32(kh * p.DH);
            let row_ok = oh >= 0 && oh < i32(p.OH);
            let row = select(0, oh * i32(p.OW), row_ok);
            for (var oc = s * p.chunk; oc < oc_end; oc++) {
                let dr = db + oc * OHW;
                let k = oc * p.IC * KK + kh * p.KW + p.KW - 1u;
                // x[j]: pixel j's output gradient for the current tap.
                var x: array<f32, TP>;
                for (var j = 1u; j < TP; j++) {
                    x[j] = gradient(dr, row_ok, row, o0 + i32(j) - 1);
                }
                for (var r = 0u; r < p.KW; r++) {
                    for (var j = 0u; j < TP - 1u; j++) {
                        x[j] = x[j + 1u];
                    }
                    x[TP - 1u] = gradient(dr, row_ok, row, o0 + i32(TP - 1u + r));
                    let a = tile_operands(wic, k - r, lane);
                    for (var j = 0u; j < TP; j++) {
                        for (var i = 0u; i < TV; i++) {
                            acc[j][i] = fma(a[i], vec4<f32>(x[j]), acc[j][i]);
                        }
                    }
                }
            }
        }
    } else {
        // Tap offsets outermost: each pixel's output-gradient offset and range test are worked out
        // once per tap, not once per output channel. (In the loops above, these tests, with their
        // divisions, ran 1.5x slower.)
        for (var kh = kh0; kh < p.KH; kh += SY) {
            for (var kw = kw0; kw < p.KW; kw += SX) {
                var doff: array<i32, TP>;
                for (var j = 0u; j < TP; j++) {
                    let th = i32(ih + p.PH) - i32(kh * p.DH);
                    let tw = i32(iw0 + j * SX + p.PW) - i32(kw * p.DW);
                    // Stride 1 needs no division (integer division is slow where lanes run as SIMD).
                    var oh = th;
                    var ow = tw;
                    var on_grid = true;
                    if (p.SH != 1u || p.SW != 1u) {
                        oh = th / i32(p.SH);
                        ow = tw / i32(p.SW);
                        on_grid = th % i32(p.SH) == 0 && tw % i32(p.SW) == 0;
                    }
                    let ok = th >= 0 && tw >= 0 && on_grid && oh < i32(p.OH) && ow < i32(p.OW);
                    doff[j] = select(-1, oh * i32(p.OW) + ow, ok);
                }
                let kk = kh * p.KW + kw;
                for (var oc = s * p.chunk; oc < oc_end; oc++) {
                    let a = tile_operands(wic, oc * p.IC * KK + kk, lane);
                    for (var j = 0u; j < TP; j++) {
                        let ok = doff[j] >= 0;
                        let d = select(0.0, f32(dout[db + oc * OHW + u32(max(doff[j], 0))]), ok);
                        for (var i = 0u; i < TV; i++) {
                            acc[j][i] = fma(a[i], vec4<f32>(d), acc[j][i]);
                        }
                    }
                }
            }
        }
    }

    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16).
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(dout[p.scale_at]));
    }
    // Pixels past the row's end (j > last) are written to pixel last's place, before it: a test of
    // c0 + j against WP here made lavapipe keep `acc` in memory (conv2d_forward_subgroups.wgsl).
    let o0 = s * P * p.IC + n * p.IC * HW + ih * p.W + pw;
    let last = min(WP - c0, TP) - 1u;
    if (live) {
        for (var jr = 0u; jr < TP; jr++) {
            let j = TP - 1u - jr;
            let o = o0 + (c0 + min(j, last)) * SX;
            // Loops of at most four (see conv2d_forward.wgsl).
            for (var i = 0u; i < TV; i++) {
                let v = acc[j][i] * unscale;
                for (var e = 0u; e < 4u; e++) {
                    let c = ic0 + 4u * i + e;
                    if (c < p.IC) {
                        dinp[o + c * HW] = v[e];
                    }
                }
            }
        }
    }
}
