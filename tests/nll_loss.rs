//! NLLLoss (over LogSoftmax, as PyTorch users combine them): CPU vs finite differences, CPU and
//! GPU vs PyTorch (weights, ignore_index, 4-D input), GPU vs CPU, bad input.

mod common;
use common::*;
use wgrad::ops::{log_softmax, nll_loss::*};

use wgrad::testing::assert_close;
use wgrad::Reduction;

fn options(c: &Case) -> Options {
    Options {
        weight: c.has("weight").then(|| c.f32("weight").1),
        ignore_index: c.meta.get("ignore_index").and_then(|v| v.as_i64()).unwrap_or(-100),
        reduction: reduction_of(c),
    }
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(5);
    let dims = (5, 4, 3);
    let x = to_f64(&uniform(&mut r, 60, -3.0, 3.0));
    let tgt: Vec<i64> = (0..15).map(|i| if i % 4 == 1 { -100 } else { (i * 7 % 4) as i64 }).collect();
    for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
        let o = Options { weight: Some(vec![0.5, 1.0, 2.0, 1.5]), reduction: red, ..Default::default() };
        let outn = forward_cpu(&x, &tgt, &o, dims).len();
        let w = to_f64(&uniform(&mut r, outn, -1.0, 1.0));
        let num = numeric_grad(&x, 1e-6, |xs| dot(&w, &forward_cpu(xs, &tgt, &o, dims)));
        assert_close(&format!("nll {red:?} dinp"), &backward_cpu(&tgt, &w, &o, dims), &num, 1e-6, 1e-8);
    }
}

/// Runs log_softmax → nll_loss on the GPU (wgrad::functional); returns (out, dinp w.r.t. the logits).
fn run_gpu(
    gpu: &std::sync::Arc<wgrad::Gpu>,
    x: &[f32],
    tgt: &[i64],
    dout: &[f32],
    o: &Options,
    dims: (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    use wgrad::{functional as F, Device, Tensor};
    let (n, c, s) = dims;
    let (shape, rows) = if s == 1 { (vec![n, c], vec![n]) } else { (vec![n, c, s], vec![n, s]) };
    let device = Device::Gpu(gpu.clone());
    let x = Tensor::new(&shape, x.to_vec()).unwrap();
    let dshape = if o.reduction == Reduction::None { rows.clone() } else { vec![] };
    let dout = Tensor::new(&dshape, dout.to_vec()).unwrap();
    let logp = F::log_softmax(&device, &x, None).unwrap().out;
    let nll = F::nll_loss(&device, &logp, tgt, &rows, o, Some(&dout)).unwrap();
    let ls = F::log_softmax(&device, &x, Some(&nll.dinputs[0])).unwrap();
    (nll.out.data, ls.dinputs[0].data.clone())
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for c in goldens("losses.safetensors", &["nll_on_log_softmax"]) {
        let o = options(&c);
        let (shape, x) = c.f32("inp");
        let (tshape, tgt) = c.i64("tgt");
        let dims = check(&shape, &tshape, &tgt, &o).unwrap();
        let (_, dout) = c.f32("dout");
        let (want, want_d) = (c.f32("out").1, c.f32("dinp").1);
        let logp = log_softmax::forward_cpu(&x, dims);
        let dinp = log_softmax::backward_cpu(&logp, &backward_cpu(&tgt, &dout, &o, dims), dims);
        assert_close(&format!("{} cpu out", c.name), &forward_cpu(&logp, &tgt, &o, dims), &want, 1e-5, 1e-6);
        assert_close(&format!("{} cpu dinp", c.name), &dinp, &want_d, 1e-4, 1e-6);
        if let Some(gpu) = &gpu {
            let (out, dinp) = run_gpu(gpu, &x, &tgt, &dout, &o, dims);
            assert_close(&format!("{} gpu out", c.name), &out, &want, 1e-5, 1e-6);
            assert_close(&format!("{} gpu dinp", c.name), &dinp, &want_d, 1e-4, 1e-6);
        }
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut r = rng(6);
    for &rows in &[1usize, 7, 1025, 300_000] {
        let dims = (rows, 5, 1);
        let x = uniform(&mut r, rows * 5, -3.0, 3.0);
        let tgt: Vec<i64> = (0..rows).map(|i| if i % 9 == 4 { -100 } else { (i % 5) as i64 }).collect();
        for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let o = Options { weight: Some(vec![1.0, 0.5, 2.0, 0.25, 1.5]), reduction: red, ..Default::default() };
            let dout = uniform(&mut r, if red == Reduction::None { rows } else { 1 }, -1.0, 1.0);
            let (out, dinp) = run_gpu(&gpu, &x, &tgt, &dout, &o, dims);
            let logp = log_softmax::forward_cpu(&x, dims);
            let want_d = log_softmax::backward_cpu(&logp, &backward_cpu(&tgt, &dout, &o, dims), dims);
            assert_close(&format!("rows={rows} {red:?} out"), &out, &forward_cpu(&logp, &tgt, &o, dims), 1e-5, 1e-6);
            assert_close(&format!("rows={rows} {red:?} dinp"), &dinp, &want_d, 1e-4, 1e-9);
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let o = Options::default();
    let e = check(&[2, 3], &[2], &[0, 3], &o).unwrap_err().to_string();
    assert!(e.contains("NLLLoss") && e.contains("target 3 at index 1") && e.contains("C = 3"), "{e}");
    let e = check(&[2, 3], &[3], &[0, 1, 2], &o).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[3]"), "{e}");
    let o = Options { weight: Some(vec![1.0; 4]), ..Default::default() };
    let e = check(&[2, 3], &[2], &[0, 1], &o).unwrap_err().to_string();
    assert!(e.contains("weight has 4 elements"), "{e}");
    assert!(check(&[0, 3], &[0], &[], &Options::default()).unwrap_err().to_string().contains("empty"));
    // ignore_index itself is fine even though it is out of range.
    check(&[2, 3], &[2], &[-100, 2], &Options::default()).unwrap();
}
