//! Your own pictures, as torchvision's `ImageFolder` reads them: one folder per class
//! (`train/cat/001.png`, `train/dog/x.jpg`), the classes in the sorted order of their folders'
//! names (class i is the i-th name), each class's pictures in sorted order of their paths, found in
//! sub-folders too, files of other extensions left out. `--data-dir` holds `train/` and `test/` (or
//! `val/`), each such a folder; the test split's classes are the training split's (a test folder of
//! a class the training split lacks is refused, one it lacks is fine), or, in a folder with no
//! `train/` (pictures to evaluate a checkpoint on), its own. A folder of class folders alone, with
//! neither `train/`, `test/` nor `val/` (`pictures/cat/001.png`), is split in two as Keras'
//! `image_dataset_from_directory(validation_split=0.2)` splits one, but class by class:
//! [`HELD_OUT`] of each class's pictures are the test split, chosen by the MD5 of their paths
//! within the folder (the same pictures on every machine and every run), the rest the training
//! split. Each picture is framed as CIFAR-10's images are (colour, resized to 32×32, as `predict`
//! frames a picture), once: the framed pictures are kept in the folder's [`CACHE`] file.

use super::image::{decode_pixels, Framing};
use super::{Dataset, DatasetKind, Split, IMAGE_BYTES};
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The extensions torchvision's ImageFolder takes (`IMG_EXTENSIONS`), case-insensitive: wgrad
/// decodes them all.
const EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];
/// Labels are bytes.
const MAX_CLASSES: usize = 256;
/// The share of each class's pictures a folder without splits holds out as its test split, unless
/// told another ([`load_with`], `--test-fraction`).
pub const HELD_OUT: f64 = 0.2;

/// Whether `dir` is a folder of class folders alone: sub-folders, none of them train/, test/ or
/// val/.
fn is_unsplit(dir: &Path) -> bool {
    let splits = ["train", "test", "val"];
    splits.iter().all(|s| !dir.join(s).is_dir()) && read_dir(dir).is_ok_and(|e| e.iter().any(|(_, is_dir)| *is_dir))
}

/// Whether files put in `folder` (a run's `--out`) would be read as pictures of the image folder
/// at `dir`: whether it lies inside a split's folder (train/, test/, val/), or inside `dir` when
/// `dir` is a folder of class folders alone, where it would be read as a class of its own.
pub fn reads_into(dir: &Path, folder: &Path) -> bool {
    let abs = |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).unwrap_or_else(|_| p.into());
    let (dir, folder) = (abs(dir), abs(folder));
    let inside = |root: &Path| folder.starts_with(root) && folder != root;
    match is_unsplit(&dir) {
        true => inside(&dir),
        false => ["train", "test", "val"].iter().any(|s| inside(&dir.join(s))),
    }
}

/// The folder of `split` under `dir`: `train/`, and `test/` or else `val/`.
pub fn find(dir: &Path, split: Split) -> Result<PathBuf> {
    let names: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["test", "val"],
    };
    names.iter().map(|n| dir.join(n)).find(|p| p.is_dir()).ok_or_else(|| {
        Error::file(
            dir,
            format!(
                "no {} folder of pictures here: an image folder holds train/ and test/ (or val/), each with a folder \
                 per class (train/cat/001.png), as torchvision's ImageFolder reads them, or the class folders alone \
                 (cat/001.png, a fifth of them held out for testing); --data-dir names it",
                names.join("/ or ") + "/"
            ),
        )
    })
}

/// The class names: the sub-folders of `split_dir` (a split's folder), sorted.
pub fn classes(split_dir: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for (path, is_dir) in read_dir(split_dir)? {
        if is_dir {
            classes.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(Error::file(split_dir, "holds no class folders (train/cat/001.png, train/dog/002.png, …)"));
    }
    if classes.len() > MAX_CLASSES {
        return Err(Error::file(
            split_dir,
            format!("holds {} class folders; wgrad trains at most {MAX_CLASSES} classes", classes.len()),
        ));
    }
    Ok(classes)
}

/// A split's pictures, decoded and framed (in parallel), with the training split's classes (a
/// folder with test/ or val/ alone, to evaluate a checkpoint on, has that split's own).
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    load_with(dir, split, HELD_OUT)
}

