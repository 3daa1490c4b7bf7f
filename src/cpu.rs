//! The CPU path's numeric type: every CPU reference is generic over f32 (what runs) and f64 (what
//! the finite-difference tests check), so the code that is tested is the code that runs.
//!
//! Also what the ops' CPU loops share: the build's baseline is SSE2, so hot loops are compiled
//! again for AVX2 and AVX-512 and picked at run time (`#[multiversion(targets = "simd")]`);
//! reductions keep several independent partial sums (they vectorize, in a fixed order, so every
//! run gives the same bits); elementwise loops run on rayon in chunks of [`PAR_CHUNK`].

use num_traits::Float;
use std::iter::Sum;

pub use multiversion::multiversion;

/// Elements per rayon task in elementwise loops: enough work to dwarf a task's hand-off (about a
/// microsecond), few enough that a layer's tensor splits between the threads.
pub const PAR_CHUNK: usize = 1 << 14;

/// Planes (rows of `len` elements) per rayon task, so that a task holds about [`PAR_CHUNK`] elements.
pub fn planes_per_task(len: usize) -> usize {
    (PAR_CHUNK / len.max(1)).max(1)
}

pub trait Real:
    Float + Sum + std::ops::AddAssign + Send + Sync + Default + std::fmt::Debug + bytemuck::Pod + 'static
{
    fn of(v: f64) -> Self;
    fn f64(self) -> f64;
    /// The complementary error function (GELU's Φ(x) = erfc(−x/√2) / 2): in f64 libm's, in f32
    /// [`erfc_f32`], as the GPU kernels compute it.
    fn erfc(self) -> Self;
    /// tanh: in f64 std's, in f32 [`tanh_f32`].
    fn fast_tanh(self) -> Self;
    /// C (m×n) = alpha·A (m×k)·B (k×n) + beta·C with arbitrary strides (row, column) for each.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

thread_local! {
    /// Each thread's spare scratch buffers (see [`with_scratch`]).
    static POOL: std::cell::RefCell<Vec<Vec<u64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of scratch memory lent by this thread's pool, holding whatever an
/// earlier use left there (callers write before they read): buffers are kept after use, so once
/// every size has been seen (the first training step) nothing is allocated or cleared. For what an op needs during one call (per-channel statistics, im2col panels) where
/// the executor's planned scratch does not reach: the generic f64 references and rayon's workers.
pub fn with_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let words = (len * std::mem::size_of::<T>()).div_ceil(8);
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < words {
        buf.resize(words, 0);
    }
    let r = f(&mut bytemuck::cast_slice_mut::<u64, T>(&mut buf)[..len]);
    POOL.with(|p| p.borrow_mut().push(buf));
    r
}

/// erfc in f32 by Numerical Recipes' erfcc (relative error below 1.2e-7 everywhere: f32's own
/// rounding), as shaders/activation_*.wgsl compute it: an exp and a polynomial, 4 times faster
/// than libm's erfcf here.
pub fn erfc_f32(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204 + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// tanh in f32 as Cephes' tanhf computes it (relative error within 2 units of f32's last
/// place): an odd polynomial below 0.625, 1 − 2 / (exp(2|x|) + 1) above; 3.0 ns an element
/// against std's 11.2 here (one thread, 2 million values in [−3, 3]). NaN stays NaN.
pub fn tanh_f32(x: f32) -> f32 {
    let z = x.abs();
    if z >= 0.625 {
        let t = 1.0 - 2.0 / ((2.0 * z).exp() + 1.0);
        t.copysign(x)
    } else {
        let s = x * x;
        let p = (((-5.704_988_7e-3 * s + 2.063_909e-2) * s - 5.373_971_6e-2) * s + 1.333_144_2e-1) * s - 3.333_328e-1;
        p * s * x + x
    }
}

macro_rules! impl_real {
    ($t:ty, $gemm:path, $erfc:path, $tanh:path) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn erfc(self) -> Self {
                $erfc(self)
            }
            #[inline]
            fn fast_tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn f64(self) -> f64 {
                self as f64
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                rsa: isize,
                csa: isize,
                b: &[Self],
                rsb: isize,
                csb: isize,
                beta: Self,
                c: &mut [Self],
                rsc: isize,
                csc: isize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let extent = |r: usize, cols: usize, rs: isize, cs: isize| {
                    if r == 0 || cols == 0 {
                        0
                    } else {
                        ((r - 1) as isize * rs + (cols - 1) as isize * cs) as usize + 1
                    }
                };
                assert!(extent(m, k, rsa, csa) <= a.len(), "gemm: A too short");
                assert!(extent(k, n, rsb, csb) <= b.len(), "gemm: B too short");
                assert!(extent(m, n, rsc, csc) <= c.len(), "gemm: C too short");
                // SAFETY: the extents of all three operands were checked against the slices above.
                unsafe {
                    $gemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc)
                }
            }
        }
    };
}
impl_real!(f32, matrixmultiply::sgemm, erfc_f32, tanh_f32);
impl_real!(f64, matrixmultiply::dgemm, libm::erfc, f64::tanh);

