//! The CPU path of the executor: the schedule run with each op's CPU code (f32), over slots
//! allocated once per executor (the same memory plan as the GPU's, without GPU scratch).

use super::memory::{Folds, Request, Schedule, Task};
use super::{
    loss_options, not_training, random_key, state_buffers, tensor_names, Executor, KernelTime, Options, Plan, Resident,
};
use crate::nn::{split_disjoint, Model, ParamSet};
use crate::ops::interface::{Bufs, CpuBackward, CpuForward, Epilogue, Mode, RandomKey};
use crate::ops::to_tensor::ToTensor;
use crate::ops::{adam, clip_grad_norm, cross_entropy, sgd};
use crate::optim::{Decay, Optimizer, OptimizerState};
use crate::Result;
use web_time::Instant;

pub struct CpuExecutor {
    plan: Plan,
    sched: Schedule,
    opts: Options,
    params: ParamSet,
    grads: ParamSet,
    /// The optimizer's state buffers ([`Optimizer::state_names`]).
    state: Vec<ParamSet>,
    /// Training steps taken (the optimizer's step count and Dropout's stream follow it).
    steps: u64,
    slots: Vec<Vec<f32>>,
    /// The targets of the batch in the input slot (a training step's).
    targets: Vec<i64>,
    /// What of a batch the slots hold (`step_resident` and `forward_resident` run on it).
    resident: Resident,
    /// Seconds of each task of the last step, then gradient clipping's and the optimizer's.
    timings: Vec<f64>,
    /// The gradients' total norm before clipping at the last step (`Options::clip_grad_norm`).
    grad_norm: f32,
    /// Name, flops and bytes of each timed task, built once.
    labels: Vec<(String, u64, u64)>,
    /// Nodes an inference executor folds into the Conv2d before them (eval-mode BatchNorm2d and
    /// ReLU): none when training or keeping every tensor.
    folds: Folds,
    /// Per node with an affine node folded into it: that node's (scale, shift), worked out from its
    /// state at each forward.
    affine: Vec<(Vec<f32>, Vec<f32>)>,
}

impl CpuExecutor {
    pub fn new(model: &Model, batch: usize, opts: Options) -> Result<Self> {
        let plan = Plan::new(model, batch, opts.mode)?;
        super::check_loss_weight(&opts, plan.classes)?;
        let train = opts.mode == Mode::Train;
        let scratch = |i: usize| {
            let n = &plan.nodes[i];
            let dinputs: Vec<bool> = n.inputs.iter().map(|&v| train && plan.needs_grad[v]).collect();
            n.node.cpu_scratch(&dinputs)
        };
        let folds = if train || opts.keep_all { Folds::none(&plan) } else { Folds::of(&plan) };
        let sched = Schedule::new(
            &plan,
            &Request {
                backward: train,
                keep_all: opts.keep_all,
                scratch: &scratch,
                reads: &|i| plan.nodes[i].node.backward_reads(),
                loss_scratch: vec![(batch * plan.classes) as u64],
                folds: Some(&folds),
            },
        );
        let affine = folds
            .affine
            .iter()
            .map(|a| {
                let c = a.map_or(0, |j| plan.shapes[j + 1][1]);
                (vec![0.0; c], vec![0.0; c])
            })
            .collect();
        let slots = allocate(&sched.slot_words, batch, plan.input.iter().product::<usize>() as u64)?;
        let grads = model.params.trainable_layout();
        let n_state = opts.optimizer.map_or(0, |o| o.state_names().len());
        Ok(CpuExecutor {
            labels: labels(&plan, &sched, grads.data.len(), &opts),
            state: vec![grads.clone(); if opts.mode == Mode::Train { n_state } else { 0 }],
            opts,
            params: model.params.clone(),
            grads,
            steps: 0,
            slots,
            targets: Vec::with_capacity(batch),
            resident: Resident::Nothing,
            timings: Vec::new(),
            grad_norm: 0.0,
            plan,
            sched,
            folds,
            affine,
        })
    }

