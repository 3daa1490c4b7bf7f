//! The bias gradient of Conv2d and Linear (dbias[c] = Σ_{n, s} dout[n, c, s]): the GPU kernel
//! against the CPU path in each of its forms: on CPU adapters one invocation per channel, reading a
//! word or (planes of whole vec4s) four at a time; on a GPU a workgroup per channel and split,
//! merged as a tree, the splits summed after.

mod common;
use common::*;
use std::sync::Arc;
use wgrad::ops::bias;
use wgrad::testing::assert_close;

/// (N, C, S): Linear's gradients (S = 1, few values a channel), planes of whole vec4s and not,
/// more channels than a workgroup has invocations, few channels with many values each.
const SHAPES: &[(usize, usize, usize)] =
    &[(64, 120, 1), (3, 5, 7), (7, 300, 12), (64, 32, 1_024), (64, 6, 784), (50, 4, 333), (9, 3, 2_052)];

/// dbias as `gpu` computes it, with the planner's split scratch where it splits the sum.
fn gpu_dbias(gpu: &Arc<wgrad::Gpu>, dout: &[f32], (n, c, s): (usize, usize, usize)) -> Vec<f32> {
    let d = gpu.upload("dout", dout).unwrap();
    let dbias = gpu.zeros("dbias", c as u64).unwrap();
    let (splits, _) = bias::splits(gpu, n, c);
    let part = (splits > 1).then(|| gpu.zeros("part", (splits * c) as u64).unwrap());
    bias::backward_gpu(gpu, "b", &d, &dbias, part.as_ref(), (n, c, s)).unwrap().run(gpu, "bias").unwrap();
    gpu.read(&dbias).unwrap()
}

fn matches_cpu(gpu: &Arc<wgrad::Gpu>, seed: u64) {
    let mut r = rng(seed);
    for &(n, c, s) in SHAPES {
        let dout = uniform(&mut r, n * c * s, -1.0, 1.0);
        let mut want = vec![0.0f64; c];
        bias::backward_cpu(&mut want, &to_f64(&dout), n, c, s);
        let name = format!("dbias of ({n}, {c}, {s}), split target {}", gpu.split_target());
        assert_close(&name, &gpu_dbias(gpu, &dout, (n, c, s)), &want, 1e-5, 1e-5);
    }
}

#[test]
fn cpu_adapters_one_invocation_per_channel_matches_cpu() {
    // Split target 0, as on CPU adapters, whatever the adapter.
    let Some(gpu) = own_gpu(|g| g.set_split_target(0)) else { return };
    assert!(bias::per_channel(&gpu), "CPU adapters take one invocation per channel");
    matches_cpu(&gpu, 60);
}

#[test]
fn gpus_split_sums_match_cpu() {
    let Some(gpu) = splitting_gpu() else { return };
    assert!(!bias::per_channel(&gpu), "GPUs take a workgroup per channel");
    assert!(SHAPES.iter().any(|&(n, c, _)| bias::splits(&gpu, n, c).0 > 1), "some shape splits its sum");
    matches_cpu(&gpu, 61);
}
