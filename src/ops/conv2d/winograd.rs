//! The CPU path's Winograd F(2×2, 3×3) forward for stride-1 3×3 convolutions with padding 1, on
//! AVX-512 and AVX2: each 2×2 block of output pixels (a tile) comes from the 4×4 input patch around
//! it as Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, so the products are 16 per tile and input channel instead of
//! 36. Image by image, so that its transformed tiles stay in cache: the input is transformed in
//! passes over groups of channels (Bᵀ along the columns of each row pair, then along the rows),
//! then 16 products M[ξ] (OC × tiles) = U[ξ] (OC × IC) · V[ξ] (IC × tiles), one per position ξ of
//! the 4×4 patch, run with vectors of 16 tiles (8 on AVX2), and each output channel's tiles are
//! transformed back (Aᵀ along the columns, then the rows) with the bias and the epilogue. The
//! weights are transformed once per call. The input gradient is the same convolution of the output
//! gradient with the flipped, transposed weight ([`transposed`]). Layers of fewer than 16 channels
//! keep the direct kernels (direct.rs), as does every weight gradient.

// Off x86_64 no build of these kernels exists: the planning code is unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::direct::Isa;
use super::Geometry;
use crate::ops::interface::Epilogue;
use rayon::prelude::*;

/// Tiles per vector.
const L: usize = 16;

/// Whether the Winograd forward takes this geometry: 3×3, stride 1, dilation 1, padding 1 (so the
/// output has the input's size), an even height, a width of 8, 16, 32 or 64 (the column pass is
/// built for each: [`columns`]), a multiple of 16 tiles per image, at least 16 input
/// channels (the transforms' cost is per channel, the products' gain per channel pair) and output
/// channels a multiple of 16. The kernels are built for the CPUs the direct ones are (AVX2 and
/// AVX-512): CpuKernel asks this only where those run.
pub fn applies(g: &Geometry) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.ph, g.pw) == (3, 3, 1, 1, 1, 1, 1, 1)
        && g.h.is_multiple_of(2)
        && matches!(g.w, 8 | 16 | 32 | 64)
        && (g.h / 2 * g.w / 2).is_multiple_of(L)
        && g.ic >= 16
        && g.oc.is_multiple_of(16)
}

/// Workspaces: one per task ([`workspace_words`] each).
fn workspaces(g: &Geometry) -> usize {
    rayon::current_num_threads().clamp(1, g.n)
}

fn tiles(g: &Geometry) -> usize {
    g.h / 2 * g.w / 2
}

/// Words of one workspace: an image's transformed input (16 · IC per tile), products (16 · OC)
/// and the transforms' rows (the input's 8 per tile of a channel group, the output's 12).
fn workspace_words(g: &Geometry) -> usize {
    (16 * (g.ic + g.oc) + 12.max(8 * channel_group(g))) * tiles(g)
}

/// Scratch words: the transformed weights, then the workspaces.
pub fn scratch(g: &Geometry) -> Vec<u64> {
    vec![(16 * g.ic * g.oc) as u64, (workspaces(g) * workspace_words(g)) as u64]
}

/// The geometry of the input gradient as a convolution: the output gradient (N, OC, H, W) with
/// the flipped, transposed weight w'(ic, oc, kh, kw) = w(oc, ic, 2 - kh, 2 - kw), padding 1.
pub fn transposed(g: &Geometry) -> Geometry {
    Geometry { ic: g.oc, oc: g.ic, ..*g }
}

/// Whether the input gradient runs through the Winograd kernel (as the convolution
/// [`transposed`] gives).
pub fn input_gradient_applies(g: &Geometry) -> bool {
    applies(g) && applies(&transposed(g))
}

/// out (N, OC, H, W), overwritten, from x (N, IC, H, W), weight (OC, IC, 3, 3) and bias, with the
/// epilogue applied as the output tiles are stored.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    g: &Geometry,
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    ep: &Epilogue<'_>,
    scratch: &mut [&mut [f32]],
) {
    let [u, work] = scratch else { panic!("conv2d winograd forward: expected 2 scratch buffers") };
    transform_weights(g, |o, i, r| weight[(o * g.ic + i) * 9 + r], u);
    convolve(isa, g, out, x, u, work, bias, ep);
}

