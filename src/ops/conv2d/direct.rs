//! The CPU path's direct convolution, for the convolutions CNNs are made of (stride 1, dilation 1,
//! padding below the kernel size) in f32 on x86-64 with AVX2 and FMA: no im2col matrix, and
//! register-tiled kernels that run near the FMA units' peak.
//!
//! - Forward: the input is copied once into a zero-padded layout whose rows are long enough for
//!   whole vectors (of 16 pixels on AVX-512 where rows are longer than 8, else of 8); each kernel
//!   call keeps a tile of NO output channels × NV vectors of output pixels in registers and walks
//!   IC·KH·KW, each step one load per pixel vector and one broadcast weight per channel. Weights
//!   are packed once per call, NO channels side by side.
//! - Input gradient: the same kernel, as the forward convolution of the padded output gradient
//!   with the flipped, transposed weight (a stride-1 transposed convolution is a convolution).
//! - Weight gradient: an outer-product kernel: for each output pixel, NOV vectors of 8 output
//!   channels (the gradient transposed to pixel-major; on AVX-512 two of them to a 16-lane
//!   register where there are more than 8 channels) times NK scalars of the padded input
//!   (k = (ic, kh, kw) at fixed offsets from the pixel), accumulated over a chunk of images; chunks'
//!   sums are added in chunk order, so the result does not depend on the thread count.
//!
//! Two builds of each kernel are picked at run time: AVX-512 (32 vector registers: larger tiles;
//! 16-lane vectors) and AVX2. Elsewhere, and for other geometries, Conv2d uses
//! im2col + GEMM.

// Off x86_64 no build of these kernels exists and isa() finds none: the planning code is unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::Geometry;
use rayon::prelude::*;

/// Which build of the kernels this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
}

/// The kernels this CPU can run, detected once.
pub fn isa() -> Option<Isa> {
    static ISA: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var("WGRAD_CPU_DIRECT").as_deref() == Ok("0") {
                return None;
            }
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                return Some(Isa::Avx512);
            }
            if avx2 {
                return Some(Isa::Avx2);
            }
        }
        None
    })
}

/// The kernels that compute this convolution directly, if any: stride 1, dilation 1 and padding
/// below the kernel size (so the input gradient is a convolution too), on a CPU with AVX2.
pub fn applies(g: &Geometry) -> Option<Isa> {
    let shape = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.ph < g.kh && g.pw < g.kw;
    isa().filter(|_| shape)
}

/// Vector width in f32 lanes (the weight gradient's, and the forward's but on AVX-512 rows of
/// more than 8 pixels).
const V: usize = 8;

/// Output pixels per vector of the forward kernels (and the input gradient's, a forward
/// convolution of its own geometry): 16 (one AVX-512 register) where the CPU has AVX-512 and the
/// rows are longer than 8 pixels, else 8 (an AVX register; an 8-pixel row would fill half of a
/// 16-lane one).
fn forward_lanes(isa: Isa, g: &Geometry) -> usize {
    match isa {
        Isa::Avx512 if g.ow > V => 2 * V,
        _ => V,
    }
}

/// Output channels per forward tile (weights are packed in groups of this many).
const fn tile_channels(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 8,
        Isa::Avx2 => 6,
    }
}

/// The zero-padded layout of a convolution's input: per channel `hp` rows of `wp` floats, wide
/// enough that every vector of `lanes` output pixels reads inside its row.
#[derive(Clone, Copy, Debug)]
struct Padded {
    hp: usize,
    wp: usize,
    /// Output row length rounded up to whole vectors.
    owr: usize,
}

impl Padded {
    fn of(g: &Geometry, lanes: usize) -> Padded {
        let owr = g.ow.div_ceil(lanes) * lanes;
        Padded { hp: g.h + 2 * g.ph, wp: owr + g.kw - 1, owr }
    }
    fn plane(&self) -> usize {
        self.hp * self.wp
    }
    fn image(&self, g: &Geometry) -> usize {
        g.ic * self.plane()
    }
}

