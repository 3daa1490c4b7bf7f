//! Training: epochs of optimizer steps over a DataLoader, an evaluation on the test split after each
//! epoch, a checkpoint per epoch (and when stopped), metrics for curves, exact resume.
//!
//! `wgrad train` is this loop on a built-in network; your own network trains the same way:
//!
//! ```
//! use std::sync::{atomic::AtomicBool, Arc};
//! use wgrad::data::{synthetic, Split};
//! use wgrad::nn::{Conv2d, Flatten, Linear, MaxPool2d, Model, Sequential, GELU};
//! use wgrad::optim::{Adam, Optimizer};
//! use wgrad::train::{Config, Quiet, Trainer};
//! use wgrad::Device;
//!
//! # fn main() -> wgrad::Result<()> {
//! let net = Sequential::new()
//!     .add("conv", Conv2d::new(3, 8, 3).padding(1))
//!     .add("act", GELU::new())
//!     .add("pool", MaxPool2d::new(4))
//!     .add("flatten", Flatten::new())
//!     .add("fc", Linear::new(8 * 8 * 8, 10));
//! let model = Model::new(&net, [3, 32, 32], 0)?;
//! let test = Arc::new(synthetic::generate(0, Split::Test)?);
//! let cfg = Config { optimizer: Optimizer::Adam(Adam::new(1e-3)), max_steps: Some(30), ..Config::new("my-net") };
//! let out = std::env::temp_dir().join(format!("wgrad-doc-train-{}", std::process::id()));
//! // Checkpoints (the model's state dict with PyTorch's keys), steps.csv, metrics, curves.png.
//! let mut t = Trainer::new(Device::Cpu, model, test.clone(), test, cfg, &out, None)?;
//! t.run(&AtomicBool::new(false), &mut Quiet)?;
//! let checkpoint = t.last_checkpoint.clone().expect("a checkpoint at --max-steps");
//! assert_eq!(wgrad::io::checkpoint::meta_of(&checkpoint)?.model, "my-net");
//! assert!(out.join("steps.csv").is_file());
//! # drop(t);
//! # std::fs::remove_dir_all(&out).ok();
//! # Ok(())
//! # }
//! ```