/// dinp (N, IC, H, W), overwritten, from dout (N, OC, H, W) and weight (OC, IC, 3, 3): the
/// convolution of the output gradient with the flipped, transposed weight ([`transposed`]), with
/// that geometry's [`scratch`].
pub fn backward_input(
    isa: Isa,
    g: &Geometry,
    dinp: &mut [f32],
    dout: &[f32],
    weight: &[f32],
    scratch: &mut [&mut [f32]],
) {
    let t = transposed(g);
    let [u, work] = scratch else { panic!("conv2d winograd input gradient: expected 2 scratch buffers") };
    // w'(i, o, r) with i < t.oc = IC and o < t.ic = OC, r = 3·kh + kw: w(o, i, 8 - r).
    transform_weights(&t, |i, o, r| weight[(o * g.ic + i) * 9 + 8 - r], u);
    convolve(isa, &t, dinp, dout, u, work, None, &Epilogue::default());
}

/// The convolution from the transformed weights `u`, over the workspaces `work`.
#[allow(clippy::too_many_arguments)]
fn convolve(
    isa: Isa,
    g: &Geometry,
    out: &mut [f32],
    x: &[f32],
    u: &[f32],
    work: &mut [f32],
    bias: Option<&[f32]>,
    ep: &Epilogue<'_>,
) {
    let t = tiles(g);
    let per = workspace_words(g);
    // As many workspaces as the plan made (the thread count when it was made).
    let nw = (work.len() / per).clamp(1, g.n);
    let (img_in, img_out) = (g.ic * g.h * g.w, g.oc * g.h * g.w);
    let per_task = g.n.div_ceil(nw);
    out[..g.n * img_out]
        .par_chunks_mut(per_task * img_out)
        .zip(work[..nw * per].par_chunks_mut(per))
        .enumerate()
        .for_each(|(task, (out, work))| {
            let (v, rest) = work.split_at_mut(16 * g.ic * t);
            let (m, rows) = rest.split_at_mut(16 * g.oc * t);
            for (i, out) in out.chunks_exact_mut(img_out).enumerate() {
                let n = task * per_task + i;
                transform_input(g, &x[n * img_in..][..img_in], v, rows);
                // SAFETY: the CPU has `isa` (applies), and the slices hold 16 · IC · T,
                // 16 · IC · OC and 16 · OC · T floats.
                unsafe { products(isa, g, u, v, m) };
                transform_output(g, m, out, bias, ep, rows);
            }
        });
}

/// u[ξ][ic][oc] = (G g Gᵀ)[ξ] for g = weight(oc, ic, 3·kh + kw), G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
fn transform_weights(g: &Geometry, weight: impl Fn(usize, usize, usize) -> f32, u: &mut [f32]) {
    let (ic, oc) = (g.ic, g.oc);
    for i in 0..ic {
        for o in 0..oc {
            let w: [f32; 9] = std::array::from_fn(|r| weight(o, i, r));
            // G g: 4 × 3.
            let mut a = [[0f32; 3]; 4];
            for c in 0..3 {
                let (w0, w1, w2) = (w[c], w[3 + c], w[6 + c]);
                a[0][c] = w0;
                a[1][c] = 0.5 * (w0 + w1 + w2);
                a[2][c] = 0.5 * (w0 - w1 + w2);
                a[3][c] = w2;
            }
            for (r, row) in a.iter().enumerate() {
                let (w0, w1, w2) = (row[0], row[1], row[2]);
                let t = [w0, 0.5 * (w0 + w1 + w2), 0.5 * (w0 - w1 + w2), w2];
                for (c, &v) in t.iter().enumerate() {
                    u[((r * 4 + c) * ic + i) * oc + o] = v;
                }
            }
        }
    }
}

/// Input channels per pass of the input transform: about 512 tiles, so that the pass's rows
/// (8 floats a tile) stay in the L1 cache between its two steps while its loops stay long.
fn channel_group(g: &Geometry) -> usize {
    (512 / tiles(g)).clamp(1, g.ic)
}

