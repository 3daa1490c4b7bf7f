//! The pointwise activations of torch.nn besides ReLU (ops::relu, which the CPU path folds into
//! the convolution before it): nn.LeakyReLU, nn.ELU, nn.GELU (both approximations), nn.SiLU,
//! nn.Sigmoid and nn.Tanh, with PyTorch's arguments and defaults. Each is out = f(inp) element by
//! element, NaN passed through, and its backward dinp = dout · f'(inp), from the input. Where
//! PyTorch's backward subtracts numbers close to 1 (Sigmoid's s · (1 − s), Tanh's 1 − y², SiLU's
//! and GELU-tanh's alike), these multiply by exp(−z) instead ([`Function::derivative`]): the same
//! derivative, without losing its digits on the tails.
//! Shaders: activation_forward.wgsl, activation_backward.wgsl: one kernel each, the function a
//! uniform parameter ([`Function::code`]).

use super::interface::{CpuBackward, CpuForward, Flops, GpuIo, Mode, Node, Op, Reads};
use super::{py_float, ParamsLayout};
use crate::buffer::View;
use crate::cpu::{Real, PAR_CHUNK};
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Result};
use rayon::prelude::*;

crate::shaders!(activation_forward: 256, activation_backward: 256);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    /// [`Function::code`].
    pub function: u32,
    /// LeakyReLU's negative_slope, ELU's alpha.
    pub alpha: f32,
    pub _pad0: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| crate::params_layout!(s, Params, [n, function, alpha, _pad0]);
    vec![l("activation_forward"), l("activation_backward")]
}

/// An activation and its argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Function {
    /// x where x > 0, else negative_slope · x.
    LeakyReLU {
        negative_slope: f32,
    },
    /// x where x > 0, else alpha · (exp(x) − 1).
    Elu {
        alpha: f32,
    },
    /// x · Φ(x), Φ the standard normal's CDF (`approximate='none'`).
    Gelu,
    /// 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))) (`approximate='tanh'`).
    GeluTanh,
    /// x · sigmoid(x).
    Silu,
    /// 1 / (1 + exp(−x)).
    Sigmoid,
    Tanh,
}

/// √(2/π), GELU's tanh approximation's scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic term's weight in GELU's tanh approximation.
const GELU_CUBIC: f64 = 0.044715;
/// 1/√(2π), the standard normal's density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Function {
    /// The code the shaders switch on (activation_forward.wgsl lists them).
    pub fn code(self) -> u32 {
        match self {
            Function::LeakyReLU { .. } => 0,
            Function::Elu { .. } => 1,
            Function::Gelu => 2,
            Function::GeluTanh => 3,
            Function::Silu => 4,
            Function::Sigmoid => 5,
            Function::Tanh => 6,
        }
    }

    fn alpha(self) -> f32 {
        match self {
            Function::LeakyReLU { negative_slope } => negative_slope,
            Function::Elu { alpha } => alpha,
            _ => 0.0,
        }
    }

    /// PyTorch's repr: `LeakyReLU(negative_slope=0.01)`, `GELU(approximate='none')`, `SiLU()`.
    pub fn describe(self) -> String {
        match self {
            Function::LeakyReLU { negative_slope } => {
                format!("LeakyReLU(negative_slope={})", float_repr(negative_slope))
            }
            Function::Elu { alpha } => format!("ELU(alpha={})", float_repr(alpha)),
            Function::Gelu => "GELU(approximate='none')".into(),
            Function::GeluTanh => "GELU(approximate='tanh')".into(),
            Function::Silu => "SiLU()".into(),
            Function::Sigmoid => "Sigmoid()".into(),
            Function::Tanh => "Tanh()".into(),
        }
    }

    /// f(x), in T's precision (Φ through libm's erfc).
    pub fn apply<T: Real>(self, x: T) -> T {
        let one = T::one();
        match self {
            Function::LeakyReLU { negative_slope } => {
                if x > T::zero() {
                    x
                } else {
                    x * T::of(negative_slope as f64)
                }
            }
            Function::Elu { alpha } => {
                if x > T::zero() {
                    x
                } else {
                    T::of(alpha as f64) * x.exp_m1()
                }
            }
            Function::Gelu => x * normal_cdf(x),
            // 0.5 · x · (1 + tanh(u)) = x · sigmoid(2u): the same function, without 1 + tanh(u)'s
            // cancellation where u is negative.
            Function::GeluTanh => x / (one + (T::of(-2.0) * gelu_tanh_inner(x)).exp()),
            Function::Silu => x / (one + (-x).exp()),
            Function::Sigmoid => one / (one + (-x).exp()),
            Function::Tanh => x.fast_tanh(),
        }
    }

    /// f'(x). Where PyTorch's formula subtracts numbers close to 1 (1 − sigmoid(x)², 1 − tanh²)
    /// this one multiplies by exp(−z) instead: the same derivative, accurate on both tails.
    pub fn derivative<T: Real>(self, x: T) -> T {
        let one = T::one();
        match self {
            Function::LeakyReLU { negative_slope } => {
                if x > T::zero() {
                    one
                } else {
                    T::of(negative_slope as f64)
                }
            }
            Function::Elu { alpha } => {
                if x > T::zero() {
                    one
                } else {
                    T::of(alpha as f64) * x.exp()
                }
            }
            Function::Gelu => {
                let pdf = T::of(INV_SQRT_2PI) * (T::of(-0.5) * x * x).exp();
                normal_cdf(x) + x * pdf
            }
            // d/dx x · sigmoid(2u) = s + x · 2 · sigmoid'(2u) · u'.
            Function::GeluTanh => {
                let (s, e) = sigmoid_parts(T::of(2.0) * gelu_tanh_inner(x));
                let du = T::of(SQRT_2_OVER_PI) * (one + T::of(3.0 * GELU_CUBIC) * x * x);
                s + T::of(2.0) * x * e * s * s * du
            }
            Function::Silu => {
                let (s, e) = sigmoid_parts(x);
                s * (one + x * e * s)
            }
            Function::Sigmoid => {
                let (s, e) = sigmoid_parts(x);
                e * s * s
            }
            // 1 − tanh(x)² = 4 · sigmoid'(2x).
            Function::Tanh => {
                let (s, e) = sigmoid_parts(T::of(2.0) * x);
                T::of(4.0) * e * s * s
            }
        }
    }

    /// Arithmetic per element, counted as one per add, multiply or function call.
    fn flops(self) -> (u64, u64) {
        match self {
            Function::LeakyReLU { .. } => (1, 1),
            Function::Elu { .. } => (3, 3),
            Function::Gelu => (8, 14),
            Function::GeluTanh => (9, 16),
            Function::Silu => (4, 7),
            Function::Sigmoid => (3, 5),
            Function::Tanh => (1, 3),
        }
    }
}

