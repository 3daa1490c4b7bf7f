// Conv2d forward as an implicit GEMM: out[n, oc, oh, ow] = bias[oc] +
//   sum_{ic, kh, kw} weight[oc, ic, kh, kw] * inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]
// (zero padding). inp: (N, IC, H, W); weight: (OC, IC, KH, KW); bias: (OC,) (read when has_bias);
// out: (N, OC, OH, OW), overwritten.
// Dispatch: one invocation per split and tile of 8 output channels x 8 output pixels, the pixels counted over
// (n, oh, ow) together and strided across invocations; ceil(tiles / 64) workgroups of 64 (2-D grid past 65,535). Register-blocked,
// no workgroup memory; out-of-range rows are clamped on read and skipped on write.
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
    // dimension, a multiple of 64 in the `_subgroups` variant.
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
// Channels per tile (ops::conv2d::TILE_CHANNELS), held as TV vec4s.
const TC: u32 = 8u;
const TV: u32 = TC / 4u;

// The tile's TC operands (its channels' weights), channel c's at rows[c / 4][c % 4] + at, one
// load each. The kernel's `_subgroups` variant (crate::shaders) has each invocation of a subgroup
// load TC / 8 of them and broadcast them: on lavapipe every load is a loop over the SIMD lanes.
fn tile_operands(rows: array<vec4<u32>, TV>, at: u32) -> array<vec4<f32>, TV> {
    var v: array<vec4<f32>, TV>;
    for (var i = 0u; i < TV; i++) {
        let r = rows[i] + at;
        v[i] = vec4<f32>(tile_operand(r.x), tile_operand(r.y), tile_operand(r.z), tile_operand(r.w));
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

fn tile_operand(i: u32) -> f32 {
    return f32(weight[i]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + li;
    let OHW = p.OH * p.OW;
    let P = p.N * OHW;
    // Pixels go to invocations with a stride, so neighbouring invocations touch neighbouring
    // pixels: with L >= ceil(P / TP) invocations per channel tile, invocation l takes l + L j.
    let L = p.stride;
    let tiles = L * ((p.OC + TC - 1u) / TC);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let oc0 = (t / L) * TC;
    let q0 = t % L;
    let ic_end = min((s + 1u) * p.chunk, p.IC);
    let HW = p.H * p.W;
    let KK = p.KH * p.KW;
    let K = p.IC * KK;

    var xbase: array<u32, TP>;
    var ih0: array<i32, TP>;
    var iw0: array<i32, TP>;
    for (var j = 0u; j < TP; j++) {
        let q = min(q0 + L * j, P - 1u);
        let r = q % OHW;
        xbase[j] = (q / OHW) * p.IC * HW;
        ih0[j] = i32((r / p.OW) * p.SH) - i32(p.PH);
        iw0[j] = i32((r % p.OW) * p.SW) - i32(p.PW);
    }

    let wrow = tile_rows(oc0, p.OC - 1u, K);
    // acc[j][i]: column j's channels 4i to 4i + 3.
    var acc: array<array<vec4<f32>, TV>, TP>;
    // Kernel offsets outermost: each pixel's input offset and padding test are worked out once per
    // (kh, kw), not once per input channel.
    for (var kh = 0u; kh < p.KH; kh++) {
        for (var kw = 0u; kw < p.KW; kw++) {
            var xoff: array<i32, TP>;
            for (var j = 0u; j < TP; j++) {
                let ih = ih0[j] + i32(kh * p.DH);
                let iw = iw0[j] + i32(kw * p.DW);
                let ok = ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W);
                xoff[j] = select(-1, ih * i32(p.W) + iw, ok);
            }
            let kk = kh * p.KW + kw;
            for (var ic = s * p.chunk; ic < ic_end; ic++) {
                let k = ic * KK + kk;
                let a = tile_operands(wrow, k);
                for (var j = 0u; j < TP; j++) {
                    let ok = xoff[j] >= 0;
                    let x = select(0.0, f32(inp[xbase[j] + ic * HW + u32(max(xoff[j], 0))]), ok);
                    for (var i = 0u; i < TV; i++) {
                        acc[j][i] = fma(a[i], vec4<f32>(x), acc[j][i]);
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
    for (var j = 0u; j < TP; j++) {
        let q = q0 + L * j;
        if (q < P) {
            let o = s * P * p.OC + (q / OHW) * p.OC * OHW + q % OHW;
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
