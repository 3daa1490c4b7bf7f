// Conv2d forward as an implicit GEMM: out[n, oc, oh, ow] = bias[oc] +
//   sum_{ic, kh, kw} weight[oc, ic, kh, kw] * inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW]
// (zero padding). inp: (N, IC, H, W); weight: (OC, IC, KH, KW); bias: (OC,) (read when has_bias);
// out: (N, OC, OH, OW), overwritten.
// Dispatch: one invocation per split and tile of TC output channels (8; 16 in the `_wide` variant)
// x 8 output pixels, the pixels counted over
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
    // dimension.
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
// Channels per tile: the two vec4 accumulators (ops::conv2d::TILE_CHANNELS), four in the `_wide`
// variant (crate::shaders::WIDE: 16 channels, ops::conv2d::WIDE_TILE_CHANNELS), whose lines under
// `if (WIDE)` the compiler drops here.
const WIDE: bool = false;
const TC: u32 = 8u;

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
    let last = p.OC - 1u;
    let ocs = vec4<u32>(min(oc0, last), min(oc0 + 1u, last), min(oc0 + 2u, last), min(oc0 + 3u, last));
    let ocs_hi = vec4<u32>(min(oc0 + 4u, last), min(oc0 + 5u, last), min(oc0 + 6u, last), min(oc0 + 7u, last));
    let ocs2 = vec4<u32>(min(oc0 + 8u, last), min(oc0 + 9u, last), min(oc0 + 10u, last), min(oc0 + 11u, last));
    let ocs3 = vec4<u32>(min(oc0 + 12u, last), min(oc0 + 13u, last), min(oc0 + 14u, last), min(oc0 + 15u, last));
    let wrow = ocs * K;
    let wrow_hi = ocs_hi * K;
    let wrow2 = ocs2 * K;
    let wrow3 = ocs3 * K;

    // One array per group of 4 channels: the NVIDIA compiler keeps a two-level array in memory.
    var acc: array<vec4<f32>, TP>;
    var acc_hi: array<vec4<f32>, TP>;
    var acc2: array<vec4<f32>, TP>;
    var acc3: array<vec4<f32>, TP>;
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
                let a = vec4<f32>(f32(weight[wrow.x + k]), f32(weight[wrow.y + k]), f32(weight[wrow.z + k]), f32(weight[wrow.w + k]));
                let a_hi = vec4<f32>(f32(weight[wrow_hi.x + k]), f32(weight[wrow_hi.y + k]), f32(weight[wrow_hi.z + k]), f32(weight[wrow_hi.w + k]));
                var a2 = vec4<f32>(0.0);
                var a3 = vec4<f32>(0.0);
                if (WIDE) {
                    a2 = vec4<f32>(f32(weight[wrow2.x + k]), f32(weight[wrow2.y + k]), f32(weight[wrow2.z + k]), f32(weight[wrow2.w + k]));
                    a3 = vec4<f32>(f32(weight[wrow3.x + k]), f32(weight[wrow3.y + k]), f32(weight[wrow3.z + k]), f32(weight[wrow3.w + k]));
                }
                for (var j = 0u; j < TP; j++) {
                    let ok = xoff[j] >= 0;
                    let x = select(0.0, f32(inp[xbase[j] + ic * HW + u32(max(xoff[j], 0))]), ok);
                    acc[j] = fma(a, vec4<f32>(x), acc[j]);
                    acc_hi[j] = fma(a_hi, vec4<f32>(x), acc_hi[j]);
                    if (WIDE) {
                        acc2[j] = fma(a2, vec4<f32>(x), acc2[j]);
                        acc3[j] = fma(a3, vec4<f32>(x), acc3[j]);
                    }
                }
            }
        }
    }

    var b = vec4<f32>(0.0);
    var b_hi = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    if (p.has_bias == 1u && s == 0u) {
        b = vec4<f32>(bias[ocs.x], bias[ocs.y], bias[ocs.z], bias[ocs.w]);
        b_hi = vec4<f32>(bias[ocs_hi.x], bias[ocs_hi.y], bias[ocs_hi.z], bias[ocs_hi.w]);
        if (WIDE) {
            b2 = vec4<f32>(bias[ocs2.x], bias[ocs2.y], bias[ocs2.z], bias[ocs2.w]);
            b3 = vec4<f32>(bias[ocs3.x], bias[ocs3.y], bias[ocs3.z], bias[ocs3.w]);
        }
    }
    for (var j = 0u; j < TP; j++) {
        let q = q0 + L * j;
        if (q < P) {
            let o = s * P * p.OC + (q / OHW) * p.OC * OHW + q % OHW;
            let v = acc[j] + b;
            let v_hi = acc_hi[j] + b_hi;
            for (var i = 0u; i < 4u; i++) {
                if (oc0 + i < p.OC) {
                    out[o + (oc0 + i) * OHW] = v[i];
                }
                if (oc0 + 4u + i < p.OC) {
                    out[o + (oc0 + 4u + i) * OHW] = v_hi[i];
                }
                if (WIDE && oc0 + 8u + i < p.OC) {
                    out[o + (oc0 + 8u + i) * OHW] = acc2[j][i] + b2[i];
                }
                if (WIDE && oc0 + 12u + i < p.OC) {
                    out[o + (oc0 + 12u + i) * OHW] = acc3[j][i] + b3[i];
                }
            }
        }
    }
}
