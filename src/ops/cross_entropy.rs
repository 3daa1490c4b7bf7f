//! CrossEntropyLoss (nn.CrossEntropyLoss) = LogSoftmax over dim 1 + NLLLoss, with class weight,
//! ignore_index, reduction, label_smoothing in [0, 1] (PyTorch's formula) and either class-index
//! targets (N, d...) or class-probability targets (N, C, d...).
//! Shaders: cross_entropy_forward.wgsl, cross_entropy_backward.wgsl (+ reduce_sum).

use super::log_softmax::{self, at};
use super::nll_loss::{check_class_targets, reduce_pairs, row_upstream};
use super::{reduce_sum, sum_f64, ParamsLayout, Reduction};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::tensor::split_class_dim;
use crate::{ensure_op, Result};

pub const OP: &str = "CrossEntropyLoss";

crate::shaders!(cross_entropy_forward: 64, cross_entropy_backward: 64);

/// PyTorch's defaults: no weight, ignore_index -100, reduction 'mean', label_smoothing 0.
#[derive(Clone, Debug)]
pub struct Options {
    pub weight: Option<Vec<f32>>,
    pub ignore_index: i64,
    pub reduction: Reduction,
    pub label_smoothing: f32,
}

impl Default for Options {
    fn default() -> Self {
        Options { weight: None, ignore_index: -100, reduction: Reduction::Mean, label_smoothing: 0.0 }
    }
}

/// Class indices (N, d...) or class probabilities (N, C, d...).
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, T> {
    Class(&'a [i64]),
    Prob(&'a [T]),
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub C: u32,
    pub S: u32,
    pub reduction: u32,
    pub ignore_index: i32,
    pub smoothing: f32,
    pub prob_targets: u32,
    pub _pad: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let fields =
        |s| crate::params_layout!(s, Params, [rows, C, S, reduction, ignore_index, smoothing, prob_targets, _pad]);
    vec![fields("cross_entropy_forward"), fields("cross_entropy_backward")]
}

/// Refuses a label_smoothing outside [0, 1], as PyTorch does (and in its words).
pub fn check_label_smoothing(ls: f32) -> Result<()> {
    ensure_op!((0.0..=1.0).contains(&ls), OP, "label_smoothing must be between 0.0 and 1.0, got {ls}");
    Ok(())
}

/// Validates shapes, targets, weight and label_smoothing; returns (N, C, S).
pub fn check<T: Real>(
    inp: &[usize],
    tgt_shape: &[usize],
    tgt: Targets<'_, T>,
    o: &Options,
) -> Result<(usize, usize, usize)> {
    check_label_smoothing(o.label_smoothing)?;
    match tgt {
        Targets::Class(t) => {
            check_class_targets(OP, inp, tgt_shape, t, o.weight.as_ref().map(|w| w.len()), o.ignore_index)
        }
        Targets::Prob(p) => {
            let (n, c, s) = split_class_dim(OP, inp)?;
            ensure_op!(n * c * s > 0, OP, "empty input of shape {inp:?}");
            ensure_op!(
                tgt_shape == inp,
                OP,
                "probability targets must have the input's shape {inp:?}, got {tgt_shape:?}"
            );
            ensure_op!(p.len() == n * c * s, OP, "target shape {tgt_shape:?} but {} values given", p.len());
            if let Some(w) = &o.weight {
                ensure_op!(
                    w.len() == c,
                    OP,
                    "weight has {} elements but the input {inp:?} has C = {c} classes",
                    w.len()
                );
            }
            Ok((n, c, s))
        }
    }
}

fn weight<T: Real>(o: &Options, c: usize) -> T {
    o.weight.as_ref().map_or(T::one(), |w| T::of(w[c] as f64))
}

/// Row r's (loss, weight) given log-probabilities, as in PyTorch's cross_entropy.
fn row_pair<T: Real>(
    logp: &[T],
    tgt: Targets<'_, T>,
    o: &Options,
    (_, c_dim, s_dim): (usize, usize, usize),
    r: usize,
) -> (T, T) {
    let eps = T::of(o.label_smoothing as f64);
    let uq = eps / T::of(c_dim as f64);
    let (n, s) = (r / s_dim, r % s_dim);
    let lp = |c| logp[at(c_dim, s_dim, n, c, s)];
    match tgt {
        Targets::Prob(q) => {
            let l: T = (0..c_dim)
                .map(|c| weight::<T>(o, c) * ((T::one() - eps) * q[at(c_dim, s_dim, n, c, s)] + uq) * lp(c))
                .sum();
            (-l, T::one())
        }
        Targets::Class(t) if t[r] == o.ignore_index => (T::zero(), T::zero()),
        Targets::Class(t) => {
            let t = t[r] as usize;
            let smooth: T = (0..c_dim).map(|c| weight::<T>(o, c) * lp(c)).sum();
            ((T::one() - eps) * (-weight::<T>(o, t) * lp(t)) - uq * smooth, weight(o, t))
        }
    }
}

fn row_pairs<'a, T: Real>(
    logp: &'a [T],
    tgt: Targets<'a, T>,
    o: &'a Options,
    dims: (usize, usize, usize),
) -> impl Iterator<Item = (T, T)> + Clone + 'a {
    (0..dims.0 * dims.2).map(move |r| row_pair(logp, tgt, o, dims, r))
}

