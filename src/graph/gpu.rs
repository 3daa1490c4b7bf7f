//! The GPU executor: the schedule's slots, every bind group and pipeline are made once in `new`; a
//! training step records forward + loss + backward + the optimizer into one compute pass and one
//! queue submit (recorded while the device runs the step before; a batch given as bytes adds the
//! pass that makes the input of them), and reads back the loss (4 bytes) only when asked.

use super::memory::{Request, Schedule, Task};
use super::{
    loss_options, not_training, random_key, state_buffers, tensor_names, Executor, KernelTime, Options, Plan, Resident,
    StepOutput,
};
use crate::buffer::View;
use crate::device::{blocking, Gpu};
use crate::kernel::{Kernel, Program};
use crate::nn::{Model, ParamSet};
use crate::ops::interface::{GpuIo, Mode, StepWords};
use crate::ops::to_tensor::{self, ToTensor};
use crate::ops::{adam, add, clip_grad_norm, cross_entropy, sgd};
use crate::optim::{Decay, Optimizer, OptimizerState};
use crate::{Error, Result};
use std::sync::Arc;

/// Steps that may run ahead of the loss the host has read (`Executor::step_queued`).
pub const LOSS_RING: usize = 4;

/// Where a ring slot's map callback leaves its result (one per slot, made with the executor).
type Mapped = Arc<std::sync::Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// Where a recorded training step copies its loss: the staging buffer read at once, or a slot of
/// the ring that queued steps use in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readback {
    Loss,
    Ring(usize),
}

impl Readback {
    /// Where the step after this one copies its loss.
    fn next(self) -> Readback {
        match self {
            Readback::Loss => Readback::Loss,
            Readback::Ring(slot) => Readback::Ring((slot + 1) % LOSS_RING),
        }
    }
}

/// A submitted step whose loss is being mapped.
struct Queued {
    slot: usize,
    index: wgpu::SubmissionIndex,
}

pub struct GpuExecutor {
    gpu: Arc<Gpu>,
    plan: Plan,
    sched: Schedule,
    /// The host's copy of the model's entries (counters are kept here; f32 data lives on the GPU).
    layout: ParamSet,
    grad_layout: ParamSet,
    params: View,
    grads: View,
    /// The optimizer's state buffers ([`Optimizer::state_names`]).
    state: Vec<View>,
    /// The running step's [`StepWords`], written before each step.
    step_words: View,
    opts: Options,
    targets: View,
    /// A view of each planned tensor.
    tensors: Vec<View>,
    loss: View,
    loss_staging: wgpu::Buffer,
    /// Staging buffers the queued steps' losses are copied into, used in turn and read a few
    /// steps late (see [`Executor::step_queued`]).
    loss_ring: Vec<wgpu::Buffer>,
    ring_mapped: Vec<Mapped>,
    /// Steps submitted whose loss has not been read yet, oldest first.
    queued: std::collections::VecDeque<Queued>,
    queued_total: u64,
    /// Where `forward` copies the logits to read them (same submit, no allocation per batch).
    logits_staging: wgpu::Buffer,
    /// Forward kernels, then loss, sums and backward: `kernels[..n_forward]` is the forward.
    kernels: Vec<Kernel>,
    n_forward: usize,
    /// Gradient clipping's kernels (with `Options::clip_grad_norm`), then the optimizer's.
    optimizer: Vec<Kernel>,
    /// The gradients' total norm before clipping at the last step (`Options::clip_grad_norm`).
    grad_norm: View,
    /// Training steps taken.
    steps: u64,
    targets_scratch: Vec<i32>,
    /// What of a batch the device holds (`step_resident` and `forward_resident` run on it).
    resident: Resident,
    /// A batch's bytes (`upload_pixels`), the table that makes the input of them, the table's
    /// values last written there, and the kernel that makes it.
    pixels: View,
    pixel_table: View,
    table_written: Vec<f32>,
    to_tensor: Kernel,
    /// Whether the next submit must make the input from `pixels` first (the bytes came after the
    /// last one that did).
    pixels_pending: bool,
    /// The next training step's and the next forward's commands, recorded (and finished) while
    /// the device ran the last ones, so that a step the host waits for costs it only the submit.
    /// Their buffers and bind groups never change; the step's words and the input are queue
    /// writes, which land before the submit that runs them.
    prepared_step: Option<(Readback, wgpu::CommandBuffer)>,
    prepared_forward: Option<wgpu::CommandBuffer>,
    /// Bytes of GPU memory this executor allocated (slots, persistent buffers, uniforms, staging).
    pub bytes: u64,
}