/// The geometry of the input gradient as a forward convolution: dout (N, OC, OH, OW) padded by
/// (KH-1-PH, KW-1-PW) convolved with the flipped, transposed weight gives dinp (N, IC, H, W).
fn transposed(g: &Geometry) -> Geometry {
    Geometry {
        ic: g.oc,
        h: g.oh,
        w: g.ow,
        oc: g.ic,
        oh: g.h,
        ow: g.w,
        ph: g.kh - 1 - g.ph,
        pw: g.kw - 1 - g.pw,
        ..*g
    }
}

fn packed_weights(g: &Geometry, isa: Isa) -> usize {
    let no = tile_channels(isa);
    g.oc.div_ceil(no) * no * g.k()
}

/// Scratch words of the forward: the padded batch and the packed weights.
pub fn forward_scratch(isa: Isa, g: &Geometry) -> Vec<u64> {
    vec![(g.n * Padded::of(g, forward_lanes(isa, g)).image(g)) as u64, packed_weights(g, isa) as u64]
}

/// Copies x (N, IC, H, W) into the padded layout (zeros around).
fn pad(g: &Geometry, p: Padded, x: &[f32], xp: &mut [f32]) {
    let (hw, img) = (g.h * g.w, p.image(g));
    xp[..g.n * img].par_chunks_mut(img).enumerate().for_each(|(n, dst)| {
        dst.fill(0.0);
        for c in 0..g.ic {
            let src = &x[(n * g.ic + c) * hw..][..hw];
            let plane = &mut dst[c * p.plane()..][..p.plane()];
            for (h, row) in src.chunks_exact(g.w).enumerate() {
                plane[(h + g.ph) * p.wp + g.pw..][..g.w].copy_from_slice(row);
            }
        }
    });
}

/// Packs w(o, i, kh, kw) as [oc block][ic][kh][kw][NO], zero beyond the last channel.
fn pack(g: &Geometry, no: usize, w: impl Fn(usize, usize, usize, usize) -> f32, out: &mut [f32]) {
    let k = g.k();
    for (b, blk) in out[..g.oc.div_ceil(no) * no * k].chunks_exact_mut(no * k).enumerate() {
        let mut at = 0;
        for i in 0..g.ic {
            for kh in 0..g.kh {
                for kw in 0..g.kw {
                    for o in 0..no {
                        let oc = b * no + o;
                        blk[at] = if oc < g.oc { w(oc, i, kh, kw) } else { 0.0 };
                        at += 1;
                    }
                }
            }
        }
    }
}

/// out (N, OC, OH, OW), overwritten, from x (N, IC, H, W), weight (OC, IC, KH, KW) and bias.
pub fn forward(isa: Isa, g: &Geometry, out: &mut [f32], x: &[f32], weight: &[f32], bias: Option<&[f32]>, scratch: &mut [&mut [f32]]) {
    let p = Padded::of(g, forward_lanes(isa, g));
    let [xp, wp] = scratch else { panic!("conv2d direct forward: expected 2 scratch buffers") };
    pad(g, p, x, xp);
    let (k, kk) = (g.k(), g.kh * g.kw);
    let no = tile_channels(isa);
    pack(g, no, |o, i, kh, kw| weight[o * k + i * kk + kh * g.kw + kw], wp);
    convolve(isa, g, p, out, xp, wp, bias);
}

/// The input gradient dinp (N, IC, H, W), overwritten, from dout and weight.
pub fn backward_input(isa: Isa, g: &Geometry, dinp: &mut [f32], dout: &[f32], weight: &[f32], scratch: &mut [&mut [f32]]) {
    let t = transposed(g);
    let p = Padded::of(&t, forward_lanes(isa, &t));
    let [dp, wp] = scratch else { panic!("conv2d direct input gradient: expected 2 scratch buffers") };
    pad(&t, p, dout, dp);
    let (k, kk) = (g.k(), g.kh * g.kw);
    // w'(ic, oc, kh, kw) = w(oc, ic, KH-1-kh, KW-1-kw)
    pack(&t, tile_channels(isa), |i, o, kh, kw| weight[o * k + i * kk + (g.kh - 1 - kh) * g.kw + (g.kw - 1 - kw)], wp);
    convolve(isa, &t, p, dinp, dp, wp, None);
}

/// Scratch words of the input gradient: the padded output gradient and the packed weight.
pub fn backward_input_scratch(isa: Isa, g: &Geometry) -> Vec<u64> {
    let t = transposed(g);
    vec![(t.n * Padded::of(&t, forward_lanes(isa, &t)).image(&t)) as u64, packed_weights(&t, isa) as u64]
}

