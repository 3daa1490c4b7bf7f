//! Files: safetensors state dicts, batches and outputs (PyTorch-compatible), and PyTorch's own
//! `torch.save` files, read.

pub mod checkpoint;
pub mod png;
#[cfg(not(target_arch = "wasm32"))]
pub mod pytorch;
pub mod safetensors;
pub mod state_dict;

use crate::{Error, Result};
use std::path::Path;

/// What a path names, for messages: "a symbolic link", "a directory", "a device", ….
fn kind_of(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        return "a symbolic link";
    }
    if t.is_dir() {
        return "a directory";
    }
    if t.is_file() {
        return "a regular file";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "neither a regular file nor a directory"
}

/// An output file may be created or may replace a regular file, never anything else (a device,
/// a symbolic link, a pipe, a directory), and its folder must exist.
pub fn check_output_file(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            return Err(Error::file(path, format!("refusing to replace it: it is {}, not a regular file", kind_of(&m))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file(path, format!("cannot inspect: {e}"))),
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::file(path, format!("cannot write: its folder {} does not exist", dir.display())));
    }
    Ok(())
}

/// An output file named on the command line (`show --out`, `check --out`): created, or replacing
/// a regular file that the same command wrote (`ours` reads the mark it leaves, `what` names such
/// a file: [`png::is_grid`], [`safetensors::CHECK_MARK`]), never anyone else's file nor another
/// of wgrad's (a checkpoint, a run's curves), nor anything but a regular file
/// ([`check_output_file`]).
pub fn check_named_output(path: &Path, what: &str, ours: fn(&Path) -> bool) -> Result<()> {
    check_output_file(path)?;
    if path.is_file() && !ours(path) {
        return Err(Error::file(
            path,
            format!(
                "refusing to replace it: it is not {what} (it lacks the mark those carry), and wgrad replaces only \
                 those; move it or choose another --out"
            ),
        ));
    }
    Ok(())
}

/// An output folder: created if missing; anything else than a directory there is refused.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    match check_output_dir(dir) {
        Ok(()) if !dir.is_dir() => {
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))
        }
        r => r,
    }
}

/// Refuses an output folder that [`prepare_output_dir`] would refuse (a file, something
/// unreadable), creating nothing: for commands to check before their long work.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => Err(Error::file(dir, format!("cannot write into it: it is {}, not a directory", kind_of(&m)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::file(dir, format!("cannot inspect: {e}"))),
    }
}

/// Whether a process is running (Linux: /proc; elsewhere every process counts as running, so
/// nothing of another's is ever removed).
pub fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || !Path::new("/proc").is_dir() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a file name is a temporary file of [`write_atomic`] (`.<name>.tmp<pid>-<n>`) left by a
/// process that is no longer running: the only files wgrad removes at start-up.
pub fn stale_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    let Some((target, tail)) = rest.rsplit_once(".tmp") else { return false };
    let Some((pid, seq)) = tail.split_once('-') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !target.is_empty() && digits(pid) && digits(seq) && pid.parse().is_ok_and(|p: u32| !process_alive(p))
}

/// An OS lock on an output folder (`.wgrad.lock`), held while the value lives and released by the
/// OS if the process dies: two runs never write one folder.
pub struct DirLock {
    _file: std::fs::File,
}

/// Locks `dir` for this process, or says which process holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(".wgrad.lock");
    check_output_file(&path)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::file(dir, format!("cannot write into it: {e}")))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::file(
                dir,
                format!(
                    "another wgrad run is using this folder ({}); wait for it to end or choose another --out",
                    holder.trim()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::file(&path, format!("cannot lock: {e}"))),
    }
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let me = format!("pid {}, started at unix time {since}", std::process::id());
    let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(me.as_bytes()));
    Ok(DirLock { _file: file })
}

/// Writes a file atomically: a temporary file in the same folder, flushed, then renamed over `path`,
/// so a crash leaves either the old file or the new one, never half of one. Only a regular file is
/// ever replaced ([`check_output_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    check_output_file(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::file(path, "not a file path"))?;
    // Unique per process and call, so threads writing the same file never share a temporary.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp{}-{seq}", name.to_string_lossy(), std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::file(path, format!("cannot write: {e}")));
    }
    Ok(())
}
