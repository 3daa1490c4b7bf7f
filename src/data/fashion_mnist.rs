//! Fashion-MNIST (Zalando Research: 70,000 grey 28×28 images of clothing, 10 classes), in the
//! IDX files of [`super::idx`]: as Debian's `dataset-fashion-mnist` installs them in
//! /usr/share/datasets/fashion-mnist, as torchvision's `FashionMNIST(root, download=True)` leaves
//! them (`root`/FashionMNIST/raw), or as --download fetches them (crate::data::download).

use crate::Result;
use std::path::{Path, PathBuf};

pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The folder under --data-dir that holds the four files (where --download puts them).
pub const FOLDER: &str = "fashion-mnist";
pub const CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The folder holding the four .gz files: `dir`, `dir`/fashion-mnist, `dir`/FashionMNIST/raw
/// (torchvision's), or the system folder.
pub fn find(dir: &Path) -> Result<PathBuf> {
    let candidates = [dir.to_path_buf(), dir.join(FOLDER), dir.join("FashionMNIST/raw"), PathBuf::from(SYSTEM_DIR)];
    super::idx::find(
        dir,
        &candidates,
        "Fashion-MNIST",
        "pass --download to fetch it (30 MB), or apt-get install dataset-fashion-mnist",
    )
}
