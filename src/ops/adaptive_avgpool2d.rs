//! AdaptiveAvgPool2d (nn.AdaptiveAvgPool2d(output_size)) for any output size (smaller, larger or
//! equal to the input, dividing it or not): window o covers [floor(o·H/OH), ceil((o+1)·H/OH)) as in
//! PyTorch. `None` in PyTorch's output_size (keep that dimension) is written as the input's size.
//! Shaders: adaptive_avgpool2d_forward.wgsl, adaptive_avgpool2d_backward.wgsl.

use super::interface::{CpuBackward, CpuForward, Flops, GpuIo, Mode, Node, Op, Reads};
use super::{IntoPair, ParamsLayout};
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};
use std::ops::Range;

pub const OP: &str = "AdaptiveAvgPool2d";

crate::shaders!(adaptive_avgpool2d_forward: 256, adaptive_avgpool2d_backward: 256);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// AdaptiveAvgPool2d(1) averages each plane to one value (ResNet's global pooling).
    pub fn new(output_size: impl IntoPair) -> Self {
        AdaptiveAvgPool2d { output_size: output_size.pair() }
    }
}

impl Op for AdaptiveAvgPool2d {
    fn describe(&self) -> String {
        format!("{OP}(output_size={:?})", self.output_size)
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        let input = inputs[0];
        let op = self.describe();
        ensure_op!(input.len() == 4, op, "expected an (N, C, H, W) input, got shape {input:?}");
        ensure_op!(input.iter().all(|&d| d > 0), op, "empty input of shape {input:?}");
        let (oh, ow) = self.output_size;
        ensure_op!(oh > 0 && ow > 0, op, "output size must be positive, got {:?}", self.output_size);
        Ok(Box::new(Geometry { n: input[0], c: input[1], h: input[2], w: input[3], oh, ow }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Input positions window `o` of `n_out` covers along an axis of `size`.
pub fn window(o: usize, size: usize, n_out: usize) -> Range<usize> {
    (o * size) / n_out..((o + 1) * size).div_ceil(n_out)
}

/// Windows covering input position `x`.
fn covering(x: usize, size: usize, n_out: usize) -> Range<usize> {
    let first = (x * n_out) / size;
    let mut last = first;
    while last < n_out && window(last, size, n_out).start <= x {
        last += 1;
    }
    first..last
}

impl Node for Geometry {
    fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.oh, self.ow]
    }
    fn flops(&self) -> Flops {
        let f = (self.n * self.c * self.h * self.w) as u64;
        Flops { forward: f, backward_input: f, backward_params: 0 }
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: false, output: false }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        forward_cpu(self, io.out, io.inputs[0]);
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        if let Some(dinp) = io.dinputs.into_iter().next().flatten() {
            backward_cpu(self, dinp, io.dout);
        }
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let f = self.flops().forward;
        let groups = Dispatch::Invocations(io.out.len);
        let k = Kernel::new(
            gpu,
            "adaptive_avgpool2d_forward",
            io.label,
            &params(gpu, self),
            &[io.inputs[0], io.out],
            groups,
        )?;
        Ok(k.flops(f).into())
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let Some(dinp) = io.dinput(0) else { return Ok(Program::default()) };
        let f = self.flops().backward_input;
        let label = format!("{}.dinp", io.label);
        let views = [io.dout.unwrap(), dinp];
        let groups = Dispatch::Invocations(dinp.len / run(gpu, self) as u64);
        let k = Kernel::new(gpu, "adaptive_avgpool2d_backward", &label, &params(gpu, self), &views, groups)?;
        Ok(k.flops(f).into())
    }
}

/// out (N, C, OH, OW), overwritten: the mean of each window of inp (N, C, H, W).
pub fn forward_cpu<T: Real>(g: &Geometry, out: &mut [T], inp: &[T]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    crate::cpu::par_planes(out, ohw, |plane, o| {
        let x = &inp[plane * hw..][..hw];
        for oh in 0..g.oh {
            let rows = window(oh, g.h, g.oh);
            for ow in 0..g.ow {
                let cols = window(ow, g.w, g.ow);
                let mut acc = T::zero();
                for h in rows.clone() {
                    for w in cols.clone() {
                        acc += x[h * g.w + w];
                    }
                }
                o[oh * g.ow + ow] = acc / T::of((rows.len() * cols.len()) as f64);
            }
        }
    });
}

/// dinp (N, C, H, W), overwritten: each element gathers dout / window size of its windows.
pub fn backward_cpu<T: Real>(g: &Geometry, dinp: &mut [T], dout: &[T]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    crate::cpu::par_planes(dinp, hw, |plane, d| {
        let dy = &dout[plane * ohw..][..ohw];
        if ohw == 1 {
            // Global pooling (ResNet's head): one window of every element.
            d.fill(dy[0] / T::of(hw as f64));
            return;
        }
        for ih in 0..g.h {
            for iw in 0..g.w {
                let mut acc = T::zero();
                for oh in covering(ih, g.h, g.oh) {
                    let rows = window(oh, g.h, g.oh).len();
                    for ow in covering(iw, g.w, g.ow) {
                        let cols = window(ow, g.w, g.ow).len();
                        acc += dy[oh * g.ow + ow] / T::of((rows * cols) as f64);
                    }
                }
                d[ih * g.w + iw] = acc;
            }
        }
    });
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub planes: u32,
    pub H: u32,
    pub W: u32,
    pub OH: u32,
    pub OW: u32,
    pub run: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| crate::params_layout!(s, Params, [planes, H, W, OH, OW, run, _pad1, _pad2]);
    vec![l("adaptive_avgpool2d_forward"), l("adaptive_avgpool2d_backward")]
}

/// Input elements per invocation of the backward: a whole plane for global pooling (output 1 x 1)
/// on CPU adapters, which run integer divisions lane by lane (ResNet-20's `avgpool.dinp` on
/// lavapipe, about 15 of them an element before: history 64), else one.
fn run(gpu: &Gpu, g: &Geometry) -> usize {
    if gpu.split_target() == 0 && g.oh == 1 && g.ow == 1 {
        g.h * g.w
    } else {
        1
    }
}

fn params(gpu: &Gpu, g: &Geometry) -> Params {
    let u = |v: usize| v as u32;
    Params {
        planes: u(g.n * g.c),
        H: u(g.h),
        W: u(g.w),
        OH: u(g.oh),
        OW: u(g.ow),
        run: u(run(gpu, g)),
        _pad1: 0,
        _pad2: 0,
    }
}
