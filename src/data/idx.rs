//! The gzipped IDX files of the MNIST family (MNIST, Fashion-MNIST: four files each, the same
//! names and layout, 28×28 grey images), as their publishers serve them. Each image is zero-padded
//! by 2 pixels on each side and its channel replicated, giving 3×32×32 so the CIFAR-10 networks
//! train on it unchanged.

use super::{read, Dataset, DatasetKind, Split, IMAGE_BYTES, SIDE};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The file whose presence marks a folder of the four.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";

/// The first of `candidates` that holds the four files, or an error at `dir` saying where `name`
/// was looked for and how to get it (`how`).
pub fn find(dir: &Path, candidates: &[PathBuf], name: &str, how: &str) -> Result<PathBuf> {
    if let Some(c) = candidates.iter().find(|c| c.join(TEST_IMAGES).exists()) {
        return Ok(c.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(Error::file(dir, format!("no {name} here (looked in {}); {how}", looked.join(", "))))
}

/// Largest decompressed size accepted (the largest file of either dataset is 47 MB): a small file that
/// inflates without end is refused instead of exhausting memory.
pub const MAX_DECOMPRESSED: u64 = 256 << 20;

/// Decompresses a gzip file fully; a stream cut short is an error naming the file.
pub fn gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // Every member: `cat a.gz b.gz` is a valid gzip file of both.
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::file(path, format!("not a complete gzip stream: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(Error::file(
            path,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes; not an IDX file of this dataset"),
        ));
    }
    Ok(out)
}

/// Parses an IDX file of unsigned bytes with the given number of dimensions; returns (dims, data).
pub fn parse_idx(path: &Path, bytes: &[u8], ndim: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::file(path, format!("{} bytes are too short for an IDX header of {header}", bytes.len())));
    }
    let magic = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
    let want = 0x0800 | ndim as u32;
    if magic != want {
        return Err(Error::file(
            path,
            format!(
                "IDX magic is {magic:#010x} at offset 0, expected {want:#010x} (unsigned bytes, {ndim} dimensions)"
            ),
        ));
    }
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if header + n == bytes.len() => Ok((dims, bytes[header..].to_vec())),
        Some(n) => Err(Error::file(path, format!("header says dimensions {dims:?} ({n} bytes of data) but the file holds {} bytes after the {header}-byte header", bytes.len() - header))),
        None => Err(Error::file(path, format!("dimensions {dims:?} overflow"))),
    }
}

/// The first ten labels of a split (train, test) of each dataset: as their files have the same
/// names, these tell one's files from the other's.
fn first_labels(kind: DatasetKind, split: Split) -> Option<[u8; 10]> {
    match (kind, split) {
        (DatasetKind::Mnist, Split::Train) => Some([5, 0, 4, 1, 9, 2, 1, 3, 1, 4]),
        (DatasetKind::Mnist, Split::Test) => Some([7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
        (DatasetKind::FashionMnist, Split::Train) => Some([9, 0, 0, 3, 0, 2, 7, 2, 5, 5]),
        (DatasetKind::FashionMnist, Split::Test) => Some([9, 2, 1, 1, 6, 1, 4, 6, 5, 7]),
        _ => None,
    }
}

/// A split of `kind` from the folder holding its four files.
pub fn load(kind: DatasetKind, folder: &Path, split: Split) -> Result<Dataset> {
    let prefix = if split == Split::Train { "train" } else { "t10k" };
    let ip = folder.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let lp = folder.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let mut ds = from_gz(kind, split, (&ip, &read(&ip)?), (&lp, &read(&lp)?))?;
    ds.source = folder.into();
    Ok(ds)
}

/// A split of `kind` from its two gzipped IDX files' bytes (images, labels), each with the path
/// or name errors give for it: what [`load`] reads, and what a browser page is handed.
pub fn from_gz(kind: DatasetKind, split: Split, images: (&Path, &[u8]), labels: (&Path, &[u8])) -> Result<Dataset> {
    let ((ip, ibytes), (lp, lbytes)) = (images, labels);
    let (idims, pixels) = parse_idx(ip, &gunzip(ip, ibytes)?, 3)?;
    let (ldims, labels) = parse_idx(lp, &gunzip(lp, lbytes)?, 1)?;
    if idims[1] != 28 || idims[2] != 28 {
        return Err(Error::file(ip, format!("images are {}×{}, expected 28×28", idims[1], idims[2])));
    }
    if ldims[0] != idims[0] {
        return Err(Error::file(lp, format!("{} labels for {} images in {}", ldims[0], idims[0], ip.display())));
    }
    if let Some(i) = labels.iter().position(|&l| l >= 10) {
        return Err(Error::file(lp, format!("label {} at index {i} (offset {}); labels are 0..9", labels[i], 8 + i)));
    }
    for (other, flag) in [(DatasetKind::Mnist, "mnist"), (DatasetKind::FashionMnist, "fashion-mnist")] {
        if other != kind && labels.get(..10).is_some_and(|l| first_labels(other, split).is_some_and(|f| f == l)) {
            return Err(Error::file(
                lp,
                format!("these are {}'s labels (they start as its {split:?} split's do), not {}'s: pass --dataset {flag}, or give {}'s files", other.name(), kind.name(), kind.name()),
            ));
        }
    }
    let n = idims[0];
    let mut images = vec![0u8; n * IMAGE_BYTES];
    for (i, img) in pixels.chunks_exact(28 * 28).enumerate() {
        let out = &mut images[i * IMAGE_BYTES..][..IMAGE_BYTES];
        for c in 0..3 {
            for y in 0..28 {
                let row = (c * SIDE + y + 2) * SIDE + 2;
                out[row..row + 28].copy_from_slice(&img[y * 28..y * 28 + 28]);
            }
        }
    }
    Ok(Dataset {
        name: kind.name().into(),
        split,
        images,
        labels,
        classes: kind.classes().unwrap_or_default().iter().map(|s| s.to_string()).collect(),
        synthetic: false,
        held_out: None,
        source: ip.into(),
    })
}
