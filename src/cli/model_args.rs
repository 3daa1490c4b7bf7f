//! --model, and the optimizer and learning-rate schedule flags shared by `train` and `check`.

use crate::io::safetensors::{Array, File};
use crate::io::{checkpoint, state_dict};
use crate::nn::models::ModelKind;
use crate::nn::Model;
use crate::optim::{Adam, LrSchedule, Optimizer, ScheduleKind, ScheduleSettings, Sgd};
use anyhow::bail;
use std::path::{Path, PathBuf};

/// --weights, and --model for them: the weights a command runs (eval, predict, check, convert).
#[derive(clap::Args, Clone, Debug)]
pub struct WeightsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// State dict with the model's keys: safetensors (safetensors.torch.save_file(model.state_dict(),
    /// path)), or PyTorch's torch.save file (.pt, .pth: a state dict, a whole module, or a dict
    /// holding one), or a wgrad checkpoint (file, or a folder of checkpoints: the newest).
    #[arg(long = "weights", value_name = "WEIGHTS")]
    pub path: PathBuf,
}

impl WeightsArgs {
    /// The network for the weights ([`ModelArgs::build`]) with them loaded (refusing NaN or
    /// infinities), or an error with the --model to pass where they are another network's.
    pub fn load(&self) -> anyhow::Result<(ModelKind, Model)> {
        let (kind, mut model) = self.model.build(&self.path)?;
        checkpoint::load_weights(&self.path, &mut model.params).map_err(|e| self.model.hint(kind, &self.path, e))?;
        Ok((kind, model))
    }
}

/// --model, defaulting to a checkpoint's network.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// The network: tudui, cifar-net or resnet20 [default: the checkpoint's, else the one whose
    /// state dict --weights holds, else tudui].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
}

impl ModelArgs {
    /// The model asked for, else the one a wgrad checkpoint at `weights` records, else the one
    /// whose state dict `weights` holds (one written by PyTorch), else Tudui.
    pub fn kind(&self, weights: Option<&Path>) -> ModelKind {
        self.kind_and_source(weights).0
    }

    /// [`ModelArgs::kind`], and where it comes from, for messages.
    fn kind_and_source(&self, weights: Option<&Path>) -> (ModelKind, &'static str) {
        if let Some(k) = self.model {
            return (k, "--model");
        }
        let recorded = weights.and_then(|w| checkpoint::meta_of(w).ok()).and_then(|m| ModelKind::parse(&m.model));
        if let Some(k) = recorded {
            return (k, "the checkpoint's");
        }
        match weights.and_then(fitting) {
            Some(k) => (k, "the network whose state dict the weights hold"),
            None => (ModelKind::default(), "the default"),
        }
    }

    /// The network for `weights` ([`ModelArgs::kind`]) with as many outputs as the classes it
    /// was trained on ([`classes_of`]), not yet loaded.
    pub fn build(&self, weights: &Path) -> anyhow::Result<(ModelKind, Model)> {
        // A checkpoint of a network of your own (train::Trainer's): none of the built-in ones.
        if let Some(m) = checkpoint::meta_of(weights).ok().filter(|m| ModelKind::parse(&m.model).is_none()) {
            if self.model.is_none() && fitting(weights).is_none() {
                bail!(
                    "{}: the checkpoint's network {:?} is not one of wgrad's built-in networks ({}); \
                     load it into your own with wgrad::io::checkpoint::load_weights",
                    weights.display(),
                    m.model,
                    ModelKind::ALL.map(|k| k.name()).join(", ")
                );
            }
        }
        let (kind, source) = self.kind_and_source(Some(weights));
        let classes = checkpoint::resolve(weights).ok().map_or(10, |p| classes_of(&p, kind));
        if self.model.is_none() {
            eprintln!("model: {} with {classes} outputs ({source})", kind.name());
        }
        Ok((kind, kind.build_with_classes(classes, 0)?))
    }

    /// `err`, from loading `weights` into `kind`, with the --model to pass where the file holds
    /// another built-in network's state dict.
    pub fn hint(&self, kind: ModelKind, weights: &Path, err: crate::Error) -> anyhow::Error {
        match fitting(weights) {
            Some(other) if other != kind => {
                anyhow::anyhow!("{err}\n(it is a state dict of {0}: pass --model {0})", other.name())
            }
            _ => err.into(),
        }
    }
}

