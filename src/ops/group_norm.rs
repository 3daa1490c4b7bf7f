//! GroupNorm (nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True, *, bias=True)): each
//! image's channels in `num_groups` groups of C / G, each group normalised over its C/G · H·W
//! values (biased variance), then a per-channel affine map. No running statistics: train and eval
//! mode compute the same. Takes (N, C, *) inputs, as PyTorch's does. A group of an (N, C, H, W)
//! tensor is one contiguous run of C/G · H·W values, which the CPU path reduces in f64 (two passes)
//! and the GPU in one workgroup per (image, group). Shaders: group_norm_forward_stats, _forward,
//! _backward_stats, _backward_input, _backward_params.
//!
//! LayerNorm (nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)) runs
//! on the same kernels: each of its rows (the last dimensions, `normalized_shape`) is one group of
//! GroupNorm(1, M) on an (R, M, 1) view of the input, M the row's length, whose per-channel affine
//! map is LayerNorm's element-wise one. InstanceNorm1d, 2d and 3d (without running statistics)
//! are GroupNorm(C, C): one channel a group.

use super::interface::{CpuBackward, CpuForward, Flops, GpuIo, Init, Mode, Node, Op, ParamDecl, Reads, Scratch};
use super::ParamsLayout;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};
use rayon::prelude::*;

pub const OP: &str = "GroupNorm";

crate::shaders!(
    group_norm_forward_stats: 256,
    group_norm_forward: 256,
    group_norm_backward_stats: 256,
    group_norm_backward_input: 256,
    group_norm_backward_params: 256,
);

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    pub num_groups: usize,
    pub num_channels: usize,
    pub eps: f32,
    /// Per-channel affine parameters: `weight`, and `bias` unless [`GroupNorm::bias`] is false.
    pub affine: bool,
    pub bias: bool,
}

impl GroupNorm {
    /// GroupNorm(num_groups, num_channels) with PyTorch's defaults.
    pub fn new(num_groups: usize, num_channels: usize) -> Self {
        GroupNorm { num_groups, num_channels, eps: 1e-5, affine: true, bias: true }
    }
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }
    /// Whether the affine map has an additive bias (PyTorch's keyword-only `bias`; only with
    /// `affine`).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// Whether the layer has a `bias` entry.
    fn has_bias(&self) -> bool {
        self.affine && self.bias
    }
}

impl Op for GroupNorm {
    fn describe(&self) -> String {
        let py = super::py_bool;
        format!(
            "{OP}({}, {}, eps={}, affine={}, bias={})",
            self.num_groups,
            self.num_channels,
            super::py_float(self.eps),
            py(self.affine),
            py(self.has_bias())
        )
    }
    fn params(&self) -> Vec<ParamDecl> {
        let mut v = Vec::new();
        if self.affine {
            v.push(ParamDecl::param("weight", vec![self.num_channels], Init::Const(1.0)));
        }
        if self.has_bias() {
            v.push(ParamDecl::param("bias", vec![self.num_channels], Init::Const(0.0)));
        }
        v
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        let (input, op) = (inputs[0], self.describe());
        ensure_op!(self.num_groups > 0, op, "num_groups must be positive");
        ensure_op!(
            self.num_channels.is_multiple_of(self.num_groups),
            op,
            "num_channels ({}) must be divisible by num_groups ({})",
            self.num_channels,
            self.num_groups
        );
        ensure_op!(self.eps > 0.0 && self.eps.is_finite(), op, "eps must be positive");
        ensure_op!(input.len() >= 2, op, "expected an (N, C, *) input, got shape {input:?}");
        ensure_op!(
            input[1] == self.num_channels,
            op,
            "input {input:?} has {} channels, the layer {}",
            input[1],
            self.num_channels
        );
        ensure_op!(input.iter().all(|&d| d > 0), op, "empty input of shape {input:?}");
        Ok(Box::new(Geometry {
            shape: input.to_vec(),
            n: input[0],
            c: input[1],
            groups: self.num_groups,
            hw: input[2..].iter().product(),
            eps: self.eps,
            affine: self.affine,
            bias: self.has_bias(),
        }))
    }
}

