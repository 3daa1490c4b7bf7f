//! Optimizers and learning-rate schedules, as torch.optim has them: [`Sgd`], [`Adam`] and AdamW
//! ([`Optimizer`]), each with its WGSL kernel and CPU code in `src/ops/`; [`LrSchedule`] gives each
//! step's learning rate (per optimizer step: CosineAnnealingLR's and StepLR's closed forms, after an
//! optional linear warmup). The executors write each step's [`StepWords`] before the step.

use crate::nn::ParamSet;
pub use crate::ops::adam::{Adam, Decay};
pub use crate::ops::interface::StepWords;
pub use crate::ops::sgd::Sgd;
use crate::Result;
use serde::{Deserialize, Serialize};

/// torch.optim.SGD, Adam or AdamW.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
    AdamW(Adam),
}

impl Optimizer {
    /// The base learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(a) | Optimizer::AdamW(a) => a.lr,
        }
    }
    pub fn check(&self) -> Result<()> {
        match self {
            Optimizer::Sgd(s) => s.check(),
            Optimizer::Adam(a) | Optimizer::AdamW(a) => a.check(),
        }
    }
    /// PyTorch's repr, e.g. `AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)`.
    pub fn describe(&self) -> String {
        use crate::ops::py_float as f;
        match self {
            Optimizer::Sgd(s) => format!(
                "SGD(lr={}, momentum={}, dampening={}, weight_decay={}, nesterov={})",
                f(s.lr),
                f(s.momentum),
                f(s.dampening),
                f(s.weight_decay),
                crate::ops::py_bool(s.nesterov)
            ),
            Optimizer::Adam(a) | Optimizer::AdamW(a) => format!(
                "{}(lr={}, betas=({}, {}), eps={}, weight_decay={})",
                if matches!(self, Optimizer::Adam(_)) { "Adam" } else { "AdamW" },
                f(a.lr),
                f(a.betas.0),
                f(a.betas.1),
                f(a.eps),
                f(a.weight_decay)
            ),
        }
    }
    /// The per-parameter state buffers, by the names PyTorch's optimizer state uses
    /// (`momentum_buffer` is written `momentum`).
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd(_) => &["momentum"],
            Optimizer::Adam(_) | Optimizer::AdamW(_) => &["exp_avg", "exp_avg_sq"],
        }
    }
    /// The words of step `t` (0-based: the optimizer has taken `t` steps) under `schedule`.
    pub fn step_words(&self, schedule: &LrSchedule, t: u64) -> StepWords {
        let lr = schedule.lr(self.lr() as f64, t);
        let mut w = StepWords { step_lo: t as u32, step_hi: (t >> 32) as u32, lr: lr as f32, ..StepWords::default() };
        if let Optimizer::Adam(a) | Optimizer::AdamW(a) = self {
            let k = (t + 1) as f64;
            let bc1 = 1.0 - (a.betas.0 as f64).powf(k);
            let bc2 = 1.0 - (a.betas.1 as f64).powf(k);
            w.step_size = (lr / bc1) as f32;
            w.bias_correction2_sqrt = bc2.sqrt() as f32;
            w.decay = (1.0 - lr * a.weight_decay as f64) as f32;
        }
        w
    }
}

/// The optimizer's state: steps taken and each state buffer (same layout as the gradients).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub steps: u64,
    /// (name, buffer) in [`Optimizer::state_names`] order.
    pub buffers: Vec<(String, ParamSet)>,
}

/// How the learning rate changes, per optimizer step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Constant,
    /// CosineAnnealingLR(T_max, eta_min): eta_min + (lr - eta_min)(1 + cos(π·t/T_max))/2, held at
    /// eta_min past T_max (where PyTorch's would rise again: `train` sets T_max to the run's end).
    Cosine { t_max: u64, eta_min: f32 },
    /// StepLR(step_size, gamma): lr · gamma^⌊t/step_size⌋.
    Step { step_size: u64, gamma: f64 },
    /// MultiStepLR(milestones, gamma): lr · gamma^(the milestones ≤ t), milestones in steps,
    /// sorted (one given twice decays twice, as PyTorch counts it).
    MultiStep { milestones: Vec<u64>, gamma: f64 },
    /// ExponentialLR(gamma): lr · gamma^t.
    Exponential { gamma: f64 },
}

/// A schedule after `warmup_steps` of linear warmup (lr·(t+1)/warmup_steps); the schedule's own
/// step count starts after the warmup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub schedule: Schedule,
    pub warmup_steps: u64,
}

