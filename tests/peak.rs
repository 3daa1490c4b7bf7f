//! The kernels of `wgrad bench --peak` (ops::peak) do the work they count: every invocation's value
//! is what all its iterations of multiply-adds or matrix products make, so that no compiler has
//! dropped or folded them; and a measurement's rate is its dispatch's FLOP over its time.

mod common;
use common::*;
use wgrad::ops::peak::{self, Peak};
use wgrad::testing::assert_close;

/// One invocation's value per invocation of `workgroups` workgroups of `peak`'s kernel.
fn values(gpu: &wgrad::Gpu, peak: Peak, workgroups: u64, iterations: u32) -> Vec<f32> {
    let wg = wgrad::shaders::get(peak.shader(gpu).unwrap()).unwrap().workgroup as u64;
    let out = gpu.zeros("out", workgroups * wg).unwrap();
    let k = peak::kernel(gpu, peak, workgroups, iterations, &out).unwrap();
    wgrad::kernel::Program::from(k).run(gpu, "peak").unwrap();
    gpu.read(&out).unwrap()
}

#[test]
fn fma_kernel_runs_every_step_of_every_chain() {
    let Some(gpu) = gpu() else { return };
    let iterations = 4096;
    let got = values(&gpu, Peak::FmaF32, 3, iterations);
    // Eight chains of four lanes from (8 j + k) / 32 + (g % 256) / 2^14, each step adding 2^-20
    // exactly: together 0.125 more than they began with.
    let want: Vec<f64> = (0..got.len())
        .map(|g| {
            (0..32)
                .map(|i| {
                    (8 * (i % 4) + i / 4) as f64 / 32.0 + (g % 256) as f64 / 16_384.0 + iterations as f64 / 1_048_576.0
                })
                .sum()
        })
        .collect();
    // The sum of 32 values in f32: within 32 half-units of its last place (2^-19).
    assert_close("peak_fma", &got, &want, 0.0, 1e-4);
}

#[test]
fn cooperative_matrix_kernel_runs_every_product() {
    let Some(gpu) = gpu() else { return };
    let Some(t) = gpu.cooperative_tile() else {
        skip("the adapter multiplies no cooperative matrices", "WGRAD_REQUIRE_COOPERATIVE_MATRIX");
        return;
    };
    for from_workgroup_memory in [false, true] {
        let p = Peak::CooperativeMatrix { from_workgroup_memory };
        let sg = wgrad::shaders::get(p.shader(&gpu).unwrap()).unwrap().workgroup as f64 / 4.0;
        let iterations = 50;
        let got = values(&gpu, p, 3, iterations);
        // Each of an invocation's 4 T T / SG accumulator elements gains T / 256 per product of a
        // stage's first rows (1/16 times 1/16, T times) and 4 T / 256 per product of its second
        // (1/8 times 1/8), two products an iteration: from registers the first rows twice.
        let t = t as f64;
        let per_iteration = if from_workgroup_memory { 5.0 * t / 256.0 } else { 2.0 * t / 256.0 };
        let want = 4.0 * (t * t / sg) * iterations as f64 * per_iteration;
        assert_close(&format!("{p:?}"), &got, &vec![want; got.len()], 0.0, 0.0);
    }
}

#[test]
fn a_measurement_reports_its_dispatchs_flops_over_its_time() {
    let Some(gpu) = gpu() else { return };
    for p in Peak::offered(&gpu) {
        let r = peak::measure(&gpu, p).unwrap();
        let wg = wgrad::shaders::get(p.shader(&gpu).unwrap()).unwrap().workgroup as f64;
        let per_step = match p {
            Peak::FmaF32 => 64.0,
            Peak::CooperativeMatrix { .. } => {
                let t = gpu.cooperative_tile().unwrap() as f64;
                8.0 * 2.0 * t * t * t / (wg / 4.0)
            }
        };
        let flops = per_step * wg * r.workgroups as f64 * r.iterations as f64;
        assert!(r.seconds >= 0.01, "{p:?}: measured on a dispatch of {} s, shorter than 10 ms", r.seconds);
        let rate = flops / r.seconds;
        assert!(
            (r.flops_per_s - rate).abs() <= 1e-6 * rate,
            "{p:?}: {} FLOP/s reported, {rate} counted ({} workgroups x {} iterations in {} s)",
            r.flops_per_s,
            r.workgroups,
            r.iterations,
            r.seconds
        );
    }
}
