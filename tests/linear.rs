//! Linear: CPU vs finite differences, CPU and GPU vs PyTorch, GPU vs CPU, bad input.

mod common;
use common::*;
use std::sync::Arc;
use wgrad::cpu::Real;
use wgrad::ops::linear::*;
use wgrad::testing::assert_close;
use wgrad::{Device, Tensor};

/// [out, dinp, dweight, dbias] through wgrad::functional on the GPU.
fn run_gpu(
    gpu: &Arc<wgrad::Gpu>,
    c: &Linear,
    n: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dout: &[f32],
) -> Vec<Vec<f32>> {
    let t = |s: &[usize], v: &[f32]| Tensor::new(s, v.to_vec()).unwrap();
    let (i, o) = (c.in_features, c.out_features);
    let r = wgrad::functional::linear(
        &Device::Gpu(gpu.clone()),
        c,
        &t(&[n, i], x),
        &t(&[o, i], w),
        Some(&t(&[o], b)),
        Some(&t(&[n, o], dout)),
    )
    .unwrap();
    vec![r.out.data, r.dinputs[0].data.clone(), r.dparams[0].data.clone(), r.dparams[1].data.clone()]
}

/// [out, dinp, dweight, dbias] on the CPU path.
fn run_cpu<T: Real>(c: &Linear, n: usize, x: &[T], w: &[T], b: &[T], dout: &[T]) -> Vec<Vec<T>> {
    let (mut dinp, mut dw, mut db) = (vec![T::zero(); x.len()], vec![T::zero(); w.len()], vec![T::zero(); b.len()]);
    backward_cpu(c, n, Some(&mut dinp), &mut dw, Some(&mut db), dout, x, w);
    vec![forward(c, n, x, w, Some(b)), dinp, dw, db]
}

fn forward<T: Real>(c: &Linear, n: usize, x: &[T], w: &[T], b: Option<&[T]>) -> Vec<T> {
    let mut out = vec![T::zero(); n * c.out_features];
    forward_cpu(c, n, &mut out, x, w, b);
    out
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let mut r = rng(13);
    let c = Linear::new(5, 3);
    let x = to_f64(&uniform(&mut r, 4 * 5, -1.0, 1.0));
    let w = to_f64(&uniform(&mut r, 15, -1.0, 1.0));
    let b = to_f64(&uniform(&mut r, 3, -1.0, 1.0));
    let dout = to_f64(&uniform(&mut r, 12, -1.0, 1.0));
    let g = run_cpu(&c, 4, &x, &w, &b, &dout);
    assert_close("dinp", &g[1], &numeric_grad(&x, 1e-6, |v| dot(&dout, &forward(&c, 4, v, &w, Some(&b)))), 1e-6, 1e-8);
    assert_close(
        "dweight",
        &g[2],
        &numeric_grad(&w, 1e-6, |v| dot(&dout, &forward(&c, 4, &x, v, Some(&b)))),
        1e-6,
        1e-8,
    );
    assert_close("dbias", &g[3], &numeric_grad(&b, 1e-6, |v| dot(&dout, &forward(&c, 4, &x, &w, Some(v)))), 1e-6, 1e-8);
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for case in goldens("layers.safetensors", &["linear"]) {
        let c = Linear::new(
            case.meta["in_features"].as_u64().unwrap() as usize,
            case.meta["out_features"].as_u64().unwrap() as usize,
        );
        let (shape, x) = case.f32("inp");
        let n = c.rows(&shape).unwrap();
        let (w, b, dout) = (case.f32("weight").1, case.f32("bias").1, case.f32("dout").1);
        let want = ["out", "dinp", "dweight", "dbias"].map(|k| case.f32(k).1);
        let cpu = run_cpu(&c, n, &x, &w, &b, &dout);
        for (i, k) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
            assert_close(&format!("{} cpu {k}", case.name), &cpu[i], &want[i], 1e-4, atol_of(&want[i], 1e-5));
        }
        if let Some(gpu) = &gpu {
            let got = run_gpu(gpu, &c, n, &x, &w, &b, &dout);
            for (i, k) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
                assert_close(&format!("{} gpu {k}", case.name), &got[i], &want[i], 1e-4, atol_of(&want[i], 1e-5));
            }
        }
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    check_against_cpu(&gpu, 14);
}

/// On CPU adapters (split target 0, whatever the adapter) with the register-blocked convolutions
/// the products take 8 × 8 outputs an invocation (`matmul_wide`) where its workgroups still number
/// enough, else 4 × 4: both run here, on outputs that are not whole tiles too.
#[test]
fn cpu_adapters_wide_and_narrow_products_match_cpu() {
    let Some(gpu) = own_gpu(|g| {
        g.set_split_target(0);
        g.set_conv_kernels(wgrad::ConvKernels::RegisterBlocked).unwrap();
    }) else {
        return;
    };
    let kernels: Vec<&str> = SHAPES
        .iter()
        .flat_map(|&(n, i, o)| [(n, o), (o, i), (n, i)])
        .map(|(m, cols)| matmul_kernel(&gpu, m, cols).shader)
        .collect();
    assert!(
        kernels.contains(&"matmul_wide") && kernels.contains(&"matmul"),
        "the products take both kernels: {kernels:?}"
    );
    check_against_cpu(&gpu, 15);
}