/// `--lr-schedule`'s choices (and the browser page's `lr_schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    Cosine,
    Step,
    Multistep,
    Exponential,
}

/// A learning-rate schedule as `wgrad train`'s flags give it (`--lr-schedule`, `--warmup-steps`,
/// `--lr-min`, `--lr-step-size`, `--lr-milestones`, `--lr-gamma`), and the browser page's fields
/// of the same names; errors name the flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSettings {
    pub lr_schedule: Option<ScheduleKind>,
    pub warmup_steps: Option<u64>,
    pub lr_min: Option<f32>,
    pub lr_step_size: Option<u64>,
    pub lr_milestones: Option<Vec<u64>>,
    pub lr_gamma: Option<f64>,
}

impl ScheduleSettings {
    /// The schedule these settings give for a run of `total_steps` (a cosine's length), unset
    /// values taken from `saved` (a resumed run's), else PyTorch's defaults (gamma 0.1; StepLR,
    /// MultiStepLR and ExponentialLR need their step size, milestones and gamma given).
    pub fn build(&self, saved: Option<LrSchedule>, total_steps: u64) -> Result<LrSchedule> {
        let base = saved.unwrap_or_default();
        let warmup_steps = self.warmup_steps.unwrap_or(base.warmup_steps);
        let kind = self.lr_schedule.unwrap_or(match base.schedule {
            Schedule::Constant => ScheduleKind::Constant,
            Schedule::Cosine { .. } => ScheduleKind::Cosine,
            Schedule::Step { .. } => ScheduleKind::Step,
            Schedule::MultiStep { .. } => ScheduleKind::Multistep,
            Schedule::Exponential { .. } => ScheduleKind::Exponential,
        });
        let schedule = match (kind, base.schedule) {
            (ScheduleKind::Constant, _) => Schedule::Constant,
            (ScheduleKind::Cosine, Schedule::Cosine { t_max, eta_min }) if self.lr_schedule.is_none() => {
                Schedule::Cosine { t_max, eta_min: self.lr_min.unwrap_or(eta_min) }
            }
            (ScheduleKind::Cosine, _) => Schedule::Cosine {
                t_max: total_steps.saturating_sub(warmup_steps).max(1),
                eta_min: self.lr_min.unwrap_or(0.0),
            },
            (ScheduleKind::Step, saved) => {
                let (s0, g0) = match saved {
                    Schedule::Step { step_size, gamma } => (Some(step_size), gamma),
                    _ => (None, 0.1),
                };
                let Some(step_size) = self.lr_step_size.or(s0).filter(|&n| n > 0) else {
                    return Err(bad("--lr-schedule step needs --lr-step-size N (steps between decays, at least 1)"));
                };
                Schedule::Step { step_size, gamma: self.lr_gamma.unwrap_or(g0) }
            }
            (ScheduleKind::Multistep, saved) => {
                let (m0, g0) = match saved {
                    Schedule::MultiStep { milestones, gamma } => (Some(milestones), gamma),
                    _ => (None, 0.1),
                };
                let Some(mut milestones) = self.lr_milestones.clone().or(m0) else {
                    return Err(bad(
                        "--lr-schedule multistep needs --lr-milestones M1,M2,… (the steps at which it decays)",
                    ));
                };
                milestones.sort_unstable();
                Schedule::MultiStep { milestones, gamma: self.lr_gamma.unwrap_or(g0) }
            }
            (ScheduleKind::Exponential, saved) => {
                let g0 = match saved {
                    Schedule::Exponential { gamma } => Some(gamma),
                    _ => None,
                };
                let Some(gamma) = self.lr_gamma.or(g0) else {
                    return Err(bad("--lr-schedule exponential needs --lr-gamma G (the factor of each step)"));
                };
                Schedule::Exponential { gamma }
            }
        };
        if !matches!(schedule, Schedule::Step { .. }) && self.lr_step_size.is_some() {
            return Err(bad("--lr-step-size applies to --lr-schedule step"));
        }
        if !matches!(schedule, Schedule::MultiStep { .. }) && self.lr_milestones.is_some() {
            return Err(bad("--lr-milestones applies to --lr-schedule multistep"));
        }
        let decays =
            matches!(schedule, Schedule::Step { .. } | Schedule::MultiStep { .. } | Schedule::Exponential { .. });
        if !decays && self.lr_gamma.is_some() {
            return Err(bad("--lr-gamma applies to --lr-schedule step, multistep and exponential"));
        }
        if let Schedule::Step { gamma, .. } | Schedule::MultiStep { gamma, .. } | Schedule::Exponential { gamma } =
            &schedule
        {
            if !(gamma.is_finite() && *gamma > 0.0) {
                return Err(bad(format!("--lr-gamma must be a finite number > 0, got {gamma}")));
            }
        }
        if !matches!(schedule, Schedule::Cosine { .. }) && self.lr_min.is_some() {
            return Err(bad("--lr-min applies to --lr-schedule cosine"));
        }
        Ok(LrSchedule { schedule, warmup_steps })
    }
}

