//! wgrad's error type: every failure names what and where (op and shapes, file and offset).

use std::path::PathBuf;

/// Everything that can go wrong in wgrad, as a value with context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was called with shapes or options it cannot accept.
    #[error("{op}: {msg}")]
    Op { op: String, msg: String },
    /// The GPU reported a validation error, ran out of memory or was lost.
    #[error("GPU error during {context}: {msg}")]
    Gpu { context: String, msg: String },
    /// No usable device for the requested selection.
    #[error("device selection: {0}")]
    Device(String),
    /// A file could not be read, written or parsed.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// A network or model definition is inconsistent.
    #[error("{0}")]
    Graph(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn op(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Op { op: op.into(), msg: msg.into() }
    }
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File { path: path.into(), msg: msg.into() }
    }
}

/// `ensure!(cond, op, "fmt", args)` returns an [`Error::Op`] when `cond` is false.
#[macro_export]
macro_rules! ensure_op {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Error::op($op, format!($($fmt)+)));
        }
    };
}

/// Runs `f`, turning a panic inside it (a third-party parser meeting malformed input) into an error
/// carrying the panic's message, without printing it. Panics elsewhere still reach the previous
/// hook: the quiet flag is per thread and set only while `f` runs.
pub fn contain_panics<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    use std::cell::Cell;
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}