/// The buffers a step's kernels bind, made by [`GpuExecutor::build`] before it records them.
struct Bindings<'a> {
    plan: &'a Plan,
    sched: &'a Schedule,
    layout: &'a ParamSet,
    /// A view of each planned tensor.
    tensors: &'a [View],
    params: &'a View,
    grads: &'a View,
    targets: &'a View,
    loss: &'a View,
    step: &'a View,
}

/// A training step's (or a forward's) kernels in recording order.
struct Recorded {
    /// Forward kernels, then loss, sums and backward: `kernels[..n_forward]` is the forward.
    kernels: Vec<Kernel>,
    n_forward: usize,
    /// The loss's class weights and upstream gradient (ones), when the step has a loss.
    loss_consts: Option<(View, View)>,
}

/// The memory schedule: every tensor's slot, the nodes' scratch and the order of the work.
fn schedule(gpu: &Gpu, plan: &Plan, opts: &Options) -> Schedule {
    let train = opts.mode == Mode::Train;
    let scratch = |i: usize| {
        let n = &plan.nodes[i];
        let dinputs: Vec<bool> = n.inputs.iter().map(|&v| train && plan.needs_grad[v]).collect();
        n.node.gpu_scratch(gpu, &dinputs)
    };
    Schedule::new(
        plan,
        &Request {
            backward: train,
            keep_all: opts.keep_all,
            scratch: &scratch,
            reads: &|i| plan.nodes[i].node.gpu_backward_reads(gpu),
            loss_scratch: cross_entropy::gpu_scratch((plan.batch, plan.classes, 1), loss_options(opts).reduction),
            folds: None,
        },
    )
}

/// A tensor is one buffer and one binding: the largest (an activation or its gradient, in
/// proportion to the batch) says which batch size the adapter's limits allow.
fn check_limits(gpu: &Gpu, sched: &Schedule, batch: usize) -> Result<()> {
    let (limit, which) = if gpu.limits.max_storage_buffer_binding_size <= gpu.limits.max_buffer_size {
        (gpu.limits.max_storage_buffer_binding_size, "max_storage_buffer_binding_size")
    } else {
        (gpu.limits.max_buffer_size, "max_buffer_size")
    };
    let largest = 4 * sched.slot_words.iter().copied().max().unwrap_or(0);
    if largest > limit {
        let fits = (limit as f64 / (largest as f64 / batch as f64)).floor() as u64;
        return Err(Error::Graph(format!(
            "its largest tensor takes {largest} bytes but the adapter's {which} is {limit}; {}",
            if fits >= 1 {
                format!("a batch size of about {fits} would fit")
            } else {
                "not even a batch of 1 fits".into()
            }
        )));
    }
    Ok(())
}

/// Node `i`'s buffers for its forward (`backward` false) or its backward: `state` and `dparams`
/// are its views of the parameters and of their gradients.
fn node_io<'a>(
    b: &'a Bindings,
    i: usize,
    state: &'a [View],
    dparams: &'a [View],
    backward: bool,
    seed: u64,
) -> GpuIo<'a> {
    let (n, sched, t) = (&b.plan.nodes[i], b.sched, b.tensors);
    let scratch = if backward { &sched.scratch_backward[i] } else { &sched.scratch_forward[i] };
    GpuIo {
        label: &n.name,
        inputs: n.inputs.iter().map(|&v| &t[sched.value[v]]).collect(),
        out: &t[sched.value[i + 1]],
        state: state.iter().collect(),
        saved: sched.saved[i].iter().map(|&k| &t[k]).collect(),
        scratch: scratch.iter().map(|&k| &t[k]).collect(),
        kept: sched.kept[i].iter().map(|&k| &t[k]).collect(),
        dout: backward.then(|| &t[sched.grad[i + 1].unwrap()]),
        dinputs: if backward { sched.dinputs[i].iter().map(|k| k.map(|k| &t[k])).collect() } else { Vec::new() },
        dparams: dparams.iter().collect(),
        step: b.step,
        random_key: random_key(seed, i),
    }
}

