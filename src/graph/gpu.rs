//! The GPU executor: every buffer, bind group and pipeline is made once in `new`; a training step
//! records forward + loss + backward + SGD into one compute pass and one queue submit, and reads
//! back the loss (4 bytes) only when asked.

use super::memory::{assign, Life};
use super::{loss_options, tensor_names, Executor, Geometry, KernelTime, Options, Plan};
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::Kernel;
use crate::nn::{Model, ParamSet};
use crate::ops::{conv2d, cross_entropy, linear, maxpool2d, sgd};
use crate::{Error, Result};
use std::sync::Arc;

pub struct GpuExecutor {
    gpu: Arc<Gpu>,
    plan: Plan,
    layout: ParamSet,
    params: View,
    grads: View,
    momentum: View,
    input: View,
    targets: View,
    /// acts[k]: input (k = 0) or output of node k - 1, Flatten's being its input's view.
    acts: Vec<View>,
    /// dacts[k]: gradient w.r.t. acts[k] (None for the input).
    dacts: Vec<Option<View>>,
    logp: View,
    loss: View,
    loss_staging: wgpu::Buffer,
    /// Where `forward` copies the logits to read them (same submit, no allocation per batch).
    logits_staging: wgpu::Buffer,
    /// Forward kernels, then loss and backward: `kernels[..n_forward]` is inference.
    kernels: Vec<Kernel>,
    n_forward: usize,
    sgd_first: Option<Kernel>,
    sgd_next: Option<Kernel>,
    steps: u64,
    targets_scratch: Vec<i32>,
    /// Bytes of GPU memory this executor allocated.
    pub bytes: u64,
}

/// Follows Flatten's views: the activation index whose buffer acts[k] is.
fn act_rep(plan: &Plan, mut k: usize) -> usize {
    while k > 0 && matches!(plan.nodes[k - 1].geo, Geometry::Flatten) {
        k -= 1;
    }
    k
}

/// The gradient index whose buffer dacts[k] is (Flatten's backward is a view too).
fn dact_rep(plan: &Plan, mut k: usize) -> usize {
    while k < plan.nodes.len() && matches!(plan.nodes[k].geo, Geometry::Flatten) {
        k += 1;
    }
    k
}

impl GpuExecutor {
    /// Plans and builds everything for `batch`; errors name the batch size.
    pub fn new(gpu: Arc<Gpu>, model: &Model, batch: usize, opts: Options) -> Result<Self> {
        let plan = Plan::new(model, batch)?;
        Self::build(gpu, model, plan, opts).map_err(|e| match e {
            Error::Graph(m) => Error::Graph(format!("building the GPU executor at batch {batch}: {m}")),
            other => Error::Graph(format!("building the GPU executor at batch {batch}: {other}")),
        })
    }

