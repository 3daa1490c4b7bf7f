//! State dicts in safetensors: what `safetensors.torch.save_file(model.state_dict(), path)` writes
//! loads unchanged, and what wgrad writes `load_state_dict` accepts (same keys, shapes, F32). What
//! `torch.save` writes loads too ([`super::pytorch`]): a state dict, a whole module, or a training
//! checkpoint's dict holding one ([`select`]).

use super::safetensors::{serialize, write, Array, File};
use crate::nn::{ParamSet, ParamSpec};
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
/// `nn.DataParallel`'s state dict. Each Sequential's children may be named by their position
/// there, as `nn.Sequential(*layers)` names them ([`crate::nn::ParamSpec::indexed_key`]: the
/// tutorial's Tudui, `model1.0.weight`). Where several dictionaries hold the model's entries (a
/// model and its moving average), which one is meant is not wgrad's guess to make: an error names
/// them.
pub fn select<'a>(path: &Path, file: &'a File, params: &ParamSet) -> Result<Cow<'a, File>> {
    if params.specs.iter().all(|s| file.tensors.contains_key(&s.key)) {
        return Ok(Cow::Borrowed(file));
    }
    let spellings: Vec<Vec<String>> = params.specs.iter().map(spellings).collect();
    let Some(firsts) = spellings.first() else { return Ok(Cow::Borrowed(file)) };
    let under = |p: &str, k: &str| if p.is_empty() { k.to_string() } else { format!("{p}.{k}") };
    // The spelling of each entry under `p`, if the file holds every entry there.
    let found_under = |p: &str| -> Option<Vec<String>> {
        spellings.iter().map(|ks| ks.iter().map(|k| under(p, k)).find(|k| file.tensors.contains_key(k))).collect()
    };
    // Every prefix under which the file holds all of the model's entries.
    let mut found: Vec<(&str, Vec<String>)> = Vec::new();
    for first in firsts {
        for k in file.tensors.keys() {
            let prefix =
                if k == first { Some("") } else { k.strip_suffix(first.as_str()).and_then(|p| p.strip_suffix('.')) };
            if let Some(p) = prefix.filter(|p| found.iter().all(|f| f.0 != *p)) {
                if let Some(keys) = found_under(p) {
                    found.push((p, keys));
                }
            }
        }
    }
    match &found[..] {
        [] => Ok(Cow::Borrowed(file)),
        [(p, keys)] => {
            let renamed: HashMap<&str, &str> =
                keys.iter().map(String::as_str).zip(params.specs.iter().map(|s| s.key.as_str())).collect();
            let prefix = under(p, "");
            let tensors = file
                .tensors
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (renamed.get(k.as_str()).map_or(&k[prefix.len()..], |r| r).to_string(), v.clone()))
                .collect();
            Ok(Cow::Owned(File { tensors, metadata: file.metadata.clone() }))
        }
        _ => {
            let places: Vec<&str> = found.iter().map(|f| if f.0.is_empty() { "the top level" } else { f.0 }).collect();
            Err(Error::file(
                path,
                format!(
                    "holds the model's state dict under each of {}: save the one meant on its own \
                     (torch.save(checkpoint['{}'], path))",
                    places.join(", "),
                    found.iter().map(|f| f.0).find(|p| !p.is_empty()).unwrap_or("…")
                ),
            ))
        }
    }
}

/// The names an entry may have in a state dict: its key with each Sequential's child named or
/// numbered (`model1.conv1.weight`, `model1.0.weight`, `0.conv1.weight`, `0.0.weight`), its own
/// key first.
fn spellings(s: &ParamSpec) -> Vec<String> {
    let (named, indexed): (Vec<&str>, Vec<&str>) = (s.key.split('.').collect(), s.indexed_key.split('.').collect());
    if named.len() != indexed.len() {
        return vec![s.key.clone()];
    }
    let mut all = vec![String::new()];
    for (n, i) in named.iter().zip(&indexed) {
        let parts: &[&str] = if n == i { &[n] } else { &[n, i] };
        all = all
            .iter()
            .flat_map(|a| parts.iter().map(move |p| if a.is_empty() { p.to_string() } else { format!("{a}.{p}") }))
            .collect();
    }
    all
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
