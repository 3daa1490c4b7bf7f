//! One helper for every layer (tinygrad's helper_test_op): run an op through wgrad::functional
//! on the CPU path and on the GPU, and compare output, input gradients, parameter gradients and
//! state with what PyTorch (or the CPU path) gave, naming the case, tensor and worst element.

use super::*;
use wgrad::functional::{layer, Call, Output};
use wgrad::ops::interface::Op;
use wgrad::testing::assert_close;
use wgrad::{Device, Tensor};

/// What a call should give; empty vectors are not checked.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub out: Vec<f32>,
    pub dinputs: Vec<Vec<f32>>,
    pub dparams: Vec<Vec<f32>>,
    pub state: Vec<Vec<f32>>,
}

impl Want {
    pub fn of(o: &Output) -> Want {
        Want {
            out: o.out.data.clone(),
            dinputs: o.dinputs.iter().map(|t| t.data.clone()).collect(),
            dparams: o.dparams.iter().map(|t| t.data.clone()).collect(),
            state: o.state.iter().map(|t| t.data.clone()).collect(),
        }
    }
}

/// Relative tolerances: forward, gradients; errors on elements below `floor` × the tensor's
/// largest magnitude are judged against that.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub out: f64,
    pub grad: f64,
    pub floor: f64,
}

pub const ELEMENTWISE: Tol = Tol { out: 1e-5, grad: 1e-5, floor: 1e-6 };
pub const REDUCTION: Tol = Tol { out: 1e-4, grad: 1e-4, floor: 1e-5 };

pub fn compare(name: &str, got: &Output, want: &Want, tol: Tol) {
    let check = |what: &str, g: &[f32], w: &[f32], rtol: f64| {
        if !w.is_empty() {
            assert_close(&format!("{name} {what}"), g, w, rtol, atol_of(w, tol.floor).max(1e-30));
        }
    };
    check("out", &got.out.data, &want.out, tol.out);
    for (i, w) in want.dinputs.iter().enumerate() {
        check(&format!("dinput {i}"), &got.dinputs[i].data, w, tol.grad);
    }
    for (i, w) in want.dparams.iter().enumerate() {
        check(&format!("dparam {i}"), &got.dparams[i].data, w, tol.grad);
    }
    for (i, w) in want.state.iter().enumerate() {
        check(&format!("state {i}"), &got.state[i].data, w, tol.out);
    }
}

/// Runs `op` on `device` with an upstream gradient.
pub fn run(device: &Device, op: &dyn Op, inputs: &[&Tensor], state: &[&Tensor], dout: &Tensor, call: Call) -> Output {
    layer(device, op, inputs, state, Some(dout), call).unwrap_or_else(|e| panic!("{}: {e}", op.describe()))
}

/// Checks the CPU path and (when there is an adapter) the GPU against `want`.
#[allow(clippy::too_many_arguments)]
pub fn check_devices(
    name: &str,
    op: &dyn Op,
    inputs: &[&Tensor],
    state: &[&Tensor],
    dout: &Tensor,
    call: Call,
    want: &Want,
    tol: Tol,
) {
    compare(&format!("{name} cpu"), &run(&Device::Cpu, op, inputs, state, dout, call), want, tol);
    if let Some(g) = gpu() {
        compare(&format!("{name} gpu"), &run(&Device::Gpu(g), op, inputs, state, dout, call), want, tol);
    }
}

/// Checks the GPU against the CPU path on the same call.
#[allow(clippy::too_many_arguments)]
pub fn gpu_matches_cpu(
    name: &str,
    gpu: &std::sync::Arc<wgrad::Gpu>,
    op: &dyn Op,
    inputs: &[&Tensor],
    state: &[&Tensor],
    dout: &Tensor,
    call: Call,
    tol: Tol,
) {
    let want = Want::of(&run(&Device::Cpu, op, inputs, state, dout, call));
    compare(&format!("{name} gpu vs cpu"), &run(&Device::Gpu(gpu.clone()), op, inputs, state, dout, call), &want, tol);
}

/// A seeded tensor of uniform values in [lo, hi).
pub fn rand_tensor(r: &mut rand_chacha::ChaCha8Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    Tensor::new(shape, uniform(r, shape.iter().product(), lo, hi)).unwrap()
}

/// A golden tensor as a Tensor.
pub fn tensor(c: &Case, key: &str) -> Tensor {
    let (shape, data) = c.f32(key);
    Tensor::new(&shape, data).unwrap()
}
