//! SGD (torch.optim.SGD): lr, momentum, dampening, weight_decay, nesterov, with PyTorch's update
//! (weight decay added to the gradient; the momentum buffer equals the gradient on the first step).
//! Shader: sgd_step.wgsl, one dispatch over all parameters (one flat buffer).

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::Kernel;
use crate::{ensure_op, Result};

pub const OP: &str = "SGD";

crate::shaders!("sgd_step");

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Config {
    /// SGD(lr) with PyTorch's defaults for the rest.
    pub fn new(lr: f32) -> Self {
        Config { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
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

/// One step in place over flat parameters, gradients and momentum buffers.
pub fn step_cpu(c: &Config, first_step: bool, param: &mut [f32], grad: &[f32], buf: &mut [f32]) {
    for i in 0..param.len() {
        let mut d = grad[i];
        if c.weight_decay != 0.0 {
            d += c.weight_decay * param[i];
        }
        if c.momentum != 0.0 {
            let b = if first_step { d } else { c.momentum * buf[i] + (1.0 - c.dampening) * d };
            buf[i] = b;
            d = if c.nesterov { d + c.momentum * b } else { b };
        }
        param[i] -= c.lr * d;
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub first_step: u32,
    pub nesterov: u32,
    pub _pad: u32,
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!(
        "sgd_step",
        Params,
        [n, first_step, nesterov, _pad, lr, momentum, dampening, weight_decay]
    )]
}

/// The update kernel; build one with `first_step` and one without, and record the right one.
pub fn step_gpu(gpu: &Gpu, c: &Config, first_step: bool, param: &View, grad: &View, buf: &View) -> Result<Kernel> {
    let p = Params {
        n: param.len as u32,
        first_step: first_step as u32,
        nesterov: c.nesterov as u32,
        _pad: 0,
        lr: c.lr,
        momentum: c.momentum,
        dampening: c.dampening,
        weight_decay: c.weight_decay,
    };
    Kernel::new(
        gpu,
        "sgd_step",
        if first_step { "sgd.first_step" } else { "sgd.step" },
        &p,
        &[param, grad, buf],
        param.len.div_ceil(256),
    )
}
