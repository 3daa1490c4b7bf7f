//! BatchNorm2d (nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
//! track_running_stats=True)). Train mode normalises with the batch's statistics over N·H·W (biased
//! variance) and updates running_mean / running_var (unbiased variance) and num_batches_tracked as
//! PyTorch does; eval mode uses the running statistics (or the batch's, without them). The backward
//! goes through the batch statistics. The GPU reduces each channel in chunks with Welford's update
//! and merges chunks with Chan's formula; the CPU path accumulates in f64: both stay accurate at
//! batch 1024. Shaders: batchnorm2d_forward_stats, _forward_finalize, _forward (the normalisation),
//! _backward_stats, _backward_finalize, _backward_input.

use super::interface::{
    CpuBackward, CpuForward, Flops, Fusible, GpuIo, Init, Mode, Node, Op, ParamDecl, Reads, Scratch,
};
use super::ParamsLayout;
use crate::cpu::{multiversion, par_planes, Real};
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Error, Result};
use rayon::prelude::*;

pub const OP: &str = "BatchNorm2d";

crate::shaders!(
    batchnorm2d_forward_stats: 256,
    batchnorm2d_forward_finalize: 64,
    batchnorm2d_forward: 256,
    batchnorm2d_backward_stats: 256,
    batchnorm2d_backward_finalize: 64,
    batchnorm2d_backward_input: 256,
);

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2d {
    pub num_features: usize,
    pub eps: f32,
    pub momentum: f32,
    pub affine: bool,
    pub track_running_stats: bool,
}

impl BatchNorm2d {
    /// BatchNorm2d(num_features) with PyTorch's defaults.
    pub fn new(num_features: usize) -> Self {
        BatchNorm2d { num_features, eps: 1e-5, momentum: 0.1, affine: true, track_running_stats: true }
    }
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }
    pub fn track_running_stats(mut self, track: bool) -> Self {
        self.track_running_stats = track;
        self
    }
}

impl Op for BatchNorm2d {
    fn describe(&self) -> String {
        let py = super::py_bool;
        format!(
            "{OP}({}, eps={}, momentum={}, affine={}, track_running_stats={})",
            self.num_features,
            super::py_float(self.eps),
            super::py_float(self.momentum),
            py(self.affine),
            py(self.track_running_stats)
        )
    }
    fn params(&self) -> Vec<ParamDecl> {
        let c = vec![self.num_features];
        let mut v = Vec::new();
        if self.affine {
            v.push(ParamDecl::param("weight", c.clone(), Init::Const(1.0)));
            v.push(ParamDecl::param("bias", c.clone(), Init::Const(0.0)));
        }
        if self.track_running_stats {
            v.push(ParamDecl::buffer("running_mean", c.clone(), Init::Const(0.0)));
            v.push(ParamDecl::buffer("running_var", c, Init::Const(1.0)));
            v.push(ParamDecl::counter("num_batches_tracked"));
        }
        v
    }
    fn plan(&self, inputs: &[&[usize]], mode: Mode) -> Result<Box<dyn Node>> {
        let (input, op) = (inputs[0], self.describe());
        ensure_op!(input.len() == 4, op, "expected an (N, C, H, W) input, got shape {input:?}");
        self.plan_as(&op, input, mode)
    }
}

