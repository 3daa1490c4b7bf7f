//! The Tudui network against PyTorch: loads PyTorch's state dict, then three SGD steps (lr 0.01,
//! momentum 0.9, weight decay 5e-4) on fixed batches; logits, loss, every gradient and every
//! parameter after each step match PyTorch's, on the GPU and on the CPU path. Also: one submit per
//! training step, and the state dict round trip.

mod common;
use common::*;
use wgrad::graph::Executor;
use wgrad::io::safetensors::File;
use wgrad::optim::{Optimizer, Sgd};
use wgrad::testing::assert_close;
use wgrad::{Device, ExecOptions};

/// How close to PyTorch's f32 numbers: relative error, and the floor (a fraction of the tensor's
/// largest magnitude) below which errors are judged against that floor.
struct Tolerance {
    loss: f64,
    logits: (f64, f64),
    grads: (f64, f64),
    params: (f64, f64),
}

/// f32 on every device: the tolerances of every other parity test.
const F32: Tolerance = Tolerance { loss: 1e-5, logits: (1e-4, 1e-5), grads: (1e-4, 1e-4), params: (1e-4, 1e-5) };

/// Mixed precision (f16 operands, 11 significant bits, f32 accumulation): f16's rounding (2^-11 ≈
/// 4.9e-4 per operand) carried through the network and three steps. Measured on lavapipe: loss
/// 3e-6 relative, logits 4.3e-4 of their largest, parameters 5e-4 of theirs; the convolutions'
/// weight gradients up to 3.6% of their largest (sums over 8,192 pixels of terms that mostly
/// cancel, so the operands' rounding weighs more than in the sum's size). Each bound is about 2-5x
/// what was measured.
const MIXED: Tolerance = Tolerance { loss: 1e-4, logits: (1e-2, 2e-3), grads: (5e-2, 8e-2), params: (1e-2, 2e-3) };

/// The Winograd kernels round to about 1e-5 of a layer's largest output (tests/conv2d.rs), and a
/// max-pool window's two largest inputs are now and then closer than that: the gradient then goes
/// to the other input, which moved `conv1`'s weight gradient by up to 6e-3 of its largest after one
/// step and `conv2`'s updated weights by 7e-5 of theirs, and the steps after meet more such windows
/// (3.4% of `conv3`'s weight gradient after three; tests/models.rs says more). So one step, the
/// gradients and weights held to about 3x what was measured, the logits and loss as in f32.
const WINOGRAD: Tolerance = Tolerance { loss: 1e-5, logits: (1e-4, 1e-5), grads: (2e-2, 2e-2), params: (1e-3, 2e-4) };

fn parity(device: Device) {
    match &device {
        Device::Gpu(g) if g.conv_kernels() == wgrad::ConvKernels::Winograd => parity_within(device, &WINOGRAD, 1),
        _ => parity_within(device, &F32, 3),
    }
}

fn parity_within(device: Device, tol: &Tolerance, steps: usize) {
    let model = tudui_from_pytorch();
    let sgd = Optimizer::Sgd(Sgd::new(0.01).momentum(0.9).weight_decay(5e-4));
    let mut ex =
        wgrad::executor(&device, &model, 8, ExecOptions { optimizer: Some(sgd), ..Default::default() }).unwrap();
    let path = data_path("tudui_sgd_expected.safetensors");
    let want = File::read(&path).unwrap();
    let f = |k: &str| want.f32(&path, k).unwrap().1.to_vec();
    let dev = ex.describe();
    for i in 1..=steps {
        let (images, targets) = tudui_batch(i);
        let loss = ex.step(&images, &targets, true).unwrap().unwrap();
        assert_close(&format!("{dev}: loss.{i}"), &[loss], &f(&format!("loss.{i}")), tol.loss, 1e-6);
        let logits = f(&format!("logits.{i}"));
        let (rtol, frac) = tol.logits;
        assert_close(&format!("{dev}: logits.{i}"), &ex.logits().unwrap(), &logits, rtol, atol_of(&logits, frac));
        let (grads, params) = (ex.grads().unwrap(), ex.params().unwrap());
        for (k, spec) in grads.specs.iter().enumerate() {
            let g = f(&format!("grad.{i}.{}", spec.key));
            let (rtol, frac) = tol.grads;
            assert_close(&format!("{dev}: grad.{i}.{}", spec.key), grads.get(k), &g, rtol, atol_of(&g, frac));
            let p = f(&format!("param.{i}.{}", spec.key));
            let (rtol, frac) = tol.params;
            assert_close(&format!("{dev}: param.{i}.{}", spec.key), params.get(k), &p, rtol, atol_of(&p, frac));
        }
    }
}

