//! Staging f32 tensors as f16 for [`Precision::Mixed`](crate::Precision::Mixed): Conv2d and Linear
//! cast their input and weight (forward) and their output gradient (backward) with these kernels
//! and run the `_f16` variants of their product kernels on the copies (see [`crate::shaders`]).
//! Shaders: cast_f16_absmax.wgsl (the largest |x|, in parts), cast_f16.wgsl (the cast).
//!
//! An output gradient is scaled by a power of two 2^e chosen on the device from its largest
//! magnitude, so that the largest lands just below 2^15: no value overflows f16, and small
//! gradients (which would fall into f16's subnormals, below 6.1e-5, or to zero) keep their 11
//! bits. e is stored after the data, where the product kernels read it (`scale_at`) and multiply
//! what they accumulate by 2^-e. It is PyTorch AMP's loss scaling, chosen per tensor and per step,
//! so nothing is skipped and nothing is tuned.

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{Error, Result};

crate::shaders!(cast_f16_absmax: 256, cast_f16: 256);

/// Workgroups of the max pass, and so the parts the cast reduces (the shader's loop takes any
/// number; this keeps the cast's per-workgroup reduction short).
pub const MAX_PARTS: u64 = 256;
/// Workgroups of the cast (grid-strided beyond): each scaled one first reduces the parts, with
/// barriers, so not more than a GPU needs to stream (lavapipe, where barriers are dear: Tudui's
/// `conv1.dout.f16` at batch 64 took 33 ms with 4,096 workgroups).
const CAST_GROUPS: u64 = 1_024;

/// Where a product kernel finds no scale (its `scale_at`): operands in f32, or unscaled.
pub const UNSCALED: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AbsmaxParams {
    pub n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CastParams {
    pub n: u32,
    pub parts: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!("cast_f16_absmax", AbsmaxParams, [n, _pad0, _pad1, _pad2]),
        crate::params_layout!("cast_f16", CastParams, [n, parts, _pad0, _pad1]),
    ]
}

/// 32-bit words holding `n` f16 values and their scale's exponent (element `n`).
pub fn words(n: usize) -> u64 {
    (n as u64 + 1).div_ceil(2)
}

/// The scratch words of a scaled cast's maxima.
pub fn parts_words(n: usize) -> u64 {
    (n as u64).div_ceil(256).clamp(1, MAX_PARTS)
}

/// Kernels writing `out` = f16(x) (`n` elements; [`words`] of them), scaled when `parts` (scratch
/// of [`parts_words`]) is given: then `out[n]` holds the exponent e and the values are x·2^e.
pub fn gpu(gpu: &Gpu, label: &str, x: &View, n: usize, out: &View, parts: Option<&View>) -> Result<Program> {
    if x.len < n as u64 || out.len < words(n) {
        return Err(Error::op(
            label,
            format!("cast_f16 of {n} elements given {} input and {} output words", x.len, out.len),
        ));
    }
    let mut prog = Program::default();
    let groups = (n as u64).div_ceil(256).clamp(1, CAST_GROUPS);
    let parts_n = match parts {
        Some(part) => {
            let parts_n = parts_words(n);
            let p = AbsmaxParams { n: n as u32, _pad0: 0, _pad1: 0, _pad2: 0 };
            let k = Kernel::new(gpu, "cast_f16_absmax", &format!("{label}.absmax"), &p, &[x, part], Dispatch::Workgroups(parts_n))?;
            prog.push(k);
            parts_n
        }
        None => 0,
    };
    let p = CastParams { n: n as u32, parts: parts_n as u32, _pad0: 0, _pad1: 0 };
    let part = parts.unwrap_or(x);
    prog.push(Kernel::new(gpu, "cast_f16", &format!("{label}.f16"), &p, &[x, part, out], Dispatch::Workgroups(groups))?);
    Ok(prog)
}

/// What a product kernel (conv2d, matmul) reads: f32 tensors, or f16 copies made by [`gpu`] (its
/// `_f16` variant), the first of them scaled with its exponent at element `scale_at`
/// ([`UNSCALED`]: not scaled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    F32,
    F16 { scale_at: u32 },
}

impl Operands {
    /// The kernel to run: `shader` or its `_f16` variant.
    pub fn shader(self, label: &str, shader: &'static str) -> Result<&'static str> {
        match self {
            Operands::F32 => Ok(shader),
            Operands::F16 { .. } => crate::shaders::f16_variant(shader)
                .ok_or_else(|| Error::op(label, format!("{shader} has no f16-operand variant"))),
        }
    }
    /// The kernel's `scale_at` parameter.
    pub fn scale_at(self) -> u32 {
        match self {
            Operands::F32 => UNSCALED,
            Operands::F16 { scale_at } => scale_at,
        }
    }
}
