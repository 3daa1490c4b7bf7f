//! The executor is not Tudui-specific: a second network (one input channel, stride, ceil_mode,
//! dilation, no bias, two Linear layers) matches PyTorch on the GPU and the CPU path; GPU and CPU
//! executors agree over several SGD steps; buffer reuse saves memory without changing results;
//! shape errors name the layer.

mod common;
use common::*;
use wgrad::graph::{Executor, StepOutput};
use wgrad::io::safetensors::File;
use wgrad::nn::{Conv2d, Flatten, Linear, MaxPool2d, Model, Sequential};
use wgrad::ops::interface::Mode;
use wgrad::optim::{Optimizer, Sgd};
use wgrad::testing::assert_close;
use wgrad::{Device, ExecOptions};

fn second_layers() -> Sequential {
    Sequential::new()
        .add("c1", Conv2d::new(1, 4, 3).stride(2).padding(1))
        .add("p1", MaxPool2d::new(3).stride(2).padding(1).ceil_mode(true))
        .add("c2", Conv2d::new(4, 6, (3, 1)).dilation((2, 1)).bias(false))
        .add("flat", Flatten::new())
        .add("fc", Linear::new(72, 7))
        .add("out", Linear::new(7, 5))
}

fn second_net() -> Sequential {
    Sequential::new().add("net", second_layers())
}

fn second_model() -> Model {
    let mut m = Model::new(&second_net(), [1, 20, 20], 0).unwrap();
    wgrad::io::state_dict::load_into(&data_path("second_init.safetensors"), &mut m.params).unwrap();
    m
}

fn second_batch() -> (Vec<f32>, Vec<i64>) {
    let p = data_path("second_batch.safetensors");
    let f = File::read(&p).unwrap();
    (f.f32(&p, "images").unwrap().1.to_vec(), f.i64(&p, "targets").unwrap().1.to_vec())
}

fn matches_pytorch(device: Device) {
    let model = second_model();
    let mut ex = wgrad::executor(&device, &model, 3, ExecOptions::default()).unwrap();
    let (images, targets) = second_batch();
    let loss = ex.step(&images, &targets, true).unwrap().unwrap();
    let path = data_path("second_expected.safetensors");
    let want = File::read(&path).unwrap();
    let f = |k: &str| want.f32(&path, k).unwrap().1.to_vec();
    let dev = ex.describe();
    assert_close(&format!("{dev}: loss"), &[loss], &f("loss.1"), 1e-5, 1e-6);
    assert_close(&format!("{dev}: logits"), &ex.logits().unwrap(), &f("logits.1"), 1e-4, 1e-6);
    let grads = ex.grads().unwrap();
    assert_eq!(grads.specs.len(), 7, "c1, fc and out have weight and bias; c2 has no bias");
    for (k, spec) in grads.specs.iter().enumerate() {
        let g = f(&format!("grad.1.{}", spec.key));
        assert_close(&format!("{dev}: grad {}", spec.key), grads.get(k), &g, 1e-4, atol_of(&g, 1e-4));
    }
}

#[test]
fn second_network_matches_pytorch_on_cpu() {
    matches_pytorch(Device::Cpu);
}

#[test]
fn second_network_matches_pytorch_on_gpu() {
    let Some(gpu) = gpu() else { return };
    matches_pytorch(Device::Gpu(gpu));
}