/// Records the schedule's tasks: each node's forward, the loss, the sums of gradient
/// contributions and each node's backward.
fn record(gpu: &Arc<Gpu>, b: &Bindings, opts: &Options) -> Result<Recorded> {
    let (plan, sched, tensors) = (b.plan, b.sched, b.tensors);
    let view = |v: &View, k: usize| v.slice(b.layout.offsets[k] as u64, b.layout.specs[k].numel() as u64);
    let mut r = Recorded { kernels: Vec::new(), n_forward: 0, loss_consts: None };
    for task in &sched.tasks {
        match *task {
            Task::Forward(i) => {
                let state: Vec<View> = plan.nodes[i].state.iter().map(|&k| view(b.params, k)).collect();
                let io = node_io(b, i, &state, &[], false, opts.seed);
                r.kernels.extend(plan.nodes[i].node.forward_gpu(gpu, &io)?.kernels);
                r.n_forward = r.kernels.len();
            }
            Task::Loss => {
                let ones = vec![1f32; plan.classes];
                let weight = gpu.upload("loss.weight", opts.loss_weight.as_deref().unwrap_or(&ones))?;
                let dout = gpu.upload("loss.dout", &[1f32])?;
                let bufs = cross_entropy::GpuBuffers {
                    inp: &tensors[sched.value[plan.output]],
                    tgt: b.targets,
                    prob_targets: false,
                    weight: &weight,
                    scratch: sched.loss_scratch.iter().map(|&t| &tensors[t]).collect(),
                    out: b.loss,
                    dout: &dout,
                    dinp: &tensors[sched.dlogits.unwrap()],
                };
                let (o, dims) = (loss_options(opts), (plan.batch, plan.classes, 1));
                r.kernels.extend(cross_entropy::forward_gpu(gpu, "loss", &bufs, &o, dims)?.kernels);
                r.kernels.extend(cross_entropy::backward_gpu(gpu, "loss", &bufs, &o, dims)?.kernels);
                r.loss_consts = Some((weight, dout));
            }
            Task::Accumulate(s) => {
                let sum = &sched.sums[s];
                let label = format!("{}.grad_sum", plan.nodes[sum.value - 1].name);
                for &(x, y, z) in &sum.steps {
                    r.kernels.push(add::add_gpu(gpu, &label, &tensors[x], &tensors[y], &tensors[z])?);
                }
            }
            Task::Backward(j) => {
                let n = &plan.nodes[j];
                let state: Vec<View> = n.state.iter().map(|&k| view(b.params, k)).collect();
                let dparams: Vec<View> = n.params.iter().map(|&k| view(b.grads, k)).collect();
                let io = node_io(b, j, &state, &dparams, true, opts.seed);
                r.kernels.extend(n.node.backward_gpu(gpu, &io)?.kernels);
            }
        }
    }
    Ok(r)
}

impl GpuExecutor {
    /// Plans and builds everything for `batch`; errors name the batch size.
    pub fn new(gpu: Arc<Gpu>, model: &Model, batch: usize, opts: Options) -> Result<Self> {
        let ctx = |e: Error| match e {
            Error::Graph(m) => Error::Graph(format!("building the GPU executor at batch {batch}: {m}")),
            other => Error::Graph(format!("building the GPU executor at batch {batch}: {other}")),
        };
        let plan = Plan::new(model, batch, opts.mode).map_err(ctx)?;
        super::check_loss_weight(&opts, plan.classes).map_err(ctx)?;
        Self::build(gpu, model, plan, opts).map_err(ctx)
    }

