// Conv2d forward as an implicit GEMM through workgroup memory (the variant
// WGRAD_CONV_KERNELS=tiled chooses, device::ConvKernels; by default conv2d_forward.wgsl runs):
//   out[n, oc, oh, ow] = bias[oc] + sum_k weight[oc, k] * col[k, (n, oh, ow)],
//   k = (ic, kh, kw), col[k, q] = inp[n, ic, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] (zero padding).
// inp: (N, IC, H, W); weight: (OC, IC, KH, KW); bias: (OC,) (read when has_bias); out: (N, OC, OH, OW)
// overwritten, or split s's partial sums at s * N*OC*OH*OW when the IC reduction is split in chunks.
// Dispatch: one workgroup per split and tile of BM output channels x BN output pixels (pixels over
// (n, oh, ow) together), pixel tiles fastest; 2-D grid past 65,535. Each stage stages BK reduction
// rows of the weight (BK x BM) and of col (BK x BN) in workgroup memory; each invocation then
// accumulates 8 channels x 8 pixels: pixels 4t..4t+3 and 64+4t..64+4t+3 of the tile (two vec4
// reads per stage row, without bank conflicts).
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
// along pixels.
const WG: u32 = 64u;
// Output channels, output pixels and reduction rows per stage (ops::conv2d::TILED_*).
const BM: u32 = 32u;
const BN: u32 = 128u;
const BK: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// As[k][c]: 4 channels per vec4; Bs[k][q]: 4 pixels per vec4.
var<workgroup> As: array<vec4<f32>, 128>; // BK * BM / 4
var<workgroup> Bs: array<vec4<f32>, 512>; // BK * BN / 4

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
    let K = p.IC * KHW;
    let k_begin = s * p.chunk * KHW;
    let k_end = min((s + 1u) * p.chunk, p.IC) * KHW;

    // The two pixel columns this invocation stages: n0 + li and n0 + li + 64.
    var xbase: array<u32, 2>;
    var ih0: array<i32, 2>;
    var iw0: array<i32, 2>;
    var qok: array<bool, 2>;
    for (var c = 0u; c < 2u; c++) {
        let col = n0 + li + 64u * c;
        qok[c] = col < P;
        let q = min(col, P - 1u);
        let r = q % OHW;
        xbase[c] = (q / OHW) * p.IC * HW;
        ih0[c] = i32((r / p.OW) * p.SH) - i32(p.PH);
        iw0[c] = i32((r % p.OW) * p.SW) - i32(p.PW);
    }
    // The weight rows it stages: channels 4 * (li / 16 + 4 i), i = 0, 1, at reduction row li % 16.
    let ak = li % 16u;
    let last = p.OC - 1u;
    var arow: array<vec4<u32>, 2>;
    for (var i = 0u; i < 2u; i++) {
        let c0 = m0 + 4u * (li / 16u + 4u * i);
        arow[i] = vec4<u32>(min(c0, last), min(c0 + 1u, last), min(c0 + 2u, last), min(c0 + 3u, last)) * K;
    }
    let tm = li / 16u;
    let tn = li % 16u;

    var acc: array<vec4<f32>, 8>;
    var acc_hi: array<vec4<f32>, 8>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        let k = k0 + ak;
        let kc = min(k, k_end - 1u);
        for (var i = 0u; i < 2u; i++) {
            let a = vec4<f32>(weight[arow[i].x + kc], weight[arow[i].y + kc], weight[arow[i].z + kc], weight[arow[i].w + kc]);
            As[ak * 8u + li / 16u + 4u * i] = select(vec4<f32>(0.0), a, k < k_end);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let kr = min(k0 + kk, k_end - 1u);
            let ic = kr / KHW;
            let r = kr % KHW;
            let dh = i32((r / p.KW) * p.DH);
            let dw = i32((r % p.KW) * p.DW);
            for (var c = 0u; c < 2u; c++) {
                let ih = ih0[c] + dh;
                let iw = iw0[c] + dw;
                let ok = qok[c] && k0 + kk < k_end && ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W);
                let x = inp[xbase[c] + ic * HW + u32(select(0, ih * i32(p.W) + iw, ok))];
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
    var b = vec4<f32>(0.0);
    var b_hi = vec4<f32>(0.0);
    if (p.has_bias == 1u && s == 0u) {
        b = vec4<f32>(bias[min(oc0, last)], bias[min(oc0 + 1u, last)], bias[min(oc0 + 2u, last)], bias[min(oc0 + 3u, last)]);
        b_hi = vec4<f32>(bias[min(oc0 + 4u, last)], bias[min(oc0 + 5u, last)], bias[min(oc0 + 6u, last)],
                         bias[min(oc0 + 7u, last)]);
    }
    for (var j = 0u; j < 8u; j++) {
        let q = n0 + 4u * tn + select(60u + j, j, j < 4u);
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
            }
        }
    }
}
