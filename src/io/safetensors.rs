//! safetensors files as PyTorch writes them (`safetensors.torch.save_file`): f32 tensors (and i64
//! targets) by name, with optional string metadata.

use super::write_atomic;
use crate::{Error, Result};
use ::safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The metadata key that marks `wgrad check`'s output (a checkpoint's is `wgrad.checkpoint`): a
/// later `check --out` replaces a file only where it holds this key
/// ([`super::check_named_output`]), so neither someone else's file nor a training run's
/// checkpoint.
pub const CHECK_MARK: &str = "wgrad.check";

/// The metadata key that marks `wgrad convert`'s output (its value: the model and the file it
/// came from); a later `convert --out` replaces only such a file.
pub const CONVERT_MARK: &str = "wgrad.convert";

/// Whether the file at `path` is a safetensors file whose header's `__metadata__` holds the key
/// `key`. Only the header is read.
pub fn has_metadata_key(path: &Path, key: &str) -> bool {
    read_metadata(path).is_ok_and(|m| m.contains_key(key))
}

/// The `__metadata__` of the safetensors file at `path`, reading its header only (a checkpoint's
/// settings without its tensors); none for a PyTorch file.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let bad = |msg: String| Error::file(path, msg);
    let mut f = std::fs::File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    // A PyTorch file has no such metadata.
    #[cfg(not(target_arch = "wasm32"))]
    if super::pytorch::is_torch_file(&n) {
        return Ok(HashMap::new());
    }
    // safetensors' own bound on a header.
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 {
        return Err(bad(format!("not a valid safetensors file: a header of {n} bytes")));
    }
    let mut header = Vec::new();
    f.take(n).read_to_end(&mut header).map_err(|e| bad(format!("cannot read: {e}")))?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let h: Header =
        serde_json::from_slice(&header).map_err(|e| bad(format!("not a valid safetensors file: header: {e}")))?;
    Ok(h.metadata)
}

/// What an error says of tensors of a dtype wgrad cannot take (it names them after this).
pub(crate) const UNSUPPORTED: &str = "only floating-point tensors (read as F32) and I64 ones can be read";

/// The `N`-byte words of `bytes` (a tensor's elements).
pub(crate) fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| c.try_into().unwrap())
}

/// A tensor read from a file.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl Array {
    pub fn shape(&self) -> &[usize] {
        match self {
            Array::F32 { shape, .. } | Array::I64 { shape, .. } => shape,
        }
    }
    pub fn dtype(&self) -> &'static str {
        match self {
            Array::F32 { .. } => "F32",
            Array::I64 { .. } => "I64",
        }
    }
}

/// The tensors of a file, by name, and its metadata.
#[derive(Clone, Debug, Default)]
pub struct File {
    pub tensors: BTreeMap<String, Array>,
    pub metadata: HashMap<String, String>,
}

impl File {
    /// Reads and checks a whole file: a safetensors file, or a PyTorch file (`torch.save`'s
    /// `.pt`/`.pth`, [`super::pytorch`]; not in the browser), told apart by their first bytes.
    /// Floating-point tensors of every width are read as f32, as `load_state_dict` converts
    /// them; other dtypes than those and I64 are an error naming them.
    pub fn read(path: &Path) -> Result<File> {
        let cannot = |e: std::io::Error| Error::file(path, format!("cannot read: {e}"));
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::io::Read;
            let mut head = Vec::new();
            std::fs::File::open(path).and_then(|f| f.take(4).read_to_end(&mut head)).map_err(cannot)?;
            if super::pytorch::is_torch_file(&head) {
                return super::pytorch::read(path);
            }
        }
        Self::parse(path, &std::fs::read(path).map_err(cannot)?)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<File> {
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
        let mut tensors = BTreeMap::new();
        let mut bad = Vec::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let data = view.data();
            let decode: fn(&[u8]) -> Vec<f32> = match view.dtype() {
                Dtype::F32 => |b| words(b).map(f32::from_le_bytes).collect(),
                // Rounded to nearest, as PyTorch's `copy_` into a float32 parameter rounds.
                Dtype::F64 => |b| words(b).map(|w| f64::from_le_bytes(w) as f32).collect(),
                Dtype::F16 => |b| words(b).map(|w| half::f16::from_le_bytes(w).to_f32()).collect(),
                Dtype::BF16 => |b| words(b).map(|w| half::bf16::from_le_bytes(w).to_f32()).collect(),
                Dtype::I64 => {
                    tensors.insert(name, Array::I64 { shape, data: words(data).map(i64::from_le_bytes).collect() });
                    continue;
                }
                d => {
                    bad.push(format!("{name} has dtype {d:?}"));
                    continue;
                }
            };
            tensors.insert(name, Array::F32 { shape, data: decode(data) });
        }
        if !bad.is_empty() {
            bad.sort();
            return Err(Error::file(path, format!("{UNSUPPORTED}: {}", bad.join(", "))));
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(File { tensors, metadata })
    }

    pub fn f32(&self, path: &Path, name: &str) -> Result<(&[usize], &[f32])> {
        match self.tensors.get(name) {
            Some(Array::F32 { shape, data }) => Ok((shape, data)),
            Some(a) => Err(Error::file(path, format!("tensor {name} has dtype {}, expected F32", a.dtype()))),
            None => Err(Error::file(path, format!("no tensor named {name}"))),
        }
    }

    pub fn i64(&self, path: &Path, name: &str) -> Result<(&[usize], &[i64])> {
        match self.tensors.get(name) {
            Some(Array::I64 { shape, data }) => Ok((shape, data)),
            Some(a) => Err(Error::file(path, format!("tensor {name} has dtype {}, expected I64", a.dtype()))),
            None => Err(Error::file(path, format!("no tensor named {name}"))),
        }
    }
}

/// Writes tensors and metadata atomically.
pub fn write(path: &Path, tensors: &[(String, Array)], metadata: Option<HashMap<String, String>>) -> Result<()> {
    write_atomic(path, &serialize(path, tensors, metadata)?)
}

/// The bytes of a safetensors file holding `tensors` and `metadata` (errors name `path`, the file
/// they are meant for).
pub fn serialize(
    path: &Path,
    tensors: &[(String, Array)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, a)| match a {
            Array::F32 { data, .. } => bytemuck::cast_slice(data).to_vec(),
            Array::I64 { data, .. } => bytemuck::cast_slice(data).to_vec(),
        })
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, a), b) in tensors.iter().zip(&bytes) {
        let dtype = match a {
            Array::F32 { .. } => Dtype::F32,
            Array::I64 { .. } => Dtype::I64,
        };
        let shape = a.shape().to_vec();
        let v = TensorView::new(dtype, shape.clone(), b)
            .map_err(|e| Error::file(path, format!("tensor {name} of shape {shape:?}: {e}")))?;
        views.push((name.clone(), v));
    }
    ::safetensors::serialize(views, metadata).map_err(|e| Error::file(path, format!("cannot serialize: {e}")))
}

/// Writes f32 tensors (name, shape, data) and metadata atomically: [`write()`] for the common case.
pub fn write_f32(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let t: Vec<(String, Array)> =
        tensors.iter().map(|(n, s, d)| (n.clone(), Array::F32 { shape: s.clone(), data: d.clone() })).collect();
    write(path, &t, metadata)
}
