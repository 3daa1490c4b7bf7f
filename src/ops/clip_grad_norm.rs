//! Gradient clipping by the total norm, as `torch.nn.utils.clip_grad_norm_(parameters, max_norm)`
//! computes it (norm_type 2, error_if_nonfinite False): `total_norm` is the 2-norm of every
//! gradient taken together, and every gradient is multiplied in place by
//! `clip_coef = min(max_norm / (total_norm + 1e-6), 1)`: NaN where the norm is NaN and 0 where it
//! is infinite, as PyTorch's clamp gives them. The executors clip between the backward and the
//! optimizer step when `graph::Options::clip_grad_norm` is set, and keep `total_norm` (what
//! PyTorch's function returns) for `Executor::grad_norm`.
//! Shaders: clip_grad_norm_partial.wgsl (at most [`PARTIALS`] sums of squares),
//! clip_grad_norm_scale.wgsl (every workgroup adds those sums in the same order, so all of them
//! scale by the same coefficient, then scales its gradients).

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};

pub const OP: &str = "clip_grad_norm_";

crate::shaders!(clip_grad_norm_partial: 256, clip_grad_norm_scale: 256);

/// Most workgroups of the first kernel: the partial sums every workgroup of the second adds.
pub const PARTIALS: u64 = 256;
/// Gradients one workgroup of the second kernel scales.
pub const PER_GROUP: u64 = 1024;

/// PyTorch takes any max_norm; a zero, negative or non-finite one would zero, flip or NaN every
/// gradient, so wgrad refuses it.
pub fn check(max_norm: f32) -> Result<()> {
    ensure_op!(max_norm.is_finite() && max_norm > 0.0, OP, "max_norm must be a finite number > 0, got {max_norm}");
    Ok(())
}

/// PyTorch's `clip_coef_clamped` of a total norm.
pub fn clip_coef(max_norm: f32, total_norm: f32) -> f32 {
    let c = max_norm / (total_norm + 1e-6);
    // Not `c.min(1.0)`: that would turn a NaN norm's NaN into 1 (torch.clamp keeps it).
    if c > 1.0 {
        1.0
    } else {
        c
    }
}

/// Clips `grad` (every parameter's gradient, one flat slice) in place; returns the total norm
/// before clipping.
pub fn clip_cpu(max_norm: f32, grad: &mut [f32]) -> f32 {
    let total = grad.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() as f32;
    let coef = clip_coef(max_norm, total);
    if coef != 1.0 {
        grad.iter_mut().for_each(|g| *g *= coef);
    }
    total
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub groups: u32,
    pub max_norm: f32,
    pub _pad: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!("clip_grad_norm_partial", Params, [n, groups, max_norm, _pad]),
        crate::params_layout!("clip_grad_norm_scale", Params, [n, groups, max_norm, _pad])
            .consts(&[("PER_GROUP", PER_GROUP as usize)]),
    ]
}

/// The two kernels clipping `grad` in place: `partial` holds [`PARTIALS`] words of scratch, and
/// `norm` (one word) receives the total norm.
pub fn clip_gpu(gpu: &Gpu, max_norm: f32, grad: &View, partial: &View, norm: &View) -> Result<Program> {
    check(max_norm)?;
    ensure_op!(
        partial.len >= PARTIALS && norm.len >= 1,
        OP,
        "scratch of {} and {} words, needs {PARTIALS} and 1",
        partial.len,
        norm.len
    );
    let groups = grad.len.div_ceil(256).clamp(1, PARTIALS);
    let p = Params { n: grad.len as u32, groups: groups as u32, max_norm, _pad: 0 };
    let sums = Kernel::new(
        gpu,
        "clip_grad_norm_partial",
        "clip_grad_norm.partial",
        &p,
        &[grad, partial],
        Dispatch::Workgroups(groups),
    )?
    .flops(2 * grad.len);
    let scale = Kernel::new(
        gpu,
        "clip_grad_norm_scale",
        "clip_grad_norm.scale",
        &p,
        &[partial, grad, norm],
        Dispatch::Workgroups(grad.len.div_ceil(PER_GROUP).max(1)),
    )?
    .flops(grad.len);
    Ok(Program { kernels: vec![sums, scale] })
}