/// The convolution proper, over padded input and packed weights, in parallel over images.
fn convolve(isa: Isa, g: &Geometry, p: Padded, out: &mut [f32], xp: &[f32], wp: &[f32], bias: Option<&[f32]>) {
    let (ohw, img) = (g.oh * g.ow, p.image(g));
    out.par_chunks_mut(g.oc * ohw).enumerate().for_each(|(n, out)| {
        let x = &xp[n * img..][..img];
        // SAFETY: isa() saw the features these builds use (it finds none off x86_64).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match (isa, forward_lanes(isa, g)) {
                (Isa::Avx512, 16) => image_avx512_16(g, p, out, x, wp, bias),
                (Isa::Avx512, _) => image_avx512(g, p, out, x, wp, bias),
                (Isa::Avx2, _) => image_avx2(g, p, out, x, wp, bias),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct convolution without x86_64 kernels ({isa:?}, {p:?}, {}, {})", out.len() + x.len() + wp.len(), bias.is_some());
    });
}

/// One image: every (channel block, vector block) tile.
/// Built once per vector type: `$lanes` f32 lanes in a `$vec`, with its intrinsics.
macro_rules! image_fn {
    ($name:ident, $features:literal, $no:literal, $nv:literal, $lanes:literal, $vec:ident, $setzero:ident,
     $set1:ident, $loadu:ident, $fmadd:ident, $storeu:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(g: &Geometry, p: Padded, out: &mut [f32], x: &[f32], wp: &[f32], bias: Option<&[f32]>) {
            use std::arch::x86_64::*;
            const NO: usize = $no;
            const NV: usize = $nv;
            const L: usize = $lanes;
            let k = g.k();
            let vpr = p.owr / L; // vectors per output row
            let nvec = g.oh * vpr;
            let ohw = g.oh * g.ow;
            let xptr = x.as_ptr();
            for b in 0..g.oc.div_ceil(NO) {
                let w = &wp[b * NO * k..][..NO * k];
                let mut init = [0f32; NO];
                for (o, v) in init.iter_mut().enumerate() {
                    let oc = b * NO + o;
                    *v = match bias {
                        Some(bs) if oc < g.oc => bs[oc],
                        _ => 0.0,
                    };
                }
                let mut v0 = 0;
                while v0 < nvec {
                    let nv = NV.min(nvec - v0);
                    let mut offs = [0usize; NV];
                    for (j, off) in offs.iter_mut().enumerate().take(nv) {
                        let (r, c) = ((v0 + j) / vpr, (v0 + j) % vpr * L);
                        *off = r * p.wp + c;
                    }
                    let mut acc = [[$setzero(); NV]; NO];
                    match nv {
                        NV => tile::<NO, NV>(xptr, &offs, g, p, w.as_ptr(), &init, &mut acc),
                        _ => tile_tail::<NO, NV>(nv, xptr, &offs, g, p, w.as_ptr(), &init, &mut acc),
                    }
                    // Store the tile: whole vectors straight, the row's last one lane by lane.
                    for o in 0..NO.min(g.oc - b * NO) {
                        let plane = &mut out[(b * NO + o) * ohw..][..ohw];
                        for j in 0..nv {
                            let (r, c) = ((v0 + j) / vpr, (v0 + j) % vpr * L);
                            let dst = &mut plane[r * g.ow + c..];
                            if c + L <= g.ow {
                                $storeu(dst.as_mut_ptr(), acc[o][j]);
                            } else {
                                let mut lanes = [0f32; L];
                                $storeu(lanes.as_mut_ptr(), acc[o][j]);
                                dst[..g.ow - c].copy_from_slice(&lanes[..g.ow - c]);
                            }
                        }
                    }
                    v0 += nv;
                }
            }

            /// NO channels × NV vectors: Σ over (ic, kh, kw) of weight × shifted input.
            #[inline(always)]
            unsafe fn tile<const NO: usize, const NV: usize>(
                x: *const f32,
                offs: &[usize; NV],
                g: &Geometry,
                p: Padded,
                w: *const f32,
                init: &[f32; NO],
                acc: &mut [[$vec; NV]; NO],
            ) {
                let mut a = [[$setzero(); NV]; NO];
                for o in 0..NO {
                    for v in 0..NV {
                        a[o][v] = $set1(init[o]);
                    }
                }
                let mut wptr = w;
                for c in 0..g.ic {
                    let cbase = x.add(c * p.plane());
                    for kh in 0..g.kh {
                        let row = cbase.add(kh * p.wp);
                        for kw in 0..g.kw {
                            let mut xv = [$setzero(); NV];
                            for v in 0..NV {
                                xv[v] = $loadu(row.add(offs[v] + kw));
                            }
                            for o in 0..NO {
                                let wv = $set1(*wptr.add(o));
                                for v in 0..NV {
                                    a[o][v] = $fmadd(wv, xv[v], a[o][v]);
                                }
                            }
                            wptr = wptr.add(NO);
                        }
                    }
                }
                *acc = a;
            }

            /// The last, partial vector block: the same sums, one vector at a time.
            #[allow(clippy::too_many_arguments)]
            #[inline(always)]
            unsafe fn tile_tail<const NO: usize, const NV: usize>(
                nv: usize,
                x: *const f32,
                offs: &[usize; NV],
                g: &Geometry,
                p: Padded,
                w: *const f32,
                init: &[f32; NO],
                acc: &mut [[$vec; NV]; NO],
            ) {
                for j in 0..nv {
                    let mut one = [[$setzero(); 1]; NO];
                    tile::<NO, 1>(x, &[offs[j]], g, p, w, init, &mut one);
                    for o in 0..NO {
                        acc[o][j] = one[o][0];
                    }
                }
            }
        }
    };
}

