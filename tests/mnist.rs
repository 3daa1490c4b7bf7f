//! MNIST: its four IDX files where torchvision leaves them (`root`/MNIST/raw), read as MNIST (name,
//! torchvision's class names, 3×32×32 framing), trained on and evaluated through the binary, and a
//! clear error naming where it was looked for when it is missing.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use wgrad::data::{self, DatasetKind, Split};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes a split of `n` images (pixel values from the index) and labels i % 10 into `dir`.
fn write_split(dir: &Path, prefix: &str, n: u32) {
    write_split_labelled(dir, prefix, n, &[]);
}

/// As [`write_split`], the labels starting with `first`.
fn write_split_labelled(dir: &Path, prefix: &str, n: u32, first: &[u8]) {
    let mut images = [0x0803u32, n, 28, 28].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    images.extend((0..n as usize * 28 * 28).map(|i| (i % 253) as u8));
    let mut labels = [0x0801u32, n].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    labels.extend((0..n as usize).map(|i| first.get(i).copied().unwrap_or((i % 10) as u8)));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte.gz")), gz(&images)).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), gz(&labels)).unwrap();
}

/// A torchvision-style root holding MNIST/raw with 32 training and 16 test images.
fn torchvision_root() -> TestDir {
    let root = tempdir();
    let raw = root.join("MNIST/raw");
    std::fs::create_dir_all(&raw).unwrap();
    write_split(&raw, "train", 32);
    write_split(&raw, "t10k", 16);
    root
}

#[test]
fn mnist_is_read_from_torchvisions_folder_as_mnist() {
    let root = torchvision_root();
    let test = data::load(DatasetKind::Mnist, &root, Split::Test, false).unwrap();
    assert_eq!((test.name.as_str(), test.len()), ("MNIST", 16));
    assert_eq!(test.source, root.join("MNIST/raw"));
    assert_eq!(test.classes[3], "3 - three", "torchvision's MNIST.classes");
    assert_eq!(test.labels[..4], [0, 1, 2, 3]);
    // 28×28 placed at (2, 2) of each 32×32 channel, every channel the same.
    let img = test.image(1);
    assert_eq!(img[0], 0);
    assert_eq!(img[2 * 32 + 2], ((28 * 28) % 253) as u8, "image 1's first pixel");
    assert_eq!(img[..1024], img[1024..2048]);
    assert_eq!(data::load(DatasetKind::Mnist, &root, Split::Train, false).unwrap().len(), 32);
}

#[test]
fn a_missing_mnist_says_where_it_looked_and_how_to_get_it() {
    let dir = tempdir();
    let e = data::load(DatasetKind::Mnist, &dir, Split::Test, false).unwrap_err().to_string();
    assert!(e.contains("no MNIST here") && e.contains("MNIST/raw") && e.contains("--download"), "{e}");
}

/// The two datasets' files have the same names: their first labels tell them apart, and the wrong
/// one is refused, naming the right --dataset.
#[test]
fn one_datasets_files_are_not_read_as_the_others() {
    let dir = tempdir();
    write_split_labelled(&dir, "t10k", 16, &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let Err(e) = data::load(DatasetKind::FashionMnist, &dir, Split::Test, false) else {
        panic!("MNIST's files were read as Fashion-MNIST");
    };
    let e = e.to_string();
    assert!(e.contains("these are MNIST's labels") && e.contains("--dataset mnist"), "{e}");
    assert_eq!(data::load(DatasetKind::Mnist, &dir, Split::Test, false).unwrap().labels[..3], [7, 2, 1]);
    let dir = tempdir();
    write_split_labelled(&dir, "train", 16, &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    write_split(&dir, "t10k", 16);
    let Err(e) = data::load(DatasetKind::Mnist, &dir, Split::Train, false) else {
        panic!("Fashion-MNIST's files were read as MNIST");
    };
    let e = e.to_string();
    assert!(e.contains("these are Fashion-MNIST's labels") && e.contains("--dataset fashion-mnist"), "{e}");
}

fn wgrad(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgrad")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn train_and_eval_take_dataset_mnist() {
    let root = torchvision_root();
    let run = root.join("run");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (r, o) = (s(&root), s(&run));
    let (code, _, err) = wgrad(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        &r,
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--max-steps",
        "2",
        "--out",
        &o,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("data: MNIST Train split: 32 images"), "{err}");
    let ck = wgrad::io::checkpoint::latest(&run).unwrap();
    assert_eq!(wgrad::io::checkpoint::meta_of(&ck).unwrap().dataset, "MNIST");
    // eval takes the checkpoint's dataset, and names the classes as torchvision does.
    let (code, out, err) = wgrad(&["eval", "--weights", &o, "--data-dir", &r, "--device", "cpu"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("MNIST Test: accuracy") && out.contains("9 - nine"), "{out}");
    assert!(!err.contains("note:"), "{err}");
    // On a dataset of other classes it says so.
    let (code, _, err) =
        wgrad(&["eval", "--weights", &o, "--data-dir", &r, "--device", "cpu", "--dataset", "synthetic"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: the checkpoint learnt MNIST's classes, not synthetic's"), "{err}");
}