    fn random(&self, i: usize) -> RandomKey {
        RandomKey { key: random_key(self.opts.seed, i), step: self.steps }
    }

    /// Checks a batch and copies it into the input slot, with its targets for a training step.
    fn load(&mut self, images: &[f32], targets: Option<&[i64]>) -> Result<()> {
        self.resident = Resident::Nothing;
        self.plan.check_input(images, targets)?;
        self.input().copy_from_slice(images);
        self.set_targets(targets);
        Ok(())
    }

    /// The input's words in its slot.
    fn input(&mut self) -> &mut [f32] {
        let t0 = self.sched.value[0];
        let (s, w) = (self.sched.slot_of[t0], self.sched.words[t0] as usize);
        &mut self.slots[s][..w]
    }

    /// Keeps a loaded batch's targets (none: images only, for `forward`).
    fn set_targets(&mut self, targets: Option<&[i64]>) {
        if let Some(targets) = targets {
            self.targets.clear();
            self.targets.extend_from_slice(targets);
        }
        self.resident = if targets.is_some() { Resident::Batch } else { Resident::Images };
    }

    /// Runs the tasks of the schedule on the loaded batch (forward ones only unless `train`),
    /// timing each.
    fn run(&mut self, train: bool) -> Result<Option<f32>> {
        self.timings.clear();
        let targets = if train { Some(std::mem::take(&mut self.targets)) } else { None };
        let mut loss = None;
        for k in 0..self.sched.tasks.len() {
            let task = self.sched.tasks[k];
            let t = Instant::now();
            match task {
                Task::Forward(i) => self.forward_node(i),
                Task::Loss => match &targets {
                    Some(targets) => loss = Some(self.loss(targets)),
                    None => break,
                },
                Task::Accumulate(s) => self.accumulate(s),
                Task::Backward(j) => self.backward_node(j),
            }
            self.timings.push(t.elapsed().as_secs_f64());
        }
        if let Some(targets) = targets {
            self.targets = targets;
        }
        if self.plan.mode == Mode::Train {
            for n in &self.plan.nodes {
                for &c in &n.counters {
                    self.params.set_counter(c, self.params.counter(c) + 1);
                }
            }
        }
        Ok(loss)
    }

    fn forward_node(&mut self, i: usize) {
        let random = self.random(i);
        let CpuExecutor { plan, sched, params, slots, folds, affine, .. } = self;
        let node = &plan.nodes[i];
        let written = sched.value[sched.writes[i]];
        let mut out = take(slots, sched, written);
        let mut saved: Bufs<Vec<f32>> = sched.saved[i].iter().map(|&t| take(slots, sched, t)).collect();
        let mut scratch: Bufs<Vec<f32>> = sched.scratch_forward[i].iter().map(|&t| take(slots, sched, t)).collect();
        {
            let inputs = node.inputs.iter().map(|&v| tensor(slots, sched, sched.value[v])).collect();
            let words = sched.words[written] as usize;
            let saved_w: Bufs<usize> = sched.saved[i].iter().map(|&t| sched.words[t] as usize).collect();
            let (scale, shift) = &mut affine[i];
            if let Some(j) = folds.affine[i] {
                let state: Bufs<&[f32]> = plan.nodes[j].state.iter().map(|&k| params.get(k)).collect();
                plan.nodes[j].node.affine_cpu(&state, scale, shift);
            }
            let ep = Epilogue { affine: folds.affine[i].map(|_| (&scale[..], &shift[..])), relu: folds.relu[i] };
            let io = CpuForward {
                inputs,
                out: &mut out[..words],
                state: params.entries_mut(&node.state),
                saved: saved.iter_mut().zip(saved_w).map(|(v, w)| &mut v[..w]).collect(),
                scratch: scratch
                    .iter_mut()
                    .zip(&sched.scratch_forward[i])
                    .map(|(v, &t)| &mut v[..sched.words[t] as usize])
                    .collect(),
                random,
            };
            match ep.affine.is_some() || ep.relu {
                true => node.node.forward_cpu_fused(io, &ep),
                false => node.node.forward_cpu(io),
            }
        }
        for (&t, v) in sched.scratch_forward[i].iter().zip(scratch) {
            put(slots, sched, t, v);
        }
        put(slots, sched, written, out);
        for (&t, v) in sched.saved[i].iter().zip(saved) {
            put(slots, sched, t, v);
        }
    }