/// Partial sums per reduction: 64 f64 lanes, eight AVX-512 registers (sixteen AVX2 ones) of
/// independent sums, so that each add need not wait for the one before it. With one register's
/// worth (8 lanes) the adds ran at their latency, not their throughput, and with 32 lanes the
/// compiler vectorised the f32 → f64 sums in 128-bit registers: BatchNorm2d's batch statistics
/// and input-gradient sums on 64 × 16 × 32 × 32 took 2–3× longer.
const LANES: usize = 64;

#[inline(always)]
fn combine(mut acc: [f64; LANES], tail: f64) -> f64 {
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0] + tail
}

/// Σ x in f64.
#[multiversion(targets = "simd")]
pub fn sum<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0f64; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] += c[l].f64();
        }
    }
    combine(acc, it.remainder().iter().map(|v| v.f64()).sum())
}

/// Σ (x - mean)² in f64.
#[multiversion(targets = "simd")]
pub fn sum_sq_dev<T: Real>(x: &[T], mean: f64) -> f64 {
    let mut acc = [0f64; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            let d = c[l].f64() - mean;
            acc[l] += d * d;
        }
    }
    combine(acc, it.remainder().iter().map(|v| (v.f64() - mean).powi(2)).sum())
}

/// (Σ dy, Σ dy·(x - mean)) in f64.
#[multiversion(targets = "simd")]
pub fn sum_dy_dyx<T: Real>(dy: &[T], x: &[T], mean: f64) -> (f64, f64) {
    let (mut a, mut b) = ([0f64; LANES], [0f64; LANES]);
    let n = dy.len().min(x.len()) / LANES * LANES;
    for (cd, cx) in dy[..n].chunks_exact(LANES).zip(x[..n].chunks_exact(LANES)) {
        for l in 0..LANES {
            let d = cd[l].f64();
            a[l] += d;
            b[l] += d * (cx[l].f64() - mean);
        }
    }
    let (mut ta, mut tb) = (0.0, 0.0);
    for (d, x) in dy[n..].iter().zip(&x[n..]) {
        ta += d.f64();
        tb += d.f64() * (x.f64() - mean);
    }
    (combine(a, ta), combine(b, tb))
}

/// Runs `f(plane index, plane)` over the planes (consecutive runs of `len` elements) of `out` on
/// the thread pool, in tasks of about [`PAR_CHUNK`] elements.
pub fn par_planes<T: Send>(out: &mut [T], len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    use rayon::prelude::*;
    let per = planes_per_task(len);
    out.par_chunks_mut(per * len.max(1)).enumerate().for_each(|(t, chunk)| {
        for (i, p) in chunk.chunks_mut(len.max(1)).enumerate() {
            f(t * per + i, p);
        }
    });
}

/// An (N, C, HW) tensor lent channel by channel to parallel tasks: a task that has computed a
/// channel's statistics goes on to write that channel's planes while what it read of them is still
/// in its core's cache (BatchNorm2d in training).
pub struct Channels<'a, T> {
    ptr: *mut T,
    n: usize,
    c: usize,
    hw: usize,
    _tensor: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: Channels lends disjoint planes of a buffer it borrows mutably; `channel`'s contract
// keeps each channel's planes with one task at a time.
unsafe impl<T: Send> Send for Channels<'_, T> {}
unsafe impl<T: Send> Sync for Channels<'_, T> {}

impl<'a, T> Channels<'a, T> {
    pub fn new(out: &'a mut [T], n: usize, c: usize, hw: usize) -> Self {
        assert!(out.len() >= n * c * hw, "Channels: a buffer of {} for ({n}, {c}, {hw})", out.len());
        Channels { ptr: out.as_mut_ptr(), n, c, hw, _tensor: std::marker::PhantomData }
    }
    /// Channel `ch`'s planes.
    ///
    /// # Safety
    /// No two live [`ChannelPlanes`] may be of the same channel (one task per channel).
    pub unsafe fn channel(&self, ch: usize) -> ChannelPlanes<'_, T> {
        assert!(ch < self.c, "Channels: channel {ch} of {}", self.c);
        ChannelPlanes { ptr: self.ptr, n: self.n, c: self.c, hw: self.hw, ch, _tensor: std::marker::PhantomData }
    }
}

/// One channel's planes of a [`Channels`], one at a time.
pub struct ChannelPlanes<'a, T> {
    ptr: *mut T,
    n: usize,
    c: usize,
    hw: usize,
    ch: usize,
    _tensor: std::marker::PhantomData<&'a mut [T]>,
}

