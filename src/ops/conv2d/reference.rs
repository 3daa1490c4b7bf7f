//! Conv2d as PyTorch defines it, loop by loop: the specification that the fast CPU kernels
//! (im2col + GEMM, the direct AVX kernels, Winograd) and, through them, the GPU kernels are tested
//! against. Generic over f32 and f64; slow (it never runs in training).
//!
//! ```text
//! out[n, oc, oh, ow] = bias[oc] + Σ_{ic, kh, kw} weight[oc, ic, kh, kw] · inp[n, ic, ih, iw],
//! ih = oh·SH + kh·DH − PH, iw = ow·SW + kw·DW − PW, the taps outside the input reading zeros.
//! ```
//! The gradients are this sum's partial derivatives: each tap adds dout · weight to dinp and
//! dout · inp to dweight; dbias sums dout over (N, OH, OW).

use super::Geometry;
use crate::cpu::Real;

/// Every tap of the convolution, in order: (output index, input index, weight index), input taps
/// in the padding left out.
fn taps(g: &Geometry) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let outputs = (0..g.n).flat_map(move |n| {
        (0..g.oc).flat_map(move |oc| (0..g.oh).flat_map(move |oh| (0..g.ow).map(move |ow| (n, oc, oh, ow))))
    });
    outputs.flat_map(move |(n, oc, oh, ow)| {
        let o = ((n * g.oc + oc) * g.oh + oh) * g.ow + ow;
        (0..g.ic).flat_map(move |ic| {
            (0..g.kh).flat_map(move |kh| {
                (0..g.kw).filter_map(move |kw| {
                    let ih = (oh * g.sh + kh * g.dh).checked_sub(g.ph).filter(|&i| i < g.h)?;
                    let iw = (ow * g.sw + kw * g.dw).checked_sub(g.pw).filter(|&i| i < g.w)?;
                    let i = ((n * g.ic + ic) * g.h + ih) * g.w + iw;
                    Some((o, i, ((oc * g.ic + ic) * g.kh + kh) * g.kw + kw))
                })
            })
        })
    })
}

/// out (N, OC, OH, OW) from inp (N, IC, H, W), weight (OC, IC, KH, KW) and bias (OC,).
pub fn forward<T: Real>(g: &Geometry, inp: &[T], weight: &[T], bias: Option<&[T]>) -> Vec<T> {
    let plane = g.oh * g.ow;
    let mut out: Vec<T> = (0..g.n * g.oc * plane).map(|o| bias.map_or(T::zero(), |b| b[(o / plane) % g.oc])).collect();
    for (o, i, k) in taps(g) {
        out[o] += weight[k] * inp[i];
    }
    out
}

/// The gradients of [`forward`] for an upstream gradient `dout` (N, OC, OH, OW): (dinp, dweight,
/// dbias), shaped as inp, weight and bias.
pub fn backward<T: Real>(g: &Geometry, dout: &[T], inp: &[T], weight: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (mut dinp, mut dweight) = (vec![T::zero(); inp.len()], vec![T::zero(); weight.len()]);
    for (o, i, k) in taps(g) {
        dinp[i] += dout[o] * weight[k];
        dweight[k] += dout[o] * inp[i];
    }
    let plane = g.oh * g.ow;
    let mut dbias = vec![T::zero(); g.oc];
    for (o, &d) in dout.iter().enumerate() {
        dbias[(o / plane) % g.oc] += d;
    }
    (dinp, dweight, dbias)
}
