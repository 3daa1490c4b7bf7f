//! State dicts in safetensors: what `safetensors.torch.save_file(model.state_dict(), path)` writes
//! loads unchanged, and what wgrad writes `load_state_dict` accepts (same keys, shapes, F32).

use super::safetensors::{write_f32, Array, File};
use crate::nn::ParamSet;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Fills `params` from a state dict; one error lists every missing, extra, mis-shaped or
/// non-F32 key.
pub fn load_into(path: &Path, params: &mut ParamSet) -> Result<()> {
    let file = File::read(path)?;
    apply(path, &file, params, |_| true)
}

/// Fills `params` from the tensors of `file` for which `is_param(key)` holds (a checkpoint also
/// holds optimizer state); every problem goes into one error.
pub fn apply(path: &Path, file: &File, params: &mut ParamSet, is_param: impl Fn(&str) -> bool) -> Result<()> {
    let mut problems = Vec::new();
    for spec in &params.specs {
        match file.tensors.get(&spec.key) {
            None => problems.push(format!("missing key {} (shape {:?})", spec.key, spec.shape)),
            Some(Array::F32 { shape, .. }) if *shape != spec.shape => {
                problems.push(format!("{} has shape {shape:?}, the model needs {:?}", spec.key, spec.shape))
            }
            Some(a @ Array::I64 { .. }) => problems.push(format!("{} has dtype {}, expected F32", spec.key, a.dtype())),
            Some(Array::F32 { .. }) => {}
        }
    }
    let mut extra: Vec<&String> = file.tensors.keys().filter(|k| is_param(k) && params.index(k).is_none()).collect();
    extra.sort();
    problems.extend(extra.into_iter().map(|k| format!("unexpected key {k}")));
    if !problems.is_empty() {
        return Err(Error::file(path, format!("state dict does not fit the model: {}", problems.join("; "))));
    }
    for i in 0..params.specs.len() {
        if let Some(Array::F32 { data, .. }) = file.tensors.get(&params.specs[i].key) {
            params.get_mut(i).copy_from_slice(data);
        }
    }
    Ok(())
}

/// The parameters as (key, shape, data) tensors.
pub fn tensors(params: &ParamSet, prefix: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    params
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{prefix}{}", s.key), s.shape.clone(), params.get(i).to_vec()))
        .collect()
}

/// Writes a state dict atomically.
pub fn save(path: &Path, params: &ParamSet, metadata: Option<HashMap<String, String>>) -> Result<()> {
    write_f32(path, &tensors(params, ""), metadata)
}