/// A float argument as Python's repr writes a float (`1.0`, where [`py_float`] follows PyTorch's
/// optimizers, whose integer defaults print as `0`).
fn float_repr(v: f32) -> String {
    let s = py_float(v);
    if v.is_nan() {
        "nan".into()
    } else if s.chars().all(|c| c.is_ascii_digit() || c == '-') {
        s + ".0"
    } else {
        s
    }
}

/// √(2/π) · (x + 0.044715 · x³), the argument of GELU's tanh approximation.
fn gelu_tanh_inner<T: Real>(x: T) -> T {
    T::of(SQRT_2_OVER_PI) * (x + T::of(GELU_CUBIC) * x * x * x)
}

/// sigmoid(z) and exp(−z), z first clamped to [−80, 80] so that exp(−z) stays finite in f32 and
/// exp(−z) · sigmoid(z)² (sigmoid's derivative) is a number on both tails (NaN stays NaN).
fn sigmoid_parts<T: Real>(z: T) -> (T, T) {
    let bound = T::of(80.0);
    let z = if z < -bound {
        -bound
    } else if z > bound {
        bound
    } else {
        z
    };
    let e = (-z).exp();
    (T::one() / (T::one() + e), e)
}

/// Φ(x) = erfc(−x/√2) / 2, to T's rounding at both tails.
fn normal_cdf<T: Real>(x: T) -> T {
    T::of(0.5) * (-x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erfc()
}

/// nn.LeakyReLU(negative_slope=0.01).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyReLU {
    pub negative_slope: f32,
}

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU { negative_slope: 0.01 }
    }
}

impl LeakyReLU {
    pub fn new(negative_slope: f32) -> Self {
        LeakyReLU { negative_slope }
    }
}

/// nn.ELU(alpha=1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ELU {
    pub alpha: f32,
}

impl Default for ELU {
    fn default() -> Self {
        ELU { alpha: 1.0 }
    }
}

impl ELU {
    pub fn new(alpha: f32) -> Self {
        ELU { alpha }
    }
}

/// GELU's `approximate` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Approximate {
    /// The exact x · Φ(x).
    #[default]
    None,
    /// The tanh formula.
    Tanh,
}

/// nn.GELU(approximate='none'); `GELU::new().approximate(Approximate::Tanh)` for the tanh formula.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GELU {
    pub approximate: Approximate,
}

