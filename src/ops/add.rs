//! Add (`a + b` of two tensors of the same shape): the residual merge. Its backward is no work:
//! both inputs' gradients are the output's gradient. Shader: add_forward.wgsl (also used to sum a
//! value's gradient contributions).

use super::interface::{CpuBackward, CpuForward, Epilogue, Flops, GpuIo, Mode, Node, Op, Reads};
use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};

pub const OP: &str = "Add";

crate::shaders!(add_forward: 256);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("add_forward", Params, [n, _pad0, _pad1, _pad2])]
}

/// `a + b` (torch.add of two tensors of one shape; no broadcasting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Add;

impl Op for Add {
    fn describe(&self) -> String {
        format!("{OP}()")
    }
    fn arity(&self) -> usize {
        2
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        let (a, b) = (inputs[0], inputs[1]);
        ensure_op!(a == b, OP, "the inputs' shapes {a:?} and {b:?} differ (broadcasting is not supported)");
        Ok(Box::new(Planned(a.to_vec())))
    }
}

struct Planned(Vec<usize>);

impl Node for Planned {
    fn out_shape(&self) -> Vec<usize> {
        self.0.clone()
    }
    fn flops(&self) -> Flops {
        Flops { forward: self.0.iter().product::<usize>() as u64, ..Flops::default() }
    }
    fn grad_is_dout(&self, _input: usize) -> bool {
        true
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: false, output: false }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        forward_cpu(io.out, io.inputs[0], io.inputs[1]);
    }
    /// Inference folds the ReLU after a residual sum into it (one pass: relu(a + b)).
    fn takes_epilogue(&self) -> bool {
        true
    }
    fn forward_cpu_fused(&self, io: CpuForward<'_>, ep: &Epilogue<'_>) {
        let (a, b) = (io.inputs[0], io.inputs[1]);
        match ep.affine {
            None if ep.relu => crate::cpu::add_relu(io.out, a, b),
            None => forward_cpu(io.out, a, b),
            Some(_) => {
                forward_cpu(io.out, a, b);
                let channels = self.0.get(1).copied().unwrap_or(1);
                ep.apply(io.out, channels, self.0.iter().skip(2).product());
            }
        }
    }
    fn backward_cpu(&self, _io: CpuBackward<'_>) {}
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        Ok(add_gpu(gpu, io.label, io.inputs[0], io.inputs[1], io.out)?.into())
    }
    fn backward_gpu(&self, _gpu: &Gpu, _io: &GpuIo<'_>) -> Result<Program> {
        Ok(Program::default())
    }
}

/// out = a + b, overwritten.
pub fn forward_cpu<T: Real>(out: &mut [T], a: &[T], b: &[T]) {
    crate::cpu::add(out, a, b);
}

/// out = a + b, overwritten (`out` must be another buffer than `a` and `b`).
pub fn add_gpu(gpu: &Gpu, label: &str, a: &View, b: &View, out: &View) -> Result<Kernel> {
    let (shader, units) = super::elementwise(gpu, "add_forward", out.len);
    let p = Params { n: units as u32, _pad0: 0, _pad1: 0, _pad2: 0 };
    Ok(Kernel::new(gpu, shader, label, &p, &[a, b, out], Dispatch::Invocations(units))?.flops(out.len))
}
