//! L1Loss (nn.L1Loss): |x - y|; the gradient where x == y is 0, as in PyTorch; reduction none|sum|mean (default mean).
//! Shaders: l1_loss_forward.wgsl, l1_loss_backward.wgsl (+ reduce_sum.wgsl).

use super::elementwise_loss::{self, Kernels};
use super::{ParamsLayout, Reduction};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::Result;

pub const OP: &str = "L1Loss";
pub const SHADERS: (&str, &str) = ("l1_loss_forward", "l1_loss_backward");

pub fn layouts() -> Vec<ParamsLayout> {
    elementwise_loss::layouts(SHADERS.0, SHADERS.1)
}

pub fn check(inp: &[usize], tgt: &[usize]) -> Result<()> {
    elementwise_loss::check(OP, inp, tgt)
}

/// out: input's shape for 'none', else (1,).
pub fn forward_cpu<T: Real>(inp: &[T], tgt: &[T], reduction: Reduction) -> Vec<T> {
    let per_elem = inp.iter().zip(tgt).map(|(&x, &y)| (x - y).abs()).collect();
    elementwise_loss::reduce_cpu(per_elem, reduction)
}

/// dinp: input's shape; dout: input's shape for 'none', else (1,).
pub fn backward_cpu<T: Real>(inp: &[T], tgt: &[T], dout: &[T], reduction: Reduction) -> Vec<T> {
    let up = elementwise_loss::upstream(dout, inp.len(), reduction);
    inp.iter()
        .zip(tgt)
        .enumerate()
        .map(|(i, (&x, &y))| {
            ({
                let d = x - y;
                if d > T::zero() {
                    T::one()
                } else if d < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                }
            }) * up(i)
        })
        .collect()
}

/// GPU kernels over `inp` and `tgt` views of `n` elements.
pub fn build_gpu(gpu: &Gpu, label: &str, inp: &View, tgt: &View, n: usize, reduction: Reduction) -> Result<Kernels> {
    elementwise_loss::build(gpu, SHADERS, label, inp, tgt, n, reduction)
}
