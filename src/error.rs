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
