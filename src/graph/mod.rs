//! The graph and its executors. A module's `forward` builds a [`Graph`] ([`builder`]); a [`Plan`]
//! fixes it at a batch size and mode (every shape, errors naming the node); a [`memory::Schedule`]
//! orders the step (forward, CrossEntropyLoss (mean), backward in reverse with gradient
//! contributions summed where a value feeds several nodes) and places every tensor; the executors
//! ([`cpu::CpuExecutor`], [`gpu::GpuExecutor`]) run it through the op interface
//! ([`crate::ops::interface`]) alone, then the optimizer step.

pub mod builder;
pub mod cpu;
pub mod gpu;
pub mod memory;
pub mod plan;
pub mod verify;

pub use builder::{Builder, Graph, GraphNode, Value};
pub use plan::{Plan, PlannedNode};
pub use verify::{compare, Comparison, Row, VERIFY_GRAD_TOL, VERIFY_TOL};

use crate::nn::{Model, ParamSet};
use crate::ops::cross_entropy;
use crate::ops::interface::Mode;
use crate::ops::to_tensor::ToTensor;
use crate::optim::{LrSchedule, Optimizer, OptimizerState};
use crate::{Error, Result};

/// How an executor steps.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The optimizer; None: forward, loss and backward only.
    pub optimizer: Option<Optimizer>,
    /// The learning rate of each step (constant by default).
    pub schedule: LrSchedule,
    /// Keep every activation and gradient alive to the end of the step (for --verify) instead of
    /// reusing buffers whose lifetimes do not overlap.
    pub keep_all: bool,
    /// Train (the default): `step` runs forward in train mode, the loss, the backward and the
    /// optimizer. Eval: an inference executor (`model.eval()` under `torch.no_grad()`): `forward`
    /// only, and no memory for gradients.
    pub mode: Mode,
    /// Seed of the random stream (Dropout's masks).
    pub seed: u64,
    /// The loss's `label_smoothing` (CrossEntropyLoss(label_smoothing=…)), in [0, 1].
    pub label_smoothing: f32,
    /// The loss's class weights (CrossEntropyLoss(weight=…)): one finite value per class score
    /// the model gives; None (the default): every class weighs 1.
    pub loss_weight: Option<Vec<f32>>,
    /// `max_norm` of `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)`, run between
    /// the backward and the optimizer at every step ([`crate::ops::clip_grad_norm`]): the
    /// gradients are scaled together so that their total 2-norm is at most `max_norm`. None (the
    /// default): no clipping.
    pub clip_grad_norm: Option<f32>,
}

impl Options {
    /// An inference executor: eval mode, forward only.
    pub fn inference() -> Self {
        Options { mode: Mode::Eval, ..Options::default() }
    }
}

/// The loss every executor computes: CrossEntropyLoss with PyTorch's defaults but the class
/// weights and label smoothing `opts` asks for.
pub fn loss_options(opts: &Options) -> cross_entropy::Options {
    cross_entropy::Options {
        weight: opts.loss_weight.clone(),
        label_smoothing: opts.label_smoothing,
        ..Default::default()
    }
}

/// Checks `Options::loss_weight` against the `classes` scores a model gives.
pub(crate) fn check_loss_weight(opts: &Options, classes: usize) -> Result<()> {
    let Some(w) = &opts.loss_weight else { return Ok(()) };
    if w.len() != classes {
        return Err(Error::op(
            cross_entropy::OP,
            format!("weight has {} entries but the model gives {classes} class scores", w.len()),
        ));
    }
    match w.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::op(cross_entropy::OP, format!("weight[{i}] is {}: class weights must be finite", w[i]))),
        None => Ok(()),
    }
}

/// What a queued training step gives back once the device has run it
/// ([`Executor::step_queued`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutput {
    /// The step's loss.
    pub loss: f32,
    /// With `Options::clip_grad_norm`: the gradients' total 2-norm before clipping (what
    /// `clip_grad_norm_` returns); None without it.
    pub grad_norm: Option<f32>,
}

