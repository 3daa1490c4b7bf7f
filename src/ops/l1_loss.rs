//! L1Loss (nn.L1Loss): |x - y|; the gradient where x == y is 0, as in PyTorch; reduction none|sum|mean (default mean).
//! Shaders: l1_loss_forward.wgsl, l1_loss_backward.wgsl (+ reduce_sum.wgsl).

use super::elementwise_loss::{self, GpuBuffers};
use super::{ParamsLayout, Reduction};
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::Program;
use crate::Result;

pub const OP: &str = "L1Loss";

crate::shaders!(l1_loss_forward: 256, l1_loss_backward: 256);
/// (forward, backward) kernel names.
pub const KERNELS: (&str, &str) = ("l1_loss_forward", "l1_loss_backward");

pub fn layouts() -> Vec<ParamsLayout> {
    elementwise_loss::layouts(KERNELS.0, KERNELS.1)
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

/// The forward's kernels over `n` elements (scratch: [`elementwise_loss::gpu_scratch`]).
pub fn forward_gpu(gpu: &Gpu, label: &str, b: &GpuBuffers<'_>, n: usize, reduction: Reduction) -> Result<Program> {
    elementwise_loss::forward_gpu(gpu, KERNELS, label, b, n, reduction)
}

/// The backward's kernel: dinp, overwritten.
pub fn backward_gpu(gpu: &Gpu, label: &str, b: &GpuBuffers<'_>, n: usize, reduction: Reduction) -> Result<Program> {
    elementwise_loss::backward_gpu(gpu, KERNELS, label, b, n, reduction)
}