/// v[ξ][ic][tile] from one image x (IC, H, W), tiles row-major, in passes over groups of
/// channels ([`channel_group`]), so that per-channel and per-row work does not dominate small
/// planes: Bᵀ along the columns of each pair of rows ([`columns`]), then Bᵀ along the rows, each
/// v[ξ] one flat loop over the group's tiles with a fix for the first or last row of tiles of
/// each channel.
#[crate::cpu::multiversion(targets = "simd")]
fn transform_input(g: &Geometry, x: &[f32], v: &mut [f32], rows: &mut [f32]) {
    let (tw, t, hw) = (g.w / 2, tiles(g), g.h * g.w);
    let group = channel_group(g);
    for c0 in (0..g.ic).step_by(group) {
        let gc = group.min(g.ic - c0);
        let n = gc * t;
        let h = &mut rows[..8 * n];
        let x = &x[c0 * hw..][..gc * hw];
        match tw {
            4 => columns::<4>(x, n, h),
            8 => columns::<8>(x, n, h),
            16 => columns::<16>(x, n, h),
            32 => columns::<32>(x, n, h),
            _ => unreachable!("conv2d winograd: {tw} tiles per row (applies() takes widths of 8, 16, 32 and 64)"),
        }
        // v[ξ] of channels c0.. (ξ = 4a + j).
        let at = |xi: usize| (xi * g.ic + c0) * t;
        for j in 0..4 {
            // Rows 2r - 1 + i of tile row r: odd of r - 1, even, odd, even of r + 1 (zero outside).
            let (ev, od) = h[2 * j * n..][..2 * n].split_at(n);
            let v0 = &mut v[at(j)..][..n];
            for k in tw..n {
                v0[k] = od[k - tw] - od[k];
            }
            for (v0, od) in v0.chunks_exact_mut(t).zip(od.chunks_exact(t)) {
                for (d, &s) in v0[..tw].iter_mut().zip(&od[..tw]) {
                    *d = -s;
                }
            }
            let v1 = &mut v[at(4 + j)..][..n];
            for k in 0..n {
                v1[k] = ev[k] + od[k];
            }
            let v2 = &mut v[at(8 + j)..][..n];
            for k in 0..n {
                v2[k] = od[k] - ev[k];
            }
            let v3 = &mut v[at(12 + j)..][..n];
            for k in 0..n - tw {
                v3[k] = ev[k] - ev[k + tw];
            }
            for (v3, ev) in v3.chunks_exact_mut(t).zip(ev.chunks_exact(t)) {
                v3[t - tw..].copy_from_slice(&ev[t - tw..]);
            }
        }
    }
}

/// Bᵀ along the columns of every row of x (channels of rows of 2 · TW floats, N = channels × tiles):
/// h[j][p][c][r][m] (each [j][p] block N floats) for input row 2r + p, d_j at tile m being the
/// row's column 2m - 1 + j (zero outside). One row pair per step, its length known to the compiler.
#[inline(always)]
fn columns<const TW: usize>(x: &[f32], n: usize, h: &mut [f32]) {
    let w = 2 * TW;
    let (h0, rest) = h.split_at_mut(2 * n);
    let (h1, rest) = rest.split_at_mut(2 * n);
    let (h2, h3) = rest.split_at_mut(2 * n);
    for (b, pair) in x.chunks_exact(2 * w).enumerate() {
        for p in 0..2 {
            let row = &pair[p * w..][..w];
            let e: [f32; TW] = std::array::from_fn(|m| row[2 * m]);
            let o: [f32; TW] = std::array::from_fn(|m| row[2 * m + 1]);
            let at = p * n + b * TW;
            let (h0, h1, h2, h3) = (&mut h0[at..][..TW], &mut h1[at..][..TW], &mut h2[at..][..TW], &mut h3[at..][..TW]);
            for m in 0..TW {
                h0[m] = if m > 0 { o[m - 1] } else { 0.0 } - o[m];
                h1[m] = e[m] + o[m];
                h2[m] = o[m] - e[m];
                h3[m] = e[m] - if m + 1 < TW { e[m + 1] } else { 0.0 };
            }
        }
    }
}

/// m[ξ][oc][tile] = Σ_ic u[ξ][ic][oc] · v[ξ][ic][tile], with vectors of tiles (16 on AVX-512, 8
/// on AVX2): KB channels × TV vectors per register tile.
#[cfg(target_arch = "x86_64")]
unsafe fn products(isa: Isa, g: &Geometry, u: &[f32], v: &[f32], m: &mut [f32]) {
    let t = tiles(g);
    match isa {
        Isa::Avx512 => match t / L {
            1 => products_avx512::<1, 16>(g, u, v, m),
            2 | 6 | 10 | 14 => products_avx512::<2, 8>(g, u, v, m),
            _ if (t / L).is_multiple_of(4) => products_avx512::<4, 4>(g, u, v, m),
            _ => products_avx512::<1, 16>(g, u, v, m),
        },
        // 16 registers: 4 channels × 2 vectors of 8 tiles, 2 loads and a broadcast.
        Isa::Avx2 => products_avx2::<2, 4>(g, u, v, m),
    }
}

