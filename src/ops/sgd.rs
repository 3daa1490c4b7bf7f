//! SGD (torch.optim.SGD): lr, momentum, dampening, weight_decay, nesterov, with PyTorch's update
//! (weight decay added to the gradient; the momentum buffer equals the gradient on the first step).
//! The learning rate is the step's (a schedule may change it; see [`crate::optim`]).
//! Shader: sgd_step.wgsl, one dispatch over all parameters (one flat buffer).

use super::interface::StepWords;
use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel};
use crate::{ensure_op, Result};
use serde::{Deserialize, Serialize};

pub const OP: &str = "SGD";

crate::shaders!(sgd_step: 256);

/// torch.optim.SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=False).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Sgd {
    /// SGD(lr) with PyTorch's defaults for the rest.
    pub fn new(lr: f32) -> Self {
        Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    pub fn dampening(mut self, d: f32) -> Self {
        self.dampening = d;
        self
    }
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// PyTorch's checks: lr, momentum and weight_decay finite and non-negative; nesterov needs
    /// momentum and zero dampening.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("dampening", self.dampening),
        ] {
            ensure_op!(v.is_finite() && v >= 0.0, OP, "{name} must be a finite number >= 0, got {v}");
        }
        ensure_op!(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            OP,
            "nesterov momentum requires a momentum and zero dampening"
        );
        Ok(())
    }
}

/// One step in place over flat parameters, gradients and momentum buffers, at the step `s`
/// (its learning rate; the momentum buffer starts as the gradient at step 0).
pub fn step_cpu(c: &Sgd, s: &StepWords, param: &mut [f32], grad: &[f32], buf: &mut [f32]) {
    let first = s.step() == 0;
    let one_minus_dampening = (1.0 - c.dampening as f64) as f32;
    for i in 0..param.len() {
        let mut d = grad[i];
        if c.weight_decay != 0.0 {
            d += c.weight_decay * param[i];
        }
        if c.momentum != 0.0 {
            let b = if first { d } else { c.momentum * buf[i] + one_minus_dampening * d };
            buf[i] = b;
            d = if c.nesterov { d + c.momentum * b } else { b };
        }
        param[i] -= s.lr * d;
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub nesterov: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub momentum: f32,
    pub one_minus_dampening: f32,
    pub weight_decay: f32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!(
        "sgd_step",
        Params,
        [n, nesterov, _pad0, _pad1, momentum, one_minus_dampening, weight_decay, _pad2]
    )]
}

/// The update kernel; `step` holds the step's [`StepWords`], rewritten before each step.
pub fn step_gpu(gpu: &Gpu, c: &Sgd, step: &View, param: &View, grad: &View, buf: &View) -> Result<Kernel> {
    let p = Params {
        n: param.len as u32,
        nesterov: c.nesterov as u32,
        _pad0: 0,
        _pad1: 0,
        momentum: c.momentum,
        one_minus_dampening: (1.0 - c.dampening as f64) as f32,
        weight_decay: c.weight_decay,
        _pad2: 0,
    };
    Kernel::new(gpu, "sgd_step", "sgd.step", &p, &[step, param, grad, buf], Dispatch::Invocations(param.len))
}