/// nn.LayerNorm: normalises each input over its last dimensions, `normalized_shape` (biased
/// variance), then scales and shifts each of those elements by its own weight and bias (of shape
/// `normalized_shape`). Runs GroupNorm's kernels (see the module's documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub normalized_shape: Vec<usize>,
    pub eps: f32,
    /// Element-wise weight, and bias unless [`LayerNorm::bias`] is false.
    pub elementwise_affine: bool,
    pub bias: bool,
}

impl LayerNorm {
    /// LayerNorm(normalized_shape) with PyTorch's defaults (`LayerNorm::new([64])` for
    /// `nn.LayerNorm(64)`).
    pub fn new(normalized_shape: impl Into<Vec<usize>>) -> Self {
        LayerNorm { normalized_shape: normalized_shape.into(), eps: 1e-5, elementwise_affine: true, bias: true }
    }
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    pub fn elementwise_affine(mut self, affine: bool) -> Self {
        self.elementwise_affine = affine;
        self
    }
    /// Whether the affine map has an additive bias (only with `elementwise_affine`).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

impl Op for LayerNorm {
    fn describe(&self) -> String {
        let py = super::py_bool;
        let shape = match &self.normalized_shape[..] {
            [d] => format!("({d},)"),
            s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        };
        format!(
            "LayerNorm({shape}, eps={}, elementwise_affine={}, bias={})",
            super::py_float(self.eps),
            py(self.elementwise_affine),
            py(self.elementwise_affine && self.bias)
        )
    }
    fn params(&self) -> Vec<ParamDecl> {
        let mut v = Vec::new();
        if self.elementwise_affine {
            v.push(ParamDecl::param("weight", self.normalized_shape.clone(), Init::Const(1.0)));
            if self.bias {
                v.push(ParamDecl::param("bias", self.normalized_shape.clone(), Init::Const(0.0)));
            }
        }
        v
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        let (input, op, shape) = (inputs[0], self.describe(), &self.normalized_shape);
        ensure_op!(
            !shape.is_empty() && shape.iter().all(|&d| d > 0),
            op,
            "normalized_shape must be non-empty and positive"
        );
        ensure_op!(self.eps > 0.0 && self.eps.is_finite(), op, "eps must be positive");
        ensure_op!(
            input.len() > shape.len() && input.ends_with(shape),
            op,
            "Given normalized_shape={shape:?}, expected input with shape [*, {}] (and a batch dimension), but got \
             input of size {input:?}",
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        );
        ensure_op!(input.iter().all(|&d| d > 0), op, "empty input of shape {input:?}");
        let m: usize = shape.iter().product();
        Ok(Box::new(Geometry {
            shape: input.to_vec(),
            n: input.iter().product::<usize>() / m,
            c: m,
            groups: 1,
            hw: 1,
            eps: self.eps,
            affine: self.elementwise_affine,
            bias: self.elementwise_affine && self.bias,
        }))
    }
}

/// nn.InstanceNorm1d, 2d and 3d(num_features, eps=1e-5, affine=False, *, bias=True) without
/// running statistics (`track_running_stats=False`, PyTorch's default; `momentum` only matters
/// with them): each channel of each sample normalised over its `D` spatial dimensions (L; H, W;
/// D, H, W). GroupNorm(C, C)'s kernels. Use it by its PyTorch names, [`InstanceNorm1d`],
/// [`InstanceNorm2d`] and [`InstanceNorm3d`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceNorm<const D: usize> {
    pub num_features: usize,
    pub eps: f32,
    pub affine: bool,
    pub bias: bool,
}

/// nn.InstanceNorm1d: (N, C, L) inputs ([`InstanceNorm`]).
pub type InstanceNorm1d = InstanceNorm<1>;
/// nn.InstanceNorm2d: (N, C, H, W) inputs ([`InstanceNorm`]).
pub type InstanceNorm2d = InstanceNorm<2>;
/// nn.InstanceNorm3d: (N, C, D, H, W) inputs ([`InstanceNorm`]).
pub type InstanceNorm3d = InstanceNorm<3>;

