// Conv2d backward w.r.t. the input: dinp[n, ic, ih, iw] =
//   sum over (oc, kh, kw) with oh = (ih + PH - kh*DH) / SH and ow = (iw + PW - kw*DW) / SW exact and
//   in range of weight[oc, ic, kh, kw] * dout[n, oc, oh, ow].
// weight: (OC, IC, KH, KW); dout: (N, OC, OH, OW); dinp: (N, IC, H, W), overwritten; with
// splits > 1 the output channels are split in chunks of `chunk`, dinp is (splits, N, IC, H, W) and
// sum_splits adds them.
// Dispatch: one invocation per split and tile of 8 input channels x 8 input pixels (over n, ih, iw,
// strided across invocations);
// ceil(tiles / 64) workgroups of 64 (2-D grid past 65,535). Register-blocked, no workgroup memory.
// Strided convolutions whose input sides are multiples of their strides (undilated) take their
// input pixels by sub-pixel phase (ih % SH, iw % SW), the phases one after the other, each strided
// across its invocations: an invocation's pixels then share a phase, and it visits only the taps
// that reach that phase (a quarter of a 3x3 stride-2 kernel's, on average) where it multiplied
// zeros for the others. ops::conv2d::phased says the same.
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
@group(0) @binding(1) var<storage, read> weight: array<operand>;
@group(0) @binding(2) var<storage, read> dout: array<operand>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

const TP: u32 = 8u;
// Channels per tile: the two vec4 accumulators (ops::conv2d::TILE_CHANNELS).
const TC: u32 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
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

    // The phase (ph, pw) of this invocation's pixels, and their grid: every SY-th row and SX-th
    // column from it (one phase of the whole input, SY = SX = 1, unless phased).
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
    let last = p.IC - 1u;
    let wic = vec4<u32>(min(ic0, last), min(ic0 + 1u, last), min(ic0 + 2u, last), min(ic0 + 3u, last)) * KK;
    let wic_hi = vec4<u32>(min(ic0 + 4u, last), min(ic0 + 5u, last), min(ic0 + 6u, last), min(ic0 + 7u, last)) * KK;

    var acc: array<vec4<f32>, TP>;
    var acc_hi: array<vec4<f32>, TP>;
    // Unit steps, skipping the taps of other phases: with steps of SY and SX the NVIDIA compiler
    // made the stride-1 layers' gradients 1.2-1.6x slower (Tudui's conv3 0.43 -> 0.69 ms).
    for (var kh = kh0; kh < p.KH; kh++) {
        if (kh % SY != kh0) {
            continue;
        }
        for (var kw = kw0; kw < p.KW; kw++) {
            if (kw % SX != kw0) {
                continue;
            }
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
            let wk = wic + vec4<u32>(kh * p.KW + kw);
            let wk_hi = wic_hi + vec4<u32>(kh * p.KW + kw);
            for (var oc = s * p.chunk; oc < oc_end; oc++) {
                let wo = oc * p.IC * KK;
                let a = vec4<f32>(f32(weight[wo + wk.x]), f32(weight[wo + wk.y]), f32(weight[wo + wk.z]), f32(weight[wo + wk.w]));
                let a_hi = vec4<f32>(f32(weight[wo + wk_hi.x]), f32(weight[wo + wk_hi.y]), f32(weight[wo + wk_hi.z]), f32(weight[wo + wk_hi.w]));
                for (var j = 0u; j < TP; j++) {
                    let ok = doff[j] >= 0;
                    let d = select(0.0, f32(dout[dbase[j] + oc * OHW + u32(max(doff[j], 0))]), ok);
                    acc[j] = fma(a, vec4<f32>(d), acc[j]);
                    acc_hi[j] = fma(a_hi, vec4<f32>(d), acc_hi[j]);
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
            for (var i = 0u; i < 4u; i++) {
                if (ic0 + i < p.IC) {
                    dinp[o + (ic0 + i) * HW] = acc[j][i] * unscale;
                }
                if (ic0 + 4u + i < p.IC) {
                    dinp[o + (ic0 + 4u + i) * HW] = acc_hi[j][i] * unscale;
                }
            }
        }
    }
}
