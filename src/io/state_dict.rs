//! State dicts in safetensors: what `safetensors.torch.save_file(model.state_dict(), path)` writes
//! loads unchanged, and what wgrad writes `load_state_dict` accepts (same keys, shapes, F32). What
//! `torch.save` writes loads too ([`super::pytorch`]): a state dict, a whole module, or a training
//! checkpoint's dict holding one ([`select`]).

use super::safetensors::{serialize, write, Array, File};
use crate::nn::ParamSet;
use crate::ops::interface::Role;
use crate::{Error, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Fills `params` from a state dict; one error lists every missing, extra, mis-shaped or
/// non-F32 key.
pub fn load_into(path: &Path, params: &mut ParamSet) -> Result<()> {
    let file = File::read(path)?;
    apply(path, &file, params, |_| true)
}

/// The state dict in `file` for a model with `params`' keys: the file's top level, or, where the
/// model's keys are not all there, the one dictionary nested in the file that holds every one of
/// them, with its name taken off its keys: `model_state_dict` of a training checkpoint saved as
/// `torch.save({'epoch': …, 'model_state_dict': model.state_dict(), …})`, `module` of
/// `nn.DataParallel`'s state dict. Where several do (a model and its moving average), which one
/// is meant is not wgrad's guess to make: an error names them.
pub fn select<'a>(path: &Path, file: &'a File, params: &ParamSet) -> Result<Cow<'a, File>> {
    let keys = || params.specs.iter().map(|s| s.key.as_str());
    let Some(first) = keys().next() else { return Ok(Cow::Borrowed(file)) };
    if keys().all(|k| file.tensors.contains_key(k)) {
        return Ok(Cow::Borrowed(file));
    }
    let suffix = format!(".{first}");
    let holds_all = |p: &str| keys().all(|k| file.tensors.contains_key(&format!("{p}.{k}")));
    let found: Vec<&str> =
        file.tensors.keys().filter_map(|k| k.strip_suffix(&suffix)).filter(|p| holds_all(p)).collect();
    match found[..] {
        [] => Ok(Cow::Borrowed(file)),
        [p] => {
            let prefix = format!("{p}.");
            let tensors = file
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                .collect();
            Ok(Cow::Owned(File { tensors, metadata: file.metadata.clone() }))
        }
        _ => Err(Error::file(
            path,
            format!(
                "holds the model's state dict under each of {}: save the one meant on its own \
                 (torch.save(checkpoint['{}'], path))",
                found.join(", "),
                found[0]
            ),
        )),
    }
}

/// Fills `params` from the tensors of `file` for which `is_param(key)` holds (a checkpoint also
/// holds optimizer state), or from the state dict nested in it ([`select`]); every problem goes
/// into one error.
pub fn apply(path: &Path, file: &File, params: &mut ParamSet, is_param: impl Fn(&str) -> bool) -> Result<()> {
    let file = &*select(path, file, params)?;
    // The model's keys that are missing or differ, then the file's keys the model lacks.
    let (mut wrong, mut missing) = (Vec::new(), 0);
    for spec in &params.specs {
        let want = if spec.role == Role::Counter { "I64" } else { "F32" };
        match file.tensors.get(&spec.key) {
            None => {
                missing += 1;
                wrong.push(format!("missing key {} (shape {:?})", spec.key, spec.shape))
            }
            Some(a) if a.dtype() != want => {
                wrong.push(format!("{} has dtype {}, expected {want}", spec.key, a.dtype()))
            }
            Some(a) if a.shape() != spec.shape => {
                wrong.push(format!("{} has shape {:?}, the model needs {:?}", spec.key, a.shape(), spec.shape))
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = file.tensors.keys().filter(|k| is_param(k) && params.index(k).is_none()).collect();
    extra.sort();
    if !wrong.is_empty() || !extra.is_empty() {
        // A state dict of another network misses every key: the first few of each kind say enough.
        const SHOWN: usize = 8;
        let mut shown: Vec<String> = wrong.iter().take(SHOWN).cloned().collect();
        shown.extend(extra.iter().take(SHOWN).map(|k| format!("unexpected key {k}")));
        let mut msg = shown.join("; ");
        if wrong.len() > SHOWN || extra.len() > SHOWN {
            let counts = [
                (missing, format!("{missing} of the model's {} keys missing", params.specs.len())),
                (wrong.len() - missing, format!("{} of the wrong shape or dtype", wrong.len() - missing)),
                (extra.len(), format!("{} unexpected", extra.len())),
            ];
            let counts: Vec<String> = counts.into_iter().filter(|c| c.0 > 0).map(|c| c.1).collect();
            msg += &format!("; … {} problems in all: {}", wrong.len() + extra.len(), counts.join(", "));
        }
        return Err(Error::file(path, format!("state dict does not fit the model: {msg}")));
    }
    for i in 0..params.specs.len() {
        match file.tensors.get(&params.specs[i].key) {
            Some(Array::F32 { data, .. }) => params.get_mut(i).copy_from_slice(data),
            Some(Array::I64 { data, .. }) => params.set_counter(i, data[0]),
            None => {}
        }
    }
    Ok(())
}

/// The state dict's entries as named tensors (counters as int64 scalars, as PyTorch writes them).
pub fn tensors(params: &ParamSet, prefix: &str) -> Vec<(String, Array)> {
    params
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let a = match s.role {
                Role::Counter => Array::I64 { shape: vec![], data: vec![params.counter(i)] },
                _ => Array::F32 { shape: s.shape.clone(), data: params.get(i).to_vec() },
            };
            (format!("{prefix}{}", s.key), a)
        })
        .collect()
}

/// Writes a state dict atomically.
pub fn save(path: &Path, params: &ParamSet, metadata: Option<HashMap<String, String>>) -> Result<()> {
    write(path, &tensors(params, ""), metadata)
}

/// A state dict file's bytes (what [`save`] writes; a browser page offers them as a download).
pub fn to_bytes(params: &ParamSet, metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    serialize(Path::new("state dict"), &tensors(params, ""), metadata)
}

/// Fills `params` from a state dict file's bytes (`name` is what errors call it).
pub fn load_bytes(name: &str, bytes: &[u8], params: &mut ParamSet) -> Result<()> {
    let path = Path::new(name);
    apply(path, &File::parse(path, bytes)?, params, |_| true)
}