/// What both executors offer; the GPU one keeps everything on the device until asked.
pub trait Executor {
    fn plan(&self) -> &Plan;
    /// Forward, loss, backward and (if configured) the SGD step; the loss only when `want_loss`.
    fn step(&mut self, images: &[f32], targets: &[i64], want_loss: bool) -> Result<Option<f32>>;
    /// A training step whose loss (and gradient norm) is read later, so the host prepares the
    /// next batch while the device runs this one: appends to `out` what the earlier queued steps
    /// that have finished since the last call gave, oldest first (at most a few steps behind;
    /// the CPU path gives this step's).
    fn step_queued(&mut self, images: &[f32], targets: &[i64], out: &mut Vec<StepOutput>) -> Result<()> {
        if let Some(loss) = self.step(images, targets, true)? {
            out.push(StepOutput { loss, grad_norm: self.grad_norm()? });
        }
        Ok(())
    }
    /// [`Executor::step_queued`] on the batch already on the device (see
    /// [`Executor::upload_pixels`]).
    fn step_queued_resident(&mut self, out: &mut Vec<StepOutput>) -> Result<()> {
        if let Some(loss) = self.step_resident(true)? {
            out.push(StepOutput { loss, grad_norm: self.grad_norm()? });
        }
        Ok(())
    }
    /// Puts a batch on the device as the bytes its images were made from (N, C, H, W), with its
    /// targets for a training step: the device makes the model's input from them with
    /// `to_tensor` (ToTensor and Normalize, bit for bit as the data loader makes `images`), so a
    /// quarter of the f32 batch's bytes cross to it. `step_resident`, `step_queued_resident` and
    /// `forward_resident` then run on it. Checked as `step` checks a batch.
    fn upload_pixels(&mut self, pixels: &[u8], to_tensor: &ToTensor, targets: Option<&[i64]>) -> Result<()>;
    /// Waits for every queued step and appends what those not given yet gave to `out`, oldest
    /// first.
    fn finish_queued(&mut self, _out: &mut Vec<StepOutput>) -> Result<()> {
        Ok(())
    }
    /// [`Executor::step`] on the batch already on the device (the last one given to the
    /// executor), not copied there again: how PyTorch's and Burn's benchmarks time a step, their
    /// batch moved to the device once (`wgrad bench` reports both). An error unless that batch
    /// came with targets (`forward` uploads images only) and passed its checks.
    fn step_resident(&mut self, want_loss: bool) -> Result<Option<f32>>;
    /// Forward only; returns the logits (N, classes).
    fn forward(&mut self, images: &[f32]) -> Result<Vec<f32>>;
    /// [`Executor::forward`] on the images already on the device (the last ones given to the
    /// executor). An error unless they passed their checks.
    fn forward_resident(&mut self) -> Result<Vec<f32>>;
    /// Logits of the last step or forward.
    fn logits(&self) -> Result<Vec<f32>>;
    fn params(&self) -> Result<ParamSet>;
    fn set_params(&mut self, p: &ParamSet) -> Result<()>;
    /// Flat parameter gradients of the last step (same layout as the parameters), after clipping
    /// where `Options::clip_grad_norm` asks for it.
    fn grads(&self) -> Result<ParamSet>;
    /// With `Options::clip_grad_norm`: the gradients' total 2-norm before clipping at the last
    /// step (what `clip_grad_norm_` returns; 0 before the first step); None without it. Reading it
    /// waits for the device.
    fn grad_norm(&self) -> Result<Option<f32>>;
    /// The optimizer's buffers and the number of training steps taken (Dropout's stream and the
    /// optimizer's step count both follow it).
    fn optimizer_state(&self) -> Result<OptimizerState>;
    /// Restores what [`Executor::optimizer_state`] gave (buffers absent from `state` are zeroed).
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;
    /// Every activation and activation gradient of the last step, by name, in execution order
    /// (complete only with `Options::keep_all`).
    fn tensors(&self) -> Result<Vec<(String, Vec<f32>)>>;
    fn describe(&self) -> String;
    /// Waits until the device has finished all submitted work.
    fn sync(&self) -> Result<()>;
    /// One training step timed kernel by kernel (GPU timestamp queries where the adapter has them,
    /// else wall-clock time per kernel or per CPU op).
    fn profile(&mut self, images: &[f32], targets: &[i64]) -> Result<Vec<KernelTime>>;
    /// Bytes of device memory (or host memory for the CPU path's buffers) the executor holds.
    fn memory_bytes(&self) -> u64;
}

