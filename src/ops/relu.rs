//! ReLU (nn.ReLU, F.relu): out = max(x, 0), NaN passed through; the backward reads the output
//! (dinp = dout where out > 0, else 0: the gradient at 0 is 0, as PyTorch's).
//! Shaders: relu_forward.wgsl, relu_backward.wgsl.

use super::interface::{CpuBackward, CpuForward, Flops, Fusible, GpuIo, Mode, Node, Op, Reads};
use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::{multiversion, Real, PAR_CHUNK};
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::Result;
use rayon::prelude::*;

pub const OP: &str = "ReLU";

crate::shaders!(relu_forward: 256, relu_backward: 256);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| crate::params_layout!(s, Params, [n, _pad0, _pad1, _pad2]);
    vec![l("relu_forward"), l("relu_backward")]
}

/// nn.ReLU() (out of place: wgrad's planner reuses the memory instead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReLU;

impl Op for ReLU {
    fn describe(&self) -> String {
        format!("{OP}()")
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        Ok(Box::new(Planned(inputs[0].to_vec())))
    }
}

struct Planned(Vec<usize>);

impl Node for Planned {
    fn out_shape(&self) -> Vec<usize> {
        self.0.clone()
    }
    fn flops(&self) -> Flops {
        let n = self.0.iter().product::<usize>() as u64;
        Flops { forward: n, backward_input: n, backward_params: 0 }
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: false, output: true }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        forward_cpu(io.out, io.inputs[0]);
    }
    fn fusible(&self) -> Option<Fusible> {
        Some(Fusible::Relu)
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        if let Some(dinp) = io.dinputs.into_iter().next().flatten() {
            backward_cpu(dinp, io.dout, io.out);
        }
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        forward_gpu(gpu, io.label, io.out, io.inputs[0])
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        match io.dinput(0) {
            Some(dinp) => backward_gpu(gpu, io.label, dinp, io.dout.unwrap(), io.out),
            None => Ok(Program::default()),
        }
    }
}

/// out = max(inp, 0), overwritten; NaN stays NaN.
pub fn forward_cpu<T: Real>(out: &mut [T], inp: &[T]) {
    #[multiversion(targets = "simd")]
    fn chunk<T: Real>(out: &mut [T], inp: &[T]) {
        for (o, &x) in out.iter_mut().zip(inp) {
            *o = if x < T::zero() { T::zero() } else { x };
        }
    }
    out.par_chunks_mut(PAR_CHUNK).zip(inp.par_chunks(PAR_CHUNK)).for_each(|(o, x)| chunk(o, x));
}

/// dinp = dout where out > 0, else 0; overwritten.
pub fn backward_cpu<T: Real>(dinp: &mut [T], dout: &[T], out: &[T]) {
    #[multiversion(targets = "simd")]
    fn chunk<T: Real>(dinp: &mut [T], dout: &[T], out: &[T]) {
        for ((d, &g), &y) in dinp.iter_mut().zip(dout).zip(out) {
            *d = if y <= T::zero() { T::zero() } else { g };
        }
    }
    dinp.par_chunks_mut(PAR_CHUNK)
        .zip(dout.par_chunks(PAR_CHUNK).zip(out.par_chunks(PAR_CHUNK)))
        .for_each(|(d, (g, y))| chunk(d, g, y));
}

fn params(n: u64) -> Params {
    Params { n: n as u32, _pad0: 0, _pad1: 0, _pad2: 0 }
}

pub fn forward_gpu(gpu: &Gpu, label: &str, out: &View, inp: &View) -> Result<Program> {
    let n = out.len;
    let (shader, units) = super::elementwise(gpu, "relu_forward", n);
    Ok(Kernel::new(gpu, shader, label, &params(units), &[inp, out], Dispatch::Invocations(units))?.flops(n).into())
}

pub fn backward_gpu(gpu: &Gpu, label: &str, dinp: &View, dout: &View, out: &View) -> Result<Program> {
    let n = dinp.len;
    let label = format!("{label}.dinp");
    let (shader, units) = super::elementwise(gpu, "relu_backward", n);
    Ok(Kernel::new(gpu, shader, &label, &params(units), &[out, dout, dinp], Dispatch::Invocations(units))?
        .flops(n)
        .into())
}
