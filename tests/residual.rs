//! A network with residual blocks and BatchNorm against PyTorch: a stem, an identity block and a
//! projection block (tests/golden/make_goldens.py's ResidualNet), two SGD steps in train mode on
//! the CPU path and the GPU (with and without split reductions): logits, loss, every gradient and
//! every state-dict entry after each step (running statistics and num_batches_tracked included);
//! then eval-mode logits. Also: one submit per step, gradients summed in the same bits every run,
//! and the executor's memory equal to what it allocated.

mod common;
use common::*;
use std::sync::Arc;
use wgrad::graph::Executor;
use wgrad::io::safetensors::{Array, File};
use wgrad::nn::Model;
use wgrad::optim::{Optimizer, Sgd};
use wgrad::testing::assert_close;
use wgrad::{Device, ExecOptions};

fn model() -> Model {
    let mut m = Model::new(&residual_net(), [3, 8, 8], 0).unwrap();
    wgrad::io::state_dict::load_into(&data_path("residual_init.safetensors"), &mut m.params).unwrap();
    m
}

fn batch(i: usize) -> (Vec<f32>, Vec<i64>) {
    let p = data_path("residual_batches.safetensors");
    let f = File::read(&p).unwrap();
    (f.f32(&p, &format!("images.{i}")).unwrap().1.to_vec(), f.i64(&p, &format!("targets.{i}")).unwrap().1.to_vec())
}

fn sgd() -> Optimizer {
    Optimizer::Sgd(Sgd::new(0.05).momentum(0.9).weight_decay(5e-4))
}

fn parity(device: Device) {
    let model = model();
    let mut ex =
        wgrad::executor(&device, &model, 4, ExecOptions { optimizer: Some(sgd()), ..Default::default() }).unwrap();
    let path = data_path("residual_expected.safetensors");
    let want = File::read(&path).unwrap();
    let f = |k: &str| want.f32(&path, k).unwrap().1.to_vec();
    let dev = ex.describe();
    for i in 1..=2 {
        let (images, targets) = batch(i);
        let loss = ex.step(&images, &targets, true).unwrap().unwrap();
        assert_close(&format!("{dev}: loss.{i}"), &[loss], &f(&format!("loss.{i}")), 1e-5, 1e-6);
        let logits = f(&format!("logits.{i}"));
        assert_close(&format!("{dev}: logits.{i}"), &ex.logits().unwrap(), &logits, 1e-4, atol_of(&logits, 1e-5));
        let grads = ex.grads().unwrap();
        assert_eq!(grads.specs.len(), want.tensors.keys().filter(|k| k.starts_with(&format!("grad.{i}."))).count());
        for (k, spec) in grads.specs.iter().enumerate() {
            let g = f(&format!("grad.{i}.{}", spec.key));
            assert_close(&format!("{dev}: grad.{i}.{}", spec.key), grads.get(k), &g, 1e-4, atol_of(&g, 1e-4));
        }
        let params = ex.params().unwrap();
        assert_eq!(params.specs.len(), want.tensors.keys().filter(|k| k.starts_with(&format!("param.{i}."))).count());
        for (k, spec) in params.specs.iter().enumerate() {
            match want.tensors.get(&format!("param.{i}.{}", spec.key)).unwrap() {
                Array::F32 { data, .. } => {
                    let name = format!("{dev}: param.{i}.{}", spec.key);
                    assert_close(&name, params.get(k), data, 1e-4, atol_of(data, 1e-5));
                }
                Array::I64 { data, .. } => assert_eq!(params.counter(k), data[0], "{dev}: param.{i}.{}", spec.key),
            }
        }
    }
    // Eval mode: the running statistics after the two steps.
    let mut inf = wgrad::executor(&device, &model, 4, ExecOptions::inference()).unwrap();
    inf.set_params(&ex.params().unwrap()).unwrap();
    let (images, _) = batch(1);
    let want = f("eval_logits");
    assert_close(&format!("{dev}: eval logits"), &inf.forward(&images).unwrap(), &want, 1e-4, atol_of(&want, 1e-5));
}

