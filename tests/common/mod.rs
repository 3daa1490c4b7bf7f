//! Shared by the integration tests: the GPU (or a printed reason for skipping), seeded data.
#![allow(dead_code)]

pub mod elementwise_loss;
pub mod layer;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, OnceLock};
use wgrad::Gpu;

/// Skips the running test for want of `what`: says so on stderr (with the test's name) and
/// appends the name to the file WGRAD_SKIP_LOG names, so .ci/run counts skipped tests apart from
/// passed ones. With `require` set (CI sets WGRAD_REQUIRE_GPU=1, WGRAD_REQUIRE_DATASETS=1), a skip
/// is a failure instead.
pub fn skip(what: &str, require: &str) {
    // binary::test, e.g. relu::cpu_and_gpu_match_pytorch (the binary is relu-<hash>).
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().split('-').next().unwrap_or("").to_string()))
        .unwrap_or_default();
    let test = format!("{bin}::{}", std::thread::current().name().unwrap_or("?"));
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{require}=1 but {what}");
    }
    // Straight to the process's stderr: libtest captures eprintln! of passing tests, and a skip
    // must be seen.
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "skipped: {test}: {what} (set {require}=1 to make this an error)");
    }
    if let Some(log) = std::env::var_os("WGRAD_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}: {what}");
        }
    }
}

/// The adapter `--device gpu` would pick (WGRAD_BACKEND and WGRAD_ADAPTER choose, as for the
/// commands), shared by every test in a binary; None when there is none (see [`skip`]).
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
        skip(
            "no wgpu adapter is available (apt-get install mesa-vulkan-drivers libvulkan1 gives lavapipe)",
            "WGRAD_REQUIRE_GPU",
        );
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

/// One case of a golden file written by tests/golden/make_goldens.py.
pub struct Case {
    pub name: String,
    pub meta: serde_json::Value,
    file: std::sync::Arc<wgrad::io::safetensors::File>,
}

impl Case {
    pub fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let name = format!("{}.{key}", self.name);
        match self.file.tensors.get(&name) {
            Some(wgrad::io::safetensors::Array::F32 { shape, data }) => (shape.clone(), data.clone()),
            other => panic!("golden {name}: expected an f32 tensor, found {other:?}"),
        }
    }
    pub fn i64(&self, key: &str) -> (Vec<usize>, Vec<i64>) {
        let name = format!("{}.{key}", self.name);
        match self.file.tensors.get(&name) {
            Some(wgrad::io::safetensors::Array::I64 { shape, data }) => (shape.clone(), data.clone()),
            other => panic!("golden {name}: expected an i64 tensor, found {other:?}"),
        }
    }
    pub fn has(&self, key: &str) -> bool {
        self.file.tensors.contains_key(&format!("{}.{key}", self.name))
    }
    pub fn str(&self, key: &str) -> Option<String> {
        self.meta.get(key).and_then(|v| v.as_str()).map(String::from)
    }
    pub fn usizes(&self, key: &str) -> Vec<usize> {
        self.meta[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
    }
}

pub fn data_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Cases of a golden file whose `op` is one of `ops`; panics if there are none.
pub fn goldens(file: &str, ops: &[&str]) -> Vec<Case> {
    let f = std::sync::Arc::new(wgrad::io::safetensors::File::read(&data_path(file)).unwrap());
    let mut cases: Vec<Case> = f
        .metadata
        .iter()
        .map(|(name, json)| Case { name: name.clone(), meta: serde_json::from_str(json).unwrap(), file: f.clone() })
        .filter(|c| ops.contains(&c.meta["op"].as_str().unwrap_or("")))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!cases.is_empty(), "{file} has no cases for {ops:?}");
    cases
}

pub fn reduction_of(c: &Case) -> wgrad::Reduction {
    wgrad::Reduction::parse(&c.str("reduction").unwrap_or_else(|| "mean".into())).unwrap()
}

/// Sizes every GPU-vs-CPU test covers: one element, lengths that are not a multiple of any
/// workgroup size, and over a million elements.
pub const LENGTHS: &[usize] = &[1, 7, 255, 257, 1000, 1025, 4099, 1 << 20, (1 << 20) + 3];

/// An absolute tolerance of `frac` times the tensor's largest magnitude: long dot products cancel
/// to values far below their terms, whose rounding (not the value's) bounds the error.
pub fn atol_of(want: &[f32], frac: f64) -> f64 {
    frac * want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64
}

/// Tudui with the state dict PyTorch wrote (tests/data/tudui_init.safetensors).
pub fn tudui_from_pytorch() -> wgrad::Model {
    let mut m = wgrad::models::tudui(0);
    wgrad::io::state_dict::load_into(&data_path("tudui_init.safetensors"), &mut m.params).unwrap();
    m
}

