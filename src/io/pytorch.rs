//! PyTorch's own files, as `torch.save` writes them (`.pt`, `.pth`): the ZIP archive of PyTorch
//! 1.6 and later and the legacy stream before it, read through Burn's `pytorch-reader` crate,
//! which parses the pickle without running it (nothing in the file is executed, as with
//! `torch.load(weights_only=True)`) and checks every declared size against the file before
//! reading. What it gives is the tensors by their dotted path through the file's dictionaries:
//! `conv1.weight` for a state dict, `model_state_dict.conv1.weight` for a training checkpoint
//! saved as a dict, and the state dict's names for a whole module saved with `torch.save(model)`.
//!
//! Floating-point tensors of any width (f64, f16, bf16) are read as f32, as
//! `load_state_dict`'s copy into a float32 model converts them; integer counters
//! (`num_batches_tracked`) as int64.

use super::safetensors::{words, Array, File, UNSUPPORTED};
use crate::{Error, Result};
use pytorch_reader::{DType, PytorchReader};
use std::collections::BTreeMap;
use std::path::Path;

/// How many times its size a file's tensors may take once read (as f32, or i64), plus
/// [`MAX_EXTRA`]: f16 doubles, and weights tied to each other (one storage, two entries) double
/// again.
const MAX_GROWTH: u64 = 8;
const MAX_EXTRA: u64 = 64 << 20;

/// Whether a file's first 4 bytes are those of a `torch.save` file: a ZIP archive
/// (`PK\x03\x04`), or the legacy format's pickle (protocol 2, `\x80\x02`, then its magic number
/// as a 10-byte long, `\x8a\x0a`). A safetensors file starts with its header's length, a
/// little-endian u64 whose third and fourth bytes are 0 below 16 MiB: one of 640 bytes starts
/// `\x80\x02\0\0`.
pub fn is_torch_file(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(&[0x80, 0x02, 0x8a, 0x0a])
}

/// Reads every tensor of a `torch.save` file, by its dotted name. Tensors of types a state dict
/// of wgrad's cannot hold (bool, unsigned or narrow integers) are one error naming them all.
pub fn read(path: &Path) -> Result<File> {
    let reader = PytorchReader::new(path)
        .map_err(|e| Error::file(path, format!("not a PyTorch file wgrad can read (torch.save): {e}")))?;
    // A view can repeat its storage (an `expand` has stride 0): the file bounds nothing of what
    // its tensors take once read, so that is checked before anything is.
    let file_len = std::fs::metadata(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?.len();
    let need: u64 =
        reader.tensors().values().map(|t| t.num_elements() as u64 * if t.dtype() == DType::I64 { 8 } else { 4 }).sum();
    let bound = file_len.saturating_mul(MAX_GROWTH).saturating_add(MAX_EXTRA);
    if need > bound {
        return Err(Error::file(
            path,
            format!(
                "its tensors would take {need} bytes once read, more than {MAX_GROWTH} times the file's {file_len}: \
                 views that repeat their storage (torch.expand) are not read"
            ),
        ));
    }
    let mut tensors = BTreeMap::new();
    let mut bad = Vec::new();
    for (name, t) in reader.into_tensors() {
        let (dtype, shape) = (t.dtype(), t.shape().to_vec());
        let decode: fn(&[u8]) -> Vec<f32> = match dtype {
            DType::F32 => |b| words(b).map(f32::from_ne_bytes).collect(),
            // Rounded to nearest, as PyTorch's `copy_` into a float32 parameter rounds.
            DType::F64 => |b| words(b).map(|w| f64::from_ne_bytes(w) as f32).collect(),
            DType::F16 => |b| words(b).map(|w| half::f16::from_ne_bytes(w).to_f32()).collect(),
            DType::BF16 => |b| words(b).map(|w| half::bf16::from_ne_bytes(w).to_f32()).collect(),
            DType::I64 => {
                let data = words(&read_bytes(path, &t)?).map(i64::from_ne_bytes).collect();
                tensors.insert(name, Array::I64 { shape, data });
                continue;
            }
            d => {
                bad.push(format!("{name} has dtype {d:?}"));
                continue;
            }
        };
        let data = decode(&read_bytes(path, &t)?);
        tensors.insert(name, Array::F32 { shape, data });
    }
    if !bad.is_empty() {
        bad.sort();
        return Err(Error::file(path, format!("{UNSUPPORTED}: {}", bad.join(", "))));
    }
    if tensors.is_empty() {
        return Err(Error::file(path, "a PyTorch file without any tensor (not a state dict)"));
    }
    Ok(File { tensors, metadata: Default::default() })
}

/// A tensor's bytes: contiguous, row-major and native-endian, whatever strides the file has.
fn read_bytes(path: &Path, t: &pytorch_reader::Tensor) -> Result<Vec<u8>> {
    t.read().map_err(|e| Error::file(path, format!("cannot read {}: {e}", t.name)))
}
