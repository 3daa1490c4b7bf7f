//! Conv2d (nn.Conv2d, NCHW, groups = 1): kernel (KH, KW), stride, zero padding, dilation, optional
//! bias. Shaders: conv2d_forward.wgsl, conv2d_backward_input.wgsl, conv2d_backward_weight.wgsl
//! (+ sum_splits.wgsl when a reduction is split across invocations), bias_backward.wgsl; their
//! `_subgroups` forms for CPU adapters, `_tiled` forms and, for mixed precision, `_cooperative_matrix`
//! forms ([`ConvKernels`]); with those, layers with unit strides run their products on
//! conv2d_forward_cooperative_matrix_padded.wgsl and conv2d_backward_weight_cooperative_matrix_padded.wgsl
//! instead (`padded_forward`, `padded_input_gradient`, `padded_weight_gradient`).
//! The CPU path runs direct convolutions on x86-64 with AVX2 (`direct`), else im2col + GEMM
//! (matrixmultiply), parallel over the batch (rayon).
//! With [`Precision::Mixed`] the three products run their `_f16` variants on f16 copies of the
//! input, the weight and the output gradient (ops::cast_f16): the register-blocked kernels, their
//! `_subgroups` forms, or the `_cooperative_matrix` kernels, which read f16 only.

use super::cast_f16::{self, Layout, Operands};
use super::interface::{
    CpuBackward, CpuForward, Epilogue, Flops, GpuIo, Init, Mode, Node, Op, ParamDecl, Reads, Scratch,
};
use super::{bias, sum_splits, IntoPair, ParamsLayout};
use crate::buffer::View;
use crate::cpu::{multiversion, with_scratch, Real};
use crate::device::{ConvKernels, Gpu, Precision};
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Error, Result};
use rayon::prelude::*;

mod direct;
pub mod reference;
mod winograd;
mod winograd_gpu;

/// The CPU kernels that run a pass of a geometry, chosen in one place so that the planned scratch
/// and the pass agree (None: im2col + GEMM).
#[derive(Clone, Copy)]
enum CpuKernel {
    Winograd(direct::Isa),
    Direct(direct::Isa),
}

impl CpuKernel {
    fn forward(g: &Geometry) -> Option<CpuKernel> {
        match direct::forward_applies(g) {
            Some(isa) if winograd::applies(g) => Some(CpuKernel::Winograd(isa)),
            isa => isa.map(CpuKernel::Direct),
        }
    }
    fn input_gradient(g: &Geometry) -> Option<CpuKernel> {
        match direct::input_gradient_applies(g) {
            Some(isa) if winograd::input_gradient_applies(g) => Some(CpuKernel::Winograd(isa)),
            isa => isa.map(CpuKernel::Direct),
        }
    }
}

/// Refuses a WGRAD_CPU_ISA value that names no kernels (Device::select calls this before it
/// chooses).
pub fn check_cpu_isa_env() -> Result<()> {
    direct::cap_from_env().map(|_| ())
}

pub const OP: &str = "Conv2d";

crate::shaders!(
    conv2d_forward: 64,
    conv2d_backward_input: 64,
    conv2d_backward_weight: 64,
    conv2d_forward_subgroups: 64,
    conv2d_backward_input_subgroups: 64,
    conv2d_backward_weight_subgroups: 64,
    conv2d_forward_tiled: 64,
    conv2d_backward_input_tiled: 64,
    conv2d_backward_weight_tiled: 64,
    conv2d_forward_cooperative_matrix: 32,
    conv2d_backward_input_cooperative_matrix: 32,
    conv2d_backward_weight_cooperative_matrix: 32,
    conv2d_forward_cooperative_matrix_padded: 32,
    conv2d_backward_weight_cooperative_matrix_padded: 32,
    conv2d_winograd_input: 64,
    conv2d_winograd_weight: 64,
    conv2d_winograd_product: 64,
    conv2d_winograd_output: 64,
    conv2d_winograd_output_gradient: 64,
    conv2d_winograd_weight_gradient_product: 64,
    conv2d_winograd_weight_gradient: 64,
);

/// nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True)
/// (groups = 1, padding_mode 'zeros'). Sizes are (height, width); the builders take an int or a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub bias: bool,
}

impl Conv2d {
    /// Conv2d(in, out, k) with PyTorch's defaults: stride 1, padding 0, dilation 1, bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: impl IntoPair) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            kernel: kernel.pair(),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            bias: true,
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
    pub fn dilation(mut self, d: impl IntoPair) -> Self {
        self.dilation = d.pair();
        self
    }
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel.0, self.kernel.1]
    }

    /// Checks an (N, C, H, W) input against the layer and returns the geometry of the convolution.
    pub fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        let op = || self.describe();
        ensure_op!(input.len() == 4, op(), "expected an (N, C, H, W) input, got shape {input:?}");
        let [n, c, h, w] = [input[0], input[1], input[2], input[3]];
        ensure_op!(self.kernel.0 > 0 && self.kernel.1 > 0, op(), "kernel size must be positive");
        ensure_op!(self.stride.0 > 0 && self.stride.1 > 0, op(), "stride must be positive, got {:?}", self.stride);
        ensure_op!(
            self.dilation.0 > 0 && self.dilation.1 > 0,
            op(),
            "dilation must be positive, got {:?}",
            self.dilation
        );
        ensure_op!(self.in_channels > 0 && self.out_channels > 0, op(), "channel counts must be positive");
        ensure_op!(
            c == self.in_channels,
            op(),
            "input {input:?} has {c} channels but the weight expects {}",
            self.in_channels
        );
        ensure_op!(n > 0, op(), "empty batch in input {input:?}");
        let eff = |k: usize, d: usize| d * (k - 1) + 1;
        let (ekh, ekw) = (eff(self.kernel.0, self.dilation.0), eff(self.kernel.1, self.dilation.1));
        let (ph, pw) = (h + 2 * self.padding.0, w + 2 * self.padding.1);
        if ph < ekh || pw < ekw {
            return Err(Error::op(
                op(),
                format!("kernel of effective size ({ekh}, {ekw}) is larger than the padded input ({ph}, {pw}) of input {input:?}"),
            ));
        }
        let oh = (ph - ekh) / self.stride.0 + 1;
        let ow = (pw - ekw) / self.stride.1 + 1;
        Ok(Geometry {
            n,
            ic: c,
            h,
            w,
            oc: self.out_channels,
            oh,
            ow,
            kh: self.kernel.0,
            kw: self.kernel.1,
            sh: self.stride.0,
            sw: self.stride.1,
            ph: self.padding.0,
            pw: self.padding.1,
            dh: self.dilation.0,
            dw: self.dilation.1,
        })
    }
}

impl Op for Conv2d {
    fn describe(&self) -> String {
        format!(
            "{OP}({}, {}, kernel_size={:?}, stride={:?}, padding={:?}{}{})",
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.stride,
            self.padding,
            if self.dilation != (1, 1) { format!(", dilation={:?}", self.dilation) } else { String::new() },
            if self.bias { "" } else { ", bias=False" }
        )
    }
    fn params(&self) -> Vec<ParamDecl> {
        let init = Init::Uniform { fan_in: self.in_channels * self.kernel.0 * self.kernel.1 };
        let mut v = vec![ParamDecl::param("weight", self.weight_shape().to_vec(), init)];
        if self.bias {
            v.push(ParamDecl::param("bias", vec![self.out_channels], init));
        }
        v
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        Ok(Box::new(Planned { g: self.geometry(inputs[0])?, bias: self.bias }))
    }
}

/// A convolution at fixed shapes.
struct Planned {
    g: Geometry,
    bias: bool,
}