    fn backward_node(&mut self, j: usize) {
        let random = self.random(j);
        let CpuExecutor { plan, sched, params, grads, slots, .. } = self;
        let node = &plan.nodes[j];
        let mut dinp: Bufs<Option<Vec<f32>>> =
            sched.dinputs[j].iter().map(|t| t.map(|t| take(slots, sched, t))).collect();
        let mut scratch: Bufs<Vec<f32>> = sched.scratch_backward[j].iter().map(|&t| take(slots, sched, t)).collect();
        {
            let words = |t: usize| sched.words[t] as usize;
            // Only what the backward declared it reads is alive (and passed); the rest is empty.
            let reads = node.node.backward_reads();
            let read = |v: usize, yes: bool| if yes { tensor(slots, sched, sched.value[v]) } else { &[] };
            node.node.backward_cpu(CpuBackward {
                inputs: node.inputs.iter().map(|&v| read(v, reads.inputs)).collect(),
                out: read(j + 1, reads.output),
                dout: tensor(slots, sched, sched.grad[j + 1].unwrap()),
                state: node.state.iter().map(|&k| params.get(k)).collect(),
                saved: sched.saved[j].iter().map(|&t| tensor(slots, sched, t)).collect(),
                dinputs: dinp
                    .iter_mut()
                    .zip(&sched.dinputs[j])
                    .map(|(d, t)| d.as_mut().map(|d| &mut d[..words(t.unwrap())]))
                    .collect(),
                dparams: split_disjoint(
                    &mut grads.data,
                    &node.params.iter().map(|&k| params.range(k)).collect::<Bufs<_>>(),
                ),
                scratch: scratch
                    .iter_mut()
                    .zip(&sched.scratch_backward[j])
                    .map(|(v, &t)| &mut v[..sched.words[t] as usize])
                    .collect(),
                random,
            });
        }
        for (&t, v) in sched.scratch_backward[j].iter().zip(scratch) {
            put(slots, sched, t, v);
        }
        for (t, d) in sched.dinputs[j].iter().zip(dinp) {
            if let (Some(t), Some(d)) = (t, d) {
                put(slots, sched, *t, d);
            }
        }
    }

    /// Sums a value's gradient contributions in the schedule's order, as the GPU's `add` kernels do.
    fn accumulate(&mut self, s: usize) {
        let CpuExecutor { sched, slots, .. } = self;
        for &(a, b, c) in &sched.sums[s].steps {
            let mut out = take(slots, sched, c);
            let n = sched.words[c] as usize;
            crate::cpu::add(&mut out[..n], tensor(slots, sched, a), tensor(slots, sched, b));
            put(slots, sched, c, out);
        }
    }

    fn loss(&mut self, targets: &[i64]) -> f32 {
        let CpuExecutor { plan, sched, slots, opts, .. } = self;
        let dims = (plan.batch, plan.classes, 1);
        let (lp, d) = (sched.loss_scratch[0], sched.dlogits.unwrap());
        let (mut logp, mut dlogits) = (take(slots, sched, lp), take(slots, sched, d));
        let loss = cross_entropy::loss_and_grad_into(
            tensor(slots, sched, sched.value[plan.output]),
            cross_entropy::Targets::Class(targets),
            &loss_options(opts),
            dims,
            &mut logp[..sched.words[lp] as usize],
            &mut dlogits[..sched.words[d] as usize],
        );
        put(slots, sched, lp, logp);
        put(slots, sched, d, dlogits);
        loss
    }
}