impl<const D: usize> InstanceNorm<D> {
    /// InstanceNorm{D}d(num_features) with PyTorch's defaults (no affine parameters).
    pub fn new(num_features: usize) -> Self {
        InstanceNorm { num_features, eps: 1e-5, affine: false, bias: true }
    }
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }
    /// Whether the affine map has an additive bias (only with `affine`).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    fn as_group_norm(&self) -> GroupNorm {
        GroupNorm {
            num_groups: self.num_features,
            num_channels: self.num_features,
            eps: self.eps,
            affine: self.affine,
            bias: self.bias,
        }
    }
}

impl<const D: usize> Op for InstanceNorm<D> {
    fn describe(&self) -> String {
        let py = super::py_bool;
        format!(
            "InstanceNorm{D}d({}, eps={}, momentum=0.1, affine={}, bias={}, track_running_stats=False)",
            self.num_features,
            super::py_float(self.eps),
            py(self.affine),
            py(self.affine && self.bias)
        )
    }
    fn params(&self) -> Vec<ParamDecl> {
        self.as_group_norm().params()
    }
    fn plan(&self, inputs: &[&[usize]], mode: Mode) -> Result<Box<dyn Node>> {
        let (input, op) = (inputs[0], self.describe());
        let layout = ["(N, C, L)", "(N, C, H, W)", "(N, C, D, H, W)"][D - 1];
        ensure_op!(input.len() == D + 2, op, "expected an {layout} input, got shape {input:?}");
        ensure_op!(
            mode == Mode::Eval || input[2..].iter().product::<usize>() > 1,
            op,
            "Expected more than 1 spatial element when training, got input size {input:?}"
        );
        ensure_op!(input.iter().all(|&d| d > 0), op, "empty input of shape {input:?}");
        ensure_op!(self.eps > 0.0 && self.eps.is_finite(), op, "eps must be positive");
        ensure_op!(
            !self.affine || input[1] == self.num_features,
            op,
            "input {input:?} has {} channels, the layer {}",
            input[1],
            self.num_features
        );
        // As PyTorch, the input's channels when there are no affine parameters to match.
        let c = input[1];
        GroupNorm { num_groups: c, num_channels: c, ..self.as_group_norm() }.plan(inputs, mode)
    }
}

/// A GroupNorm (or LayerNorm, InstanceNorm) at fixed shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Geometry {
    /// The input's shape, (N, C, *).
    pub shape: Vec<usize>,
    pub n: usize,
    pub c: usize,
    pub groups: usize,
    /// Values per channel of an image: the product of the dimensions after C (1 for (N, C)).
    pub hw: usize,
    pub eps: f32,
    /// A weight, and a bias where `bias`.
    pub affine: bool,
    pub bias: bool,
}

impl Geometry {
    /// Values in a group: C/G · HW.
    pub fn group_len(&self) -> usize {
        self.c / self.groups * self.hw
    }
}