impl BatchNorm2d {
    /// The layer on `input`, (N, C, H, W) or (BatchNorm1d's) (N, C) or (N, C, L), `op` naming it
    /// in errors: one kernel set for both, (N, C, L) taken as (N, C, L, 1).
    fn plan_as(&self, op: &str, input: &[usize], mode: Mode) -> Result<Box<dyn Node>> {
        let op = op.to_string();
        let (h, w) = (input.get(2).copied().unwrap_or(1), input.get(3).copied().unwrap_or(1));
        ensure_op!(
            input[1] == self.num_features,
            op,
            "input {input:?} has {} channels, the layer {}",
            input[1],
            self.num_features
        );
        ensure_op!(input.iter().all(|&d| d > 0), op, "empty input of shape {input:?}");
        ensure_op!(self.eps > 0.0 && self.eps.is_finite(), op, "eps must be positive");
        ensure_op!((0.0..=1.0).contains(&self.momentum), op, "momentum must be in [0, 1], got {}", self.momentum);
        let batch_stats = mode == Mode::Train || !self.track_running_stats;
        let m = input[0] * h * w;
        if batch_stats && m == 1 {
            return Err(Error::op(
                op,
                format!("Expected more than 1 value per channel when training, got input size {input:?}"),
            ));
        }
        Ok(Box::new(Geometry {
            rank: input.len(),
            n: input[0],
            c: input[1],
            hw: h * w,
            h,
            w,
            eps: self.eps,
            momentum: self.momentum,
            affine: self.affine,
            batch_stats,
            update_running: batch_stats && self.track_running_stats && mode == Mode::Train,
            running: self.track_running_stats,
        }))
    }
}

/// nn.BatchNorm1d: BatchNorm2d's normalisation over (N, C) (each feature over the batch) or
/// (N, C, L) inputs, with the same arguments, defaults and state-dict entries; it runs
/// BatchNorm2d's kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm1d(pub BatchNorm2d);

impl BatchNorm1d {
    /// BatchNorm1d(num_features) with PyTorch's defaults.
    pub fn new(num_features: usize) -> Self {
        BatchNorm1d(BatchNorm2d::new(num_features))
    }
    pub fn eps(self, eps: f32) -> Self {
        BatchNorm1d(self.0.eps(eps))
    }
    pub fn momentum(self, momentum: f32) -> Self {
        BatchNorm1d(self.0.momentum(momentum))
    }
    pub fn affine(self, affine: bool) -> Self {
        BatchNorm1d(self.0.affine(affine))
    }
    pub fn track_running_stats(self, track: bool) -> Self {
        BatchNorm1d(self.0.track_running_stats(track))
    }
}

impl Op for BatchNorm1d {
    fn describe(&self) -> String {
        self.0.describe().replacen(OP, "BatchNorm1d", 1)
    }
    fn params(&self) -> Vec<ParamDecl> {
        self.0.params()
    }
    fn plan(&self, inputs: &[&[usize]], mode: Mode) -> Result<Box<dyn Node>> {
        let input = inputs[0];
        let op = self.describe();
        ensure_op!(matches!(input.len(), 2 | 3), op, "expected an (N, C) or (N, C, L) input, got shape {input:?}");
        self.0.plan_as(&op, input, mode)
    }
}

/// A BatchNorm2d (or BatchNorm1d) at fixed shapes and mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// The input's rank: 4, or BatchNorm1d's 2 (N, C: h = w = 1) or 3 (N, C, L: h = L, w = 1).
    pub rank: usize,
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub h: usize,
    pub w: usize,
    pub eps: f32,
    pub momentum: f32,
    pub affine: bool,
    /// Normalise with the batch's statistics (train mode, or no running statistics).
    pub batch_stats: bool,
    /// Update the running statistics (train mode with running statistics).
    pub update_running: bool,
    /// The layer has running statistics.
    pub running: bool,
}

/// Values per thread and chunks per channel of the GPU's reductions over M = N·HW values. GPUs
/// that split reductions (`Gpu::split_target`) get up to 64 chunks of 256 invocations per
/// channel, as many workgroups as they can use. On CPU adapters (lavapipe, SwiftShader) a chunk
/// holds up to 256 × 64 values (16,384), one invocation each ([`per_channel`]), and where the
/// planes are runs of vec4s (the statistics' `_vec4` kernels, [`by_vec4`]) whole vec4s.
fn chunking(gpu: &Gpu, g: &Geometry) -> (usize, usize) {
    let m = g.n * g.hw;
    let lanes = if per_invocation(gpu, g.hw).is_multiple_of(4) { 4 } else { 1 };
    let per_thread = match gpu.split_target() {
        0 => m.div_ceil(256).clamp(1, 64).next_multiple_of(lanes),
        _ => m.div_ceil(256 * 64).max(1),
    };
    (per_thread, m.div_ceil(256 * per_thread))
}

