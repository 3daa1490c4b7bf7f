//! `wgrad bench`: training-step (forward + loss + backward + the optimizer's step) and inference
//! images/s of each model (`--model`, or `all`), median over timed steps after warm-up, each step
//! uploading its batch as bytes (as `wgrad train` does: `Executor::upload_pixels`) and again on
//! the batch already on the device (as PyTorch's and Burn's benchmarks time theirs); per-kernel
//! times (GPU timestamp queries where the adapter has them, else wall-clock per kernel or per CPU
//! op) with GFLOP/s or GB/s; pipeline creation time; the executor's memory.

use super::progress::Progress;
use super::DeviceArgs;
use crate::graph::{self, Executor, KernelTime};
use crate::nn::models::ModelKind;
use crate::ops::peak::Peak;
use crate::ops::to_tensor::ToTensor;
use crate::optim::{Adam, Optimizer, Sgd};
use crate::{shaders, Device};
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    Tudui,
    CifarNet,
    Resnet20,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOptimizer {
    /// SGD(lr=0.01), as ../shared/bench/pytorch_models.py.
    Sgd,
    /// Adam(lr=1e-3).
    Adam,
}

#[derive(clap::Args)]
pub struct Args {
    /// The networks to measure: tudui, cifar-net, resnet20 or all (comma-separated).
    #[arg(long, value_enum, default_value = "tudui", value_delimiter = ',')]
    model: Vec<BenchModel>,
    /// The optimizer of the training step.
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: BenchOptimizer,
    /// Comma-separated batch sizes.
    #[arg(long = "batch-sizes", default_value = "64,256", value_delimiter = ',', value_parser = super::positive)]
    batch_sizes: Vec<u64>,
    /// Timed steps per measurement (the median is reported).
    #[arg(long, default_value_t = 20, value_parser = super::positive)]
    steps: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Measure the GPU adapter's arithmetic rates instead of the models: kernels that do nothing
    /// but multiply-add (f32 in registers; f16 cooperative matrices from registers and from
    /// workgroup memory, where the adapter has them), the ceiling for the per-kernel GFLOP/s.
    #[arg(long, conflicts_with_all = ["model", "optimizer", "batch_sizes", "steps", "warmup"])]
    peak: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// One timed run of an executor (a step or a forward pass).
type TimedStep<'a> = dyn FnMut(&mut dyn Executor) -> crate::Result<()> + 'a;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per-kernel times grouped by kernel label (a step has each label once), longest first.
fn kernel_table(times: &[KernelTime]) -> Vec<serde_json::Value> {
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    let mut sorted: Vec<&KernelTime> = times.iter().collect();
    sorted.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    sorted
        .iter()
        .map(|t| {
            let rate = |x: u64| if t.seconds > 0.0 { x as f64 / t.seconds / 1e9 } else { 0.0 };
            serde_json::json!({
                "name": t.name, "ms": t.seconds * 1e3, "percent": 100.0 * t.seconds / total.max(1e-12),
                "gflops": (t.flops > 0).then(|| rate(t.flops)), "gbps": (t.flops == 0 && t.bytes > 0).then(|| rate(t.bytes)),
            })
        })
        .collect()
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let device = a.device.select()?;
    if a.peak {
        return peak(&device, a.json);
    }
    let (pipelines, startup_ms) = create_pipelines(&device)?;
    let models = asked_models(&a.model);
    let optimizer = match a.optimizer {
        BenchOptimizer::Sgd => Optimizer::Sgd(Sgd::new(0.01)),
        BenchOptimizer::Adam => Optimizer::Adam(Adam::new(1e-3)),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut results = Vec::new();
    if !a.json {
        if let Device::Gpu(gpu) = &device {
            let tile = gpu.cooperative_tile().map_or(String::new(), |t| format!(", cooperative matrices {t}x{t}"));
            println!(
                "start-up: {pipelines} pipelines created in {startup_ms:.1} ms; {:?} convolution kernels \
                 (WGRAD_CONV_KERNELS{tile}); {:?} precision (--precision)",
                gpu.conv_kernels(),
                gpu.precision()
            );
        } else {
            println!("CPU path: {} threads (RAYON_NUM_THREADS sets them)", rayon::current_num_threads());
        }
    }
    for (&kind, &bs) in models.iter().flat_map(|k| a.batch_sizes.iter().map(move |b| (k, b))) {
        let r = measure(&device, kind, bs as usize, optimizer, &a, &mut rng)?;
        if !a.json {
            print_result(&r, a.steps);
        }
        results.push(r);
    }
    if a.json {
        let v = serde_json::json!({
            "device": device.name(),
            "kind": if matches!(device, Device::Cpu) { "cpu" } else { "gpu" },
            "threads": rayon::current_num_threads(),
            "optimizer": optimizer.describe(),
            "startup_ms": startup_ms,
            "results": results,
        });
        println!("{v}");
    }
    Ok(0)
}

/// Creates every pipeline the device can build (the f16 ones in mixed precision only), as a
/// program's start-up does: how many, and the milliseconds it took.
fn create_pipelines(device: &Device) -> anyhow::Result<(usize, f64)> {
    let startup = Instant::now();
    let mut pipelines = 0;
    if let Device::Gpu(g) = device {
        let runs =
            |s: &&shaders::Shader| (g.precision() == crate::Precision::Mixed || !s.needs_f16()) && g.can_build(s);
        for s in shaders::all().iter().filter(runs) {
            g.pipeline(s.name)?;
            pipelines += 1;
        }
    }
    Ok((pipelines, startup.elapsed().as_secs_f64() * 1e3))
}

/// The models `--model` names, each once, in order.
fn asked_models(asked: &[BenchModel]) -> Vec<ModelKind> {
    let mut models: Vec<ModelKind> = Vec::new();
    for m in asked {
        let add: &[ModelKind] = match m {
            BenchModel::Tudui => &[ModelKind::Tudui],
            BenchModel::CifarNet => &[ModelKind::CifarNet],
            BenchModel::Resnet20 => &[ModelKind::Resnet20],
            BenchModel::All => &ModelKind::ALL,
        };
        models.extend(add.iter().filter(|k| !models.contains(k)).collect::<Vec<_>>());
    }
    models
}

/// One model at one batch size: training and inference steps, each uploading its batch and on the
/// batch already on the device, then one profiled step; the `--json` result.
fn measure(
    device: &Device,
    kind: ModelKind,
    bs: usize,
    optimizer: Optimizer,
    a: &Args,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> anyhow::Result<serde_json::Value> {
    let model = kind.build(0);
    let opts = graph::Options { optimizer: Some(optimizer), ..Default::default() };
    // A training executor (train mode) and an inference one (eval mode), as `train` and `eval`
    // build; first, since they refuse a batch the device has no memory for.
    let mut ex = graph::executor(device, &model, bs, opts)?;
    let mut inf = graph::executor(device, &model, bs, graph::Options::inference())?;
    let numel = bs * 3 * 32 * 32;
    let (mut pixels, mut images): (Vec<u8>, Vec<f32>) = (Vec::new(), Vec::new());
    pixels.try_reserve_exact(numel).and_then(|()| images.try_reserve_exact(numel)).map_err(|_| {
        anyhow::anyhow!(
            "bench: no host memory for a batch of {bs} images ({:.2} GiB)",
            (numel * 5) as f64 / (1u64 << 30) as f64
        )
    })?;
    // A batch as the data loader gives it: bytes, and ToTensor's f32 of them.
    pixels.extend((0..numel).map(|_| rng.random::<u8>()));
    let to_tensor = ToTensor::new(3);
    images.resize(numel, 0.0);
    to_tensor.apply(&pixels, 32 * 32, &mut images);
    let targets: Vec<i64> = (0..bs).map(|_| rng.random_range(0..10)).collect();
    let runs = a.warmup + a.steps;
    let mut progress = Progress::new(&format!("{} batch {bs}", kind.name()), 4 * runs, 0);
    let mut done = 0;
    // Each step uploading its batch, as `wgrad train` runs, and the same step on the batch
    // already on the device, as PyTorch's and Burn's benchmarks time theirs: taken in turn,
    // so that both see the machine's same phases.
    let mut time =
        |what: &str, ex: &mut dyn Executor, mut steps: [&mut TimedStep; 2]| -> crate::Result<[Vec<f64>; 2]> {
            let mut times = [Vec::new(), Vec::new()];
            for i in 0..runs {
                for (f, v) in steps.iter_mut().zip(&mut times) {
                    let t = Instant::now();
                    f(ex)?;
                    ex.sync()?;
                    let secs = t.elapsed().as_secs_f64();
                    if i >= a.warmup {
                        v.push(secs);
                    }
                    done += 1;
                    let phase = if i < a.warmup { "warm-up" } else { "timed" };
                    progress.set(done, done, || format!("{what} {phase}, {:.1} ms", 1e3 * secs));
                }
            }
            Ok(times)
        };
    let [train_times, train_resident] = time(
        "train",
        ex.as_mut(),
        [
            &mut |e| {
                e.upload_pixels(&pixels, &to_tensor, Some(&targets))?;
                e.step_resident(false).map(|_| ())
            },
            &mut |e| e.step_resident(false).map(|_| ()),
        ],
    )?;
    let [infer_times, infer_resident] = time(
        "inference",
        inf.as_mut(),
        [
            &mut |e| {
                e.upload_pixels(&pixels, &to_tensor, None)?;
                e.forward_resident().map(|_| ())
            },
            &mut |e| e.forward_resident().map(|_| ()),
        ],
    )?;
    let (train_resident, infer_resident) = (median(train_resident), median(infer_resident));
    let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (train_min, infer_min) = (fastest(&train_times), fastest(&infer_times));
    let (train, infer) = (median(train_times), median(infer_times));
    drop(progress);
    let kernels = ex.profile(&images, &targets)?;
    let (step_flops, forward_flops) = (ex.plan().step_flops() as f64, inf.plan().forward_flops() as f64);
    Ok(serde_json::json!({
        "model": kind.name(),
        "batch": bs,
        "train_images_per_s": bs as f64 / train,
        "infer_images_per_s": bs as f64 / infer,
        "train_ms_median": train * 1e3,
        "infer_ms_median": infer * 1e3,
        "train_ms_min": train_min * 1e3,
        "infer_ms_min": infer_min * 1e3,
        "train_resident_images_per_s": bs as f64 / train_resident,
        "infer_resident_images_per_s": bs as f64 / infer_resident,
        "train_resident_ms_median": train_resident * 1e3,
        "infer_resident_ms_median": infer_resident * 1e3,
        "train_gflops": step_flops / train / 1e9,
        "infer_gflops": forward_flops / infer / 1e9,
        "memory_bytes": ex.memory_bytes(),
        "infer_memory_bytes": inf.memory_bytes(),
        "kernels": kernel_table(&kernels),
    }))
}

/// [`measure`]'s result as text: the rates, then the per-kernel table.
fn print_result(r: &serde_json::Value, steps: u64) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let mib = |k: &str| f(k) / (1 << 20) as f64;
    println!(
        "{} batch {}: train {:.1} img/s ({:.2} ms/step median of {steps}, {:.1} GFLOP/s), inference {:.1} img/s, memory {:.1} MiB (inference {:.1} MiB)",
        r["model"].as_str().unwrap_or_default(),
        r["batch"],
        f("train_images_per_s"),
        f("train_ms_median"),
        f("train_gflops"),
        f("infer_images_per_s"),
        mib("memory_bytes"),
        mib("infer_memory_bytes")
    );
    println!(
        "  batch already on the device (as PyTorch's and Burn's benchmarks time it): train {:.1} img/s ({:.2} ms/step), inference {:.1} img/s ({:.2} ms)",
        f("train_resident_images_per_s"),
        f("train_resident_ms_median"),
        f("infer_resident_images_per_s"),
        f("infer_resident_ms_median")
    );
    println!("  {:<34} {:>10} {:>6} {:>10} {:>8}", "kernel (one profiled step)", "ms", "%", "GFLOP/s", "GB/s");
    for k in r["kernels"].as_array().into_iter().flatten() {
        let opt = |v: &serde_json::Value| v.as_f64().map_or(String::from("-"), |x| format!("{x:.1}"));
        println!(
            "  {:<34} {:>10.3} {:>6.1} {:>10} {:>8}",
            k["name"].as_str().unwrap_or_default(),
            k["ms"].as_f64().unwrap_or(f64::NAN),
            k["percent"].as_f64().unwrap_or(f64::NAN),
            opt(&k["gflops"]),
            opt(&k["gbps"])
        );
    }
}

/// `--peak`: each of [`Peak::offered`]'s rates on the GPU adapter.
fn peak(device: &Device, json: bool) -> anyhow::Result<i32> {
    let Device::Gpu(gpu) = device else {
        anyhow::bail!("bench --peak measures a GPU adapter's kernels; the CPU path has none (--device gpu)")
    };
    let timing = if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) { "GPU timestamps" } else { "wall clock" };
    if !json {
        println!("{}: arithmetic rates of kernels that do nothing else ({timing}, best of 3)", device.name());
    }
    let mut rates = Vec::new();
    for p in Peak::offered(gpu) {
        let r = crate::ops::peak::measure(gpu, p)?;
        if !json {
            println!(
                "  {:<58} {:>12.1} GFLOP/s  ({} workgroups x {} iterations, {:.2} ms)",
                p.describe(gpu),
                r.flops_per_s / 1e9,
                r.workgroups,
                r.iterations,
                r.seconds * 1e3
            );
        }
        rates.push(serde_json::json!({
            "peak": p.describe(gpu), "gflops": r.flops_per_s / 1e9, "workgroups": r.workgroups,
            "iterations": r.iterations, "ms": r.seconds * 1e3,
        }));
    }
    if json {
        println!("{}", serde_json::json!({ "device": device.name(), "timing": timing, "peaks": rates }));
    }
    Ok(0)
}