    /// The phases, in order: the schedule of buffers, the adapter's limits, the buffers, the
    /// step's kernels (forward, loss, backward), the optimizer's, the readback buffers.
    fn build(gpu: Arc<Gpu>, model: &Model, plan: Plan, opts: Options) -> Result<Self> {
        let train = opts.mode == Mode::Train;
        let batch = plan.batch;
        let sched = schedule(&gpu, &plan, &opts);
        check_limits(&gpu, &sched, batch)?;
        let slots: Vec<View> = sched
            .slot_words
            .iter()
            .enumerate()
            .map(|(s, &w)| gpu.zeros(&format!("slot {s}"), w))
            .collect::<Result<_>>()?;
        let tensors: Vec<View> =
            (0..sched.words.len()).map(|t| View { len: sched.words[t], ..slots[sched.slot_of[t]].clone() }).collect();

        // The batch's bytes and the kernel that makes the input of them.
        let input = &tensors[sched.value[0]];
        let pixels = gpu.zeros("pixels", to_tensor::pixel_words(input.len))?;
        let channels = plan.input.get(1).copied().unwrap_or(1) as u64;
        let pixel_table = gpu.zeros("pixel table", channels * 256)?;
        let plane = plan.input.iter().skip(2).product::<usize>() as u64;
        let to_tensor = to_tensor::to_tensor_gpu(&gpu, "input.to_tensor", &pixels, &pixel_table, plane, input)?;

        // The model's entries, their gradients and the optimizer's buffers.
        let layout = model.params.clone();
        let grad_layout = layout.trainable_layout();
        let params = gpu.upload("params", &layout.data)?;
        let trainable = grad_layout.data.len() as u64;
        let grads = gpu.zeros("grads", if train { trainable } else { 1 })?;
        let state: Vec<View> = match (&opts.optimizer, train) {
            (Some(o), true) => o.state_names().iter().map(|n| gpu.zeros(n, trainable)).collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let step_words = gpu.zeros("step", (std::mem::size_of::<StepWords>() / 4) as u64)?;
        let targets = gpu.zeros("targets", batch as u64)?;
        let loss = gpu.zeros("loss", 1)?;

        let b = Bindings {
            plan: &plan,
            sched: &sched,
            layout: &layout,
            tensors: &tensors,
            params: &params,
            grads: &grads,
            targets: &targets,
            loss: &loss,
            step: &step_words,
        };
        let Recorded { kernels, n_forward, loss_consts } = record(&gpu, &b, &opts)?;
        let (p, g) = (params.slice(0, trainable), grads.slice(0, trainable));
        let clipping = opts.clip_grad_norm.filter(|_| train && trainable > 0);
        let partials = if clipping.is_some() { clip_grad_norm::PARTIALS } else { 1 };
        let (clip_partial, grad_norm) = (gpu.zeros("clip_grad_norm partial", partials)?, gpu.zeros("grad norm", 1)?);
        let mut optimizer = match clipping {
            Some(max_norm) => clip_grad_norm::clip_gpu(&gpu, max_norm, &g, &clip_partial, &grad_norm)?.kernels,
            None => Vec::new(),
        };
        optimizer.extend(match (opts.optimizer, state.as_slice()) {
            (Some(Optimizer::Sgd(c)), [buf]) => Some(sgd::step_gpu(&gpu, &c, &step_words, &p, &g, buf)?),
            (Some(Optimizer::Adam(c)), [m, v]) => Some(adam::step_gpu(&gpu, &c, Decay::L2, &step_words, &p, &g, m, v)?),
            (Some(Optimizer::AdamW(c)), [m, v]) => {
                Some(adam::step_gpu(&gpu, &c, Decay::Decoupled, &step_words, &p, &g, m, v)?)
            }
            _ => None,
        });
        let loss_staging = gpu.staging("loss readback", 4)?;
        // Each slot: the loss, then (when clipping) the gradients' norm.
        let loss_ring = (0..LOSS_RING).map(|_| gpu.staging("queued loss readback", 8)).collect::<Result<Vec<_>>>()?;
        let logits = &tensors[sched.value[plan.output]];
        let logits_staging = gpu.staging("logits readback", logits.bytes())?;
        gpu.check("building the GPU executor")?;
        let uniforms: u64 = kernels.iter().chain(&optimizer).chain([&to_tensor]).map(|k| k.uniform_bytes).sum();
        let consts = loss_consts.map_or(0, |(w, d)| w.bytes() + d.bytes());
        let bytes = 4 * sched.planned_words()
            + [&params, &grads, &step_words, &targets, &loss, &pixels, &pixel_table, &clip_partial, &grad_norm]
                .into_iter()
                .chain(&state)
                .map(|v| v.bytes())
                .sum::<u64>()
            + consts
            + uniforms
            + loss_staging.size()
            + loss_ring.iter().map(|b| b.size()).sum::<u64>()
            + logits_staging.size();
        Ok(GpuExecutor {
            gpu,
            layout,
            grad_layout,
            params,
            grads,
            state,
            step_words,
            opts,
            targets,
            tensors,
            loss,
            loss_staging,
            loss_ring,
            ring_mapped: (0..LOSS_RING).map(|_| Mapped::default()).collect(),
            queued: Default::default(),
            queued_total: 0,
            logits_staging,
            kernels,
            n_forward,
            optimizer,
            grad_norm,
            steps: 0,
            targets_scratch: vec![0; batch],
            resident: Resident::Nothing,
            pixels,
            pixel_table,
            table_written: Vec::new(),
            to_tensor,
            pixels_pending: false,
            prepared_step: None,
            prepared_forward: None,
            bytes,
            plan,
            sched,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Kernel labels in recording order (forward, loss, backward, optimizer).
    pub fn kernel_labels(&self) -> Vec<String> {
        self.kernels.iter().chain(&self.optimizer).map(|k| k.label.clone()).collect()
    }

    /// Submits one training step on the batch on the device, its loss copied into `readback`:
    /// the step's commands as prepared during the last one (recorded now where there are none
    /// for this readback), after the making of the input where pixels came since; then records
    /// the next step's while the device runs this one.
    fn submit_step(&mut self, readback: Readback) -> Result<wgpu::SubmissionIndex> {
        if self.plan.mode != Mode::Train {
            return Err(not_training());
        }
        self.resident.check_batch()?;
        self.write_step_words()?;
        let pixels = self.pixels_commands();
        let step = match self.prepared_step.take() {
            Some((r, commands)) if r == readback => commands,
            _ => self.record_step(readback),
        };
        let index = self.gpu.submit_buffers(pixels.into_iter().chain([step]), "train step")?;
        self.steps += 1;
        self.count_forward();
        self.prepared_step = Some((readback.next(), self.record_step(readback.next())));
        Ok(index)
    }

    /// A training step's commands: forward, loss, backward and the optimizer in one compute pass,
    /// then the loss's copy into `readback`. Errors of the recording surface at the submit.
    fn record_step(&self, readback: Readback) -> wgpu::CommandBuffer {
        let mut enc = self.gpu.encoder("train step");
        {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("train step"), timestamp_writes: None });
            for k in self.kernels.iter().chain(&self.optimizer) {
                k.record(&mut pass);
            }
        }
        let staging = match readback {
            Readback::Loss => &self.loss_staging,
            Readback::Ring(slot) => &self.loss_ring[slot],
        };
        enc.copy_buffer_to_buffer(&self.loss.buffer, self.loss.offset, staging, 0, 4);
        if readback != Readback::Loss && self.clipping() {
            enc.copy_buffer_to_buffer(&self.grad_norm.buffer, self.grad_norm.offset, staging, 4, 4);
        }
        enc.finish()
    }

    /// A forward's commands, then the logits' copy into their staging buffer.
    fn record_forward(&self) -> wgpu::CommandBuffer {
        let mut enc = self.gpu.encoder("forward");
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("forward"), timestamp_writes: None });
            for k in &self.kernels[..self.n_forward] {
                k.record(&mut pass);
            }
        }
        let logits = &self.tensors[self.sched.value[self.plan.output]];
        enc.copy_buffer_to_buffer(&logits.buffer, logits.offset, &self.logits_staging, 0, logits.bytes());
        enc.finish()
    }

    /// The making of the input from the pixels, where they came after the last submit that made
    /// it: commands of their own, submitted before the step's or the forward's.
    fn pixels_commands(&mut self) -> Option<wgpu::CommandBuffer> {
        if !std::mem::take(&mut self.pixels_pending) {
            return None;
        }
        let mut enc = self.gpu.encoder("input from pixels");
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("input from pixels"),
                timestamp_writes: None,
            });
            self.to_tensor.record(&mut pass);
        }
        Some(enc.finish())
    }

    /// Waits for the oldest queued step and takes its loss (and any later ones already mapped).
    /// Its map callback can run a moment after this thread's poll returns: when other threads
    /// poll the same device, whichever poll collects a callback runs it. So this polls again
    /// until the callback has run, for at most 10 s.
    fn take_oldest(&mut self, losses: &mut Vec<StepOutput>, context: &str) -> Result<()> {
        let Some(oldest) = self.queued.front() else { return Ok(()) };
        self.gpu.wait_for(oldest.index.clone(), context)?;
        let start = web_time::Instant::now();
        let before = self.queued.len();
        loop {
            self.collect_losses(losses)?;
            if self.queued.len() < before {
                return Ok(());
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                return Err(Error::Gpu {
                    context: context.into(),
                    msg: format!("{} loss readbacks never completed", self.queued.len()),
                });
            }
            std::thread::yield_now();
            self.gpu.poll(context)?;
        }
    }

    /// Whether the training step clips the gradients (and so has their norm to give).
    fn clipping(&self) -> bool {
        self.opts.clip_grad_norm.is_some() && self.plan.mode == Mode::Train
    }

    /// Moves what the oldest queued steps whose staging buffers are mapped gave into `out`, in
    /// step order.
    fn collect_losses(&mut self, out: &mut Vec<StepOutput>) -> Result<()> {
        while let Some(q) = self.queued.front() {
            let state = self.ring_mapped[q.slot].lock().unwrap_or_else(|e| e.into_inner()).take();
            let err = |msg: String| Error::Gpu { context: "reading a queued loss".into(), msg };
            match state {
                None => break,
                Some(Err(e)) => return Err(err(e.to_string())),
                Some(Ok(())) => {
                    let buf = &self.loss_ring[q.slot];
                    let words = {
                        let mapped = buf.slice(..).get_mapped_range().map_err(|e| err(e.to_string()))?;
                        <[f32; 2]>::try_from(bytemuck::cast_slice::<u8, f32>(&mapped))
                            .map_err(|e| err(e.to_string()))?
                    };
                    buf.unmap();
                    out.push(StepOutput { loss: words[0], grad_norm: self.clipping().then_some(words[1]) });
                    self.queued.pop_front();
                }
            }
        }
        Ok(())
    }

    /// One training step whose loss is read without blocking: the form the browser uses (where
    /// `Executor::step` cannot wait), and what `step` runs natively.
    pub async fn train_step(&mut self, images: &[f32], targets: &[i64]) -> Result<f32> {
        self.upload(images, Some(targets))?;
        self.train_step_resident().await
    }

    /// [`GpuExecutor::train_step`] on the batch already on the device (after
    /// [`Executor::upload_pixels`], say).
    pub async fn train_step_resident(&mut self) -> Result<f32> {
        self.submit_step(Readback::Loss)?;
        Ok(self.gpu.map_read_async(&self.loss_staging, "reading the loss").await?[0])
    }

    /// Forward only, the logits (N, classes) read without blocking (see [`GpuExecutor::train_step`]).
    pub async fn forward_async(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        self.upload(images, None)?;
        self.forward_resident_async().await
    }

    /// [`GpuExecutor::forward_async`] on the images already on the device.
    pub async fn forward_resident_async(&mut self) -> Result<Vec<f32>> {
        self.resident.check_images()?;
        self.write_step_words()?;
        let pixels = self.pixels_commands();
        let forward = self.prepared_forward.take().unwrap_or_else(|| self.record_forward());
        self.gpu.submit_buffers(pixels.into_iter().chain([forward]), "forward")?;
        self.count_forward();
        // The next forward's commands, recorded while the device runs this one.
        self.prepared_forward = Some(self.record_forward());
        let len = self.tensors[self.sched.value[self.plan.output]].len as usize;
        let mut v = self.gpu.map_read_async(&self.logits_staging, "reading the logits").await?;
        v.truncate(len);
        Ok(v)
    }

    /// The parameters and buffers, read without blocking (see [`GpuExecutor::train_step`]).
    pub async fn params_async(&self) -> Result<ParamSet> {
        let data = self.gpu.read_many_async(&[&self.params]).await?.pop().unwrap_or_default();
        let mut p = self.layout.like(data)?;
        p.counters.clone_from(&self.layout.counters);
        Ok(p)
    }

    /// Checks and uploads a batch, with its targets for a training step (queue writes: no
    /// allocation). The images stay on the device until the next batch replaces them.
    fn upload(&mut self, images: &[f32], targets: Option<&[i64]>) -> Result<()> {
        self.resident = Resident::Nothing;
        self.plan.check_input(images, targets)?;
        self.pixels_pending = false;
        self.gpu.write(&self.tensors[self.sched.value[0]], images)?;
        self.upload_targets(targets)
    }

    /// Writes a checked batch's targets (none: images only, for `forward`).
    fn upload_targets(&mut self, targets: Option<&[i64]>) -> Result<()> {
        if let Some(targets) = targets {
            for (d, &t) in self.targets_scratch.iter_mut().zip(targets) {
                *d = t as i32;
            }
            self.gpu.write(&self.targets, &self.targets_scratch)?;
        }
        self.resident = if targets.is_some() { Resident::Batch } else { Resident::Images };
        Ok(())
    }

    /// Writes the running step's counter and learning rate (a queue write: no allocation).
    fn write_step_words(&self) -> Result<()> {
        let words = match &self.opts.optimizer {
            Some(o) => o.step_words(&self.opts.schedule, self.steps),
            None => {
                StepWords { step_lo: self.steps as u32, step_hi: (self.steps >> 32) as u32, ..StepWords::default() }
            }
        };
        self.gpu.write(&self.step_words, bytemuck::bytes_of(&words))
    }

    /// Counters (`num_batches_tracked`) count train-mode forward passes.
    fn count_forward(&mut self) {
        if self.plan.mode == Mode::Train {
            for n in &self.plan.nodes {
                for &c in &n.counters {
                    self.layout.set_counter(c, self.layout.counter(c) + 1);
                }
            }
        }
    }
}

