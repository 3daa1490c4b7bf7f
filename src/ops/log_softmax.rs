//! LogSoftmax over dim 1 of (N, C) or (N, C, d1, ...), numerically stable (max subtracted).
//! Shaders: log_softmax_forward.wgsl, log_softmax_backward.wgsl.

use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::tensor::split_class_dim;
use crate::{ensure_op, Result};

pub const OP: &str = "LogSoftmax";

crate::shaders!(log_softmax_forward: 64, log_softmax_backward: 64);

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub C: u32,
    pub S: u32,
    pub _pad: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!("log_softmax_forward", Params, [rows, C, S, _pad]),
        crate::params_layout!("log_softmax_backward", Params, [rows, C, S, _pad]),
    ]
}

/// (N, C, S) of an input shape; it must have a class dimension and no zero-sized dimension.
pub fn check(shape: &[usize]) -> Result<(usize, usize, usize)> {
    let (n, c, s) = split_class_dim(OP, shape)?;
    ensure_op!(n * c * s > 0, OP, "empty input of shape {shape:?}");
    Ok((n, c, s))
}

/// Index of (n, c, s) in an (N, C, S) tensor.
#[inline]
pub fn at(c_dim: usize, s_dim: usize, n: usize, c: usize, s: usize) -> usize {
    (n * c_dim + c) * s_dim + s
}

/// out: (N, C, S)
pub fn forward_cpu<T: Real>(inp: &[T], dims: (usize, usize, usize)) -> Vec<T> {
    let mut out = vec![T::zero(); inp.len()];
    forward_into(inp, dims, &mut out);
    out
}

/// [`forward_cpu`] into `out` (N, C, S), overwritten.
pub fn forward_into<T: Real>(inp: &[T], (n_dim, c_dim, s_dim): (usize, usize, usize), out: &mut [T]) {
    for n in 0..n_dim {
        for s in 0..s_dim {
            let x = |c| inp[at(c_dim, s_dim, n, c, s)];
            let mx = (0..c_dim).map(x).fold(T::neg_infinity(), T::max);
            // (x - max) - log(Σ exp(x - max)), in that order, as PyTorch and the shaders.
            let ls = (0..c_dim).map(|c| (x(c) - mx).exp()).sum::<T>().ln();
            for c in 0..c_dim {
                out[at(c_dim, s_dim, n, c, s)] = (x(c) - mx) - ls;
            }
        }
    }
}

/// dinp = dout - exp(out) * Σ_c dout; all (N, C, S).
pub fn backward_cpu<T: Real>(out: &[T], dout: &[T], dims: (usize, usize, usize)) -> Vec<T> {
    let mut dinp = dout.to_vec();
    backward_in_place(out, &mut dinp, dims);
    dinp
}

/// [`backward_cpu`] in place: `d` holds dout and becomes dinp.
pub fn backward_in_place<T: Real>(out: &[T], d: &mut [T], (n_dim, c_dim, s_dim): (usize, usize, usize)) {
    for n in 0..n_dim {
        for s in 0..s_dim {
            let idx = |c| at(c_dim, s_dim, n, c, s);
            let total: T = (0..c_dim).map(|c| d[idx(c)]).sum();
            for c in 0..c_dim {
                d[idx(c)] = d[idx(c)] - out[idx(c)].exp() * total;
            }
        }
    }
}

fn params((n, c, s): (usize, usize, usize)) -> Params {
    Params { rows: (n * s) as u32, C: c as u32, S: s as u32, _pad: 0 }
}

/// Forward kernel: `out` (N, C, S) from `inp`.
pub fn forward_gpu(gpu: &Gpu, label: &str, inp: &View, out: &View, dims: (usize, usize, usize)) -> Result<Program> {
    let p = params(dims);
    let mut prog = Program::default();
    prog.push(Kernel::new(gpu, "log_softmax_forward", label, &p, &[inp, out], Dispatch::Workgroups(p.rows as u64))?);
    Ok(prog)
}

/// Backward kernel: `dinp` from the forward's `out` and `dout`.
pub fn backward_gpu(
    gpu: &Gpu,
    label: &str,
    out: &View,
    dout: &View,
    dinp: &View,
    dims: (usize, usize, usize),
) -> Result<Program> {
    let p = params(dims);
    let mut prog = Program::default();
    prog.push(Kernel::new(
        gpu,
        "log_softmax_backward",
        &format!("{label}.backward"),
        &p,
        &[out, dout, dinp],
        Dispatch::Workgroups(p.rows as u64),
    )?);
    Ok(prog)
}