/// The slots, allocated without aborting: the CPU path checks what it needs (the slots, room for
/// the data loader's batches in flight, and headroom for the per-step work) against what the
/// process may still take ([`memory_budget`]) first, says which batch size would fit, and
/// allocates fallibly in case the check was optimistic.
fn allocate(slot_words: &[u64], batch: usize, input_words: u64) -> Result<Vec<Vec<f32>>> {
    let bytes = 4 * slot_words.iter().sum::<u64>();
    let needed = bytes + 3 * 4 * input_words;
    let budget = memory_budget();
    let fail = |why: String| {
        let per_image = (needed as f64 / batch as f64) * (1.0 + HEADROOM);
        // 2% below the linear estimate: the batch-independent buffers (parameters, optimizer
        // state) are spread over this batch's images, which makes the estimate a little
        // optimistic for a smaller batch, and the room a process has varies slightly from run to
        // run (a suggestion at the edge once failed by one image).
        let fits = budget.map_or(0.0, |(b, _)| (0.98 * b.saturating_sub(RESERVE) as f64 / per_image).floor());
        crate::Error::Graph(format!(
            "the CPU path needs {} for a batch of {batch} (activations, gradients and scratch: {}; \
             the data loader's batches: {}) but {why}; {}",
            human_bytes(needed),
            human_bytes(bytes),
            human_bytes(needed - bytes),
            if fits >= 1.0 {
                format!("a batch size of about {fits} would fit")
            } else {
                "not even a batch of 1 fits".to_string()
            }
        ))
    };
    if let Some((avail, what)) = budget {
        if (needed as f64 * (1.0 + HEADROOM)) as u64 + RESERVE > avail {
            return Err(fail(format!("{what} leaves {} (with headroom for the step's own work)", human_bytes(avail))));
        }
    }
    let mut slots = Vec::with_capacity(slot_words.len());
    for &w in slot_words {
        let mut v: Vec<f32> = Vec::new();
        v.try_reserve_exact(w as usize).map_err(|_| fail(format!("allocating {} failed", human_bytes(4 * w))))?;
        v.resize(w as usize, 0.0);
        slots.push(v);
    }
    Ok(slots)
}

/// Room kept beyond the planned buffers: a fraction of them for each step's own work (threads'
/// im2col panels, loss rows), and a fixed amount for everything else the process holds.
const HEADROOM: f64 = 0.125;
const RESERVE: u64 = 128 << 20;

