//! The tutorial's last cell: the CIFAR-10 test split in batches of 64 through Tudui; for each batch
//! the outputs, targets and loss, then backward; "ok" at the end.
//!
//!     cargo run --release --example tudui_cifar10 -- --data-dir data --download
//!     cargo run --release --example tudui_cifar10 -- --dataset synthetic      # runs anywhere

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use wgrad::data::loader::{Config, DataLoader};
use wgrad::data::{load, DatasetKind, Split};
use wgrad::eval::argmax;
use wgrad::{models, Device, DeviceOptions, ExecOptions, Executor};

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "cifar10")]
    dataset: DatasetKind,
    #[arg(long = "data-dir", default_value = "data")]
    data_dir: PathBuf,
    #[arg(long)]
    download: bool,
    /// Stop after this many batches (all by default).
    #[arg(long)]
    limit: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (device, why) = Device::select(&DeviceOptions::from_env()?)?;
    println!("device: {why}");

    // dataset = torchvision.datasets.CIFAR10("./data", train=False, transform=ToTensor(), download=True)
    let dataset = Arc::new(load(args.dataset, &args.data_dir, Split::Test, args.download)?);
    println!("{}", dataset.describe());
    // dataloader = DataLoader(dataset, batch_size=64)
    let loader = DataLoader::new(dataset.clone(), Config::new(64))?;

    let tudui = models::tudui(0);
    let mut executors: Vec<Box<dyn Executor>> = Vec::new();
    for batch in loader.epoch(0, 0).take(args.limit.unwrap_or(usize::MAX)) {
        let ex = match executors.iter().position(|e| e.plan().batch == batch.len()) {
            Some(i) => &mut executors[i],
            None => {
                executors.push(wgrad::executor(&device, &tudui, batch.len(), ExecOptions::default())?);
                executors.last_mut().unwrap()
            }
        };
        // outputs = tudui(imgs); result_loss = loss(outputs, targets); result_loss.backward()
        let loss = ex.step(&batch.images(), &batch.targets, true)?.unwrap_or(f32::NAN);
        let outputs = ex.logits()?;
        let predicted: Vec<usize> = outputs.chunks(10).map(argmax).collect();
        println!(
            "batch {:3}: outputs [{}, 10] (first row {:?}), predicted {:?}.., targets {:?}.., loss {loss:.4}",
            batch.index,
            batch.len(),
            outputs[..10].iter().map(|v| (v * 1e3).round() / 1e3).collect::<Vec<_>>(),
            &predicted[..predicted.len().min(6)],
            &batch.targets[..batch.len().min(6)],
        );
    }
    println!("ok");
    Ok(())
}
