//! MNIST (LeCun, Cortes and Burges: 70,000 grey 28×28 handwritten digits), in the IDX files of
//! [`super::idx`]: as torchvision's `MNIST(root, download=True)` leaves them (`root`/MNIST/raw) or
//! as --download fetches them (crate::data::download).

use crate::Result;
use std::path::{Path, PathBuf};

/// The folder under --data-dir that holds the four files (where --download puts them).
pub const FOLDER: &str = "mnist";
/// torchvision's `MNIST.classes`.
pub const CLASSES: [&str; 10] = [
    "0 - zero",
    "1 - one",
    "2 - two",
    "3 - three",
    "4 - four",
    "5 - five",
    "6 - six",
    "7 - seven",
    "8 - eight",
    "9 - nine",
];

/// The folder holding the four .gz files: `dir`, `dir`/mnist or `dir`/MNIST/raw (torchvision's).
pub fn find(dir: &Path) -> Result<PathBuf> {
    let candidates = [dir.to_path_buf(), dir.join(FOLDER), dir.join("MNIST/raw")];
    super::idx::find(dir, &candidates, "MNIST", "pass --download to fetch it (12 MB)")
}