image_fn!(image_avx512_16, "avx2,fma,avx512f,avx512vl", 8, 3, 16, __m512, _mm512_setzero_ps, _mm512_set1_ps,
    _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_storeu_ps);
image_fn!(image_avx512, "avx2,fma,avx512f,avx512vl", 8, 3, 8, __m256, _mm256_setzero_ps, _mm256_set1_ps,
    _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_storeu_ps);
image_fn!(image_avx2, "avx2,fma", 6, 2, 8, __m256, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps,
    _mm256_fmadd_ps, _mm256_storeu_ps);

/// Images per weight-gradient chunk: each chunk's sum is formed apart and the chunks are added in
/// order (fixed, not the thread count, so results are the same bits on any machine).
const CHUNK: usize = 8;

/// Channel vectors (of 8) per weight-gradient tile, and k values per tile, for this geometry. On
/// AVX-512, tiles of more than 8 channels are held in 16-lane registers, two 8-channel vectors in
/// each.
fn dw_tile(isa: Isa, g: &Geometry) -> (usize, usize) {
    match isa {
        Isa::Avx512 if g.oc > 2 * V => (4, 12),
        Isa::Avx512 if g.oc > V => (2, 24),
        Isa::Avx512 => (1, 24),
        Isa::Avx2 if g.oc > V => (2, 6),
        Isa::Avx2 => (1, 12),
    }
}

/// Output channels rounded up to whole tiles.
fn dw_channels(isa: Isa, g: &Geometry) -> usize {
    let (nov, _) = dw_tile(isa, g);
    g.oc.div_ceil(nov * V) * nov * V
}

/// K rounded up to whole tiles.
fn dw_k(isa: Isa, g: &Geometry) -> usize {
    let (_, nk) = dw_tile(isa, g);
    g.k().div_ceil(nk) * nk
}

/// Scratch words of the weight gradient: the padded input, the transposed output gradient and
/// each chunk's sums.
pub fn backward_weight_scratch(isa: Isa, g: &Geometry) -> Vec<u64> {
    let p = Padded::of(g, V);
    let ocp = dw_channels(isa, g);
    vec![(g.n * p.image(g)) as u64, (g.n * g.oh * g.ow * ocp) as u64, (g.n.div_ceil(CHUNK) * ocp * dw_k(isa, g)) as u64]
}