/// Returns (loss, logp): loss (N, d...) for 'none' else (1,); logp (N, C, S).
pub fn forward_cpu<T: Real>(
    inp: &[T],
    tgt: Targets<'_, T>,
    o: &Options,
    dims: (usize, usize, usize),
) -> (Vec<T>, Vec<T>) {
    let logp = log_softmax::forward_cpu(inp, dims);
    let loss = reduce_pairs(row_pairs(&logp, tgt, o, dims).collect(), o.reduction);
    (loss, logp)
}

/// dinp (N, C, S) from the forward's logp and dout ((N, d...) for 'none', else (1,)).
pub fn backward_cpu<T: Real>(
    logp: &[T],
    tgt: Targets<'_, T>,
    dout: &[T],
    o: &Options,
    dims: (usize, usize, usize),
) -> Vec<T> {
    let mut dinp = vec![T::zero(); logp.len()];
    backward_into(logp, tgt, dout, o, dims, &mut dinp);
    dinp
}

/// [`backward_cpu`] into `dinp` (N, C, S), overwritten.
pub fn backward_into<T: Real>(
    logp: &[T],
    tgt: Targets<'_, T>,
    dout: &[T],
    o: &Options,
    dims: (usize, usize, usize),
    dinp: &mut [T],
) {
    let (n_dim, c_dim, s_dim) = dims;
    let eps = T::of(o.label_smoothing as f64);
    let uq = eps / T::of(c_dim as f64);
    let up = row_upstream(dout, row_pairs(logp, tgt, o, dims).map(|p| p.1), o.reduction);
    // dinp holds dlogp first, then log-softmax's backward turns it into dinp in place.
    for r in 0..n_dim * s_dim {
        let (n, s) = (r / s_dim, r % s_dim);
        for c in 0..c_dim {
            let i = at(c_dim, s_dim, n, c, s);
            let w = weight::<T>(o, c);
            dinp[i] = match tgt {
                Targets::Prob(q) => -up(r) * w * ((T::one() - eps) * q[i] + uq),
                Targets::Class(t) if t[r] == o.ignore_index => T::zero(),
                Targets::Class(t) => {
                    let hit = if t[r] as usize == c { (T::one() - eps) * w } else { T::zero() };
                    -up(r) * (uq * w + hit)
                }
            };
        }
    }
    log_softmax::backward_in_place(logp, dinp, dims);
}

/// The loss with a 'sum' or 'mean' reduction, its log-probabilities into `logp` and the gradient
/// of the loss into `dinp` (both (N, C, S), overwritten), allocating nothing: what the training
/// step's loss runs.
pub fn loss_and_grad_into<T: Real>(
    inp: &[T],
    tgt: Targets<'_, T>,
    o: &Options,
    dims: (usize, usize, usize),
    logp: &mut [T],
    dinp: &mut [T],
) -> T {
    assert!(o.reduction != Reduction::None, "loss_and_grad_into: the loss must be reduced to a scalar");
    log_softmax::forward_into(inp, dims, logp);
    let pairs = row_pairs(logp, tgt, o, dims);
    let loss = match o.reduction {
        Reduction::Sum => T::of(sum_f64(pairs.map(|p| p.0))),
        _ => T::of(sum_f64(pairs.clone().map(|p| p.0)) / sum_f64(pairs.map(|p| p.1))),
    };
    backward_into(logp, tgt, &[T::one()], o, dims, dinp);
    loss
}