impl Executor for GpuExecutor {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn step(&mut self, images: &[f32], targets: &[i64], want_loss: bool) -> Result<Option<f32>> {
        self.upload(images, Some(targets))?;
        self.step_resident(want_loss)
    }

    fn step_resident(&mut self, want_loss: bool) -> Result<Option<f32>> {
        if want_loss {
            return blocking("a training step", self.train_step_resident()).map(Some);
        }
        self.submit_step(Readback::Loss)?;
        Ok(None)
    }

    fn step_queued(&mut self, images: &[f32], targets: &[i64], losses: &mut Vec<StepOutput>) -> Result<()> {
        self.upload(images, Some(targets))?;
        self.step_queued_resident(losses)
    }

    fn step_queued_resident(&mut self, losses: &mut Vec<StepOutput>) -> Result<()> {
        if self.queued.len() == LOSS_RING {
            // The oldest slot is needed again: wait for its step only (later ones keep running).
            self.take_oldest(losses, "reading a queued loss")?;
        }
        let slot = (self.queued_total % LOSS_RING as u64) as usize;
        let index = self.submit_step(Readback::Ring(slot))?;
        let to = self.ring_mapped[slot].clone();
        self.loss_ring[slot].slice(..).map_async(wgpu::MapMode::Read, move |r| {
            *to.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        });
        self.queued.push_back(Queued { slot, index });
        self.queued_total += 1;
        self.gpu.poll("reading a queued loss")?;
        self.collect_losses(losses)
    }

