//! A synthetic CIFAR-10-like set, written in CIFAR-10's binary format from a seed, for tests and
//! for users without data. Every command that uses it says so.
//!
//! How classes differ, so that a CNN can learn them: class c has a base colour (a hue at c/10 of
//! the colour wheel) and a stripe pattern (orientation c·18°, period 4 + c % 3 pixels). Each image
//! draws from the seeded RNG a hue shift of up to ±30° (so neighbouring classes' colours overlap),
//! its brightness, the stripes' phase and contrast, an 8×8 patch at a random place and per-pixel
//! noise. Colour narrows a class down to two or three; the stripes' orientation and period decide.

use super::cifar10::{parse_bin, CLASSES, RECORD};
use super::{Dataset, DatasetKind, Split, IMAGE_BYTES, SIDE};
use crate::io::write_atomic;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub const FOLDER: &str = "wgrad-synthetic-cifar10";
pub const TEST_FILE: &str = "test_batch.bin";
pub const SEED: u64 = 2024;
/// Images per file: five training files and one test file, like CIFAR-10 but a fifth the size.
pub const PER_FILE: usize = 2000;

/// One record (label byte + 3072 pixels) of class `label`.
pub fn record(rng: &mut ChaCha8Rng, label: u8) -> Vec<u8> {
    let c = label as f32;
    let hue = (c / 10.0 + rng.random_range(-1.0 / 12.0..1.0 / 12.0f32)) * std::f32::consts::TAU;
    let base = [hue.cos(), (hue + 2.094).cos(), (hue + 4.189).cos()].map(|v| 0.5 + 0.3 * v);
    let angle = (c * 18.0).to_radians();
    let period = 4.0 + (label % 3) as f32;
    let (bright, phase, contrast) =
        (rng.random_range(0.8..1.2f32), rng.random_range(0.0..period), rng.random_range(0.05..0.2f32));
    let (px, py) = (rng.random_range(4..20usize), rng.random_range(4..20usize));
    let mut rec = Vec::with_capacity(RECORD);
    rec.push(label);
    for (ch, b) in base.iter().enumerate() {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let t = (x as f32 * angle.cos() + y as f32 * angle.sin() + phase) / period;
                let stripe = contrast * (t * std::f32::consts::TAU).sin();
                let patch = if (px..px + 8).contains(&x) && (py..py + 8).contains(&y) {
                    0.15 * if ch == label as usize % 3 { 1.0 } else { -1.0 }
                } else {
                    0.0
                };
                let v = (b * bright + stripe + patch + rng.random_range(-0.15..0.15f32)).clamp(0.0, 1.0);
                rec.push((v * 255.0).round() as u8);
            }
        }
    }
    debug_assert_eq!(rec.len(), 1 + IMAGE_BYTES);
    rec
}

/// The bytes of file `f` of the set (0..5: data_batch_1..5.bin, 5: test_batch.bin).
pub fn file_bytes(seed: u64, f: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(f as u64));
    let mut bytes = Vec::with_capacity(PER_FILE * RECORD);
    for i in 0..PER_FILE {
        bytes.extend(record(&mut rng, (i % 10) as u8));
    }
    bytes
}

/// Writes data_batch_1..5.bin, test_batch.bin and batches.meta.txt into `dir`, atomically per file.
pub fn write(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    let names: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).chain([TEST_FILE.to_string()]).collect();
    for (f, name) in names.iter().enumerate() {
        write_atomic(&dir.join(name), &file_bytes(seed, f))?;
    }
    write_atomic(&dir.join("batches.meta.txt"), (CLASSES.join("\n") + "\n").as_bytes())
}

/// A split generated in memory: the same images and labels as the files [`write()`] writes (what a
/// browser page trains on without touching a disk).
pub fn generate(seed: u64, split: Split) -> Result<Dataset> {
    let files = match split {
        Split::Train => 0..5,
        Split::Test => 5..6,
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        let (i, l) = parse_bin(Path::new(FOLDER), &file_bytes(seed, f))?;
        images.extend(i);
        labels.extend(l);
    }
    Ok(Dataset {
        name: DatasetKind::Synthetic.name().into(),
        split,
        images,
        labels,
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
        synthetic: true,
        held_out: None,
        source: format!("seed {seed} (generated in memory)").into(),
    })
}