impl<T> ChannelPlanes<'_, T> {
    /// Image `i`'s plane of this channel.
    pub fn plane(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.n, "Channels: image {i} of {}", self.n);
        // SAFETY: plane (i, ch) lies inside the buffer `Channels::new` checked, and only this
        // channel's ChannelPlanes, borrowed mutably here, lends it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add((i * self.c + self.ch) * self.hw), self.hw) }
    }
}

/// out = a + b, elementwise, on the thread pool.
pub fn add<T: Real>(out: &mut [T], a: &[T], b: &[T]) {
    add_then(out, a, b, false)
}

/// out = relu(a + b) (a NaN sum stays NaN, as ReLU leaves it), elementwise, on the thread pool.
pub fn add_relu<T: Real>(out: &mut [T], a: &[T], b: &[T]) {
    add_then(out, a, b, true)
}

fn add_then<T: Real>(out: &mut [T], a: &[T], b: &[T], relu: bool) {
    use rayon::prelude::*;
    #[multiversion(targets = "simd")]
    fn add_chunk<T: Real>(out: &mut [T], a: &[T], b: &[T], relu: bool) {
        match relu {
            false => out.iter_mut().zip(a).zip(b).for_each(|((o, &x), &y)| *o = x + y),
            true => out.iter_mut().zip(a).zip(b).for_each(|((o, &x), &y)| {
                let v = x + y;
                *o = if v < T::zero() { T::zero() } else { v };
            }),
        }
    }
    out.par_chunks_mut(PAR_CHUNK)
        .zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK)))
        .for_each(|(o, (a, b))| add_chunk(o, a, b, relu));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// erfc_f32 is erfc to within its stated 1.2e-7 (and f32's rounding) of the value from −6 to
    /// 3, and beyond, where the value is below 2e-5 and exp(−x²) loses x² · 2^−24 of it to f32's
    /// rounding of x², to that (−6 to 10, where erfc falls below f32's smallest normal, in
    /// steps of 1/1024); and it keeps NaN.
    #[test]
    fn erfc_f32_is_erfc_to_f32s_precision() {
        for i in -6 * 1024..10 * 1024 {
            let x = i as f32 / 1024.0;
            let (got, want) = (super::erfc_f32(x) as f64, libm::erfc(x as f64));
            let bound = 4e-7 + (x as f64).powi(2) * 2f64.powi(-23);
            if want > 1e-37 {
                let rel = (got - want).abs() / want;
                assert!(rel < bound, "erfc({x}) = {got}, want {want}: relative error {rel:e}");
            }
        }
        assert!(super::erfc_f32(f32::NAN).is_nan());
    }

    /// tanh_f32 is tanh to within 2 units of f32's last place, from −12 to 12 in steps of 1/4096
    /// and at the smallest numbers; odd; ±1 far out; NaN kept.
    #[test]
    fn tanh_f32_is_tanh_to_two_ulps() {
        for i in -12 * 4096..=12 * 4096 {
            let x = i as f32 / 4096.0;
            let (got, want) = (super::tanh_f32(x), (x as f64).tanh());
            let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) as f64 * 2f64.powi(-23);
            assert!((got as f64 - want).abs() <= 2.0 * ulp, "tanh({x}) = {got}, want {want}");
            assert_eq!(super::tanh_f32(-x), -got);
        }
        for x in [1e-30f32, 1e-10, 3e-5, f32::MIN_POSITIVE] {
            assert_eq!(super::tanh_f32(x), x, "tanh of a tiny x is x");
        }
        assert_eq!((super::tanh_f32(100.0), super::tanh_f32(-1e30)), (1.0, -1.0));
        assert!(super::tanh_f32(f32::NAN).is_nan());
    }

    proptest! {
        /// The f64 reductions equal plain sequential sums (to f64 rounding) at every length: no
        /// lanes, one block, several, and any remainder.
        #[test]
        fn reductions_equal_sequential_sums(x in prop::collection::vec(-4f32..4.0, 0..300), mean in -1f64..1.0, shift in 0usize..7) {
            let y: Vec<f32> = x.iter().cycle().skip(shift).take(x.len()).copied().collect();
            let (plain, sq, dy, dyx) = x.iter().zip(&y).fold((0f64, 0f64, 0f64, 0f64), |(s, q, a, b), (&x, &y)| {
                let (x, y) = (x as f64, y as f64);
                (s + x, q + (x - mean) * (x - mean), a + y, b + y * (x - mean))
            });
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
            prop_assert!(close(super::sum(&x), plain));
            prop_assert!(close(super::sum_sq_dev(&x, mean), sq));
            let (a, b) = super::sum_dy_dyx(&y, &x, mean);
            prop_assert!(close(a, dy) && close(b, dyx), "({a}, {b}) against ({dy}, {dyx})");
        }
    }
}
