// Conv2d forward as an implicit GEMM: out[n, oc, oh, ow] = bias[oc] +
//   sum_{ic, kh, kw} weight[oc, ic, kh, kw] * inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]
// (zero padding). inp: (N, IC, H, W); weight: (OC, IC, KH, KW); bias: (OC,) (read when has_bias);
// out: (N, OC, OH, OW), overwritten.
// Dispatch: one invocation per split and tile of TC output channels (8; 16 in the `_wide` variant)
// x a run of TP = 8 consecutive output pixels of one row (ceil(OW / 8) runs per row, the last one
// cut short), `stride` invocations per tile of channels (at least the runs, a multiple of the
// subgroup size); ceil(tiles / 64) workgroups of 64 (2-D grid past 65,535).
// Register-blocked, no workgroup memory; out-of-range pixels are read as zero and not written.
// With stride and dilation 1 along the rows, the run's inputs for tap kw + 1 are those for kw moved
// by one column: each tap loads one input per invocation instead of TP (a sliding window), which
// made Tudui's forward 1.4-1.5x faster on lavapipe, whose storage loads are loops over the SIMD
// lanes (history 55).
// The `_subgroups` form of conv2d_forward.wgsl, for CPU adapters with subgroups of at least 8
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
    // Invocations per tile of channels (ops::conv2d::Product): at least the runs of pixels, a
    // multiple of the subgroup size.
    stride: u32,
}

// Invocations per workgroup (Rust declares the same in its shaders! entry).
const WG: u32 = 64u;

// The operands' element type; the kernel's `_f16` variant reads them as f16 (crate::shaders).
alias operand = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<operand>;
@group(0) @binding(2) var<storage, read> weight: array<operand>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

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

// inp at column iw of the row at `row` (ih * W, when row_ok) of the plane at xr; zero in the padding.
fn input(xr: u32, row_ok: bool, row: i32, iw: i32) -> f32 {
    let ok = row_ok && iw >= 0 && iw < i32(p.W);
    return select(0.0, f32(inp[xr + u32(select(0, row + iw, ok))]), ok);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + li;
    let OHW = p.OH * p.OW;
    let P = p.N * OHW;
    // Runs of TP pixels: RW per output row, R in all.
    let RW = (p.OW + TP - 1u) / TP;
    let R = p.N * p.OH * RW;
    let L = p.stride;
    let tiles = L * ((p.OC + TC - 1u) / TC);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let oc0 = (t / L) * TC;
    // Invocations past the last run compute the last run again and write nothing.
    let live = t % L < R;
    let run = min(t % L, R - 1u);
    let ow0 = (run % RW) * TP;
    let n = run / RW / p.OH;
    let oh = run / RW % p.OH;
    let ic_end = min((s + 1u) * p.chunk, p.IC);
    let HW = p.H * p.W;
    let xb = n * p.IC * HW;
    let iw0 = i32(ow0 * p.SW) - i32(p.PW);
    let slide = p.SW == 1u && p.DW == 1u;

    let wrow = tile_rows(oc0, p.OC - 1u, p.IC * p.KH * p.KW);
    // acc[j][i]: pixel j's channels 4i to 4i + 3.
    var acc: array<array<vec4<f32>, TV>, TP>;
    if (slide) {
        for (var kh = 0u; kh < p.KH; kh++) {
            let ih = i32(oh * p.SH) - i32(p.PH) + i32(kh * p.DH);
            let row_ok = ih >= 0 && ih < i32(p.H);
            let row = select(0, ih * i32(p.W), row_ok);
            for (var ic = s * p.chunk; ic < ic_end; ic++) {
                let xr = xb + ic * HW;
                let k = (ic * p.KH + kh) * p.KW;
                // x[j]: pixel j's input for the current tap. Columns iw0 to iw0 + TP - 2 go to
                // x[1..TP]; each tap moves them down one and loads the next.
                var x: array<f32, TP>;
                for (var j = 1u; j < TP; j++) {
                    x[j] = input(xr, row_ok, row, iw0 + i32(j) - 1);
                }
                for (var kw = 0u; kw < p.KW; kw++) {
                    for (var j = 0u; j < TP - 1u; j++) {
                        x[j] = x[j + 1u];
                    }
                    x[TP - 1u] = input(xr, row_ok, row, iw0 + i32(TP - 1u + kw));
                    let a = tile_operands(wrow, k + kw, lane);
                    for (var j = 0u; j < TP; j++) {
                        for (var i = 0u; i < TV; i++) {
                            acc[j][i] = fma(a[i], vec4<f32>(x[j]), acc[j][i]);
                        }
                    }
                }
            }
        }
    } else {
        // Tap offsets outermost: each pixel's input offset and padding test are worked out once
        // per tap, not once per input channel.
        for (var kh = 0u; kh < p.KH; kh++) {
            let ih = i32(oh * p.SH) - i32(p.PH) + i32(kh * p.DH);
            let row_ok = ih >= 0 && ih < i32(p.H);
            for (var kw = 0u; kw < p.KW; kw++) {
                var xoff: array<i32, TP>;
                for (var j = 0u; j < TP; j++) {
                    let iw = iw0 + i32(j * p.SW + kw * p.DW);
                    let ok = row_ok && iw >= 0 && iw < i32(p.W);
                    xoff[j] = select(-1, ih * i32(p.W) + iw, ok);
                }
                for (var ic = s * p.chunk; ic < ic_end; ic++) {
                    let a = tile_operands(wrow, (ic * p.KH + kh) * p.KW + kw, lane);
                    for (var j = 0u; j < TP; j++) {
                        let ok = xoff[j] >= 0;
                        let x = select(0.0, f32(inp[xb + ic * HW + u32(max(xoff[j], 0))]), ok);
                        for (var i = 0u; i < TV; i++) {
                            acc[j][i] = fma(a[i], vec4<f32>(x), acc[j][i]);
                        }
                    }
                }
            }
        }
    }

    var b: array<vec4<f32>, TV>;
    if (p.has_bias == 1u && s == 0u) {
        let rows = tile_rows(oc0, p.OC - 1u, 1u);
        for (var i = 0u; i < TV; i++) {
            b[i] = vec4<f32>(bias[rows[i].x], bias[rows[i].y], bias[rows[i].z], bias[rows[i].w]);
        }
    }
    // Pixels past the row's end (j > last) are written to pixel last's place, before it: a test of
    // ow0 + j against OW here made lavapipe keep `acc` in memory, 4x slower (history 55).
    let o0 = s * P * p.OC + n * p.OC * OHW + oh * p.OW + ow0;
    let last = min(p.OW - ow0, TP) - 1u;
    if (live) {
        for (var jr = 0u; jr < TP; jr++) {
            let j = TP - 1u - jr;
            let o = o0 + min(j, last);
            // Loops of at most four over the vec4s and their components: small enough to unroll,
            // which keeps `acc` in registers (an index that stays variable would not).
            for (var i = 0u; i < TV; i++) {
                let v = acc[j][i] + b[i];
                for (var e = 0u; e < 4u; e++) {
                    let c = oc0 + 4u * i + e;
                    if (c < p.OC) {
                        out[o + c * OHW] = v[e];
                    }
                }
            }
        }
    }
}