/// How many more bytes this process may take, and what bounds it (Linux): the least of available
/// RAM and swap, the address-space limit (`ulimit -v`) less what is mapped, and the cgroup's
/// memory limit (containers) less its usage. None where nothing is known.
pub fn memory_budget() -> Option<(u64, &'static str)> {
    let mut best: Option<(u64, &'static str)> = None;
    let mut take = |b: Option<u64>, what: &'static str| {
        if let Some(b) = b {
            if best.is_none_or(|(x, _)| b < x) {
                best = Some((b, what));
            }
        }
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let kib = |text: &Option<String>, name: &str| -> Option<u64> {
        text.as_ref()?
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    take(
        kib(&meminfo, "MemAvailable:").map(|a| (a + kib(&meminfo, "SwapFree:").unwrap_or(0)) * 1024),
        "the system's available memory",
    );
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let address_space = limits.as_ref().and_then(|l| {
        l.lines().find(|l| l.starts_with("Max address space"))?.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    let status = std::fs::read_to_string("/proc/self/status").ok();
    if let (Some(limit), Some(mapped)) = (address_space, kib(&status, "VmSize:")) {
        take(Some(limit.saturating_sub(mapped * 1024)), "the address-space limit (ulimit -v)");
    }
    let cgroup = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok()?.trim().parse::<u64>().ok();
    if let (Some(max), Some(current)) = (cgroup("memory.max"), cgroup("memory.current")) {
        take(Some(max.saturating_sub(current)), "the container's memory limit (cgroup memory.max)");
    }
    best
}

pub(crate) fn human_bytes(b: u64) -> String {
    match b {
        0..=1_048_575 => format!("{:.1} KiB", b as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", b as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", b as f64 / 1_073_741_824.0),
    }
}

/// A tensor's words in its slot.
fn tensor<'a>(slots: &'a [Vec<f32>], sched: &Schedule, t: usize) -> &'a [f32] {
    &slots[sched.slot_of[t]][..sched.words[t] as usize]
}

/// Takes a tensor's slot out to write it while other slots are read (tensors alive at the same
/// time never share a slot); [`put`] returns it.
fn take(slots: &mut [Vec<f32>], sched: &Schedule, t: usize) -> Vec<f32> {
    std::mem::take(&mut slots[sched.slot_of[t]])
}

fn put(slots: &mut [Vec<f32>], sched: &Schedule, t: usize, v: Vec<f32>) {
    slots[sched.slot_of[t]] = v;
}

impl Executor for CpuExecutor {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn step(&mut self, images: &[f32], targets: &[i64], want_loss: bool) -> Result<Option<f32>> {
        self.load(images, Some(targets))?;
        self.step_resident(want_loss)
    }

    fn upload_pixels(&mut self, pixels: &[u8], to_tensor: &ToTensor, targets: Option<&[i64]>) -> Result<()> {
        self.resident = Resident::Nothing;
        self.plan.check_pixels(pixels, to_tensor, targets)?;
        let plane = self.plan.input.iter().skip(2).product();
        to_tensor.apply(pixels, plane, self.input());
        self.set_targets(targets);
        Ok(())
    }

    fn step_resident(&mut self, _want_loss: bool) -> Result<Option<f32>> {
        if self.plan.mode != Mode::Train {
            return Err(not_training());
        }
        self.resident.check_batch()?;
        let loss = self.run(true)?;
        if let Some(max_norm) = self.opts.clip_grad_norm {
            let t = Instant::now();
            self.grad_norm = clip_grad_norm::clip_cpu(max_norm, &mut self.grads.data);
            self.timings.push(t.elapsed().as_secs_f64());
        }
        if let Some(opt) = self.opts.optimizer {
            let t = Instant::now();
            let n = self.grads.data.len();
            let words = opt.step_words(&self.opts.schedule, self.steps);
            let (param, grad) = (&mut self.params.data[..n], &self.grads.data);
            match (opt, self.state.as_mut_slice()) {
                (Optimizer::Sgd(c), [buf]) => sgd::step_cpu(&c, &words, param, grad, &mut buf.data),
                (Optimizer::Adam(c), [m, v]) => {
                    adam::step_cpu(&c, Decay::L2, &words, param, grad, &mut m.data, &mut v.data)
                }
                (Optimizer::AdamW(c), [m, v]) => {
                    adam::step_cpu(&c, Decay::Decoupled, &words, param, grad, &mut m.data, &mut v.data)
                }
                _ => unreachable!("the state buffers are made for the optimizer"),
            }
            self.timings.push(t.elapsed().as_secs_f64());
        }
        self.steps += 1;
        Ok(loss)
    }

    fn forward(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        self.load(images, None)?;
        self.forward_resident()
    }

    fn forward_resident(&mut self) -> Result<Vec<f32>> {
        self.resident.check_images()?;
        self.run(false)?;
        self.logits()
    }

    fn logits(&self) -> Result<Vec<f32>> {
        Ok(tensor(&self.slots, &self.sched, self.sched.value[self.plan.output]).to_vec())
    }
    fn params(&self) -> Result<ParamSet> {
        Ok(self.params.clone())
    }
    fn set_params(&mut self, p: &ParamSet) -> Result<()> {
        let mut q = self.params.like(p.data.clone())?;
        q.counters.clone_from(&p.counters);
        if q.counters.len() != self.params.counters.len() {
            return Err(crate::Error::Graph("set_params: counters differ from the model's".into()));
        }
        self.params = q;
        Ok(())
    }
    fn grads(&self) -> Result<ParamSet> {
        Ok(self.grads.clone())
    }
    fn grad_norm(&self) -> Result<Option<f32>> {
        Ok(self.opts.clip_grad_norm.filter(|_| self.plan.mode == Mode::Train).map(|_| self.grad_norm))
    }
    fn optimizer_state(&self) -> Result<OptimizerState> {
        let names = self.opts.optimizer.map_or(&[][..], |o| o.state_names());
        Ok(OptimizerState {
            steps: self.steps,
            buffers: names.iter().zip(&self.state).map(|(n, b)| (n.to_string(), b.clone())).collect(),
        })
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let bufs = state_buffers(self.opts.optimizer.as_ref(), &self.grads, state)?;
        if self.plan.mode == Mode::Train {
            self.state = bufs;
        }
        self.steps = state.steps;
        Ok(())
    }

    fn tensors(&self) -> Result<Vec<(String, Vec<f32>)>> {
        Ok(tensor_names(&self.plan, &self.sched)
            .into_iter()
            .map(|(name, t)| (name, tensor(&self.slots, &self.sched, t).to_vec()))
            .collect())
    }

    fn describe(&self) -> String {
        format!("CPU path ({} threads)", rayon::current_num_threads())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn profile(&mut self, images: &[f32], targets: &[i64]) -> Result<Vec<KernelTime>> {
        self.step(images, targets, false)?;
        Ok(self
            .labels
            .iter()
            .zip(&self.timings)
            .map(|((name, flops, bytes), &seconds)| KernelTime {
                name: name.clone(),
                seconds,
                flops: *flops,
                bytes: *bytes,
            })
            .collect())
    }

    fn memory_bytes(&self) -> u64 {
        4 * (self.slots.iter().map(|v| v.len()).sum::<usize>()
            + self.params.data.len()
            + self.grads.data.len()
            + self.state.iter().map(|b| b.data.len()).sum::<usize>()) as u64
    }
}

/// The timed tasks of a step with their work: each node's forward, the loss, sums, each backward
/// (last node first), then gradient clipping and the optimizer where `opts` has them.
fn labels(plan: &Plan, sched: &Schedule, trainable: usize, opts: &Options) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = sched
        .tasks
        .iter()
        .map(|t| match *t {
            Task::Forward(i) => (plan.nodes[i].name.clone(), plan.nodes[i].node.flops().forward, 0),
            Task::Loss => ("loss".into(), 0, 0),
            Task::Accumulate(s) => {
                let v = sched.sums[s].value;
                (format!("{}.grad_sum", plan.nodes[v - 1].name), 0, 12 * sched.words[sched.value[v]])
            }
            Task::Backward(j) => {
                let n = &plan.nodes[j];
                let f = n.node.flops();
                let dinp = sched.dinputs[j].iter().any(|d| d.is_some());
                (format!("{}.backward", n.name), f.backward_params + if dinp { f.backward_input } else { 0 }, 0)
            }
        })
        .collect();
    if opts.clip_grad_norm.is_some() {
        v.push(("clip_grad_norm".into(), 3 * trainable as u64, 12 * trainable as u64));
    }
    if opts.optimizer.is_some() {
        v.push(("optimizer".into(), 0, 16 * trainable as u64));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Executor;
    use crate::graph::{Builder, Value};
    use crate::nn::models::{cifar_net, resnet20};
    use crate::nn::{BatchNorm2d, Conv2d, Flatten, Linear, Module, ReLU};
    use rand::{Rng, SeedableRng};

    /// conv → + input → BatchNorm2d → ReLU → flatten → fc: the BatchNorm2d and the ReLU fold into
    /// the Add.
    struct SumThenNorm;

    impl Module for SumThenNorm {
        fn forward(&self, g: &mut Builder, x: Value) -> Value {
            let y = g.call("conv", &Conv2d::new(3, 3, 3).padding(1), x);
            let s = g.add(y, x);
            let s = g.call("bn", &BatchNorm2d::new(3), s);
            let s = g.call("relu", &ReLU, s);
            let s = g.call("flatten", &Flatten::new(), s);
            g.call("fc", &Linear::new(3 * 32 * 32, 10), s)
        }
    }

    /// Inference folds every eval-mode BatchNorm2d and ReLU that follows a Conv2d (or an Add) into
    /// it, and the logits equal those of an executor that folds nothing (`keep_all`) within f32
    /// rounding, with BatchNorm's running statistics and affine parameters far from their initial
    /// values.
    #[test]
    fn inference_folds_batchnorm_and_relu_into_convolutions() {
        // ResNet-20: 21 BatchNorm2d (the stem's, two per block, two downsamples) and 10 ReLU (the
        // stem's and each block's first) into convolutions, and each block's last ReLU into its
        // residual sum (9); cifar-net: the ReLU after each of its two convolutions; SumThenNorm:
        // a BatchNorm2d and a ReLU into a residual sum.
        let sum_then_norm = crate::graph::Model::new(&SumThenNorm, [3, 32, 32], 3).unwrap();
        for (mut model, folded) in [(resnet20(3), 40), (cifar_net(3), 2), (sum_then_norm, 2)] {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            for i in 0..model.params.specs.len() {
                let key = model.params.specs[i].key.clone();
                let bn = key.contains("bn") || key.contains("downsample.1");
                let range = match key.rsplit('.').next() {
                    Some("running_var") => 0.3f32..3.0,
                    Some("running_mean") | Some("weight") | Some("bias") if bn => -2.0..2.0,
                    _ => continue,
                };
                model.params.get_mut(i).iter_mut().for_each(|v| *v = r.random_range(range.clone()));
            }
            let images: Vec<f32> = (0..4 * 3 * 32 * 32).map(|_| r.random_range(0.0..1.0)).collect();
            let mut fused = CpuExecutor::new(&model, 4, Options::inference()).unwrap();
            let mut plain = CpuExecutor::new(&model, 4, Options { keep_all: true, ..Options::inference() }).unwrap();
            assert_eq!(fused.folds.folded.iter().filter(|&&f| f).count(), folded);
            assert!(plain.folds.folded.iter().all(|&f| !f));
            let forwards = |e: &CpuExecutor| e.sched.tasks.iter().filter(|t| matches!(t, Task::Forward(_))).count();
            assert_eq!(forwards(&fused) + folded, forwards(&plain));
            let same = |a: &[f32], b: &[f32]| {
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    assert!((x - y).abs() <= 1e-5 * scale, "logit {i}: folded {x}, unfolded {y} (scale {scale})");
                }
            };
            let first = fused.forward(&images).unwrap();
            same(&first, &plain.forward(&images).unwrap());
            // New running statistics: the map is worked out again at the next forward.
            let mut p = model.params.clone();
            let means: Vec<usize> = (0..p.specs.len()).filter(|&i| p.specs[i].key.ends_with("running_mean")).collect();
            for i in means {
                p.get_mut(i).iter_mut().for_each(|v| *v += 0.5);
            }
            fused.set_params(&p).unwrap();
            plain.set_params(&p).unwrap();
            let second = fused.forward(&images).unwrap();
            same(&second, &plain.forward(&images).unwrap());
            if model.params.specs.iter().any(|s| s.key.ends_with("running_mean")) {
                assert!(first.iter().zip(&second).any(|(a, b)| a != b), "new statistics changed nothing");
            }
        }
    }
}
