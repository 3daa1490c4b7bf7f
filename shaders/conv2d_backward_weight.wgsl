// Conv2d backward w.r.t. the weight, split over the batch: for split s,
//   part[s, oc, k] = sum over output pixels q in [s*chunk, (s+1)*chunk) of (n, oh, ow) of
//   dout[n, oc, oh, ow] * inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW],  k = (ic, kh, kw).
// inp: (N, IC, H, W); dout: (N, OC, OH, OW); part: (splits, OC, IC*KH*KW), overwritten. With one
// split, part is dweight itself; otherwise sum_splits adds the splits in order.
// Dispatch: one invocation per (split, TC output channels (8; 16 in the `_wide` variant), 8 k);
// ceil(count / 64) workgroups of 64 (2-D grid past 65,535). Register-blocked, no workgroup memory,
// no atomics.
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
// scale_at when the output gradient is not scaled (ops::cast_f16::UNSCALED).
const UNSCALED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<operand>;
@group(0) @binding(2) var<storage, read> dout: array<operand>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

const TK: u32 = 8u;
// Channels per tile: the two vec4 accumulators (ops::conv2d::TILE_CHANNELS), four in the `_wide`
// variant (crate::shaders::WIDE: 16 channels, ops::conv2d::WIDE_TILE_CHANNELS), whose lines under
// `if (WIDE)` the compiler drops here.
const WIDE: bool = false;
const TC: u32 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
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

    var xoff: array<u32, TK>;
    var dh: array<i32, TK>;
    var dw: array<i32, TK>;
    for (var j = 0u; j < TK; j++) {
        let k = min(k0 + tiles_k * j, K - 1u);
        xoff[j] = (k / KK) * HW;
        dh[j] = i32(((k % KK) / p.KW) * p.DH) - i32(p.PH);
        dw[j] = i32((k % p.KW) * p.DW) - i32(p.PW);
    }
    let last = p.OC - 1u;
    let doc = vec4<u32>(min(oc0, last), min(oc0 + 1u, last), min(oc0 + 2u, last), min(oc0 + 3u, last)) * OHW;
    let doc_hi = vec4<u32>(min(oc0 + 4u, last), min(oc0 + 5u, last), min(oc0 + 6u, last), min(oc0 + 7u, last)) * OHW;
    let doc2 = vec4<u32>(min(oc0 + 8u, last), min(oc0 + 9u, last), min(oc0 + 10u, last), min(oc0 + 11u, last)) * OHW;
    let doc3 = vec4<u32>(min(oc0 + 12u, last), min(oc0 + 13u, last), min(oc0 + 14u, last), min(oc0 + 15u, last)) * OHW;

    let q_end = min((s + 1u) * p.chunk, P);
    var q = s * p.chunk;
    var n = q / OHW;
    var oh = (q % OHW) / p.OW;
    var ow0 = q % p.OW;
    // One array per group of 4 channels: the NVIDIA compiler keeps a two-level array in memory.
    var acc: array<vec4<f32>, TK>;
    var acc_hi: array<vec4<f32>, TK>;
    var acc2: array<vec4<f32>, TK>;
    var acc3: array<vec4<f32>, TK>;
    // Output row by output row: each k's input row offset (or -1 where that row is padding) is
    // worked out once per row, and the loop over the row's pixels has no branches.
    while (q < q_end) {
        let ow_end = min(p.OW, ow0 + (q_end - q));
        var row: array<i32, TK>;
        for (var j = 0u; j < TK; j++) {
            let ih = i32(oh * p.SH) + dh[j];
            row[j] = select(-1, i32(xoff[j]) + ih * i32(p.W), ih >= 0 && ih < i32(p.H));
        }
        let db = n * p.OC * OHW + oh * p.OW;
        let xb = n * p.IC * HW;
        for (var ow = ow0; ow < ow_end; ow++) {
            let d = vec4<f32>(f32(dout[db + ow + doc.x]), f32(dout[db + ow + doc.y]), f32(dout[db + ow + doc.z]), f32(dout[db + ow + doc.w]));
            let d_hi = vec4<f32>(f32(dout[db + ow + doc_hi.x]), f32(dout[db + ow + doc_hi.y]), f32(dout[db + ow + doc_hi.z]),
                                 f32(dout[db + ow + doc_hi.w]));
            var d2 = vec4<f32>(0.0);
            var d3 = vec4<f32>(0.0);
            if (WIDE) {
                d2 = vec4<f32>(f32(dout[db + ow + doc2.x]), f32(dout[db + ow + doc2.y]), f32(dout[db + ow + doc2.z]), f32(dout[db + ow + doc2.w]));
                d3 = vec4<f32>(f32(dout[db + ow + doc3.x]), f32(dout[db + ow + doc3.y]), f32(dout[db + ow + doc3.z]), f32(dout[db + ow + doc3.w]));
            }
            let iw0 = i32(ow * p.SW);
            for (var j = 0u; j < TK; j++) {
                let iw = iw0 + dw[j];
                let ok = row[j] >= 0 && iw >= 0 && iw < i32(p.W);
                let x = select(0.0, f32(inp[xb + u32(select(0, row[j] + iw, ok))]), ok);
                acc[j] = fma(d, vec4<f32>(x), acc[j]);
                acc_hi[j] = fma(d_hi, vec4<f32>(x), acc_hi[j]);
                if (WIDE) {
                    acc2[j] = fma(d2, vec4<f32>(x), acc2[j]);
                    acc3[j] = fma(d3, vec4<f32>(x), acc3[j]);
                }
            }
        }
        q += ow_end - ow0;
        ow0 = 0u;
        oh += 1u;
        if (oh == p.OH) {
            oh = 0u;
            n += 1u;
        }
    }

    // The output gradient may be staged scaled by 2^e, e stored at scale_at (ops::cast_f16).
    var unscale = 1.0;
    if (p.scale_at != UNSCALED) {
        unscale = exp2(-f32(dout[p.scale_at]));
    }
    let base = s * p.OC * K;
    for (var j = 0u; j < TK; j++) {
        let k = k0 + tiles_k * j;
        if (k < K) {
            for (var i = 0u; i < 4u; i++) {
                if (oc0 + i < p.OC) {
                    part[base + (oc0 + i) * K + k] = acc[j][i] * unscale;
                }
                if (oc0 + 4u + i < p.OC) {
                    part[base + (oc0 + 4u + i) * K + k] = acc_hi[j][i] * unscale;
                }
                if (WIDE && oc0 + 8u + i < p.OC) {
                    part[base + (oc0 + 8u + i) * K + k] = acc2[j][i] * unscale;
                }
                if (WIDE && oc0 + 12u + i < p.OC) {
                    part[base + (oc0 + 12u + i) * K + k] = acc3[j][i] * unscale;
                }
            }
        }
    }
}
