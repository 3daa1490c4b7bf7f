//! sum_splits (the sum of a split reduction's partial results): every output is the sum of its
//! splits, whether one invocation adds them in order or several lanes add them pairwise after, for
//! outputs that do not fill a workgroup, on a 2-D grid, and the same bits on every run.

mod common;
use common::*;
use std::sync::Arc;
use wgrad::kernel::Program;
use wgrad::ops::sum_splits;

/// The sums `gpu` computes of `part`, `splits` rows of `m`.
fn sum(gpu: &Arc<wgrad::Gpu>, part: &[f32], m: usize, splits: usize) -> Vec<f32> {
    let p = gpu.upload("part", part).unwrap();
    let out = gpu.zeros("out", m as u64).unwrap();
    Program::from(sum_splits::gpu(gpu, "sum", &p, &out, splits).unwrap()).run(gpu, "sum").unwrap();
    gpu.read(&out).unwrap()
}

#[test]
fn every_output_is_the_sum_of_its_splits_with_any_number_of_lanes() {
    let Some(gpu) = own_gpu(|_| {}) else { return };
    let mut r = rng(50);
    // (outputs, splits, split target) and the lanes that chooses: 1 (the target reached, or one
    // split), 2 and 4 (few splits), 32 (a small layer's weight gradient: few outputs, many
    // splits), outputs that fill no workgroup, and a grid past 65,535 workgroups.
    for (m, splits, target, lanes) in [
        (1_000, 7, 1_000, 1),
        (300, 1, 1 << 16, 1),
        (300, 2, 1 << 16, 2),
        (77, 3, 1 << 16, 4),
        (450, 3_136, 1 << 16, 32),
        (5, 40, 1 << 16, 32),
        (530_001, 17, 1 << 24, 32),
    ] {
        gpu.set_split_target(target);
        assert_eq!(sum_splits::lanes(&gpu, m, splits), lanes, "lanes for {m} outputs of {splits} splits");
        // Small integers: every order of addition gives the same, exact, sums.
        let part: Vec<f32> = uniform(&mut r, m * splits, -8.0, 8.0).iter().map(|v| v.round()).collect();
        let want: Vec<f32> = (0..m).map(|i| (0..splits).map(|s| part[s * m + i]).sum()).collect();
        let got = sum(&gpu, &part, m, splits);
        assert_eq!(got, want, "{m} outputs of {splits} splits, {lanes} lanes");
    }
}

#[test]
fn lanes_add_in_a_fixed_order() {
    let Some(gpu) = own_gpu(|g| g.set_split_target(1 << 16)) else { return };
    let mut r = rng(51);
    let (m, splits) = (450, 3_136);
    let part = uniform(&mut r, m * splits, -1.0, 1.0);
    let first = sum(&gpu, &part, m, splits);
    for _ in 0..3 {
        assert_eq!(sum(&gpu, &part, m, splits), first, "the same partial sums gave other bits");
    }
    // And what they add to, within f32's rounding of 3,136 terms.
    let want: Vec<f32> = (0..m).map(|i| (0..splits).map(|s| part[s * m + i] as f64).sum::<f64>() as f32).collect();
    wgrad::testing::assert_close("sum of 3,136 splits", &first, &want, 1e-5, 1e-4);
}

#[test]
fn cpu_adapters_and_unsplit_reductions_take_one_lane() {
    let Some(gpu) = own_gpu(|g| g.set_split_target(0)) else { return };
    assert_eq!(sum_splits::lanes(&gpu, 1, 10_000), 1, "split target 0 (CPU adapters)");
    gpu.set_split_target(1 << 16);
    assert_eq!(sum_splits::lanes(&gpu, 1, 1), 1, "one split");
    assert_eq!(sum_splits::lanes(&gpu, 1 << 16, 64), 1, "outputs enough");
}
