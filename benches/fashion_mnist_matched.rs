//! One epoch on Fashion-MNIST on the CPU path from the start a PyTorch run used: its initial state
//! dict and its shuffled order, written by `benches/fashion_mnist_pytorch.py --start-dir D`. The two
//! runs then differ only in their float32 arithmetic; this prints wgrad's test accuracy and where
//! its per-step losses part from PyTorch's (D/pytorch_losses.txt).
//!
//!     python3 benches/fashion_mnist_pytorch.py --model resnet20 --batch-size 128 --lr 0.1 \
//!         --momentum 0.9 --weight-decay 1e-4 --seed 0 --start-dir /tmp/m0 --json
//!     cargo bench --bench fashion_mnist_matched -- /tmp/m0 --model resnet20 --batch-size 128 \
//!         --lr 0.1 --momentum 0.9 --weight-decay 1e-4

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use wgrad::data::loader::{Config, DataLoader};
use wgrad::data::{fashion_mnist, idx, DatasetKind, Split};
use wgrad::graph;
use wgrad::models::ModelKind;
use wgrad::optim::{Optimizer, Sgd};
use wgrad::Device;

#[derive(Parser)]
struct Args {
    /// The folder `fashion_mnist_pytorch.py --start-dir` wrote.
    dir: PathBuf,
    #[arg(long, default_value = "resnet20")]
    model: String,
    #[arg(long = "batch-size", default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long = "weight-decay", default_value_t = 1e-4)]
    weight_decay: f32,
    /// cargo bench passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let kind = ModelKind::parse(&a.model).ok_or_else(|| anyhow::anyhow!("unknown model {}", a.model))?;
    let dir = fashion_mnist::find(std::path::Path::new("data"))?;
    let train = Arc::new(idx::load(DatasetKind::FashionMnist, &dir, Split::Train)?);
    let test = Arc::new(idx::load(DatasetKind::FashionMnist, &dir, Split::Test)?);
    let mut model = kind.build(0);
    wgrad::io::state_dict::load_into(&a.dir.join("init.safetensors"), &mut model.params)?;
    let raw = std::fs::read(a.dir.join("order.bin"))?;
    let order: Vec<usize> = raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize).collect();
    anyhow::ensure!(order.len() == train.len(), "order.bin holds {} indices for {} images", order.len(), train.len());
    anyhow::ensure!(order.iter().all(|&i| i < train.len()), "order.bin holds an index beyond {} images", train.len());
    let sgd = Sgd { lr: a.lr, momentum: a.momentum, dampening: 0.0, weight_decay: a.weight_decay, nesterov: false };
    let opts = graph::Options { optimizer: Some(Optimizer::Sgd(sgd)), ..Default::default() };
    let mut ex = graph::executor(&Device::Cpu, &model, a.batch_size, opts)?;
    let loader = DataLoader::new(train.clone(), Config { drop_last: true, ..Config::new(a.batch_size) })?;
    let mut losses = Vec::with_capacity(loader.len());
    let t0 = std::time::Instant::now();
    for b in 0..loader.len() {
        let batch = loader.batch(0, &order, b);
        losses.push(ex.step(&batch.images(), &batch.targets, true)?.unwrap_or(f32::NAN) as f64);
    }
    let score = wgrad::eval::evaluate(&Device::Cpu, &model, &ex.params()?, &test, 256)?;
    std::fs::write(a.dir.join("wgrad_losses.txt"), losses.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    // Where the two loss curves part: the first step whose losses differ by more than each bound.
    let theirs: Vec<f64> = std::fs::read_to_string(a.dir.join("pytorch_losses.txt"))
        .map(|t| t.lines().filter_map(|l| l.parse().ok()).collect())
        .unwrap_or_default();
    let parts = [1e-4, 1e-3, 1e-2, 1e-1].map(|tol| {
        let first = losses.iter().zip(&theirs).position(|(w, p)| (w - p).abs() > tol * p.abs());
        format!("{tol:e}: {}", first.map_or("never".to_string(), |i| format!("step {}", i + 1)))
    });
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{{\"model\": \"{}\", \"test_accuracy\": {}, \"train_loss\": {}, \"pytorch_train_loss\": {}, \"seconds\": {:.1}}}",
        a.model,
        score.accuracy,
        mean(&losses),
        mean(&theirs),
        t0.elapsed().as_secs_f64()
    );
    println!("losses part (first step beyond a relative difference of) {}", parts.join(", "));
    Ok(())
}