/// [`load`], where a folder of class folders alone holds out `test_fraction` (in (0, 1)) of each
/// class's pictures as its test split.
pub fn load_with(dir: &Path, split: Split, test_fraction: f64) -> Result<Dataset> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::file(dir, format!("the test fraction must be in (0, 1), got {test_fraction}")));
    }
    if is_unsplit(dir) {
        return load_unsplit(dir, split, test_fraction);
    }
    let root = find(dir, split)?;
    let classes = classes(&find(dir, Split::Train).unwrap_or_else(|_| root.clone()))?;
    // The split's class folders: each must be one of the training split's.
    let mut files: Vec<(PathBuf, u8)> = Vec::new();
    for name in self::classes(&root)? {
        let folder = root.join(&name);
        let Some(label) = classes.iter().position(|c| *c == name) else {
            return Err(Error::file(
                &folder,
                format!("a class the training split has no folder of (its classes: {})", classes.join(", ")),
            ));
        };
        let before = files.len();
        pictures(&folder, label as u8, &mut files)?;
        if files.len() == before && split == Split::Train {
            return Err(Error::file(
                &folder,
                format!("holds no pictures (files ending {})", EXTENSIONS.map(|e| format!(".{e}")).join(", ")),
            ));
        }
    }
    decode(dir, files, classes, split, root, None)
}

