//! L1Loss: CPU vs finite differences, CPU and GPU vs PyTorch, GPU vs CPU at many lengths.

mod common;
use common::elementwise_loss::Suite;
use wgrad::ops::l1_loss::*;

const SUITE: Suite = Suite {
    golden_op: "l1",
    forward64: forward_cpu::<f64>,
    backward64: backward_cpu::<f64>,
    forward32: forward_cpu::<f32>,
    backward32: backward_cpu::<f32>,
    call: wgrad::functional::l1_loss,
};

#[test]
fn cpu_backward_matches_finite_differences() {
    SUITE.cpu_matches_finite_differences();
}

#[test]
fn cpu_matches_pytorch() {
    SUITE.cpu_matches_pytorch();
}

#[test]
fn gpu_matches_cpu() {
    SUITE.gpu_matches_cpu();
}

#[test]
fn gpu_matches_pytorch() {
    SUITE.gpu_matches_pytorch();
}

#[test]
fn bad_shapes_are_errors() {
    let e = check(&[2, 3], &[3, 2]).unwrap_err().to_string();
    assert!(e.contains("L1Loss") && e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
    let e = check(&[0, 3], &[0, 3]).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
}
