//! The bias gradient shared by Conv2d and Linear: `dbias[c] = Σ_{n, s} dout[n, c, s]`.
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
    let l = |s| crate::params_layout!(s, Params, [N, C, S, chunk]);
    vec![l("bias_backward"), l("bias_backward_per_channel").consts(&[("PC", crate::shaders::PER_CHANNEL_WORKGROUP)])]
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

/// Whether the bias gradient takes one invocation per channel (`bias_backward_per_channel`), each
/// summing its N·S values (in blocks, then planes, then images), instead of a workgroup per
/// channel: on CPU adapters (which split no reduction, [`Gpu::split_target`]), where a workgroup's
/// barriers cost more than its invocations save (Tudui's `conv1.dbias`, 32 channels of 65,536
/// values at batch 64, 3.3 → 1.8 ms on lavapipe; cifar-net's `fc1.dbias`, 64 values a channel,
/// 1.0 → 0.06 ms: histories 66 and 69).
pub fn per_channel(gpu: &Gpu) -> bool {
    gpu.split_target() == 0
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
    let one_per_channel = splits == 1 && per_channel(gpu);
    let p = Params { N: n as u32, C: c as u32, S: s as u32, chunk: chunk as u32 };
    let label = format!("{label}.dbias");
    let out = part.filter(|_| splits > 1).unwrap_or(dbias);
    let (shader, groups) = match one_per_channel {
        true => (
            crate::shaders::per_channel_variant("bias_backward").expect("bias_backward has a `_per_channel` variant"),
            c.div_ceil(crate::shaders::PER_CHANNEL_WORKGROUP),
        ),
        false => ("bias_backward", c * splits),
    };
    // LANES values a load on CPU adapters where a plane is whole vec4s (crate::ops::elementwise).
    let shader = match crate::shaders::vec4_variant(shader) {
        Some(v) if gpu.split_target() == 0 && s.is_multiple_of(4) => v,
        _ => shader,
    };
    let groups = Dispatch::Workgroups(groups as u64);
    let mut prog = Program::default();
    prog.push(Kernel::new(gpu, shader, &label, &p, &[dout, out], groups)?);
    if splits > 1 {
        prog.push(super::sum_splits::gpu(gpu, &label, out, dbias, splits)?);
    }
    Ok(prog)
}
