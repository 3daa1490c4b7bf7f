//! Checkpoints. A checkpoint is a pair of safetensors files, each written atomically (temporary
//! file, fsync, rename), optimizer state first: `checkpoint-<step>.optim.safetensors` holds the
//! optimizer's buffers (`momentum.<key>` for SGD, `exp_avg.<key>` and `exp_avg_sq.<key>` for
//! Adam and AdamW), then `checkpoint-<step>.safetensors` holds exactly the model's state dict
//! (PyTorch's keys: `model.load_state_dict(safetensors.torch.load_file(path))` accepts it) and the
//! metadata (epoch, step, seed, hyper-parameters, dataset). The model file lands last, so its
//! presence marks a complete checkpoint; a crash at any moment leaves the previous one intact.

use super::safetensors::{write, File};
use super::state_dict;
use crate::nn::ParamSet;
use crate::optim::{LrSchedule, Optimizer, OptimizerState, Sgd};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Key of the metadata entry holding [`Meta`] as JSON.
pub const META_KEY: &str = "wgrad.checkpoint";

/// Where training stands and how it was configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The epoch in progress (0-based) and the next batch of it; an epoch's final checkpoint has
    /// `epoch` = the next epoch and `batch` = 0.
    pub epoch: u64,
    pub batch: u64,
    /// Training steps taken so far.
    pub step: u64,
    /// Optimizer steps taken (SGD's momentum buffer starts as the gradient on the first; Adam's
    /// bias correction counts them).
    pub optimizer_steps: u64,
    /// Seed of the initialisation, the per-epoch shuffling and Dropout's masks.
    pub seed: u64,
    pub batch_size: u64,
    /// The network (`--model`); checkpoints written before models could be chosen are Tudui's.
    #[serde(default = "tudui")]
    pub model: String,
    /// The optimizer; checkpoints written before it was recorded hold SGD's settings below.
    #[serde(default)]
    pub optimizer: Option<Optimizer>,
    #[serde(default)]
    pub schedule: LrSchedule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    pub dataset: String,
    pub classes: Vec<String>,
    /// Whether the training images were randomly cropped and flipped (`--augment`); checkpoints
    /// written before it was recorded were not.
    #[serde(default)]
    pub augment: bool,
    /// The training loss's label smoothing (`--label-smoothing`; 0 in checkpoints written before
    /// it was recorded).
    #[serde(default)]
    pub label_smoothing: f32,
    /// `max_norm` of the gradient clipping before each optimizer step (`--clip-grad-norm`); none
    /// in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f32>,
    /// The training loss's class weights (`--class-weights`, resolved: one per class); none in
    /// checkpoints written before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
    /// The data folder the run read (`--data-dir`, made absolute), where `eval` and
    /// `train --resume` read the checkpoint's dataset unless told another; none in checkpoints
    /// written before it was recorded, in those of a [`crate::train::Trainer`] not told it, and
    /// where the path is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// The share of each class an image folder without splits held out as the test split
    /// (`--test-fraction`); none for other datasets and in checkpoints written before it could be
    /// chosen (which held out 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
}

fn tudui() -> String {
    "tudui".into()
}

impl Meta {
    /// The optimizer the run used.
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer.unwrap_or_else(|| {
            Optimizer::Sgd(Sgd {
                lr: self.lr.unwrap_or(0.01),
                momentum: self.momentum.unwrap_or(0.0),
                dampening: self.dampening.unwrap_or(0.0),
                weight_decay: self.weight_decay.unwrap_or(0.0),
                nesterov: self.nesterov.unwrap_or(false),
            })
        })
    }
}

pub struct Checkpoint {
    pub params: ParamSet,
    pub optimizer: OptimizerState,
    pub meta: Meta,
}

pub fn model_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("checkpoint-{step:09}.safetensors"))
}

pub fn optim_path(model: &Path) -> PathBuf {
    model.with_extension("optim.safetensors")
}

/// Writes a checkpoint into `dir`; returns the model file's path.
pub fn save(dir: &Path, ck: &Checkpoint) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    let meta: HashMap<String, String> =
        [(META_KEY.to_string(), serde_json::to_string(&ck.meta).expect("checkpoint metadata serializes"))].into();
    let model = model_path(dir, ck.meta.step);
    let state: Vec<_> =
        ck.optimizer.buffers.iter().flat_map(|(name, b)| state_dict::tensors(b, &format!("{name}."))).collect();
    write(&optim_path(&model), &state, Some(meta.clone()))?;
    state_dict::save(&model, &ck.params, Some(meta))?;
    Ok(model)
}

