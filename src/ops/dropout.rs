//! Dropout (nn.Dropout(p=0.5)): in train mode each element is zeroed with probability p and the
//! rest scaled by 1/(1-p); in eval mode it is the identity (a view). The mask is a counter-based
//! hash of (the node's key, the training step, the element's index) — the same bits on the CPU
//! path and the GPU, the same sequence after a resume — and the backward recomputes it rather than
//! storing it. (PyTorch's own masks come from its generator and cannot be reproduced: wgrad's have
//! the same distribution and the same scaling.) Dropout2d (nn.Dropout2d(p=0.5)) zeroes whole
//! channels of an (N, C, H, W) input: one draw per (n, c), the index of its plane. Shaders:
//! dropout_forward.wgsl, dropout_backward.wgsl.

use super::flatten::View as Identity;
use super::interface::{random_bits, CpuBackward, CpuForward, Flops, GpuIo, Mode, Node, Op, RandomKey, Reads};
use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};

pub const OP: &str = "Dropout";

crate::shaders!(dropout_forward: 256, dropout_backward: 256);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub key0: u32,
    pub key1: u32,
    /// Consecutive elements that share one draw: 1 (Dropout), H·W (Dropout2d).
    pub plane: u32,
    pub p: f32,
    pub scale: f32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| crate::params_layout!(s, Params, [n, key0, key1, plane, p, scale, _pad1, _pad2]);
    vec![l("dropout_forward"), l("dropout_backward")]
}

/// nn.Dropout(p): p is the probability of an element being zeroed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f32,
}

impl Default for Dropout {
    fn default() -> Self {
        Dropout { p: 0.5 }
    }
}

impl Dropout {
    pub fn new(p: f32) -> Self {
        Dropout { p }
    }
}

impl Op for Dropout {
    fn describe(&self) -> String {
        format!("{OP}(p={})", super::py_float(self.p))
    }
    fn plan(&self, inputs: &[&[usize]], mode: Mode) -> Result<Box<dyn Node>> {
        plan(&self.describe(), self.p, inputs[0], 1, mode)
    }
}

/// nn.Dropout2d(p): each channel of an (N, C, H, W) input is zeroed with probability p (all its
/// H·W values together), the others scaled by 1/(1-p).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout2d {
    pub p: f32,
}

impl Default for Dropout2d {
    fn default() -> Self {
        Dropout2d { p: 0.5 }
    }
}

impl Dropout2d {
    pub fn new(p: f32) -> Self {
        Dropout2d { p }
    }
}

impl Op for Dropout2d {
    fn describe(&self) -> String {
        format!("Dropout2d(p={})", super::py_float(self.p))
    }
    fn plan(&self, inputs: &[&[usize]], mode: Mode) -> Result<Box<dyn Node>> {
        let input = inputs[0];
        ensure_op!(input.len() == 4, self.describe(), "expected an (N, C, H, W) input, got shape {input:?}");
        plan(&self.describe(), self.p, input, input[2] * input[3], mode)
    }
}

/// Dropout of `p` over `shape`, `plane` consecutive elements to a draw.
fn plan(op: &str, p: f32, shape: &[usize], plane: usize, mode: Mode) -> Result<Box<dyn Node>> {
    ensure_op!((0.0..=1.0).contains(&p), op, "dropout probability has to be between 0 and 1, but got {p}");
    Ok(match mode {
        Mode::Eval => Box::new(Identity(shape.to_vec())),
        Mode::Train => Box::new(Planned { shape: shape.to_vec(), p, plane: plane.max(1) }),
    })
}

struct Planned {
    shape: Vec<usize>,
    p: f32,
    plane: usize,
}

impl Node for Planned {
    fn out_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn flops(&self) -> Flops {
        let n = self.shape.iter().product::<usize>() as u64;
        Flops { forward: n, backward_input: n, backward_params: 0 }
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: false, output: false }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        forward_cpu(self.p, self.plane, io.random, io.out, io.inputs[0]);
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        if let Some(dinp) = io.dinputs.into_iter().next().flatten() {
            backward_cpu(self.p, self.plane, io.random, dinp, io.dout);
        }
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let views = [io.step, io.inputs[0], io.out];
        kernel(gpu, "dropout_forward", io.label, (self.p, self.plane), io.random_key, &views)
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        match io.dinput(0) {
            Some(dinp) => {
                let (views, label) = ([io.step, io.dout.unwrap(), dinp], format!("{}.dinp", io.label));
                kernel(gpu, "dropout_backward", &label, (self.p, self.plane), io.random_key, &views)
            }
            None => Ok(Program::default()),
        }
    }
}

/// Whether draw `i` (an element, or Dropout2d's plane) is kept at this step.
pub fn keep(p: f32, random: RandomKey, i: usize) -> bool {
    let u = (random_bits(random.key, random.step, i as u32) >> 8) as f32 * (1.0 / 16_777_216.0);
    u >= p
}

/// 1/(1-p), the kept elements' scale.
pub fn scale(p: f32) -> f32 {
    1.0 / (1.0 - p)
}

/// out = inp / (1 - p) where kept, else 0, one draw for each `plane` consecutive elements;
/// overwritten.
pub fn forward_cpu<T: Real>(p: f32, plane: usize, random: RandomKey, out: &mut [T], inp: &[T]) {
    let s = T::of(scale(p) as f64);
    for (d, (o, x)) in out.chunks_mut(plane).zip(inp.chunks(plane)).enumerate() {
        let kept = keep(p, random, d);
        for (o, &x) in o.iter_mut().zip(x) {
            *o = if kept { x * s } else { T::zero() };
        }
    }
}

/// dinp = dout / (1 - p) where the forward kept the element, else 0; overwritten.
pub fn backward_cpu<T: Real>(p: f32, plane: usize, random: RandomKey, dinp: &mut [T], dout: &[T]) {
    forward_cpu(p, plane, random, dinp, dout);
}

fn kernel(
    gpu: &Gpu,
    shader: &'static str,
    label: &str,
    (p, plane): (f32, usize),
    key: [u32; 2],
    views: &[&View; 3],
) -> Result<Program> {
    let n = views[2].len;
    let params =
        Params { n: n as u32, key0: key[0], key1: key[1], plane: plane as u32, p, scale: scale(p), _pad1: 0, _pad2: 0 };
    Ok(Kernel::new(gpu, shader, label, &params, views, Dispatch::Invocations(n))?.flops(n).into())
}
