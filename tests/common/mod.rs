//! Shared by the integration tests: the GPU (or a printed reason for skipping), seeded data.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, OnceLock};
use wgrad::Gpu;

/// The adapter `--device auto` would pick, shared by every test in a binary. None (with a printed
/// reason) when there is no adapter, unless WGRAD_REQUIRE_GPU=1, which makes that a failure.
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    let g = GPU
        .get_or_init(|| match Gpu::default_adapter() {
            Ok(Some(g)) => {
                eprintln!("GPU tests run on {}", g.describe());
                Some(Arc::new(g))
            }
            Ok(None) => None,
            Err(e) => {
                eprintln!("opening the GPU failed: {e}");
                None
            }
        })
        .clone();
    if g.is_none() {
        if std::env::var("WGRAD_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("WGRAD_REQUIRE_GPU=1 but no wgpu adapter is available (install mesa-vulkan-drivers for lavapipe)");
        }
        eprintln!("skipping GPU test: no wgpu adapter found (set WGRAD_REQUIRE_GPU=1 to make this an error)");
    }
    g
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Central finite differences of a scalar function of `x`, in f64.
pub fn numeric_grad(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let old = x[i];
            x[i] = old + h;
            let up = f(&x);
            x[i] = old - h;
            let down = f(&x);
            x[i] = old;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Σ w·y: turns a tensor-valued function into a scalar one for gradient checks.
pub fn dot(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}