/// One build of the products: `$reg` vectors of `$lanes` tiles.
macro_rules! products_fn {
    ($name:ident, $features:literal, $lanes:literal, $setzero:ident, $loadu:ident, $set1:ident, $fmadd:ident, $storeu:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const TV: usize, const KB: usize>(g: &Geometry, u: &[f32], v: &[f32], m: &mut [f32]) {
            use std::arch::x86_64::*;
            const LANES: usize = $lanes;
            let (ic, oc, t) = (g.ic, g.oc, tiles(g));
            debug_assert!(u.len() >= 16 * ic * oc && v.len() >= 16 * ic * t && m.len() >= 16 * oc * t);
            debug_assert!(t.is_multiple_of(TV * LANES) && oc.is_multiple_of(KB));
            for xi in 0..16 {
                let (u, v, m) =
                    (u.as_ptr().add(xi * ic * oc), v.as_ptr().add(xi * ic * t), m.as_mut_ptr().add(xi * oc * t));
                for t0 in (0..t).step_by(TV * LANES) {
                    for k0 in (0..oc).step_by(KB) {
                        let mut acc = [[$setzero(); TV]; KB];
                        for c in 0..ic {
                            let vv: [_; TV] = std::array::from_fn(|j| $loadu(v.add(c * t + t0 + j * LANES)));
                            let uc = u.add(c * oc + k0);
                            for (k, a) in acc.iter_mut().enumerate() {
                                let b = $set1(*uc.add(k));
                                for j in 0..TV {
                                    a[j] = $fmadd(b, vv[j], a[j]);
                                }
                            }
                        }
                        for (k, a) in acc.iter().enumerate() {
                            for (j, &a) in a.iter().enumerate() {
                                $storeu(m.add((k0 + k) * t + t0 + j * LANES), a);
                            }
                        }
                    }
                }
            }
        }
    };
}

products_fn!(
    products_avx512,
    "avx512f",
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);
products_fn!(
    products_avx2,
    "avx2,fma",
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps
);

/// Off x86_64 [`applies`] is never true (there is no [`Isa`]): nothing calls this.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn products(_: Isa, _: &Geometry, _: &[f32], _: &[f32], _: &mut [f32]) {
    unreachable!("the Winograd products run on x86_64 only")
}

