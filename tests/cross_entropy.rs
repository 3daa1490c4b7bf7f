//! CrossEntropyLoss: the tutorial's 1.1019, CPU vs finite differences, CPU and GPU vs PyTorch
//! (weights, ignore_index, label smoothing, probability targets, 4-D), GPU vs CPU, bad input.

mod common;
use common::*;
use wgrad::ops::cross_entropy::*;
use wgrad::testing::assert_close;
use wgrad::Reduction;

fn options(c: &Case) -> Options {
    Options {
        weight: c.has("weight").then(|| c.f32("weight").1),
        ignore_index: c.meta.get("ignore_index").and_then(|v| v.as_i64()).unwrap_or(-100),
        reduction: reduction_of(c),
        label_smoothing: c.meta.get("label_smoothing").and_then(|v| v.as_f64()).unwrap_or(0.0) as f32,
    }
}

enum Owned {
    Class(Vec<i64>),
    Prob(Vec<f32>),
}

impl Owned {
    fn targets(&self) -> Targets<'_, f32> {
        match self {
            Owned::Class(t) => Targets::Class(t),
            Owned::Prob(p) => Targets::Prob(p),
        }
    }
}

/// Forward + backward on the GPU; returns (out, dinp).
fn run_gpu(
    gpu: &std::sync::Arc<wgrad::Gpu>,
    x: &[f32],
    tgt: Targets<'_, f32>,
    dout: &[f32],
    o: &Options,
    dims: (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let (n, c, s) = dims;
    let shape = if s == 1 { vec![n, c] } else { vec![n, c, s] };
    let rows: Vec<usize> = if s == 1 { vec![n] } else { vec![n, s] };
    let tgt_shape = if matches!(tgt, Targets::Prob(_)) { shape.clone() } else { rows.clone() };
    let dshape = if o.reduction == Reduction::None { rows } else { vec![] };
    let x = wgrad::Tensor::new(&shape, x.to_vec()).unwrap();
    let dout = wgrad::Tensor::new(&dshape, dout.to_vec()).unwrap();
    let r = wgrad::functional::cross_entropy(&wgrad::Device::Gpu(gpu.clone()), &x, tgt, &tgt_shape, o, Some(&dout))
        .unwrap();
    (r.out.data, r.dinputs[0].data.clone())
}

#[test]
fn tutorial_value() {
    let x = [0.1f32, 0.2, 0.3];
    let (loss, _) = forward_cpu(&x, Targets::Class(&[1]), &Options::default(), (1, 3, 1));
    assert!((loss[0] - 1.1019).abs() < 1e-4, "CrossEntropyLoss([[0.1, 0.2, 0.3]], [1]) = {}", loss[0]);
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(7);
    let dims = (4, 5, 2);
    let x = to_f64(&uniform(&mut r, 40, -3.0, 3.0));
    let cls: Vec<i64> = vec![0, 4, -100, 2, 1, 3, 3, -100];
    let prob: Vec<f64> = to_f64(&uniform(&mut r, 40, 0.0, 1.0));
    for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
        for ls in [0.0, 0.3] {
            let o = Options {
                weight: Some(vec![0.5, 1.0, 2.0, 1.5, 0.7]),
                reduction: red,
                label_smoothing: ls,
                ..Default::default()
            };
            for tgt in [Targets::Class(&cls[..]), Targets::Prob(&prob[..])] {
                let (out, logp) = forward_cpu(&x, tgt, &o, dims);
                let w = to_f64(&uniform(&mut r, out.len(), -1.0, 1.0));
                let num = numeric_grad(&x, 1e-6, |xs| dot(&w, &forward_cpu(xs, tgt, &o, dims).0));
                let ana = backward_cpu(&logp, tgt, &w, &o, dims);
                assert_close(&format!("ce {red:?} ls={ls} {tgt:?} dinp"), &ana, &num, 1e-6, 1e-8);
            }
        }
    }
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for c in goldens("losses.safetensors", &["cross_entropy"]) {
        let o = options(&c);
        let (shape, x) = c.f32("inp");
        let prob = c.meta.get("prob").and_then(|v| v.as_bool()).unwrap_or(false);
        let tshape = if prob { c.f32("tgt").0 } else { c.i64("tgt").0 };
        let owned = if prob { Owned::Prob(c.f32("tgt").1) } else { Owned::Class(c.i64("tgt").1) };
        let tgt = owned.targets();
        let dims = check(&shape, &tshape, tgt, &o).unwrap();
        let (_, dout) = c.f32("dout");
        let (want, want_d) = (c.f32("out").1, c.f32("dinp").1);
        let (out, logp) = forward_cpu(&x, tgt, &o, dims);
        assert_close(&format!("{} cpu out", c.name), &out, &want, 1e-5, 1e-6);
        assert_close(&format!("{} cpu dinp", c.name), &backward_cpu(&logp, tgt, &dout, &o, dims), &want_d, 1e-4, 1e-6);
        if let Some(gpu) = &gpu {
            let (out, dinp) = run_gpu(gpu, &x, tgt, &dout, &o, dims);
            assert_close(&format!("{} gpu out", c.name), &out, &want, 1e-5, 1e-6);
            assert_close(&format!("{} gpu dinp", c.name), &dinp, &want_d, 1e-4, 1e-6);
        }
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut r = rng(8);
    // One element; C not a multiple of 64; C > 64; rows past 65,535 (2-D grid); over 1M elements.
    for dims in [(1, 1, 1), (7, 3, 5), (3, 130, 1), (70_000, 10, 1), (16, 10, 8192)] {
        let n = dims.0 * dims.1 * dims.2;
        let rows = dims.0 * dims.2;
        let x = uniform(&mut r, n, -5.0, 5.0);
        let cls: Vec<i64> = (0..rows).map(|i| if i % 11 == 3 { -100 } else { (i * 7 % dims.1) as i64 }).collect();
        let prob = uniform(&mut r, n, 0.0, 1.0);
        for red in [Reduction::None, Reduction::Mean] {
            let o = Options { reduction: red, label_smoothing: 0.1, ..Default::default() };
            for tgt in [Targets::Class(&cls[..]), Targets::Prob(&prob[..])] {
                let dout = uniform(&mut r, if red == Reduction::None { rows } else { 1 }, -1.0, 1.0);
                let (out, dinp) = run_gpu(&gpu, &x, tgt, &dout, &o, dims);
                let (want, logp) = forward_cpu(&x, tgt, &o, dims);
                let kind = if matches!(tgt, Targets::Prob(_)) { "prob" } else { "class" };
                assert_close(&format!("{dims:?} {red:?} {kind} out"), &out, &want, 1e-5, 1e-5);
                assert_close(
                    &format!("{dims:?} {red:?} {kind} dinp"),
                    &dinp,
                    &backward_cpu(&logp, tgt, &dout, &o, dims),
                    1e-4,
                    2e-6,
                );
            }
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let t = Targets::<f32>::Class(&[1, 0]);
    let o = Options { label_smoothing: 1.5, ..Default::default() };
    let e = check(&[2, 3], &[2], t, &o).unwrap_err().to_string();
    assert!(e.contains("CrossEntropyLoss") && e.contains("label_smoothing") && e.contains("1.5"), "{e}");
    let o = Options { label_smoothing: -0.1, ..Default::default() };
    assert!(check(&[2, 3], &[2], t, &o).is_err());
    let e = check(&[2, 3], &[2], Targets::<f32>::Class(&[1, 7]), &Options::default()).unwrap_err().to_string();
    assert!(e.contains("target 7 at index 1"), "{e}");
    let e = check(&[2, 3], &[2, 4], Targets::Prob(&[0.0f32; 8]), &Options::default()).unwrap_err().to_string();
    assert!(e.contains("probability targets") && e.contains("[2, 4]"), "{e}");
    let o = Options { weight: Some(vec![1.0; 2]), ..Default::default() };
    assert!(check(&[2, 3], &[2], t, &o).unwrap_err().to_string().contains("weight has 2 elements"));
    assert!(check(&[0, 3], &[0], Targets::<f32>::Class(&[]), &Options::default())
        .unwrap_err()
        .to_string()
        .contains("empty"));
}

#[test]
fn binding_limit_is_an_error_not_a_crash() {
    let Some(gpu) = gpu() else { return };
    // A view claiming more words than one binding may hold is refused before anything is dispatched.
    let x = gpu.zeros("inp", 4).unwrap();
    let huge = wgrad::buffer::View { len: gpu.limits.max_storage_buffer_binding_size / 4 + 1, ..x.clone() };
    let b = GpuBuffers {
        inp: &huge,
        tgt: &x,
        prob_targets: false,
        weight: &x,
        scratch: vec![&x; 4],
        out: &x,
        dout: &x,
        dinp: &x,
    };
    let r = forward_gpu(&gpu, "ce", &b, &Options::default(), (1, 4, 1));
    let e = r.err().expect("an oversized binding must be refused").to_string();
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
}
