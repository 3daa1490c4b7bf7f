//! Training: epochs of optimizer steps over a DataLoader, an evaluation on the test split after each
//! epoch, a checkpoint per epoch (and when stopped), metrics for curves, exact resume.

use crate::data::loader::{Config as LoaderConfig, DataLoader};
use crate::data::Dataset;
use crate::eval::{Evaluator, Score};
use crate::graph::{self, Executor};
use crate::io::checkpoint::{self, Checkpoint, Meta};
use crate::nn::models::ModelKind;
use crate::nn::Model;
use crate::optim::{LrSchedule, Optimizer};
use crate::{Device, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub model: ModelKind,
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
    evaluator: Evaluator,
}

/// Removes temporary files a killed run left in the output folder (`.<name>.tmp<pid>-<n>`).
fn clean_temporaries(out: &Path) {
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The metrics file written next to the checkpoints (and read back on resume).
pub fn metrics_path(out: &Path) -> PathBuf {
    out.join("metrics.json")
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
        clean_temporaries(out);
        if cfg.epochs == 0 && cfg.max_steps.is_none() {
            return Err(Error::Graph("--epochs must be at least 1".into()));
        }
        let mut model = model;
        let mut meta = Meta {
            epoch: 0,
            batch: 0,
            step: 0,
            optimizer_steps: 0,
            seed: cfg.seed,
            batch_size: cfg.batch_size as u64,
            model: cfg.model.name().into(),
            optimizer: Some(cfg.optimizer),
            schedule: cfg.schedule,
            lr: None,
            momentum: None,
            dampening: None,
            weight_decay: None,
            nesterov: None,
            dataset: train.name.clone(),
            classes: train.classes.clone(),
        };
        let mut optimizer = None;
        let mut resumed_from = None;
        let mut history = Vec::new();
        if let Some(p) = resume {
            let file = checkpoint::resolve(p)?;
            let ck = checkpoint::load(&file, &model.params)?;
            resumed_from = Some(file);
            if ck.meta.batch_size != cfg.batch_size as u64
                || ck.meta.seed != cfg.seed
                || ck.meta.optimizer() != cfg.optimizer
                || ck.meta.schedule != cfg.schedule
                || ck.meta.model != cfg.model.name()
                || ck.meta.dataset != train.name
            {
                return Err(Error::file(
                    p,
                    format!(
                        "the checkpoint was trained as {} with batch size {}, seed {}, {}, lr schedule {} on {}; resume with the same settings",
                        ck.meta.model,
                        ck.meta.batch_size,
                        ck.meta.seed,
                        ck.meta.optimizer().describe(),
                        ck.meta.schedule.describe(),
                        ck.meta.dataset
                    ),
                ));
            }
            model.params = ck.params;
            optimizer = Some(ck.optimizer);
            meta = ck.meta;
            if let Ok(bytes) = std::fs::read(metrics_path(out)) {
                history = serde_json::from_slice::<Vec<EpochRecord>>(&bytes).unwrap_or_default();
                history.retain(|r| r.epoch < meta.epoch);
            }
        }
        let opts = graph::Options {
            optimizer: Some(cfg.optimizer),
            schedule: cfg.schedule,
            keep_all: cfg.verify,
            seed: cfg.seed,
            ..Default::default()
        };
        let mut ex = graph::executor(&device, &model, cfg.batch_size, opts)?;
        let mut reference = if cfg.verify && !matches!(device, Device::Cpu) {
            Some(graph::executor(&Device::Cpu, &model, cfg.batch_size, opts)?)
        } else {
            None
        };
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
            },
        )?;
        if loader.is_empty() {
            return Err(Error::Graph(format!(
                "the training split has fewer images than one batch of {}",
                cfg.batch_size
            )));
        }
        let evaluator = Evaluator::new(&device, &model, cfg.eval_batch);
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
            resumed_from,
            evaluator,
        })
    }

    pub fn batches_per_epoch(&self) -> u64 {
        self.loader.len() as u64
    }

    pub fn save(&mut self) -> Result<PathBuf> {
        let optimizer = self.ex.optimizer_state()?;
        self.meta.optimizer_steps = optimizer.steps;
        let ck = Checkpoint { params: self.ex.params()?, optimizer, meta: self.meta.clone() };
        let p = checkpoint::save(&self.out, &ck)?;
        checkpoint::prune(&self.out, 2);
        Ok(p)
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
        crate::plot::curves(&self.out.join("curves.png"), &self.history)
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
    pub fn run(&mut self, stop: &AtomicBool, obs: &mut dyn Observer) -> Result<Outcome> {
        let per_epoch = self.batches_per_epoch();
        while self.meta.epoch < self.cfg.epochs || self.cfg.max_steps.is_some_and(|m| self.meta.step < m) {
            if self.meta.epoch >= self.cfg.epochs {
                break;
            }
            let epoch = self.meta.epoch;
            obs.epoch_start(epoch, per_epoch, self.meta.batch);
            let started = Instant::now();
            let (mut loss_sum, mut loss_n, mut images) = (0f64, 0u64, 0usize);
            for batch in self.loader.epoch(epoch, self.meta.batch as usize) {
                if stop.load(Ordering::SeqCst) {
                    let p = self.save()?;
                    obs.checkpoint(&p);
                    return Ok(Outcome::Interrupted);
                }
                let t = Instant::now();
                let step = self.meta.step + 1;
                let loss = self.ex.step(&batch.images, &batch.targets, true)?.unwrap_or(f32::NAN);
                if let Some(r) = self.reference.as_mut() {
                    r.step(&batch.images, &batch.targets, false)?;
                }
                if !loss.is_finite() {
                    let mut msg = format!("the loss became {loss} at step {step} (epoch {epoch}, batch {}); training stopped, the last good checkpoint is kept", batch.index);
                    if let Some(first) = self.first_non_finite()? {
                        msg += &format!("; the first non-finite value appeared in {first}");
                    } else if !self.cfg.verify {
                        msg += "; run with --verify to find the node that produced it";
                    }
                    return Err(Error::Graph(msg));
                }
                if let Some(r) = &self.reference {
                    let c = crate::graph::compare(self.ex.as_ref(), r.as_ref())?;
                    obs.verify(step, &c);
                    if !c.ok() {
                        return Err(Error::Graph(format!(
                            "--verify: step {step} differs from the CPU path beyond tolerance:\n{c}"
                        )));
                    }
                }
                self.meta.step = step;
                self.meta.batch = batch.index as u64 + 1;
                loss_sum += loss as f64;
                loss_n += 1;
                images += batch.len();
                obs.step(step, loss, batch.len() as f64 / t.elapsed().as_secs_f64());
                if self.cfg.checkpoint_every.is_some_and(|k| k > 0 && step.is_multiple_of(k)) {
                    let p = self.save()?;
                    obs.checkpoint(&p);
                }
                if self.cfg.max_steps.is_some_and(|m| step >= m) {
                    let p = self.save()?;
                    obs.checkpoint(&p);
                    return Ok(Outcome::MaxSteps);
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let score = self.evaluate()?;
            self.meta.epoch += 1;
            self.meta.batch = 0;
            let rec = EpochRecord {
                epoch,
                steps: self.meta.step,
                train_loss: loss_sum / loss_n.max(1) as f64,
                test_loss: score.loss,
                test_accuracy: score.accuracy,
                seconds,
                images_per_s: images as f64 / seconds,
            };
            self.history.push(rec.clone());
            obs.epoch_end(&rec);
            let p = self.save()?;
            self.write_metrics()?;
            obs.checkpoint(&p);
        }
        Ok(Outcome::Finished)
    }

    /// With --verify: the first activation or gradient (in execution order) holding NaN or Inf.
    fn first_non_finite(&self) -> Result<Option<String>> {
        if !self.cfg.verify {
            return Ok(None);
        }
        Ok(self.ex.tensors()?.into_iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())).map(|(n, _)| n))
    }
}