/// The classes `kind`'s state dict in the file at `path` was trained on: a checkpoint's recorded
/// classes, else the length of the classifier's bias (the model's last entry: a PyTorch state
/// dict of `num_classes=k`), else 10.
pub(super) fn classes_of(path: &Path, kind: ModelKind) -> usize {
    if let Some(m) = checkpoint::meta_of(path).ok().filter(|m| !m.classes.is_empty()) {
        return m.classes.len();
    }
    File::read(path).ok().map_or(10, |f| classes_in(path, &f, kind))
}

/// The length of `kind`'s classifier bias in `file` (in the state dict nested in it, if it
/// holds one: [`state_dict::select`]), else 10.
fn classes_in(path: &Path, file: &File, kind: ModelKind) -> usize {
    let params = kind.build(0).params;
    let Ok(file) = state_dict::select(path, file, &params) else { return 10 };
    let key = params.specs.last().map(|s| s.key.clone()).unwrap_or_default();
    match file.tensors.get(&key) {
        Some(Array::F32 { shape, .. }) if shape.len() == 1 && shape[0] > 0 => shape[0],
        _ => 10,
    }
}

/// The one built-in network whose state dict (every key, shape and dtype, nothing more) the
/// safetensors or PyTorch file at `weights` (or the newest checkpoint in that folder) holds, for
/// any number of classes.
fn fitting(weights: &Path) -> Option<ModelKind> {
    let path = checkpoint::resolve(weights).ok()?;
    let file = File::read(&path).ok()?;
    let mut fits = ModelKind::ALL.into_iter().filter(|&k| {
        let model = k.build_with_classes(classes_in(&path, &file, k), 0);
        model.is_ok_and(|mut m| state_dict::apply(&path, &file, &mut m.params, |_| true).is_ok())
    });
    match (fits.next(), fits.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

/// The optimizer and its settings, as torch.optim takes them. Unset values: the checkpoint's when
/// resuming, else PyTorch's defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct OptimArgs {
    /// sgd, adam or adamw [default: sgd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate [default: 0.01 for SGD, 0.001 for Adam and AdamW].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// SGD momentum [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// SGD dampening [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub dampening: Option<f32>,
    /// SGD Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay: SGD and Adam add it to the gradient, AdamW decays the weights [default: 0;
    /// AdamW 0.01].
    #[arg(long = "weight-decay", allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Adam and AdamW betas, as B1,B2 [default: 0.9,0.999].
    #[arg(long, value_delimiter = ',', num_args = 1, allow_negative_numbers = true)]
    pub betas: Option<Vec<f32>>,
    /// Adam and AdamW eps [default: 1e-8].
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f32>,
    /// How the learning rate changes, per step: constant, cosine (CosineAnnealingLR down to --lr-min
    /// over the run), step (StepLR: × --lr-gamma every --lr-step-size steps), multistep
    /// (MultiStepLR: × --lr-gamma at each of --lr-milestones) or exponential (ExponentialLR: ×
    /// --lr-gamma every step) [default: constant].
    #[arg(long = "lr-schedule", value_enum)]
    pub lr_schedule: Option<ScheduleKind>,
    /// Linear warmup over the first N steps, before the schedule [default: 0].
    #[arg(long = "warmup-steps")]
    pub warmup_steps: Option<u64>,
    /// StepLR's step size, in steps.
    #[arg(long = "lr-step-size", value_parser = super::positive)]
    pub lr_step_size: Option<u64>,
    /// MultiStepLR's milestones, in steps, as M1,M2,….
    #[arg(long = "lr-milestones", value_delimiter = ',', num_args = 1)]
    pub lr_milestones: Option<Vec<u64>>,
    /// StepLR's and MultiStepLR's gamma [default: 0.1], ExponentialLR's (no default).
    #[arg(long = "lr-gamma", allow_negative_numbers = true)]
    pub lr_gamma: Option<f64>,
    /// CosineAnnealingLR's eta_min [default: 0].
    #[arg(long = "lr-min", allow_negative_numbers = true)]
    pub lr_min: Option<f32>,
    /// Scale the gradients together before each optimizer step so that their total 2-norm is at
    /// most MAX_NORM, as torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM) [default:
    /// off].
    #[arg(long = "clip-grad-norm", value_name = "MAX_NORM", allow_negative_numbers = true)]
    pub clip_grad_norm: Option<f32>,
}

impl OptimArgs {
    /// Whether any optimizer flag was given (`check` takes a step only then).
    pub fn given(&self) -> bool {
        self.optimizer.is_some() || self.lr.is_some()
    }

    /// `--clip-grad-norm` given, else `saved` (a checkpoint's), checked.
    pub fn clip_grad_norm(&self, saved: Option<f32>) -> anyhow::Result<Option<f32>> {
        let max_norm = self.clip_grad_norm.or(saved);
        if let Some(m) = max_norm {
            crate::ops::clip_grad_norm::check(m).map_err(|e| anyhow::anyhow!("--clip-grad-norm: {e}"))?;
        }
        Ok(max_norm)
    }

    /// The optimizer: the flags given, over `saved` (a checkpoint's), over PyTorch's defaults.
    pub fn optimizer(&self, saved: Option<Optimizer>) -> anyhow::Result<Optimizer> {
        let kind = match (self.optimizer, saved) {
            (Some(k), _) => k,
            (None, Some(Optimizer::Sgd(_))) | (None, None) => OptimizerKind::Sgd,
            (None, Some(Optimizer::Adam(_))) => OptimizerKind::Adam,
            (None, Some(Optimizer::AdamW(_))) => OptimizerKind::Adamw,
        };
        let o = match kind {
            OptimizerKind::Sgd => {
                for (flag, given) in [("--betas", self.betas.is_some()), ("--eps", self.eps.is_some())] {
                    if given {
                        bail!("{flag} applies to Adam and AdamW, not SGD");
                    }
                }
                let base = match saved {
                    Some(Optimizer::Sgd(s)) => s,
                    _ => Sgd::new(0.01),
                };
                Optimizer::Sgd(Sgd {
                    lr: self.lr.unwrap_or(base.lr),
                    momentum: self.momentum.unwrap_or(base.momentum),
                    dampening: self.dampening.unwrap_or(base.dampening),
                    weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
                    nesterov: self.nesterov || base.nesterov,
                })
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let sgd_only = [
                    ("--momentum", self.momentum.is_some()),
                    ("--dampening", self.dampening.is_some()),
                    ("--nesterov", self.nesterov),
                ];
                if let Some((flag, _)) = sgd_only.iter().find(|f| f.1) {
                    bail!("{flag} applies to SGD, not Adam or AdamW");
                }
                let adamw = kind == OptimizerKind::Adamw;
                let base = match saved {
                    Some(Optimizer::Adam(a)) if !adamw => a,
                    Some(Optimizer::AdamW(a)) if adamw => a,
                    _ if adamw => Adam::adamw(0.001),
                    _ => Adam::new(0.001),
                };
                let betas = match self.betas.as_deref() {
                    None => base.betas,
                    Some(&[b1, b2]) => (b1, b2),
                    Some(v) => bail!("--betas takes two values, B1,B2; got {v:?}"),
                };
                let a = Adam {
                    lr: self.lr.unwrap_or(base.lr),
                    betas,
                    eps: self.eps.unwrap_or(base.eps),
                    weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
                };
                if adamw {
                    Optimizer::AdamW(a)
                } else {
                    Optimizer::Adam(a)
                }
            }
        };
        o.check()?;
        Ok(o)
    }

    /// The schedule: the flags given, over `saved`, over a constant rate; a cosine schedule
    /// anneals over `total_steps` (after the warmup).
    pub fn schedule(&self, saved: Option<LrSchedule>, total_steps: u64) -> anyhow::Result<LrSchedule> {
        let settings = ScheduleSettings {
            lr_schedule: self.lr_schedule,
            warmup_steps: self.warmup_steps,
            lr_min: self.lr_min,
            lr_step_size: self.lr_step_size,
            lr_milestones: self.lr_milestones.clone(),
            lr_gamma: self.lr_gamma,
        };
        Ok(settings.build(saved, total_steps)?)
    }
}
