//! The bias gradient shared by Conv2d and Linear: dbias[c] = Σ_{n, s} dout[n, c, s].
//! Shader: bias_backward.wgsl.

use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::Result;

crate::shaders!(bias_backward: 256);

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub N: u32,
    pub C: u32,
    pub S: u32,
    /// Images per split (N when unsplit).
    pub chunk: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("bias_backward", Params, [N, C, S, chunk])]
}

/// dbias (C,), overwritten, from dout (N, C, S).
pub fn backward_cpu<T: Real>(dbias: &mut [T], dout: &[T], n: usize, c: usize, s: usize) {
    for (ch, d) in dbias.iter_mut().enumerate().take(c) {
        *d = T::of((0..n).map(|i| crate::cpu::sum(&dout[(i * c + ch) * s..(i * c + ch + 1) * s])).sum());
    }
}

/// How many ways the GPU splits the sum over images (one workgroup per channel and split; the
/// splits are added by sum_splits), and the images per split.
pub fn splits(gpu: &Gpu, n: usize, c: usize) -> (usize, usize) {
    let chunk = n.div_ceil(super::sum_splits::choose(gpu, c * 256, n, c));
    (n.div_ceil(chunk.max(1)), chunk.max(1))
}

/// dbias (C,), overwritten, from dout (N, C, S); split over images as [`splits`] says when
/// `part` (the planner's splits × C words) is given.
pub fn backward_gpu(
    gpu: &Gpu,
    label: &str,
    dout: &View,
    dbias: &View,
    part: Option<&View>,
    (n, c, s): (usize, usize, usize),
) -> Result<Program> {
    let (splits, chunk) = match part {
        Some(_) => splits(gpu, n, c),
        None => (1, n),
    };
    let p = Params { N: n as u32, C: c as u32, S: s as u32, chunk: chunk as u32 };
    let label = format!("{label}.dbias");
    let out = part.filter(|_| splits > 1).unwrap_or(dbias);
    let mut prog = Program::default();
    prog.push(Kernel::new(gpu, "bias_backward", &label, &p, &[dout, out], Dispatch::Workgroups((c * splits) as u64))?);
    if splits > 1 {
        prog.push(super::sum_splits::gpu(gpu, &label, out, dbias, splits)?);
    }
    Ok(prog)
}