use crate::data::loader::{Config as LoaderConfig, DataLoader};
use crate::data::Dataset;
use crate::eval::{Evaluator, Score};
use crate::graph::{self, Executor, StepOutput};
use crate::io::checkpoint::{self, Checkpoint, Meta};
use crate::nn::Model;
use crate::optim::{LrSchedule, Optimizer};
use crate::{Device, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use web_time::Instant;

#[derive(Clone, Debug)]
pub struct Config {
    /// The network's name, which checkpoints record: a built-in network's
    /// ([`ModelKind::name`](crate::nn::models::ModelKind::name), what `--model` takes), or any
    /// name for your own (`Trainer` trains any [`Model`]; `wgrad eval` and `predict` take only the
    /// built-in ones).
    pub model_name: &'static str,
    pub epochs: u64,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub schedule: LrSchedule,
    pub seed: u64,
    /// Stop (with a checkpoint) once this many steps have been taken in total.
    pub max_steps: Option<u64>,
    /// Run every step on the CPU path too and compare (slow; for debugging).
    pub verify: bool,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// Also write a checkpoint every this many steps (besides one per epoch).
    pub checkpoint_every: Option<u64>,
    /// Random crops and flips of the training images (`loader::Config::augment`).
    pub augment: bool,
    /// The training loss's label smoothing (`graph::Options::label_smoothing`); the test loss is
    /// plain CrossEntropyLoss.
    pub label_smoothing: f32,
    /// Gradient clipping's `max_norm` before each optimizer step
    /// (`graph::Options::clip_grad_norm`).
    pub clip_grad_norm: Option<f32>,
    /// The training loss's class weights (`graph::Options::loss_weight`; [`ClassWeights`] makes
    /// them); the test loss is unweighted.
    pub class_weights: Option<Vec<f32>>,
}

/// CrossEntropyLoss's `weight` for a training set: given, one per class, or "balanced" (as
/// scikit-learn's `compute_class_weight("balanced")`, which PyTorch users pass to the loss:
/// images / (classes × the class's images), so that every class weighs the same in total).
#[derive(Clone, Debug, PartialEq)]
pub enum ClassWeights {
    Balanced,
    Given(Vec<f32>),
}

impl ClassWeights {
    /// The weights for `train`, one per class; an error naming the dataset where they cannot be.
    pub fn resolve(&self, train: &Dataset) -> Result<Vec<f32>> {
        let classes = train.classes.len();
        match self {
            ClassWeights::Given(w) if w.len() != classes => Err(Error::Graph(format!(
                "{} class weights given but {} has {classes} classes ({})",
                w.len(),
                train.name,
                train.classes.join(", ")
            ))),
            ClassWeights::Given(w) => match w.iter().position(|v| !v.is_finite() || *v < 0.0) {
                Some(i) => Err(Error::Graph(format!("class weight {i} is {}: weights must be finite and >= 0", w[i]))),
                // Every step's loss would be 0 / 0.
                None if w.iter().all(|&v| v == 0.0) => Err(Error::Graph("every class weight is 0".into())),
                None => Ok(w.clone()),
            },
            ClassWeights::Balanced => {
                let mut counts = vec![0u64; classes];
                for &l in &train.labels {
                    counts[l as usize] += 1;
                }
                if let Some(c) = counts.iter().position(|&n| n == 0) {
                    return Err(Error::Graph(format!(
                        "balanced class weights: {} has no {} images to weigh",
                        train.name, train.classes[c]
                    )));
                }
                let n = train.len() as f64;
                Ok(counts.iter().map(|&k| (n / (classes as f64 * k as f64)) as f32).collect())
            }
        }
    }
}

impl std::str::FromStr for ClassWeights {
    type Err = String;
    /// `balanced`, or the weights separated by commas.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("balanced") {
            return Ok(ClassWeights::Balanced);
        }
        s.split(',')
            .map(|w| {
                w.trim().parse::<f32>().map_err(|e| format!("{w:?} is not a number ({e}): give W1,W2,… or balanced"))
            })
            .collect::<std::result::Result<Vec<f32>, String>>()
            .map(ClassWeights::Given)
    }
}

impl Config {
    /// `wgrad train`'s defaults for the network called `model_name`: 10 epochs of batches of 64,
    /// SGD(lr=0.01), a constant learning rate, seed 0, evaluation in batches of 256, a checkpoint
    /// per epoch.
    pub fn new(model_name: &'static str) -> Config {
        Config {
            model_name,
            epochs: 10,
            batch_size: 64,
            optimizer: Optimizer::Sgd(crate::optim::Sgd::new(0.01)),
            schedule: LrSchedule::default(),
            seed: 0,
            max_steps: None,
            verify: false,
            eval_batch: 256,
            checkpoint_every: None,
            augment: false,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            class_weights: None,
        }
    }
}

/// One epoch's line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    pub steps: u64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished,
    /// Stopped by a signal (Ctrl-C) at a step boundary, after saving.
    Interrupted,
    MaxSteps,
}

/// What the loop reports as it goes (the CLI draws progress bars; tests stay quiet).
pub trait Observer {
    fn epoch_start(&mut self, _epoch: u64, _batches: u64, _first_batch: u64) {}
    fn step(&mut self, _step: u64, _loss: f32, _images_per_s: f64) {}
    fn epoch_end(&mut self, _r: &EpochRecord) {}
    fn checkpoint(&mut self, _path: &Path) {}
    fn verify(&mut self, _step: u64, _c: &crate::graph::Comparison) {}
}

pub struct Quiet;
impl Observer for Quiet {}

/// A step submitted whose loss has not been taken in yet.
struct Pending {
    step: u64,
    epoch: u64,
    batch: usize,
    lr: f64,
    images: usize,
}

/// One epoch's running sums and the steps still in flight.
struct EpochRun {
    started: Instant,
    pending: VecDeque<Pending>,
    loss_sum: f64,
    loss_n: u64,
    images: usize,
}

