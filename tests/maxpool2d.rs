//! MaxPool2d: CPU and GPU vs PyTorch (ties, all-negative input with padding, ceil_mode, dilation),
//! NaN propagation, GPU vs CPU on random configurations, output sizes, bad input.

mod common;
use common::*;
use rand::Rng;
use wgrad::cpu::Real;
use wgrad::ops::maxpool2d::*;
use wgrad::testing::assert_close;

fn config(c: &Case) -> MaxPool2d {
    let pair = |k: &str| {
        let v = c.usizes(k);
        (v[0], v[1])
    };
    MaxPool2d {
        kernel: pair("kernel"),
        stride: pair("stride"),
        padding: pair("padding"),
        dilation: pair("dilation"),
        ceil_mode: c.meta["ceil_mode"].as_bool().unwrap(),
    }
}

/// (out, indices, dinp) on the GPU.
fn run_gpu(gpu: &wgrad::Gpu, g: &Geometry, x: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<i32>, Vec<f32>) {
    let (xv, dv) = (gpu.upload("inp", x).unwrap(), gpu.upload("dout", dout).unwrap());
    let out = gpu.zeros("out", dout.len() as u64).unwrap();
    let idx = gpu.zeros("indices", dout.len() as u64).unwrap();
    let dinp = gpu.zeros("dinp", x.len() as u64).unwrap();
    let mut prog = forward_gpu(gpu, "pool", g, &out, &idx, &xv).unwrap();
    prog.extend(backward_gpu(gpu, "pool", g, &dinp, &dv, &idx).unwrap());
    prog.run(gpu, "pool").unwrap();
    let r = gpu.read_many(&[&out, &idx, &dinp]).unwrap();
    (r[0].clone(), r[1].iter().map(|v| v.to_bits() as i32).collect(), r[2].clone())
}

/// (out, indices) on the CPU path.
fn forward<T: Real>(g: &Geometry, x: &[T]) -> (Vec<T>, Vec<i32>) {
    let n = g.planes() * g.oh * g.ow;
    let (mut out, mut idx) = (vec![T::zero(); n], vec![0; n]);
    forward_cpu(g, &mut out, &mut idx, x);
    (out, idx)
}

fn backward<T: Real>(g: &Geometry, idx: &[i32], dout: &[T]) -> Vec<T> {
    let mut dinp = vec![T::zero(); g.planes() * g.h * g.w];
    backward_cpu(g, &mut dinp, dout, idx);
    dinp
}

#[test]
fn cpu_and_gpu_match_pytorch() {
    let gpu = gpu();
    for c in goldens("layers.safetensors", &["maxpool2d"]) {
        let cfg = config(&c);
        let (shape, x) = c.f32("inp");
        let g = cfg.geometry(&shape).unwrap();
        let (oshape, want) = c.f32("out");
        assert_eq!(g.out_shape().to_vec(), oshape, "{}: output shape", c.name);
        let want_idx: Vec<i32> = c.i64("indices").1.iter().map(|&v| v as i32).collect();
        let (_, dout) = c.f32("dout");
        let (_, want_d) = c.f32("dinp");
        let (out, idx) = forward(&g, &x);
        assert_close(&format!("{} cpu out", c.name), &out, &want, 0.0, 0.0);
        assert_eq!(idx, want_idx, "{} cpu indices", c.name);
        assert_close(&format!("{} cpu dinp", c.name), &backward(&g, &idx, &dout), &want_d, 1e-5, 1e-6);
        if let Some(gpu) = &gpu {
            let (out, idx, dinp) = run_gpu(gpu, &g, &x, &dout);
            assert_close(&format!("{} gpu out", c.name), &out, &want, 0.0, 0.0);
            assert_eq!(idx, want_idx, "{} gpu indices", c.name);
            assert_close(&format!("{} gpu dinp", c.name), &dinp, &want_d, 1e-5, 1e-6);
        }
    }
}

#[test]
fn nan_propagates_like_pytorch() {
    // torch.nn.functional.max_pool2d(x, 2, return_indices=True) on [[1, nan], [3, 2]] gives nan at index 1.
    let g = MaxPool2d::new(2).geometry(&[1, 1, 2, 2]).unwrap();
    let x = [1.0f32, f32::NAN, 3.0, 2.0];
    let (out, idx) = forward(&g, &x);
    assert!(out[0].is_nan() && idx[0] == 1, "cpu: {out:?} {idx:?}");
    if let Some(gpu) = gpu() {
        let (out, idx, _) = run_gpu(&gpu, &g, &x, &[1.0]);
        assert!(out[0].is_nan() && idx[0] == 1, "gpu: {out:?} {idx:?}");
    }
}

