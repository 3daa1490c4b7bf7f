//! AvgPool2d (nn.AvgPool2d(kernel_size, stride=kernel_size, padding=0, ceil_mode=False,
//! count_include_pad=True, divisor_override=None)) with PyTorch's windows, output size and
//! divisors. The backward gathers dout / divisor over the windows covering each input element.
//! Shaders: avgpool2d_forward.wgsl, avgpool2d_backward.wgsl.

use super::interface::{CpuBackward, CpuForward, Flops, GpuIo, Mode, Node, Op, Reads};
use super::{pool_out_size, IntoPair, ParamsLayout};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Error, Result};

pub const OP: &str = "AvgPool2d";

crate::shaders!(avgpool2d_forward: 256, avgpool2d_backward: 256);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    pub divisor_override: Option<usize>,
}

impl AvgPool2d {
    /// AvgPool2d(k): stride k, padding 0, floor mode, padding counted in the divisor.
    pub fn new(kernel: impl IntoPair) -> Self {
        let kernel = kernel.pair();
        AvgPool2d {
            kernel,
            stride: kernel,
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }
    pub fn stride(mut self, s: impl IntoPair) -> Self {
        self.stride = s.pair();
        self
    }
    pub fn padding(mut self, p: impl IntoPair) -> Self {
        self.padding = p.pair();
        self
    }
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
    pub fn count_include_pad(mut self, include: bool) -> Self {
        self.count_include_pad = include;
        self
    }
    pub fn divisor_override(mut self, d: Option<usize>) -> Self {
        self.divisor_override = d;
        self
    }

    /// Checks an (N, C, H, W) input and returns the pooling geometry.
    pub fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        let op = || self.describe();
        ensure_op!(input.len() == 4, op(), "expected an (N, C, H, W) input, got shape {input:?}");
        let [n, c, h, w] = [input[0], input[1], input[2], input[3]];
        ensure_op!(self.kernel.0 > 0 && self.kernel.1 > 0, op(), "kernel size must be positive");
        ensure_op!(self.stride.0 > 0 && self.stride.1 > 0, op(), "stride must be positive, got {:?}", self.stride);
        ensure_op!(
            self.padding.0 <= self.kernel.0 / 2 && self.padding.1 <= self.kernel.1 / 2,
            op(),
            "pad should be at most half of kernel size"
        );
        ensure_op!(self.divisor_override != Some(0), op(), "divisor must be not zero");
        ensure_op!(n * c > 0 && h > 0 && w > 0, op(), "empty input of shape {input:?}");
        let oh = pool_out_size(h, self.kernel.0, self.stride.0, self.padding.0, 1, self.ceil_mode);
        let ow = pool_out_size(w, self.kernel.1, self.stride.1, self.padding.1, 1, self.ceil_mode);
        match (oh, ow) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok(Geometry {
                planes: n * c,
                n,
                c,
                h,
                w,
                oh,
                ow,
                kh: self.kernel.0,
                kw: self.kernel.1,
                sh: self.stride.0,
                sw: self.stride.1,
                ph: self.padding.0,
                pw: self.padding.1,
                count_include_pad: self.count_include_pad,
                divisor: self.divisor_override.unwrap_or(0),
            }),
            _ => Err(Error::op(
                op(),
                format!("output of input {input:?} would be empty: the kernel is larger than the padded input"),
            )),
        }
    }
}

impl Op for AvgPool2d {
    fn describe(&self) -> String {
        let py = super::py_bool;
        format!(
            "{OP}(kernel_size={:?}, stride={:?}, padding={:?}, ceil_mode={}, count_include_pad={}{})",
            self.kernel,
            self.stride,
            self.padding,
            py(self.ceil_mode),
            py(self.count_include_pad),
            self.divisor_override.map_or(String::new(), |d| format!(", divisor_override={d}"))
        )
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        Ok(Box::new(self.geometry(inputs[0])?))
    }
}

/// Sizes of one pooling: input (N·C planes, H, W), output (N·C, OH, OW).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub planes: usize,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub count_include_pad: bool,
    /// divisor_override, 0 for none.
    pub divisor: usize,
}