/// Time of one kernel (or CPU op) in a profiled step, with the work it did.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub name: String,
    pub seconds: f64,
    pub flops: u64,
    pub bytes: u64,
}

/// What [`Executor::tensors`] returns, in execution order: each node's output (`"<node> out"`), the
/// loss's log-probabilities, then each node's output gradient (`"<node> grad out"`, last node first)
/// where it has one. (name, tensor id) pairs of a schedule; the loss's logp is the first loss
/// scratch tensor on both devices.
pub fn tensor_names(plan: &Plan, sched: &memory::Schedule) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> =
        plan.nodes.iter().enumerate().map(|(i, n)| (format!("{} out", n.name), sched.value[i + 1])).collect();
    if let Some(&logp) = sched.loss_scratch.first() {
        v.push(("loss logp".into(), logp));
    }
    for (i, n) in plan.nodes.iter().enumerate().rev() {
        if let Some(t) = sched.grad[i + 1] {
            v.push((format!("{} grad out", n.name), t));
        }
    }
    v
}

/// The random stream key of node `i` in a run seeded with `seed` (see
/// [`crate::ops::interface::RandomKey`]).
pub fn random_key(seed: u64, i: usize) -> [u32; 2] {
    [(seed as u32) ^ (i as u32).wrapping_mul(0x9e37_79b9), (seed >> 32) as u32]
}

/// The optimizer state buffers named in `state` copied into `layout`-shaped buffers, in the
/// optimizer's order (zeros where `state` lacks one); an error for an unknown name.
pub(crate) fn state_buffers(
    opt: Option<&Optimizer>,
    layout: &ParamSet,
    state: &OptimizerState,
) -> Result<Vec<ParamSet>> {
    let names = opt.map_or(&[][..], |o| o.state_names());
    if let Some((n, _)) = state.buffers.iter().find(|(n, _)| !names.contains(&n.as_str())) {
        return Err(Error::Graph(format!(
            "optimizer state {n:?} does not belong to this optimizer (it keeps {names:?})"
        )));
    }
    names
        .iter()
        .map(|n| match state.buffers.iter().find(|(m, _)| m == n) {
            Some((_, b)) => layout.like(b.data.clone()),
            None => Ok(layout.clone()),
        })
        .collect()
}

/// What of a batch an executor holds on its device: the images stay there until the next batch
/// replaces them (the memory plan keeps the input alive to the end of every step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resident {
    Nothing,
    /// Images (uploaded by `forward`).
    Images,
    /// Images and targets (uploaded by `step`).
    Batch,
}

impl Resident {
    pub(crate) fn check_images(self) -> Result<()> {
        match self {
            Resident::Nothing => Err(Error::Graph(
                "forward_resident: no batch on the device yet (run `forward` or `step` on one first)".into(),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn check_batch(self) -> Result<()> {
        match self {
            Resident::Batch => Ok(()),
            _ => Err(Error::Graph(
                "step_resident: no batch with targets on the device (run `step` on one first; `forward` \
                 uploads images only)"
                    .into(),
            )),
        }
    }
}

/// The error of calling `step` on an inference executor.
pub(crate) fn not_training() -> Error {
    Error::Graph("this executor was built for inference (eval mode): it has no backward".into())
}

/// Builds an executor on a device.
pub fn executor(device: &crate::Device, model: &Model, batch: usize, opts: Options) -> Result<Box<dyn Executor>> {
    if let Some(o) = &opts.optimizer {
        o.check()?;
    }
    cross_entropy::check_label_smoothing(opts.label_smoothing)?;
    if let Some(max_norm) = opts.clip_grad_norm {
        crate::ops::clip_grad_norm::check(max_norm)?;
    }
    Ok(match device {
        crate::Device::Cpu => Box::new(cpu::CpuExecutor::new(model, batch, opts)?),
        crate::Device::Gpu(g) => Box::new(gpu::GpuExecutor::new(g.clone(), model, batch, opts)?),
    })
}