impl Node for Planned {
    fn out_shape(&self) -> Vec<usize> {
        self.g.out_shape().to_vec()
    }
    fn flops(&self) -> Flops {
        let f = 2 * self.g.macs() as u64;
        Flops { forward: f, backward_input: f, backward_params: f }
    }
    fn gpu_scratch(&self, gpu: &Gpu, dinputs: &[bool]) -> Scratch {
        let g = &self.g;
        let (bias_splits, _) = bias::splits(gpu, g.n, g.oc);
        let mut scratch = product_scratch(gpu, g, dinputs[0]);
        if self.bias && bias_splits > 1 {
            scratch.backward.insert(0, (bias_splits * g.oc) as u64);
        }
        cast_f16::product_scratch(gpu, precision(gpu, g), g.sizes(), &mut scratch);
        if let Some(f) = padded_weight_gradient(gpu, g) {
            // The forward's padded input copy, kept for the weight gradient (see forward_gpu).
            scratch.kept[0] = Layout::Padded(f.input).words();
        }
        if let Some(at) =
            scratch.backward.len().checked_sub(3).filter(|_| dout_cast_by_every_reader(gpu, g, dinputs[0]))
        {
            // The output gradient's channels-last copy, which is not made: a word for its slot.
            scratch.backward[at] = 1;
        }
        scratch
    }
    fn gpu_backward_reads(&self, gpu: &Gpu) -> Reads {
        cast_f16::product_backward_reads(precision(gpu, &self.g), self.backward_reads())
    }
    fn cpu_scratch(&self, dinputs: &[bool]) -> Scratch {
        let g = &self.g;
        let forward = match CpuKernel::forward(g) {
            Some(CpuKernel::Winograd(_)) => winograd::scratch(g),
            Some(CpuKernel::Direct(isa)) => direct::forward_scratch(isa, g),
            None => Vec::new(),
        };
        let mut backward =
            direct::weight_gradient_applies(g).map_or_else(Vec::new, |isa| direct::backward_weight_scratch(isa, g));
        if dinputs.first() == Some(&true) && !backward.is_empty() {
            match CpuKernel::input_gradient(g) {
                Some(CpuKernel::Winograd(_)) => backward.extend(winograd::scratch(&winograd::transposed(g))),
                Some(CpuKernel::Direct(isa)) => backward.extend(direct::backward_input_scratch(isa, g)),
                None => {}
            }
        }
        Scratch { forward, backward, kept: Vec::new() }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        self.forward_cpu_fused(io, &Epilogue::default());
    }
    fn takes_epilogue(&self) -> bool {
        true
    }
    fn forward_cpu_fused(&self, mut io: CpuForward<'_>, ep: &Epilogue<'_>) {
        let bias = self.bias.then(|| &*io.state[1]);
        match CpuKernel::forward(&self.g) {
            Some(CpuKernel::Winograd(isa)) if !io.scratch.is_empty() => {
                winograd::forward(isa, &self.g, io.out, io.inputs[0], io.state[0], bias, ep, &mut io.scratch)
            }
            Some(CpuKernel::Direct(isa)) if !io.scratch.is_empty() => {
                direct::forward(isa, &self.g, io.out, io.inputs[0], io.state[0], bias, ep, &mut io.scratch)
            }
            _ => {
                forward_cpu(&self.g, io.out, io.inputs[0], io.state[0], bias);
                if ep.affine.is_some() || ep.relu {
                    ep.apply(io.out, self.g.oc, self.g.oh * self.g.ow);
                }
            }
        }
    }
    fn backward_cpu(&self, mut io: CpuBackward<'_>) {
        let g = &self.g;
        let mut dparams = io.dparams.into_iter();
        let dweight = dparams.next().unwrap();
        let dbias = dparams.next();
        let dinp = io.dinputs.into_iter().next().flatten();
        let Some(isa) = direct::weight_gradient_applies(g).filter(|_| io.scratch.len() >= 3) else {
            return backward_cpu(g, dinp, Some(dweight), dbias, io.dout, io.inputs[0], io.state[0]);
        };
        let (dw_scratch, dx_scratch) = io.scratch.split_at_mut(3);
        direct::backward_weight(isa, g, dweight, io.dout, io.inputs[0], dw_scratch);
        if let Some(dinp) = dinp {
            match CpuKernel::input_gradient(g) {
                Some(CpuKernel::Winograd(isa)) if dx_scratch.len() == 2 => {
                    winograd::backward_input(isa, g, dinp, io.dout, io.state[0], dx_scratch)
                }
                Some(CpuKernel::Direct(isa)) if dx_scratch.len() >= 2 => {
                    direct::backward_input(isa, g, dinp, io.dout, io.state[0], dx_scratch)
                }
                _ => backward_cpu(g, Some(dinp), None, None, io.dout, io.inputs[0], io.state[0]),
            }
        }
        if let Some(db) = dbias {
            bias::backward_cpu(db, io.dout, g.n, g.oc, g.oh * g.ow);
        }
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let (g, bias) = (&self.g, io.state.get(1).copied());
        if let (Some(f), Some(_)) = (padded_forward(gpu, g), padded_weight_gradient(gpu, g)) {
            // The input's padded copy is the kept one (no channels-last copy, which nothing
            // reads); the weight's channels-last copy is kept for the input gradient.
            let (&[x, w16], &[w]) = (io.kept.as_slice(), io.scratch.as_slice()) else {
                return Err(Error::op(io.label, "the padded forward given other than 2 kept and 1 scratch tensors"));
            };
            let mut prog = cast_f16::gpu(
                gpu,
                &format!("{}.weight", io.label),
                io.state[0],
                cast_f16::layout(gpu, g.sizes().weight),
                w16,
                None,
            )?;
            prog.extend(f.gpu(gpu, io.label, [io.inputs[0], io.state[0]], None, bias, io.out, &[x, w])?);
            return Ok(prog);
        }
        let s = cast_f16::stage_forward(gpu, precision(gpu, g), io, g.sizes())?;
        let mut prog = s.prog;
        match padded_forward(gpu, g) {
            Some(f) => {
                let operands = [io.inputs[0], io.state[0]];
                prog.extend(f.gpu(gpu, io.label, operands, None, bias, io.out, s.scratch)?)
            }
            None => prog.extend(forward_gpu(gpu, io.label, g, io.out, s.input, s.weight, bias, s.scratch, s.ops)?),
        }
        Ok(prog)
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let g = &self.g;
        let grads = GpuGrads { dinp: io.dinput(0), dweight: io.dparams[0], dbias: io.dparams.get(1).copied() };
        let copy = if dout_cast_by_every_reader(gpu, g, grads.dinp.is_some()) {
            cast_f16::DoutCopy::ScaleOnly
        } else {
            cast_f16::DoutCopy::Cast
        };
        let s = cast_f16::stage_backward(gpu, precision(gpu, g), io, g.sizes(), copy)?;
        let (mut prog, dout) = (s.prog, io.dout.unwrap());
        prog.extend(backward_gpu(gpu, io.label, g, grads, dout, s.dout, s.input, s.weight, s.top, s.scratch, s.ops)?);
        Ok(prog)
    }
}

/// Whether every product that reads the output gradient casts it itself (the padded weight
/// gradient, and the padded input gradient where there is one), so that the backward makes no
/// channels-last copy of it and allocates none.
fn dout_cast_by_every_reader(gpu: &Gpu, g: &Geometry, dinp: bool) -> bool {
    padded_weight_gradient(gpu, g).is_some() && (!dinp || padded_input_gradient(gpu, g).is_some())
}

/// Every size of one convolution: input (N, IC, H, W), output (N, OC, OH, OW), weight (OC, IC, KH, KW).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub ic: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl Geometry {
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.oc, self.oh, self.ow]
    }
    /// IC·KH·KW, the GEMM's reduction length.
    pub fn k(&self) -> usize {
        self.ic * self.kh * self.kw
    }
    /// The shapes of the input, the weight and the output (gradient).
    pub fn sizes(&self) -> cast_f16::Sizes {
        cast_f16::Sizes {
            input: [self.n, self.ic, self.h * self.w],
            weight: [self.oc, self.ic, self.kh * self.kw],
            dout: [self.n, self.oc, self.oh * self.ow],
        }
    }
    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.oc * self.oh * self.ow * self.k()
    }
}

/// Images per GEMM on the CPU path: a chunk's columns go side by side so the products are long
/// enough to run near the GEMM's peak. Fixed (not the thread count) so results are deterministic.
const CPU_CHUNK: usize = 8;

/// Writes image x (IC, H, W) as columns [at, at + OH·OW) of col (IC·KH·KW rows of `stride`);
/// padding reads as zero.
#[multiversion(targets = "simd")]
fn im2col<T: Real>(g: &Geometry, x: &[T], col: &mut [T], stride: usize, at: usize) {
    let ohw = g.oh * g.ow;
    for ic in 0..g.ic {
        for kh in 0..g.kh {
            for kw in 0..g.kw {
                let row = &mut col[((ic * g.kh + kh) * g.kw + kw) * stride + at..][..ohw];
                for oh in 0..g.oh {
                    let ih = (oh * g.sh + kh * g.dh) as isize - g.ph as isize;
                    let dst = &mut row[oh * g.ow..(oh + 1) * g.ow];
                    if ih < 0 || ih as usize >= g.h {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &x[(ic * g.h + ih as usize) * g.w..][..g.w];
                    for (ow, d) in dst.iter_mut().enumerate() {
                        let iw = (ow * g.sw + kw * g.dw) as isize - g.pw as isize;
                        *d = if iw >= 0 && (iw as usize) < g.w { src[iw as usize] } else { T::zero() };
                    }
                }
            }
        }
    }
}

/// The adjoint of im2col: adds columns [at, at + OH·OW) of col back into dx (IC, H, W).
#[multiversion(targets = "simd")]
fn col2im<T: Real>(g: &Geometry, col: &[T], stride: usize, at: usize, dx: &mut [T]) {
    let ohw = g.oh * g.ow;
    for ic in 0..g.ic {
        for kh in 0..g.kh {
            for kw in 0..g.kw {
                let row = &col[((ic * g.kh + kh) * g.kw + kw) * stride + at..][..ohw];
                for oh in 0..g.oh {
                    let ih = (oh * g.sh + kh * g.dh) as isize - g.ph as isize;
                    if ih < 0 || ih as usize >= g.h {
                        continue;
                    }
                    let dst = &mut dx[(ic * g.h + ih as usize) * g.w..][..g.w];
                    for ow in 0..g.ow {
                        let iw = (ow * g.sw + kw * g.dw) as isize - g.pw as isize;
                        if iw >= 0 && (iw as usize) < g.w {
                            dst[iw as usize] += row[oh * g.ow + ow];
                        }
                    }
                }
            }
        }
    }
}

/// out (N, OC, OH, OW), overwritten, from inp (N, IC, H, W), weight (OC, IC, KH, KW), bias (OC,).
pub fn forward_cpu<T: Real>(g: &Geometry, out: &mut [T], inp: &[T], weight: &[T], bias: Option<&[T]>) {
    let (k, ohw, in_sz, out_sz) = (g.k(), g.oh * g.ow, g.ic * g.h * g.w, g.oc * g.oh * g.ow);
    out.par_chunks_mut(CPU_CHUNK * out_sz).enumerate().for_each(|(c, out_c)| {
        with_scratch::<T, _>(k * CPU_CHUNK * ohw, |col| {
            with_scratch::<T, _>(g.oc * CPU_CHUNK * ohw, |tmp| {
                let nb = out_c.len() / out_sz;
                let cols = nb * ohw;
                for b in 0..nb {
                    im2col(g, &inp[(c * CPU_CHUNK + b) * in_sz..][..in_sz], col, cols, b * ohw);
                }
                // tmp (OC, nb·OHW) = weight (OC, K) · col (K, nb·OHW)
                T::gemm(
                    g.oc,
                    k,
                    cols,
                    T::one(),
                    weight,
                    k as isize,
                    1,
                    col,
                    cols as isize,
                    1,
                    T::zero(),
                    tmp,
                    cols as isize,
                    1,
                );
                for b in 0..nb {
                    for oc in 0..g.oc {
                        let add = bias.map_or(T::zero(), |bv| bv[oc]);
                        let src = &tmp[oc * cols + b * ohw..][..ohw];
                        let dst = &mut out_c[b * out_sz + oc * ohw..][..ohw];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = v + add;
                        }
                    }
                }
            })
        })
    });
}

