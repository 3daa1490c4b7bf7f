//! CIFAR-10 in both official layouts. Binary (`cifar-10-batches-bin/`): data_batch_1..5.bin and
//! test_batch.bin, records of 1 label byte + 3072 pixel bytes (R, G, B planes, rows of 32), and
//! batches.meta.txt with the class names. Python (`cifar-10-batches-py/`, what torchvision leaves):
//! data_batch_1..5, test_batch and batches.meta, pickles (protocol 2) of a dict whose b'data' is a
//! numpy uint8 array (10000×3072) and b'labels' a list. Python 2 wrote the official files (keys
//! and the array's bytes are py2 strings); a file re-saved by Python 3 stores bytes through
//! `_codecs.encode`: both are read.

use super::{read, Dataset, DatasetKind, Split, IMAGE_BYTES};
use crate::{Error, Result};
use serde_pickle::{DeOptions, HashableValue, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Dict = BTreeMap<HashableValue, Value>;

pub const BIN_FOLDER: &str = "cifar-10-batches-bin";
pub const PY_FOLDER: &str = "cifar-10-batches-py";
pub const RECORD: usize = 1 + IMAGE_BYTES;
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The layout folder under (or at) `dir`, if either exists.
pub fn find(dir: &Path) -> Option<PathBuf> {
    [dir.join(PY_FOLDER), dir.join(BIN_FOLDER), dir.to_path_buf()]
        .into_iter()
        .find(|cand| cand.join("test_batch.bin").exists() || cand.join("test_batch").exists())
}

fn files_of(split: Split, ext: &str) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}{ext}")).collect(),
        Split::Test => vec![format!("test_batch{ext}")],
    }
}

/// Loads a split from whichever layout `dir` holds.
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let Some(folder) = find(dir) else {
        return Err(Error::file(
            dir,
            format!("no CIFAR-10 here: expected {BIN_FOLDER}/ or {PY_FOLDER}/ (pass --download to fetch it)"),
        ));
    };
    if folder.join("test_batch.bin").exists() {
        load_bin(&folder, split)
    } else {
        load_py(&folder, split)
    }
}

/// Parses one binary batch file: (images, labels).
pub fn parse_bin(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::file(
            path,
            format!("size {} is not a positive multiple of the {RECORD}-byte record (1 label + 3072 pixels); the file is truncated or not CIFAR-10", bytes.len()),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(Error::file(
                path,
                format!("record {i} (offset {}) has label {}; CIFAR-10 labels are 0..9", i * RECORD, rec[0]),
            ));
        }
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    Ok((images, labels))
}

fn class_names_txt(folder: &Path) -> Result<Vec<String>> {
    let p = folder.join("batches.meta.txt");
    if !p.exists() {
        return Ok(CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = String::from_utf8(read(&p)?).map_err(|_| Error::file(&p, "not UTF-8 text"))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != 10 {
        return Err(Error::file(&p, format!("expected 10 class names, found {}", names.len())));
    }
    Ok(names)
}

pub fn load_bin(folder: &Path, split: Split) -> Result<Dataset> {
    load_split(folder, split, ".bin", parse_bin, class_names_txt(folder)?)
}

/// A file's parser: (images, labels) from its path and bytes.
type Parser = fn(&Path, &[u8]) -> Result<(Vec<u8>, Vec<u8>)>;

/// Reads a split's files (`ext` after each name) with `parse` and joins them.
fn load_split(folder: &Path, split: Split, ext: &str, parse: Parser, classes: Vec<String>) -> Result<Dataset> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for f in files_of(split, ext) {
        let p = folder.join(&f);
        let (i, l) = parse(&p, &read(&p)?)?;
        images.extend(i);
        labels.extend(l);
    }
    Ok(dataset(split, images, labels, classes, folder.into()))
}

/// A split of CIFAR-10 read from `source`.
fn dataset(split: Split, images: Vec<u8>, labels: Vec<u8>, classes: Vec<String>, source: PathBuf) -> Dataset {
    Dataset {
        name: DatasetKind::Cifar10.name().into(),
        split,
        images,
        labels,
        classes,
        synthetic: false,
        held_out: None,
        source,
    }
}

fn get<'a>(dict: &'a Dict, key: &str) -> Option<&'a Value> {
    dict.iter().find_map(|(k, v)| match k {
        HashableValue::Bytes(b) if b == key.as_bytes() => Some(v),
        HashableValue::String(s) if s == key => Some(v),
        _ => None,
    })
}