#[test]
fn cpu_matches_pytorch_over_three_sgd_steps() {
    parity(Device::Cpu);
}

#[test]
fn gpu_matches_pytorch_over_three_sgd_steps() {
    let Some(gpu) = gpu() else { return };
    parity(Device::Gpu(gpu));
}

#[test]
fn gpu_with_split_reductions_matches_pytorch() {
    let Some(gpu) = splitting_gpu() else { return };
    parity(Device::Gpu(gpu));
}

#[test]
fn gpu_with_the_other_conv_kernels_matches_pytorch() {
    for gpu in other_conv_kernels_gpus(false) {
        parity(Device::Gpu(gpu));
    }
}

#[test]
fn mixed_precision_gpu_matches_pytorch_within_f16_tolerance() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    parity_within(Device::Gpu(gpu), &MIXED, 3);
}

/// Mixed precision on the other kernel families too: on cooperative matrices (Mesa 26's lavapipe
/// in CI), `conv2` and `conv3` run all three products on the padded kernels.
#[test]
fn mixed_precision_on_the_other_conv_kernels_matches_pytorch_within_f16_tolerance() {
    for gpu in other_conv_kernels_gpus(false) {
        match gpu.set_precision(wgrad::Precision::Mixed) {
            Ok(()) => parity_within(Device::Gpu(gpu), &MIXED, 3),
            Err(e) => return skip(&format!("the adapter cannot run mixed precision: {e}"), "WGRAD_REQUIRE_F16"),
        }
    }
}

#[test]
fn a_training_step_is_one_submit() {
    // A GPU of its own: the shared one counts the submits of tests running beside this one.
    let Some(_) = gpu() else { return };
    let gpu = std::sync::Arc::new(wgrad::Gpu::default_adapter().unwrap().unwrap());
    let model = wgrad::models::tudui(1);
    let mut ex = wgrad::graph::gpu::GpuExecutor::new(
        gpu.clone(),
        &model,
        4,
        ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.01))), ..Default::default() },
    )
    .unwrap();
    let (images, targets) = (vec![0.5f32; 4 * 3 * 32 * 32], vec![1i64, 2, 3, 4]);
    ex.step(&images, &targets, false).unwrap();
    let before = gpu.submit_count();
    ex.step(&images, &targets, false).unwrap();
    assert_eq!(gpu.submit_count() - before, 1, "a training step without the loss must be one submit");
    let before = gpu.submit_count();
    ex.step(&images, &targets, true).unwrap();
    assert_eq!(gpu.submit_count() - before, 1, "reading the loss must not add a submit");
}