/// Consecutive elements of one plane per invocation of the normalisation and the input gradient:
/// on CPU adapters the largest of 64, 16 and 4 that divides the planes (each run gathers its
/// channel's values and works out its channel once, where lavapipe runs every load and integer
/// division lane by lane: runs of 64 instead of 4 made ResNet-20's normalisations 37.5 → 20.3 ms and
/// their input gradients 51.3 → 35.7 ms a step at batch 64, history 59), else 1 (one element per
/// invocation, what GPUs coalesce best).
fn per_invocation(gpu: &Gpu, hw: usize) -> usize {
    match gpu.split_target() {
        0 => [64, 16, 4, 1].into_iter().find(|&r| hw.is_multiple_of(r)).unwrap_or(1),
        _ => 1,
    }
}

/// The normalisation, input-gradient or statistics kernel `shader` for runs of `p.per_invocation`
/// elements (and per_thread values, [`chunking`]): its `_vec4` variant where they are whole vec4s
/// (on CPU adapters, where each load is a loop over the SIMD lanes: ResNet-20's normalisations and
/// their input gradients 53–59 → 29–39 ms a step at batch 64, history 61; its statistics and their
/// backward 91–97 → 66–70 ms, history 62).
fn by_vec4(shader: &'static str, p: &Params) -> &'static str {
    match crate::shaders::vec4_variant(shader) {
        Some(v) if p.per_invocation.is_multiple_of(4) => v,
        _ => shader,
    }
}

/// Whether the statistics and their backward take one invocation per channel and chunk (their
/// `_per_channel` variants, each summing its chunk in blocks) instead of a workgroup merging 256
/// partials: on CPU adapters (which split no reduction, [`Gpu::split_target`]), where each
/// barrier switches between all of a workgroup's invocations, as for the bias gradient
/// (`ops::bias::per_channel`).
fn per_channel(gpu: &Gpu) -> bool {
    gpu.split_target() == 0
}

/// The statistics kernel `name` (`batchnorm2d_forward_stats` or `_backward_stats`) for `gpu` and
/// `p`, and its workgroups for `units` (channel, chunk) pairs: [`per_channel`], [`by_vec4`].
fn stats_kernel(gpu: &Gpu, name: &'static str, p: &Params, units: usize) -> (&'static str, Dispatch) {
    let (shader, groups) = match per_channel(gpu) {
        true => (
            crate::shaders::per_channel_variant(name).expect("the statistics kernels have a `_per_channel` variant"),
            units.div_ceil(crate::shaders::PER_CHANNEL_WORKGROUP),
        ),
        false => (name, units),
    };
    (by_vec4(shader, p), Dispatch::Workgroups(groups as u64))
}

/// Where a node's state lives in `io.state`: (weight, bias, running_mean, running_var).
fn state_index(g: &Geometry) -> (Option<usize>, Option<usize>, Option<usize>, Option<usize>) {
    let a = g.affine as usize * 2;
    if g.affine {
        (Some(0), Some(1), g.running.then_some(a), g.running.then_some(a + 1))
    } else {
        (None, None, g.running.then_some(0), g.running.then_some(1))
    }
}

impl Node for Geometry {
    fn out_shape(&self) -> Vec<usize> {
        [self.n, self.c, self.h, self.w][..self.rank].to_vec()
    }
    fn flops(&self) -> Flops {
        let e = (self.n * self.c * self.hw) as u64;
        Flops { forward: 4 * e, backward_input: 4 * e, backward_params: 3 * e }
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: true, output: false }
    }
    fn saved(&self) -> Vec<u64> {
        if self.batch_stats {
            vec![self.c as u64, self.c as u64]
        } else {
            Vec::new()
        }
    }
    fn gpu_scratch(&self, gpu: &Gpu, _dinputs: &[bool]) -> Scratch {
        let (_, chunks) = chunking(gpu, self);
        let c = self.c as u64;
        let mut forward = Vec::new();
        if self.batch_stats {
            forward.push(3 * c * chunks as u64);
            if !self.update_running {
                forward.extend([c, c]);
            }
        }
        let mut backward = vec![2 * c * chunks as u64, 2 * c];
        if !self.affine {
            backward.extend([1, 1]);
        }
        Scratch { forward, backward, kept: Vec::new() }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        let (wi, bi, rmi, rvi) = state_index(self);
        let mut state: crate::ops::interface::Bufs<Option<&mut [f32]>> = io.state.into_iter().map(Some).collect();
        let mut take = |i: Option<usize>| i.and_then(|i| state[i].take());
        let (w, b, rm, rv) = (take(wi), take(bi), take(rmi), take(rvi));
        let mut saved = io.saved.into_iter();
        let stats = if self.batch_stats { Some((saved.next().unwrap(), saved.next().unwrap())) } else { None };
        forward_cpu(self, io.out, stats, io.inputs[0], w.as_deref(), b.as_deref(), rm, rv);
    }
    fn fusible(&self) -> Option<Fusible> {
        (!self.batch_stats).then_some(Fusible::Affine)
    }
    fn affine_cpu(&self, state: &[&[f32]], scale: &mut [f32], shift: &mut [f32]) {
        // (x - mean) / sqrt(var + eps) · weight + bias = x · scale + shift
        let (wi, bi, rmi, rvi) = state_index(self);
        let (rm, rv) = (state[rmi.unwrap()], state[rvi.unwrap()]);
        for c in 0..self.c {
            let s = wi.map_or(1.0, |i| state[i][c]) / (rv[c] + self.eps).sqrt();
            scale[c] = s;
            shift[c] = bi.map_or(0.0, |i| state[i][c]) - rm[c] * s;
        }
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        let (wi, _, rmi, rvi) = state_index(self);
        let (mean, stat) = if self.batch_stats {
            (io.saved[0], io.saved[1])
        } else {
            (io.state[rmi.unwrap()], io.state[rvi.unwrap()])
        };
        let mut dparams = io.dparams.into_iter();
        let (dw, db) = (dparams.next(), dparams.next());
        let dinp = io.dinputs.into_iter().next().flatten();
        backward_cpu(self, dinp, dw, db, io.dout, io.inputs[0], mean, stat, wi.map(|i| io.state[i]));
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let (wi, bi, rmi, rvi) = state_index(self);
        let (per_thread, chunks) = chunking(gpu, self);
        let p = params(self, per_thread, chunks, per_invocation(gpu, self.hw));
        let mut prog = Program::default();
        let (mean, stat) = if self.batch_stats {
            let label = io.label;
            let partials = io.scratch[0];
            let (shader, groups) = stats_kernel(gpu, "batchnorm2d_forward_stats", &p, self.c * chunks);
            let k = Kernel::new(gpu, shader, &format!("{label}.stats"), &p, &[io.inputs[0], partials], groups)?;
            prog.push(k);
            let (rm, rv) = if self.update_running {
                (io.state[rmi.unwrap()], io.state[rvi.unwrap()])
            } else {
                (io.scratch[1], io.scratch[2])
            };
            let views = [partials, io.saved[0], io.saved[1], rm, rv];
            let groups = Dispatch::Invocations(self.c as u64);
            prog.push(Kernel::new(
                gpu,
                "batchnorm2d_forward_finalize",
                &format!("{label}.finalize"),
                &p,
                &views,
                groups,
            )?);
            (io.saved[0], io.saved[1])
        } else {
            (io.state[rmi.unwrap()], io.state[rvi.unwrap()])
        };
        let (w, b) = (wi.map_or(mean, |i| io.state[i]), bi.map_or(mean, |i| io.state[i]));
        let views = [io.inputs[0], mean, stat, w, b, io.out];
        let runs = io.out.len / p.per_invocation as u64;
        let shader = by_vec4("batchnorm2d_forward", &p);
        let k = Kernel::new(gpu, shader, io.label, &p, &views, Dispatch::Invocations(runs))?;
        prog.push(k.flops(self.flops().forward));
        Ok(prog)
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let (wi, _, rmi, rvi) = state_index(self);
        let (per_thread, chunks) = chunking(gpu, self);
        let p = params(self, per_thread, chunks, per_invocation(gpu, self.hw));
        let (mean, stat) = if self.batch_stats {
            (io.saved[0], io.saved[1])
        } else {
            (io.state[rmi.unwrap()], io.state[rvi.unwrap()])
        };
        let (partials, sums) = (io.scratch[0], io.scratch[1]);
        let (dw, db) = if self.affine { (io.dparams[0], io.dparams[1]) } else { (io.scratch[2], io.scratch[3]) };
        let label = io.label;
        let dout = io.dout.unwrap();
        let mut prog = Program::default();
        let views = [io.inputs[0], dout, mean, stat, partials];
        let (shader, groups) = stats_kernel(gpu, "batchnorm2d_backward_stats", &p, self.c * chunks);
        let k = Kernel::new(gpu, shader, &format!("{label}.dstats"), &p, &views, groups)?;
        prog.push(k.flops(self.flops().backward_params));
        let views = [partials, sums, dw, db];
        let groups = Dispatch::Invocations(self.c as u64);
        prog.push(Kernel::new(gpu, "batchnorm2d_backward_finalize", &format!("{label}.dparams"), &p, &views, groups)?);
        if let Some(dinp) = io.dinput(0) {
            let w = wi.map_or(mean, |i| io.state[i]);
            let views = [io.inputs[0], dout, mean, stat, w, sums, dinp];
            let runs = dinp.len / p.per_invocation as u64;
            let shader = by_vec4("batchnorm2d_backward_input", &p);
            let k = Kernel::new(gpu, shader, &format!("{label}.dinp"), &p, &views, Dispatch::Invocations(runs))?;
            prog.push(k.flops(self.flops().backward_input));
        }
        Ok(prog)
    }
}