fn as_dict(path: &Path, v: Value) -> Result<Dict> {
    match v {
        Value::Dict(d) => Ok(d),
        other => Err(Error::file(path, format!("expected a pickled dict, found {}", kind(&other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::I64(_) | Value::Int(_) => "an int",
        Value::F64(_) => "a float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "a string",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Set(_) | Value::FrozenSet(_) => "a set",
        Value::Dict(_) => "a dict",
    }
}

fn unpickle(path: &Path, bytes: &[u8]) -> Result<Value> {
    super::pickle_guard::check(path, bytes)?;
    // serde-pickle can panic on malformed input (a set of floats and ints sorts with an order that
    // is not total, found by fuzzing); contain it as an error.
    let parsed = crate::error::contain_panics(|| {
        serde_pickle::value_from_slice(bytes, DeOptions::new().replace_unresolved_globals())
    })
    .map_err(|p| Error::file(path, format!("not a readable pickle: the unpickler failed on malformed input ({p})")))?;
    parsed.map_err(|e| Error::file(path, format!("not a readable pickle: {e}")))
}

/// The raw bytes of a pickled numpy uint8 array: `_reconstruct(...)` followed by BUILD with the
/// `__setstate__` tuple (version, shape, dtype, fortran_order, data), which the unpickler leaves
/// in the array's place.
fn ndarray_u8(path: &Path, v: &Value) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |what: String| Error::file(path, format!("b'data' is not a pickled numpy uint8 array: {what}"));
    let Value::Tuple(state) = v else { return Err(bad(format!("found {}", kind(v)))) };
    if state.len() != 5 {
        return Err(bad(format!("its state has {} fields, expected 5", state.len())));
    }
    let shape: Vec<usize> = match &state[1] {
        Value::Tuple(s) | Value::List(s) => s
            .iter()
            .map(|d| match d {
                Value::I64(x) if *x >= 0 => Ok(*x as usize),
                _ => Err(bad("its shape is not a tuple of sizes".into())),
            })
            .collect::<Result<_>>()?,
        other => return Err(bad(format!("its shape is {}", kind(other)))),
    };
    if matches!(state[3], Value::Bool(true)) {
        return Err(bad("it is in Fortran order".into()));
    }
    let data = match &state[4] {
        Value::Bytes(b) => b.clone(),
        // Python 2 `str` data decoded as text by a permissive reader: every char is one byte.
        Value::String(s) if s.chars().all(|c| (c as u32) < 256) => s.chars().map(|c| c as u8).collect(),
        other => return Err(bad(format!("its data is {}", kind(other)))),
    };
    let n: usize = shape.iter().product();
    if data.len() != n {
        return Err(bad(format!("shape {shape:?} needs {n} bytes of uint8 but the data holds {}", data.len())));
    }
    Ok((shape, data))
}

/// Parses one pickled batch: (images, labels).
pub fn parse_pickle(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let dict = as_dict(path, unpickle(path, bytes)?)?;
    let data = get(&dict, "data").ok_or_else(|| Error::file(path, "the pickled dict has no b'data'"))?;
    let labels = get(&dict, "labels").ok_or_else(|| Error::file(path, "the pickled dict has no b'labels'"))?;
    let (shape, images) = ndarray_u8(path, data)?;
    if shape.len() != 2 || shape[1] != IMAGE_BYTES {
        return Err(Error::file(path, format!("b'data' has shape {shape:?}, expected (N, {IMAGE_BYTES})")));
    }
    let Value::List(list) = labels else {
        return Err(Error::file(path, format!("b'labels' is {}, expected a list", kind(labels))));
    };
    if list.len() != shape[0] {
        return Err(Error::file(path, format!("{} labels for {} images", list.len(), shape[0])));
    }
    let labels = list
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::I64(l) if (0..10).contains(l) => Ok(*l as u8),
            Value::I64(l) => Err(Error::file(path, format!("label {l} at index {i}; CIFAR-10 labels are 0..9"))),
            other => Err(Error::file(path, format!("label at index {i} is {}", kind(other)))),
        })
        .collect::<Result<_>>()?;
    Ok((images, labels))
}

fn class_names_pickle(folder: &Path) -> Result<Vec<String>> {
    let p = folder.join("batches.meta");
    if !p.exists() {
        return Ok(CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let dict = as_dict(&p, unpickle(&p, &read(&p)?)?)?;
    let Some(Value::List(names)) = get(&dict, "label_names") else {
        return Err(Error::file(&p, "no list b'label_names'"));
    };
    let names: Vec<String> = names
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            Value::String(s) => Ok(s.clone()),
            other => Err(Error::file(&p, format!("a class name is {}", kind(other)))),
        })
        .collect::<Result<_>>()?;
    // The same rule as batches.meta.txt: labels are 0..9, so there are ten names.
    if names.len() != 10 {
        return Err(Error::file(&p, format!("expected 10 class names in b'label_names', found {}", names.len())));
    }
    Ok(names)
}

pub fn load_py(folder: &Path, split: Split) -> Result<Dataset> {
    load_split(folder, split, "", parse_pickle, class_names_pickle(folder)?)
}

/// Largest file taken out of an archive (CIFAR-10's batches are 30.7 MB each).
const MAX_ENTRY: u64 = 64 << 20;

/// A split from files handed over in memory (a browser page's file picker): CIFAR-10's binary
/// batches (`data_batch_1.bin` … `test_batch.bin`, by name), their Python pickles (`data_batch_1`
/// … `test_batch`), or the binary archive `cifar-10-binary.tar.gz` itself. Names are matched on
/// their last path component; errors name the file.
pub fn from_files(split: Split, files: &[(String, Vec<u8>)]) -> Result<Dataset> {
    let base = |n: &str| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string();
    // The names this split reads, in either layout: only those are kept (an archive holds both
    // splits), and files handed over are borrowed, not copied.
    let wanted: Vec<String> = files_of(split, ".bin").into_iter().chain(files_of(split, "")).collect();
    let mut entries: Vec<(String, std::borrow::Cow<[u8]>)> = Vec::new();
    for (name, bytes) in files {
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            let path = Path::new(name);
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
            let bad = |e: std::io::Error| Error::file(path, format!("not a readable .tar.gz archive: {e}"));
            for entry in archive.entries().map_err(bad)? {
                let mut entry = entry.map_err(bad)?;
                let inner = entry.path().map_err(bad)?.to_string_lossy().into_owned();
                let short = base(&inner);
                if !wanted.contains(&short) {
                    continue;
                }
                if entry.size() > MAX_ENTRY {
                    return Err(Error::file(
                        path,
                        format!("{inner} holds {} bytes; CIFAR-10's batches hold 30730000", entry.size()),
                    ));
                }
                let mut data = Vec::with_capacity(entry.size() as usize);
                std::io::Read::read_to_end(&mut entry, &mut data).map_err(bad)?;
                entries.push((short, data.into()));
            }
        } else if wanted.contains(&base(name)) {
            entries.push((base(name), bytes.as_slice().into()));
        }
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let mut found = 0;
    for (ext, parse) in [(".bin", parse_bin as Parser), ("", parse_pickle as Parser)] {
        for want in files_of(split, ext) {
            if let Some((name, bytes)) = entries.iter().find(|(n, _)| *n == want) {
                let (i, l) = parse(Path::new(name), bytes)?;
                images.extend(i);
                labels.extend(l);
                found += 1;
            }
        }
        if found > 0 {
            break;
        }
    }
    if found == 0 {
        let given: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::file(
            given.join(", "),
            format!(
                "no CIFAR-10 {split:?} batch among these files: expected {} (or the archive cifar-10-binary.tar.gz)",
                files_of(split, ".bin").join(", ")
            ),
        ));
    }
    let classes = CLASSES.iter().map(|s| s.to_string()).collect();
    Ok(dataset(split, images, labels, classes, "files given".into()))
}
