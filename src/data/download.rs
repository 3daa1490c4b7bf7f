//! Fetching datasets: download with a progress bar, verify the published MD5, and move the
//! dataset's folder into place only when complete. CIFAR-10 is one archive, extracted; MNIST and
//! Fashion-MNIST are four files each, each tried on its mirrors in turn (torchvision's lists). A
//! failed or interrupted download leaves no half dataset behind (temporary names start with
//! `.wgrad-` and carry the process id), and a later run removes those whose process is gone,
//! never another live run's.

use super::cifar10::PY_FOLDER;
use crate::{Error, Result};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The official Python-layout archive and its published MD5 (as torchvision checks it).
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz";
pub const CIFAR10_MD5: &str = "c58f30108f718f92721af3b95e74349a";

/// Where Fashion-MNIST's files are published, in the order torchvision tries them: Zalando's
/// own server, then the files in its repository.
pub const FASHION_MNIST_MIRRORS: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
];
/// Fashion-MNIST's four files and their published MD5s (torchvision's `FashionMNIST.resources`).
pub const FASHION_MNIST_FILES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
];

/// Where MNIST's files are published, in the order torchvision tries them.
pub const MNIST_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"];
/// MNIST's four files and their published MD5s (torchvision's `MNIST.resources`).
pub const MNIST_FILES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
];

/// Downloads the official archive into `dir`/cifar-10-batches-py.
pub fn cifar10(dir: &Path) -> Result<PathBuf> {
    fetch_and_extract(CIFAR10_URL, CIFAR10_MD5, dir, PY_FOLDER)
}

/// Downloads MNIST's files into `dir`/mnist.
pub fn mnist(dir: &Path) -> Result<PathBuf> {
    fetch_files(&MNIST_MIRRORS, &MNIST_FILES, dir, super::mnist::FOLDER)
}

/// Downloads Fashion-MNIST's files into `dir`/fashion-mnist.
pub fn fashion_mnist(dir: &Path) -> Result<PathBuf> {
    fetch_files(&FASHION_MNIST_MIRRORS, &FASHION_MNIST_FILES, dir, super::fashion_mnist::FOLDER)
}

/// The process id in a temporary name of this module (`.wgrad-download-<pid>.part`,
/// `.wgrad-extract-<pid>`).
fn temporary_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".wgrad-download-").or_else(|| name.strip_prefix(".wgrad-extract-"))?;
    rest.strip_suffix(".part").unwrap_or(rest).parse().ok()
}

/// Removes the temporary files and folders that runs no longer running left in `dir`.
fn clean_leftovers(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if temporary_pid(&name).is_some_and(|pid| !crate::io::process_alive(pid)) {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
    }
}

/// Makes `dir`/`folder` unless it exists: `fill` gets a staging folder and a temporary file path in
/// `dir` and returns the folder to move into place (the staging folder or one inside it). Whatever
/// happens, the temporaries are removed; the dataset's folder appears whole or not at all.
fn staged(dir: &Path, folder: &str, fill: impl FnOnce(&Path, &Path) -> Result<PathBuf>) -> Result<PathBuf> {
    let dest = dir.join(folder);
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    clean_leftovers(dir);
    if dest.exists() {
        return Ok(dest);
    }
    let pid = std::process::id();
    let part = dir.join(format!(".wgrad-download-{pid}.part"));
    let staging = dir.join(format!(".wgrad-extract-{pid}"));
    let result = std::fs::create_dir_all(&staging)
        .map_err(|e| Error::file(&staging, format!("cannot create: {e}")))
        .and_then(|_| fill(&staging, &part))
        .and_then(|done| {
            std::fs::rename(&done, &dest)
                .map_err(|e| Error::file(&dest, format!("cannot move the downloaded data into place: {e}")))
        });
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|_| dest)
}

/// Downloads `url` into `part` and checks its MD5.
fn fetch_verified(url: &str, md5_hex: &str, part: &Path) -> Result<()> {
    let digest = download(url, part)?;
    if !digest.eq_ignore_ascii_case(md5_hex) {
        return Err(Error::file(
            part.parent().unwrap_or(part),
            format!("MD5 mismatch for {url}: got {digest}, expected {md5_hex}; the download is corrupt (nothing was kept, run again)"),
        ));
    }
    Ok(())
}

/// Fetches a .tar.gz from `url`, checks its MD5, extracts it and moves the folder `folder` it
/// must contain to `dir`/`folder`. Returns that path.
pub fn fetch_and_extract(url: &str, md5_hex: &str, dir: &Path, folder: &str) -> Result<PathBuf> {
    staged(dir, folder, |staging, part| {
        fetch_verified(url, md5_hex, part)?;
        let f = std::fs::File::open(part).map_err(|e| Error::file(part, format!("cannot open: {e}")))?;
        tar::Archive::new(flate2::read::GzDecoder::new(f))
            .unpack(staging)
            .map_err(|e| Error::file(dir, format!("cannot extract the archive from {url}: {e}")))?;
        let inner = staging.join(folder);
        if !inner.is_dir() {
            return Err(Error::file(dir, format!("the archive from {url} has no folder {folder}/")));
        }
        Ok(inner)
    })
}

/// Fetches each of `files` (name, MD5) from the first of `mirrors` (URL prefixes) that serves it
/// with the right MD5, into `dir`/`folder`. Returns that path; an error names every mirror's
/// failure for the first file none served.
pub fn fetch_files(mirrors: &[&str], files: &[(&str, &str)], dir: &Path, folder: &str) -> Result<PathBuf> {
    staged(dir, folder, |staging, part| {
        for (name, md5_hex) in files {
            let mut failures = Vec::new();
            for (i, mirror) in mirrors.iter().enumerate() {
                match fetch_verified(&format!("{mirror}{name}"), md5_hex, part) {
                    Ok(()) => break,
                    Err(e) => {
                        let msg = match e {
                            Error::File { msg, .. } => msg,
                            e => e.to_string(),
                        };
                        if i + 1 < mirrors.len() {
                            eprintln!("data: {msg}; trying the next mirror");
                        }
                        failures.push(msg);
                    }
                }
            }
            if failures.len() == mirrors.len() {
                return Err(Error::file(dir, format!("no mirror served {name}: {}", failures.join("; "))));
            }
            std::fs::rename(part, staging.join(name))
                .map_err(|e| Error::file(staging, format!("cannot move {name} into place: {e}")))?;
        }
        Ok(staging.to_path_buf())
    })
}

/// Streams `url` into `path` with a progress bar; returns the MD5 (hex) of what was received.
fn download(url: &str, path: &Path) -> Result<String> {
    // Network errors name the URL once (ureq's own message starts with it) and the folder the
    // dataset was going to, not the temporary file.
    let folder = path.parent().unwrap_or(path);
    let net = |e: String| {
        let e = e.strip_prefix(&format!("{url}: ")).unwrap_or(&e).to_string();
        Error::file(folder, format!("downloading {url}: {e}"))
    };
    let resp = ureq::get(url).call().map_err(|e| net(e.to_string()))?;
    let total: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("downloading");
    let mut reader = resp.into_reader();
    let mut file = std::fs::File::create(path).map_err(|e| Error::file(path, format!("cannot create: {e}")))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| net(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
        got += n as u64;
        bar.set_position(got);
    }
    file.sync_all().map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
    bar.finish_and_clear();
    if let Some(t) = total {
        if got != t {
            return Err(net(format!("connection closed after {got} of {t} bytes")));
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