/// Gradients w.r.t. the input, the weight and the bias, each when given, all overwritten, from
/// dout (N, OC, OH, OW), inp and weight.
pub fn backward_cpu<T: Real>(
    g: &Geometry,
    dinp: Option<&mut [T]>,
    dweight: Option<&mut [T]>,
    dbias: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    weight: &[T],
) {
    let (k, ohw, in_sz, out_sz) = (g.k(), g.oh * g.ow, g.ic * g.h * g.w, g.oc * g.oh * g.ow);
    let chunks = g.n.div_ceil(CPU_CHUNK);
    // One chunk of images: its dweight contribution into `dw` and its dinp written in place, each
    // when asked.
    let chunk = |c: usize, dw: Option<&mut [T]>, dx: Option<&mut [T]>| {
        with_scratch::<T, _>(k * CPU_CHUNK * ohw, |col| {
            with_scratch::<T, _>(g.oc * CPU_CHUNK * ohw, |dchunk| {
                let n0 = c * CPU_CHUNK;
                let nb = CPU_CHUNK.min(g.n - n0);
                let cols = nb * ohw;
                for b in 0..nb {
                    if dw.is_some() {
                        im2col(g, &inp[(n0 + b) * in_sz..][..in_sz], col, cols, b * ohw);
                    }
                    for oc in 0..g.oc {
                        dchunk[oc * cols + b * ohw..][..ohw]
                            .copy_from_slice(&dout[(n0 + b) * out_sz + oc * ohw..][..ohw]);
                    }
                }
                if let Some(dw) = dw {
                    // dw (OC, K) = dchunk (OC, nb·OHW) · colᵀ (nb·OHW, K)
                    T::gemm(
                        g.oc,
                        cols,
                        k,
                        T::one(),
                        dchunk,
                        cols as isize,
                        1,
                        col,
                        1,
                        cols as isize,
                        T::zero(),
                        dw,
                        k as isize,
                        1,
                    );
                }
                if let Some(dx) = dx {
                    // col (K, nb·OHW) = weightᵀ (K, OC) · dchunk (OC, nb·OHW), then scattered back.
                    T::gemm(
                        k,
                        g.oc,
                        cols,
                        T::one(),
                        weight,
                        1,
                        k as isize,
                        dchunk,
                        cols as isize,
                        1,
                        T::zero(),
                        col,
                        cols as isize,
                        1,
                    );
                    dx.fill(T::zero());
                    for b in 0..nb {
                        col2im(g, col, cols, b * ohw, &mut dx[b * in_sz..(b + 1) * in_sz]);
                    }
                }
            })
        })
    };
    match dweight {
        // Per-chunk weight gradients are summed in chunk order below, so the result does not
        // depend on rayon's scheduling.
        Some(dweight) => with_scratch::<T, _>(chunks * g.oc * k, |per_chunk| {
            let parts = per_chunk.par_chunks_mut(g.oc * k);
            match dinp {
                Some(dinp) => parts
                    .zip(dinp.par_chunks_mut(CPU_CHUNK * in_sz))
                    .enumerate()
                    .for_each(|(c, (dw, dx))| chunk(c, Some(dw), Some(dx))),
                None => parts.enumerate().for_each(|(c, dw)| chunk(c, Some(dw), None)),
            }
            dweight.fill(T::zero());
            for dw in per_chunk.chunks_exact(g.oc * k) {
                dweight.iter_mut().zip(dw).for_each(|(a, &b)| *a += b);
            }
        }),
        None => {
            if let Some(dinp) = dinp {
                dinp.par_chunks_mut(CPU_CHUNK * in_sz).enumerate().for_each(|(c, dx)| chunk(c, None, Some(dx)));
            }
        }
    }
    if let Some(db) = dbias {
        bias::backward_cpu(db, dout, g.n, g.oc, ohw);
    }
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub N: u32,
    pub IC: u32,
    pub H: u32,
    pub W: u32,
    pub OC: u32,
    pub OH: u32,
    pub OW: u32,
    pub KH: u32,
    pub KW: u32,
    pub SH: u32,
    pub SW: u32,
    pub PH: u32,
    pub PW: u32,
    pub DH: u32,
    pub DW: u32,
    pub has_bias: u32,
    pub splits: u32,
    pub chunk: u32,
    /// Where the output gradient's scale exponent is (ops::cast_f16; UNSCALED: nowhere).
    pub scale_at: u32,
    /// Invocations per tile of channels (`Product::stride`; the tiled kernels ignore it).
    pub stride: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(
            s,
            Params,
            [N, IC, H, W, OC, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, has_bias, splits, chunk, scale_at, stride]
        )
    };
    let mut v = vec![
        l("conv2d_forward").consts(&[("TP", TILE_PIXELS), ("TC", TILE_CHANNELS)]),
        l("conv2d_forward_wide").consts(&[("TP", TILE_PIXELS), ("TC", WIDE_TILE_CHANNELS)]),
        l("conv2d_backward_input").consts(&[("TP", TILE_PIXELS), ("TC", TILE_CHANNELS)]),
        l("conv2d_backward_weight").consts(&[("TK", WEIGHT_TILE_K), ("TC", TILE_CHANNELS)]),
        l("conv2d_backward_weight_wide").consts(&[("TK", WEIGHT_TILE_K), ("TC", WIDE_TILE_CHANNELS)]),
        l("conv2d_forward_subgroups").consts(&[("TP", TILE_PIXELS), ("TC", TILE_CHANNELS)]),
        l("conv2d_forward_subgroups_wide").consts(&[("TP", TILE_PIXELS), ("TC", WIDE_TILE_CHANNELS)]),
        l("conv2d_backward_input_subgroups").consts(&[("TP", TILE_PIXELS), ("TC", TILE_CHANNELS)]),
        l("conv2d_backward_input_subgroups_wide").consts(&[("TP", TILE_PIXELS), ("TC", WIDE_TILE_CHANNELS)]),
        l("conv2d_backward_weight_subgroups").consts(&[("TK", WEIGHT_TILE_K), ("TC", TILE_CHANNELS)]),
        l("conv2d_backward_weight_subgroups_wide")
            .consts(&[("TK", WIDE_SUBGROUPS_WEIGHT_TILE_K), ("TC", WIDE_TILE_CHANNELS)]),
        l("conv2d_forward_tiled").consts(TILED),
        l("conv2d_backward_input_tiled").consts(TILED),
        l("conv2d_backward_weight_tiled").consts(TILED),
        l("conv2d_forward_cooperative_matrix").consts(COOPERATIVE),
        l("conv2d_backward_input_cooperative_matrix").consts(COOPERATIVE),
        l("conv2d_backward_weight_cooperative_matrix").consts(COOPERATIVE),
        l("conv2d_forward_cooperative_matrix_16x16_narrow").consts(COOPERATIVE_NARROW),
        l("conv2d_backward_input_cooperative_matrix_16x16_narrow").consts(COOPERATIVE_NARROW),
        l("conv2d_backward_weight_cooperative_matrix_16x16_narrow").consts(COOPERATIVE_NARROW),
        l("conv2d_forward_cooperative_matrix_padded").consts(&[
            ("MT", PADDED_TILES.0),
            ("NT", PADDED_TILES.1),
            ("CHANNELS", PADDED_CHANNELS),
            ("ROWS", PADDED_ROWS),
        ]),
        l("conv2d_backward_weight_cooperative_matrix_padded").consts(&[
            ("MT", PADDED_TILES.0),
            ("NT", PADDED_TILES.1),
            ("ROWS", PADDED_ROWS),
        ]),
    ];
    v.extend(winograd_gpu::layouts());
    v
}