impl GELU {
    pub fn new() -> Self {
        GELU::default()
    }
    pub fn approximate(self, approximate: Approximate) -> Self {
        GELU { approximate }
    }
}

/// nn.SiLU() (x · sigmoid(x), also called swish).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiLU;

/// nn.Sigmoid().
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sigmoid;

/// nn.Tanh().
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tanh;

/// The layer's function.
pub trait Activation {
    fn function(&self) -> Function;
}

impl Activation for LeakyReLU {
    fn function(&self) -> Function {
        Function::LeakyReLU { negative_slope: self.negative_slope }
    }
}
impl Activation for ELU {
    fn function(&self) -> Function {
        Function::Elu { alpha: self.alpha }
    }
}
impl Activation for GELU {
    fn function(&self) -> Function {
        match self.approximate {
            Approximate::None => Function::Gelu,
            Approximate::Tanh => Function::GeluTanh,
        }
    }
}
impl Activation for SiLU {
    fn function(&self) -> Function {
        Function::Silu
    }
}
impl Activation for Sigmoid {
    fn function(&self) -> Function {
        Function::Sigmoid
    }
}
impl Activation for Tanh {
    fn function(&self) -> Function {
        Function::Tanh
    }
}

macro_rules! activation_ops {
    ($($layer:ty),*) => {$(
        impl Op for $layer {
            fn describe(&self) -> String {
                self.function().describe()
            }
            fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
                let f = self.function();
                ensure_op!(f.alpha().is_finite(), f.describe(), "its argument must be a finite number");
                Ok(Box::new(Planned { f, shape: inputs[0].to_vec() }))
            }
        }
    )*};
}
activation_ops!(LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh);

struct Planned {
    f: Function,
    shape: Vec<usize>,
}

impl Node for Planned {
    fn out_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn flops(&self) -> Flops {
        let n = self.shape.iter().product::<usize>() as u64;
        let (forward, backward) = self.f.flops();
        Flops { forward: n * forward, backward_input: n * backward, backward_params: 0 }
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: true, output: false }
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        forward_cpu(self.f, io.out, io.inputs[0]);
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        if let Some(dinp) = io.dinputs.into_iter().next().flatten() {
            backward_cpu(self.f, dinp, io.dout, io.inputs[0]);
        }
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        forward_gpu(gpu, self.f, io.label, io.out, io.inputs[0])
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        match io.dinput(0) {
            Some(dinp) => backward_gpu(gpu, self.f, io.label, dinp, io.dout.unwrap(), io.inputs[0]),
            None => Ok(Program::default()),
        }
    }
}

/// out = f(inp), overwritten.
pub fn forward_cpu<T: Real>(f: Function, out: &mut [T], inp: &[T]) {
    out.par_chunks_mut(PAR_CHUNK).zip(inp.par_chunks(PAR_CHUNK)).for_each(|(o, x)| {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = f.apply(x);
        }
    });
}

/// dinp = dout · f'(inp), overwritten.
pub fn backward_cpu<T: Real>(f: Function, dinp: &mut [T], dout: &[T], inp: &[T]) {
    dinp.par_chunks_mut(PAR_CHUNK).zip(dout.par_chunks(PAR_CHUNK).zip(inp.par_chunks(PAR_CHUNK))).for_each(
        |(d, (g, x))| {
            for ((d, &g), &x) in d.iter_mut().zip(g).zip(x) {
                *d = g * f.derivative(x);
            }
        },
    );
}

fn params(f: Function, n: u64) -> Params {
    Params { n: n as u32, function: f.code(), alpha: f.alpha(), _pad0: 0 }
}

pub fn forward_gpu(gpu: &Gpu, f: Function, label: &str, out: &View, inp: &View) -> Result<Program> {
    let n = out.len;
    let (shader, units) = super::elementwise(gpu, "activation_forward", n);
    let k = Kernel::new(gpu, shader, label, &params(f, units), &[inp, out], Dispatch::Invocations(units))?;
    Ok(k.flops(n * f.flops().0).into())
}

pub fn backward_gpu(gpu: &Gpu, f: Function, label: &str, dinp: &View, dout: &View, inp: &View) -> Result<Program> {
    let n = dinp.len;
    let label = format!("{label}.dinp");
    let (shader, units) = super::elementwise(gpu, "activation_backward", n);
    let k = Kernel::new(gpu, shader, &label, &params(f, units), &[inp, dout, dinp], Dispatch::Invocations(units))?;
    Ok(k.flops(n * f.flops().1).into())
}