#[test]
fn gpu_and_cpu_executors_agree_over_sgd_steps_and_reuse_changes_nothing() {
    let Some(gpu) = gpu() else { return };
    let model = second_model();
    let s = Sgd::new(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3);
    let reuse_opts = ExecOptions { optimizer: Some(Optimizer::Sgd(s)), ..Default::default() };
    let keep_opts = ExecOptions { keep_all: true, ..reuse_opts.clone() };
    let mut cpu = wgrad::executor(&Device::Cpu, &model, 3, keep_opts.clone()).unwrap();
    let mut reuse = wgrad::graph::gpu::GpuExecutor::new(gpu.clone(), &model, 3, reuse_opts).unwrap();
    let mut keep = wgrad::graph::gpu::GpuExecutor::new(gpu.clone(), &model, 3, keep_opts).unwrap();
    assert!(reuse.bytes < keep.bytes, "buffer reuse should allocate less: {} vs {}", reuse.bytes, keep.bytes);
    let (images, targets) = second_batch();
    for step in 1..=4 {
        let lc = cpu.step(&images, &targets, true).unwrap().unwrap();
        let lr = reuse.step(&images, &targets, true).unwrap().unwrap();
        let lk = keep.step(&images, &targets, true).unwrap().unwrap();
        assert_close(&format!("step {step} loss"), &[lr], &[lc], 1e-4, 1e-6);
        assert_eq!(lr.to_bits(), lk.to_bits(), "step {step}: reusing buffers changed the loss");
    }
    let (pc, pr, pk) = (cpu.params().unwrap(), reuse.params().unwrap(), keep.params().unwrap());
    assert_close("params after 4 steps", &pr.data, &pc.data, 1e-4, 1e-5);
    assert_eq!(pr.data, pk.data, "reusing buffers changed the parameters");
    // Everything --verify compares lines up name by name.
    let (tc, tk) = (cpu.tensors().unwrap(), keep.tensors().unwrap());
    assert_eq!(tc.iter().map(|t| &t.0).collect::<Vec<_>>(), tk.iter().map(|t| &t.0).collect::<Vec<_>>());
    for ((name, c), (_, k)) in tc.iter().zip(&tk) {
        assert_close(name, k, c, 1e-4, atol_of(c, 1e-4));
    }
}

#[test]
fn shape_errors_name_the_layer() {
    let plan = |net: &Sequential, input, batch| {
        wgrad::graph::Plan::new(&Model::new(net, input, 0).unwrap(), batch, Mode::Train).map(|_| ())
    };
    let net = Sequential::new().add("net", second_layers().add("bad", Linear::new(6, 2)));
    let e = plan(&net, [1, 20, 20], 3).unwrap_err().to_string();
    assert!(e.contains("net.bad") && e.contains("Linear(in_features=6") && e.contains("[3, 5]"), "{e}");
    let e = plan(&second_net(), [2, 20, 20], 3).unwrap_err().to_string();
    assert!(e.contains("net.c1") && e.contains("2 channels"), "{e}");
    let e = plan(&second_net(), [1, 20, 20], 0).unwrap_err().to_string();
    assert!(e.contains("batch size"), "{e}");
}

#[test]
fn bad_batches_are_errors() {
    let model = second_model();
    let mut ex = wgrad::executor(&Device::Cpu, &model, 3, ExecOptions::default()).unwrap();
    let (images, _) = second_batch();
    let e = ex.step(&images, &[0, 5, 1], false).unwrap_err().to_string();
    assert!(e.contains("target 5 at index 1") && e.contains("5 classes"), "{e}");
    let e = ex.step(&images[1..], &[0, 1, 1], false).unwrap_err().to_string();
    assert!(e.contains("images hold 1199 floats"), "{e}");
    let e = ex.step(&images, &[0, 1], false).unwrap_err().to_string();
    assert!(e.contains("2 targets for a batch of 3"), "{e}");
}

#[test]
fn a_model_missing_a_parameter_is_refused_by_name() {
    let mut m = Model::new(&second_net(), [1, 20, 20], 0).unwrap();
    m.params.specs.retain(|s| s.key != "net.fc.weight");
    let e = wgrad::graph::Plan::new(&m, 3, Mode::Train).unwrap_err().to_string();
    assert!(e.contains("net.fc") && e.contains("no net.fc.weight"), "{e}");
}

