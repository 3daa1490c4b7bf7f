//! Training: exact resume (N steps + stop + resume = N + M straight steps, bit for bit) on the CPU
//! path and on the GPU; learning on the synthetic set; Ctrl-C's stop flag; a non-finite loss stops
//! training and keeps the last good checkpoint; checkpoints hold PyTorch's keys.

mod common;
use common::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use wgrad::data::{load, Dataset, DatasetKind, Split, IMAGE_BYTES};
use wgrad::io::checkpoint;
use wgrad::optim::{LrSchedule, Optimizer, Schedule, Sgd};
use wgrad::train::{ClassWeights, Config, Outcome, Quiet, Trainer};
use wgrad::{models, Device};

/// The first `n` images of a split of the synthetic set.
fn synthetic(split: Split, n: usize) -> Arc<Dataset> {
    // Generated once per test binary (into a folder removed right after) and kept in memory.
    static SETS: std::sync::OnceLock<[Dataset; 2]> = std::sync::OnceLock::new();
    let sets = SETS.get_or_init(|| {
        let dir = tempdir();
        [Split::Train, Split::Test].map(|s| load(DatasetKind::Synthetic, &dir, s, false).unwrap())
    });
    let mut ds = sets[match split {
        Split::Train => 0,
        Split::Test => 1,
    }]
    .clone();
    ds.images.truncate(n * IMAGE_BYTES);
    ds.labels.truncate(n);
    Arc::new(ds)
}

fn config(epochs: u64, max_steps: Option<u64>) -> Config {
    Config {
        model_name: wgrad::nn::models::ModelKind::Tudui.name(),
        epochs,
        batch_size: 16,
        optimizer: Optimizer::Sgd(Sgd::new(0.01).momentum(0.9).weight_decay(5e-4)),
        schedule: Default::default(),
        seed: 3,
        max_steps,
        verify: false,
        eval_batch: 32,
        checkpoint_every: None,
        augment: false,
        label_smoothing: 0.0,
        clip_grad_norm: None,
        class_weights: None,
    }
}

fn trainer(device: &Device, out: &std::path::Path, cfg: Config, resume: Option<&std::path::Path>) -> Trainer {
    Trainer::new(
        device.clone(),
        models::ModelKind::parse(cfg.model_name).unwrap().build(cfg.seed),
        synthetic(Split::Train, 64),
        synthetic(Split::Test, 32),
        cfg,
        out,
        resume,
    )
    .unwrap()
}

fn resume_is_exact(device: Device) {
    resume_is_exact_with(device, |c| c)
}

/// Records each step's loss as the loop reports it.
struct Losses(Vec<(u64, f32)>);
impl wgrad::train::Observer for Losses {
    fn step(&mut self, step: u64, loss: f32, _: f64) {
        self.0.push((step, loss));
    }
}