pub struct Trainer {
    pub device: Device,
    pub model: Model,
    pub cfg: Config,
    pub out: PathBuf,
    ex: Box<dyn Executor>,
    reference: Option<Box<dyn Executor>>,
    loader: DataLoader,
    test: Arc<Dataset>,
    pub meta: Meta,
    pub history: Vec<EpochRecord>,
    /// The checkpoint file the run resumed from.
    pub resumed_from: Option<PathBuf>,
    /// The newest checkpoint written (or resumed from): all finite.
    pub last_checkpoint: Option<PathBuf>,
    /// The output folder's lock, held for the run.
    _lock: crate::io::DirLock,
    steps: StepLog,
    evaluator: Evaluator,
}

/// Removes the temporary files a killed wgrad run left in the output folder: wgrad's own names
/// (`.<name>.tmp<pid>-<n>`) of processes no longer running, nothing else.
fn clean_temporaries(out: &Path) {
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if crate::io::stale_temporary(&name) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// steps.csv: one line per optimizer step (`step,epoch,loss,lr`), appended and flushed as each
/// step ends, so it can be followed live; on resume it is cut back (atomically) to the
/// checkpoint's step before the run appends to it. The per-step losses are kept for the curves.
struct StepLog {
    file: std::io::BufWriter<std::fs::File>,
    losses: Vec<(u64, f32)>,
    /// Whether the lines end with the gradients' norm before clipping (`--clip-grad-norm`).
    grad_norm: bool,
}

/// The header of steps.csv; a run that clips its gradients adds `,grad_norm`.
pub const STEPS_HEADER: &str = "step,epoch,loss,lr";

impl StepLog {
    /// Starts the log in `out`, keeping the lines of steps up to `keep_through` (0 for a new run)
    /// of the log in `earlier` (the resumed checkpoint's folder: `out` itself, or the folder a run
    /// given another --out continues from). With `grad_norm`, each line ends with the step's
    /// gradient norm (empty in lines kept from a log written before it was).
    fn open(out: &Path, earlier: &Path, keep_through: u64, grad_norm: bool) -> Result<StepLog> {
        let path = steps_path(out);
        let mut text = format!("{STEPS_HEADER}{}\n", if grad_norm { ",grad_norm" } else { "" });
        let mut losses = Vec::new();
        if keep_through > 0 {
            for l in read_steps(&steps_path(earlier)).unwrap_or_default() {
                if l.step <= keep_through {
                    losses.push((l.step, l.loss));
                    text += &l.line;
                    if grad_norm && l.fields == 4 {
                        text.push(',');
                    }
                    text.push('\n');
                }
            }
        }
        crate::io::write_atomic(&path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::file(&path, format!("cannot append: {e}")))?;
        Ok(StepLog { file: std::io::BufWriter::new(file), losses, grad_norm })
    }

    fn push(&mut self, out: &Path, step: u64, epoch: u64, got: StepOutput, lr: f64) -> Result<()> {
        use std::io::Write;
        self.losses.push((step, got.loss));
        let loss = got.loss;
        let written = match (self.grad_norm, got.grad_norm) {
            (false, _) => writeln!(self.file, "{step},{epoch},{loss},{lr}"),
            (true, Some(norm)) => writeln!(self.file, "{step},{epoch},{loss},{lr},{norm}"),
            (true, None) => writeln!(self.file, "{step},{epoch},{loss},{lr},"),
        };
        written.and_then(|_| self.file.flush()).map_err(|e| Error::file(steps_path(out), format!("cannot write: {e}")))
    }
}

/// A line of a steps.csv, parsed.
struct LoggedStep {
    step: u64,
    line: String,
    loss: f32,
    /// 4, or 5 with the gradient norm.
    fields: usize,
}

/// The lines of a steps.csv; a line that does not parse (a torn last line) ends the list.
fn read_steps(path: &Path) -> Option<Vec<LoggedStep>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(step), Some(loss)) =
            (f.first().and_then(|x| x.parse::<u64>().ok()), f.get(2).and_then(|x| x.parse::<f32>().ok()))
        else {
            break;
        };
        if !(4..=5).contains(&f.len()) {
            break;
        }
        v.push(LoggedStep { step, line: line.to_string(), loss, fields: f.len() });
    }
    Some(v)
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