fn params(g: &Geometry, prod: &Product, has_bias: bool, splits: usize, chunk: usize, ops: Operands) -> Params {
    let u = |v: usize| v as u32;
    Params {
        N: u(g.n),
        IC: u(g.ic),
        H: u(g.h),
        W: u(g.w),
        OC: u(g.oc),
        OH: u(g.oh),
        OW: u(g.ow),
        KH: u(g.kh),
        KW: u(g.kw),
        SH: u(g.sh),
        SW: u(g.sw),
        PH: u(g.ph),
        PW: u(g.pw),
        DH: u(g.dh),
        DW: u(g.dw),
        has_bias: has_bias as u32,
        splits: u(splits),
        chunk: u(chunk),
        scale_at: ops.scale_at(),
        stride: u(prod.stride),
    }
}

/// Pixels and channels per invocation of conv2d_forward and conv2d_backward_input (TP and TC in the
/// shaders), and output channels per conv2d_backward_weight invocation; the same in their
/// `_subgroups` forms.
const TILE_PIXELS: usize = 8;
const TILE_CHANNELS: usize = 8;
/// Channels per invocation of the `_wide` kernels (crate::shaders::WIDE: the register-blocked
/// forward and weight gradient, every `_subgroups` kernel), which read half as many shared operands
/// per FMA; they run where the layer's channels are whole tiles of them and they still make enough
/// invocations ([`wide`]). The `_subgroups` weight gradient's takes 6 weight elements instead of 8
/// ([`weight_tile_k`]).
const WIDE_TILE_CHANNELS: usize = 16;
/// Weight elements (over IC·KH·KW) per conv2d_backward_weight invocation (TK in the shader).
const WEIGHT_TILE_K: usize = 8;
/// The same for `conv2d_backward_weight_subgroups_wide`: 16 channels by 6 k, 96 accumulators, where
/// lavapipe kept 16 by 8 in memory (history 54: Tudui's three weight gradients 117 → 82 ms at batch
/// 64 with 16 by 5); 6 takes two rows of a 3 wide kernel or one of a 5 wide one ([`weight_tile_k`]).
const WIDE_SUBGROUPS_WEIGHT_TILE_K: usize = 6;
/// The kernel widths for which, with stride and dilation 1 along the rows, an invocation of a
/// `_subgroups` weight gradient takes TK / KW whole kernel rows and slides a window along the output
/// rows, one input load per pixel and kernel row instead of KW (the shader's `slide_rows`; history
/// 56: Tudui's 5 wide kernels 82 → 49 ms at batch 64; history 57: ResNet-20's 3 wide ones 320 →
/// 183 ms).
const SLIDING_WEIGHT_KW: [usize; 2] = [3, 5];

/// The weight elements one invocation of the weight-gradient kernel `shader` computes for `g`.
fn weight_tile_k(shader: &str, g: &Geometry) -> usize {
    let tk = match shader {
        "conv2d_backward_weight_subgroups_wide" => WIDE_SUBGROUPS_WEIGHT_TILE_K,
        _ => WEIGHT_TILE_K,
    };
    let slides = shader.starts_with("conv2d_backward_weight_subgroups")
        && g.sw == 1
        && g.dw == 1
        && SLIDING_WEIGHT_KW.contains(&g.kw);
    if slides {
        tk / g.kw * g.kw
    } else {
        tk
    }
}
/// The register-blocked kernels' workgroup size (their shaders! entries above).
const BLOCKED_WG: usize = 64;

/// The workgroup-memory kernels' tile (BM rows (channels) x BN columns, BK reduction steps per
/// stage) and invocations per workgroup.
const TILED_BM: usize = 32;
const TILED_BN: usize = 128;
const TILED_WG: usize = 64;
const TILED: &[(&str, usize)] = &[("BM", TILED_BM), ("BN", TILED_BN), ("BK", 16), ("WG", TILED_WG)];

/// The cooperative-matrix kernels' four subgroups over a workgroup's tile, rows by columns, each
/// multiplying 2 x 2 tiles (SM and SN in the shaders; [`cooperative_shader`]), and their `_narrow`
/// variants'.
const COOPERATIVE_SUBGROUPS: (usize, usize) = (2, 2);
const NARROW_SUBGROUPS: (usize, usize) = (1, 4);
const COOPERATIVE: &[(&str, usize)] =
    &[("SM", COOPERATIVE_SUBGROUPS.0), ("SN", COOPERATIVE_SUBGROUPS.1), ("RUN", cast_f16::CHANNEL_RUN)];
const COOPERATIVE_NARROW: &[(&str, usize)] =
    &[("SM", NARROW_SUBGROUPS.0), ("SN", NARROW_SUBGROUPS.1), ("RUN", cast_f16::CHANNEL_RUN)];

/// The kernels a device's products use where they run no Winograd ([`winograd_gpu`]): its choice
/// ([`Gpu::conv_kernels`]), the register-blocked ones in mixed precision where it chose the tiled
/// ones (which have no f16 variants) and in f32 where it chose cooperative matrices (which multiply
/// f16 only), and the adapter's default ([`Gpu::default_conv_kernels`]) where it chose Winograd.
fn kernels(gpu: &Gpu) -> ConvKernels {
    match (gpu.precision(), gpu.conv_kernels()) {
        (Precision::Mixed, ConvKernels::Tiled) | (Precision::F32, ConvKernels::CooperativeMatrix) => {
            ConvKernels::RegisterBlocked
        }
        (_, ConvKernels::Winograd) => gpu.default_conv_kernels(),
        (_, k) => k,
    }
}

/// The precision the convolution `g` computes in on `gpu`: the device's ([`Gpu::precision`]), but
/// f32 in mixed precision where Winograd takes all three of its products (the layer then reads
/// its f32 operands and makes no f16 copies; winograd_gpu::layer_precision says why).
pub fn precision(gpu: &Gpu, g: &Geometry) -> Precision {
    winograd_gpu::layer_precision(gpu, g)
}

/// Whether `gpu`'s convolutions run their `_subgroups` kernels ([`ConvKernels::Subgroups`], lavapipe's
/// default); Linear then runs its products on `matmul_subgroups` (ops::linear::matmul_kernel).
pub fn runs_subgroups(gpu: &Gpu) -> bool {
    kernels(gpu) == ConvKernels::Subgroups
}

/// Whether `gpu`'s programs multiply on cooperative matrices (mixed precision with
/// [`ConvKernels::CooperativeMatrix`]); Linear then runs its products on these kernels too.
pub fn runs_cooperative_matrices(gpu: &Gpu) -> bool {
    kernels(gpu) == ConvKernels::CooperativeMatrix
}

/// A `_cooperative_matrix` kernel as one product runs it: the variant, the rows and columns one
/// workgroup of it computes, and its invocations (four subgroups).
struct Cooperative {
    shader: &'static str,
    rows: usize,
    cols: usize,
    workgroup: usize,
}

/// The `_cooperative_matrix` kernel `name` for this device's tile and a product of `rows` rows:
/// with 8 x 8 tiles the kernel itself, 4 tiles by 4 per workgroup; with 16 x 16 (NVIDIA) its
/// `_16x16` variant, 4 by 4, or for at most 32 rows its `_16x16_narrow` one, 2 by 8, where 4 by 4
/// would multiply and stage as many empty tiles as full ones (Tudui's 32-channel layers), if the
/// device offers the workgroup memory it takes ([`crate::shaders::NARROW_WORKGROUP_BYTES`]).
fn cooperative_shader(gpu: &Gpu, name: &'static str, rows: usize) -> Cooperative {
    let tile = gpu.cooperative_tile().unwrap_or(8);
    let narrow = tile == 16
        && rows <= 2 * NARROW_SUBGROUPS.0 * tile as usize
        && crate::shaders::cooperative_variant(name, tile, true)
            .and_then(crate::shaders::get)
            .is_some_and(|s| gpu.can_build(s));
    let shader = crate::shaders::cooperative_variant(name, tile, narrow).unwrap_or(name);
    let workgroup = crate::shaders::get(shader).map_or(32, |s| s.workgroup as usize);
    let (sm, sn) = if narrow { NARROW_SUBGROUPS } else { COOPERATIVE_SUBGROUPS };
    let tile = tile as usize;
    Cooperative { shader, rows: 2 * sm * tile, cols: 2 * sn * tile, workgroup }
}

/// One of a convolution's three products (forward, input gradient, weight gradient), a GEMM of
/// `rows` (output channels; input channels for the input gradient) by `cols` (output pixels; input
/// pixels for the input gradient, IC·KH·KW for the weight gradient): the shader of the chosen
/// kernels and the invocations one split of it runs.
#[derive(Clone, Copy)]
struct Product {
    shader: &'static str,
    invocations: usize,
    /// The register-blocked kernels' invocations per tile of channels: one per block of columns
    /// (of each phase, see [`Product::new`]), rounded up for the `_subgroups` kernels to whole
    /// subgroups (so that a subgroup never spans two tiles or phases, whose shared operands differ).
    stride: usize,
}