/// The weight gradient dweight (OC, IC, KH, KW), overwritten, from dout and x.
pub fn backward_weight(isa: Isa, g: &Geometry, dweight: &mut [f32], dout: &[f32], x: &[f32], scratch: &mut [&mut [f32]]) {
    let p = Padded::of(g, V);
    let [xp, dyt, parts] = scratch else { panic!("conv2d direct weight gradient: expected 3 scratch buffers") };
    pad(g, p, x, xp);
    let (ohw, k, ocp) = (g.oh * g.ow, g.k(), dw_channels(isa, g));
    // dout (N, OC, OH·OW) → (N, OH·OW, OCP), zero beyond OC.
    dyt[..g.n * ohw * ocp].par_chunks_mut(ohw * ocp).enumerate().for_each(|(n, t)| {
        let src = &dout[n * g.oc * ohw..][..g.oc * ohw];
        // SAFETY: isa() saw AVX2 (it finds nothing off x86_64).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            transpose(g.oc, ohw, ocp, src, t)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct convolution without x86_64 kernels ({}, {})", src.len(), t.len());
    });
    let chunks = g.n.div_ceil(CHUNK);
    let (xp, dyt) = (&*xp, &*dyt);
    let (nov, nk) = dw_tile(isa, g);
    let kp = dw_k(isa, g);
    parts[..chunks * ocp * kp].par_chunks_mut(ocp * kp).enumerate().for_each(|(c, part)| {
        let images = c * CHUNK..(c * CHUNK + CHUNK).min(g.n);
        part.fill(0.0);
        // SAFETY: isa() saw the features these builds use.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match (isa, nov) {
                (Isa::Avx512, 4) => dw_avx512_4(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx512, 2) => dw_avx512_2(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx512, _) => dw_avx512_1(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx2, 2) => dw_avx2_2(g, p, images, xp, dyt, ocp, part),
                (Isa::Avx2, _) => dw_avx2_1(g, p, images, xp, dyt, ocp, part),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct convolution without x86_64 kernels ({isa:?}, {nov}, {p:?}, {images:?}, {}, {})", xp.len() + dyt.len(), ocp);
    });
    // A part holds tile by tile: [k group][channel vector][k in group][lane]. The chunks are
    // added in order into the gradient (OC, K).
    let at = |oc: usize, kk: usize| (((kk / nk) * (ocp / V) + oc / V) * nk + kk % nk) * V + oc % V;
    dweight[..g.oc * k].par_chunks_mut(k).enumerate().for_each(|(oc, row)| {
        for (kk, d) in row.iter_mut().enumerate() {
            let i = at(oc, kk);
            let mut sum = parts[i];
            for c in 1..chunks {
                sum += parts[c * ocp * kp + i];
            }
            *d = sum;
        }
    });
}

/// t (P, OCP) = src (OC, P)ᵀ, zero beyond OC: 8 × 8 blocks transposed in registers, the edges
/// element by element.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose(oc: usize, px: usize, ocp: usize, src: &[f32], t: &mut [f32]) {
    use std::arch::x86_64::*;
    let (oc8, px8) = (oc / V * V, px / V * V);
    for o0 in (0..oc8).step_by(V) {
        for p0 in (0..px8).step_by(V) {
            let r = |i: usize| _mm256_loadu_ps(src.as_ptr().add((o0 + i) * px + p0));
            let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let t4 = _mm256_unpacklo_ps(r4, r5);
            let t5 = _mm256_unpackhi_ps(r4, r5);
            let t6 = _mm256_unpacklo_ps(r6, r7);
            let t7 = _mm256_unpackhi_ps(r6, r7);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (i, v) in out.iter().enumerate() {
                _mm256_storeu_ps(t.as_mut_ptr().add((p0 + i) * ocp + o0), *v);
            }
        }
        for p in px8..px {
            for o in o0..o0 + V {
                t[p * ocp + o] = src[o * px + p];
            }
        }
    }
    for p in 0..px {
        for o in oc8..ocp {
            t[p * ocp + o] = if o < oc { src[o * px + p] } else { 0.0 };
        }
    }
}