impl Geometry {
    /// Window (oh, ow): its rows and columns within the input, and its divisor.
    fn window(&self, oh: usize, ow: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
        let span = |o: usize, s: usize, p: usize, k: usize, size: usize| {
            let start = (o * s) as isize - p as isize;
            let end = (start + k as isize).min((size + p) as isize);
            let pool = (end - start) as usize;
            (start.max(0) as usize..end.min(size as isize).max(0) as usize, pool)
        };
        let (rows, ph) = span(oh, self.sh, self.ph, self.kh, self.h);
        let (cols, pw) = span(ow, self.sw, self.pw, self.kw, self.w);
        let div = if self.divisor != 0 {
            self.divisor
        } else if self.count_include_pad {
            ph * pw
        } else {
            rows.len() * cols.len()
        };
        (rows, cols, div)
    }
    /// Windows covering input position x along one axis.
    fn covering(x: usize, k: usize, s: usize, p: usize, n_out: usize) -> std::ops::Range<usize> {
        let t = x + p;
        let lo = (t + s).saturating_sub(k) / s;
        let hi = (t / s + 1).min(n_out);
        lo..hi.max(lo)
    }
}

impl Node for Geometry {
    fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.oh, self.ow]
    }
    fn flops(&self) -> Flops {
        let f = (self.planes * self.oh * self.ow * self.kh * self.kw) as u64;
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
        forward_gpu(gpu, io.label, self, io.out, io.inputs[0])
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        match io.dinput(0) {
            Some(dinp) => backward_gpu(gpu, io.label, self, dinp, io.dout.unwrap()),
            None => Ok(Program::default()),
        }
    }
}

/// out (N, C, OH, OW), overwritten, from inp (N, C, H, W).
pub fn forward_cpu<T: Real>(g: &Geometry, out: &mut [T], inp: &[T]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    crate::cpu::par_planes(out, ohw, |plane, o| {
        let x = &inp[plane * hw..][..hw];
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                let (rows, cols, div) = g.window(oh, ow);
                let mut acc = T::zero();
                for h in rows {
                    for w in cols.clone() {
                        acc += x[h * g.w + w];
                    }
                }
                o[oh * g.ow + ow] = if div == 0 { T::zero() } else { acc / T::of(div as f64) };
            }
        }
    });
}

/// dinp (N, C, H, W), overwritten: each input element gathers dout / divisor of the windows covering it.
pub fn backward_cpu<T: Real>(g: &Geometry, dinp: &mut [T], dout: &[T]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    crate::cpu::par_planes(dinp, hw, |plane, d| {
        let dy = &dout[plane * ohw..][..ohw];
        for ih in 0..g.h {
            for iw in 0..g.w {
                let mut acc = T::zero();
                for oh in Geometry::covering(ih, g.kh, g.sh, g.ph, g.oh) {
                    for ow in Geometry::covering(iw, g.kw, g.sw, g.pw, g.ow) {
                        let (_, _, div) = g.window(oh, ow);
                        acc += dy[oh * g.ow + ow] / T::of(div as f64);
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
    pub KH: u32,
    pub KW: u32,
    pub SH: u32,
    pub SW: u32,
    pub PH: u32,
    pub PW: u32,
    pub count_include_pad: u32,
    pub divisor: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(
            s,
            Params,
            [planes, H, W, OH, OW, KH, KW, SH, SW, PH, PW, count_include_pad, divisor, _pad0, _pad1, _pad2]
        )
    };
    vec![l("avgpool2d_forward"), l("avgpool2d_backward")]
}

fn params(g: &Geometry) -> Params {
    let u = |v: usize| v as u32;
    Params {
        planes: u(g.planes),
        H: u(g.h),
        W: u(g.w),
        OH: u(g.oh),
        OW: u(g.ow),
        KH: u(g.kh),
        KW: u(g.kw),
        SH: u(g.sh),
        SW: u(g.sw),
        PH: u(g.ph),
        PW: u(g.pw),
        count_include_pad: g.count_include_pad as u32,
        divisor: u(g.divisor),
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    }
}

/// out, overwritten, from inp.
pub fn forward_gpu(gpu: &Gpu, label: &str, g: &Geometry, out: &View, inp: &View) -> Result<Program> {
    let f = Node::flops(g).forward;
    Ok(Kernel::new(gpu, "avgpool2d_forward", label, &params(g), &[inp, out], Dispatch::Invocations(out.len))?
        .flops(f)
        .into())
}

/// dinp, overwritten, from dout.
pub fn backward_gpu(gpu: &Gpu, label: &str, g: &Geometry, dinp: &View, dout: &View) -> Result<Program> {
    let label = format!("{label}.dinp");
    let f = Node::flops(g).backward_input;
    let groups = Dispatch::Invocations(dinp.len);
    Ok(Kernel::new(gpu, "avgpool2d_backward", &label, &params(g), &[dout, dinp], groups)?.flops(f).into())
}
