//! Fashion-MNIST from Debian's dataset-fashion-mnist (installed by .ci/run): padded to 3×32×32;
//! IDX and gzip errors name the file.

mod common;
use common::*;
use std::io::Write;
use wgrad::data::fashion_mnist::{self, SYSTEM_DIR};
use wgrad::data::idx::{self, gunzip, parse_idx};
use wgrad::data::{DatasetKind, Split};

#[test]
fn loads_the_installed_dataset_padded_to_32x32() {
    let Ok(dir) = fashion_mnist::find(std::path::Path::new("/nonexistent")) else {
        return skip(
            "Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
            "WGRAD_REQUIRE_DATASETS",
        );
    };
    assert_eq!(dir, std::path::PathBuf::from(SYSTEM_DIR));
    let test = idx::load(DatasetKind::FashionMnist, &dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    let train = idx::load(DatasetKind::FashionMnist, &dir, Split::Train).unwrap();
    assert_eq!(train.len(), 60_000);
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [1000; 10], "the test split has 1,000 images per class");
    let img = test.image(0);
    for c in 0..3 {
        let plane = &img[c * 1024..(c + 1) * 1024];
        assert_eq!(plane, &img[..1024], "channels are replicated");
        for y in 0..32 {
            for x in 0..32 {
                if !(2..30).contains(&x) || !(2..30).contains(&y) {
                    assert_eq!(plane[y * 32 + x], 0, "padding at ({y}, {x}) must be zero");
                }
            }
        }
    }
    assert!(img.iter().any(|&p| p > 0));
    assert_eq!(test.classes[9], "Ankle boot");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn bad_idx_files_are_clear_errors() {
    let p = std::path::Path::new("t10k-images-idx3-ubyte.gz");
    let mut good = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
    good.extend(vec![7u8; 2 * 28 * 28]);
    assert_eq!(parse_idx(p, &good, 3).unwrap().0, vec![2, 28, 28]);
    let mut bad_magic = good.clone();
    bad_magic[3] = 1;
    let e = parse_idx(p, &bad_magic, 3).unwrap_err().to_string();
    assert!(e.contains("t10k-images-idx3-ubyte.gz") && e.contains("magic") && e.contains("offset 0"), "{e}");
    let e = parse_idx(p, &good[..good.len() - 1], 3).unwrap_err().to_string();
    assert!(e.contains("[2, 28, 28]") && e.contains("1567 bytes"), "{e}");
    let e = parse_idx(p, &good[..10], 3).unwrap_err().to_string();
    assert!(e.contains("too short"), "{e}");
    let z = gz(&good);
    assert_eq!(gunzip(p, &z).unwrap(), good);
    let e = gunzip(p, &z[..z.len() / 2]).unwrap_err().to_string();
    assert!(e.contains("gzip"), "{e}");
}

#[test]
fn a_label_out_of_range_names_its_offset() {
    let dir = tempdir();
    // 10,000 blank images of the test split's IDX layout.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28];
    images.resize(16 + 10_000 * 28 * 28, 0);
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&images)).unwrap();
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0x27, 0x10];
    labels.extend((0..10_000).map(|i| if i == 5 { 12 } else { (i % 10) as u8 }));
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&labels)).unwrap();
    let e = idx::load(DatasetKind::FashionMnist, &dir, Split::Test).unwrap_err().to_string();
    assert!(e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("label 12 at index 5 (offset 13)"), "{e}");
}

#[test]
fn files_given_in_memory_read_as_the_folder_does() {
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend((0..3 * 28 * 28).map(|i| (i % 251) as u8));
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4];
    let dir = tempdir();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&images)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&labels)).unwrap();
    let want = idx::load(DatasetKind::FashionMnist, &dir, Split::Test).unwrap();
    let (ip, lp) = (std::path::Path::new("picked/images.gz"), std::path::Path::new("picked/labels.gz"));
    let got = idx::from_gz(DatasetKind::FashionMnist, Split::Test, (ip, &gz(&images)), (lp, &gz(&labels))).unwrap();
    assert_eq!((got.images, got.labels, got.classes), (want.images, want.labels, want.classes));
    // Errors name the file as the caller named it.
    let e =
        idx::from_gz(DatasetKind::FashionMnist, Split::Test, (ip, &gz(&images)), (lp, &gz(&labels[..10]))).unwrap_err();
    assert!(e.to_string().starts_with("picked/labels.gz: "), "{e}");
}

/// torchvision's `FashionMNIST(root, download=True)` leaves the files in `root`/FashionMNIST/raw:
/// --data-dir root finds them there, before the system's copy.
#[test]
fn torchvisions_folder_is_found_under_the_data_dir() {
    let root = tempdir();
    let raw = root.join("FashionMNIST/raw");
    std::fs::create_dir_all(&raw).unwrap();
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
    images.resize(16 + 28 * 28, 5);
    std::fs::write(raw.join("t10k-images-idx3-ubyte.gz"), gz(&images)).unwrap();
    std::fs::write(raw.join("t10k-labels-idx1-ubyte.gz"), gz(&[0, 0, 8, 1, 0, 0, 0, 1, 7])).unwrap();
    assert_eq!(fashion_mnist::find(&root).unwrap(), raw);
    let test = wgrad::data::load(DatasetKind::FashionMnist, &root, Split::Test, false).unwrap();
    assert_eq!(
        (test.name.as_str(), test.labels.as_slice(), test.classes[7].as_str()),
        ("Fashion-MNIST", &[7u8][..], "Sneaker")
    );
}