/// Class weights as a resume refusal and `wgrad train` name them.
pub fn weights(w: Option<&[f32]>) -> String {
    match w {
        Some(w) => format!("[{}]", w.iter().map(|&v| crate::ops::py_float(v)).collect::<Vec<_>>().join(", ")),
        None => "none".into(),
    }
}

/// Gradient clipping as a resume refusal names it.
fn clipping(max_norm: Option<f32>) -> String {
    max_norm.map_or("off".into(), |m| format!("to max_norm {m}"))
}

/// Whether `name` is one of the files a run writes into its folder: checkpoints (model and
/// optimizer files), steps.csv, metrics.json, metrics.csv, curves.png.
fn is_run_file(name: &str) -> bool {
    let checkpoint = name.strip_prefix("checkpoint-").and_then(|r| r.strip_suffix(".safetensors")).is_some();
    checkpoint || ["steps.csv", "metrics.json", "metrics.csv", "curves.png"].contains(&name)
}

/// The folder a file is in ("." for a bare file name).
pub fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses an output folder a run cannot write (a file, something unreadable:
/// [`crate::io::check_output_dir`]), one holding another run's checkpoints, or one holding files
/// of a run's names (`is_run_file`) that wgrad did not write, which the run would replace or
/// prune: a folder no wgrad run has used (it has no `.wgrad.lock`). A folder `resume` continues
/// from (a checkpoint in it) is the run's own. Creates nothing.
pub fn check_out_folder(out: &Path, resume: Option<&Path>) -> Result<()> {
    crate::io::check_output_dir(out)?;
    if !out.is_dir() {
        return Ok(());
    }
    let same = |a: &Path, b: &Path| a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a));
    let resumed_dir = resume.and_then(|r| checkpoint::resolve(r).ok()).map(|f| folder_of(&f));
    if resumed_dir.is_some_and(|d| same(&d, out)) {
        return Ok(());
    }
    // Another run's checkpoints: this run's would be pruned in their favour (they have later
    // steps), and --resume would take them up.
    if let Some(newest) = checkpoint::latest(out) {
        return Err(Error::file(
            out,
            format!(
                "it holds another run's checkpoints (the newest: {}); continue that run with --resume {}, \
                 or choose another --out",
                newest.file_name().unwrap_or_default().to_string_lossy(),
                out.display()
            ),
        ));
    }
    if out.join(".wgrad.lock").exists() {
        return Ok(());
    }
    let mut foreign: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| Error::file(out, format!("cannot read: {e}")))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_run_file(n))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    Err(Error::file(
        out,
        format!(
            "refusing to train into it: it holds {} but no wgrad run has used this folder (it has no .wgrad.lock), \
             so a run would replace files wgrad did not write; move them or choose another --out",
            foreign.join(", ")
        ),
    ))
}

/// The per-step log written next to the checkpoints.
pub fn steps_path(out: &Path) -> PathBuf {
    out.join("steps.csv")
}

/// The metrics file written next to the checkpoints (and read back on resume).
pub fn metrics_path(out: &Path) -> PathBuf {
    out.join("metrics.json")
}

/// A checkpoint a run continues from, checked against the run's settings.
struct Resumed {
    file: PathBuf,
    checkpoint: checkpoint::Checkpoint,
}

impl Resumed {
    /// The checkpoint at `p` (a file, or a folder's newest), refused if it was trained with other
    /// settings than `cfg` on `dataset`, is at `--max-steps` already, or holds a value that is
    /// not finite.
    fn load(
        p: &Path,
        cfg: &Config,
        (dataset, classes): (&str, &[String]),
        layout: &crate::nn::ParamSet,
    ) -> Result<Resumed> {
        let file = checkpoint::resolve(p)?;
        // Read before the weights, so that another model is named as such, not as a state dict
        // that does not fit.
        let differ = settings_differ(&checkpoint::meta_of(&file)?, cfg, dataset, classes);
        if !differ.is_empty() {
            return Err(Error::file(p, resume_refusal(&differ)));
        }
        let ck = checkpoint::load(&file, layout)?;
        if let Some(m) = cfg.max_steps.filter(|&m| ck.meta.step >= m) {
            return Err(Error::file(
                p,
                format!("the checkpoint is at step {}, already at --max-steps {m}: nothing to train", ck.meta.step),
            ));
        }
        if let Some(key) = ck.params.first_non_finite() {
            return Err(Error::file(p, format!("{key} holds NaN or infinite values; a run cannot continue from it")));
        }
        Ok(Resumed { file, checkpoint: ck })
    }
}