/// One chunk of images: part += Σ over their pixels of dyt[pixel] ⊗ x at the k offsets, tile by
/// tile ([k group][channel vector][k in group][lane]). Built once per register type: `$reg` holds
/// `$per` of the tile's 8-channel vectors (the channels are adjacent in dyt), read from and written
/// back to their places in `part` by `$load` and `$store`.
macro_rules! dw_fn {
    ($name:ident, $features:literal, $nov:literal, $nk:literal, $reg:ident, $per:literal, $setzero:ident,
     $loadu:ident, $set1:ident, $fmadd:ident, $load:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            g: &Geometry,
            p: Padded,
            images: std::ops::Range<usize>,
            xp: &[f32],
            dyt: &[f32],
            ocp: usize,
            part: &mut [f32],
        ) {
            use std::arch::x86_64::*;
            const NOV: usize = $nov;
            const NK: usize = $nk;
            // Registers per tile, each `$per` channel vectors.
            const NR: usize = NOV / $per;
            let (k, ohw, img) = (g.k(), g.oh * g.ow, p.image(g));
            // The offset of k = (ic, kh, kw) from a pixel's position in the padded input.
            let off = |kk: usize| {
                let (ic, r) = (kk / (g.kh * g.kw), kk % (g.kh * g.kw));
                ic * p.plane() + (r / g.kw) * p.wp + r % g.kw
            };
            let ovs = ocp / V;
            // Output rows per block: about 256 pixels, whose transposed gradient stays in L1
            // while every tile passes over them.
            let rows = (256 / g.ow.max(1)).clamp(1, g.oh);
            for n in images {
                let x = xp.as_ptr().add(n * img);
                let d = dyt.as_ptr().add(n * ohw * ocp);
                for r0 in (0..g.oh).step_by(rows) {
                    let r1 = (r0 + rows).min(g.oh);
                    for k0 in (0..k).step_by(NK) {
                        let nk = NK.min(k - k0);
                        // Past the last k, repeat it (its sums are computed and never read).
                        let mut offs = [0usize; NK];
                        for (j, o) in offs.iter_mut().enumerate() {
                            *o = off(k0 + j.min(nk - 1));
                        }
                        for ov in (0..ovs).step_by(NOV) {
                            let base_tile = part.as_mut_ptr().add(((k0 / NK) * ovs + ov) * NK * V);
                            let tile = |v: usize| base_tile.add(v * NK * V);
                            let mut acc = [[$setzero(); NK]; NR];
                            for v in 0..NR {
                                for j in 0..NK {
                                    acc[v][j] = $load(|i| tile(v * $per + i).add(j * V));
                                }
                            }
                            for oh in r0..r1 {
                                for ow in 0..g.ow {
                                    let px = oh * g.ow + ow;
                                    let base = x.add(oh * p.wp + ow);
                                    let mut dv = [$setzero(); NR];
                                    for v in 0..NR {
                                        dv[v] = $loadu(d.add(px * ocp + (ov + v * $per) * V));
                                    }
                                    for j in 0..NK {
                                        let xv = $set1(*base.add(offs[j]));
                                        for v in 0..NR {
                                            acc[v][j] = $fmadd(dv[v], xv, acc[v][j]);
                                        }
                                    }
                                }
                            }
                            for v in 0..NR {
                                for j in 0..NK {
                                    $store(acc[v][j], |i| tile(v * $per + i).add(j * V));
                                }
                            }
                        }
                    }
                }
            }
        }
    };
}

/// An 8-lane vector of a weight-gradient tile, read from its place (`at(0)`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load8(at: impl Fn(usize) -> *mut f32) -> std::arch::x86_64::__m256 {
    std::arch::x86_64::_mm256_loadu_ps(at(0))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store8(v: std::arch::x86_64::__m256, at: impl Fn(usize) -> *mut f32) {
    std::arch::x86_64::_mm256_storeu_ps(at(0), v)
}