    fn upload_pixels(&mut self, pixels: &[u8], to_tensor: &ToTensor, targets: Option<&[i64]>) -> Result<()> {
        self.resident = Resident::Nothing;
        self.plan.check_pixels(pixels, to_tensor, targets)?;
        if self.table_written != to_tensor.values() {
            self.gpu.write(&self.pixel_table, to_tensor.values())?;
            self.table_written.clear();
            self.table_written.extend_from_slice(to_tensor.values());
        }
        // Whole words straight from the caller's bytes; the last 1 to 3 bytes padded to a word.
        let whole = pixels.len() / 4 * 4;
        self.gpu.write(&self.pixels.slice(0, whole as u64 / 4), &pixels[..whole])?;
        if whole < pixels.len() {
            let mut last = [0u8; 4];
            last[..pixels.len() - whole].copy_from_slice(&pixels[whole..]);
            self.gpu.write(&self.pixels.slice(whole as u64 / 4, 1), &last)?;
        }
        self.pixels_pending = true;
        self.upload_targets(targets)
    }

    fn finish_queued(&mut self, losses: &mut Vec<StepOutput>) -> Result<()> {
        while !self.queued.is_empty() {
            self.take_oldest(losses, "reading the queued losses")?;
        }
        Ok(())
    }

    fn forward(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        blocking("a forward pass", self.forward_async(images))
    }