/// On the default device and on one that splits reductions as a GPU does: CPU adapters take a
/// whole output row per invocation, GPUs one window.
#[test]
fn gpu_matches_cpu_on_random_configurations() {
    for gpu in gpu().into_iter().chain(splitting_gpu()) {
        random_configurations(&gpu);
    }
}

fn random_configurations(gpu: &wgrad::Gpu) {
    let mut r = rng(12);
    let mut done = 0;
    while done < 15 {
        let k = r.random_range(1..=4);
        let cfg = MaxPool2d {
            kernel: (k, r.random_range(1..=4)),
            stride: (r.random_range(1..=3), r.random_range(1..=3)),
            padding: (r.random_range(0..=k / 2), 0),
            dilation: (r.random_range(1..=2), r.random_range(1..=2)),
            ceil_mode: r.random_bool(0.5),
        };
        let shape =
            [[1, 64][r.random_range(0..2)], r.random_range(1..=3), r.random_range(5..=13), r.random_range(5..=13)];
        let Ok(g) = cfg.geometry(&shape) else { continue };
        // Small integers make ties common.
        let x: Vec<f32> = (0..shape.iter().product()).map(|_| r.random_range(-3..3) as f32).collect();
        let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
        let (want, want_idx) = forward(&g, &x);
        let (out, idx, dinp) = run_gpu(gpu, &g, &x, &dout);
        let name = format!("{cfg:?} on {shape:?} (split target {})", gpu.split_target());
        assert_close(&format!("{name} out"), &out, &want, 0.0, 0.0);
        assert_eq!(idx, want_idx, "{name} indices");
        assert_close(&format!("{name} dinp"), &dinp, &backward(&g, &want_idx, &dout), 1e-5, 1e-6);
        done += 1;
    }
    // Windows that tile the input take the forward's `_tiles` variant, and where they tile it
    // exactly (all but the last two) the backward's; with NaN among small integers.
    for (kernel, shape) in [
        ((2, 2), [2, 3, 8, 6]),
        ((3, 2), [1, 2, 9, 4]),
        ((1, 1), [1, 1, 3, 5]),
        ((4, 3), [64, 1, 8, 9]),
        ((2, 2), [1, 2, 9, 7]),
        ((3, 3), [64, 1, 10, 11]),
    ] {
        let cfg = MaxPool2d::new(kernel);
        let g = cfg.geometry(&shape).unwrap();
        assert!(g.tiled(), "{g:?}");
        let x: Vec<f32> = (0..shape.iter().product())
            .map(|_| match r.random_range(-3..4) {
                3 => f32::NAN,
                v => v as f32,
            })
            .collect();
        let dout = uniform(&mut r, g.out_shape().iter().product(), -1.0, 1.0);
        let (want, want_idx) = forward(&g, &x);
        let (out, idx, dinp) = run_gpu(gpu, &g, &x, &dout);
        let name = format!("{cfg:?} on {shape:?} (split target {})", gpu.split_target());
        assert!(out.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{name} out");
        assert_eq!(idx, want_idx, "{name} indices");
        assert_close(&format!("{name} dinp"), &dinp, &backward(&g, &want_idx, &dout), 1e-5, 1e-6);
    }
}

#[test]
fn output_size_follows_pytorch() {
    let size =
        |h, k, s, p, ceil| MaxPool2d::new(k).stride(s).padding(p).ceil_mode(ceil).geometry(&[1, 1, h, h]).unwrap().oh;
    assert_eq!(size(32, 2, 2, 0, false), 16);
    assert_eq!(size(7, 2, 2, 0, false), 3);
    assert_eq!(size(7, 2, 2, 0, true), 4);
    // ceil_mode's last window would start in the right padding: dropped (PyTorch gives 3, not 4).
    assert_eq!(size(5, 2, 2, 1, true), 3);
    assert_eq!(size(6, 3, 2, 1, true), 4);
}

#[test]
fn bad_input_is_an_error() {
    let e = MaxPool2d::new(5).geometry(&[1, 1, 3, 3]).unwrap_err().to_string();
    assert!(e.contains("MaxPool2d") && e.contains("[1, 1, 3, 3]") && e.contains("empty"), "{e}");
    let e = MaxPool2d::new(2).stride(0).geometry(&[1, 1, 4, 4]).unwrap_err().to_string();
    assert!(e.contains("stride must be positive"), "{e}");
    let e = MaxPool2d::new(3).padding(2).geometry(&[1, 1, 8, 8]).unwrap_err().to_string();
    assert!(e.contains("half of the kernel"), "{e}");
    assert!(MaxPool2d::new(2).geometry(&[4, 4]).is_err());
}