/// tests/golden/make_goldens.py's ResidualNet (a stem, an identity block and a projection block),
/// whose state dict PyTorch wrote to tests/data/residual_init.safetensors (3×8×8 inputs).
pub fn residual_net() -> wgrad::nn::Sequential {
    use wgrad::nn::{AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential};
    Sequential::new()
        .add("conv1", Conv2d::new(3, 8, 3).padding(1).bias(false))
        .add("bn1", BatchNorm2d::new(8))
        .add("relu", ReLU)
        .add(
            "layer1",
            Sequential::new()
                .push(wgrad::nn::models::BasicBlock::new(8, 8, 1))
                .push(wgrad::nn::models::BasicBlock::new(8, 16, 2)),
        )
        .add("avgpool", AdaptiveAvgPool2d::new(1))
        .add("flatten", Flatten::new())
        .add("fc", Linear::new(16, 10))
}

/// (images, targets) of tests/data/tudui_batch{i}.safetensors.
pub fn tudui_batch(i: usize) -> (Vec<f32>, Vec<i64>) {
    let p = data_path(&format!("tudui_batch{i}.safetensors"));
    let f = wgrad::io::safetensors::File::read(&p).unwrap();
    (f.f32(&p, "images").unwrap().1.to_vec(), f.i64(&p, "targets").unwrap().1.to_vec())
}

/// A fresh, empty folder in the system's temporary directory, removed with everything in it when the
/// returned guard is dropped (at the end of the test, passing or failing). Derefs to its path.
pub fn tempdir() -> TestDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d =
        std::env::temp_dir().join(format!("wgrad-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TestDir(d)
}

/// A test's own temporary folder (see [`tempdir`]).
pub struct TestDir(std::path::PathBuf);

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TestDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// GPUs of their own, one for each convolution kernel variant the adapter offers besides the one
/// the default GPU uses (register-blocked, subgroups, tiled; WGRAD_CONV_KERNELS picks the default),
/// so that every variant runs the parity tests on one adapter; `split` also splits reductions as
/// [`splitting_gpu`] does.
pub fn other_conv_kernels_gpus(split: bool) -> Vec<Arc<Gpu>> {
    let Some(default) = gpu() else { return Vec::new() };
    let others = default.conv_kernels_offered().into_iter().filter(|&k| k != default.conv_kernels());
    others
        .filter_map(|k| {
            own_gpu(|g| {
                g.set_conv_kernels(k).unwrap();
                if split {
                    g.set_split_target(1 << 16);
                }
            })
        })
        .collect()
}

/// A GPU of its own that splits reductions as a big GPU would (lavapipe otherwise never does), so
/// the split kernels and sum_splits are tested here too.
pub fn splitting_gpu() -> Option<Arc<Gpu>> {
    own_gpu(|g| g.set_split_target(1 << 16))
}

/// lavapipe with its 8x8 cooperative matrices made to run the `_16x16` kernels (NVIDIA's, and their
/// `_narrow` forms), in mixed precision (Gpu::force_cooperative_tile_16_on_lavapipe says why that
/// works). None where the adapter runs them by itself (the tests of mixed precision's other kernels
/// do there) or is no such lavapipe (said as a skip).
pub fn forced_cooperative_16x16_gpu() -> Option<Arc<Gpu>> {
    let g = gpu()?;
    if g.cooperative_tile() == Some(16) {
        return None;
    }
    if g.cooperative_tile() != Some(8) || !g.info.name.starts_with("llvmpipe") {
        skip(
            &format!("{} is no lavapipe with 8x8 cooperative matrices to force the 16x16 kernels on", g.describe()),
            "WGRAD_REQUIRE_COOPERATIVE_MATRIX",
        );
        return None;
    }
    let gpu = own_gpu(|g| {
        g.force_cooperative_tile_16_on_lavapipe().unwrap();
        g.set_conv_kernels(wgrad::ConvKernels::CooperativeMatrix).unwrap();
        g.set_precision(wgrad::Precision::Mixed).unwrap();
    })?;
    assert_eq!(gpu.cooperative_tile(), Some(16));
    Some(gpu)
}

/// A GPU of its own computing in mixed precision (`split`: splitting reductions as
/// [`splitting_gpu`] does); None, said as a skip, where the adapter has no f16 shaders.
pub fn mixed_precision_gpu(split: bool) -> Option<Arc<Gpu>> {
    let g = own_gpu(|g| {
        if split {
            g.set_split_target(1 << 16);
        }
    })?;
    match g.set_precision(wgrad::Precision::Mixed) {
        Ok(()) => Some(g),
        Err(e) => {
            skip(&format!("the adapter cannot run mixed precision: {e}"), "WGRAD_REQUIRE_F16");
            None
        }
    }
}

/// `v` rounded to f16 and back, as a mixed-precision product reads an input or a weight.
pub fn f16_rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// `v` as a mixed-precision product reads an output gradient: scaled by 2^e so that its largest
/// magnitude m lands in [2^14, 2^15) (e = 15 - frexp(m).exp), rounded to f16, scaled back.
pub fn f16_scaled(v: &[f32]) -> Vec<f32> {
    let m = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    // frexp's exponent of a normal m: m = f · 2^exp with f in [0.5, 1).
    let e = if m > 0.0 { (15 - (((m.to_bits() >> 23) & 0xff) as i32 - 126)).clamp(-100, 100) } else { 0 };
    let s = 2f64.powi(e);
    v.iter().map(|&x| (half::f16::from_f64(x as f64 * s).to_f64() / s) as f32).collect()
}

/// The operands (input, weight, output gradient) as products computing in `precision` read them
/// (a layer's: `gpu.precision()`, or for a convolution `wgrad::ops::conv2d::precision`): rounded
/// as [`f16_rounded`] and [`f16_scaled`] say in mixed precision, else as they are.
pub fn as_products_read(
    precision: wgrad::Precision,
    x: &[f32],
    w: &[f32],
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    match precision {
        wgrad::Precision::Mixed => (f16_rounded(x), f16_rounded(w), f16_scaled(dout)),
        wgrad::Precision::F32 => (x.to_vec(), w.to_vec(), dout.to_vec()),
    }
}

/// The adapter [`gpu`] uses, opened again for one test's settings (the shared one stays as it is).
pub fn own_gpu(configure: impl FnOnce(&Gpu)) -> Option<Arc<Gpu>> {
    gpu()?;
    let g = Gpu::default_adapter().ok()??;
    configure(&g);
    Some(Arc::new(g))
}

/// Relative L2 distance of `got` from `want`.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let d: f64 = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let w: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum();
    (d / w.max(1e-30)).sqrt()
}