impl Node for Geometry {
    fn out_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn flops(&self) -> Flops {
        let e = (self.n * self.c * self.hw) as u64;
        Flops { forward: 5 * e, backward_input: 6 * e, backward_params: if self.affine { 3 * e } else { 0 } }
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: true, output: false }
    }
    /// Each group's mean and 1/sqrt(var + eps).
    fn saved(&self) -> Vec<u64> {
        let ng = (self.n * self.groups) as u64;
        vec![ng, ng]
    }
    /// The backward's per-group sums Σ dy·w and Σ dy·w·xhat, and where a layer without a bias
    /// has its parameter kernel put the sums of dy.
    fn gpu_scratch(&self, _gpu: &Gpu, _dinputs: &[bool]) -> Scratch {
        let mut backward = vec![2 * (self.n * self.groups) as u64];
        if self.affine && !self.bias {
            backward.push(self.c as u64);
        }
        Scratch { forward: Vec::new(), backward, kept: Vec::new() }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        let mut saved = io.saved.into_iter();
        let (mean, rstd) = (saved.next().unwrap(), saved.next().unwrap());
        let w = self.affine.then(|| &*io.state[0]);
        let b = self.bias.then(|| &*io.state[1]);
        forward_cpu(self, io.out, mean, rstd, io.inputs[0], w, b);
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        let mut dparams = io.dparams.into_iter();
        let (dw, db) = (dparams.next(), dparams.next());
        let dinp = io.dinputs.into_iter().next().flatten();
        let w = self.affine.then(|| io.state[0]);
        backward_cpu(self, dinp, dw, db, io.dout, io.inputs[0], io.saved[0], io.saved[1], w);
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let p = params(self);
        let (mean, rstd) = (io.saved[0], io.saved[1]);
        let label = io.label;
        let mut prog = Program::default();
        let groups = Dispatch::Workgroups((self.n * self.groups) as u64);
        let views = [io.inputs[0], mean, rstd];
        prog.push(Kernel::new(gpu, "group_norm_forward_stats", &format!("{label}.stats"), &p, &views, groups)?);
        // Without affine parameters the kernel is bound to the statistics in their place, unread.
        let w = if self.affine { io.state[0] } else { mean };
        let b = if self.bias { io.state[1] } else { rstd };
        let views = [io.inputs[0], mean, rstd, w, b, io.out];
        let k = Kernel::new(gpu, "group_norm_forward", label, &p, &views, Dispatch::Invocations(io.out.len))?;
        prog.push(k.flops(self.flops().forward));
        Ok(prog)
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let p = params(self);
        let (mean, rstd, sums) = (io.saved[0], io.saved[1], io.scratch[0]);
        let (label, dout) = (io.label, io.dout.unwrap());
        let w = if self.affine { io.state[0] } else { mean };
        let mut prog = Program::default();
        if let Some(dinp) = io.dinput(0) {
            let views = [io.inputs[0], dout, mean, rstd, w, sums];
            let groups = Dispatch::Workgroups((self.n * self.groups) as u64);
            prog.push(Kernel::new(gpu, "group_norm_backward_stats", &format!("{label}.dstats"), &p, &views, groups)?);
            let views = [io.inputs[0], dout, mean, rstd, w, sums, dinp];
            let k = Kernel::new(
                gpu,
                "group_norm_backward_input",
                &format!("{label}.dinp"),
                &p,
                &views,
                Dispatch::Invocations(dinp.len),
            )?;
            prog.push(k.flops(self.flops().backward_input));
        }
        if self.affine {
            let db = if self.bias { io.dparams[1] } else { io.scratch[1] };
            let views = [io.inputs[0], dout, mean, rstd, io.dparams[0], db];
            let groups = Dispatch::Workgroups(self.c as u64);
            let k = Kernel::new(gpu, "group_norm_backward_params", &format!("{label}.dparams"), &p, &views, groups)?;
            prog.push(k.flops(self.flops().backward_params));
        }
        Ok(prog)
    }
}

/// out (N, C, *), overwritten, and each group's mean and 1/sqrt(var + eps) (N·G each), from two
/// passes over the group in f64.
pub fn forward_cpu<T: Real>(
    g: &Geometry,
    out: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    inp: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) {
    let len = g.group_len();
    let cpg = g.c / g.groups;
    out.par_chunks_mut(len).zip(mean.par_iter_mut().zip(rstd.par_iter_mut())).enumerate().for_each(
        |(ng, (o, (m, r)))| {
            let x = &inp[ng * len..][..len];
            let mu = crate::cpu::sum(x) / len as f64;
            let var = crate::cpu::sum_sq_dev(x, mu) / len as f64;
            let inv = 1.0 / (var + g.eps as f64).sqrt();
            (*m, *r) = (T::of(mu), T::of(inv));
            let (mu, inv) = (T::of(mu), T::of(inv));
            for (k, (o, x)) in o.chunks_mut(g.hw).zip(x.chunks(g.hw)).enumerate() {
                let c = (ng % g.groups) * cpg + k;
                let (w, b) = (weight.map_or(T::one(), |w| w[c]), bias.map_or(T::zero(), |b| b[c]));
                o.iter_mut().zip(x).for_each(|(o, &x)| *o = (x - mu) * inv * w + b);
            }
        },
    );
}

