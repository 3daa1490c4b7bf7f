//! ReLU: CPU (f64) vs finite differences, CPU and GPU vs PyTorch (exact zeros get gradient 0, NaN
//! passes through), GPU vs CPU at many lengths.

mod common;
use common::layer::*;
use common::*;
use wgrad::functional::Call;
use wgrad::ops::relu::{backward_cpu, forward_cpu, ReLU};
use wgrad::testing::assert_close;

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(20);
    // Away from the kink at 0, where the derivative is undefined.
    let x: Vec<f64> = uniform(&mut r, 40, 0.1, 2.0)
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 2 == 0 { v as f64 } else { -v as f64 })
        .collect();
    let dout = to_f64(&uniform(&mut r, 40, -1.0, 1.0));
    let f = |x: &[f64]| {
        let mut out = vec![0.0; x.len()];
        forward_cpu(&mut out, x);
        out
    };
    let mut dinp = vec![0.0; 40];
    backward_cpu(&mut dinp, &dout, &f(&x));
    assert_close("relu dinp", &dinp, &numeric_grad(&x, 1e-6, |v| dot(&dout, &f(v))), 1e-6, 1e-8);
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("relu_add.safetensors", &["relu"]) {
        let (x, dout) = (tensor(&c, "inp"), tensor(&c, "dout"));
        let want = Want { out: c.f32("out").1, dinputs: vec![c.f32("dinp").1], ..Want::default() };
        check_devices(&c.name, &ReLU, &[&x], &[], &dout, Call::default(), &want, ELEMENTWISE);
    }
}

#[test]
fn gpu_matches_cpu_at_many_lengths() {
    // CPU adapters take four elements per invocation where the length is a multiple of 4 (the
    // kernel's `_vec4` variant), a GPU (one that splits reductions) one.
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        at_many_lengths(&gpu);
    }
}

fn at_many_lengths(gpu: &std::sync::Arc<wgrad::Gpu>) {
    let mut r = rng(21);
    for &n in LENGTHS {
        let x = rand_tensor(&mut r, &[n], -1.0, 1.0);
        let dout = rand_tensor(&mut r, &[n], -1.0, 1.0);
        gpu_matches_cpu(
            &format!("relu n={n} (split target {})", gpu.split_target()),
            gpu,
            &ReLU,
            &[&x],
            &[],
            &dout,
            Call::default(),
            ELEMENTWISE,
        );
    }
}

/// NaN passes through where the GPU takes four elements per invocation (the kernels' `_vec4`
/// variants, on CPU adapters, where the length is a multiple of 4) as where it takes one.
#[test]
fn nan_passes_through_four_elements_at_a_time() {
    let x = vec![1.0, f32::NAN, -2.0, 0.0, -0.0, 3.0, -f32::NAN, -1.0];
    let dout = vec![0.5, -1.0, 2.0, 3.0, -4.0, 5.0, 6.0, 7.0];
    let mut out = vec![0.0; 8];
    forward_cpu(&mut out, &x);
    let mut dinp = vec![0.0; 8];
    backward_cpu(&mut dinp, &dout, &out);
    assert!(out[1].is_nan() && out[6].is_nan(), "cpu: {out:?}");
    let want = Want { out, dinputs: vec![dinp], ..Want::default() };
    let (x, dout) = (wgrad::Tensor::new(&[2, 4], x).unwrap(), wgrad::Tensor::new(&[2, 4], dout).unwrap());
    check_devices("relu with NaN, 8 elements", &ReLU, &[&x], &[], &dout, Call::default(), &want, ELEMENTWISE);
}