/// Queued steps give back every step's loss, and with clipping its gradient norm before
/// clipping, in order, with the bits of steps read one at a time.
#[test]
fn queued_steps_return_every_loss_in_order_with_the_same_bits() {
    let Some(gpu) = gpu() else { return };
    let model = second_model();
    for clip_grad_norm in [None, Some(0.01)] {
        let opts = ExecOptions {
            optimizer: Some(Optimizer::Sgd(Sgd::new(0.05).momentum(0.9))),
            clip_grad_norm,
            ..Default::default()
        };
        let mut sync = wgrad::executor(&Device::Gpu(gpu.clone()), &model, 3, opts.clone()).unwrap();
        let mut queued = wgrad::executor(&Device::Gpu(gpu.clone()), &model, 3, opts.clone()).unwrap();
        let (images, targets) = second_batch();
        let steps = 3 * wgrad::graph::gpu::LOSS_RING + 2;
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for step in 0..steps {
            // A different batch every step, so that losses out of order would show.
            let x: Vec<f32> = images.iter().map(|v| v * (1.0 + 0.1 * step as f32)).collect();
            let loss = sync.step(&x, &targets, true).unwrap().unwrap();
            want.push(StepOutput { loss, grad_norm: sync.grad_norm().unwrap() });
            queued.step_queued(&x, &targets, &mut got).unwrap();
            assert!(got.len() + wgrad::graph::gpu::LOSS_RING > step, "step {step}: only {} losses back", got.len());
        }
        queued.finish_queued(&mut got).unwrap();
        let mut again = Vec::new();
        queued.finish_queued(&mut again).unwrap();
        assert!(again.is_empty(), "a second finish returns nothing");
        let bits =
            |v: &[StepOutput]| v.iter().map(|o| (o.loss.to_bits(), o.grad_norm.map(f32::to_bits))).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "clip_grad_norm {clip_grad_norm:?}");
        if clip_grad_norm.is_some() {
            let norms: Vec<f32> = want.iter().map(|o| o.grad_norm.unwrap()).collect();
            assert!(norms.iter().all(|&n| n > 0.01), "every step clips: {norms:?}");
            assert!(norms.windows(2).all(|w| w[0] != w[1]), "each step's own norm: {norms:?}");
        }
        assert_eq!(queued.params().unwrap().data, sync.params().unwrap().data);
        // The CPU path gives each step's at once.
        let mut cpu = wgrad::executor(&Device::Cpu, &model, 3, opts).unwrap();
        let mut one = Vec::new();
        cpu.step_queued(&images, &targets, &mut one).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].grad_norm.is_some(), clip_grad_norm.is_some());
        cpu.finish_queued(&mut one).unwrap();
        assert_eq!(one.len(), 1);
    }
}

/// A training step's commands are recorded while the device runs the step before, for the
/// readback that step's successor uses. An executor that only steps and reads each loss runs
/// those; one that alternates read and queued steps (each copying its loss elsewhere), with
/// forwards between them, records every step afresh. Both give the same bits, and new parameters
/// reach commands recorded before they were set.
#[test]
fn steps_recorded_ahead_run_like_steps_recorded_afresh() {
    let Some(gpu) = gpu() else { return };
    let model = second_model();
    let opts = ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.05).momentum(0.9))), ..Default::default() };
    let mut ahead = wgrad::executor(&Device::Gpu(gpu.clone()), &model, 3, opts.clone()).unwrap();
    let mut afresh = wgrad::executor(&Device::Gpu(gpu), &model, 3, opts).unwrap();
    let (images, targets) = second_batch();
    let start = ahead.params().unwrap();
    let (mut want_queued, mut queued) = (Vec::new(), Vec::new());
    for step in 0..2 * wgrad::graph::gpu::LOSS_RING + 3 {
        let x: Vec<f32> = images.iter().map(|v| v * (1.0 + 0.1 * step as f32)).collect();
        if step == 5 {
            ahead.set_params(&start).unwrap();
            afresh.set_params(&start).unwrap();
        }
        let want = ahead.step(&x, &targets, true).unwrap().unwrap();
        if step % 2 == 0 {
            let got = afresh.step(&x, &targets, true).unwrap().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "step {step}");
        } else {
            afresh.step_queued(&x, &targets, &mut queued).unwrap();
            want_queued.push(want);
            afresh.forward(&x).unwrap();
        }
    }
    afresh.finish_queued(&mut queued).unwrap();
    let bits = |v: &[f32]| v.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    let queued: Vec<f32> = queued.iter().map(|o| o.loss).collect();
    assert_eq!(bits(&queued), bits(&want_queued), "the queued steps' losses");
    assert_eq!(afresh.params().unwrap().data, ahead.params().unwrap().data);
}

