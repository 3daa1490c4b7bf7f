//! NLLLoss (nn.NLLLoss) over log-probabilities (N, C) or (N, C, d1, ...): class weight,
//! ignore_index (default -100), reduction none|sum|mean, where 'mean' divides by the summed weights
//! of the non-ignored targets. Shaders: nll_loss_forward.wgsl, nll_loss_backward.wgsl (+ reduce_sum).

use super::log_softmax::at;
use super::{reduce_sum, sum_f64, ParamsLayout, Reduction};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::tensor::split_class_dim;
use crate::{ensure_op, Result};

pub const OP: &str = "NLLLoss";

crate::shaders!(nll_loss_forward: 256, nll_loss_backward: 256);

/// PyTorch's defaults: no weight, ignore_index -100, reduction 'mean'.
#[derive(Clone, Debug)]
pub struct Options {
    pub weight: Option<Vec<f32>>,
    pub ignore_index: i64,
    pub reduction: Reduction,
}

impl Default for Options {
    fn default() -> Self {
        Options { weight: None, ignore_index: -100, reduction: Reduction::Mean }
    }
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ForwardParams {
    pub rows: u32,
    pub C: u32,
    pub S: u32,
    pub reduction: u32,
    pub ignore_index: i32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BackwardParams {
    pub n: u32,
    pub C: u32,
    pub S: u32,
    pub reduction: u32,
    pub ignore_index: i32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!(
            "nll_loss_forward",
            ForwardParams,
            [rows, C, S, reduction, ignore_index, _pad0, _pad1, _pad2]
        ),
        crate::params_layout!(
            "nll_loss_backward",
            BackwardParams,
            [n, C, S, reduction, ignore_index, _pad0, _pad1, _pad2]
        ),
    ]
}

/// Checks an (N, C, d...) input against (N, d...) class targets and a (C,) weight; every target is
/// a class in [0, C) or ignore_index. Returns (N, C, S).
pub fn check_class_targets(
    op: &str,
    inp: &[usize],
    tgt_shape: &[usize],
    tgt: &[i64],
    weight: Option<usize>,
    ignore_index: i64,
) -> Result<(usize, usize, usize)> {
    let (n, c, s) = split_class_dim(op, inp)?;
    ensure_op!(n * c * s > 0, op, "empty input of shape {inp:?}");
    let want: Vec<usize> = std::iter::once(n).chain(inp[2..].iter().copied()).collect();
    ensure_op!(
        tgt_shape == want.as_slice(),
        op,
        "input {inp:?} needs class targets of shape {want:?}, got {tgt_shape:?}"
    );
    ensure_op!(tgt.len() == n * s, op, "target shape {tgt_shape:?} but {} targets given", tgt.len());
    if let Some(w) = weight {
        ensure_op!(w == c, op, "weight has {w} elements but the input {inp:?} has C = {c} classes");
    }
    if let Some((i, &t)) = tgt.iter().enumerate().find(|&(_, &t)| t != ignore_index && (t < 0 || t >= c as i64)) {
        return Err(crate::Error::op(
            op,
            format!("target {t} at index {i} is out of range for C = {c} classes (ignore_index = {ignore_index})"),
        ));
    }
    ensure_op!(
        i32::try_from(ignore_index).is_ok() || tgt.iter().all(|&t| t != ignore_index),
        op,
        "ignore_index {ignore_index} does not fit in 32 bits"
    );
    Ok((n, c, s))
}

pub fn check(inp: &[usize], tgt_shape: &[usize], tgt: &[i64], o: &Options) -> Result<(usize, usize, usize)> {
    check_class_targets(OP, inp, tgt_shape, tgt, o.weight.as_ref().map(|w| w.len()), o.ignore_index)
}

fn weight_of<T: Real>(w: Option<&[f32]>, c: usize) -> T {
    w.map_or(T::one(), |w| T::of(w[c] as f64))
}

/// Applies a reduction to per-row (loss, weight) pairs.
pub fn reduce_pairs<T: Real>(pairs: Vec<(T, T)>, reduction: Reduction) -> Vec<T> {
    match reduction {
        Reduction::None => pairs.into_iter().map(|p| p.0).collect(),
        Reduction::Sum => vec![T::of(sum_f64(pairs.into_iter().map(|p| p.0)))],
        Reduction::Mean => {
            let l = sum_f64(pairs.iter().map(|p| p.0));
            let w = sum_f64(pairs.iter().map(|p| p.1));
            vec![T::of(l / w)]
        }
    }
}

/// Upstream gradient per row: `dout[r]` ('none'), `dout[0]` ('sum') or `dout[0] / Σ weights` ('mean').
pub fn row_upstream<T: Real>(
    dout: &[T],
    row_weights: impl Iterator<Item = T>,
    reduction: Reduction,
) -> impl Fn(usize) -> T + '_ {
    let total = if reduction == Reduction::Mean { T::of(sum_f64(row_weights)) } else { T::one() };
    move |r| match reduction {
        Reduction::None => dout[r],
        Reduction::Sum => dout[0],
        Reduction::Mean => dout[0] / total,
    }
}