/// 64 images in batches of 16: 4 steps an epoch; stop after 6 (mid-epoch 2), resume to 3 epochs;
/// the parameters equal 12 straight steps' bit for bit, and so does steps.csv (after a killed
/// run's extra and torn lines).
fn resume_is_exact_with(device: Device, cfg: impl Fn(Config) -> Config) {
    let straight_dir = tempdir();
    let mut straight = trainer(&device, &straight_dir, cfg(config(3, None)), None);
    let mut losses = Losses(Vec::new());
    assert_eq!(straight.run(&AtomicBool::new(false), &mut losses).unwrap(), Outcome::Finished);
    let steps_csv = std::fs::read_to_string(straight_dir.join("steps.csv")).unwrap();
    let lines: Vec<&str> = steps_csv.lines().collect();
    let c = cfg(config(3, None));
    // A run that clips logs each step's gradient norm before clipping.
    let clip = c.clip_grad_norm;
    assert_eq!(lines[0], if clip.is_some() { "step,epoch,loss,lr,grad_norm" } else { "step,epoch,loss,lr" });
    assert_eq!(lines.len(), 13, "{steps_csv}");
    for (line, (step, loss)) in lines[1..].iter().zip(&losses.0) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4 + clip.is_some() as usize, "{line}");
        assert_eq!(f[0].parse::<u64>().unwrap(), *step);
        assert_eq!(f[1].parse::<u64>().unwrap(), (step - 1) / 4, "{line}");
        assert_eq!(f[2].parse::<f32>().unwrap().to_bits(), loss.to_bits(), "{line}");
        assert_eq!(f[3].parse::<f64>().unwrap(), c.schedule.lr(c.optimizer.lr() as f64, step - 1), "{line}");
        if let Some(max_norm) = clip {
            assert!(f[4].parse::<f32>().unwrap() > max_norm, "every step clips: {line}");
        }
    }
    let split_dir = tempdir();
    let mut first = trainer(&device, &split_dir, cfg(config(3, Some(6))), None);
    assert_eq!(first.run(&AtomicBool::new(false), &mut Quiet).unwrap(), Outcome::MaxSteps);
    drop(first);
    // A run killed after step 7 (past the checkpoint) while writing step 8.
    let mut f = std::fs::OpenOptions::new().append(true).open(split_dir.join("steps.csv")).unwrap();
    std::io::Write::write_all(&mut f, b"7,1,2.25,0.01\n8,1,2.").unwrap();
    let mut second = trainer(&device, &split_dir, cfg(config(3, None)), Some(&split_dir));
    assert_eq!((second.meta.epoch, second.meta.batch, second.meta.step), (1, 2, 6));
    assert_eq!(second.run(&AtomicBool::new(false), &mut Quiet).unwrap(), Outcome::Finished);
    assert_eq!(second.meta.step, 12);
    let (a, b) = (straight.params().unwrap(), second.params().unwrap());
    let differing = a.data.iter().zip(&b.data).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(
        differing,
        0,
        "{}: 6 steps + resume differ from 12 straight steps in {differing} parameters",
        device.name()
    );
    assert_eq!(std::fs::read_to_string(split_dir.join("steps.csv")).unwrap(), steps_csv);
    // The epoch records after the resume match the straight run's too.
    assert_eq!(straight.history.last().unwrap().test_loss, second.history.last().unwrap().test_loss);
}

#[test]
fn resume_is_bit_exact_on_the_cpu_path() {
    resume_is_exact(Device::Cpu);
}

#[test]
fn resume_is_bit_exact_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    resume_is_exact(Device::Gpu(gpu));
}

/// ResNet-20 with Adam under a cosine schedule with warmup: the optimizer's two moment buffers,
/// its step count, BatchNorm's running statistics and the schedule all carry over a resume.
fn resnet20_adam(c: Config) -> Config {
    Config {
        model_name: wgrad::nn::models::ModelKind::Resnet20.name(),
        optimizer: Optimizer::Adam(wgrad::optim::Adam::new(1e-3)),
        schedule: LrSchedule { schedule: Schedule::Cosine { t_max: 10, eta_min: 1e-5 }, warmup_steps: 2 },
        ..c
    }
}

#[test]
fn resume_is_bit_exact_with_adam_on_resnet20_on_the_cpu_path() {
    resume_is_exact_with(Device::Cpu, resnet20_adam);
}

#[test]
fn resume_is_bit_exact_with_adam_on_resnet20_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    resume_is_exact_with(Device::Gpu(gpu), resnet20_adam);
}

#[test]
fn resume_is_bit_exact_with_augmentation_on_the_cpu_path() {
    resume_is_exact_with(Device::Cpu, |c| Config { augment: true, ..c });
}

/// With SGD (no momentum, no weight decay) each step moves the parameters by lr times the clipped
/// gradient: by at most lr · max_norm in 2-norm. Unclipped, Tudui's first steps move them 100
/// times further. The checkpoint records the setting.
#[test]
fn gradient_clipping_bounds_each_step() {
    let (lr, max_norm) = (0.01, 1e-3);
    let mut norms: Vec<Vec<f32>> = Vec::new();
    for device in [Some(Device::Cpu), gpu().map(Device::Gpu)].into_iter().flatten() {
        let out = tempdir();
        let cfg =
            Config { optimizer: Optimizer::Sgd(Sgd::new(lr)), clip_grad_norm: Some(max_norm), ..config(1, Some(3)) };
        let mut t = trainer(&device, &out, cfg, None);
        let before = t.params().unwrap();
        t.run(&AtomicBool::new(false), &mut Quiet).unwrap();
        let after = t.params().unwrap();
        let moved = before.data.iter().zip(&after.data).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>();
        let bound = 3.0 * lr as f64 * max_norm as f64;
        assert!(moved.sqrt() <= bound * 1.001, "{}: moved {:.3e} > {bound:.3e}", device.name(), moved.sqrt());
        assert!(moved.sqrt() >= bound * 0.5, "{}: moved only {:.3e}", device.name(), moved.sqrt());
        let meta = checkpoint::meta_of(&checkpoint::latest(&out).unwrap()).unwrap();
        assert_eq!(meta.clip_grad_norm, Some(max_norm));
        // steps.csv logs each step's norm before clipping (Tudui's are some hundred times the
        // limit here).
        let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
        assert!(csv.starts_with("step,epoch,loss,lr,grad_norm\n"), "{csv}");
        let logged: Vec<f32> = csv.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
        assert_eq!(logged.len(), 3, "{csv}");
        assert!(logged.iter().all(|&n| n > 10.0 * max_norm), "{}: {csv}", device.name());
        norms.push(logged);
    }
    // The GPU's norms are the CPU path's (each step from weights the two reached apart).
    if let [cpu, gpu] = &norms[..] {
        for (c, g) in cpu.iter().zip(gpu) {
            assert!((c - g).abs() <= 1e-4 * c, "norms {cpu:?} on the CPU path, {gpu:?} on the GPU");
        }
    }
}