fn bad(msg: impl Into<String>) -> crate::Error {
    crate::Error::Graph(msg.into())
}

impl LrSchedule {
    /// The learning rate of step `t` (0-based) for base rate `base`.
    pub fn lr(&self, base: f64, t: u64) -> f64 {
        if t < self.warmup_steps {
            return base * (t + 1) as f64 / self.warmup_steps as f64;
        }
        let u = t - self.warmup_steps;
        match &self.schedule {
            Schedule::Constant => base,
            &Schedule::Cosine { t_max, eta_min } => {
                let eta_min = eta_min as f64;
                let frac = u.min(t_max) as f64 / t_max.max(1) as f64;
                eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
            }
            &Schedule::Step { step_size, gamma } => base * gamma.powf((u / step_size.max(1)) as f64),
            Schedule::MultiStep { milestones, gamma } => {
                base * gamma.powf(milestones.iter().filter(|&&m| m <= u).count() as f64)
            }
            &Schedule::Exponential { gamma } => base * gamma.powf(u as f64),
        }
    }
    pub fn describe(&self) -> String {
        let s = match &self.schedule {
            Schedule::Constant => "constant".to_string(),
            Schedule::Cosine { t_max, eta_min } => format!("cosine (T_max {t_max} steps, eta_min {eta_min})"),
            Schedule::Step { step_size, gamma } => format!("step (every {step_size} steps × {gamma})"),
            Schedule::MultiStep { milestones, gamma } => format!(
                "multistep (× {gamma} at steps {})",
                milestones.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Schedule::Exponential { gamma } => format!("exponential (× {gamma} a step)"),
        };
        if self.warmup_steps > 0 {
            format!("{s} after {} warmup steps", self.warmup_steps)
        } else {
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_pytorchs_closed_forms() {
        let cos = LrSchedule { schedule: Schedule::Cosine { t_max: 10, eta_min: 0.0 }, warmup_steps: 0 };
        assert_eq!(cos.lr(0.1, 0), 0.1);
        assert!((cos.lr(0.1, 5) - 0.05).abs() < 1e-12);
        assert!(cos.lr(0.1, 10).abs() < 1e-12 && cos.lr(0.1, 20).abs() < 1e-12);
        let step = LrSchedule { schedule: Schedule::Step { step_size: 3, gamma: 0.5 }, warmup_steps: 2 };
        assert_eq!([0, 1, 2, 4, 5, 8].map(|t| step.lr(1.0, t)), [0.5, 1.0, 1.0, 1.0, 0.5, 0.25]);
        let multi =
            LrSchedule { schedule: Schedule::MultiStep { milestones: vec![2, 5, 5], gamma: 0.5 }, warmup_steps: 1 };
        assert_eq!([0, 1, 2, 3, 5, 6, 9].map(|t| multi.lr(1.0, t)), [1.0, 1.0, 1.0, 0.5, 0.5, 0.125, 0.125]);
        let exp = LrSchedule { schedule: Schedule::Exponential { gamma: 0.5 }, warmup_steps: 0 };
        assert_eq!([0, 1, 3].map(|t| exp.lr(1.0, t)), [1.0, 0.5, 0.125]);
    }

    #[test]
    fn adam_step_words_are_pytorchs_scalars() {
        let a = Optimizer::AdamW(Adam::adamw(0.001));
        let w = a.step_words(&LrSchedule::default(), 0);
        let b1 = 0.9f32 as f64;
        assert_eq!(w.step_size, (0.001f32 as f64 / (1.0 - b1)) as f32);
        assert_eq!(w.decay, (1.0 - 0.001f32 as f64 * 0.01f32 as f64) as f32);
        assert_eq!(a.step_words(&LrSchedule::default(), 1 << 40).step(), 1 << 40);
    }
}
