//! CIFAR-10: the binary layout, Python 2 pickles and Python 3 re-saved pickles of the same data give
//! identical tensors; bad files give clear errors naming the file (and record or offset).

mod common;
use common::*;
use std::path::PathBuf;
use wgrad::data::{cifar10, load, DatasetKind, Split};

fn fixture(kind: &str) -> PathBuf {
    data_path("cifar10").join(kind)
}

#[test]
fn all_three_layouts_give_identical_tensors() {
    for split in [Split::Train, Split::Test] {
        let bin = cifar10::load(&fixture("bin"), split).unwrap();
        let py2 = cifar10::load(&fixture("py2"), split).unwrap();
        let py3 = cifar10::load(&fixture("py3"), split).unwrap();
        assert_eq!(bin.len(), if split == Split::Train { 35 } else { 7 });
        for (name, other) in [("py2", &py2), ("py3", &py3)] {
            assert_eq!(bin.images, other.images, "{split:?}: {name} images differ from the binary layout");
            assert_eq!(bin.labels, other.labels, "{split:?}: {name} labels differ");
            assert_eq!(bin.classes, other.classes, "{split:?}: {name} class names differ");
        }
        assert_eq!(bin.classes[0], "airplane");
        assert_eq!(bin.classes[9], "truck");
    }
}

#[test]
fn data_dir_may_hold_the_layout_folder_or_be_it() {
    let a = load(DatasetKind::Cifar10, &fixture("py2"), Split::Test, false).unwrap();
    let b = load(DatasetKind::Cifar10, &fixture("py2").join("cifar-10-batches-py"), Split::Test, false).unwrap();
    assert_eq!(a.images, b.images);
    let e = load(DatasetKind::Cifar10, &tempdir(), Split::Test, false).unwrap_err().to_string();
    assert!(e.contains("no CIFAR-10 here") && e.contains("--download"), "{e}");
}

/// A copy of a fixture's layout in a fresh folder (kept while the returned guard lives) and the path
/// of its batches' folder.
fn copy_layout(kind: &str) -> (TestDir, PathBuf) {
    let src = fixture(kind);
    let dst = tempdir();
    let folder = std::fs::read_dir(&src).unwrap().next().unwrap().unwrap().path();
    let to = dst.join(folder.file_name().unwrap());
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&folder).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
    (dst, to)
}

#[test]
fn bad_binary_files_are_clear_errors() {
    let (_copy, dir) = copy_layout("bin");
    let f = dir.join("test_batch.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = cifar10::load(&dir, Split::Test).unwrap_err().to_string();
    assert!(e.contains("test_batch.bin") && e.contains("3073"), "{e}");
    let mut bad = bytes.clone();
    bad[2 * 3073] = 10;
    std::fs::write(&f, &bad).unwrap();
    let e = cifar10::load(&dir, Split::Test).unwrap_err().to_string();
    assert!(e.contains("record 2") && e.contains("offset 6146") && e.contains("label 10"), "{e}");
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    let e = cifar10::load(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("data_batch_3.bin") && e.contains("cannot read"), "{e}");
}

#[test]
fn bad_pickles_are_clear_errors() {
    let (_copy, dir) = copy_layout("py3");
    let f = dir.join("test_batch");
    let p = |bytes: &[u8]| cifar10::parse_pickle(&f, bytes).unwrap_err().to_string();
    // A dict without b'data' (Python 3 protocol 2, as pickle.dumps({b'labels': [1]}, protocol=2) writes it).
    let no_data = b"\x80\x02}q\x00c_codecs\nencode\nq\x01X\x06\x00\x00\x00labelsq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05]q\x06K\x01as.";
    let e = p(no_data);
    assert!(e.contains("test_batch") && e.contains("no b'data'"), "{e}");
    let bytes = std::fs::read(&f).unwrap();
    let e = p(&bytes[..bytes.len() / 2]);
    assert!(e.contains("not a readable pickle"), "{e}");
    let e = p(b"definitely not a pickle");
    assert!(e.contains("test_batch"), "{e}");
    // A list where the dict should be.
    let e = p(b"\x80\x02]q\x00.");
    assert!(e.contains("expected a pickled dict"), "{e}");
}

#[test]
fn py2_data_of_the_wrong_length_is_an_error() {
    let (_copy, dir) = copy_layout("py2");
    let f = dir.join("test_batch");
    let mut bytes = std::fs::read(&f).unwrap();
    // The shape (7, 3072) is stored as M\x07\x00 M\x00\x0c: claim 8 images instead.
    let at = bytes.windows(6).position(|w| w == b"M\x07\x00M\x00\x0c").unwrap();
    bytes[at + 1] = 8;
    let e = cifar10::parse_pickle(&f, &bytes).unwrap_err().to_string();
    assert!(e.contains("shape [8, 3072] needs 24576 bytes"), "{e}");
}

/// What a browser page hands over: the files' names and bytes, as batches or as the archive.
fn bin_files() -> Vec<(String, Vec<u8>)> {
    let dir = cifar10::find(&fixture("bin")).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn files_given_in_memory_read_as_the_folder_does() {
    let files = bin_files();
    // The archive as CIFAR-10's site packs it: cifar-10-batches-bin/<file>.
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, bytes) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), bytes.as_slice()).unwrap();
    }
    let archive = vec![("cifar-10-binary.tar.gz".to_string(), tar.into_inner().unwrap().finish().unwrap())];
    let pickles: Vec<(String, Vec<u8>)> = std::fs::read_dir(cifar10::find(&fixture("py3")).unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (format!("some/folder/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap()))
        .collect();
    for split in [Split::Train, Split::Test] {
        let want = cifar10::load(&fixture("bin"), split).unwrap();
        for (what, given) in [("batches", &files), ("archive", &archive), ("pickles", &pickles)] {
            let got = cifar10::from_files(split, given).unwrap();
            assert_eq!(got.images, want.images, "{split:?} from the {what}");
            assert_eq!(got.labels, want.labels, "{split:?} from the {what}");
            assert_eq!(got.classes, want.classes, "{split:?} from the {what}");
        }
    }
}

#[test]
fn files_given_in_memory_without_a_batch_are_a_clear_error() {
    let only_test: Vec<_> = bin_files().into_iter().filter(|(n, _)| n == "test_batch.bin").collect();
    assert!(cifar10::from_files(Split::Test, &only_test).is_ok());
    let e = cifar10::from_files(Split::Train, &only_test).unwrap_err().to_string();
    assert!(
        e.contains("no CIFAR-10 Train batch") && e.contains("data_batch_1.bin") && e.contains("test_batch.bin"),
        "{e}"
    );
    let truncated = vec![("data_batch_1.bin".to_string(), vec![0u8; 100])];
    let e = cifar10::from_files(Split::Train, &truncated).unwrap_err().to_string();
    assert!(e.starts_with("data_batch_1.bin: size 100"), "{e}");
    let not_gzip = vec![("cifar-10-binary.tar.gz".to_string(), b"not gzip".to_vec())];
    let e = cifar10::from_files(Split::Train, &not_gzip).unwrap_err().to_string();
    assert!(e.contains("cifar-10-binary.tar.gz: not a readable .tar.gz archive"), "{e}");
}
