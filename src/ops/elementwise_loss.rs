//! What L1Loss and MSELoss share: shape checks, the reduction on the CPU, and the GPU kernels
//! (per-element loss, then reduce_sum; backward scales by 1 or 1/n).

use super::{reduce_sum, sum_f64, ParamsLayout, Reduction};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ForwardParams {
    pub n: u32,
    pub reduction: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BackwardParams {
    pub n: u32,
    pub reduction: u32,
    pub scale: f32,
    pub _pad: u32,
}

pub fn layouts(forward: &'static str, backward: &'static str) -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!(forward, ForwardParams, [n, reduction, _pad0, _pad1]),
        crate::params_layout!(backward, BackwardParams, [n, reduction, scale, _pad]),
    ]
}

/// Input and target must have the same shape and at least one element.
pub fn check(op: &str, inp: &[usize], tgt: &[usize]) -> Result<()> {
    ensure_op!(inp == tgt, op, "input shape {inp:?} and target shape {tgt:?} differ");
    ensure_op!(inp.iter().product::<usize>() > 0, op, "empty input of shape {inp:?}");
    Ok(())
}

/// Output shape: the input's for 'none', a scalar otherwise.
pub fn out_shape(inp: &[usize], reduction: Reduction) -> Vec<usize> {
    if reduction == Reduction::None {
        inp.to_vec()
    } else {
        vec![]
    }
}

pub fn reduce_cpu<T: Real>(per_elem: Vec<T>, reduction: Reduction) -> Vec<T> {
    let n = per_elem.len() as f64;
    match reduction {
        Reduction::None => per_elem,
        Reduction::Sum => vec![T::of(sum_f64(per_elem.into_iter()))],
        Reduction::Mean => vec![T::of(sum_f64(per_elem.into_iter()) / n)],
    }
}

/// dout as seen by each element: itself for 'none', `dout[0]` (scaled by 1/n for 'mean') otherwise.
pub fn upstream<T: Real>(dout: &[T], n: usize, reduction: Reduction) -> impl Fn(usize) -> T + '_ {
    move |i| match reduction {
        Reduction::None => dout[i],
        Reduction::Sum => dout[0],
        Reduction::Mean => dout[0] / T::of(n as f64),
    }
}

/// Scratch words of the GPU kernels over `n` elements: for 'sum' and 'mean' the per-element
/// (loss, 1) pairs and the reduction's partials; none for 'none'.
pub fn gpu_scratch(n: usize, reduction: Reduction) -> Vec<u64> {
    if reduction == Reduction::None {
        return Vec::new();
    }
    let mut v = vec![2 * n as u64];
    v.extend(reduce_sum::partial_words(n as u64));
    v
}

/// The buffers of an elementwise loss's kernels, all the caller's.
pub struct GpuBuffers<'a> {
    pub inp: &'a View,
    pub tgt: &'a View,
    /// As [`gpu_scratch`] says.
    pub scratch: Vec<&'a View>,
    /// (n,) for 'none', (1,) otherwise.
    pub out: &'a View,
    /// Upstream gradient, shaped as `out`.
    pub dout: &'a View,
    /// (n,), overwritten by the backward.
    pub dinp: &'a View,
}

/// The forward of the loss whose kernels are `shaders` (forward, backward) over `n` elements.
pub fn forward_gpu(
    gpu: &Gpu,
    shaders: (&'static str, &'static str),
    label: &str,
    b: &GpuBuffers<'_>,
    n: usize,
    reduction: Reduction,
) -> Result<Program> {
    let groups = Dispatch::Invocations(n as u64);
    let fp = ForwardParams { n: n as u32, reduction: reduction.code(), _pad0: 0, _pad1: 0 };
    let mut prog = Program::default();
    if reduction == Reduction::None {
        prog.push(Kernel::new(gpu, shaders.0, label, &fp, &[b.inp, b.tgt, b.out], groups)?);
    } else {
        let pairs = b.scratch[0];
        prog.push(Kernel::new(gpu, shaders.0, label, &fp, &[b.inp, b.tgt, pairs], groups)?);
        // Each element's pair weight is 1, so 'mean' is Σ loss / n.
        let finish =
            if reduction == Reduction::Mean { reduce_sum::Finish::WeightedMean } else { reduce_sum::Finish::Sum };
        prog.extend(reduce_sum::build(gpu, label, pairs, n as u64, finish, b.out, &b.scratch[1..])?);
    }
    Ok(prog)
}

/// The backward: dinp from inp, tgt and dout.
pub fn backward_gpu(
    gpu: &Gpu,
    shaders: (&'static str, &'static str),
    label: &str,
    b: &GpuBuffers<'_>,
    n: usize,
    reduction: Reduction,
) -> Result<Program> {
    let scale = if reduction == Reduction::Mean { 1.0 / n as f32 } else { 1.0 };
    let bp = BackwardParams { n: n as u32, reduction: reduction.code(), scale, _pad: 0 };
    let label = format!("{label}.backward");
    let views = [b.inp, b.tgt, b.dout, b.dinp];
    Ok(Kernel::new(gpu, shaders.1, &label, &bp, &views, Dispatch::Invocations(n as u64))?.into())
}