/// Gradients w.r.t. the input (when `dinp` is given), weight (when given) and bias (when given
/// with the weight's), overwritten, from the saved `mean` and `rstd`. With xhat = (x - mean)·rstd
/// and dxhat = dy·w, in each group of M values: dx = rstd · (dxhat - Σ dxhat / M - xhat ·
/// Σ dxhat·xhat / M); `dw[c]` = Σ dy·xhat and `db[c]` = Σ dy over the channel's values in every
/// image. Sums in f64.
#[allow(clippy::too_many_arguments)]
pub fn backward_cpu<T: Real>(
    g: &Geometry,
    dinp: Option<&mut [T]>,
    dweight: Option<&mut [T]>,
    dbias: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    mean: &[T],
    rstd: &[T],
    weight: Option<&[T]>,
) {
    let len = g.group_len();
    let cpg = g.c / g.groups;
    let w = |c: usize| weight.map_or(T::one(), |w| w[c]);
    if let Some(dinp) = dinp {
        dinp.par_chunks_mut(len).enumerate().for_each(|(ng, d)| {
            let (x, dy) = (&inp[ng * len..][..len], &dout[ng * len..][..len]);
            let (mu, inv) = (mean[ng], rstd[ng]);
            let channel = |k: usize| (ng % g.groups) * cpg + k / g.hw;
            let (mut s1, mut s2) = (0f64, 0f64);
            for (k, (&x, &dy)) in x.iter().zip(dy).enumerate() {
                let dxhat = (dy * w(channel(k))).f64();
                s1 += dxhat;
                s2 += dxhat * ((x - mu) * inv).f64();
            }
            let (m1, m2) = (T::of(s1 / len as f64), T::of(s2 / len as f64));
            for (k, ((d, &x), &dy)) in d.iter_mut().zip(x).zip(dy).enumerate() {
                let xhat = (x - mu) * inv;
                *d = inv * (dy * w(channel(k)) - m1 - xhat * m2);
            }
        });
    }
    let channel_sums = |c: usize| {
        let (mut sw, mut sb) = (0f64, 0f64);
        for n in 0..g.n {
            let ng = n * g.groups + c / cpg;
            let at = (n * g.c + c) * g.hw;
            for (&x, &dy) in inp[at..][..g.hw].iter().zip(&dout[at..][..g.hw]) {
                sw += (dy * (x - mean[ng]) * rstd[ng]).f64();
                sb += dy.f64();
            }
        }
        (T::of(sw), T::of(sb))
    };
    match (dweight, dbias) {
        (Some(dw), Some(db)) => dw.par_iter_mut().zip(db).enumerate().for_each(|(c, d)| (*d.0, *d.1) = channel_sums(c)),
        (Some(dw), None) => dw.par_iter_mut().enumerate().for_each(|(c, d)| *d = channel_sums(c).0),
        _ => {}
    }
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub N: u32,
    pub C: u32,
    pub G: u32,
    pub HW: u32,
    pub eps: f32,
    pub affine: u32,
    pub bias: u32,
    pub _pad1: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    SHADERS.iter().map(|s| crate::params_layout!(s.name, Params, [N, C, G, HW, eps, affine, bias, _pad1])).collect()
}

fn params(g: &Geometry) -> Params {
    let u = |v: usize| v as u32;
    Params {
        N: u(g.n),
        C: u(g.c),
        G: u(g.groups),
        HW: u(g.hw),
        eps: g.eps,
        affine: g.affine as u32,
        bias: g.bias as u32,
        _pad1: 0,
    }
}