/// Why a run that differs from its checkpoint in `differ` ([`settings_differ`]) is refused.
pub fn resume_refusal(differ: &[String]) -> String {
    format!(
        "the checkpoint was trained with {}; resume with the same settings (leave them out to take the checkpoint's)",
        differ.join(", ")
    )
}

/// Each setting a run differs in from the checkpoint's `m`: "what (the checkpoint's) (this run:
/// the run's)".
pub fn settings_differ(m: &Meta, cfg: &Config, dataset: &str, classes: &[String]) -> Vec<String> {
    [
        (m.model == cfg.model_name, "model", m.model.clone(), cfg.model_name.to_string()),
        (m.batch_size == cfg.batch_size as u64, "batch size", m.batch_size.to_string(), cfg.batch_size.to_string()),
        (m.seed == cfg.seed, "seed", m.seed.to_string(), cfg.seed.to_string()),
        (m.optimizer() == cfg.optimizer, "optimizer", m.optimizer().describe(), cfg.optimizer.describe()),
        (m.schedule == cfg.schedule, "lr schedule", m.schedule.describe(), cfg.schedule.describe()),
        (m.dataset == dataset, "dataset", m.dataset.clone(), dataset.to_string()),
        (m.classes == classes, "classes", m.classes.join(", "), classes.join(", ")),
        (m.augment == cfg.augment, "augmentation", on_off(m.augment), on_off(cfg.augment)),
        (
            m.label_smoothing == cfg.label_smoothing,
            "label smoothing",
            m.label_smoothing.to_string(),
            cfg.label_smoothing.to_string(),
        ),
        (
            m.clip_grad_norm == cfg.clip_grad_norm,
            "gradient clipping",
            clipping(m.clip_grad_norm),
            clipping(cfg.clip_grad_norm),
        ),
        (
            m.class_weights == cfg.class_weights,
            "class weights",
            weights(m.class_weights.as_deref()),
            weights(cfg.class_weights.as_deref()),
        ),
    ]
    .into_iter()
    .filter(|d| !d.0)
    .map(|(_, what, was, now)| format!("{what} {was} (this run: {now})"))
    .collect()
}