/// `step_resident` and `forward_resident` run on the batch the last `step` or `forward` left on
/// the device: the same results as uploading it again, on both devices, in train and eval mode.
fn resident_batch_runs_like_a_new_upload(device: Device) {
    let model = second_model();
    let (images, targets) = second_batch();
    let opts = ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.05).momentum(0.9))), ..Default::default() };
    let mut uploaded = wgrad::executor(&device, &model, 3, opts.clone()).unwrap();
    let mut resident = wgrad::executor(&device, &model, 3, opts).unwrap();
    let dev = resident.describe();
    for step in 0..3 {
        let want = uploaded.step(&images, &targets, true).unwrap().unwrap();
        let got = if step == 0 { resident.step(&images, &targets, true) } else { resident.step_resident(true) };
        assert_eq!(got.unwrap().unwrap().to_bits(), want.to_bits(), "{dev}: loss of step {step}");
    }
    assert_eq!(resident.params().unwrap().data, uploaded.params().unwrap().data, "{dev}");
    // The batch outlives the step: a forward on it again sees the same images after the
    // schedule's slots were reused.
    let mut eval = wgrad::executor(&device, &model, 3, ExecOptions::inference()).unwrap();
    let want = eval.forward(&images).unwrap();
    for _ in 0..2 {
        assert_eq!(eval.forward_resident().unwrap(), want, "{dev}: eval-mode forward on the resident images");
    }
    let other: Vec<f32> = images.iter().map(|v| 1.0 - v).collect();
    let changed = eval.forward(&other).unwrap();
    assert_ne!(changed, want, "{dev}");
    assert_eq!(eval.forward_resident().unwrap(), changed, "{dev}: the newest images are the resident ones");
}

#[test]
fn resident_batch_runs_like_a_new_upload_on_cpu() {
    resident_batch_runs_like_a_new_upload(Device::Cpu);
}

#[test]
fn resident_batch_runs_like_a_new_upload_on_gpu() {
    let Some(gpu) = gpu() else { return };
    resident_batch_runs_like_a_new_upload(Device::Gpu(gpu));
}

fn resident_runs_without_a_batch_are_errors(device: Device) {
    let model = second_model();
    let (images, targets) = second_batch();
    let mut ex = wgrad::executor(&device, &model, 3, ExecOptions::default()).unwrap();
    let dev = ex.describe();
    let e = ex.step_resident(false).unwrap_err().to_string();
    assert!(e.contains("step_resident: no batch with targets"), "{dev}: {e}");
    let e = ex.forward_resident().unwrap_err().to_string();
    assert!(e.contains("forward_resident: no batch"), "{dev}: {e}");
    // `forward` uploads images without targets: the targets of an earlier step do not pair with them.
    ex.step(&images, &targets, false).unwrap();
    ex.forward(&images).unwrap();
    let e = ex.step_resident(false).unwrap_err().to_string();
    assert!(e.contains("`forward` uploads images only"), "{dev}: {e}");
    // A rejected batch leaves nothing to run on.
    ex.step(&images, &targets, false).unwrap();
    assert!(ex.step(&images, &[0, 9, 1], false).is_err());
    let e = ex.step_resident(false).unwrap_err().to_string();
    assert!(e.contains("no batch with targets"), "{dev}: {e}");
    let mut eval = wgrad::executor(&device, &model, 3, ExecOptions::inference()).unwrap();
    eval.forward(&images).unwrap();
    let e = eval.step_resident(false).unwrap_err().to_string();
    assert!(e.contains("built for inference"), "{dev}: {e}");
}

#[test]
fn resident_runs_without_a_batch_are_errors_on_cpu() {
    resident_runs_without_a_batch_are_errors(Device::Cpu);
}

#[test]
fn resident_runs_without_a_batch_are_errors_on_gpu() {
    let Some(gpu) = gpu() else { return };
    resident_runs_without_a_batch_are_errors(Device::Gpu(gpu));
}

/// CrossEntropyLoss(label_smoothing=0.2) as the training loss: the step's loss and the last
/// layer's bias gradient (the sum over the batch of the logits' gradient) are the op's.
fn label_smoothing_reaches_the_loss(device: Device) {
    let model = second_model();
    let opts = ExecOptions { label_smoothing: 0.2, ..Default::default() };
    let mut ex = wgrad::executor(&device, &model, 3, opts).unwrap();
    let (images, targets) = second_batch();
    let loss = ex.step(&images, &targets, true).unwrap().unwrap();
    let logits = ex.logits().unwrap();
    let o = wgrad::ops::cross_entropy::Options { label_smoothing: 0.2, ..Default::default() };
    let (mut logp, mut dlogits) = (vec![0f32; logits.len()], vec![0f32; logits.len()]);
    let targets_ = wgrad::ops::cross_entropy::Targets::Class(&targets);
    let want = wgrad::ops::cross_entropy::loss_and_grad_into(&logits, targets_, &o, (3, 5, 1), &mut logp, &mut dlogits);
    let plain = wgrad::ops::cross_entropy::Options::default();
    let unsmoothed =
        wgrad::ops::cross_entropy::loss_and_grad_into(&logits, targets_, &plain, (3, 5, 1), &mut logp, &mut [0f32; 15]);
    assert!((want - unsmoothed).abs() > 1e-3, "the smoothing changes this loss: {want} {unsmoothed}");
    let dev = ex.describe();
    assert_close(&format!("{dev}: smoothed loss"), &[loss], &[want], 1e-5, 1e-6);
    let grads = ex.grads().unwrap();
    let k = grads.specs.iter().position(|s| s.key == "net.out.bias").unwrap();
    let db: Vec<f32> = (0..5).map(|c| (0..3).map(|n| dlogits[n * 5 + c]).sum()).collect();
    assert_close(&format!("{dev}: net.out.bias gradient"), grads.get(k), &db, 1e-4, 1e-6);
    let bad = ExecOptions { label_smoothing: 1.5, ..Default::default() };
    let e = wgrad::executor(&device, &model, 3, bad).err().unwrap().to_string();
    assert!(e.contains("label_smoothing must be between 0.0 and 1.0, got 1.5"), "{e}");
}

