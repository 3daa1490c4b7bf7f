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
    /// 1: one invocation per channel ([`per_channel`]); 0: a workgroup per channel and split.
    pub per_channel: u32,
    /// The partial sums a workgroup merges at each level ([`super::batchnorm2d::fan`]).
    pub fan: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("bias_backward", Params, [N, C, S, chunk, per_channel, fan, _pad0, _pad1])]
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

/// Whether the bias gradient of dout (N, C, S) takes one invocation per channel, each summing its
/// N·S values (in blocks, then planes, then images: bias_backward.wgsl), instead of a workgroup per
/// channel: on CPU adapters (which split no reduction, [`Gpu::split_target`]) where the channels
/// fill two SIMD groups of 8 or each has few values, so that no workgroup's barriers are paid for
/// little work (Tudui's `conv1.dbias`, 32 channels of 65,536 values at batch 64, 3.3 → 1.7 ms on
/// lavapipe, history 66).
pub fn per_channel(gpu: &Gpu, n: usize, c: usize, s: usize) -> bool {
    gpu.split_target() == 0 && (c >= 16 || n * s <= 16_384)
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
    let one_per_channel = splits == 1 && per_channel(gpu, n, c, s);
    let p = Params {
        N: n as u32,
        C: c as u32,
        S: s as u32,
        chunk: chunk as u32,
        per_channel: one_per_channel as u32,
        fan: super::batchnorm2d::fan(gpu) as u32,
        _pad0: 0,
        _pad1: 0,
    };
    let label = format!("{label}.dbias");
    let out = part.filter(|_| splits > 1).unwrap_or(dbias);
    // LANES values a load on CPU adapters where a plane is whole vec4s (crate::ops::elementwise).
    let shader = match crate::shaders::vec4_variant("bias_backward") {
        Some(v) if gpu.split_target() == 0 && s.is_multiple_of(4) => v,
        _ => "bias_backward",
    };
    let groups = match one_per_channel {
        true => Dispatch::Invocations(c as u64),
        false => Dispatch::Workgroups((c * splits) as u64),
    };
    let mut prog = Program::default();
    prog.push(Kernel::new(gpu, shader, &label, &p, &[dout, out], groups)?);
    if splits > 1 {
        prog.push(super::sum_splits::gpu(gpu, &label, out, dbias, splits)?);
    }
    Ok(prog)
}
