//! `wgrad predict`: top-3 classes with probabilities for PNG/JPEG images of any size, resized to
//! 32×32 (bilinear), with a state dict or checkpoint.

use super::DeviceArgs;
use crate::data::cifar10::CLASSES;
use crate::data::image::load_image;
use crate::graph;
use crate::io::checkpoint;
use crate::nn::models;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// State dict or wgrad checkpoint (file, or a folder of checkpoints).
    #[arg(long)]
    weights: PathBuf,
    /// PNG or JPEG files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let device = a.device.select()?;
    let mut model = models::tudui(0);
    checkpoint::load_weights(&a.weights, &mut model.params)?;
    let classes = checkpoint::classes(&a.weights).unwrap_or_else(|| CLASSES.iter().map(|s| s.to_string()).collect());
    let mut images = Vec::new();
    for p in &a.images {
        images.extend(load_image(p)?);
    }
    let mut ex = graph::executor(&device, &model, a.images.len(), graph::Options::inference())?;
    let logits = ex.forward(&images)?;
    for (p, row) in a.images.iter().zip(logits.chunks(10)) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut ranked: Vec<(usize, f32)> = exp.iter().map(|e| e / sum).enumerate().collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        let top: Vec<String> = ranked
            .iter()
            .take(3)
            .map(|(c, pr)| format!("{} {:.1}%", classes.get(*c).map_or("?", |s| s.as_str()), 100.0 * pr))
            .collect();
        println!("{}: {}", p.display(), top.join(", "));
    }
    Ok(0)
}