    fn forward_resident(&mut self) -> Result<Vec<f32>> {
        blocking("a forward pass", self.forward_resident_async())
    }

    fn logits(&self) -> Result<Vec<f32>> {
        self.gpu.read(&self.tensors[self.sched.value[self.plan.output]])
    }
    fn params(&self) -> Result<ParamSet> {
        blocking("reading the parameters", self.params_async())
    }
    fn set_params(&mut self, p: &ParamSet) -> Result<()> {
        let mut q = self.layout.like(p.data.clone())?;
        if p.counters.len() != q.counters.len() {
            return Err(Error::Graph("set_params: counters differ from the model's".into()));
        }
        q.counters.clone_from(&p.counters);
        self.gpu.write(&self.params, &q.data)?;
        self.layout = q;
        Ok(())
    }
    fn grads(&self) -> Result<ParamSet> {
        self.grad_layout.like(self.gpu.read(&self.grads.slice(0, self.grad_layout.data.len() as u64))?)
    }
    fn grad_norm(&self) -> Result<Option<f32>> {
        match self.clipping() {
            true => Ok(Some(self.gpu.read(&self.grad_norm)?[0])),
            false => Ok(None),
        }
    }
    fn optimizer_state(&self) -> Result<OptimizerState> {
        let names = self.opts.optimizer.map_or(&[][..], |o| o.state_names());
        let data = self.gpu.read_many(&self.state.iter().collect::<Vec<_>>())?;
        let buffers = names
            .iter()
            .zip(data)
            .map(|(n, d)| Ok((n.to_string(), self.grad_layout.like(d)?)))
            .collect::<Result<_>>()?;
        Ok(OptimizerState { steps: self.steps, buffers })
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let bufs = state_buffers(self.opts.optimizer.as_ref(), &self.grad_layout, state)?;
        for (v, b) in self.state.iter().zip(&bufs) {
            self.gpu.write(v, &b.data)?;
        }
        self.steps = state.steps;
        Ok(())
    }

    fn tensors(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let names = tensor_names(&self.plan, &self.sched);
        let views: Vec<&View> = names.iter().map(|(_, t)| &self.tensors[*t]).collect();
        let data = self.gpu.read_many(&views)?;
        Ok(names.into_iter().map(|(n, _)| n).zip(data).collect())
    }

    fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn sync(&self) -> Result<()> {
        self.gpu.wait("waiting for the device")
    }

    fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    fn profile(&mut self, images: &[f32], targets: &[i64]) -> Result<Vec<KernelTime>> {
        self.upload(images, Some(targets))?;
        self.write_step_words()?;
        let kernels: Vec<&Kernel> = self.kernels.iter().chain(&self.optimizer).collect();
        let times = Program::time(&self.gpu, &kernels)?;
        let report = kernels
            .iter()
            .zip(times)
            .map(|(k, seconds)| KernelTime { name: k.label.clone(), seconds, flops: k.flops, bytes: k.bytes })
            .collect();
        self.steps += 1;
        self.count_forward();
        Ok(report)
    }
}
