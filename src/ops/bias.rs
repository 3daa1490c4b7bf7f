//! The bias gradient shared by Conv2d and Linear: dbias[c] = Σ_{n, s} dout[n, c, s].
//! Shader: bias_backward.wgsl.

use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel};
use crate::Result;

crate::shaders!(bias_backward: 256);

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub N: u32,
    pub C: u32,
    pub S: u32,
    pub _pad: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("bias_backward", Params, [N, C, S, _pad])]
}

/// dbias (C,), overwritten, from dout (N, C, S).
pub fn backward_cpu<T: Real>(dbias: &mut [T], dout: &[T], n: usize, c: usize, s: usize) {
    for (ch, d) in dbias.iter_mut().enumerate().take(c) {
        *d = T::of((0..n).map(|i| crate::cpu::sum(&dout[(i * c + ch) * s..(i * c + ch + 1) * s])).sum());
    }
}

pub fn backward_gpu(gpu: &Gpu, label: &str, dout: &View, dbias: &View, n: usize, c: usize, s: usize) -> Result<Kernel> {
    let p = Params { N: n as u32, C: c as u32, S: s as u32, _pad: 0 };
    Kernel::new(gpu, "bias_backward", &format!("{label}.dbias"), &p, &[dout, dbias], Dispatch::Workgroups(c as u64))
}
