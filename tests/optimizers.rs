//! SGD (momentum, dampening, nesterov, weight decay), Adam and AdamW against torch.optim over three
//! steps on one tensor, on the CPU path and the GPU; the schedule's rates reach the kernels.

mod common;
use common::*;
use wgrad::ops::{adam, sgd};
use wgrad::optim::{Adam, Decay, LrSchedule, Optimizer, Schedule, ScheduleSettings, Sgd};
use wgrad::testing::assert_close;

fn optimizer(c: &Case) -> Optimizer {
    let f = |k: &str, d: f64| c.meta.get(k).and_then(|v| v.as_f64()).unwrap_or(d) as f32;
    match c.str("op").unwrap().as_str() {
        "sgd" => Optimizer::Sgd(Sgd {
            lr: f("lr", 0.0),
            momentum: f("momentum", 0.0),
            dampening: f("dampening", 0.0),
            weight_decay: f("weight_decay", 0.0),
            nesterov: c.meta.get("nesterov").and_then(|v| v.as_bool()).unwrap_or(false),
        }),
        kind => {
            let betas = c
                .meta
                .get("betas")
                .map_or((0.9, 0.999), |b| (b[0].as_f64().unwrap() as f32, b[1].as_f64().unwrap() as f32));
            let adamw = kind == "adamw";
            let a = Adam {
                lr: f("lr", 1e-3),
                betas,
                eps: f("eps", 1e-8),
                weight_decay: f("weight_decay", if adamw { 1e-2 } else { 0.0 }),
            };
            if adamw {
                Optimizer::AdamW(a)
            } else {
                Optimizer::Adam(a)
            }
        }
    }
}

/// Three steps of `opt` on the CPU path: the parameter after each.
fn run_cpu(opt: Optimizer, p0: &[f32], grads: &[Vec<f32>], schedule: &LrSchedule) -> Vec<Vec<f32>> {
    let n = p0.len();
    let (mut p, mut s1, mut s2) = (p0.to_vec(), vec![0f32; n], vec![0f32; n]);
    let mut out = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        let w = opt.step_words(schedule, t as u64);
        match opt {
            Optimizer::Sgd(c) => sgd::step_cpu(&c, &w, &mut p, g, &mut s1),
            Optimizer::Adam(c) => adam::step_cpu(&c, Decay::L2, &w, &mut p, g, &mut s1, &mut s2),
            Optimizer::AdamW(c) => adam::step_cpu(&c, Decay::Decoupled, &w, &mut p, g, &mut s1, &mut s2),
        }
        out.push(p.clone());
    }
    out
}

/// The same on the GPU: the step's words written before each dispatch, as the executor does.
fn run_gpu(gpu: &wgrad::Gpu, opt: Optimizer, p0: &[f32], grads: &[Vec<f32>], schedule: &LrSchedule) -> Vec<Vec<f32>> {
    let n = p0.len() as u64;
    let (p, g, s1, s2) = (
        gpu.upload("p", p0).unwrap(),
        gpu.zeros("g", n).unwrap(),
        gpu.zeros("s1", n).unwrap(),
        gpu.zeros("s2", n).unwrap(),
    );
    let step = gpu.zeros("step", 8).unwrap();
    let k = match opt {
        Optimizer::Sgd(c) => sgd::step_gpu(gpu, &c, &step, &p, &g, &s1).unwrap(),
        Optimizer::Adam(c) => adam::step_gpu(gpu, &c, Decay::L2, &step, &p, &g, &s1, &s2).unwrap(),
        Optimizer::AdamW(c) => adam::step_gpu(gpu, &c, Decay::Decoupled, &step, &p, &g, &s1, &s2).unwrap(),
    };
    let prog: wgrad::kernel::Program = k.into();
    let mut out = Vec::new();
    for (t, gr) in grads.iter().enumerate() {
        gpu.write(&g, gr).unwrap();
        gpu.write(&step, bytemuck::bytes_of(&opt.step_words(schedule, t as u64))).unwrap();
        prog.run(gpu, "optimizer").unwrap();
        out.push(gpu.read(&p).unwrap());
    }
    out
}

#[test]
fn cpu_and_gpu_match_torch_optim() {
    let gpu = gpu();
    for c in goldens("optimizers.safetensors", &["sgd", "adam", "adamw"]) {
        let opt = optimizer(&c);
        let p0 = c.f32("param0").1;
        let grads: Vec<Vec<f32>> = (1..=3).map(|i| c.f32(&format!("grad{i}")).1).collect();
        let constant = LrSchedule::default();
        let mut runs = vec![("cpu", run_cpu(opt, &p0, &grads, &constant))];
        if let Some(g) = &gpu {
            runs.push(("gpu", run_gpu(g, opt, &p0, &grads, &constant)));
        }
        for (dev, got) in runs {
            for (i, p) in got.iter().enumerate() {
                let want = c.f32(&format!("param{}", i + 1)).1;
                assert_close(&format!("{} {dev} step {}", c.name, i + 1), p, &want, 1e-6, 1e-7);
            }
        }
    }
}