impl Product {
    /// `names`: the shaders of [`ConvKernels::RegisterBlocked`], `Subgroups`, `Tiled` and
    /// `CooperativeMatrix`, in that order; `block`: the columns one invocation of a register-blocked
    /// or `_subgroups` kernel computes (of a tile's TILE_CHANNELS, or of a `_wide` kernel's
    /// WIDE_TILE_CHANNELS), given its name; `phases`: the equal parts the register-blocked kernels
    /// stride over one after the other, each with invocations of its own, and the cooperative-matrix
    /// kernels tile apart (the input gradient's sub-pixel phases, see [`phased`]; 1 elsewhere);
    /// `parallel`: how many times over a register-blocked invocation's work may be split (the
    /// weight gradient's pixels; 1 for the others), for [`wide`].
    fn new(
        gpu: &Gpu,
        names: &'static [&'static str; 4],
        (rows, cols): (usize, usize),
        block: &dyn Fn(&str) -> usize,
        (phases, parallel): (usize, usize),
    ) -> Product {
        // Invocations per phase and tile of channels, rounded up to a multiple of `rounding`.
        let per_phase =
            |shader: &str, rounding: usize| (cols / phases).div_ceil(block(shader)).next_multiple_of(rounding);
        let blocked = |shader: &'static str, channels: usize, rounding: usize| {
            let per_phase = per_phase(shader, rounding);
            Product { shader, invocations: rows.div_ceil(channels) * phases * per_phase, stride: phases * per_phase }
        };
        let blocked_or_wide = |shader: &'static str, rounding: usize| match crate::shaders::wide_variant(shader) {
            Some(wide_shader)
                if wide(rows, phases * per_phase(wide_shader, rounding) * parallel, gpu.split_target()) =>
            {
                blocked(wide_shader, WIDE_TILE_CHANNELS, rounding)
            }
            _ => blocked(shader, TILE_CHANNELS, rounding),
        };
        match kernels(gpu) {
            // kernels() gives Winograd's other products the adapter's default kernels, never Winograd.
            ConvKernels::RegisterBlocked | ConvKernels::Winograd => blocked_or_wide(names[0], 1),
            // Subgroups are taken to be aligned runs of a workgroup's invocations (as on every
            // adapter seen; Vulkan leaves it open), and lie within it.
            ConvKernels::Subgroups => blocked_or_wide(names[1], subgroup_rounding(gpu)),
            ConvKernels::Tiled => Product {
                shader: names[2],
                invocations: rows.div_ceil(TILED_BM) * cols.div_ceil(TILED_BN) * TILED_WG,
                stride: 0,
            },
            ConvKernels::CooperativeMatrix => {
                let c = cooperative_shader(gpu, names[3], rows);
                Product {
                    shader: c.shader,
                    invocations: rows.div_ceil(c.rows) * phases * (cols / phases).div_ceil(c.cols) * c.workgroup,
                    stride: 0,
                }
            }
        }
    }
    fn forward(gpu: &Gpu, g: &Geometry) -> Product {
        // The `_subgroups` kernel takes runs of TILE_PIXELS pixels within a row, the last one of
        // each row cut short.
        let ow = match kernels(gpu) {
            ConvKernels::Subgroups => g.ow.next_multiple_of(TILE_PIXELS),
            _ => g.ow,
        };
        let pixels = g.n * g.oh * ow;
        let names = &[
            "conv2d_forward",
            "conv2d_forward_subgroups",
            "conv2d_forward_tiled",
            "conv2d_forward_cooperative_matrix",
        ];
        Product::new(gpu, names, (g.oc, pixels), &|_| TILE_PIXELS, (1, 1))
    }
    fn dinp(gpu: &Gpu, g: &Geometry) -> Product {
        // Strided layers take their pixels phase by phase, each phase a grid of (H/SH) × (W/SW).
        let (sy, sx) = if phased(g) { (g.sh, g.sw) } else { (1, 1) };
        // The `_subgroups` kernel takes runs of TILE_PIXELS pixels within a row of a phase, the
        // last one of each row cut short.
        let wp = match kernels(gpu) {
            ConvKernels::Subgroups => (g.w / sx).next_multiple_of(TILE_PIXELS),
            _ => g.w / sx,
        };
        let pixels = sy * sx * g.n * (g.h / sy) * wp;
        let names = &[
            "conv2d_backward_input",
            "conv2d_backward_input_subgroups",
            "conv2d_backward_input_tiled",
            "conv2d_backward_input_cooperative_matrix",
        ];
        Product::new(gpu, names, (g.ic, pixels), &|_| TILE_PIXELS, (sy * sx, 1))
    }
    fn dweight(gpu: &Gpu, g: &Geometry) -> Product {
        let names = &[
            "conv2d_backward_weight",
            "conv2d_backward_weight_subgroups",
            "conv2d_backward_weight_tiled",
            "conv2d_backward_weight_cooperative_matrix",
        ];
        // Its pixels split in chunks of at least WEIGHT_SPLIT_PIXELS (weight_splits).
        let parallel = (g.n * g.oh * g.ow).div_ceil(WEIGHT_SPLIT_PIXELS);
        // The cooperative-matrix kernel's columns are (kh, kw, ic) over the input copy's padded
        // channels (channels last).
        let cols = match kernels(gpu) {
            ConvKernels::CooperativeMatrix => g.kh * g.kw * cast_f16::padded_channels(g.ic),
            _ => g.k(),
        };
        Product::new(gpu, names, (g.oc, cols), &|shader| weight_tile_k(shader, g), (1, parallel))
    }
}

/// Whether a register-blocked or `_subgroups` product of `rows` channels takes its `_wide` kernel
/// (16 channels per invocation, [`WIDE_TILE_CHANNELS`]): where the channels are whole tiles of 16
/// and the wide kernel's invocations (`blocks` per tile of channels, times its reduction's splits
/// at most) still reach half the adapter's split target ([`Gpu::split_target`]; 0 on CPU adapters,
/// which need no more invocations than their threads). Measured on an H200 (history 40): 16
/// channels made Tudui's `conv2.dweight` 1.04 → 0.83 ms at batch 1024, with 200 × 1,024
/// invocations, but 0.09 → 0.11 ms at batch 64, with 200 × 64; and the forward of cifar-net's
/// 6-channel `conv1` 0.075 → 0.123 ms (10 of 16 channels idle). On lavapipe (history 42) the
/// `_subgroups` kernels with 8 channels made that layer 7.4 → 4.9 ms at batch 64.
fn wide(rows: usize, blocks: usize, split_target: usize) -> bool {
    rows.is_multiple_of(WIDE_TILE_CHANNELS) && rows / WIDE_TILE_CHANNELS * blocks * 2 >= split_target
}

/// What the `_subgroups` kernels (matmul_subgroups too) round their invocations per tile of
/// channels up to: the adapter's largest subgroup, so that no subgroup spans two tiles.
pub(crate) fn subgroup_rounding(gpu: &Gpu) -> usize {
    (gpu.subgroup_max_size() as usize).clamp(1, BLOCKED_WG)
}

/// Whether the register-blocked and cooperative-matrix input gradients (`conv2d_backward_input`,
/// its `_subgroups` form, `conv2d_backward_input_cooperative_matrix`) of `g` take their input
/// pixels by sub-pixel phase (strided, undilated, input sides multiples of the strides), visiting
/// only the taps that reach each phase: the shaders decide the same from their parameters.
fn phased(g: &Geometry) -> bool {
    (g.sh > 1 || g.sw > 1) && g.dh == 1 && g.dw == 1 && g.h.is_multiple_of(g.sh) && g.w.is_multiple_of(g.sw)
}

/// The partial sums the products of `g` take where their reductions are split: the forward's, then
/// the weight gradient's and (when `dinp`) the input gradient's, in the order [`forward_gpu`] and
/// [`backward_gpu`] take them after the bias gradient's.
pub fn product_scratch(gpu: &Gpu, g: &Geometry, dinp: bool) -> Scratch {
    let s = Splits::new(gpu, g);
    let part = |(splits, _): (usize, usize), len: usize| (splits > 1).then_some((splits * len) as u64);
    let dweight_copy = padded_weight_gradient(gpu, g).map(|f| f.scratch());
    // The padded forward's copies; its input's is kept where the weight gradient reads it.
    let forward_copies =
        padded_forward(gpu, g).map_or(Vec::new(), |f| f.scratch()[dweight_copy.is_some() as usize..].to_vec());
    let dinp_copies = padded_input_gradient(gpu, g).filter(|_| dinp).map(|f| f.scratch());
    let winograd_forward = winograd_gpu::forward(gpu, g).map(|w| w.scratch());
    let winograd_dinp = winograd_gpu::input_gradient(gpu, g).filter(|_| dinp);
    let winograd_backward =
        winograd_gpu::backward_scratch(winograd_gpu::weight_gradient(gpu, g).as_ref(), winograd_dinp.as_ref());
    Scratch {
        forward: part(s.forward, g.n * g.oc * g.oh * g.ow)
            .into_iter()
            .chain(forward_copies)
            .chain(winograd_forward.into_iter().flatten())
            .collect(),
        backward: part(s.dweight, g.oc * g.k())
            .into_iter()
            .chain(part(s.dinp, g.n * g.ic * g.h * g.w).filter(|_| dinp))
            .chain(dinp_copies.into_iter().flatten())
            .chain(winograd_backward)
            .chain(dweight_copy)
            .collect(),
        kept: Vec::new(),
    }
}