impl Trainer {
    /// A fresh run (`resume` None) or the continuation of a checkpoint.
    pub fn new(
        device: Device,
        model: Model,
        train: Arc<Dataset>,
        test: Arc<Dataset>,
        cfg: Config,
        out: &Path,
        resume: Option<&Path>,
    ) -> Result<Trainer> {
        cfg.optimizer.check()?;
        if cfg.epochs == 0 {
            return Err(Error::Graph("--epochs must be at least 1".into()));
        }
        // --verify judges at f32's tolerances (cli::DeviceArgs::check_verify says why).
        if let Device::Gpu(g) = &device {
            if cfg.verify && g.precision() == crate::Precision::Mixed {
                return Err(Error::Graph(
                    "--verify compares with the CPU path's f32 at f32 tolerances and cannot judge --precision mixed; \
                     verify with --precision f32"
                        .into(),
                ));
            }
        }
        if cfg.max_steps == Some(0) {
            return Err(Error::Graph("--max-steps must be at least 1".into()));
        }
        let mut model = model;
        let mut meta = Meta {
            epoch: 0,
            batch: 0,
            step: 0,
            optimizer_steps: 0,
            seed: cfg.seed,
            batch_size: cfg.batch_size as u64,
            model: cfg.model_name.into(),
            optimizer: Some(cfg.optimizer),
            schedule: cfg.schedule.clone(),
            lr: None,
            momentum: None,
            dampening: None,
            weight_decay: None,
            nesterov: None,
            dataset: train.name.clone(),
            classes: train.classes.clone(),
            augment: cfg.augment,
            label_smoothing: cfg.label_smoothing,
            clip_grad_norm: cfg.clip_grad_norm,
            class_weights: cfg.class_weights.clone(),
            data_dir: None,
            test_fraction: train.held_out,
        };
        // Where the earlier steps' log and metrics are: the resumed checkpoint's folder.
        let mut earlier = out.to_path_buf();
        let (mut optimizer, mut resumed_from, mut history) = (None, None, Vec::new());
        if let Some(p) = resume {
            let r = Resumed::load(p, &cfg, (&train.name, &train.classes), &model.params)?;
            earlier = folder_of(&r.file);
            model.params = r.checkpoint.params;
            optimizer = Some(r.checkpoint.optimizer);
            meta = r.checkpoint.meta;
            resumed_from = Some(r.file);
            if let Ok(bytes) = std::fs::read(metrics_path(&earlier)) {
                history = serde_json::from_slice::<Vec<EpochRecord>>(&bytes).unwrap_or_default();
                history.retain(|r| r.epoch < meta.epoch);
            }
        }
        let opts = graph::Options {
            optimizer: Some(cfg.optimizer),
            schedule: cfg.schedule.clone(),
            keep_all: cfg.verify,
            seed: cfg.seed,
            label_smoothing: cfg.label_smoothing,
            clip_grad_norm: cfg.clip_grad_norm,
            loss_weight: cfg.class_weights.clone(),
            ..Default::default()
        };
        let mut ex = graph::executor(&device, &model, cfg.batch_size, opts.clone())?;
        if ex.plan().classes < train.classes.len() {
            return Err(Error::Graph(format!(
                "the model gives {} class scores but {} has {} classes ({})",
                ex.plan().classes,
                train.name,
                train.classes.len(),
                train.classes.join(", ")
            )));
        }
        let mut reference =
            if cfg.verify { Some(graph::executor(&Device::Cpu, &model, cfg.batch_size, opts)?) } else { None };
        if let Some(state) = &optimizer {
            ex.set_optimizer_state(state)?;
            if let Some(r) = reference.as_mut() {
                r.set_optimizer_state(state)?;
            }
        }
        // drop_last: every step has the executor's batch size (as the step count and resume assume).
        let loader = DataLoader::new(
            train,
            LoaderConfig {
                batch_size: cfg.batch_size,
                shuffle: true,
                seed: cfg.seed,
                drop_last: true,
                normalize: None,
                augment: cfg.augment,
            },
        )?;
        if loader.is_empty() {
            return Err(Error::Graph(format!(
                "the training split has fewer images than one batch of {}",
                cfg.batch_size
            )));
        }
        let evaluator = Evaluator::new(&device, &model, cfg.eval_batch);
        // Everything checked: the output folder is made (or refused), locked for this run (which
        // also proves it writable), and cleared of what killed runs left.
        check_out_folder(out, resume)?;
        crate::io::prepare_output_dir(out)?;
        let lock = crate::io::lock_dir(out)?;
        clean_temporaries(out);
        let steps = StepLog::open(out, &earlier, meta.step, cfg.clip_grad_norm.is_some())?;
        Ok(Trainer {
            device,
            model,
            cfg,
            out: out.to_path_buf(),
            ex,
            reference,
            loader,
            test,
            meta,
            history,
            last_checkpoint: resumed_from.clone(),
            resumed_from,
            evaluator,
            _lock: lock,
            steps,
        })
    }

    pub fn batches_per_epoch(&self) -> u64 {
        self.loader.len() as u64
    }

    /// Writes a checkpoint, unless a parameter, buffer or optimizer state is not finite: a
    /// checkpoint is always one a run can continue from.
    pub fn save(&mut self) -> Result<PathBuf> {
        let optimizer = self.ex.optimizer_state()?;
        let params = self.ex.params()?;
        let bad = params.first_non_finite().map(|k| k.to_string()).or_else(|| {
            optimizer
                .buffers
                .iter()
                .find_map(|(n, b)| b.first_non_finite().map(|k| format!("the optimizer's {n} of {k}")))
        });
        if let Some(bad) = bad {
            return Err(Error::Graph(format!(
                "at step {}, {bad} is no longer finite (the learning rate or weight decay may be too large); \
                 no checkpoint was written{}",
                self.meta.step,
                self.kept()
            )));
        }
        self.meta.optimizer_steps = optimizer.steps;
        let ck = Checkpoint { params, optimizer, meta: self.meta.clone() };
        let p = checkpoint::save(&self.out, &ck)?;
        checkpoint::prune(&self.out, 2);
        self.last_checkpoint = Some(p.clone());
        self.write_metrics()?;
        Ok(p)
    }

