//! `wgrad predict`: top-3 classes with probabilities for PNG/JPEG images of any size, resized to
//! 32×32 (bilinear), with a state dict or checkpoint.

use super::DeviceArgs;
use crate::data::cifar10::CLASSES;
use crate::graph;
use crate::io::checkpoint;
use crate::nn::models;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

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

/// Largest width or height accepted, and the most memory a decoder may take.
const MAX_SIDE: u32 = 16_384;
const MAX_ALLOC: u64 = 512 << 20;

/// Reads an image of any size as a 3×32×32 tensor in [0, 1] (ToTensor after Resize((32, 32))).
pub fn load_image(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if bytes.is_empty() {
        return Err(Error::file(path, "empty file, not an image"));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::file(path, "not a PNG or JPEG image"));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| Error::file(path, format!("cannot decode the image: {e}")))?;
    let small = image::imageops::resize(&img.to_rgb8(), 32, 32, image::imageops::FilterType::Triangle);
    let mut out = vec![0f32; 3 * 32 * 32];
    for (i, p) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * 1024 + i] = p[c] as f32 / 255.0;
        }
    }
    Ok(out)
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
    let mut ex = graph::executor(&device, &model, a.images.len(), graph::Options::default())?;
    let logits = ex.forward(&images)?;
    for (p, row) in a.images.iter().zip(logits.chunks(10)) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut ranked: Vec<(usize, f32)> = exp.iter().map(|e| e / sum).enumerate().collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
        let top: Vec<String> = ranked.iter().take(3).map(|(c, pr)| format!("{} {:.1}%", classes.get(*c).map_or("?", |s| s.as_str()), 100.0 * pr)).collect();
        println!("{}: {}", p.display(), top.join(", "));
    }
    Ok(0)
}
