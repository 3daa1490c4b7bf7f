//! Fetching CIFAR-10: download with a progress bar, verify the published MD5, extract into a
//! temporary folder and rename it into place only when complete. A failed or interrupted download
//! leaves no half dataset behind (temporary names start with `.wgrad-`), and a re-run removes
//! such leftovers and starts cleanly.

use super::cifar10::PY_FOLDER;
use crate::{Error, Result};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The official Python-layout archive and its published MD5 (as torchvision checks it).
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz";
pub const CIFAR10_MD5: &str = "c58f30108f718f92721af3b95e74349a";

/// Downloads the official archive into `dir`/cifar-10-batches-py.
pub fn cifar10(dir: &Path) -> Result<PathBuf> {
    fetch_and_extract(CIFAR10_URL, CIFAR10_MD5, dir, PY_FOLDER)
}

/// Removes temporary files and folders a killed run left in `dir`.
fn clean_leftovers(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".wgrad-") {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
    }
}

/// Fetches a .tar.gz from `url`, checks its MD5, extracts it and moves the folder `folder` it
/// must contain to `dir`/`folder`. Returns that path.
pub fn fetch_and_extract(url: &str, md5_hex: &str, dir: &Path, folder: &str) -> Result<PathBuf> {
    let dest = dir.join(folder);
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    clean_leftovers(dir);
    if dest.exists() {
        return Ok(dest);
    }
    let pid = std::process::id();
    let part = dir.join(format!(".wgrad-download-{pid}.part"));
    let staging = dir.join(format!(".wgrad-extract-{pid}"));
    let result = (|| {
        let digest = download(url, &part)?;
        if !digest.eq_ignore_ascii_case(md5_hex) {
            return Err(Error::file(&part, format!("MD5 mismatch for {url}: got {digest}, expected {md5_hex}; the download is corrupt (nothing was kept, run again)")));
        }
        let f = std::fs::File::open(&part).map_err(|e| Error::file(&part, format!("cannot open: {e}")))?;
        std::fs::create_dir_all(&staging).map_err(|e| Error::file(&staging, format!("cannot create: {e}")))?;
        tar::Archive::new(flate2::read::GzDecoder::new(f))
            .unpack(&staging)
            .map_err(|e| Error::file(&part, format!("cannot extract the archive from {url}: {e}")))?;
        let inner = staging.join(folder);
        if !inner.is_dir() {
            return Err(Error::file(&part, format!("the archive from {url} has no folder {folder}/")));
        }
        std::fs::rename(&inner, &dest)
            .map_err(|e| Error::file(&dest, format!("cannot move the extracted data into place: {e}")))
    })();
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|_| dest)
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