/// The newest complete checkpoint in `dir` (a model file whose optimizer file exists), if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|r| r.strip_suffix(".safetensors"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let p = e.path();
        if optim_path(&p).exists() && best.as_ref().is_none_or(|(s, _)| step > *s) {
            best = Some((step, p));
        }
    }
    best.map(|b| b.1)
}

/// Deletes complete checkpoints older than the newest `keep` (and their optimizer files).
pub fn prune(dir: &Path, keep: usize) {
    let mut steps: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("checkpoint-")
                .and_then(|r| r.strip_suffix(".optim.safetensors"))
                .and_then(|s| s.parse().ok())
        })
        .collect();
    steps.sort_unstable();
    for &s in steps.iter().rev().skip(keep) {
        let m = model_path(dir, s);
        let _ = std::fs::remove_file(&m);
        let _ = std::fs::remove_file(optim_path(&m));
    }
}

/// The checkpoint metadata of a parsed file (an error for a plain state dict).
pub fn read_meta(path: &Path, f: &File) -> Result<Meta> {
    let json = f.metadata.get(META_KEY).ok_or_else(|| {
        Error::file(
            path,
            format!("not a wgrad checkpoint (no {META_KEY} metadata); a plain state dict cannot be resumed"),
        )
    })?;
    serde_json::from_str(json).map_err(|e| Error::file(path, format!("unreadable checkpoint metadata: {e}")))
}

/// The checkpoint a path names: the file itself, or the newest complete checkpoint in a folder.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        latest(path).ok_or_else(|| Error::file(path, "no complete checkpoint in this folder"))
    } else {
        Ok(path.to_path_buf())
    }
}

/// Loads a checkpoint given its model file, or the newest complete one in a folder.
pub fn load(path: &Path, layout: &ParamSet) -> Result<Checkpoint> {
    let model = resolve(path)?;
    let mf = File::read(&model)?;
    let meta = read_meta(&model, &mf)?;
    let mut params = layout.clone();
    state_dict::apply(&model, &mf, &mut params, |_| true)?;
    let op = optim_path(&model);
    let of = File::read(&op)?;
    let ometa = read_meta(&op, &of)?;
    if ometa != meta {
        return Err(Error::file(
            &op,
            format!("belongs to another checkpoint than {} (step {} vs {})", model.display(), ometa.step, meta.step),
        ));
    }
    let mut buffers = Vec::new();
    for name in meta.optimizer().state_names() {
        let mut buf = layout.trainable_layout();
        let prefix = format!("{name}.");
        let renamed = File {
            tensors: of
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                .collect(),
            metadata: HashMap::new(),
        };
        state_dict::apply(&op, &renamed, &mut buf, |_| true)
            .map_err(|e| Error::file(&op, format!("optimizer state {name}: {e}")))?;
        buffers.push((name.to_string(), buf));
    }
    let optimizer = OptimizerState { steps: meta.optimizer_steps, buffers };
    Ok(Checkpoint { params, optimizer, meta })
}

/// Loads parameters from a state dict or a checkpoint's model file (or a folder of checkpoints),
/// refusing weights that hold NaN or infinities (naming the first such tensor).
pub fn load_weights(path: &Path, params: &mut ParamSet) -> Result<()> {
    let p = resolve(path)?;
    state_dict::load_into(&p, params)?;
    if let Some(key) = params.first_non_finite() {
        return Err(Error::file(&p, format!("{key} holds NaN or infinite values; these weights cannot be evaluated")));
    }
    Ok(())
}

/// The metadata of a checkpoint file, or of the newest complete checkpoint in a folder.
pub fn meta_of(path: &Path) -> Result<Meta> {
    let p = if path.is_dir() {
        latest(path).ok_or_else(|| Error::file(path, "no complete checkpoint in this folder"))?
    } else {
        path.to_path_buf()
    };
    let metadata = super::safetensors::read_metadata(&p)?;
    read_meta(&p, &File { metadata, ..File::default() })
}
