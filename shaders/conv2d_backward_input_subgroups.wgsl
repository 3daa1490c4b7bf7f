// Conv2d backward w.r.t. the input: dinp[n, ic, ih, iw] =
//   sum over (oc, kh, kw) with oh = (ih + PH - kh*DH) / SH and ow = (iw + PW - kw*DW) / SW exact and
//   in range of weight[oc, ic, kh, kw] * dout[n, oc, oh, ow].
// weight: (OC, IC, KH, KW); dout: (N, OC, OH, OW); dinp: (N, IC, H, W), overwritten; with
// splits > 1 the output channels are split in chunks of `chunk`, dinp is (splits, N, IC, H, W) and
// sum_splits adds them.
// Dispatch: one invocation per split and tile of TC input channels (8; 16 in the `_wide` variant)
// x 8 input pixels (over n, ih, iw, strided across `stride` invocations per tile of channels, a
// multiple of the subgroup size); ceil(tiles / 64) workgroups of 64 (2-D grid past 65,535).
// Register-blocked, no workgroup memory.
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + li;
    let HW = p.H * p.W;
    let P = p.N * HW;
    // Pixels go to invocations with a stride, so neighbouring invocations touch neighbouring
    // pixels: with L >= ceil(P / TP) invocations per channel tile, invocation l takes l + L j.
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
    let q0 = (t % L) % LP;
    let HP = p.H / SY;
    let WP = p.W / SX;
    let PP = p.N * HP * WP;

    var dbase: array<u32, TP>;
    var ih: array<i32, TP>;
    var iw: array<i32, TP>;
    for (var j = 0u; j < TP; j++) {
        let q = min(q0 + LP * j, PP - 1u);
        let r = q % (HP * WP);
        dbase[j] = (q / (HP * WP)) * p.OC * OHW;
        ih[j] = i32((r / WP) * SY + ph);
        iw[j] = i32((r % WP) * SX + pw);
    }
    // The taps that reach the phase: kh with (ih + PH - kh) a multiple of SY (every tap when SY = 1).
    let kh0 = (ph + p.PH) % SY;
    let kw0 = (pw + p.PW) % SX;
    let wic = tile_rows(ic0, p.IC - 1u, KK);
    // acc[j][i]: column j's channels 4i to 4i + 3.
    var acc: array<array<vec4<f32>, TV>, TP>;
    for (var kh = kh0; kh < p.KH; kh += SY) {
        for (var kw = kw0; kw < p.KW; kw += SX) {
            var doff: array<i32, TP>;
            for (var j = 0u; j < TP; j++) {
                let th = ih[j] + i32(p.PH) - i32(kh * p.DH);
                let tw = iw[j] + i32(p.PW) - i32(kw * p.DW);
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
                    let d = select(0.0, f32(dout[dbase[j] + oc * OHW + u32(max(doff[j], 0))]), ok);
                    for (var i = 0u; i < TV; i++) {
                        acc[j][i] = fma(a[i], vec4<f32>(d), acc[j][i]);
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
    for (var j = 0u; j < TP; j++) {
        let q = q0 + LP * j;
        if (q < PP) {
            let o = s * P * p.IC + (q / (HP * WP)) * p.IC * HW + u32(ih[j]) * p.W + u32(iw[j]);
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