/// out: (N, d...) for 'none', else (1,).
pub fn forward_cpu<T: Real>(
    inp: &[T],
    tgt: &[i64],
    o: &Options,
    (n_dim, c_dim, s_dim): (usize, usize, usize),
) -> Vec<T> {
    let w = o.weight.as_deref();
    let pairs = (0..n_dim * s_dim)
        .map(|r| {
            let t = tgt[r];
            if t == o.ignore_index {
                return (T::zero(), T::zero());
            }
            let wt: T = weight_of(w, t as usize);
            (-wt * inp[at(c_dim, s_dim, r / s_dim, t as usize, r % s_dim)], wt)
        })
        .collect();
    reduce_pairs(pairs, o.reduction)
}

/// dinp: (N, C, S).
pub fn backward_cpu<T: Real>(
    tgt: &[i64],
    dout: &[T],
    o: &Options,
    (n_dim, c_dim, s_dim): (usize, usize, usize),
) -> Vec<T> {
    let w = o.weight.as_deref();
    let valid = |r: usize| tgt[r] != o.ignore_index;
    let row_w = (0..n_dim * s_dim).map(|r| if valid(r) { weight_of::<T>(w, tgt[r] as usize) } else { T::zero() });
    let up = row_upstream(dout, row_w, o.reduction);
    let mut dinp = vec![T::zero(); n_dim * c_dim * s_dim];
    for r in (0..n_dim * s_dim).filter(|&r| valid(r)) {
        let t = tgt[r] as usize;
        dinp[at(c_dim, s_dim, r / s_dim, t, r % s_dim)] = -weight_of::<T>(w, t) * up(r);
    }
    dinp
}

/// Scratch words of the GPU kernels: for 'sum' and 'mean' the per-row (loss, weight) pairs and
/// the reduction's partials (the last is the final pair); for 'none' a 2-word placeholder.
pub fn gpu_scratch((n, _, s): (usize, usize, usize), reduction: Reduction) -> Vec<u64> {
    let rows = (n * s) as u64;
    if reduction == Reduction::None {
        return vec![2];
    }
    let mut v = vec![2 * rows];
    v.extend(reduce_sum::partial_words(rows));
    v
}

/// The buffers of NLLLoss's kernels, all the caller's.
pub struct GpuBuffers<'a> {
    /// Log-probabilities (N, C, S).
    pub inp: &'a View,
    /// i32 targets (N, S).
    pub tgt: &'a View,
    /// Class weights (C,) (ones for none).
    pub weight: &'a View,
    /// As [`gpu_scratch`] says.
    pub scratch: Vec<&'a View>,
    /// (N, S) for 'none', (1,) otherwise.
    pub out: &'a View,
    pub dout: &'a View,
    /// (N, C, S), overwritten by the backward.
    pub dinp: &'a View,
}

fn ignore(o: &Options) -> i32 {
    o.ignore_index.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

pub fn forward_gpu(
    gpu: &Gpu,
    label: &str,
    b: &GpuBuffers<'_>,
    o: &Options,
    (n_dim, c_dim, s_dim): (usize, usize, usize),
) -> Result<Program> {
    let rows = (n_dim * s_dim) as u64;
    let fp = ForwardParams {
        rows: rows as u32,
        C: c_dim as u32,
        S: s_dim as u32,
        reduction: o.reduction.code(),
        ignore_index: ignore(o),
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let mut prog = Program::default();
    let groups = Dispatch::Invocations(rows);
    if o.reduction == Reduction::None {
        prog.push(Kernel::new(gpu, "nll_loss_forward", label, &fp, &[b.inp, b.tgt, b.weight, b.out], groups)?);
    } else {
        let pairs = b.scratch[0];
        prog.push(Kernel::new(gpu, "nll_loss_forward", label, &fp, &[b.inp, b.tgt, b.weight, pairs], groups)?);
        let finish =
            if o.reduction == Reduction::Mean { reduce_sum::Finish::WeightedMean } else { reduce_sum::Finish::Sum };
        prog.extend(reduce_sum::build(gpu, label, pairs, rows, finish, b.out, &b.scratch[1..])?);
    }
    Ok(prog)
}

pub fn backward_gpu(
    gpu: &Gpu,
    label: &str,
    b: &GpuBuffers<'_>,
    o: &Options,
    (n_dim, c_dim, s_dim): (usize, usize, usize),
) -> Result<Program> {
    let total = (n_dim * c_dim * s_dim) as u64;
    let bp = BackwardParams {
        n: total as u32,
        C: c_dim as u32,
        S: s_dim as u32,
        reduction: o.reduction.code(),
        ignore_index: ignore(o),
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let stats = *b.scratch.last().unwrap();
    let views = [b.tgt, b.weight, b.dout, stats, b.dinp];
    Ok(Kernel::new(gpu, "nll_loss_backward", &format!("{label}.backward"), &bp, &views, Dispatch::Invocations(total))?
        .into())
}
