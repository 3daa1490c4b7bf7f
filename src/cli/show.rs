//! `wgrad show`: a PNG grid of the first 64 images of a split with their class names.

use super::data_args::DataArgs;
use crate::data::{Dataset, Split, SIDE};
use crate::io::write_atomic;
use crate::plot::draw_text;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
}

const SCALE: usize = 2;
const TEXT_H: usize = 10;
const CELL_H: usize = SIDE * SCALE + TEXT_H + 4;
/// Pixels per character of [`draw_text`]'s font.
const CHAR_W: usize = 8;

/// The grid as an image: up to 64 images, 8 per row, each with its class name (cells as wide as
/// the longest name, "T-shirt/top", needs).
pub fn grid(ds: &Dataset) -> image::RgbImage {
    let n = ds.len().min(64);
    let rows = n.div_ceil(8).max(1);
    let longest = ds.classes.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let cell_w = (SIDE * SCALE).max(CHAR_W * longest) + 8;
    let mut img = image::RgbImage::from_pixel((8 * cell_w) as u32, (rows * CELL_H) as u32, image::Rgb([24, 24, 24]));
    for i in 0..n {
        let (x0, cy) = ((i % 8) * cell_w + 4, (i / 8) * CELL_H + 2);
        // The picture centred in its cell, the name from the cell's left edge.
        let cx = x0 + (cell_w - 8 - SIDE * SCALE) / 2;
        let pixels = ds.image(i);
        for y in 0..SIDE * SCALE {
            for x in 0..SIDE * SCALE {
                let at = (y / SCALE) * SIDE + x / SCALE;
                let rgb = [pixels[at], pixels[SIDE * SIDE + at], pixels[2 * SIDE * SIDE + at]];
                img.put_pixel((cx + x) as u32, (cy + y) as u32, image::Rgb(rgb));
            }
        }
        let name = &ds.classes[ds.labels[i] as usize];
        draw_text(&mut img, x0 as i64, (cy + SIDE * SCALE + 1) as i64, name, [255, 255, 255]);
    }
    img
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::io::check_named_output(&a.out, "a grid `wgrad show` wrote", crate::io::png::is_grid)?;
    let ds = a.data.load(a.split)?;
    write_atomic(&a.out, &crate::io::png::encode(&a.out, &grid(&ds), crate::io::png::Kind::Grid)?)?;
    println!(
        "wrote {} ({} images of {}{})",
        a.out.display(),
        ds.len().min(64),
        ds.name,
        if ds.synthetic { ", SYNTHETIC" } else { "" }
    );
    Ok(0)
}
