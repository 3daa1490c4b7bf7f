//! Gradient clipping (torch.nn.utils.clip_grad_norm_) against PyTorch's goldens, the GPU's two
//! kernels against the CPU code at lengths around their workgroup and partial-sum counts, NaN and
//! infinite gradients as PyTorch treats them, and refused settings. tests/models.rs trains Tudui
//! with it against PyTorch.

mod common;
use common::*;
use wgrad::ops::clip_grad_norm::{clip_cpu, clip_gpu, PARTIALS};
use wgrad::testing::assert_close;

/// Clips `grad` on the GPU: (clipped gradients, total norm).
fn run_gpu(gpu: &wgrad::Gpu, max_norm: f32, grad: &[f32]) -> (Vec<f32>, f32) {
    let g = gpu.upload("grad", grad).unwrap();
    let (partial, norm) = (gpu.zeros("partial", PARTIALS).unwrap(), gpu.zeros("norm", 1).unwrap());
    clip_gpu(gpu, max_norm, &g, &partial, &norm).unwrap().run(gpu, "clip_grad_norm").unwrap();
    (gpu.read(&g).unwrap(), gpu.read(&norm).unwrap()[0])
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    for c in goldens("clip_grad_norm.safetensors", &["clip_grad_norm_"]) {
        let max_norm = c.meta["max_norm"].as_f64().unwrap() as f32;
        let n = c.meta["tensors"].as_u64().unwrap() as usize;
        // The executors clip every gradient as one flat buffer.
        let grad: Vec<f32> = (0..n).flat_map(|i| c.f32(&format!("grad{i}")).1).collect();
        let want: Vec<f32> = (0..n).flat_map(|i| c.f32(&format!("clipped{i}")).1).collect();
        let want_norm = c.f32("total_norm").1;
        let mut got = grad.clone();
        let norm = clip_cpu(max_norm, &mut got);
        assert_close(&format!("{} cpu: total_norm", c.name), &[norm], &want_norm, 1e-6, 0.0);
        assert_close(&format!("{} cpu: gradients", c.name), &got, &want, 1e-6, 1e-9);
        if let Some(g) = gpu() {
            let (got, norm) = run_gpu(&g, max_norm, &grad);
            assert_close(&format!("{} gpu: total_norm", c.name), &[norm], &want_norm, 1e-6, 0.0);
            assert_close(&format!("{} gpu: gradients", c.name), &got, &want, 1e-6, 1e-9);
        }
    }
}

/// Lengths below, at and past one workgroup (256), past the [`PARTIALS`] workgroups' first sweep
/// (65,536) and the scaling kernel's 1,024 a workgroup; clipped and left alone (bit for bit).
#[test]
fn gpu_matches_cpu_at_many_lengths() {
    let Some(g) = gpu() else { return };
    for (k, &n) in [1usize, 3, 255, 256, 257, 1023, 1025, 4097, 65_535, 65_536, 65_537, 300_001].iter().enumerate() {
        let grad = uniform(&mut rng(100 + k as u64), n, -1.0, 1.0);
        let norm = grad.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        for max_norm in [norm as f32 * 0.25, norm as f32 * 4.0] {
            let mut want = grad.clone();
            let want_norm = clip_cpu(max_norm, &mut want);
            let (got, got_norm) = run_gpu(&g, max_norm, &grad);
            assert_close(&format!("n {n} max_norm {max_norm}: total_norm"), &[got_norm], &[want_norm], 1e-5, 0.0);
            assert_close(&format!("n {n} max_norm {max_norm}: gradients"), &got, &want, 1e-5, 1e-9);
            if max_norm > norm as f32 {
                assert_eq!(got, grad, "n {n}: gradients within max_norm are left as they are");
            }
        }
    }
}

/// PyTorch (error_if_nonfinite=False): a NaN gradient makes the norm and every gradient NaN; an
/// infinite one makes the coefficient 0 (finite gradients become 0, the infinite one NaN). The CPU
/// path does exactly that. WGSL lets a GPU compiler assume no NaN or infinity occurs (GL's on
/// llvmpipe then leaves the gradients unscaled), so on the GPU what is held is that the non-finite
/// value survives: the norm and that gradient stay non-finite, and the training that follows sees
/// them (the loss check, the checkpoint's refusal).
#[test]
fn non_finite_gradients_as_pytorch() {
    let mut nan = vec![0.5f32, -1.0, f32::NAN, 2.0];
    let mut inf = vec![0.5f32, -1.0, f32::INFINITY, 2.0];
    let (nan_in, inf_in) = (nan.clone(), inf.clone());
    assert!(clip_cpu(1.0, &mut nan).is_nan());
    assert!(nan.iter().all(|v| v.is_nan()), "{nan:?}");
    assert_eq!(clip_cpu(1.0, &mut inf), f32::INFINITY);
    assert_eq!(&inf[..2], &[0.0, -0.0]);
    assert!(inf[2].is_nan() && inf[3] == 0.0, "{inf:?}");
    if let Some(g) = gpu() {
        for grad in [nan_in, inf_in] {
            let (got, norm) = run_gpu(&g, 1.0, &grad);
            assert!(!norm.is_finite() && !got[2].is_finite(), "gpu, {grad:?}: norm {norm}, {got:?}");
        }
    }
}

#[test]
fn a_max_norm_that_is_not_positive_and_finite_is_refused() {
    let m = wgrad::nn::models::tudui(0);
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let opts = wgrad::ExecOptions { clip_grad_norm: Some(bad), ..Default::default() };
        let e = wgrad::executor(&wgrad::Device::Cpu, &m, 2, opts).err().expect("refused");
        assert!(
            e.to_string().contains(&format!("clip_grad_norm_: max_norm must be a finite number > 0, got {bad}")),
            "{e}"
        );
    }
}