/// A clipped run whose steps.csv was written before the log had the gradient norm (wgrad before
/// 2026-12-06), resumed: the earlier lines keep their values with an empty norm, the new ones
/// have it.
#[test]
fn a_resumed_log_without_gradient_norms_gains_the_column() {
    let out = tempdir();
    let mut first = trainer(&Device::Cpu, &out, clipped(config(1, Some(2))), None);
    first.run(&AtomicBool::new(false), &mut Quiet).unwrap();
    drop(first);
    let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let old: String = csv.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect();
    assert!(old.starts_with("step,epoch,loss,lr\n1,0,"), "{old}");
    std::fs::write(out.join("steps.csv"), &old).unwrap();
    let mut second = trainer(&Device::Cpu, &out, clipped(config(1, Some(4))), Some(&out));
    second.run(&AtomicBool::new(false), &mut Quiet).unwrap();
    let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,epoch,loss,lr,grad_norm");
    assert_eq!(lines[1..3], old.lines().skip(1).map(|l| l.to_string() + ",").collect::<Vec<_>>()[..], "{csv}");
    for line in &lines[3..] {
        assert!(line.rsplit(',').next().unwrap().parse::<f32>().unwrap() > 0.01, "{csv}");
    }
    assert_eq!(lines.len(), 5, "{csv}");
}

/// "balanced" weighs each class by images / (classes × the class's images), as scikit-learn's
/// compute_class_weight; given weights are checked against the classes.
#[test]
fn class_weights_resolve_against_the_training_set() {
    let mut ds = (*synthetic(Split::Train, 8)).clone();
    ds.classes = vec!["cat".into(), "dog".into(), "emu".into()];
    ds.labels = vec![0, 1, 1, 1, 2, 2, 0, 1];
    let balanced = "balanced".parse::<ClassWeights>().unwrap().resolve(&ds).unwrap();
    assert_eq!(balanced, [8.0 / 6.0, 8.0 / 12.0, 8.0 / 6.0]);
    assert_eq!("0.5, 2,1".parse::<ClassWeights>().unwrap().resolve(&ds).unwrap(), [0.5, 2.0, 1.0]);
    let e = "1,2".parse::<ClassWeights>().unwrap().resolve(&ds).unwrap_err().to_string();
    assert!(e.contains("2 class weights given but synthetic has 3 classes (cat, dog, emu)"), "{e}");
    let e = "1,-2,1".parse::<ClassWeights>().unwrap().resolve(&ds).unwrap_err().to_string();
    assert!(e.contains("class weight 1 is -2"), "{e}");
    let e = "0,0,0".parse::<ClassWeights>().unwrap().resolve(&ds).unwrap_err().to_string();
    assert!(e.contains("every class weight is 0"), "{e}");
    assert!("1,x".parse::<ClassWeights>().unwrap_err().contains("\"x\" is not a number"));
    ds.labels = vec![0, 1, 1, 1, 0, 0, 0, 1];
    let e = ClassWeights::Balanced.resolve(&ds).unwrap_err().to_string();
    assert!(e.contains("synthetic has no emu images"), "{e}");
}

