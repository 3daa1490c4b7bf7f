//! Linear (nn.Linear): y = x·Wᵀ + b with W stored (out, in) as in PyTorch; backward dx = dy·W,
//! dW = dyᵀ·x, db = Σ_n dy. Shaders: matmul.wgsl (strided, serves all three products) and
//! bias_backward.wgsl. The CPU path uses matrixmultiply.

use super::{bias, sum_splits, Grads, ParamsLayout};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Kernel, Program};
use crate::{ensure_op, Result};

pub const OP: &str = "Linear";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl Config {
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Config { in_features, out_features, bias: true }
    }
    pub fn weight_shape(&self) -> [usize; 2] {
        [self.out_features, self.in_features]
    }
    /// Checks an (N, in_features) input; returns N.
    pub fn rows(&self, input: &[usize]) -> Result<usize> {
        let op = format!("{OP}(in_features={}, out_features={})", self.in_features, self.out_features);
        ensure_op!(self.in_features > 0 && self.out_features > 0, op, "feature counts must be positive");
        ensure_op!(input.len() == 2, op, "expected an (N, {}) input, got shape {input:?}", self.in_features);
        ensure_op!(
            input[1] == self.in_features,
            op,
            "input {input:?} has {} features but the weight expects {}",
            input[1],
            self.in_features
        );
        ensure_op!(input[0] > 0, op, "empty batch in input {input:?}");
        Ok(input[0])
    }
}

/// out (N, OUT) = inp (N, IN) · weightᵀ + bias.
pub fn forward_cpu<T: Real>(c: &Config, n: usize, inp: &[T], weight: &[T], bias: Option<&[T]>) -> Vec<T> {
    let (i, o) = (c.in_features, c.out_features);
    let mut out = vec![T::zero(); n * o];
    if let Some(b) = bias {
        out.chunks_mut(o).for_each(|row| row.copy_from_slice(b));
    }
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    T::gemm(n, i, o, T::one(), inp, i as isize, 1, weight, 1, i as isize, beta, &mut out, o as isize, 1);
    out
}

pub fn backward_cpu<T: Real>(c: &Config, n: usize, inp: &[T], weight: &[T], dout: &[T], need_dinp: bool) -> Grads<T> {
    let (i, o) = (c.in_features, c.out_features);
    let mut dweight = vec![T::zero(); o * i];
    // dW (OUT, IN) = doutᵀ (OUT, N) · inp (N, IN)
    T::gemm(o, n, i, T::one(), dout, 1, o as isize, inp, i as isize, 1, T::zero(), &mut dweight, i as isize, 1);
    let dinp = need_dinp.then(|| {
        let mut d = vec![T::zero(); n * i];
        // dinp (N, IN) = dout (N, OUT) · W (OUT, IN)
        T::gemm(n, o, i, T::one(), dout, o as isize, 1, weight, i as isize, 1, T::zero(), &mut d, i as isize, 1);
        d
    });
    let dbias = c.bias.then(|| bias::backward_cpu(dout, n, o, 1));
    Grads { dinp, dweight, dbias }
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub M: u32,
    pub N: u32,
    pub K: u32,
    pub has_bias: u32,
    pub sam: u32,
    pub sak: u32,
    pub sbk: u32,
    pub sbn: u32,
    pub splits: u32,
    pub chunk: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!(
        "matmul",
        MatmulParams,
        [M, N, K, has_bias, sam, sak, sbk, sbn, splits, chunk, _pad0, _pad1]
    )]
}

/// c (m, n) = a·b (+ bias) where a[i, k] = a[i·sa.0 + k·sa.1] and b[k, j] = b[k·sb.0 + j·sb.1].
/// On GPUs with more cores than the product has tiles, k is split and the splits summed after.
#[allow(clippy::too_many_arguments)]
pub fn matmul_gpu(
    gpu: &Gpu,
    label: &str,
    (m, n, k): (usize, usize, usize),
    a: &View,
    sa: (usize, usize),
    b: &View,
    sb: (usize, usize),
    bias: Option<&View>,
    c: &View,
) -> Result<Program> {
    let u = |v: usize| v as u32;
    let tiles = m.div_ceil(4) * n.div_ceil(4);
    let splits = sum_splits::choose(gpu, tiles, k.div_ceil(16), m * n);
    let chunk = k.div_ceil(splits);
    let splits = k.div_ceil(chunk).max(1);
    let p = MatmulParams {
        M: u(m),
        N: u(n),
        K: u(k),
        has_bias: bias.is_some() as u32,
        sam: u(sa.0),
        sak: u(sa.1),
        sbk: u(sb.0),
        sbn: u(sb.1),
        splits: u(splits),
        chunk: u(chunk),
        _pad0: 0,
        _pad1: 0,
    };
    let mut prog = Program::default();
    let groups = (tiles * splits).div_ceil(64) as u64;
    let flops = 2 * (m * n * k) as u64;
    if splits == 1 {
        prog.push(Kernel::new(gpu, "matmul", label, &p, &[a, b, bias.unwrap_or(a), c], groups)?.flops(flops));
    } else {
        let part = gpu.zeros(&format!("{label}.splits"), (splits * m * n) as u64)?;
        prog.push(Kernel::new(gpu, "matmul", label, &p, &[a, b, bias.unwrap_or(a), &part], groups)?.flops(flops));
        prog.push(sum_splits::gpu(gpu, label, &part, c, splits)?);
    }
    Ok(prog)
}

pub fn forward_gpu(
    gpu: &Gpu,
    label: &str,
    c: &Config,
    n: usize,
    inp: &View,
    weight: &View,
    bias: Option<&View>,
    out: &View,
) -> Result<Program> {
    let (i, o) = (c.in_features, c.out_features);
    matmul_gpu(gpu, label, (n, o, i), inp, (i, 1), weight, (1, i), bias, out)
}

#[allow(clippy::too_many_arguments)]
pub fn backward_gpu(
    gpu: &Gpu,
    label: &str,
    c: &Config,
    n: usize,
    inp: &View,
    weight: &View,
    dout: &View,
    dinp: Option<&View>,
    dweight: &View,
    dbias: Option<&View>,
) -> Result<Program> {
    let (i, o) = (c.in_features, c.out_features);
    let mut prog = Program::default();
    prog.extend(matmul_gpu(gpu, &format!("{label}.dweight"), (o, i, n), dout, (1, o), inp, (i, 1), None, dweight)?);
    if let Some(db) = dbias {
        prog.push(bias::backward_gpu(gpu, label, dout, db, n, o, 1)?);
    }
    if let Some(dinp) = dinp {
        prog.extend(matmul_gpu(gpu, &format!("{label}.dinp"), (n, i, o), dout, (o, 1), weight, (i, 1), None, dinp)?);
    }
    Ok(prog)
}
