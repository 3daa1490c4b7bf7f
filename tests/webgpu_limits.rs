//! Everything wgrad runs fits WebGPU's default limits (`wgpu::Limits::default()`: what a browser
//! gives every page, e.g. 8 storage buffers per shader stage, 16 KiB of workgroup memory, 256
//! invocations per workgroup, 128 MiB per storage binding): every shader's pipeline is created on
//! a device opened with only those limits, and every model trains and infers there, with the split
//! reductions of big GPUs on too. Device errors are captured and returned, so a pipeline or bind
//! group past a limit fails the test with wgpu's message.

mod common;
use common::*;
use wgrad::nn::models::ModelKind;
use wgrad::optim::{Adam, Optimizer, Sgd};
use wgrad::{Device, ExecOptions, Gpu};

fn webgpu_device() -> Option<std::sync::Arc<Gpu>> {
    gpu()?;
    Some(std::sync::Arc::new(Gpu::default_adapter_with(Some(wgpu::Limits::default())).unwrap()?))
}

#[test]
fn every_pipeline_fits_webgpus_default_limits() {
    let Some(gpu) = webgpu_device() else { return };
    assert_eq!(gpu.limits.max_storage_buffers_per_shader_stage, 8);
    // Every kernel the adapter can build (the cooperative-matrix ones where it has them; wgpu
    // offers them to no browser).
    for s in wgrad::shaders::all().iter().filter(|s| gpu.can_build(s)) {
        if let Err(e) = gpu.pipeline(s.name) {
            panic!("{} does not fit WebGPU's default limits: {e}", s.name);
        }
    }
}

#[test]
fn every_model_runs_within_webgpus_default_limits() {
    let Some(gpu) = webgpu_device() else { return };
    let n = 4;
    let images: Vec<f32> = (0..n * 3 * 32 * 32).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let targets: Vec<i64> = (0..n as i64).collect();
    for split_target in [0, 1 << 16] {
        gpu.set_split_target(split_target);
        for kind in [ModelKind::Tudui, ModelKind::CifarNet, ModelKind::Resnet20] {
            let model = kind.build(0);
            for optimizer in [Optimizer::Sgd(Sgd::new(0.01).momentum(0.9)), Optimizer::Adam(Adam::new(1e-3))] {
                let opts = ExecOptions { optimizer: Some(optimizer), ..Default::default() };
                let mut ex = wgrad::executor(&Device::Gpu(gpu.clone()), &model, n, opts)
                    .unwrap_or_else(|e| panic!("{} ({optimizer:?}): {e}", kind.name()));
                let loss = ex.step(&images, &targets, true).unwrap().unwrap();
                assert!(loss.is_finite(), "{}: loss {loss}", kind.name());
            }
            let mut inf = wgrad::executor(&Device::Gpu(gpu.clone()), &model, n, ExecOptions::inference()).unwrap();
            assert_eq!(inf.forward(&images).unwrap().len(), n * 10);
        }
    }
}

/// A batch whose largest tensor passes the 128 MiB binding limit is refused before anything is
/// allocated, with the batch size that fits; that batch builds (and trains) on the same device.
#[test]
fn a_batch_past_the_binding_limit_says_which_batch_fits() {
    let Some(gpu) = webgpu_device() else { return };
    let model = ModelKind::Tudui.build(0);
    let opts = || ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.01))), ..Default::default() };
    let e =
        wgrad::executor(&Device::Gpu(gpu.clone()), &model, 5000, opts()).err().expect("batch 5000 built").to_string();
    assert!(e.contains("at batch 5000") && e.contains("max_storage_buffer_binding_size is 134217728"), "{e}");
    let fits: usize =
        e.split("a batch size of about ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!((1000..5000).contains(&fits), "{e}");
    let mut ex = wgrad::executor(&Device::Gpu(gpu.clone()), &model, fits, opts()).unwrap();
    let images: Vec<f32> = (0..fits * 3 * 32 * 32).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let targets: Vec<i64> = (0..fits as i64).map(|i| i % 10).collect();
    assert!(ex.step(&images, &targets, true).unwrap().unwrap().is_finite());
    assert!(wgrad::executor(&Device::Gpu(gpu), &model, fits + 1, opts()).is_err(), "the batch after it fits too");
}

/// A narrow cooperative-matrix variant takes more workgroup memory than WebGPU's default
/// (`wgrad::shaders::NARROW_WORKGROUP_BYTES`): a device with only the defaults does not build it,
/// and Tudui's 32-channel layers run the 4-by-4 16x16 variant there instead (lavapipe forced to
/// the 16x16 kernels, as tests/conv2d.rs does).
#[test]
fn narrow_cooperative_matrix_kernels_run_only_where_their_workgroup_memory_is_offered() {
    let Some(gpu) = webgpu_device() else { return };
    if gpu.force_cooperative_tile_16_on_lavapipe().is_err() {
        skip(
            &format!("{} is no lavapipe with 8x8 cooperative matrices to force the 16x16 kernels on", gpu.describe()),
            "WGRAD_REQUIRE_COOPERATIVE_MATRIX",
        );
        return;
    }
    gpu.set_conv_kernels(wgrad::ConvKernels::CooperativeMatrix).unwrap();
    gpu.set_precision(wgrad::Precision::Mixed).unwrap();
    let shader = |name| wgrad::shaders::get(name).unwrap();
    assert!(!gpu.can_build(shader("conv2d_forward_cooperative_matrix_16x16_narrow")));
    assert!(gpu.can_build(shader("conv2d_forward_cooperative_matrix_16x16")));
    let n = 2;
    let images: Vec<f32> = (0..n * 3 * 32 * 32).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let model = ModelKind::Tudui.build(0);
    let mut ex = wgrad::executor(&Device::Gpu(gpu.clone()), &model, n, ExecOptions::default()).unwrap();
    let loss = ex.step(&images, &[3, 7], true).unwrap().unwrap();
    assert!(loss.is_finite(), "loss {loss}");
    let built = gpu.built_kernels();
    assert!(built.contains(&"conv2d_forward_cooperative_matrix_16x16"), "{built:?}");
    assert!(!built.iter().any(|k| k.ends_with("_narrow")), "{built:?}");
}