    /// What a stopped run leaves: "; the last good checkpoint is <path>" or that there is none.
    fn kept(&self) -> String {
        match &self.last_checkpoint {
            Some(p) => format!("; the last good checkpoint is {}", p.display()),
            // A run's folder holds no other run's checkpoints (check_out_folder).
            None => "; no checkpoint of this run was written".into(),
        }
    }

    fn write_metrics(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.history).expect("metrics serialize");
        crate::io::write_atomic(&metrics_path(&self.out), &json)?;
        let mut csv = String::from("epoch,steps,train_loss,test_loss,test_accuracy,seconds,images_per_s\n");
        for r in &self.history {
            csv += &format!(
                "{},{},{},{},{},{:.3},{:.1}\n",
                r.epoch, r.steps, r.train_loss, r.test_loss, r.test_accuracy, r.seconds, r.images_per_s
            );
        }
        crate::io::write_atomic(&self.out.join("metrics.csv"), csv.as_bytes())?;
        crate::plot::curves(&self.out.join("curves.png"), &self.history, &self.steps.losses, self.batches_per_epoch())
    }

    /// Current parameters (read back from the device).
    pub fn params(&self) -> Result<crate::nn::ParamSet> {
        self.ex.params()
    }

    pub fn evaluate(&mut self) -> Result<Score> {
        let params = self.ex.params()?;
        self.evaluator.score(&params, &self.test)
    }

    /// Trains until the configured epochs are done, `max_steps` is reached or `stop` is set.
    ///
    /// Each batch crosses to the device as bytes ([`Executor::upload_pixels`]). Steps are queued:
    /// the device runs a few steps ahead of the losses the host has read
    /// ([`Executor::step_queued`]), and each loss is checked (finite), logged and shown as it
    /// arrives. Every checkpoint waits for all of them first, so it never holds a step whose loss
    /// was not checked. With --verify every step is run and compared one at a time.
    pub fn run(&mut self, stop: &AtomicBool, obs: &mut dyn Observer) -> Result<Outcome> {
        let per_epoch = self.batches_per_epoch();
        while self.meta.epoch < self.cfg.epochs || self.cfg.max_steps.is_some_and(|m| self.meta.step < m) {
            if self.meta.epoch >= self.cfg.epochs {
                break;
            }
            let epoch = self.meta.epoch;
            obs.epoch_start(epoch, per_epoch, self.meta.batch);
            let mut run =
                EpochRun { started: Instant::now(), pending: VecDeque::new(), loss_sum: 0.0, loss_n: 0, images: 0 };
            // The losses each queued step gives back (reused: nothing allocated per step).
            let mut losses = Vec::with_capacity(graph::gpu::LOSS_RING);
            for batch in self.loader.epoch(epoch, self.meta.batch as usize) {
                if stop.load(Ordering::SeqCst) {
                    self.finish_queued(&mut run, obs)?;
                    let p = self.save()?;
                    obs.checkpoint(&p);
                    return Ok(Outcome::Interrupted);
                }
                let step = self.meta.step + 1;
                let lr = self.cfg.schedule.lr(self.cfg.optimizer.lr() as f64, step - 1);
                run.pending.push_back(Pending { step, epoch, batch: batch.index, lr, images: batch.len() });
                if let Some(r) = self.reference.as_mut() {
                    // Each step is verified from the device's state: two float32 runs of a
                    // network like ResNet-20 drift apart over a few steps (tests/models.rs).
                    r.set_params(&self.ex.params()?)?;
                    r.set_optimizer_state(&self.ex.optimizer_state()?)?;
                    let images = batch.images();
                    r.step(&images, &batch.targets, false)?;
                    let loss = self.ex.step(&images, &batch.targets, true)?.unwrap_or(f32::NAN);
                    self.meta.step = step;
                    self.meta.batch = batch.index as u64 + 1;
                    self.arrived(&mut run, StepOutput { loss, grad_norm: self.ex.grad_norm()? }, obs)?;
                    if let Some(r) = &self.reference {
                        let c = crate::graph::compare(self.ex.as_ref(), r.as_ref())?;
                        obs.verify(step, &c);
                        if !c.ok() {
                            return Err(Error::Graph(format!(
                                "--verify: step {step} differs from the CPU path beyond tolerance:\n{c}"
                            )));
                        }
                    }
                } else {
                    losses.clear();
                    self.ex.upload_pixels(&batch.pixels, &batch.to_tensor, Some(&batch.targets))?;
                    self.ex.step_queued_resident(&mut losses)?;
                    self.meta.step = step;
                    self.meta.batch = batch.index as u64 + 1;
                    for &got in &losses {
                        self.arrived(&mut run, got, obs)?;
                    }
                }
                let last = self.cfg.max_steps.is_some_and(|m| step >= m);
                if last || self.cfg.checkpoint_every.is_some_and(|k| k > 0 && step.is_multiple_of(k)) {
                    self.finish_queued(&mut run, obs)?;
                    let p = self.save()?;
                    obs.checkpoint(&p);
                }
                if last {
                    return Ok(Outcome::MaxSteps);
                }
            }
            self.finish_queued(&mut run, obs)?;
            let seconds = run.started.elapsed().as_secs_f64();
            let score = self.evaluate()?;
            self.meta.epoch += 1;
            self.meta.batch = 0;
            let rec = EpochRecord {
                epoch,
                steps: self.meta.step,
                train_loss: run.loss_sum / run.loss_n.max(1) as f64,
                test_loss: score.loss,
                test_accuracy: score.accuracy,
                seconds,
                images_per_s: run.images as f64 / seconds,
            };
            self.history.push(rec.clone());
            obs.epoch_end(&rec);
            let p = self.save()?;
            obs.checkpoint(&p);
        }
        Ok(Outcome::Finished)
    }

    /// Waits for the queued steps and takes in their losses.
    fn finish_queued(&mut self, run: &mut EpochRun, obs: &mut dyn Observer) -> Result<()> {
        let mut losses = Vec::new();
        self.ex.finish_queued(&mut losses)?;
        for got in losses {
            self.arrived(run, got, obs)?;
        }
        if let Some(p) = run.pending.front() {
            return Err(Error::Graph(format!("the loss of step {} never came back from the device", p.step)));
        }
        Ok(())
    }

    /// The loss of the oldest pending step: checked, added to the epoch's mean, logged, shown.
    fn arrived(&mut self, run: &mut EpochRun, got: StepOutput, obs: &mut dyn Observer) -> Result<()> {
        let loss = got.loss;
        let Some(p) = run.pending.pop_front() else {
            return Err(Error::Graph("the device returned a loss for a step that was not queued".into()));
        };
        if !loss.is_finite() {
            let mut msg = format!(
                "the loss became {loss} at step {} (epoch {}, batch {}); training stopped{}",
                p.step,
                p.epoch,
                p.batch,
                self.kept()
            );
            if let Some(first) = self.first_non_finite()? {
                msg += &format!("; the first non-finite value appeared in {first}");
            } else if !self.cfg.verify {
                msg += "; run with --verify to find the node that produced it";
            }
            return Err(Error::Graph(msg));
        }
        run.loss_sum += loss as f64;
        run.loss_n += 1;
        run.images += p.images;
        self.steps.push(&self.out, p.step, p.epoch, got, p.lr)?;
        obs.step(p.step, loss, run.images as f64 / run.started.elapsed().as_secs_f64());
        Ok(())
    }

    /// With --verify: the first activation or gradient (in execution order) holding NaN or Inf.
    fn first_non_finite(&self) -> Result<Option<String>> {
        if !self.cfg.verify {
            return Ok(None);
        }
        Ok(self.ex.tensors()?.into_iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())).map(|(n, _)| n))
    }
}