/// How each product's reduction is split across invocations on an adapter: (splits, chunk) for the
/// forward (over IC), the weight gradient (over N·OH·OW pixels) and the input gradient (over OC).
/// On GPUs with more cores than a small layer has tiles the reductions are split and the
/// partial results summed after (sum_splits); on CPU adapters never.
struct Splits {
    forward: (usize, usize),
    dweight: (usize, usize),
    dinp: (usize, usize),
}

impl Splits {
    fn new(gpu: &Gpu, g: &Geometry) -> Splits {
        // Chunks of whole runs of `run` channels.
        let over = |invocations: usize, len: usize, out: usize, run: usize| {
            let splits = sum_splits::choose(gpu, invocations, len, out);
            let chunk = len.div_ceil(splits).next_multiple_of(run);
            (len.div_ceil(chunk), chunk)
        };
        // The cooperative-matrix kernels read the channels they reduce over in runs (channels last).
        let run = if kernels(gpu) == ConvKernels::CooperativeMatrix { cast_f16::CHANNEL_RUN } else { 1 };
        // The padded and Winograd products split no reduction.
        let forward = if padded_forward(gpu, g).is_some() || winograd_gpu::forward(gpu, g).is_some() {
            (1, g.ic)
        } else {
            over(Product::forward(gpu, g).invocations, g.ic, g.n * g.oc * g.oh * g.ow, run)
        };
        let dinp = if padded_input_gradient(gpu, g).is_some() || winograd_gpu::input_gradient(gpu, g).is_some() {
            (1, g.oc)
        } else {
            over(Product::dinp(gpu, g).invocations, g.oc, g.n * g.ic * g.h * g.w, run)
        };
        Splits {
            forward,
            dweight: match padded_weight_gradient(gpu, g) {
                Some(f) => (f.splits, f.chunk),
                // The Winograd weight gradient splits its own (winograd_gpu::WeightGradient).
                None if winograd_gpu::weight_gradient(gpu, g).is_some() => (1, g.n * g.oh * g.ow),
                None => weight_splits(gpu, g),
            },
            dinp,
        }
    }
}

/// The padded cooperative-matrix products run where the channels they reduce over and a kernel
/// row's reduction rows (KW · IC; KW · OC for the input gradient) are multiples of these (CHANNELS
/// and ROWS in the shader): its tile loads need 16-byte aligned pointers and strides, and a kernel
/// row of whole tiles reads no pixel past its window (which would meet the zero weights of a
/// padded row: NaN where it holds an infinity).
const PADDED_CHANNELS: usize = 8;
const PADDED_ROWS: usize = 16;
/// Its subgroups' tiles, channels by columns (MT and NT in the shader), and the weight copy's rows
/// are padded to whole blocks of MT tiles of the largest T (16).
const PADDED_TILES: (usize, usize) = (2, 4);
const PADDED_WEIGHT_ROWS: usize = 32;