/// The trainer's loss takes the class weights: the first step's loss moves with them (its
/// weighting is tested against the op in tests/executor.rs), and the checkpoint records them.
#[test]
fn class_weights_reach_the_training_loss() {
    let first_loss = |class_weights: Option<Vec<f32>>| {
        let out = tempdir();
        let cfg = Config { class_weights: class_weights.clone(), ..config(1, Some(1)) };
        let mut losses = Losses(Vec::new());
        trainer(&Device::Cpu, &out, cfg, None).run(&AtomicBool::new(false), &mut losses).unwrap();
        let meta = checkpoint::meta_of(&checkpoint::latest(&out).unwrap()).unwrap();
        assert_eq!(meta.class_weights, class_weights);
        losses.0[0].1
    };
    let (plain, weighted) = (first_loss(None), first_loss(Some((1..=10).map(|c| c as f32).collect())));
    assert!((plain - weighted).abs() > 1e-4, "{plain} {weighted}");
}

/// Clipping to 0.01, which every step of Tudui on the synthetic set exceeds (so the clipped
/// path is the one resumed).
fn clipped(c: Config) -> Config {
    Config { clip_grad_norm: Some(0.01), ..c }
}

#[test]
fn resume_is_bit_exact_with_gradient_clipping_on_the_cpu_path() {
    resume_is_exact_with(Device::Cpu, clipped);
}

#[test]
fn resume_is_bit_exact_with_gradient_clipping_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    resume_is_exact_with(Device::Gpu(gpu), clipped);
}

#[test]
fn a_resume_with_other_settings_is_refused_naming_them() {
    let out = tempdir();
    let mut t = trainer(&Device::Cpu, &out, config(1, Some(1)), None);
    t.run(&AtomicBool::new(false), &mut Quiet).unwrap();
    let e = Trainer::new(
        Device::Cpu,
        models::tudui(3),
        synthetic(Split::Train, 64),
        synthetic(Split::Test, 32),
        Config { clip_grad_norm: Some(1.0), ..resnet20_adam(config(1, None)) },
        &out,
        Some(&out),
    )
    .err()
    .unwrap()
    .to_string();
    // Each setting that differs, with both values; the same ones are left out.
    assert!(e.contains("model tudui (this run: resnet20)"), "{e}");
    assert!(e.contains("optimizer SGD(lr=0.01") && e.contains("(this run: Adam(lr=0.001"), "{e}");
    assert!(e.contains("lr schedule constant (this run: "), "{e}");
    assert!(e.contains("gradient clipping off (this run: to max_norm 1)"), "{e}");
    assert!(!e.contains("batch size") && !e.contains("seed") && !e.contains("dataset"), "{e}");
    assert!(!e.contains("augmentation"), "{e}");
    // As `wgrad train --resume --model resnet20` builds it: the network itself is the other one,
    // and the refusal still names the settings, not a state dict that does not fit.
    let cfg = resnet20_adam(config(1, None));
    let e = Trainer::new(
        Device::Cpu,
        models::ModelKind::parse(cfg.model_name).unwrap().build(cfg.seed),
        synthetic(Split::Train, 64),
        synthetic(Split::Test, 32),
        cfg,
        &out,
        Some(&out),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("model tudui (this run: resnet20)") && !e.contains("does not fit"), "{e}");
}

#[test]
fn a_short_run_learns_the_synthetic_set() {
    let out = tempdir();
    let cfg = Config { batch_size: 32, optimizer: Optimizer::Sgd(Sgd::new(0.01).momentum(0.9)), ..config(1, None) };
    let mut t = Trainer::new(
        Device::Cpu,
        models::tudui(0),
        synthetic(Split::Train, 3200),
        synthetic(Split::Test, 1000),
        cfg,
        &out,
        None,
    )
    .unwrap();
    let before = t.evaluate().unwrap();
    t.run(&AtomicBool::new(false), &mut Quiet).unwrap();
    let after = t.history[0].test_accuracy;
    println!(
        "synthetic set: test accuracy {:.1}% before, {:.1}% after one epoch of 100 steps",
        100.0 * before.accuracy,
        100.0 * after
    );
    assert!(after > 0.3, "test accuracy {after} after one epoch; chance is 0.1");
    for f in ["curves.png", "metrics.csv", "metrics.json", "steps.csv"] {
        assert!(out.join(f).exists(), "{f}");
    }
}

#[test]
fn the_stop_flag_saves_and_a_resume_continues() {
    let out = tempdir();
    let mut t = trainer(&Device::Cpu, &out, config(1, None), None);
    assert_eq!(t.run(&AtomicBool::new(true), &mut Quiet).unwrap(), Outcome::Interrupted);
    let ck = checkpoint::latest(&out).expect("a checkpoint on interrupt");
    drop(t);
    let mut r = trainer(&Device::Cpu, &out, config(1, None), Some(&ck));
    assert_eq!(r.meta.step, 0);
    assert_eq!(r.run(&AtomicBool::new(false), &mut Quiet).unwrap(), Outcome::Finished);
    assert_eq!(r.meta.step, 4);
}

