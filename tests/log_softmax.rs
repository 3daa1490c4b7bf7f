//! LogSoftmax over dim 1: CPU vs finite differences, CPU and GPU vs PyTorch, GPU vs CPU.

mod common;
use common::*;
use wgrad::ops::log_softmax::*;
use wgrad::testing::assert_close;

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(3);
    for dims in [(3, 5, 1), (2, 4, 6), (1, 1, 1)] {
        let n = dims.0 * dims.1 * dims.2;
        let x = to_f64(&uniform(&mut r, n, -4.0, 4.0));
        let w = to_f64(&uniform(&mut r, n, -1.0, 1.0));
        let num = numeric_grad(&x, 1e-6, |xs| dot(&w, &forward_cpu(xs, dims)));
        let ana = backward_cpu(&forward_cpu(&x, dims), &w, dims);
        assert_close(&format!("log_softmax {dims:?} dinp"), &ana, &num, 1e-6, 1e-8);
    }
}

#[test]
fn stable_for_large_logits() {
    let out = forward_cpu(&[1000.0f32, 0.0, -1000.0], (1, 3, 1));
    assert_close("log_softmax of ±1000", &out, &[0.0f32, -1000.0, -2000.0], 1e-6, 1e-6);
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for c in goldens("losses.safetensors", &["log_softmax"]) {
        let (shape, x) = c.f32("inp");
        let dims = check(&shape).unwrap();
        let (_, dout) = c.f32("dout");
        let (_, want) = c.f32("out");
        let (_, want_d) = c.f32("dinp");
        // Each path's backward reads its own forward's output, as in training.
        let out = forward_cpu(&x, dims);
        assert_close(&format!("{} cpu out", c.name), &out, &want, 1e-5, 1e-6);
        assert_close(&format!("{} cpu dinp", c.name), &backward_cpu(&out, &dout, dims), &want_d, 1e-5, 1e-6);
        if let Some(gpu) = &gpu {
            let (xv, dv) = (gpu.upload("inp", &x).unwrap(), gpu.upload("dout", &dout).unwrap());
            let (ov, dinp) = (gpu.zeros("out", x.len() as u64).unwrap(), gpu.zeros("dinp", x.len() as u64).unwrap());
            forward_gpu(gpu, &c.name, &xv, &ov, dims).unwrap().run(gpu, "fwd").unwrap();
            backward_gpu(gpu, &c.name, &ov, &dv, &dinp, dims).unwrap().run(gpu, "bwd").unwrap();
            assert_close(&format!("{} gpu out", c.name), &gpu.read(&ov).unwrap(), &want, 1e-5, 1e-6);
            assert_close(&format!("{} gpu dinp", c.name), &gpu.read(&dinp).unwrap(), &want_d, 1e-5, 1e-6);
        }
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut r = rng(4);
    // rows × classes: one element, C not a multiple of 64, C > 64 (strided), rows past 65,535 (2-D grid).
    for dims in [(1, 1, 1), (3, 7, 5), (2, 200, 3), (64, 10, 1), (70_000, 3, 1), (4, 1000, 300)] {
        let n = dims.0 * dims.1 * dims.2;
        let x = uniform(&mut r, n, -10.0, 10.0);
        let dout = uniform(&mut r, n, -1.0, 1.0);
        let (xv, dv) = (gpu.upload("inp", &x).unwrap(), gpu.upload("dout", &dout).unwrap());
        let (ov, dinp) = (gpu.zeros("out", n as u64).unwrap(), gpu.zeros("dinp", n as u64).unwrap());
        forward_gpu(&gpu, "ls", &xv, &ov, dims).unwrap().run(&gpu, "fwd").unwrap();
        backward_gpu(&gpu, "ls", &ov, &dv, &dinp, dims).unwrap().run(&gpu, "bwd").unwrap();
        let out = forward_cpu(&x, dims);
        assert_close(&format!("{dims:?} out"), &gpu.read(&ov).unwrap(), &out, 1e-5, 1e-5);
        assert_close(
            &format!("{dims:?} dinp"),
            &gpu.read(&dinp).unwrap(),
            &backward_cpu(&out, &dout, dims),
            1e-4,
            1e-5,
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    assert!(check(&[5]).unwrap_err().to_string().contains("LogSoftmax"));
    assert!(check(&[2, 0]).unwrap_err().to_string().contains("empty"));
}