/// A convolution with unit strides and dilations on cooperative matrices, from copies laid out so
/// that every tile is one load from memory (conv2d_forward_cooperative_matrix_padded.wgsl): the
/// input channels last with its padding as zeros, the weight as rows of KW · IC reduction rows per
/// kernel row. It runs a layer's forward ([`padded_forward`]) and, as the convolution of the output
/// gradient with the flipped, transposed weight, its input gradient ([`padded_input_gradient`]).
struct PaddedProduct {
    /// The convolution it computes (the input gradient's, for that).
    g: Geometry,
    /// What its input and weight are, for its casts' labels (the input gradient's input is the
    /// output gradient).
    names: [&'static str; 2],
    shader: &'static str,
    input: cast_f16::Padded,
    weight: cast_f16::Padded,
    /// Its workgroups' invocations in all.
    invocations: usize,
}

/// The padded forward of `g` on `gpu`, where it runs instead of the staged one: with cooperative
/// matrices, unit strides and dilations, whole runs of 8 input channels and kernel rows of whole
/// tiles of 16 reduction rows ([`PADDED_CHANNELS`]: no RGB image's 3 channels padded to 8), where
/// at least two in three of the columns it computes are output pixels (it computes each image's
/// OH · (W + 2 PW) and drops the rest), and where its copies fit a binding.
fn padded_forward(gpu: &Gpu, g: &Geometry) -> Option<PaddedProduct> {
    let weight = [g.oc, g.ic, g.kh, g.kw];
    padded_product(gpu, g, (cast_f16::contiguous_strides(weight), 0, false))
        .map(|f| PaddedProduct { names: ["input", "weight"], ..f })
}

/// The padded input gradient of `g` on `gpu`, where it runs instead of the staged one: the
/// convolution of the output gradient (N, OC, OH, OW), padded by (KH - 1 - PH, KW - 1 - PW), with
/// w'(ic, oc, kh, kw) = w(oc, ic, KH - 1 - kh, KW - 1 - kw), where that convolution takes the
/// padded forward ([`padded_forward`]'s conditions, over OC channels) and the layer's padding is
/// less than its kernel.
fn padded_input_gradient(gpu: &Gpu, g: &Geometry) -> Option<PaddedProduct> {
    if g.ph >= g.kh || g.pw >= g.kw {
        return None;
    }
    let t = Geometry {
        ic: g.oc,
        h: g.oh,
        w: g.ow,
        oc: g.ic,
        oh: g.h,
        ow: g.w,
        ph: g.kh - 1 - g.ph,
        pw: g.kw - 1 - g.pw,
        ..*g
    };
    // The view (IC, OC, KH, KW), both kernel axes reversed, of the weight's f16 copy (OC, KH, KW,
    // IC') (channels last, as the staged kernels read it).
    let icp = cast_f16::padded_channels(g.ic) as isize;
    let (kh, kw) = (g.kh as isize, g.kw as isize);
    let strides = [1, kh * kw * icp, -kw * icp, -icp];
    padded_product(gpu, &t, (strides, ((kh - 1) * kw + kw - 1) as usize * icp as usize, true))
        .map(|f| PaddedProduct { names: ["dout", "weight"], ..f })
}

/// The padded product computing `g` (a forward convolution), its input the f32 tensor, its weight
/// the view at `weight`'s strides and origin of an f32 tensor or (with `weight.2`) an f16 copy,
/// where its conditions hold (see [`padded_forward`]).
fn padded_product(gpu: &Gpu, g: &Geometry, weight: ([isize; 4], usize, bool)) -> Option<PaddedProduct> {
    if kernels(gpu) != ConvKernels::CooperativeMatrix
        || (g.sh, g.sw, g.dh, g.dw) != (1, 1, 1, 1)
        || !g.ic.is_multiple_of(PADDED_CHANNELS)
        || !(g.kw * g.ic).is_multiple_of(PADDED_ROWS)
    {
        return None;
    }
    let tile = gpu.cooperative_tile()?;
    // lavapipe made to run 16 x 16 tiles (Gpu::force_cooperative_tile_16_on_lavapipe) splits them
    // into its 8 x 8 ones, and its split loads of B tiles from storage buffers read the wrong
    // elements (with the same addresses relayed through workgroup memory the kernel matches the
    // CPU path there); so it runs the staged kernels.
    if tile == 16 && gpu.info.name.starts_with("llvmpipe") {
        return None;
    }
    let shader = crate::shaders::cooperative_variant("conv2d_forward_cooperative_matrix_padded", tile, false)?;
    let workgroup = crate::shaders::get(shader).filter(|s| gpu.can_build(s))?.workgroup as usize;
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let t = tile as usize;
    let columns = g.oh * wp;
    if 3 * g.oh * g.ow < 2 * columns.next_multiple_of(t) {
        return None;
    }
    let j = g.kw * g.ic;
    let image = hp * wp * g.ic;
    // The last column tile's loads run past its image by up to T columns and a kernel row.
    let read = (g.n - 1) * image + (columns.next_multiple_of(t) - 1 + (g.kh - 1) * wp) * g.ic + j;
    let len = read.max(g.n * image).next_multiple_of(4);
    let input = cast_f16::Padded::of([g.n, g.ic, g.h, g.w], [g.n, hp], g.ic, wp * g.ic, [g.ph, g.pw], len);
    let ocp = g.oc.next_multiple_of(PADDED_WEIGHT_ROWS);
    let (strides, origin, from_f16) = weight;
    let weight = cast_f16::Padded {
        strides,
        origin,
        from_f16,
        ..cast_f16::Padded::of([g.oc, g.ic, g.kh, g.kw], [ocp, g.kh], g.ic, j, [0, 0], ocp * g.kh * j)
    };
    let fits =
        |l: &cast_f16::Padded| Layout::Padded(*l).words() <= gpu.max_binding_elems() && l.len < u32::MAX as usize;
    if !fits(&input) || !fits(&weight) {
        return None;
    }
    let (mt, nt) = PADDED_TILES;
    let groups = (g.n * columns.div_ceil(t)).div_ceil(4 * nt);
    let invocations = g.oc.div_ceil(mt * t) * groups * workgroup;
    Some(PaddedProduct { g: *g, names: ["input", "weight"], shader, input, weight, invocations })
}

impl PaddedProduct {
    /// The words of its copies, in the order [`PaddedProduct::gpu`] takes them.
    fn scratch(&self) -> [u64; 2] {
        [self.input, self.weight].map(|l| Layout::Padded(l).words())
    }
    /// Casts `input` and `weight` (f32 tensors, or an f16 copy where the layout says) into their
    /// copies (`copies`), the input scaled by the largest magnitude `top` where given, and runs the
    /// kernel into `out` (plus `bias`).
    #[allow(clippy::too_many_arguments)]
    fn gpu(
        &self,
        gpu: &Gpu,
        label: &str,
        [input, weight]: [&View; 2],
        top: Option<&View>,
        bias: Option<&View>,
        out: &View,
        copies: &[&View],
    ) -> Result<Program> {
        let &[x16, w16] = copies else {
            return Err(Error::op(label, format!("the padded product given {} scratch tensors, not 2", copies.len())));
        };
        let mut prog = Program::default();
        let [input_name, weight_name] = self.names;
        prog.push(cast_f16::padded(gpu, &format!("{label}.{input_name}.padded.f16"), input, self.input, x16, top)?);
        prog.push(cast_f16::padded(gpu, &format!("{label}.{weight_name}.padded.f16"), weight, self.weight, w16, None)?);
        let prod = Product { shader: self.shader, invocations: self.invocations, stride: 0 };
        let scale_at = if top.is_some() { self.input.len as u32 } else { cast_f16::UNSCALED };
        let p = params(&self.g, &prod, bias.is_some(), 1, self.g.ic, Operands::F16 { scale_at });
        let views = [x16, w16, bias.unwrap_or(w16), out];
        let groups = Dispatch::Invocations(self.invocations as u64);
        prog.push(Kernel::new(gpu, self.shader, label, &p, &views, groups)?.flops(2 * self.g.macs() as u64));
        Ok(prog)
    }
}

/// The weight gradient of a layer whose forward is padded ([`padded_forward`]), on cooperative
/// matrices straight from padded copies (conv2d_backward_weight_cooperative_matrix_padded.wgsl):
/// the forward's copy of the input, kept for it in place of the channels-last one (which nothing
/// else of such a layer reads), and the output gradient's, channels last with each image's rows
/// laid over the forward's virtual columns, zero where the forward drops them. Its reduction over
/// the images is split in chunks where the GPU wants more invocations.
struct PaddedWeightGradient {
    g: Geometry,
    shader: &'static str,
    /// The kept input copy's layout (the forward's).
    input: cast_f16::Padded,
    dout: cast_f16::Padded,
    /// Splits of the images and images per split.
    splits: usize,
    chunk: usize,
    /// Its workgroups' invocations per split.
    invocations: usize,
}

/// The padded weight gradient of `g` on `gpu`, where it runs instead of the staged one: where
/// the forward is padded and the output channels are whole runs of 8 too.
fn padded_weight_gradient(gpu: &Gpu, g: &Geometry) -> Option<PaddedWeightGradient> {
    let f = padded_forward(gpu, g)?;
    if !g.oc.is_multiple_of(PADDED_CHANNELS) {
        return None;
    }
    let tile = gpu.cooperative_tile()? as usize;
    let shader =
        crate::shaders::cooperative_variant("conv2d_backward_weight_cooperative_matrix_padded", tile as u32, false)?;
    let workgroup = crate::shaders::get(shader).filter(|s| gpu.can_build(s))?.workgroup as usize;
    let wp = g.w + 2 * g.pw;
    let rows = (g.oh * wp).next_multiple_of(PADDED_ROWS).div_ceil(wp);
    // A block of channels past OC reads up to MT T - 1 halves past the last pixel.
    let len = g.n * rows * wp * g.oc + PADDED_WEIGHT_ROWS;
    let dout = cast_f16::Padded::of([g.n, g.oc, g.oh, g.ow], [g.n, rows], g.oc, wp * g.oc, [0, 0], len);
    if Layout::Padded(dout).words() > gpu.max_binding_elems() || dout.len >= u32::MAX as usize {
        return None;
    }
    let (mt, nt) = PADDED_TILES;
    let k = g.k();
    let invocations = g.oc.div_ceil(mt * tile) * (k / tile).div_ceil(4 * nt) * workgroup;
    let chunk = g.n.div_ceil(sum_splits::choose(gpu, invocations, g.n, g.oc * k));
    Some(PaddedWeightGradient { g: *g, shader, input: f.input, dout, splits: g.n.div_ceil(chunk), chunk, invocations })
}

impl PaddedWeightGradient {
    /// The words of its copy of the output gradient (its one scratch tensor).
    fn scratch(&self) -> u64 {
        Layout::Padded(self.dout).words()
    }
    /// Casts the f32 output gradient `dout` (scaled by its largest magnitude `top` where given)
    /// into its copy (`copies`, one) and runs the kernel on it and the kept input copy `x` into
    /// `dweight`, through `part` (splits × the weight's words) where split.
    #[allow(clippy::too_many_arguments)]
    fn gpu(
        &self,
        gpu: &Gpu,
        label: &str,
        [x, dout]: [&View; 2],
        top: Option<&View>,
        dweight: &View,
        part: Option<&View>,
        copies: &[&View],
    ) -> Result<Program> {
        let &[d] = copies else {
            return Err(Error::op(
                label,
                format!("the padded weight gradient given {} scratch tensors, not 1", copies.len()),
            ));
        };
        if x.len < Layout::Padded(self.input).words() {
            return Err(Error::op(label, format!("the padded weight gradient given a kept input of {} words", x.len)));
        }
        let mut prog = Program::default();
        prog.push(cast_f16::padded(gpu, &format!("{label}.dout.padded.f16"), dout, self.dout, d, top)?);
        let prod = Product { shader: self.shader, invocations: self.invocations, stride: 0 };
        let scale_at = if top.is_some() { self.dout.len as u32 } else { cast_f16::UNSCALED };
        let p = params(&self.g, &prod, false, self.splits, self.chunk, Operands::F16 { scale_at });
        let flops = 2 * self.g.macs() as u64;
        prog.extend(split_product(
            gpu,
            label,
            self.shader,
            &p,
            &[x, d],
            dweight,
            part,
            self.splits,
            self.invocations,
            flops,
        )?);
        Ok(prog)
    }
}

/// A split product's kernel followed by the sum of its splits into `out` (the kernel alone,
/// writing `out`, when unsplit); `part` is the planner's scratch of splits × out words.
#[allow(clippy::too_many_arguments)]
fn split_product(
    gpu: &Gpu,
    label: &str,
    shader: &'static str,
    p: &Params,
    inputs: &[&View],
    out: &View,
    part: Option<&View>,
    splits: usize,
    invocations: usize,
    flops: u64,
) -> Result<Program> {
    let mut prog = Program::default();
    let groups = Dispatch::Invocations((invocations * splits) as u64);
    let mut views = inputs.to_vec();
    if splits == 1 {
        views.push(out);
        prog.push(Kernel::new(gpu, shader, label, p, &views, groups)?.flops(flops));
        return Ok(prog);
    }
    let part =
        part.ok_or_else(|| Error::op(label, format!("{shader} is split {splits} ways but was given no scratch")))?;
    views.push(part);
    prog.push(Kernel::new(gpu, shader, label, p, &views, groups)?.flops(flops));
    prog.push(sum_splits::gpu(gpu, label, part, out, splits)?);
    Ok(prog)
}

/// out = conv(inp, weight) + bias, overwritten; `scratch` as [`Node::gpu_scratch`] asked (less
/// the f16 copies); `inp` and `weight` are f32 or f16 copies as `ops` says.
#[allow(clippy::too_many_arguments)]
pub fn forward_gpu(
    gpu: &Gpu,
    label: &str,
    g: &Geometry,
    out: &View,
    inp: &View,
    weight: &View,
    bias: Option<&View>,
    scratch: &[&View],
    ops: Operands,
) -> Result<Program> {
    if let Some(w) = winograd_gpu::forward(gpu, g) {
        return w.gpu(gpu, label, inp, weight, bias, out, scratch);
    }
    let prod = Product::forward(gpu, g);
    let (splits, chunk) = Splits::new(gpu, g).forward;
    let p = params(g, &prod, bias.is_some(), splits, chunk, ops);
    let shader = ops.shader(label, prod.shader)?;
    let inputs = [inp, weight, bias.unwrap_or(weight)];
    let part = scratch.first().copied();
    split_product(gpu, label, shader, &p, &inputs, out, part, splits, prod.invocations, 2 * g.macs() as u64)
}

/// The fewest output pixels a split of the weight gradient sums.
const WEIGHT_SPLIT_PIXELS: usize = 256;

/// How the weight gradient's reduction over the N·OH·OW output pixels is split: enough
/// invocations to fill a GPU (32,768 register-blocked ones, 2,048 on CPU adapters; 1,024 tiled or
/// cooperative-matrix workgroups), at least WEIGHT_SPLIT_PIXELS pixels per split, the partials
/// within one binding.
pub fn weight_splits(gpu: &Gpu, g: &Geometry) -> (usize, usize) {
    let pixels = g.n * g.oh * g.ow;
    let kernels = kernels(gpu);
    let target = match kernels {
        // CPU adapters, which split no other reduction, need workgroups only for their threads, and
        // each split is another copy of the gradient to write and sum (history 65).
        ConvKernels::RegisterBlocked | ConvKernels::Subgroups | ConvKernels::Winograd if gpu.split_target() == 0 => {
            2_048
        }
        ConvKernels::RegisterBlocked | ConvKernels::Subgroups | ConvKernels::Winograd => 32_768,
        ConvKernels::Tiled => 1_024 * TILED_WG,
        ConvKernels::CooperativeMatrix => {
            1_024 * cooperative_shader(gpu, "conv2d_backward_weight_cooperative_matrix", g.oc).workgroup
        }
    };
    let invocations = Product::dweight(gpu, g).invocations;
    let max_by_memory = (gpu.max_binding_elems() as usize / (g.oc * g.k())).max(1);
    let splits = target.div_ceil(invocations).min(pixels.div_ceil(WEIGHT_SPLIT_PIXELS)).min(max_by_memory).max(1);
    let chunk = pixels.div_ceil(splits);
    (pixels.div_ceil(chunk), chunk)
}

/// Where a backward writes: dinp (if asked), dweight and dbias (if the layer has one), overwritten.
pub struct GpuGrads<'a> {
    pub dinp: Option<&'a View>,
    pub dweight: &'a View,
    pub dbias: Option<&'a View>,
}