#[test]
fn cpu_matches_pytorch_over_two_sgd_steps_and_in_eval_mode() {
    parity(Device::Cpu);
}

#[test]
fn gpu_matches_pytorch_over_two_sgd_steps_and_in_eval_mode() {
    let Some(gpu) = gpu() else { return };
    parity(Device::Gpu(gpu));
}

#[test]
fn gpu_with_split_reductions_matches_pytorch() {
    let Some(gpu) = splitting_gpu() else { return };
    parity(Device::Gpu(gpu));
}

#[test]
fn state_dict_keys_are_pytorchs() {
    let m = model();
    let keys: Vec<&str> = m.params.specs.iter().map(|s| s.key.as_str()).collect();
    let pt = File::read(&data_path("residual_init.safetensors")).unwrap();
    let mut want: Vec<&str> = pt.tensors.keys().map(|k| k.as_str()).collect();
    let mut got = keys.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(keys.contains(&"layer1.1.downsample.1.running_var") && keys.contains(&"layer1.0.bn2.num_batches_tracked"));
    // The round trip through wgrad gives PyTorch's file back (int64 counters included).
    let dir = tempdir();
    let out = dir.join("sd.safetensors");
    wgrad::io::state_dict::save(&out, &m.params, None).unwrap();
    assert_eq!(File::read(&out).unwrap().tensors, pt.tensors);
}

#[test]
fn a_training_step_is_one_submit() {
    let Some(_) = gpu() else { return };
    let gpu = Arc::new(wgrad::Gpu::default_adapter().unwrap().unwrap());
    let mut ex = wgrad::graph::gpu::GpuExecutor::new(
        gpu.clone(),
        &model(),
        4,
        ExecOptions { optimizer: Some(sgd()), ..Default::default() },
    )
    .unwrap();
    let (images, targets) = batch(1);
    ex.step(&images, &targets, false).unwrap();
    let before = gpu.submit_count();
    ex.step(&images, &targets, false).unwrap();
    assert_eq!(gpu.submit_count() - before, 1, "a training step must be one submit");
    let before = gpu.submit_count();
    ex.step(&images, &targets, true).unwrap();
    assert_eq!(gpu.submit_count() - before, 1, "reading the loss must not add a submit");
}

#[test]
fn summed_gradients_are_the_same_bits_every_run() {
    let mut devices = vec![Device::Cpu];
    if let Some(g) = gpu() {
        devices.push(Device::Gpu(g));
    }
    for device in devices {
        let run = || {
            let opts = ExecOptions { optimizer: Some(sgd()), ..Default::default() };
            let mut ex = wgrad::executor(&device, &model(), 4, opts).unwrap();
            for i in [1, 2, 1] {
                let (images, targets) = batch(i);
                ex.step(&images, &targets, false).unwrap();
            }
            (ex.grads().unwrap().data, ex.params().unwrap().data)
        };
        let (a, b) = (run(), run());
        assert!(
            a.0.iter().zip(&b.0).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: gradients differ between runs",
            device.name()
        );
        assert!(
            a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: parameters differ between runs",
            device.name()
        );
    }
}

#[test]
fn memory_reported_is_every_buffer_the_executor_created() {
    let Some(_) = gpu() else { return };
    for split in [false, true] {
        let gpu = Arc::new(wgrad::Gpu::default_adapter().unwrap().unwrap());
        if split {
            gpu.set_split_target(1 << 16);
        }
        for (model, batch) in [(model(), 4), (wgrad::models::tudui(0), 8)] {
            for opts in [ExecOptions { optimizer: Some(sgd()), ..Default::default() }, ExecOptions::inference()] {
                let before = gpu.created_bytes();
                let ex = wgrad::graph::gpu::GpuExecutor::new(gpu.clone(), &model, batch, opts.clone()).unwrap();
                let created = gpu.created_bytes() - before;
                assert_eq!(ex.memory_bytes(), created, "split {split}, {:?} at batch {batch}", opts.mode);
            }
        }
    }
}
