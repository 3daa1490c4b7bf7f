//! Datasets as PyTorch users know them: CIFAR-10 (both official layouts), Fashion-MNIST and MNIST
//! (IDX, gzipped), each with a verified download, your own pictures in torchvision's ImageFolder
//! layout, and a synthetic set in CIFAR-10's binary format; a DataLoader that prepares the next
//! batch on another thread.

pub mod cifar10;
#[cfg(not(target_arch = "wasm32"))]
pub mod download;
pub mod fashion_mnist;
pub mod idx;
pub mod image;
pub mod image_folder;
pub mod loader;
pub mod mnist;
pub mod pickle_guard;
pub mod synthetic;

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Image side and channels every dataset is delivered in (Fashion-MNIST is padded and replicated).
pub const SIDE: usize = 32;
pub const CHANNELS: usize = 3;
pub const IMAGE_BYTES: usize = CHANNELS * SIDE * SIDE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Train,
    Test,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetKind {
    Cifar10,
    FashionMnist,
    Mnist,
    /// Your own pictures, a folder per class ([`image_folder`]).
    ImageFolder,
    Synthetic,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 5] = [
        DatasetKind::Cifar10,
        DatasetKind::FashionMnist,
        DatasetKind::Mnist,
        DatasetKind::ImageFolder,
        DatasetKind::Synthetic,
    ];

    /// What its sets are called ([`Dataset::name`], which checkpoints record).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "CIFAR-10",
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Mnist => "MNIST",
            DatasetKind::ImageFolder => "ImageFolder",
            DatasetKind::Synthetic => "synthetic",
        }
    }

    /// Its class names (the synthetic set's are CIFAR-10's); an image folder's are its folders'.
    pub fn classes(self) -> Option<[&'static str; 10]> {
        match self {
            DatasetKind::FashionMnist => Some(fashion_mnist::CLASSES),
            DatasetKind::Mnist => Some(mnist::CLASSES),
            DatasetKind::Cifar10 | DatasetKind::Synthetic => Some(cifar10::CLASSES),
            DatasetKind::ImageFolder => None,
        }
    }

    /// The kind whose sets are called `name`.
    pub fn from_name(name: &str) -> Option<DatasetKind> {
        DatasetKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Images as bytes (N, 3, 32, 32), channel-planar, with labels and class names.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub split: Split,
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub classes: Vec<String>,
    /// Whether the data was generated rather than read (every command says so).
    pub synthetic: bool,
    /// Where the splits were made by holding out part of each class of a folder that had none
    /// (an image folder without train/ and test/; every command says so): that share.
    pub held_out: Option<f64>,
    /// Where it was read from.
    pub source: PathBuf,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..][..IMAGE_BYTES]
    }
    /// One line saying what this is, e.g. for the start of `wgrad train`.
    pub fn describe(&self) -> String {
        let what = if self.synthetic {
            " (SYNTHETIC data, not a real dataset)".to_string()
        } else if let Some(f) = self.held_out {
            format!(
                " (no train/ or test/ there: {}% of each class's pictures, the same ones every run, are the test split)",
                f * 100.0
            )
        } else {
            String::new()
        };
        format!("{} {:?} split: {} images from {}{what}", self.name, self.split, self.len(), self.source.display())
    }
}

/// Where the synthetic set is generated when no folder is given.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// Loads a split. CIFAR-10 is looked for under `dir` in either official layout (and fetched with
/// `download`); Fashion-MNIST in `dir`, `dir`/fashion-mnist, `dir`/FashionMNIST/raw or
/// /usr/share/datasets/fashion-mnist (fetched into `dir`/fashion-mnist with `download`); MNIST in
/// `dir`, `dir`/mnist or `dir`/MNIST/raw (fetched into `dir`/mnist); the synthetic set is
/// generated (deterministically) into `dir`/wgrad-synthetic-cifar10 when missing.
pub fn load(kind: DatasetKind, dir: &Path, split: Split, download: bool) -> Result<Dataset> {
    nonempty(load_any(kind, dir, split, download)?)
}

/// An image folder's split as [`load`] loads it, an unsplit folder's test split holding
/// `test_fraction` of each class's pictures ([`image_folder::load_with`]).
pub fn load_image_folder(dir: &Path, split: Split, test_fraction: f64) -> Result<Dataset> {
    nonempty(image_folder::load_with(dir, split, test_fraction)?)
}

fn nonempty(ds: Dataset) -> Result<Dataset> {
    if ds.is_empty() {
        return Err(Error::file(&ds.source, format!("the {:?} split of {} holds no images", ds.split, ds.name)));
    }
    Ok(ds)
}

fn load_any(kind: DatasetKind, dir: &Path, split: Split, download: bool) -> Result<Dataset> {
    match kind {
        DatasetKind::Cifar10 => {
            if download && cifar10::find(dir).is_none() {
                #[cfg(not(target_arch = "wasm32"))]
                download::cifar10(dir)?;
            }
            cifar10::load(dir, split)
        }
        DatasetKind::FashionMnist => {
            if download && fashion_mnist::find(dir).is_err() {
                #[cfg(not(target_arch = "wasm32"))]
                download::fashion_mnist(dir)?;
            }
            idx::load(kind, &fashion_mnist::find(dir)?, split)
        }
        DatasetKind::Mnist => {
            if download && mnist::find(dir).is_err() {
                #[cfg(not(target_arch = "wasm32"))]
                download::mnist(dir)?;
            }
            idx::load(kind, &mnist::find(dir)?, split)
        }
        DatasetKind::ImageFolder if download => Err(Error::file(
            dir,
            "--download fetches CIFAR-10, Fashion-MNIST and MNIST; an image folder is your own pictures",
        )),
        DatasetKind::ImageFolder => image_folder::load(dir, split),
        DatasetKind::Synthetic => {
            let d = dir.join(synthetic::FOLDER);
            if !d.join(synthetic::TEST_FILE).exists() {
                synthetic::write(&d, synthetic::SEED)?;
            }
            let mut ds = cifar10::load_bin(&d, split)?;
            ds.name = DatasetKind::Synthetic.name().into();
            ds.synthetic = true;
            Ok(ds)
        }
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))
}