/// Per channel (in f64): mean and M2 = Σ (x - mean)², two passes over inp (N, C, HW), into
/// `st` (C pairs); then, in the same task, out's planes of that channel normalised (while the
/// channel's input is still in this core's cache).
fn channel_stats_normalize<T: Real>(
    g: &Geometry,
    inp: &[T],
    st: &mut [f64],
    out: &mut [T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) {
    let out = crate::cpu::Channels::new(out, g.n, g.c, g.hw);
    st.par_chunks_mut(2).enumerate().for_each(|(c, s)| {
        let plane = |n: usize| &inp[(n * g.c + c) * g.hw..][..g.hw];
        let m = (g.n * g.hw) as f64;
        let mean = (0..g.n).map(|n| crate::cpu::sum(plane(n))).sum::<f64>() / m;
        let m2 = (0..g.n).map(|n| crate::cpu::sum_sq_dev(plane(n), mean)).sum::<f64>();
        s[0] = mean;
        s[1] = m2;
        let (mean, invstd) = (T::of(mean), invstd(m2, m, g.eps));
        let affine = weight.map(|w| (w[c], bias.map_or(T::zero(), |b| b[c])));
        // SAFETY: one task per channel (par_chunks_mut hands each c out once).
        let mut planes = unsafe { out.channel(c) };
        for n in 0..g.n {
            normalize(planes.plane(n), plane(n), mean, invstd, affine);
        }
    });
}

/// 1 / sqrt(M2 / m + eps), from f64 statistics.
fn invstd<T: Real>(m2: f64, m: f64, eps: f32) -> T {
    T::of(1.0 / (m2 / m + eps as f64).sqrt())
}

/// out (N, C, H, W), overwritten. With batch statistics, `stats` receives (mean, invstd) per
/// channel and the running statistics are updated when the layer says so; else `running` is read.
#[allow(clippy::too_many_arguments)]
pub fn forward_cpu<T: Real>(
    g: &Geometry,
    out: &mut [T],
    stats: Option<(&mut [T], &mut [T])>,
    inp: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    running_mean: Option<&mut [T]>,
    running_var: Option<&mut [T]>,
) {
    crate::cpu::with_scratch::<T, _>(2 * g.c, |mi| {
        let (mean, invstd) = mi.split_at_mut(g.c);
        if g.batch_stats {
            let m = (g.n * g.hw) as f64;
            crate::cpu::with_scratch::<f64, _>(2 * g.c, |st| {
                channel_stats_normalize(g, inp, st, out, weight, bias);
                let st = || st.chunks_exact(2);
                if g.update_running {
                    let (rm, rv) = (running_mean.unwrap(), running_var.unwrap());
                    let mo = T::of(g.momentum as f64);
                    for (c, s) in st().enumerate() {
                        rm[c] = mo * T::of(s[0]) + (T::one() - mo) * rm[c];
                        rv[c] = mo * T::of(s[1] / (m - 1.0)) + (T::one() - mo) * rv[c];
                    }
                }
                for (c, s) in st().enumerate() {
                    mean[c] = T::of(s[0]);
                    invstd[c] = self::invstd(s[1], m, g.eps);
                }
            });
            if let Some((sm, si)) = stats {
                sm.copy_from_slice(mean);
                si.copy_from_slice(invstd);
            }
        } else {
            let (rm, rv) = (running_mean.unwrap(), running_var.unwrap());
            let eps = T::of(g.eps as f64);
            mean.copy_from_slice(rm);
            invstd.iter_mut().zip(rv.iter()).for_each(|(i, &v)| *i = T::one() / (v + eps).sqrt());
            normalize_all(g, out, inp, mean, invstd, weight, bias);
        }
    });
}

/// o = (x - mean) · invstd (· w + b), one plane.
#[multiversion(targets = "simd")]
fn normalize<T: Real>(o: &mut [T], x: &[T], mean: T, invstd: T, affine: Option<(T, T)>) {
    match affine {
        Some((w, b)) => o.iter_mut().zip(x).for_each(|(o, &x)| *o = (x - mean) * invstd * w + b),
        None => o.iter_mut().zip(x).for_each(|(o, &x)| *o = (x - mean) * invstd),
    }
}

/// Every plane normalised with the given statistics (eval mode: the running ones).
fn normalize_all<T: Real>(
    g: &Geometry,
    out: &mut [T],
    inp: &[T],
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) {
    par_planes(out, g.hw, |p, o| {
        let c = p % g.c;
        let affine = weight.map(|w| (w[c], bias.map_or(T::zero(), |b| b[c])));
        normalize(o, &inp[p * g.hw..][..g.hw], mean[c], invstd[c], affine);
    });
}

/// Gradients w.r.t. the input (when `dinp` is given), weight and bias (when given), overwritten.
/// `mean` and `stat` are the saved (mean, invstd) with batch statistics, else the running mean
/// and variance.
#[allow(clippy::too_many_arguments)]
pub fn backward_cpu<T: Real>(
    g: &Geometry,
    dinp: Option<&mut [T]>,
    dweight: Option<&mut [T]>,
    dbias: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    mean: &[T],
    stat: &[T],
    weight: Option<&[T]>,
) {
    let eps = T::of(g.eps as f64);
    crate::cpu::with_scratch::<T, _>(g.c, |invstd| {
        crate::cpu::with_scratch::<f64, _>(2 * g.c, |sums| {
            match g.batch_stats {
                true => invstd.copy_from_slice(stat),
                false => invstd.iter_mut().zip(stat).for_each(|(i, &v)| *i = T::one() / (v + eps).sqrt()),
            }
            let m = (g.n * g.hw) as f64;
            let plane_of = |c: usize, n: usize| (n * g.c + c) * g.hw..(n * g.c + c + 1) * g.hw;
            // dinp's planes of channel c from its sums: in the task that made them with batch
            // statistics (the channel's dout and input still in this core's cache), else on
            // their own.
            let dinp_channel = |c: usize, sdy: f64, sdyx: f64, planes: &mut crate::cpu::ChannelPlanes<'_, T>| {
                let scale = invstd[c] * weight.map_or(T::one(), |w| w[c]);
                let (mdy, mdyx) = (T::of(sdy / m), T::of(sdyx / m));
                for n in 0..g.n {
                    let r = plane_of(c, n);
                    dinp_plane(
                        planes.plane(n),
                        &dout[r.clone()],
                        &inp[r],
                        g.batch_stats,
                        mean[c],
                        invstd[c],
                        scale,
                        mdy,
                        mdyx,
                    );
                }
            };
            let dinp = dinp.map(|d| crate::cpu::Channels::new(d, g.n, g.c, g.hw));
            // Per channel, in f64: Σ dout and Σ dout·xhat (= invstd · Σ dout·(x - mean)).
            sums.par_chunks_mut(2).enumerate().for_each(|(c, s)| {
                let (mut sdy, mut sdyx) = (0f64, 0f64);
                for n in 0..g.n {
                    let r = plane_of(c, n);
                    let (a, b) = crate::cpu::sum_dy_dyx(&dout[r.clone()], &inp[r], mean[c].f64());
                    sdy += a;
                    sdyx += b;
                }
                s[0] = sdy;
                s[1] = sdyx * invstd[c].f64();
                if let Some(d) = dinp.as_ref().filter(|_| g.batch_stats) {
                    // SAFETY: one task per channel (par_chunks_mut hands each c out once).
                    dinp_channel(c, s[0], s[1], &mut unsafe { d.channel(c) });
                }
            });
            let sums: &[f64] = sums;
            let sums = |c: usize| (sums[2 * c], sums[2 * c + 1]);
            if let (Some(dw), Some(db)) = (dweight, dbias) {
                for c in 0..g.c {
                    dw[c] = T::of(sums(c).1);
                    db[c] = T::of(sums(c).0);
                }
            }
            if let Some(d) = dinp.as_ref().filter(|_| !g.batch_stats) {
                (0..g.c).into_par_iter().for_each(|c| {
                    // SAFETY: one task per channel.
                    dinp_channel(c, sums(c).0, sums(c).1, &mut unsafe { d.channel(c) });
                });
            }
        })
    });
}