/// A split of a folder of class folders alone: `test_fraction` of each class's pictures (rounded,
/// at least one of two or more, at most all but one) are the test split, those whose paths within
/// `dir` have the smallest MD5s; the split keeps the pictures' order.
fn load_unsplit(dir: &Path, split: Split, test_fraction: f64) -> Result<Dataset> {
    let classes = classes(dir)?;
    let mut files: Vec<(PathBuf, u8)> = Vec::new();
    for (label, name) in classes.iter().enumerate() {
        let folder = dir.join(name);
        let mut class = Vec::new();
        pictures(&folder, label as u8, &mut class)?;
        if class.is_empty() {
            return Err(Error::file(
                &folder,
                format!("holds no pictures (files ending {})", EXTENSIONS.map(|e| format!(".{e}")).join(", ")),
            ));
        }
        let n = class.len();
        let held = if n < 2 { 0 } else { ((n as f64 * test_fraction).round() as usize).clamp(1, n - 1) };
        let digest = |p: &Path| {
            let rel = p.strip_prefix(dir).unwrap_or(p).to_string_lossy().replace('\\', "/");
            <md5::Md5 as md5::Digest>::digest(rel.as_bytes())
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_cached_key(|&i| digest(&class[i].0));
        let mut test = vec![false; n];
        for &i in &order[..held] {
            test[i] = true;
        }
        files.extend(class.into_iter().zip(test).filter(|(_, t)| *t == (split == Split::Test)).map(|(f, _)| f));
    }
    decode(dir, files, classes, split, dir.to_path_buf(), Some(test_fraction))
}

/// Decodes and frames `files` (in parallel) into a split of `classes` (`held_out`: see
/// [`Dataset::held_out`]).
fn decode(
    dir: &Path,
    files: Vec<(PathBuf, u8)>,
    classes: Vec<String>,
    split: Split,
    source: PathBuf,
    held_out: Option<f64>,
) -> Result<Dataset> {
    let mut cache = Cache::read(dir);
    let keys: Vec<Option<Key>> = files.par_iter().map(|(path, _)| Key::of(dir, path)).collect();
    let images: Vec<Vec<u8>> = files
        .par_iter()
        .zip(&keys)
        .map(|((path, _), key)| match key.as_ref().and_then(|k| cache.get(k)) {
            Some(pixels) => Ok(pixels.to_vec()),
            None => decode_pixels(path, &super::read(path)?, Framing::Colour),
        })
        .collect::<Result<_>>()?;
    debug_assert!(images.iter().all(|i| i.len() == IMAGE_BYTES));
    cache.update(dir, keys.into_iter().zip(&images));
    Ok(Dataset {
        name: DatasetKind::ImageFolder.name().into(),
        split,
        images: images.concat(),
        labels: files.iter().map(|f| f.1).collect(),
        classes,
        synthetic: false,
        held_out,
        source,
    })
}

/// The file beside the pictures where wgrad keeps them decoded and framed, so that a folder's
/// pictures are decoded once, not at every `train`, `--resume` and `eval`: each by its path
/// within the folder, size and modification time (a picture changed since is decoded again).
/// Written atomically when pictures were decoded; never over a file of that name that is not
/// wgrad's; not at all where the folder cannot be written (the pictures are then decoded each
/// time).
pub const CACHE: &str = ".wgrad-pictures.safetensors";
/// The metadata entry that marks the file as wgrad's, and its format: a change to how pictures
/// are framed ([`decode_pixels`]) changes the version, so that older files are decoded afresh.
const CACHE_MARK: (&str, &str) = ("wgrad", "decoded pictures, 3x32x32 bytes each, v1");

/// What identifies a picture's file: its path within the folder ('/'-separated), size and
/// modification time (nanoseconds since 1970).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct Key(String, u64, String);

impl Key {
    /// The key of `path` (in `dir`) as it is now; None where its metadata cannot be read.
    fn of(dir: &Path, path: &Path) -> Option<Key> {
        let m = std::fs::metadata(path).ok()?;
        let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        let rel = path.strip_prefix(dir).unwrap_or(path).to_string_lossy().replace('\\', "/");
        Some(Key(rel, m.len(), t.to_string()))
    }
}

/// The decoded pictures of [`CACHE`].
#[derive(Default)]
struct Cache {
    index: std::collections::HashMap<Key, usize>,
    images: Vec<u8>,
    /// Whether a file of that name exists that is not wgrad's (it is then left alone).
    foreign: bool,
}

impl Cache {
    /// The cache of `dir`: empty where there is none or it cannot be read.
    fn read(dir: &Path) -> Cache {
        let path = dir.join(CACHE);
        let Ok(bytes) = std::fs::read(&path) else { return Cache::default() };
        Cache::parse(&bytes).unwrap_or(Cache { foreign: !Cache::is_ours(&bytes), ..Cache::default() })
    }

    fn is_ours(bytes: &[u8]) -> bool {
        safetensors::SafeTensors::read_metadata(bytes).is_ok_and(|(_, m)| {
            m.metadata().as_ref().and_then(|m| m.get(CACHE_MARK.0)).is_some_and(|v| v == CACHE_MARK.1)
        })
    }

    fn parse(bytes: &[u8]) -> Option<Cache> {
        if !Cache::is_ours(bytes) {
            return None;
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
        let keys: Vec<Key> = serde_json::from_str(meta.metadata().as_ref()?.get("pictures")?).ok()?;
        let st = safetensors::SafeTensors::deserialize(bytes).ok()?;
        let t = st.tensor("images").ok()?;
        if t.dtype() != safetensors::Dtype::U8 || t.shape() != [keys.len(), IMAGE_BYTES] {
            return None;
        }
        let index = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        Some(Cache { index, images: t.data().to_vec(), foreign: false })
    }

    fn get(&self, key: &Key) -> Option<&[u8]> {
        self.index.get(key).map(|&i| &self.images[i * IMAGE_BYTES..][..IMAGE_BYTES])
    }

    /// Adds the pictures not in the cache yet and, if there were any, writes it again with them
    /// and the others still in `dir` as they were (best effort: an error leaves it as it was).
    fn update<'a>(&mut self, dir: &Path, decoded: impl Iterator<Item = (Option<Key>, &'a Vec<u8>)>) {
        let fresh: Vec<(Key, &Vec<u8>)> =
            decoded.filter_map(|(k, px)| k.filter(|k| !self.index.contains_key(k)).map(|k| (k, px))).collect();
        if fresh.is_empty() || self.foreign {
            return;
        }
        let mut keys: Vec<Key> = Vec::new();
        let mut images = Vec::new();
        let mut kept: Vec<(&Key, usize)> = self.index.iter().map(|(k, &i)| (k, i)).collect();
        kept.sort_by_key(|&(_, i)| i);
        for (k, i) in kept {
            if Key::of(dir, &dir.join(&k.0)).as_ref() == Some(k) {
                keys.push(k.clone());
                images.extend_from_slice(&self.images[i * IMAGE_BYTES..][..IMAGE_BYTES]);
            }
        }
        for (k, px) in fresh {
            keys.push(k);
            images.extend_from_slice(px);
        }
        let Ok(view) =
            safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![keys.len(), IMAGE_BYTES], &images)
        else {
            return;
        };
        let meta = [
            (CACHE_MARK.0.to_string(), CACHE_MARK.1.to_string()),
            ("pictures".to_string(), serde_json::to_string(&keys).unwrap_or_default()),
        ];
        if let Ok(bytes) = safetensors::serialize([("images", view)], Some(meta.into_iter().collect())) {
            let _ = crate::io::write_atomic(&dir.join(CACHE), &bytes);
        }
    }
}

/// The pictures in `dir` itself (not its sub-folders), in sorted order: the files with the
/// extensions wgrad decodes.
pub fn pictures_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .filter(|(p, is_dir)| !is_dir && EXTENSIONS.contains(&extension(p).as_str()))
        .map(|(p, _)| p)
        .collect();
    files.sort();
    Ok(files)
}

/// A path's extension in lower case ("" where it has none).
fn extension(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

/// The entries of `dir`: (path, whether a folder). Symbolic links to folders are not followed.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot read the folder: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::file(dir, format!("cannot read the folder: {e}")))?;
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push((e.path(), is_dir));
    }
    Ok(out)
}

/// The pictures under `folder`, labelled `label`: its files in sorted order, then its sub-folders'
/// in sorted order of the folders.
fn pictures(folder: &Path, label: u8, out: &mut Vec<(PathBuf, u8)>) -> Result<()> {
    let mut entries = read_dir(folder)?;
    // Files first (false < true), each kind by name.
    entries.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    for (path, is_dir) in entries {
        if is_dir {
            pictures(&path, label, out)?;
            continue;
        }
        if EXTENSIONS.contains(&extension(&path).as_str()) {
            out.push((path, label));
        }
    }
    Ok(())
}