/// Where the convolutions run their `_subgroups` kernels (lavapipe's default) the products run
/// `matmul_subgroups`, and on a CPU adapter split their reduction where they make fewer workgroups
/// than the machine has threads (the forward of (64, 1024) -> 64 makes one).
#[test]
fn subgroups_products_match_cpu() {
    let Some(gpu) = own_gpu(|g| {
        g.set_split_target(0);
        let _ = g.set_conv_kernels(wgrad::ConvKernels::Subgroups);
    }) else {
        return;
    };
    // Adapters without subgroups of 8 (wgpu's GL backend) never take the kernel; the tests above
    // run what they take.
    if !gpu.offers(wgrad::ConvKernels::Subgroups) {
        return;
    }
    let products: Vec<(usize, usize, usize)> =
        SHAPES.iter().flat_map(|&(n, i, o)| [(n, o, i), (o, i, n), (n, i, o)]).collect();
    assert!(products.iter().all(|&(m, cols, _)| matmul_kernel(&gpu, m, cols).shader == "matmul_subgroups"));
    if std::thread::available_parallelism().map_or(1, |t| t.get()) > 1 {
        assert!(matmul_splits(&gpu, (64, 64, 1024)).0 > 1, "the (64, 1024) -> 64 forward splits its reduction");
    }
    check_against_cpu(&gpu, 21);
}

#[test]
fn split_k_matches_cpu() {
    let Some(gpu) = splitting_gpu() else { return };
    check_against_cpu(&gpu, 16);
}

#[test]
fn mixed_precision_matches_cpu() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    check_against_cpu(&gpu, 17);
}

#[test]
fn mixed_precision_split_k_matches_cpu() {
    let Some(gpu) = mixed_precision_gpu(true) else { return };
    check_against_cpu(&gpu, 18);
}

/// Mixed precision with each other convolution kernel family: where that is cooperative matrices,
/// Linear runs its products on the convolution's `_cooperative_matrix` kernels (a 1x1 convolution).
#[test]
fn mixed_precision_other_conv_kernels_match_cpu() {
    for gpu in other_conv_kernels_gpus(true) {
        match gpu.set_precision(wgrad::Precision::Mixed) {
            Ok(()) => check_against_cpu(&gpu, 19),
            Err(e) => return skip(&format!("the adapter cannot run mixed precision: {e}"), "WGRAD_REQUIRE_F16"),
        }
    }
}

/// Linear's products on the cooperative-matrix kernels' `_16x16` variant (NVIDIA's) and, for at
/// most 32 rows (output features 1, 5, 10 and 17 here), its `_narrow` form: forced on lavapipe.
#[test]
fn cooperative_matrix_16x16_variant_matches_cpu_on_lavapipe() {
    let Some(gpu) = forced_cooperative_16x16_gpu() else { return };
    check_against_cpu(&gpu, 20);
}

/// (batch, in_features, out_features) of check_against_cpu.
const SHAPES: &[(usize, usize, usize)] = &[(1, 1, 1), (3, 7, 5), (64, 1024, 64), (64, 64, 10), (130, 33, 17)];

/// In mixed precision the products take the operands rounded to f16 (the output gradient scaled;
/// see common::as_products_read), the bias gradient the f32 output gradient.
fn check_against_cpu(gpu: &Arc<wgrad::Gpu>, seed: u64) {
    let mut r = rng(seed);
    for &(n, i, o) in SHAPES {
        let c = Linear::new(i, o);
        let x = uniform(&mut r, n * i, -1.0, 1.0);
        let w = uniform(&mut r, o * i, -1.0, 1.0);
        let b = uniform(&mut r, o, -1.0, 1.0);
        let dout = uniform(&mut r, n * o, -1.0, 1.0);
        let got = run_gpu(gpu, &c, n, &x, &w, &b, &dout);
        let (xr, wr, dr) = as_products_read(gpu.precision(), &x, &w, &dout);
        let mut want = run_cpu(&c, n, &xr, &wr, &b, &dr);
        want[3] = run_cpu(&c, n, &x, &w, &b, &dout).swap_remove(3);
        for (k, name) in ["out", "dinp", "dweight", "dbias"].iter().enumerate() {
            assert_close(
                &format!("({n}, {i}) -> {o} {name} ({:?})", gpu.precision()),
                &got[k],
                &want[k],
                1e-4,
                atol_of(&want[k], 1e-5),
            );
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let c = Linear::new(1024, 64);
    let e = c.rows(&[8, 1000]).unwrap_err().to_string();
    assert!(e.contains("Linear(in_features=1024, out_features=64, bias=True)") && e.contains("[8, 1000]"), "{e}");
    assert!(c.rows(&[8, 4, 256]).is_err());
    assert!(c.rows(&[0, 1024]).unwrap_err().to_string().contains("empty"));
}