/// CrossEntropyLoss(weight=…) as the training loss: the step's loss (the weighted mean) and the
/// last layer's bias gradient are the op's; a weight per class or nothing, finite.
fn class_weights_reach_the_loss(device: Device) {
    let model = second_model();
    let weight = vec![0.5f32, 2.0, 1.0, 0.25, 3.0];
    let opts = ExecOptions { loss_weight: Some(weight.clone()), label_smoothing: 0.1, ..Default::default() };
    let mut ex = wgrad::executor(&device, &model, 3, opts).unwrap();
    let (images, targets) = second_batch();
    let loss = ex.step(&images, &targets, true).unwrap().unwrap();
    let logits = ex.logits().unwrap();
    let o = wgrad::ops::cross_entropy::Options { weight: Some(weight), label_smoothing: 0.1, ..Default::default() };
    let (mut logp, mut dlogits) = (vec![0f32; logits.len()], vec![0f32; logits.len()]);
    let targets_ = wgrad::ops::cross_entropy::Targets::Class(&targets);
    let want = wgrad::ops::cross_entropy::loss_and_grad_into(&logits, targets_, &o, (3, 5, 1), &mut logp, &mut dlogits);
    let smoothed = wgrad::ops::cross_entropy::Options { label_smoothing: 0.1, ..Default::default() };
    let unweighted = wgrad::ops::cross_entropy::loss_and_grad_into(
        &logits,
        targets_,
        &smoothed,
        (3, 5, 1),
        &mut logp,
        &mut [0f32; 15],
    );
    assert!((want - unweighted).abs() > 1e-3, "the weights change this loss: {want} {unweighted}");
    let dev = ex.describe();
    assert_close(&format!("{dev}: weighted loss"), &[loss], &[want], 1e-5, 1e-6);
    let grads = ex.grads().unwrap();
    let k = grads.specs.iter().position(|s| s.key == "net.out.bias").unwrap();
    let db: Vec<f32> = (0..5).map(|c| (0..3).map(|n| dlogits[n * 5 + c]).sum()).collect();
    assert_close(&format!("{dev}: net.out.bias gradient"), grads.get(k), &db, 1e-4, 1e-6);
    for (bad, msg) in [
        (vec![1.0; 4], "weight has 4 entries but the model gives 5 class scores"),
        (vec![1.0, f32::NAN, 1.0, 1.0, 1.0], "weight[1] is NaN"),
    ] {
        let opts = ExecOptions { loss_weight: Some(bad), ..Default::default() };
        let e = wgrad::executor(&device, &model, 3, opts).err().unwrap().to_string();
        assert!(e.contains(msg), "{e}");
    }
}

#[test]
fn class_weights_reach_the_loss_on_cpu() {
    class_weights_reach_the_loss(Device::Cpu);
}

#[test]
fn class_weights_reach_the_loss_on_gpu() {
    let Some(gpu) = gpu() else { return };
    class_weights_reach_the_loss(Device::Gpu(gpu));
}

#[test]
fn label_smoothing_reaches_the_loss_on_cpu() {
    label_smoothing_reaches_the_loss(Device::Cpu);
}

#[test]
fn label_smoothing_reaches_the_loss_on_gpu() {
    let Some(gpu) = gpu() else { return };
    label_smoothing_reaches_the_loss(Device::Gpu(gpu));
}