#[test]
fn state_dict_keys_are_pytorchs() {
    let m = wgrad::models::tudui(0);
    let keys: Vec<&str> = m.params.specs.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "model1.conv1.weight",
            "model1.conv1.bias",
            "model1.conv2.weight",
            "model1.conv2.bias",
            "model1.conv3.weight",
            "model1.conv3.bias",
            "model1.fc1.weight",
            "model1.fc1.bias",
            "model1.fc2.weight",
            "model1.fc2.bias"
        ]
    );
    // The file PyTorch wrote has exactly these keys and shapes; a round trip through wgrad keeps them.
    let pt = File::read(&data_path("tudui_init.safetensors")).unwrap();
    let mut from_pt = m.params.clone();
    wgrad::io::state_dict::load_into(&data_path("tudui_init.safetensors"), &mut from_pt).unwrap();
    let dir = tempdir();
    let out = dir.join("sd.safetensors");
    wgrad::io::state_dict::save(&out, &from_pt, None).unwrap();
    let back = File::read(&out).unwrap();
    assert_eq!(back.tensors, pt.tensors, "a state dict written by wgrad must equal PyTorch's");
    // The browser's download is the same file, in memory; PyTorch's bytes load from memory too.
    let bytes = wgrad::io::state_dict::to_bytes(&from_pt, None).unwrap();
    assert_eq!(bytes, std::fs::read(&out).unwrap());
    let mut from_bytes = m.params.clone();
    wgrad::io::state_dict::load_bytes(
        "picked.safetensors",
        &std::fs::read(data_path("tudui_init.safetensors")).unwrap(),
        &mut from_bytes,
    )
    .unwrap();
    assert_eq!(from_bytes, from_pt);
    let e = wgrad::io::state_dict::load_bytes("picked.safetensors", &bytes[..bytes.len() - 1], &mut from_bytes)
        .unwrap_err();
    assert!(e.to_string().starts_with("picked.safetensors: "), "{e}");
}

#[test]
fn mismatched_state_dicts_list_every_problem() {
    let dir = tempdir();
    let p = dir.join("bad.safetensors");
    let m = wgrad::models::tudui(0);
    use wgrad::io::safetensors::Array;
    let mut t = wgrad::io::state_dict::tensors(&m.params, "");
    t.retain(|(k, _)| k != "model1.fc2.bias");
    t[0].1 = Array::F32 { shape: vec![32, 3, 3, 3], data: vec![0.0; 32 * 27] };
    t.push(("model1.fc3.weight".into(), Array::F32 { shape: vec![1], data: vec![0.0] }));
    wgrad::io::safetensors::write(&p, &t, None).unwrap();
    let mut params = m.params.clone();
    let e = wgrad::io::state_dict::load_into(&p, &mut params).unwrap_err().to_string();
    for needle in [
        "bad.safetensors",
        "missing key model1.fc2.bias",
        "model1.conv1.weight has shape [32, 3, 3, 3]",
        "unexpected key model1.fc3.weight",
    ] {
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    }
}

#[test]
fn init_is_pytorchs_uniform_bound_and_seeded() {
    let a = wgrad::models::tudui(7);
    let b = wgrad::models::tudui(7);
    assert_eq!(a.params, b.params);
    assert_ne!(a.params, wgrad::models::tudui(8).params);
    // kaiming_uniform(a=√5) and the bias init are both U(±1/√fan_in).
    for (i, s) in a.params.specs.iter().enumerate() {
        let fan_in: usize = if s.shape.len() == 4 {
            s.shape[1] * s.shape[2] * s.shape[3]
        } else if s.key.ends_with(".bias") {
            0
        } else {
            s.shape[1]
        };
        let v = a.params.get(i);
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        if fan_in > 0 {
            let bound = 1.0 / (fan_in as f32).sqrt();
            assert!(max <= bound && max > 0.9 * bound, "{}: max |w| {max} vs bound {bound}", s.key);
        }
    }
}

#[test]
fn gpu_inference_matches_pytorch_in_one_submit() {
    let Some(_) = gpu() else { return };
    let gpu = std::sync::Arc::new(wgrad::Gpu::default_adapter().unwrap().unwrap());
    let model = tudui_from_pytorch();
    let mut ex = wgrad::graph::gpu::GpuExecutor::new(gpu.clone(), &model, 8, ExecOptions::default()).unwrap();
    let (images, _) = tudui_batch(1);
    let path = data_path("tudui_sgd_expected.safetensors");
    let want = File::read(&path).unwrap().f32(&path, "logits.1").unwrap().1.to_vec();
    for round in 0..2 {
        let before = gpu.submit_count();
        let logits = ex.forward(&images).unwrap();
        assert_eq!(gpu.submit_count() - before, 1, "inference (with its readback) must be one submit");
        assert_close(&format!("forward logits, round {round}"), &logits, &want, 1e-4, atol_of(&want, 1e-5));
    }
}