/// Records the steps --verify compares, with their worst relative error.
struct Verified(Vec<(u64, f64)>);
impl wgrad::train::Observer for Verified {
    fn verify(&mut self, step: u64, c: &wgrad::graph::Comparison) {
        self.0.push((step, c.worst().map_or(f64::NAN, |w| w.rel_l2)));
    }
}

/// --verify compares every step with the CPU path whatever the device: on the CPU path itself it
/// is a check of determinism (the same state gives the same bits), not a flag that does nothing.
#[test]
fn verify_compares_every_step_on_the_cpu_path_too() {
    let dir = tempdir();
    let cfg = Config { verify: true, ..config(1, Some(2)) };
    let mut t = trainer(&Device::Cpu, &dir, cfg, None);
    let mut seen = Verified(Vec::new());
    assert_eq!(t.run(&AtomicBool::new(false), &mut seen).unwrap(), Outcome::MaxSteps);
    assert_eq!(seen.0, [(1, 0.0), (2, 0.0)]);
}

/// The library refuses what the command line refuses: --verify (f32 tolerances) on a GPU computing
/// in mixed precision.
/// A run resumed into another --out carries the earlier steps' log and epochs over from the
/// checkpoint's folder, as a resume in place keeps them.
#[test]
fn a_resume_into_another_folder_keeps_the_earlier_steps_and_epochs() {
    let (first_dir, second_dir) = (tempdir(), tempdir());
    let mut first = trainer(&Device::Cpu, &first_dir, config(3, Some(6)), None);
    assert_eq!(first.run(&AtomicBool::new(false), &mut Quiet).unwrap(), Outcome::MaxSteps);
    drop(first);
    let mut second = trainer(&Device::Cpu, &second_dir, config(3, Some(8)), Some(&first_dir));
    assert_eq!(second.run(&AtomicBool::new(false), &mut Quiet).unwrap(), Outcome::MaxSteps);
    let (a, b) = (
        std::fs::read_to_string(first_dir.join("steps.csv")).unwrap(),
        std::fs::read_to_string(second_dir.join("steps.csv")).unwrap(),
    );
    assert_eq!(a.lines().count(), 7, "{a}");
    assert_eq!(b.lines().count(), 9, "{b}");
    assert!(b.starts_with(&a), "{b}\ndoes not start with\n{a}");
    let epochs: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(second_dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(epochs.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [0]);
}

/// Records the checkpoints the loop reports, by step.
struct Saved(Vec<u64>);
impl wgrad::train::Observer for Saved {
    fn checkpoint(&mut self, path: &std::path::Path) {
        self.0.push(checkpoint::meta_of(path).unwrap().step);
    }
}

/// --checkpoint-every saves every k steps and at each epoch's end (which moves the checkpoint on to
/// the next epoch); a last step that is also a k-th one is saved once.
#[test]
fn checkpoint_every_saves_each_step_once() {
    let dir = tempdir();
    let cfg = Config { checkpoint_every: Some(2), ..config(3, Some(6)) };
    let mut t = trainer(&Device::Cpu, &dir, cfg, None);
    let mut saved = Saved(Vec::new());
    assert_eq!(t.run(&AtomicBool::new(false), &mut saved).unwrap(), Outcome::MaxSteps);
    assert_eq!(saved.0, [2, 4, 4, 6]);
}

#[test]
fn verify_with_mixed_precision_is_refused() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    let out = tempdir();
    let cfg = Config { verify: true, ..config(1, None) };
    let model = models::tudui(3);
    let r =
        Trainer::new(Device::Gpu(gpu), model, synthetic(Split::Train, 64), synthetic(Split::Test, 32), cfg, &out, None);
    let e = r.err().expect("--verify with mixed precision was accepted").to_string();
    assert!(e.contains("cannot judge --precision mixed"), "{e}");
}

