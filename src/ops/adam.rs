//! Adam and AdamW (torch.optim.Adam / AdamW, amsgrad off, maximize off): Adam adds the weight
//! decay to the gradient (L2), AdamW decays the parameters (decoupled); bias correction counts
//! steps from 1. The step's scalars (learning rate, lr / (1 - beta1^t), sqrt(1 - beta2^t), 1 - lr·wd)
//! are computed on the host in double precision, as PyTorch does, and rounded once.
//! Shader: adam_step.wgsl, one dispatch over all parameters.

use super::interface::StepWords;
use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel};
use crate::{ensure_op, Result};
use serde::{Deserialize, Serialize};

pub const OP: &str = "Adam";

crate::shaders!(adam_step: 256);

/// torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0); AdamW takes the same
/// arguments (its weight_decay defaults to 1e-2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
}

impl Adam {
    /// Adam's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(lr: f32) -> Self {
        Adam { lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 }
    }
    /// AdamW's defaults: Adam's, with weight decay 1e-2.
    pub fn adamw(lr: f32) -> Self {
        Adam { weight_decay: 1e-2, ..Adam::new(lr) }
    }
    pub fn betas(mut self, b1: f32, b2: f32) -> Self {
        self.betas = (b1, b2);
        self
    }
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }

    /// PyTorch's checks.
    pub fn check(&self) -> Result<()> {
        let (b1, b2) = self.betas;
        ensure_op!(self.lr.is_finite() && self.lr >= 0.0, OP, "Invalid learning rate: {}", self.lr);
        ensure_op!(self.eps.is_finite() && self.eps >= 0.0, OP, "Invalid epsilon value: {}", self.eps);
        ensure_op!((0.0..1.0).contains(&b1), OP, "Invalid beta parameter at index 0: {b1}");
        ensure_op!((0.0..1.0).contains(&b2), OP, "Invalid beta parameter at index 1: {b2}");
        ensure_op!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            OP,
            "Invalid weight_decay value: {}",
            self.weight_decay
        );
        Ok(())
    }
}

/// Whether the weight decay is decoupled (AdamW) or added to the gradient (Adam).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    L2,
    Decoupled,
}

/// One step in place over flat parameters, gradients and the two moment buffers.
pub fn step_cpu(c: &Adam, decay: Decay, s: &StepWords, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (omb1, omb2) = one_minus_betas(c);
    for i in 0..param.len() {
        let mut w = param[i];
        let mut g = grad[i];
        match decay {
            Decay::Decoupled => w *= s.decay,
            Decay::L2 if c.weight_decay != 0.0 => g += c.weight_decay * w,
            Decay::L2 => {}
        }
        m[i] += omb1 * (g - m[i]);
        v[i] = v[i] * c.betas.1 + omb2 * g * g;
        let denom = v[i].sqrt() / s.bias_correction2_sqrt + c.eps;
        param[i] = w + (-s.step_size) * m[i] / denom;
    }
}

fn one_minus_betas(c: &Adam) -> (f32, f32) {
    ((1.0 - c.betas.0 as f64) as f32, (1.0 - c.betas.1 as f64) as f32)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub decoupled: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub _pad2: u32,
    pub _pad3: u32,
    pub _pad4: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!(
        "adam_step",
        Params,
        [n, decoupled, _pad0, _pad1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, _pad2, _pad3, _pad4]
    )]
}

/// The update kernel; `step` holds the step's [`StepWords`], rewritten before each step.
#[allow(clippy::too_many_arguments)]
pub fn step_gpu(
    gpu: &Gpu,
    c: &Adam,
    decay: Decay,
    step: &View,
    param: &View,
    grad: &View,
    exp_avg: &View,
    exp_avg_sq: &View,
) -> Result<Kernel> {
    let (omb1, omb2) = one_minus_betas(c);
    let p = Params {
        n: param.len as u32,
        decoupled: (decay == Decay::Decoupled) as u32,
        _pad0: 0,
        _pad1: 0,
        beta2: c.betas.1,
        one_minus_beta1: omb1,
        one_minus_beta2: omb2,
        eps: c.eps,
        weight_decay: c.weight_decay,
        _pad2: 0,
        _pad3: 0,
        _pad4: 0,
    };
    let views = [step, param, grad, exp_avg, exp_avg_sq];
    let label = if decay == Decay::Decoupled { "adamw.step" } else { "adam.step" };
    Kernel::new(gpu, "adam_step", label, &p, &views, Dispatch::Invocations(param.len))
}