/// Targets as the 32-bit words the shaders read: i32 class indices or f32 probabilities.
pub fn target_words(tgt: Targets<'_, f32>) -> Vec<u32> {
    match tgt {
        Targets::Class(t) => t.iter().map(|&x| x as i32 as u32).collect(),
        Targets::Prob(p) => p.iter().map(|x| x.to_bits()).collect(),
    }
}

/// Scratch words of the GPU kernels: the log-probabilities (N, C, S), then for 'sum' and 'mean'
/// the per-row (loss, weight) pairs and the reduction's partials (the last is the final pair);
/// for 'none' a 2-word placeholder the backward binds.
pub fn gpu_scratch((n, c, s): (usize, usize, usize), reduction: Reduction) -> Vec<u64> {
    let rows = (n * s) as u64;
    let mut v = vec![(n * c * s) as u64];
    if reduction == Reduction::None {
        v.push(2);
    } else {
        v.push(2 * rows);
        v.extend(reduce_sum::partial_words(rows));
    }
    v
}

/// The buffers of CrossEntropyLoss's kernels, all the caller's.
pub struct GpuBuffers<'a> {
    /// Logits (N, C, S).
    pub inp: &'a View,
    /// [`target_words`].
    pub tgt: &'a View,
    /// Whether `tgt` holds class probabilities (N, C, S) rather than class indices (N, S).
    pub prob_targets: bool,
    /// Class weights (C,) (ones for none).
    pub weight: &'a View,
    /// As [`gpu_scratch`] says.
    pub scratch: Vec<&'a View>,
    /// The loss: (N, S) for 'none', (1,) otherwise.
    pub out: &'a View,
    /// Upstream gradient, shaped as `out`.
    pub dout: &'a View,
    /// (N, C, S), overwritten by the backward.
    pub dinp: &'a View,
}

fn params(o: &Options, (n, c, s): (usize, usize, usize), prob_targets: bool) -> Params {
    Params {
        rows: (n * s) as u32,
        C: c as u32,
        S: s as u32,
        reduction: o.reduction.code(),
        ignore_index: o.ignore_index.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
        smoothing: o.label_smoothing,
        prob_targets: prob_targets as u32,
        _pad: 0,
    }
}

/// The forward: logp, then the loss.
pub fn forward_gpu(
    gpu: &Gpu,
    label: &str,
    b: &GpuBuffers<'_>,
    o: &Options,
    dims: (usize, usize, usize),
) -> Result<Program> {
    let p = params(o, dims, b.prob_targets);
    let rows = p.rows as u64;
    let logp = b.scratch[0];
    let mut prog = Program::default();
    if o.reduction == Reduction::None {
        prog.push(Kernel::new(
            gpu,
            "cross_entropy_forward",
            label,
            &p,
            &[b.inp, b.tgt, b.weight, logp, b.out],
            Dispatch::Workgroups(rows),
        )?);
    } else {
        let pairs = b.scratch[1];
        prog.push(Kernel::new(
            gpu,
            "cross_entropy_forward",
            label,
            &p,
            &[b.inp, b.tgt, b.weight, logp, pairs],
            Dispatch::Workgroups(rows),
        )?);
        let finish =
            if o.reduction == Reduction::Mean { reduce_sum::Finish::WeightedMean } else { reduce_sum::Finish::Sum };
        prog.extend(reduce_sum::build(gpu, label, pairs, rows, finish, b.out, &b.scratch[2..])?);
    }
    Ok(prog)
}

/// The backward: dinp from logp, the targets, dout and (for 'mean') the summed weights.
pub fn backward_gpu(
    gpu: &Gpu,
    label: &str,
    b: &GpuBuffers<'_>,
    o: &Options,
    dims: (usize, usize, usize),
) -> Result<Program> {
    let p = params(o, dims, b.prob_targets);
    let stats = *b.scratch.last().unwrap();
    let views = [b.scratch[0], b.tgt, b.weight, b.dout, stats, b.dinp];
    Ok(Kernel::new(
        gpu,
        "cross_entropy_backward",
        &format!("{label}.backward"),
        &p,
        &views,
        Dispatch::Workgroups(p.rows as u64),
    )?
    .into())
}
