//! `wgrad train`: a model (`--model`) with SGD, Adam or AdamW, a progress bar per epoch, a line per epoch (train loss, test
//! loss, test accuracy, time), a checkpoint per epoch, curves, exact resume; Ctrl-C saves at the
//! next step boundary and exits 0.

use super::model_args::{ModelArgs, OptimArgs};
use super::progress::Progress;
use super::{data_args::DataArgs, DeviceArgs};
use crate::data::{DatasetKind, Split};
use crate::nn::models::ModelKind;
use crate::train::{self, EpochRecord, Observer, Outcome, Trainer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Passes over the training set (with --max-steps, whichever ends first).
    #[arg(long, default_value_t = 10, value_parser = super::positive)]
    epochs: u64,
    /// Images per step [default: 64; with --resume, the checkpoint's].
    #[arg(long = "batch-size", value_parser = super::positive)]
    batch_size: Option<u64>,
    /// With --resume, every setting not given is the checkpoint's.
    #[command(flatten)]
    optim: OptimArgs,
    /// Seed of the initialisation, the shuffling and Dropout's masks [default: 0; with --resume,
    /// the checkpoint's].
    #[arg(long)]
    seed: Option<u64>,
    /// Folder for checkpoints, metrics.json/csv, steps.csv and curves.png; a new run's must hold no
    /// other run's checkpoints [default: with --resume, the checkpoint's folder; else runs/<model>,
    /// or runs/<model>-2, -3, … where an earlier run is].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from a checkpoint file, or from the newest complete checkpoint in a folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Start from these weights instead of the seed's initialisation: a state dict (safetensors, or
    /// torch.save's .pt/.pth) or a wgrad checkpoint (the newest in a folder); --model defaults to
    /// the network it is of. Weights for another number of classes than the dataset's give all but
    /// the classifier, which starts afresh (fine-tuning). Only the weights are taken: the
    /// optimizer, schedule and step count start afresh (--resume continues a run instead).
    #[arg(long, conflicts_with = "resume")]
    weights: Option<PathBuf>,
    /// Stop after this many steps in total, counting a resumed run's earlier steps (saving a
    /// checkpoint).
    #[arg(long = "max-steps", value_parser = super::positive)]
    max_steps: Option<u64>,
    /// Also write a checkpoint every N steps (one per epoch is always written).
    #[arg(long = "checkpoint-every", value_parser = super::positive)]
    checkpoint_every: Option<u64>,
    /// Randomly crop (32×32 of the image padded by 4) and mirror each training image, as
    /// torchvision's RandomCrop(32, padding=4) and RandomHorizontalFlip() (He et al.'s CIFAR-10
    /// training) [default: off; with --resume, the checkpoint's].
    #[arg(long)]
    augment: bool,
    /// CrossEntropyLoss's label_smoothing for the training loss, in [0, 1] (the test loss stays
    /// plain) [default: 0; with --resume, the checkpoint's].
    #[arg(long = "label-smoothing", allow_negative_numbers = true)]
    label_smoothing: Option<f32>,
    /// CrossEntropyLoss's weight for the training loss: one per class, as W1,W2,…, or balanced
    /// (images / (classes × the class's images), scikit-learn's compute_class_weight("balanced")).
    /// The test loss stays unweighted [default: none; with --resume, the checkpoint's].
    #[arg(long = "class-weights", value_name = "W1,W2,…|balanced", allow_negative_numbers = true)]
    class_weights: Option<train::ClassWeights>,
    /// Run every step on the CPU path too and stop at the first difference beyond tolerance.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

struct Bars {
    progress: Option<Progress>,
    loss: f64,
    n: u64,
    first: u64,
}

impl Observer for Bars {
    fn epoch_start(&mut self, epoch: u64, batches: u64, first: u64) {
        self.progress = Some(Progress::new(&format!("epoch {}", epoch + 1), batches, first));
        self.loss = 0.0;
        self.n = 0;
        self.first = first;
    }
    fn step(&mut self, step: u64, loss: f32, images_per_s: f64) {
        self.loss += loss as f64;
        self.n += 1;
        let mean = self.loss / self.n as f64;
        if let Some(p) = &mut self.progress {
            p.set(self.first + self.n, self.n, || format!("step {step}, loss {mean:.4}, {images_per_s:.0} img/s"));
        }
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        if let Some(mut p) = self.progress.take() {
            p.finish();
        }
        println!(
            "epoch {:3}: train loss {:.4}  test loss {:.4}  test accuracy {:6.2}%  {:.1} s ({:.0} img/s)",
            r.epoch + 1,
            r.train_loss,
            r.test_loss,
            100.0 * r.test_accuracy,
            r.seconds,
            r.images_per_s
        );
    }
    fn checkpoint(&mut self, p: &Path) {
        self.line(&format!("checkpoint: {}", p.display()));
    }
    fn verify(&mut self, step: u64, c: &crate::graph::Comparison) {
        if let Some(w) = c.worst() {
            self.line(&format!("verify step {step}: worst {} relative L2 error {:.2e}", w.name, w.rel_l2));
        }
    }
}

impl Bars {
    fn line(&self, line: &str) {
        match &self.progress {
            Some(p) => p.println(line),
            None => println!("{line}"),
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

/// ", CrossEntropyLoss(weight=[…], label_smoothing=…)" where the training loss is not plain.
fn loss_description(weight: Option<&[f32]>, label_smoothing: f32) -> String {
    let mut args = Vec::new();
    if weight.is_some() {
        args.push(format!("weight={}", train::weights(weight)));
    }
    if label_smoothing != 0.0 {
        args.push(format!("label_smoothing={label_smoothing}"));
    }
    match args.is_empty() {
        true => String::new(),
        false => format!(", CrossEntropyLoss({})", args.join(", ")),
    }
}

/// A new run's default folder: runs/<model>, or where that holds an earlier run's checkpoints,
/// the first of runs/<model>-2, -3, … that holds none (as Lightning numbers its versions), saying
/// so.
fn fresh_run_dir(model: &str) -> PathBuf {
    let runs = PathBuf::from("runs");
    let first = runs.join(model);
    let taken = |d: &Path| crate::io::checkpoint::latest(d).is_some();
    if !taken(&first) {
        return first;
    }
    let dir = (2..).map(|i| runs.join(format!("{model}-{i}"))).find(|d| !taken(d)).expect("an unused folder");
    eprintln!(
        "out: {} ({} holds an earlier run: --resume {} continues it)",
        dir.display(),
        first.display(),
        first.display()
    );
    dir
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    a.device.check_verify(a.verify)?;
    let device = a.device.select()?;
    // Settings not given on the command line: the checkpoint's when resuming, else PyTorch-style
    // defaults; all checked before the data is read (or generated).
    let resumed = match &a.resume {
        Some(p) => Some(crate::io::checkpoint::meta_of(p)?),
        None => None,
    };
    let kind = match (a.model.model, &resumed) {
        (Some(k), _) => k,
        (None, Some(m)) => ModelKind::parse(&m.model)
            .ok_or_else(|| anyhow::anyhow!("the checkpoint's model {:?} is not one wgrad knows", m.model))?,
        (None, None) => a.model.kind(a.weights.as_deref()),
    };
    let batch_size = a.batch_size.or(resumed.as_ref().map(|m| m.batch_size)).unwrap_or(64);
    let seed = a.seed.or(resumed.as_ref().map(|m| m.seed)).unwrap_or(0);
    let optimizer = a.optim.optimizer(resumed.as_ref().map(|m| m.optimizer()))?;
    let label_smoothing = a.label_smoothing.or(resumed.as_ref().map(|m| m.label_smoothing)).unwrap_or(0.0);
    crate::ops::cross_entropy::check_label_smoothing(label_smoothing)?;
    let clip_grad_norm = a.optim.clip_grad_norm(resumed.as_ref().and_then(|m| m.clip_grad_norm))?;
    // The step count sets only a cosine schedule's length: its flags are checked here already.
    a.optim.schedule(resumed.as_ref().map(|m| m.schedule.clone()), u64::MAX)?;
    // A resumed run goes on where it was (runs/<model> could be another run's).
    let resumed_dir = a.resume.as_deref().map(|p| match p.is_dir() {
        true => p.to_path_buf(),
        false => train::folder_of(p),
    });
    let out = a.out.clone().or(resumed_dir).unwrap_or_else(|| fresh_run_dir(kind.name()));
    train::check_out_folder(&out, a.resume.as_deref())?;
    let data = a.data.clone().defaulting_to(resumed.as_ref());
    if data.kind() == DatasetKind::ImageFolder && crate::data::image_folder::reads_into(&data.dir(), &out) {
        anyhow::bail!(
            "{}: the run's folder is inside the pictures of {}, where its checkpoints and curves would be read as \
             pictures (of a class named after it); --out names a folder outside them",
            out.display(),
            data.dir().display()
        );
    }
    let mut cfg = train::Config {
        model_name: kind.name(),
        epochs: a.epochs,
        batch_size: batch_size as usize,
        optimizer,
        schedule: Default::default(),
        seed,
        max_steps: a.max_steps,
        verify: a.verify,
        eval_batch: 256,
        checkpoint_every: a.checkpoint_every,
        augment: a.augment || resumed.as_ref().is_some_and(|m| m.augment),
        label_smoothing,
        clip_grad_norm,
        class_weights: resumed.as_ref().and_then(|m| m.class_weights.clone()),
    };
    // A resumed run's settings, checked before the data is read (an image folder's pictures take
    // a while to decode): all but the schedule's length and the classes, which the data sets, and
    // which the trainer checks with the rest once it has them.
    if let Some(m) = &resumed {
        let known = train::Config { schedule: m.schedule.clone(), ..cfg.clone() };
        let mut differ = train::settings_differ(m, &known, data.kind().name(), &m.classes);
        // The pictures an unsplit folder holds out (checkpoints from before the flag held out 0.2).
        let held_out = m.test_fraction.unwrap_or(crate::data::image_folder::HELD_OUT);
        if let Some(f) = a.data.test_fraction.filter(|&f| m.dataset == DatasetKind::ImageFolder.name() && f != held_out)
        {
            differ.push(format!("test fraction {held_out} (this run: {f})"));
        }
        if !differ.is_empty() {
            let p = a.resume.as_deref().unwrap_or(Path::new(""));
            return Err(crate::Error::file(p, train::resume_refusal(&differ)).into());
        }
    }
    // The weights to start from, for as many classes as they hold, checked before the data is
    // read. Weights for another number of classes than the data's give all but the classifier,
    // which starts afresh (as a fine-tuning script replaces `model.fc`).
    let start = match &a.weights {
        Some(w) => {
            let given = super::model_args::classes_of(w, kind);
            let mut from = kind.build_with_classes(given, seed)?;
            crate::io::checkpoint::load_weights(w, &mut from.params).map_err(|e| {
                a.model.hint(kind, w, e).context(format!("--weights: {} with {given} outputs", kind.name()))
            })?;
            Some((w, given, from))
        }
        None => None,
    };
    let train_ds = data.load(Split::Train)?;
    let test_ds = data.load(Split::Test)?;
    let per_epoch = (train_ds.len() as u64 / batch_size).max(1);
    let total_steps = a.max_steps.unwrap_or(u64::MAX).min(a.epochs.saturating_mul(per_epoch));
    cfg.schedule = a.optim.schedule(resumed.as_ref().map(|m| m.schedule.clone()), total_steps)?;
    if let Some(w) = &a.class_weights {
        cfg.class_weights = Some(w.resolve(&train_ds).map_err(|e| anyhow::anyhow!("--class-weights: {e}"))?);
    }
    let loss = loss_description(cfg.class_weights.as_deref(), label_smoothing);
    // As many outputs as the dataset has classes (an image folder's may be any number).
    let classes = train_ds.classes.len();
    let mut model = kind.build_with_classes(classes, seed)?;
    if let Some((w, given, from)) = &start {
        let fresh = model.params.copy_matching(&from.params);
        if !fresh.is_empty() {
            println!(
                "--weights: {} holds a classifier for {given} classes, {} has {classes}: {} initialised afresh \
                 (seed {seed}), the rest from the weights",
                w.display(),
                train_ds.name,
                fresh.join(", ")
            );
        }
    }
    let mut t = Trainer::new(device, model, train_ds, test_ds, cfg, &out, a.resume.as_deref())?;
    // Where eval and a later --resume find the data (a resumed run moved elsewhere records where
    // it is now).
    t.meta.data_dir = std::fs::canonicalize(data.dir()).ok().and_then(|d| d.to_str().map(String::from));
    println!(
        "training {} ({} parameters) on {}: {} epochs of {} batches of {}{}, {}{}, lr schedule {}{}{}{}",
        kind.name(),
        t.model.params.count(),
        t.device.name(),
        a.epochs,
        t.batches_per_epoch(),
        batch_size,
        if t.meta.augment { " (random crops and flips)" } else { "" },
        optimizer.describe(),
        match clip_grad_norm {
            Some(m) => format!(" after clip_grad_norm_(max_norm={})", crate::ops::py_float(m)),
            None => String::new(),
        },
        t.cfg.schedule.describe(),
        loss,
        match &a.weights {
            Some(w) => format!(", starting from the weights in {}", w.display()),
            None => String::new(),
        },
        match &t.resumed_from {
            Some(p) => format!(
                ", resuming from {} at epoch {} batch {} (step {})",
                p.display(),
                t.meta.epoch + 1,
                t.meta.batch,
                t.meta.step
            ),
            None => String::new(),
        }
    );
    // Ctrl-C, SIGTERM (what schedulers, `timeout` and container runtimes send) and SIGHUP: save at
    // the next step boundary and exit 0.
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint at the next step boundary (interrupt again to quit at once)");
    });
    let mut obs = Bars { progress: None, loss: 0.0, n: 0, first: 0 };
    let outcome = t.run(&STOP, &mut obs)?;
    drop(obs);
    match outcome {
        Outcome::Finished => {
            println!("done after {} steps; metrics, curves and checkpoints in {}", t.meta.step, out.display())
        }
        Outcome::Interrupted => {
            println!("interrupted at step {}; resume with --resume {}", t.meta.step, out.display())
        }
        Outcome::MaxSteps => {
            println!("stopped at --max-steps {}; resume with --resume {}", t.meta.step, out.display())
        }
    }
    Ok(0)
}
