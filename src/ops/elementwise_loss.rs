//! What L1Loss and MSELoss share: shape checks, the reduction on the CPU, and the GPU kernels
//! (per-element loss, then reduce_sum; backward scales by 1 or 1/n).

use super::{reduce_sum, sum_f64, ParamsLayout, Reduction};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Kernel, Program};
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

/// dout as seen by each element: itself for 'none', dout[0] (scaled by 1/n for 'mean') otherwise.
pub fn upstream<T: Real>(dout: &[T], n: usize, reduction: Reduction) -> impl Fn(usize) -> T + '_ {
    move |i| match reduction {
        Reduction::None => dout[i],
        Reduction::Sum => dout[0],
        Reduction::Mean => dout[0] / T::of(n as f64),
    }
}

/// GPU kernels of an elementwise loss over views of `n` elements.
pub struct Kernels {
    pub forward: Program,
    pub backward: Program,
    /// The loss: (n,) for 'none', (1,) otherwise.
    pub out: View,
    /// Upstream gradient, (n,) or (1,); initialised to 1.
    pub dout: View,
    pub dinp: View,
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    gpu: &Gpu,
    shaders: (&'static str, &'static str),
    label: &str,
    inp: &View,
    tgt: &View,
    n: usize,
    reduction: Reduction,
) -> Result<Kernels> {
    let n64 = n as u64;
    let groups = n64.div_ceil(256);
    let mut forward = Program::default();
    let fp = ForwardParams { n: n as u32, reduction: reduction.code(), _pad0: 0, _pad1: 0 };
    let (out, dout) = if reduction == Reduction::None {
        let out = gpu.zeros(&format!("{label}.out"), n64)?;
        forward.push(Kernel::new(gpu, shaders.0, label, &fp, &[inp, tgt, &out], groups)?);
        (out, gpu.upload(&format!("{label}.dout"), &vec![1f32; n])?)
    } else {
        let pairs = gpu.zeros(&format!("{label}.pairs"), 2 * n64)?;
        forward.push(Kernel::new(gpu, shaders.0, label, &fp, &[inp, tgt, &pairs], groups)?);
        let out = gpu.zeros(&format!("{label}.out"), 1)?;
        // Each element's pair weight is 1, so 'mean' is Σ loss / n.
        let finish =
            if reduction == Reduction::Mean { reduce_sum::Finish::WeightedMean } else { reduce_sum::Finish::Sum };
        let (reduce, _) = reduce_sum::build(gpu, label, &pairs, n64, finish, &out)?;
        forward.extend(reduce);
        (out, gpu.upload(&format!("{label}.dout"), &[1f32])?)
    };
    let scale = if reduction == Reduction::Mean { 1.0 / n as f32 } else { 1.0 };
    let bp = BackwardParams { n: n as u32, reduction: reduction.code(), scale, _pad: 0 };
    let dinp = gpu.zeros(&format!("{label}.dinp"), n64)?;
    let mut backward = Program::default();
    backward.push(Kernel::new(gpu, shaders.1, &format!("{label}.backward"), &bp, &[inp, tgt, &dout, &dinp], groups)?);
    Ok(Kernels { forward, backward, out, dout, dinp })
}