/// Two 8-lane vectors of a weight-gradient tile, read from their places (`at(0)`, `at(1)`) into one
/// 16-lane register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[inline]
unsafe fn load16(at: impl Fn(usize) -> *mut f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let lo = _mm512_castps256_ps512(_mm256_loadu_ps(at(0)));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(_mm256_loadu_ps(at(1)))))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[inline]
unsafe fn store16(v: std::arch::x86_64::__m512, at: impl Fn(usize) -> *mut f32) {
    use std::arch::x86_64::*;
    _mm256_storeu_ps(at(0), _mm512_castps512_ps256(v));
    _mm256_storeu_ps(at(1), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
}

dw_fn!(dw_avx512_4, "avx2,fma,avx512f,avx512vl", 4, 12, __m512, 2, _mm512_setzero_ps, _mm512_loadu_ps,
    _mm512_set1_ps, _mm512_fmadd_ps, load16, store16);
dw_fn!(dw_avx512_2, "avx2,fma,avx512f,avx512vl", 2, 24, __m512, 2, _mm512_setzero_ps, _mm512_loadu_ps,
    _mm512_set1_ps, _mm512_fmadd_ps, load16, store16);
dw_fn!(dw_avx512_1, "avx2,fma,avx512f,avx512vl", 1, 24, __m256, 1, _mm256_setzero_ps, _mm256_loadu_ps,
    _mm256_set1_ps, _mm256_fmadd_ps, load8, store8);
dw_fn!(dw_avx2_2, "avx2,fma", 2, 6, __m256, 1, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_fmadd_ps, load8, store8);
dw_fn!(dw_avx2_1, "avx2,fma", 1, 12, __m256, 1, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_fmadd_ps, load8, store8);

#[cfg(test)]
mod tests {
    use super::super::{backward_cpu, forward_cpu, Conv2d};
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn buffers(words: &[u64]) -> Vec<Vec<f32>> {
        words.iter().map(|&w| vec![f32::NAN; w as usize]).collect()
    }

    /// Both builds this CPU runs (AVX-512 machines run the AVX2 one too).
    fn builds() -> Vec<Isa> {
        match isa() {
            Some(Isa::Avx512) => vec![Isa::Avx512, Isa::Avx2],
            Some(Isa::Avx2) => vec![Isa::Avx2],
            None => Vec::new(),
        }
    }

    fn close(what: &str, got: &[f32], want: &[f64]) -> std::result::Result<(), TestCaseError> {
        let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            prop_assert!((a as f64 - b).abs() <= 2e-5 * scale, "{what}[{i}] = {a}, want {b} (scale {scale})");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Forward, input and weight gradients equal the f64 definition (im2col + GEMM in f64,
        /// itself tested against the loop definition in tests/conv2d.rs): batches over a chunk,
        /// channel counts off the tile sizes, rows that end mid-vector, scratch full of NaN.
        #[test]
        fn direct_kernels_equal_the_definition(
            n in 1usize..19, ic in 1usize..11, oc in 1usize..20, h in 1usize..21, w in 1usize..21,
            kh in 1usize..6, kw in 1usize..6, ph in 0usize..3, pw in 0usize..3, seed in 0u64..1000,
        ) {
            let cfg = Conv2d::new(ic, oc, (kh, kw)).padding((ph.min(kh - 1), pw.min(kw - 1)));
            let Ok(g) = cfg.geometry(&[n, ic, h, w]) else { return Ok(()) };
            prop_assume!(g.ph < g.kh && g.pw < g.kw);
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut u = |len: usize| (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
            let (x, wt, b) = (u(n * ic * h * w), u(oc * g.k()), u(oc));
            let dout = u(n * oc * g.oh * g.ow);
            let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let mut want = vec![0f64; dout.len()];
            forward_cpu(&g, &mut want, &f64s(&x), &f64s(&wt), Some(&f64s(&b)));
            let (mut dx64, mut dw64) = (vec![0f64; x.len()], vec![0f64; wt.len()]);
            backward_cpu(&g, Some(&mut dx64), &mut dw64, None, &f64s(&dout), &f64s(&x), &f64s(&wt));
            for isa in builds() {
                let mut out = vec![f32::NAN; dout.len()];
                let mut s = buffers(&forward_scratch(isa, &g));
                forward(isa, &g, &mut out, &x, &wt, Some(&b), &mut s.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>());
                close(&format!("{isa:?} forward"), &out, &want)?;
                let mut dx = vec![f32::NAN; x.len()];
                let mut s = buffers(&backward_input_scratch(isa, &g));
                backward_input(isa, &g, &mut dx, &dout, &wt, &mut s.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>());
                close(&format!("{isa:?} input gradient"), &dx, &dx64)?;
                let mut dw = vec![f32::NAN; wt.len()];
                let mut s = buffers(&backward_weight_scratch(isa, &g));
                backward_weight(isa, &g, &mut dw, &dout, &x, &mut s.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>());
                close(&format!("{isa:?} weight gradient"), &dw, &dw64)?;
            }
        }
    }
}