/// Trains `model` 5 steps of SGD (`opts`) on one batch on the CPU path and on the GPU, in f32 and
/// in mixed precision where the adapter has it: each step's loss within `loss_tol` (relative) of
/// the CPU path's, a falling loss, the parameters within `loss_tol · params_share` (relative L2),
/// then eval mode from the CPU path's trained state, the logits within `loss_tol`. `loss_tol`: 1e-5
/// in f32, 1e-2 in mixed precision.
pub fn trains_alike_on_both_devices(
    model: &wgrad::Model,
    images: &[f32],
    targets: &[i64],
    opts: &wgrad::ExecOptions,
    params_share: f64,
) {
    let batch = targets.len();
    for (g, tol) in gpu().map(|g| (g, 1e-5)).into_iter().chain(mixed_precision_gpu(false).map(|g| (g, 1e-2))) {
        let mut cpu = wgrad::executor(&wgrad::Device::Cpu, model, batch, opts.clone()).unwrap();
        let mut gpu = wgrad::executor(&wgrad::Device::Gpu(g.clone()), model, batch, opts.clone()).unwrap();
        let mut losses = Vec::new();
        for _ in 0..5 {
            let a = cpu.step(images, targets, true).unwrap().unwrap();
            let b = gpu.step(images, targets, true).unwrap().unwrap();
            assert!((a - b).abs() <= tol * a.abs(), "{:?}: loss cpu {a}, gpu {b}", g.precision());
            losses.push(a);
        }
        assert!(losses[4] < losses[0], "the loss did not fall: {losses:?}");
        let (p, q) = (cpu.params().unwrap(), gpu.params().unwrap());
        let err = rel_l2(&q.data, &p.data);
        eprintln!("{:?}: parameters after 5 steps: relative L2 error {err:.2e}", g.precision());
        let bound = tol as f64 * params_share;
        assert!(
            err <= bound,
            "{:?}: parameters after 5 steps: relative L2 error {err:.2e} > {bound:.1e}",
            g.precision()
        );
        let inference = wgrad::ExecOptions::inference();
        let mut cpu_eval = wgrad::executor(&wgrad::Device::Cpu, model, batch, inference.clone()).unwrap();
        let mut gpu_eval = wgrad::executor(&wgrad::Device::Gpu(g.clone()), model, batch, inference).unwrap();
        cpu_eval.set_params(&p).unwrap();
        gpu_eval.set_params(&p).unwrap();
        let (a, b) = (cpu_eval.forward(images).unwrap(), gpu_eval.forward(images).unwrap());
        let err = rel_l2(&b, &a);
        eprintln!("{:?}: eval-mode logits: relative L2 error {err:.2e}", g.precision());
        assert!(err <= tol as f64, "{:?}: eval-mode logits: relative L2 error {err:.2e}", g.precision());
    }
}