/// The backward's kernels; `scratch` as [`Node::gpu_scratch`] asked (less the f16 copies). The
/// bias gradient reads `dout`; the two products read `dout_op`, `inp` and `weight`, f32 tensors or
/// f16 copies as `ops` says, or where they run padded (`padded_weight_gradient`,
/// `padded_input_gradient`) `dout`, cast into their own layouts scaled by its largest magnitude
/// `top` (as its copy `dout_op` is, which they need not: then None), and the kept copies `inp`
/// (the padded weight gradient's own) and `weight` (cast again for the input gradient).
#[allow(clippy::too_many_arguments)]
pub fn backward_gpu(
    gpu: &Gpu,
    label: &str,
    g: &Geometry,
    grads: GpuGrads<'_>,
    dout: &View,
    dout_op: Option<&View>,
    inp: &View,
    weight: &View,
    top: Option<&View>,
    scratch: &[&View],
    ops: Operands,
) -> Result<Program> {
    let mut prog = Program::default();
    let mut scratch = scratch.iter().copied();
    let s = Splits::new(gpu, g);
    if let Some(dbias) = grads.dbias {
        let part = if bias::splits(gpu, g.n, g.oc).0 > 1 { scratch.next() } else { None };
        prog.extend(bias::backward_gpu(gpu, label, dout, dbias, part, (g.n, g.oc, g.oh * g.ow))?);
    }
    // The scratch in product_scratch's order: the products' partial sums, then the padded ones'
    // copies.
    let (splits, chunk) = s.dweight;
    let dweight_part = if splits > 1 { scratch.next() } else { None };
    let dinp_part = if grads.dinp.is_some() && s.dinp.0 > 1 { scratch.next() } else { None };
    let padded_dinp = grads.dinp.and_then(|_| padded_input_gradient(gpu, g));
    let dinp_copies: Vec<&View> = scratch.by_ref().take(if padded_dinp.is_some() { 2 } else { 0 }).collect();
    let winograd_dinp = grads.dinp.and_then(|_| winograd_gpu::input_gradient(gpu, g));
    let winograd_dweight = winograd_gpu::weight_gradient(gpu, g);
    let winograd_words = winograd_gpu::backward_scratch(winograd_dweight.as_ref(), winograd_dinp.as_ref());
    let winograd_scratch: Vec<&View> = scratch.by_ref().take(winograd_words.len()).collect();
    let (winograd_dweight_scratch, winograd_dinp_scratch) =
        winograd_gpu::backward_views(winograd_dweight.as_ref(), winograd_dinp.as_ref(), &winograd_scratch);
    let dweight_copies: Vec<&View> = scratch.collect();
    let dweight_label = format!("{label}.dweight");
    let dout_op = || dout_op.ok_or_else(|| Error::op(label, "a staged gradient given no copy of the output gradient"));
    match (padded_weight_gradient(gpu, g), winograd_dweight) {
        (Some(f), _) => {
            prog.extend(f.gpu(gpu, &dweight_label, [inp, dout], top, grads.dweight, dweight_part, &dweight_copies)?)
        }
        (None, Some(w)) => {
            prog.extend(w.gpu(gpu, &dweight_label, inp, dout, grads.dweight, &winograd_dweight_scratch)?)
        }
        (None, None) => {
            let prod = Product::dweight(gpu, g);
            let p = params(g, &prod, false, splits, chunk, ops);
            prog.extend(split_product(
                gpu,
                &dweight_label,
                ops.shader(&dweight_label, prod.shader)?,
                &p,
                &[inp, dout_op()?],
                grads.dweight,
                dweight_part,
                splits,
                prod.invocations,
                2 * g.macs() as u64,
            )?);
        }
    }
    if let Some(dinp) = grads.dinp {
        let dinp_label = format!("{label}.dinp");
        match (padded_dinp, winograd_dinp) {
            (Some(f), _) => prog.extend(f.gpu(gpu, &dinp_label, [dout, weight], top, None, dinp, &dinp_copies)?),
            (None, Some(w)) => {
                prog.extend(w.gpu(gpu, &dinp_label, dout, weight, None, dinp, &winograd_dinp_scratch)?)
            }
            (None, None) => {
                let prod = Product::dinp(gpu, g);
                let (splits, chunk) = s.dinp;
                let p = params(g, &prod, false, splits, chunk, ops);
                prog.extend(split_product(
                    gpu,
                    &dinp_label,
                    ops.shader(&dinp_label, prod.shader)?,
                    &p,
                    &[weight, dout_op()?],
                    dinp,
                    dinp_part,
                    splits,
                    prod.invocations,
                    2 * g.macs() as u64,
                )?);
            }
        }
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The register-blocked product `g`'s forward or weight gradient would take on an adapter with
    /// split target `target`: wide or not (the rule of [`Product::new`] without a device).
    fn takes_wide(g: &Geometry, weight_gradient: bool, target: usize) -> bool {
        let pixels = g.n * g.oh * g.ow;
        let blocks = if weight_gradient {
            g.k().div_ceil(WEIGHT_TILE_K) * pixels.div_ceil(WEIGHT_SPLIT_PIXELS)
        } else {
            pixels.div_ceil(TILE_PIXELS)
        };
        wide(g.oc, blocks, target)
    }

    /// The H200's choices of history 40: 16 channels where they were faster, 8 where 16 were slower.
    #[test]
    fn wide_kernels_run_where_they_were_measured_faster() {
        let geometry = |c: Conv2d, shape: [usize; 4]| c.geometry(&shape).unwrap();
        let tudui_conv2 = |n| geometry(Conv2d::new(32, 32, 5).padding(2), [n, 32, 16, 16]);
        let tudui_conv3 = geometry(Conv2d::new(32, 64, 5).padding(2), [1024, 32, 8, 8]);
        let resnet_layer1 = |n| geometry(Conv2d::new(16, 16, 3).padding(1), [n, 16, 32, 32]);
        let cifar_conv1 = geometry(Conv2d::new(3, 6, 5), [1024, 3, 32, 32]);
        let cifar_conv2 = geometry(Conv2d::new(6, 16, 5), [1024, 6, 14, 14]);
        let gpu = 65_536;
        for weight_gradient in [false, true] {
            assert!(takes_wide(&tudui_conv2(1024), weight_gradient, gpu));
            assert!(takes_wide(&resnet_layer1(1024), weight_gradient, gpu));
            // 32,768 forward invocations: half the split target.
            assert!(takes_wide(&tudui_conv3, weight_gradient, gpu));
            assert!(!takes_wide(&tudui_conv2(64), weight_gradient, gpu));
            assert!(!takes_wide(&resnet_layer1(64), weight_gradient, gpu));
            assert!(!takes_wide(&cifar_conv1, weight_gradient, gpu));
            assert!(!takes_wide(&cifar_conv2, weight_gradient, gpu));
            // CPU adapters (no split target) take them wherever the channels are whole tiles.
            assert!(takes_wide(&tudui_conv2(1), weight_gradient, 0));
            assert!(!takes_wide(&cifar_conv1, weight_gradient, 0));
        }
    }
}
