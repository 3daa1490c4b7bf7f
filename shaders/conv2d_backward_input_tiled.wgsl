// Conv2d backward w.r.t. the input through workgroup memory (the variant WGRAD_CONV_KERNELS=tiled
// chooses, device::ConvKernels; by default conv2d_backward_input.wgsl runs): an implicit GEMM
//   dinp[n, ic, ih, iw] = sum over r = (oc, kh, kw) of weight[oc, ic, kh, kw] * dout[n, oc, oh, ow]
//   where oh = (ih + PH - kh*DH) / SH and ow = (iw + PW - kw*DW) / SW are exact and in range.
// weight: (OC, IC, KH, KW); dout: (N, OC, OH, OW); dinp: (N, IC, H, W) overwritten, or split s's
// partial sums at s * N*IC*H*W when the OC reduction is split in chunks of `chunk`.
// Dispatch: one workgroup per split and tile of BM input channels x BN input pixels (over n, ih, iw),
// pixel tiles fastest; 2-D grid past 65,535. Stages of BK reduction rows in workgroup memory; each
// invocation accumulates 8 channels x 8 pixels: 4t..4t+3 and 64+4t..64+4t+3 of the tile.
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
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dinp: array<f32>;

// As[r][c]: 4 channels per vec4; Bs[r][pixel]: 4 pixels per vec4.
var<workgroup> As: array<vec4<f32>, 128>; // BK * BM / 4
var<workgroup> Bs: array<vec4<f32>, 512>; // BK * BN / 4

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.x + wid.y * nwg.x;
    let HW = p.H * p.W;
    let P = p.N * HW;
    let ptiles = (P + BN - 1u) / BN;
    let tiles = ptiles * ((p.IC + BM - 1u) / BM);
    if (g >= tiles * p.splits) {
        return;
    }
    let s = g / tiles;
    let t = g % tiles;
    let m0 = (t / ptiles) * BM;
    let n0 = (t % ptiles) * BN;
    let OHW = p.OH * p.OW;
    let KHW = p.KH * p.KW;
    let r_begin = s * p.chunk * KHW;
    let r_end = min((s + 1u) * p.chunk, p.OC) * KHW;

    // The two pixel columns this invocation stages: n0 + li and n0 + li + 64.
    var dbase: array<u32, 2>;
    var th0: array<i32, 2>;
    var tw0: array<i32, 2>;
    var qok: array<bool, 2>;
    for (var c = 0u; c < 2u; c++) {
        let col = n0 + li + 64u * c;
        qok[c] = col < P;
        let q = min(col, P - 1u);
        let r = q % HW;
        dbase[c] = (q / HW) * p.OC * OHW;
        th0[c] = i32(r / p.W + p.PH);
        tw0[c] = i32(r % p.W + p.PW);
    }
    // The weight rows it stages: channels 4 * (li / 16 + 4 i), i = 0, 1, at reduction row li % 16.
    let ar = li % 16u;
    let last = p.IC - 1u;
    var acol: array<vec4<u32>, 2>;
    for (var i = 0u; i < 2u; i++) {
        let c0 = m0 + 4u * (li / 16u + 4u * i);
        acol[i] = vec4<u32>(min(c0, last), min(c0 + 1u, last), min(c0 + 2u, last), min(c0 + 3u, last)) * KHW;
    }
    let unit = p.SH == 1u && p.SW == 1u;
    let tm = li / 16u;
    let tn = li % 16u;

    var acc: array<vec4<f32>, 8>;
    var acc_hi: array<vec4<f32>, 8>;
    for (var r0 = r_begin; r0 < r_end; r0 += BK) {
        let r = r0 + ar;
        let rc = min(r, r_end - 1u);
        let wrow = (rc / KHW) * p.IC * KHW + rc % KHW;
        for (var i = 0u; i < 2u; i++) {
            let w = wrow + acol[i];
            let a = vec4<f32>(weight[w.x], weight[w.y], weight[w.z], weight[w.w]);
            As[ar * 8u + li / 16u + 4u * i] = select(vec4<f32>(0.0), a, r < r_end);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let rr = min(r0 + kk, r_end - 1u);
            let oc = rr / KHW;
            let kr = rr % KHW;
            let dh = i32((kr / p.KW) * p.DH);
            let dw = i32((kr % p.KW) * p.DW);
            for (var c = 0u; c < 2u; c++) {
                let th = th0[c] - dh;
                let tw = tw0[c] - dw;
                var oh = u32(max(th, 0));
                var ow = u32(max(tw, 0));
                var exact = true;
                // Uniform: stride 1 (most layers) needs no integer division.
                if (!unit) {
                    oh = oh / p.SH;
                    ow = ow / p.SW;
                    exact = oh * p.SH == u32(th) && ow * p.SW == u32(tw);
                }
                let ok = qok[c] && r0 + kk < r_end && th >= 0 && tw >= 0 && exact && oh < p.OH && ow < p.OW;
                let y = dout[dbase[c] + oc * OHW + select(0u, oh * p.OW + ow, ok)];
                Bs[kk * 32u + 16u * c + li / 4u][li % 4u] = select(0.0, y, ok);
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

    let ic0 = m0 + 8u * tm;
    for (var j = 0u; j < 8u; j++) {
        let q = n0 + 4u * tn + select(60u + j, j, j < 4u);
        if (q < P) {
            let o = s * P * p.IC + (q / HW) * p.IC * HW + q % HW;
            for (var i = 0u; i < 4u; i++) {
                if (ic0 + i < p.IC) {
                    dinp[o + (ic0 + i) * HW] = acc[j][i];
                }
                if (ic0 + 4u + i < p.IC) {
                    dinp[o + (ic0 + 4u + i) * HW] = acc_hi[j][i];
                }
            }
        }
    }
}