/// One plane of the input gradient: scale · (dy - mean(dy) - xhat · mean(dy · xhat)) with batch
/// statistics, else scale · dy.
#[multiversion(targets = "simd")]
#[allow(clippy::too_many_arguments)]
fn dinp_plane<T: Real>(
    d: &mut [T],
    dy: &[T],
    x: &[T],
    batch_stats: bool,
    mean: T,
    invstd: T,
    scale: T,
    mdy: T,
    mdyx: T,
) {
    if batch_stats {
        for ((d, &dy), &x) in d.iter_mut().zip(dy).zip(x) {
            let xhat = (x - mean) * invstd;
            *d = scale * (dy - mdy - xhat * mdyx);
        }
    } else {
        d.iter_mut().zip(dy).for_each(|(d, &dy)| *d = dy * scale);
    }
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub N: u32,
    pub C: u32,
    pub HW: u32,
    pub chunks: u32,
    pub per_thread: u32,
    pub batch_stats: u32,
    pub update_running: u32,
    pub affine: u32,
    pub eps: f32,
    pub momentum: f32,
    pub per_invocation: u32,
    pub _pad1: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |name| {
        crate::params_layout!(
            name,
            Params,
            [N, C, HW, chunks, per_thread, batch_stats, update_running, affine, eps, momentum, per_invocation, _pad1]
        )
    };
    let per_channel = ["batchnorm2d_forward_stats_per_channel", "batchnorm2d_backward_stats_per_channel"];
    let per_channel = per_channel.map(|name| l(name).consts(&[("PC", crate::shaders::PER_CHANNEL_WORKGROUP)]));
    SHADERS.iter().map(|s| l(s.name)).chain(per_channel).collect()
}

fn params(g: &Geometry, per_thread: usize, chunks: usize, per_invocation: usize) -> Params {
    let u = |v: usize| v as u32;
    Params {
        N: u(g.n),
        C: u(g.c),
        HW: u(g.hw),
        chunks: u(chunks),
        per_thread: u(per_thread),
        batch_stats: g.batch_stats as u32,
        update_running: g.update_running as u32,
        affine: g.affine as u32,
        eps: g.eps,
        momentum: g.momentum,
        per_invocation: u(per_invocation),
        _pad1: 0,
    }
}
