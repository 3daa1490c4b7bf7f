//! `wgrad predict`: top-3 classes with probabilities for pictures (PNG, JPEG, BMP, PPM/PGM, TIFF,
//! WebP) of any size, framed as the checkpoint's dataset framed its images (CIFAR-10 and image
//! folders: colour, resized to 32×32, bilinear; Fashion-MNIST and MNIST: grey, 28×28 padded to
//! 32×32), with a state dict or checkpoint.

use super::model_args::WeightsArgs;
use super::DeviceArgs;
use crate::data::image::{load_image, Framing};
use crate::data::DatasetKind;
use crate::eval::top_classes;
use crate::graph;
use crate::io::checkpoint;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// PNG, JPEG, BMP, PPM/PGM, TIFF or WebP files, or folders of them (their pictures, in sorted
    /// order).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The dataset the network learnt from, for its class names and how its images were framed
    /// (fashion-mnist, mnist: grey, 28×28 padded to 32×32) [default: a checkpoint's, else cifar10].
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let device = a.device.select()?;
    let (_, model) = a.weights.load()?;
    // Class names and framing: --dataset's, else the checkpoint's dataset's, else CIFAR-10's.
    let meta = checkpoint::meta_of(&a.weights.path).ok();
    // (An image folder's names are the checkpoint's: its class folders.)
    let names = |k: DatasetKind| k.classes().map(|c| c.map(String::from).to_vec());
    let (classes, framing) = match (a.dataset, &meta) {
        (Some(k), m) => {
            (names(k).or(m.as_ref().map(|m| m.classes.clone())).unwrap_or_default(), Framing::of_dataset(k.name()))
        }
        (None, Some(m)) => (m.classes.clone(), Framing::of_dataset(&m.dataset)),
        (None, None) => (names(DatasetKind::Cifar10).unwrap_or_default(), Framing::Colour),
    };
    let mut paths = Vec::new();
    for p in &a.images {
        if !p.is_dir() {
            paths.push(p.clone());
            continue;
        }
        let found = crate::data::image_folder::pictures_in(p)?;
        if found.is_empty() {
            anyhow::bail!("{}: a folder without pictures (PNG, JPEG, BMP, PPM, PGM, TIFF or WebP files)", p.display());
        }
        paths.extend(found);
    }
    let mut images = Vec::new();
    for p in &paths {
        images.extend(load_image(p, framing)?);
    }
    // In batches of at most 256 images, so any number of pictures fits the adapter's limits.
    const CHUNK: usize = 256;
    let per_image = 3 * 32 * 32;
    let mut executors: Vec<Box<dyn graph::Executor>> = Vec::new();
    let mut logits = Vec::new();
    for chunk in images.chunks(CHUNK * per_image) {
        let n = chunk.len() / per_image;
        let ex = match executors.iter().position(|e| e.plan().batch == n) {
            Some(i) => &mut executors[i],
            None => {
                executors.push(graph::executor(&device, &model, n, graph::Options::inference())?);
                executors.last_mut().unwrap()
            }
        };
        logits.extend(ex.forward(chunk)?);
    }
    let n_classes = executors[0].plan().classes;
    for (p, ranked) in paths.iter().zip(top_classes(&logits, n_classes, 3)) {
        let name = |c: usize| classes.get(c).cloned().unwrap_or_else(|| format!("class {c}"));
        let top: Vec<String> = ranked.iter().map(|&(c, pr)| format!("{} {:.1}%", name(c), 100.0 * pr)).collect();
        println!("{}: {}", p.display(), top.join(", "));
    }
    Ok(0)
}
