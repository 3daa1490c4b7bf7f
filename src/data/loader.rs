//! DataLoader: batch_size, shuffle with a seed (a new permutation each epoch), drop_last, the
//! optional augmentation of CIFAR-10 training (RandomCrop(32, padding=4), then
//! RandomHorizontalFlip()), ToTensor (u8 / 255 → f32, N×3×32×32) and optional Normalize(mean,
//! std) ([`ToTensor`]). A batch holds its images' bytes: an executor's `upload_pixels` sends them
//! to the device, a quarter of the f32 batch, and makes the f32 input there or, on the CPU path,
//! in its own buffer; [`Batch::images`] makes it on the host. The next batch is prepared on
//! another thread while the current step runs, its images gathered (and cropped) in parallel.

use super::{Dataset, CHANNELS, IMAGE_BYTES, SIDE};
use crate::ops::to_tensor::ToTensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub drop_last: bool,
    /// transforms.Normalize(mean, std) per channel, after ToTensor.
    pub normalize: Option<([f32; 3], [f32; 3])>,
    /// transforms.RandomCrop(32, padding=4) then RandomHorizontalFlip() per image, before
    /// ToTensor, as He et al. (2016, §4.2) train on CIFAR-10: drawn from (seed, epoch, batch), so
    /// a resumed run sees the same images.
    pub augment: bool,
}

impl Config {
    /// DataLoader(dataset, batch_size) with PyTorch's defaults: no shuffle, keep the last batch.
    pub fn new(batch_size: usize) -> Self {
        Config { batch_size, shuffle: false, seed: 0, drop_last: false, normalize: None, augment: false }
    }
}

/// One batch: images (N, 3, 32, 32) as bytes, with the ToTensor that makes them f32, and
/// targets (N,).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Position of the batch in its epoch.
    pub index: usize,
    /// The images' bytes, after the augmentation and before ToTensor (N, 3, 32, 32).
    pub pixels: Vec<u8>,
    /// The loader's ToTensor and Normalize.
    pub to_tensor: Arc<ToTensor>,
    pub targets: Vec<i64>,
}

impl Batch {
    /// The images as the model takes them: ToTensor (and Normalize) of the bytes, (N, 3, 32, 32)
    /// f32. (An executor's `upload_pixels` makes them itself, on the device.)
    pub fn images(&self) -> Vec<f32> {
        let mut images = vec![0.0; self.pixels.len()];
        self.to_tensor.apply(&self.pixels, SIDE * SIDE, &mut images);
        images
    }
    pub fn len(&self) -> usize {
        self.targets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[derive(Clone)]
pub struct DataLoader {
    ds: Arc<Dataset>,
    cfg: Config,
    to_tensor: Arc<ToTensor>,
}

impl DataLoader {
    pub fn new(ds: Arc<Dataset>, cfg: Config) -> crate::Result<Self> {
        if cfg.batch_size == 0 {
            return Err(crate::Error::Graph("batch size must be at least 1".into()));
        }
        let to_tensor = match cfg.normalize {
            Some((mean, std)) => ToTensor::normalized(&mean, &std)?,
            None => ToTensor::new(CHANNELS),
        };
        Ok(DataLoader { ds, cfg, to_tensor: Arc::new(to_tensor) })
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.ds
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// ToTensor and the configured Normalize, which make a batch's `images` from its `pixels`.
    pub fn to_tensor(&self) -> &ToTensor {
        &self.to_tensor
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.ds.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample order of an epoch: identity, or a permutation drawn from (seed, epoch).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.ds.len()).collect();
        if self.cfg.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            idx.shuffle(&mut rng);
        }
        idx
    }

    /// Builds batch `b` of `epoch`'s order.
    pub fn batch(&self, epoch: u64, order: &[usize], b: usize) -> Batch {
        let bs = self.cfg.batch_size;
        let ids = &order[b * bs..((b + 1) * bs).min(order.len())];
        // Each batch's crops and flips from its own stream of the seed's generator, drawn image
        // by image in order; then the images are moved in parallel.
        let crops: Option<Vec<Crop>> = self.cfg.augment.then(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ AUGMENT_SEED);
            rng.set_stream((epoch << 32) | b as u64);
            ids.iter().map(|_| Crop::draw(&mut rng)).collect()
        });
        let mut pixels = vec![0u8; ids.len() * IMAGE_BYTES];
        let images = pixels.par_chunks_mut(IMAGE_BYTES).with_min_len(16).zip(ids).enumerate();
        images.for_each(|(k, (out, &i))| match &crops {
            Some(crops) => crops[k].apply(self.ds.image(i), out),
            None => out.copy_from_slice(self.ds.image(i)),
        });
        let targets = ids.iter().map(|&i| self.ds.labels[i] as i64).collect();
        Batch { index: b, pixels, to_tensor: self.to_tensor.clone(), targets }
    }

    /// The batches of `epoch` from batch `start` on, each prepared on a worker thread one ahead
    /// of the consumer.
    pub fn epoch(&self, epoch: u64, start: usize) -> Epoch {
        let (tx, rx) = sync_channel(1);
        let me = self.clone();
        let count = self.len();
        let worker = std::thread::spawn(move || {
            let order = me.order(epoch);
            for b in start..count {
                if tx.send(me.batch(epoch, &order, b)).is_err() {
                    return;
                }
            }
        });
        Epoch { rx: Some(rx), worker: Some(worker) }
    }
}

/// Mixed into the seed of the augmentation's generator, so that it draws apart from the shuffle's.
const AUGMENT_SEED: u64 = 0x5EED_C0DE_A4A4_1F1F;

/// RandomCrop(32, padding=4) (zeros around) then RandomHorizontalFlip() of one CHW image: its
/// top-left corner at (dy, dx) of the padded 40×40 image, each uniform in 0..=8 as torchvision
/// draws them, then a mirror with probability 1/2.
struct Crop {
    dy: usize,
    dx: usize,
    flip: bool,
}

const PAD: usize = 4;

impl Crop {
    fn draw(rng: &mut ChaCha8Rng) -> Crop {
        use rand::Rng;
        let (dy, dx) = (rng.random_range(0..=2 * PAD), rng.random_range(0..=2 * PAD));
        Crop { dy, dx, flip: rng.random_bool(0.5) }
    }

    /// Writes the crop of `img` into `out` (an image's bytes each).
    fn apply(&self, img: &[u8], out: &mut [u8]) {
        let Crop { dy, dx, flip } = *self;
        for c in 0..CHANNELS {
            for y in 0..SIDE {
                let row = &mut out[(c * SIDE + y) * SIDE..][..SIDE];
                // Output row y is padded row y + dy, input row y + dy − PAD.
                let Some(src) = (y + dy).checked_sub(PAD).filter(|&r| r < SIDE) else {
                    row.fill(0);
                    continue;
                };
                // Unflipped, output column x is input column x + dx − PAD: inside for x in lo..hi.
                let src = &img[(c * SIDE + src) * SIDE..][..SIDE];
                let (lo, hi) = (PAD.saturating_sub(dx), (SIDE + PAD - dx).min(SIDE));
                row[..lo].fill(0);
                row[lo..hi].copy_from_slice(&src[lo + dx - PAD..hi + dx - PAD]);
                row[hi..].fill(0);
                if flip {
                    row.reverse();
                }
            }
        }
    }
}

/// An epoch's batches; dropping it stops the worker.
pub struct Epoch {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Iterator for Epoch {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
