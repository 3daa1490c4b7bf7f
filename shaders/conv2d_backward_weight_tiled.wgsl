// Conv2d backward w.r.t. the weight through workgroup memory (the variant WGRAD_CONV_KERNELS=tiled
// chooses, device::ConvKernels; by default conv2d_backward_weight.wgsl runs): for split s,
//   part[s, oc, k] = sum over output pixels q in [s*chunk, (s+1)*chunk) of (n, oh, ow) of
//   dout[n, oc, oh, ow] * inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW],  k = (ic, kh, kw).
// inp: (N, IC, H, W); dout: (N, OC, OH, OW); part: (splits, OC, IC*KH*KW), overwritten. With one
// split, part is dweight itself; otherwise sum_splits adds the splits in order.
// Dispatch: one workgroup per split and tile of BM output channels x BN weight columns k, k tiles
// fastest; 2-D grid past 65,535. Stages of BK pixels in workgroup memory; each invocation
// accumulates 8 channels x 8 columns: 4t..4t+3 and 64+4t..64+4t+3 of the tile.
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

// Invocations per workgroup (Rust declares the same in its shaders! entry): 4 along channels x 16
// along columns.
const WG: u32 = 64u;
// Rows (channels), columns and reduction steps per stage (ops::conv2d::TILED_*).
const BM: u32 = 32u;
const BN: u32 = 128u;
const BK: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

// As[q][c]: 4 channels per vec4; Bs[q][k]: 4 columns per vec4.
var<workgroup> As: array<vec4<f32>, 128>; // BK * BM / 4
var<workgroup> Bs: array<vec4<f32>, 512>; // BK * BN / 4

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
    let HW = p.H * p.W;
    let OHW = p.OH * p.OW;
    let P = p.N * OHW;
    let q_begin = s * p.chunk;
    let q_end = min(q_begin + p.chunk, P);

    // The two weight columns this invocation stages: k = n0 + li and n0 + li + 64.
    var xoff: array<u32, 2>;
    var offh: array<i32, 2>;
    var offw: array<i32, 2>;
    var kok: array<bool, 2>;
    for (var c = 0u; c < 2u; c++) {
        let col = n0 + li + 64u * c;
        kok[c] = col < K;
        let k = min(col, K - 1u);
        let kr = k % KHW;
        xoff[c] = (k / KHW) * HW;
        offh[c] = i32((kr / p.KW) * p.DH) - i32(p.PH);
        offw[c] = i32((kr % p.KW) * p.DW) - i32(p.PW);
    }
    // The dout rows it stages: channels 4 * (li / 16 + 4 i), i = 0, 1, at pixel li % 16.
    let aq = li % 16u;
    let last = p.OC - 1u;
    var arow: array<vec4<u32>, 2>;
    for (var i = 0u; i < 2u; i++) {
        let c0 = m0 + 4u * (li / 16u + 4u * i);
        arow[i] = vec4<u32>(min(c0, last), min(c0 + 1u, last), min(c0 + 2u, last), min(c0 + 3u, last)) * OHW;
    }
    let tm = li / 16u;
    let tn = li % 16u;

    var acc: array<vec4<f32>, 8>;
    var acc_hi: array<vec4<f32>, 8>;
    for (var q0 = q_begin; q0 < q_end; q0 += BK) {
        let q = q0 + aq;
        let qc = min(q, q_end - 1u);
        let drow = (qc / OHW) * p.OC * OHW + qc % OHW;
        for (var i = 0u; i < 2u; i++) {
            let d = drow + arow[i];
            let a = vec4<f32>(dout[d.x], dout[d.y], dout[d.z], dout[d.w]);
            As[aq * 8u + li / 16u + 4u * i] = select(vec4<f32>(0.0), a, q < q_end);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let qr = min(q0 + kk, q_end - 1u);
            let r = qr % OHW;
            let xn = (qr / OHW) * p.IC * HW;
            let ih_base = i32((r / p.OW) * p.SH);
            let iw_base = i32((r % p.OW) * p.SW);
            for (var c = 0u; c < 2u; c++) {
                let ih = ih_base + offh[c];
                let iw = iw_base + offw[c];
                let ok = kok[c] && q0 + kk < q_end && ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W);
                let x = inp[xn + xoff[c] + u32(select(0, ih * i32(p.W) + iw, ok))];
                Bs[kk * 32u + 16u * c + li / 4u][li % 4u] = select(0.0, x, ok);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = As[kk * 8u + 2u * tm];
            let a_hi = As[kk * 8u + 2u * tm + 1u];
            let b_lo = Bs[kk * 32u + tn];
            let b_hi = Bs[kk * 32u + 16u + tn];
            for (var j = 0u; j < 4u; j++) {
                acc[j] = fma(a, vec4<f32>(b_lo[j]), acc[j]);
                acc_hi[j] = fma(a_hi, vec4<f32>(b_lo[j]), acc_hi[j]);
                acc[j + 4u] = fma(a, vec4<f32>(b_hi[j]), acc[j + 4u]);
                acc_hi[j + 4u] = fma(a_hi, vec4<f32>(b_hi[j]), acc_hi[j + 4u]);
            }
        }
        workgroupBarrier();
    }

    let oc0 = m0 + 8u * tm;
    let o = s * p.OC * K;
    for (var j = 0u; j < 8u; j++) {
        let k = n0 + 4u * tn + select(60u + j, j, j < 4u);
        if (k < K) {
            for (var i = 0u; i < 4u; i++) {
                if (oc0 + i < p.OC) {
                    part[o + (oc0 + i) * K + k] = acc[j][i];
                }
                if (oc0 + 4u + i < p.OC) {
                    part[o + (oc0 + 4u + i) * K + k] = acc_hi[j][i];
                }
            }
        }
    }
}