    fn build(gpu: Arc<Gpu>, model: &Model, plan: Plan, opts: Options) -> Result<Self> {
        let batch = plan.batch;
        let l = plan.nodes.len();
        let numel = |s: &[usize]| s.iter().product::<usize>();

        // Schedule times: upload 0, forward of node i at 2(i+1), loss 2(l+1) (+1 for its backward),
        // backward of node i at 2(l+2) + 2(l-1-i).
        let fwd = |i: usize| 2 * (i + 1);
        let loss_t = 2 * (l + 1);
        let bwd = |i: usize| 2 * (l + 2) + 2 * (l - 1 - i);
        let mut lives: Vec<Life> = Vec::new();
        let mut act_life = vec![usize::MAX; l + 1];
        let mut dact_life = vec![usize::MAX; l + 1];
        let mut idx_life = vec![usize::MAX; l];
        for k in 0..=l {
            if act_rep(&plan, k) == k {
                let words = if k == 0 { numel(&plan.input) } else { numel(&plan.nodes[k - 1].out_shape) };
                act_life[k] = lives.len();
                lives.push(Life { words, def: if k == 0 { 0 } else { fwd(k - 1) }, last: 0 });
            }
        }
        for k in 1..=l {
            if dact_rep(&plan, k) == k {
                let words = numel(&plan.nodes[k - 1].out_shape);
                dact_life[k] = lives.len();
                lives.push(Life { words, def: if k == l { loss_t + 1 } else { bwd(k) }, last: 0 });
            }
        }
        fn use_at(lives: &mut [Life], id: usize, t: usize) {
            lives[id].last = lives[id].last.max(t);
        }
        for (i, node) in plan.nodes.iter().enumerate() {
            use_at(&mut lives, act_life[act_rep(&plan, i)], fwd(i));
            if node.backward_reads_input() {
                use_at(&mut lives, act_life[act_rep(&plan, i)], bwd(i));
            }
            if !matches!(node.geo, Geometry::Flatten) {
                use_at(&mut lives, dact_life[dact_rep(&plan, i + 1)], bwd(i));
            }
            if let Geometry::Pool(g) = node.geo {
                idx_life[i] = lives.len();
                lives.push(Life { words: g.planes() * g.oh * g.ow, def: fwd(i), last: bwd(i) });
            }
        }
        // The logits stay readable after the step.
        use_at(&mut lives, act_life[act_rep(&plan, l)], bwd(0) + 1);
        for life in lives.iter_mut() {
            life.last = life.last.max(life.def);
        }
        let (slot_of, slot_words) = assign(&lives, !opts.keep_all);
        let slots: Vec<View> = slot_words
            .iter()
            .enumerate()
            .map(|(s, &w)| gpu.zeros(&format!("activation slot {s}"), w as u64))
            .collect::<Result<_>>()?;
        let view = |id: usize| View { len: lives[id].words as u64, ..slots[slot_of[id]].clone() };

        let acts: Vec<View> = (0..=l).map(|k| view(act_life[act_rep(&plan, k)])).collect();
        let dacts: Vec<Option<View>> = (0..=l).map(|k| (k > 0).then(|| view(dact_life[dact_rep(&plan, k)]))).collect();
        let indices: Vec<Option<View>> =
            (0..l).map(|i| (idx_life[i] != usize::MAX).then(|| view(idx_life[i]))).collect();

        let layout = model.params.clone();
        let params = gpu.upload("params", &layout.data)?;
        let grads = gpu.zeros("grads", layout.data.len() as u64)?;
        let momentum = gpu.zeros("momentum", layout.data.len() as u64)?;
        let pview = |v: &View, k: usize| v.slice(layout.offsets[k] as u64, layout.specs[k].numel() as u64);
        let targets = gpu.zeros("targets", batch as u64)?;

        let mut kernels = Vec::new();
        for (i, node) in plan.nodes.iter().enumerate() {
            let w = node.weight.map(|k| pview(&params, k));
            let b = node.bias.map(|k| pview(&params, k));
            let (x, y) = (&acts[i], &acts[i + 1]);
            match node.geo {
                Geometry::Conv(g) => kernels
                    .extend(conv2d::forward_gpu(&gpu, &node.name, &g, x, w.as_ref().unwrap(), b.as_ref(), y)?.kernels),
                Geometry::Pool(g) => {
                    kernels.push(maxpool2d::forward_gpu(&gpu, &node.name, &g, x, y, indices[i].as_ref().unwrap())?)
                }
                Geometry::Flatten => {}
                Geometry::Linear { n, cfg } => kernels.extend(
                    linear::forward_gpu(&gpu, &node.name, &cfg, n, x, w.as_ref().unwrap(), b.as_ref(), y)?.kernels,
                ),
            }
        }
        let n_forward = kernels.len();
        let dims = (batch, plan.classes, 1);
        let ce = cross_entropy::build_gpu(
            &gpu,
            "loss",
            &acts[l],
            &targets,
            false,
            dacts[l].as_ref().unwrap(),
            &loss_options(),
            dims,
        )?;
        kernels.extend(ce.forward.kernels);
        kernels.extend(ce.backward.kernels);
        for (i, node) in plan.nodes.iter().enumerate().rev() {
            let w = node.weight.map(|k| pview(&params, k));
            let dw = node.weight.map(|k| pview(&grads, k));
            let db = node.bias.map(|k| pview(&grads, k));
            let dout = dacts[i + 1].as_ref().unwrap();
            let dinp = if i > 0 { dacts[i].as_ref() } else { None };
            match node.geo {
                Geometry::Conv(g) => kernels.extend(
                    conv2d::backward_gpu(
                        &gpu,
                        &node.name,
                        &g,
                        &acts[i],
                        w.as_ref().unwrap(),
                        dout,
                        dinp,
                        dw.as_ref().unwrap(),
                        db.as_ref(),
                    )?
                    .kernels,
                ),
                Geometry::Pool(g) => {
                    if let Some(dinp) = dinp {
                        kernels.push(maxpool2d::backward_gpu(
                            &gpu,
                            &node.name,
                            &g,
                            indices[i].as_ref().unwrap(),
                            dout,
                            dinp,
                        )?);
                    }
                }
                Geometry::Flatten => {}
                Geometry::Linear { n, cfg } => kernels.extend(
                    linear::backward_gpu(
                        &gpu,
                        &node.name,
                        &cfg,
                        n,
                        &acts[i],
                        w.as_ref().unwrap(),
                        dout,
                        dinp,
                        dw.as_ref().unwrap(),
                        db.as_ref(),
                    )?
                    .kernels,
                ),
            }
        }
        let (sgd_first, sgd_next) = match &opts.sgd {
            Some(s) => (
                Some(sgd::step_gpu(&gpu, s, true, &params, &grads, &momentum)?),
                Some(sgd::step_gpu(&gpu, s, false, &params, &grads, &momentum)?),
            ),
            None => (None, None),
        };
        let loss_staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("loss readback"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let logits_staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: acts[l].bytes().max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.check("building the GPU executor")?;
        let bytes = 4
            * (slot_words.iter().sum::<usize>() as u64
                + 3 * layout.data.len() as u64
                + batch as u64
                + ce.logp.len
                + ce.out.len
                + 1);
        Ok(GpuExecutor {
            gpu,
            plan,
            layout,
            params,
            grads,
            momentum,
            input: acts[0].clone(),
            targets,
            acts,
            dacts,
            logp: ce.logp,
            loss: ce.out,
            loss_staging,
            logits_staging,
            kernels,
            n_forward,
            sgd_first,
            sgd_next,
            steps: 0,
            targets_scratch: vec![0; batch],
            bytes,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Kernel labels in recording order (forward, loss, backward, optimizer).
    pub fn kernel_labels(&self) -> Vec<String> {
        let mut v: Vec<String> = self.kernels.iter().map(|k| k.label.clone()).collect();
        if let Some(k) = &self.sgd_next {
            v.push(k.label.clone());
        }
        v
    }

    fn read_loss(&self) -> Result<f32> {
        Ok(self.gpu.map_read(&self.loss_staging, "reading the loss")?[0])
    }
}

impl Executor for GpuExecutor {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn step(&mut self, images: &[f32], targets: &[i64], want_loss: bool) -> Result<Option<f32>> {
        self.plan.check_batch(images, targets)?;
        for (d, &t) in self.targets_scratch.iter_mut().zip(targets) {
            *d = t as i32;
        }
        self.gpu.write(&self.input, images)?;
        self.gpu.write(&self.targets, &self.targets_scratch)?;
        let mut enc = self.gpu.encoder("train step");
        {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("train step"), timestamp_writes: None });
            for k in &self.kernels {
                k.record(&mut pass);
            }
            let opt = if self.steps == 0 { &self.sgd_first } else { &self.sgd_next };
            if let Some(k) = opt {
                k.record(&mut pass);
            }
        }
        enc.copy_buffer_to_buffer(&self.loss.buffer, self.loss.offset, &self.loss_staging, 0, 4);
        self.gpu.submit(enc, "train step")?;
        if self.sgd_first.is_some() {
            self.steps += 1;
        }
        if want_loss {
            return self.read_loss().map(Some);
        }
        Ok(None)
    }

    fn forward(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let want: usize = self.plan.input.iter().product();
        if images.len() != want {
            return Err(Error::Graph(format!(
                "images hold {} floats; a batch of shape {:?} needs {want}",
                images.len(),
                self.plan.input
            )));
        }
        self.gpu.write(&self.input, images)?;
        let mut enc = self.gpu.encoder("forward");
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("forward"), timestamp_writes: None });
            for k in &self.kernels[..self.n_forward] {
                k.record(&mut pass);
            }
        }
        let logits = &self.acts[self.plan.nodes.len()];
        enc.copy_buffer_to_buffer(&logits.buffer, logits.offset, &self.logits_staging, 0, logits.bytes());
        self.gpu.submit(enc, "forward")?;
        let mut v = self.gpu.map_read(&self.logits_staging, "reading the logits")?;
        v.truncate(logits.len as usize);
        Ok(v)
    }

    fn logits(&self) -> Result<Vec<f32>> {
        self.gpu.read(&self.acts[self.plan.nodes.len()])
    }
    fn params(&self) -> Result<ParamSet> {
        self.layout.like(self.gpu.read(&self.params)?)
    }
    fn set_params(&mut self, p: &ParamSet) -> Result<()> {
        let p = self.layout.like(p.data.clone())?;
        self.gpu.write(&self.params, &p.data)
    }
    fn grads(&self) -> Result<ParamSet> {
        self.layout.like(self.gpu.read(&self.grads)?)
    }
    fn optimizer_state(&self) -> Result<(ParamSet, u64)> {
        Ok((self.layout.like(self.gpu.read(&self.momentum)?)?, self.steps))
    }
    fn set_optimizer_state(&mut self, momentum: &ParamSet, steps: u64) -> Result<()> {
        let m = self.layout.like(momentum.data.clone())?;
        self.gpu.write(&self.momentum, &m.data)?;
        self.steps = steps;
        Ok(())
    }

    fn tensors(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let l = self.plan.nodes.len();
        let mut views: Vec<&View> = self.acts[1..].iter().collect();
        views.push(&self.logp);
        for k in (1..=l).rev() {
            views.push(self.dacts[k].as_ref().unwrap());
        }
        let data = self.gpu.read_many(&views)?;
        Ok(tensor_names(&self.plan).into_iter().zip(data).collect())
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
        self.plan.check_batch(images, targets)?;
        for (d, &t) in self.targets_scratch.iter_mut().zip(targets) {
            *d = t as i32;
        }
        self.gpu.write(&self.input, images)?;
        self.gpu.write(&self.targets, &self.targets_scratch)?;
        let opt = if self.steps == 0 { &self.sgd_first } else { &self.sgd_next };
        let kernels: Vec<&Kernel> = self.kernels.iter().chain(opt.iter()).collect();
        let times = if self.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            let n = kernels.len() as u32;
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * n,
            });
            let resolve = Arc::new(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile timestamps"),
                size: 16 * n as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }));
            let mut enc = self.gpu.encoder("profile");
            for (i, k) in kernels.iter().enumerate() {
                let tw = wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                };
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&k.label),
                    timestamp_writes: Some(tw),
                });
                k.record(&mut pass);
            }
            enc.resolve_query_set(&qs, 0..2 * n, &resolve, 0);
            self.gpu.submit(enc, "profile")?;
            let raw = self.gpu.read(&View::whole(resolve))?;
            let tick = |i: usize| (raw[2 * i].to_bits() as u64) | ((raw[2 * i + 1].to_bits() as u64) << 32);
            let period = self.gpu.queue.get_timestamp_period() as f64 * 1e-9;
            (0..kernels.len()).map(|i| tick(2 * i + 1).saturating_sub(tick(2 * i)) as f64 * period).collect::<Vec<_>>()
        } else {
            let mut v = Vec::new();
            for k in &kernels {
                let t = std::time::Instant::now();
                let mut enc = self.gpu.encoder("profile");
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&k.label),
                        timestamp_writes: None,
                    });
                    k.record(&mut pass);
                }
                self.gpu.submit(enc, "profile")?;
                self.gpu.wait("profile")?;
                v.push(t.elapsed().as_secs_f64());
            }
            v
        };
        if self.sgd_first.is_some() {
            self.steps += 1;
        }
        Ok(kernels
            .iter()
            .zip(times)
            .map(|(k, seconds)| KernelTime { name: k.label.clone(), seconds, flops: k.flops, bytes: k.bytes })
            .collect())
    }
}