/// out (OC, H, W) of one image from m[ξ][oc][tile], bias and epilogue applied. Aᵀ = [1 1 1 0;
/// 0 1 -1 -1] along the columns of each patch row, then along the rows, over all tiles at once.
#[crate::cpu::multiversion(targets = "simd")]
fn transform_output(
    g: &Geometry,
    m: &[f32],
    out: &mut [f32],
    bias: Option<&[f32]>,
    ep: &Epilogue<'_>,
    rows: &mut [f32],
) {
    let (tw, th, t) = (g.w / 2, g.h / 2, tiles(g));
    let (sc, y) = rows[..12 * t].split_at_mut(8 * t);
    for k in 0..g.oc {
        // ep.value(k, v + b) = clamp(v · s + sh) with s, sh per channel.
        let (s, sh) = match ep.affine {
            Some((s, sh)) => (s[k], bias.map_or(0.0, |b| b[k]) * s[k] + sh[k]),
            None => (1.0, bias.map_or(0.0, |b| b[k])),
        };
        let relu = ep.relu;
        let mrow = |xi: usize| &m[(xi * g.oc + k) * t..][..t];
        // sc[2a + dx]: the patch row a along its columns.
        for a in 0..4 {
            let (m0, m1, m2, m3) = (mrow(4 * a), mrow(4 * a + 1), mrow(4 * a + 2), mrow(4 * a + 3));
            let (s0, s1) = sc[2 * a * t..][..2 * t].split_at_mut(t);
            for q in 0..t {
                s0[q] = m0[q] + m1[q] + m2[q];
                s1[q] = m1[q] - m2[q] - m3[q];
            }
        }
        // y[2dy + dx] along the rows, the epilogue applied.
        for dx in 0..2 {
            let col = |a: usize| &sc[(2 * a + dx) * t..][..t];
            let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
            let (y0, y1) = y[2 * dx * t..][..2 * t].split_at_mut(t);
            for q in 0..t {
                let (a, b) = ((c0[q] + c1[q] + c2[q]) * s + sh, (c1[q] - c2[q] - c3[q]) * s + sh);
                y0[q] = if relu && a < 0.0 { 0.0 } else { a };
                y1[q] = if relu && b < 0.0 { 0.0 } else { b };
            }
        }
        let plane = &mut out[k * g.h * g.w..][..g.h * g.w];
        for r in 0..th {
            for dy in 0..2 {
                let (l, rr) = (&y[dy * t + r * tw..][..tw], &y[(2 + dy) * t + r * tw..][..tw]);
                let orow = &mut plane[(2 * r + dy) * g.w..][..g.w];
                for ((p, &a), &b) in orow.chunks_exact_mut(2).zip(l).zip(rr) {
                    p[0] = a;
                    p[1] = b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{reference, Conv2d};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The forward (or, with `dx`, the input gradient) against the definition ([`reference`]), in
    /// every build this CPU runs.
    fn check(cfg: Conv2d, input: [usize; 4], seed: u64, dx: bool) {
        let builds = super::super::direct::builds();
        if builds.is_empty() {
            eprintln!("skipped: no AVX2 here");
        }
        for isa in builds {
            check_build(isa, cfg, input, seed, dx);
        }
    }

    fn check_build(isa: Isa, cfg: Conv2d, input: [usize; 4], seed: u64, dx: bool) {
        let g = cfg.geometry(&input).unwrap();
        assert!(if dx { input_gradient_applies(&g) } else { applies(&g) }, "{g:?} not taken");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut random = |n: usize, r: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-r..r)).collect() };
        let x = random(g.n * g.ic * g.h * g.w, 1.0);
        let w = random(g.oc * g.k(), 0.2);
        let b = random(g.oc, 0.5);
        let dout = random(g.n * g.oc * g.oh * g.ow, 1.0);
        let mut s: Vec<Vec<f32>> =
            scratch(&if dx { transposed(&g) } else { g }).iter().map(|&n| vec![f32::NAN; n as usize]).collect();
        let mut s: Vec<&mut [f32]> = s.iter_mut().map(|v| v.as_mut_slice()).collect();
        let (want, got) = if dx {
            let want = reference::backward(&g, &dout, &x, &w).0;
            let mut got = vec![f32::NAN; x.len()];
            backward_input(isa, &g, &mut got, &dout, &w, &mut s);
            (want, got)
        } else {
            let want = reference::forward(&g, &x, &w, Some(&b));
            let mut got = vec![f32::NAN; dout.len()];
            forward(isa, &g, &mut got, &x, &w, Some(&b), &Epilogue::default(), &mut s);
            (want, got)
        };
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{isa:?} {i}: {a} vs {b}");
        }
    }

    #[test]
    fn winograd_input_gradient_equals_the_definition() {
        check(Conv2d::new(32, 32, 3).padding(1), [3, 32, 16, 16], 5, true);
        check(Conv2d::new(64, 64, 3).padding(1), [2, 64, 8, 8], 6, true);
        check(Conv2d::new(32, 48, 3).padding(1), [2, 32, 16, 8], 7, true);
        check(Conv2d::new(16, 16, 3).padding(1), [2, 16, 32, 32], 8, true);
    }

    #[test]
    fn winograd_equals_the_direct_definition() {
        check(Conv2d::new(32, 32, 3).padding(1), [3, 32, 16, 16], 1, false);
        check(Conv2d::new(64, 64, 3).padding(1), [2, 64, 8, 8], 2, false);
        check(Conv2d::new(32, 16, 3).padding(1), [1, 32, 8, 32], 3, false);
        check(Conv2d::new(48, 32, 3).padding(1), [2, 48, 16, 8], 4, false);
        check(Conv2d::new(16, 16, 3).padding(1), [2, 16, 32, 32], 9, false);
        check(Conv2d::new(16, 32, 3).padding(1), [1, 16, 2, 64], 10, false);
    }

    /// Widths the column pass is not built for (its 4, 8, 16 or 32 tiles a row) stay with the
    /// direct kernels: `transform_input` would refuse them.
    #[test]
    fn winograd_leaves_other_widths_to_the_direct_kernels() {
        for (w, taken) in [(8, true), (64, true), (4, false), (12, false), (24, false), (48, false), (128, false)] {
            let g = Conv2d::new(16, 16, 3).padding(1).geometry(&[1, 16, 16, w]).unwrap();
            assert_eq!(applies(&g), taken, "width {w}");
        }
    }
}
