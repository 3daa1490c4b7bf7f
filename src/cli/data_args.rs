//! --dataset, --data-dir, --download and --split, shared by the commands that read data.

use crate::data::{self, Dataset, DatasetKind, Split};
use crate::io::checkpoint::Meta;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// cifar10 (either official layout under --data-dir), fashion-mnist or mnist (their four IDX
    /// .gz files in --data-dir, its fashion-mnist/ or mnist/, or torchvision's FashionMNIST/raw/ or
    /// MNIST/raw/; Fashion-MNIST also in /usr/share/datasets/fashion-mnist), image-folder (your
    /// own PNG, JPEG, BMP, PPM/PGM, TIFF or WebP pictures as torchvision's ImageFolder reads them:
    /// --data-dir holds train/ and test/ (or val/), each with a folder per class, or the class
    /// folders alone, a fifth of each class held out as the test split (--test-fraction); resized
    /// to 32×32) or synthetic (generated, CIFAR-10 binary format).
    /// Without it: a checkpoint's own (eval, train --resume), else CIFAR-10 if it is under
    /// --data-dir (or --download is given), else synthetic.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Folder holding the data (CIFAR-10: the folder that contains cifar-10-batches-py/ or -bin/;
    /// an image folder: the folder that contains train/ and test/, or the class folders)
    /// [default: data; for a checkpoint's own dataset (eval, train --resume), the folder it was
    /// trained on].
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Download the dataset (CIFAR-10, 170 MB; Fashion-MNIST, 30 MB; MNIST, 12 MB; verified by MD5)
    /// into --data-dir if it is not there.
    #[arg(long)]
    pub download: bool,
    /// The share of each class's pictures an image folder of class folders alone (no train/ and
    /// test/) holds out as the test split, the same pictures every run [default: 0.2; for a
    /// checkpoint's own folder, the checkpoint's].
    #[arg(long = "test-fraction", value_parser = fraction)]
    pub test_fraction: Option<f64>,
    /// Whether `data_dir` is the checkpoint's (set by [`DataArgs::defaulting_to`]).
    #[arg(skip)]
    recorded_dir: bool,
    /// The checkpoint's test fraction, where it held one out of its folder.
    #[arg(skip)]
    recorded_fraction: Option<f64>,
}

/// A number in (0, 1).
fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        Ok(f) => Err(format!("{f} is not in (0, 1)")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

impl DataArgs {
    /// These arguments with a checkpoint's dataset as the dataset where none is given, and its data
    /// folder as the folder where none is given and the dataset is its own.
    pub fn defaulting_to(mut self, recorded: Option<&Meta>) -> DataArgs {
        let Some(m) = recorded else { return self };
        let own = DatasetKind::from_name(&m.dataset);
        self.dataset = self.dataset.or(own);
        if self.data_dir.is_none() && self.dataset.is_some() && self.dataset == own {
            self.data_dir = m.data_dir.as_ref().map(PathBuf::from);
            self.recorded_dir = self.data_dir.is_some();
        }
        if self.dataset.is_some() && self.dataset == own {
            self.recorded_fraction = m.test_fraction;
        }
        self
    }

    /// The data folder: `--data-dir`, the checkpoint's, or `data`.
    pub fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(data::default_data_dir)
    }

    /// The dataset asked for, or the default: CIFAR-10 when present (or to be downloaded), else
    /// the synthetic set, saying so.
    pub fn kind(&self) -> DatasetKind {
        if let Some(k) = self.dataset {
            return k;
        }
        if self.download || data::cifar10::find(&self.dir()).is_some() {
            return DatasetKind::Cifar10;
        }
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "data: no CIFAR-10 under {}/ (cifar-10-batches-py or -bin), so using the SYNTHETIC set; \
             add --download to fetch CIFAR-10 (170 MB), or --dataset fashion-mnist",
                self.dir().display()
            )
        });
        DatasetKind::Synthetic
    }

    pub fn load(&self, split: Split) -> crate::Result<Arc<Dataset>> {
        let dir = self.dir();
        if self.recorded_dir && !dir.is_dir() {
            return Err(crate::Error::file(
                &dir,
                "the checkpoint's data folder is not there (moved?): --data-dir names where the data is now",
            ));
        }
        let kind = self.kind();
        let fraction = self.test_fraction.or(self.recorded_fraction).unwrap_or(data::image_folder::HELD_OUT);
        let ds = match kind {
            DatasetKind::ImageFolder if !self.download => data::load_image_folder(&dir, split, fraction)?,
            _ => data::load(kind, &dir, split, self.download)?,
        };
        if let Some(f) = self.test_fraction.filter(|_| ds.held_out.is_none()) {
            return Err(crate::Error::file(
                &dir,
                format!(
                    "--test-fraction {f}: it splits a folder of class folders alone, and {} is not one ({})",
                    ds.name,
                    match kind {
                        DatasetKind::ImageFolder => "this one has its own test/ or val/ folder",
                        _ => "it has its own test split",
                    }
                ),
            ));
        }
        eprintln!("data: {}", ds.describe());
        Ok(Arc::new(ds))
    }
}