#[test]
fn a_non_finite_loss_stops_training_naming_the_step_and_keeps_the_last_checkpoint() {
    // lr 1e30: the first step's weights are still finite (and checkpointed), the loss then is not.
    let out = tempdir();
    let cfg = Config {
        optimizer: Optimizer::Sgd(Sgd::new(1e30)),
        verify: true,
        checkpoint_every: Some(1),
        ..config(3, None)
    };
    let mut bad = trainer(&Device::Cpu, &out, cfg, None);
    let e = bad.run(&AtomicBool::new(false), &mut Quiet).unwrap_err().to_string();
    let good = checkpoint::latest(&out).expect("the first step's checkpoint");
    assert!(e.contains("at step 2"), "{e}");
    assert!(e.contains(&format!("the last good checkpoint is {}", good.display())), "{e}");
    assert!(e.contains("first non-finite value appeared in model1."), "{e}");
    assert_eq!(checkpoint::meta_of(&good).unwrap().step, 1);
    // Without --checkpoint-every no checkpoint of the run exists, and the error says so.
    let out = tempdir();
    let cfg = Config { optimizer: Optimizer::Sgd(Sgd::new(1e30)), ..config(3, None) };
    let e = trainer(&Device::Cpu, &out, cfg, None).run(&AtomicBool::new(false), &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("no checkpoint of this run was written"), "{e}");
    assert!(checkpoint::latest(&out).is_none());
}

#[test]
fn checkpoints_hold_pytorchs_state_dict_and_the_optimizer_apart() {
    let out = tempdir();
    let mut t = trainer(&Device::Cpu, &out, config(1, Some(2)), None);
    t.run(&AtomicBool::new(false), &mut Quiet).unwrap();
    let ck = checkpoint::latest(&out).unwrap();
    let model = wgrad::io::safetensors::File::read(&ck).unwrap();
    let pytorch = wgrad::io::safetensors::File::read(&data_path("tudui_init.safetensors")).unwrap();
    let shapes = |f: &wgrad::io::safetensors::File| {
        f.tensors.iter().map(|(k, v)| (k.clone(), v.shape().to_vec(), v.dtype())).collect::<Vec<_>>()
    };
    assert_eq!(shapes(&model), shapes(&pytorch), "the model file must be exactly a Tudui state dict");
    let loaded = checkpoint::load(&ck, &models::tudui(0).params).unwrap();
    assert_eq!(loaded.meta.step, 2);
    assert_eq!(loaded.meta.optimizer_steps, 2);
    assert!(loaded.optimizer.buffers[0].1.data.iter().any(|&m| m != 0.0));
    // A plain state dict loads as weights but cannot be resumed.
    let e = checkpoint::load(&data_path("tudui_init.safetensors"), &models::tudui(0).params).err().unwrap().to_string();
    assert!(e.contains("not a wgrad checkpoint"), "{e}");
}

fn same_seed_same_bits(device: Device) {
    let run = || {
        let out = tempdir();
        let mut t = trainer(&device, &out, config(1, Some(6)), None);
        t.run(&AtomicBool::new(false), &mut Quiet).unwrap();
        t.params().unwrap()
    };
    let (a, b) = (run(), run());
    assert!(
        a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{}: same seed, different parameters",
        device.name()
    );
}

#[test]
fn the_same_seed_gives_bit_identical_parameters_on_the_cpu_path() {
    same_seed_same_bits(Device::Cpu);
}

#[test]
fn the_same_seed_gives_bit_identical_parameters_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    same_seed_same_bits(Device::Gpu(gpu));
}

/// On the GPU steps are queued and their losses read a few steps late: the error still names the
/// first step whose loss was not finite (the CPU path reads each at once), steps.csv holds exactly
/// the steps before it, and no checkpoint is written.
#[test]
fn queued_gpu_steps_stop_at_the_first_non_finite_loss() {
    let Some(gpu) = gpu() else { return };
    let stop_step = |device: Device| {
        let out = tempdir();
        let cfg = Config { optimizer: Optimizer::Sgd(Sgd::new(1e30)), ..config(3, None) };
        let mut t = trainer(&device, &out, cfg, None);
        let e = t.run(&AtomicBool::new(false), &mut Quiet).unwrap_err().to_string();
        assert!(e.contains("run with --verify"), "{e}");
        let step: u64 = e.split("at step ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
        let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
        assert_eq!(
            csv.lines().count() as u64,
            step,
            "{}: steps.csv should end before step {step}:\n{csv}",
            device.name()
        );
        assert!(checkpoint::latest(&out).is_none(), "{}: a checkpoint was written", device.name());
        step
    };
    let on_gpu = stop_step(Device::Gpu(gpu));
    assert_eq!(on_gpu, stop_step(Device::Cpu));
    assert!(on_gpu < 12, "the loss stayed finite for {on_gpu} steps");
}
