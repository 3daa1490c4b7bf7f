//! The CPU path's numeric type: every CPU reference is generic over f32 (what runs) and f64 (what
//! the finite-difference tests check), so the code that is tested is the code that runs.

use num_traits::Float;
use std::iter::Sum;

pub trait Real: Float + Sum + std::ops::AddAssign + Send + Sync + Default + std::fmt::Debug + 'static {
    fn of(v: f64) -> Self;
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

macro_rules! impl_real {
    ($t:ty, $gemm:path) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                v as $t
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
impl_real!(f32, matrixmultiply::sgemm);
impl_real!(f64, matrixmultiply::dgemm);