#[test]
fn the_schedules_rate_reaches_both_paths() {
    // SGD without momentum moves by exactly lr_t · g: the rate of each step can be read back.
    let opt = Optimizer::Sgd(Sgd::new(0.5));
    let schedule = LrSchedule { schedule: Schedule::Step { step_size: 1, gamma: 0.5 }, warmup_steps: 1 };
    let p0 = vec![0f32; 300];
    let grads = vec![vec![1f32; 300]; 3];
    let want = [-0.5f32, -1.0, -1.25]; // warmup 0.5·1/1, then 0.5, then 0.25
    let mut runs = vec![run_cpu(opt, &p0, &grads, &schedule)];
    if let Some(g) = gpu() {
        runs.push(run_gpu(&g, opt, &p0, &grads, &schedule));
    }
    for got in runs {
        for (p, w) in got.iter().zip(want) {
            assert!(p.iter().all(|&v| v == w), "{} vs {w}", p[0]);
        }
    }
}

#[test]
fn bad_settings_are_pytorchs_errors() {
    let e = Optimizer::Adam(Adam::new(1e-3).betas(1.0, 0.999)).check().unwrap_err().to_string();
    assert!(e.contains("Invalid beta parameter at index 0"), "{e}");
    let e = Optimizer::Sgd(Sgd::new(0.1).nesterov(true)).check().unwrap_err().to_string();
    assert!(e.contains("nesterov"), "{e}");
    let e = Optimizer::Sgd(Sgd::new(-1.0)).check().unwrap_err().to_string();
    assert!(e.contains("lr must be"), "{e}");
}

/// torch.optim.lr_scheduler's rates (CosineAnnealingLR, StepLR, MultiStepLR, ExponentialLR, after
/// a LinearLR warmup in a SequentialLR for two of them) over 50 steps.
#[test]
fn schedules_match_torch_lr_schedulers() {
    for c in goldens("schedules.safetensors", &["lr_scheduler"]) {
        let f = |k: &str| c.meta[k].as_f64().unwrap() as f32;
        let schedule = match c.str("kind").unwrap().as_str() {
            "cosine" => Schedule::Cosine { t_max: 45, eta_min: f("eta_min") },
            "step" => Schedule::Step { step_size: 7, gamma: c.meta["gamma"].as_f64().unwrap() },
            "multistep" => Schedule::MultiStep {
                milestones: c.usizes("milestones").iter().map(|&m| m as u64).collect(),
                gamma: c.meta["gamma"].as_f64().unwrap(),
            },
            "exponential" => Schedule::Exponential { gamma: c.meta["gamma"].as_f64().unwrap() },
            k => panic!("unknown schedule {k}"),
        };
        let s = LrSchedule { schedule, warmup_steps: c.meta["warmup_steps"].as_u64().unwrap() };
        let got: Vec<f64> = (0..50).map(|t| s.lr(f("base_lr") as f64, t)).collect();
        assert_close(&format!("{}: {}", c.name, s.describe()), &got, &c.f32("lr").1, 1e-6, 1e-9);
    }
}

/// The schedule as `wgrad train`'s flags and the browser page's fields (JSON, the same names) give
/// it: one builder for both, with the defaults and refusals of the command line.
#[test]
fn schedule_settings_build_what_the_flags_say() {
    let build = |json: &str, steps: u64| {
        let s: ScheduleSettings = serde_json::from_str(json).unwrap();
        s.build(None, steps).map_err(|e| e.to_string())
    };
    let multistep = build(r#"{"lr_schedule": "multistep", "lr_milestones": [6, 3], "lr_gamma": 0.5}"#, 10).unwrap();
    let want = Schedule::MultiStep { milestones: vec![3, 6], gamma: 0.5 };
    assert_eq!(multistep, LrSchedule { schedule: want, warmup_steps: 0 });
    let cosine = build(r#"{"lr_schedule": "cosine", "warmup_steps": 5, "lr_min": 0.001}"#, 20).unwrap();
    assert_eq!(cosine.schedule, Schedule::Cosine { t_max: 15, eta_min: 0.001 });
    assert_eq!(cosine.warmup_steps, 5);
    assert_eq!(
        build(r#"{"lr_schedule": "step", "lr_step_size": 4}"#, 9).unwrap().schedule,
        Schedule::Step { step_size: 4, gamma: 0.1 }
    );
    assert_eq!(build("{}", 9).unwrap(), LrSchedule::default());
    for (json, err) in [
        (r#"{"lr_schedule": "step", "lr_step_size": 0}"#, "needs --lr-step-size N (steps between decays, at least 1)"),
        (r#"{"lr_schedule": "exponential"}"#, "exponential needs --lr-gamma"),
        (r#"{"lr_schedule": "constant", "lr_gamma": 0.5}"#, "--lr-gamma applies to"),
        (r#"{"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": -1}"#, "finite number > 0, got -1"),
    ] {
        let e = build(json, 10).unwrap_err();
        assert!(e.contains(err), "{json}: {e}");
    }
}
