//! The CPU path of the executor: the same plan computed with the ops' CPU code (f32).

use super::{loss_options, tensor_names, Executor, Geometry, KernelTime, Options, Plan};
use crate::nn::{Model, ParamSet};
use crate::ops::{conv2d, cross_entropy, linear, maxpool2d, sgd};
use crate::Result;
use std::time::Instant;

pub struct CpuExecutor {
    plan: Plan,
    opts: Options,
    params: ParamSet,
    grads: ParamSet,
    momentum: ParamSet,
    steps: u64,
    /// acts[0] is the input; acts[i + 1] the output of node i (empty for Flatten: a view of acts[i]).
    acts: Vec<Vec<f32>>,
    /// dacts[i + 1]: gradient w.r.t. the output of node i (empty for Flatten: it is dacts[i + 2]).
    dacts: Vec<Vec<f32>>,
    indices: Vec<Vec<i32>>,
    logp: Vec<f32>,
    /// Seconds per op of the last step, in the order of `ops` (forward, loss, backward, sgd).
    timings: Vec<f64>,
    /// Name, flops and bytes of each timed op, built once.
    ops: Vec<(String, u64, u64)>,
}

impl CpuExecutor {
    pub fn new(model: &Model, batch: usize, opts: Options) -> Result<Self> {
        let plan = Plan::new(model, batch)?;
        let l = plan.nodes.len();
        let zeros = model.params.like(vec![0.0; model.params.data.len()])?;
        Ok(CpuExecutor {
            opts,
            params: model.params.clone(),
            grads: zeros.clone(),
            momentum: zeros,
            steps: 0,
            acts: vec![Vec::new(); l + 1],
            dacts: vec![Vec::new(); l + 1],
            indices: vec![Vec::new(); l],
            logp: Vec::new(),
            timings: Vec::new(),
            ops: op_labels(&plan, model.params.data.len()),
            plan,
        })
    }

    /// The tensor behind acts[i], following Flatten's views back.
    fn act(&self, mut i: usize) -> &[f32] {
        while i > 0 && matches!(self.plan.nodes[i - 1].geo, Geometry::Flatten) {
            i -= 1;
        }
        &self.acts[i]
    }

    fn dact(&self, mut i: usize) -> &[f32] {
        while i < self.plan.nodes.len() && matches!(self.plan.nodes[i].geo, Geometry::Flatten) {
            i += 1;
        }
        &self.dacts[i]
    }

    fn run_forward(&mut self, images: &[f32]) {
        self.acts[0].clear();
        self.acts[0].extend_from_slice(images);
        self.timings.clear();
        for i in 0..self.plan.nodes.len() {
            let t = Instant::now();
            let node = &self.plan.nodes[i];
            let w = node.weight.map(|k| self.params.get(k));
            let b = node.bias.map(|k| self.params.get(k));
            let x = self.act(i);
            let out = match node.geo {
                Geometry::Conv(g) => conv2d::forward_cpu(&g, x, w.unwrap(), b),
                Geometry::Pool(g) => {
                    let (out, idx) = maxpool2d::forward_cpu(&g, x);
                    self.indices[i] = idx;
                    out
                }
                Geometry::Flatten => Vec::new(),
                Geometry::Linear { n, cfg } => linear::forward_cpu(&cfg, n, x, w.unwrap(), b),
            };
            self.acts[i + 1] = out;
            self.timings.push(t.elapsed().as_secs_f64());
        }
    }
}

impl Executor for CpuExecutor {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn step(&mut self, images: &[f32], targets: &[i64], _want_loss: bool) -> Result<Option<f32>> {
        self.plan.check_batch(images, targets)?;
        self.run_forward(images);
        let l = self.plan.nodes.len();
        let dims = (self.plan.batch, self.plan.classes, 1);
        let o = loss_options();
        let tgt = cross_entropy::Targets::Class(targets);
        let t = Instant::now();
        let (loss, logp) = cross_entropy::forward_cpu(self.act(l), tgt, &o, dims);
        self.dacts[l] = cross_entropy::backward_cpu(&logp, tgt, &[1.0], &o, dims);
        self.logp = logp;
        self.timings.push(t.elapsed().as_secs_f64());
        for i in (0..l).rev() {
            let t = Instant::now();
            let (geo, weight, bias) = {
                let n = &self.plan.nodes[i];
                (n.geo, n.weight, n.bias)
            };
            let need_dinp = i > 0;
            // Borrowed, not copied: everything read here is left untouched until the results land.
            let (dinp, dw, db) = {
                let dout = self.dact(i + 1);
                let x = self.act(i);
                match geo {
                    Geometry::Conv(g) => {
                        let w = self.params.get(weight.unwrap());
                        let gr = conv2d::backward_cpu(&g, x, w, dout, need_dinp, bias.is_some());
                        (gr.dinp, Some(gr.dweight), gr.dbias)
                    }
                    Geometry::Pool(g) => {
                        (need_dinp.then(|| maxpool2d::backward_cpu(&g, &self.indices[i], dout)), None, None)
                    }
                    Geometry::Flatten => (None, None, None),
                    Geometry::Linear { n, cfg } => {
                        let gr = linear::backward_cpu(&cfg, n, x, self.params.get(weight.unwrap()), dout, need_dinp);
                        (gr.dinp, Some(gr.dweight), gr.dbias)
                    }
                }
            };
            if let (Some(k), Some(dw)) = (weight, dw) {
                self.grads.get_mut(k).copy_from_slice(&dw);
            }
            if let (Some(k), Some(db)) = (bias, db) {
                self.grads.get_mut(k).copy_from_slice(&db);
            }
            self.dacts[i] = dinp.unwrap_or_default();
            self.timings.push(t.elapsed().as_secs_f64());
        }
        if let Some(s) = &self.opts.sgd {
            let t = Instant::now();
            sgd::step_cpu(s, self.steps == 0, &mut self.params.data, &self.grads.data, &mut self.momentum.data);
            self.steps += 1;
            self.timings.push(t.elapsed().as_secs_f64());
        }
        Ok(Some(loss[0]))
    }

    fn forward(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let want: usize = self.plan.input.iter().product();
        if images.len() != want {
            return Err(crate::Error::Graph(format!(
                "images hold {} floats; a batch of shape {:?} needs {want}",
                images.len(),
                self.plan.input
            )));
        }
        self.run_forward(images);
        self.logits()
    }

    fn logits(&self) -> Result<Vec<f32>> {
        Ok(self.act(self.plan.nodes.len()).to_vec())
    }
    fn params(&self) -> Result<ParamSet> {
        Ok(self.params.clone())
    }
    fn set_params(&mut self, p: &ParamSet) -> Result<()> {
        self.params = self.params.like(p.data.clone())?;
        Ok(())
    }
    fn grads(&self) -> Result<ParamSet> {
        Ok(self.grads.clone())
    }
    fn optimizer_state(&self) -> Result<(ParamSet, u64)> {
        Ok((self.momentum.clone(), self.steps))
    }
    fn set_optimizer_state(&mut self, momentum: &ParamSet, steps: u64) -> Result<()> {
        self.momentum = self.momentum.like(momentum.data.clone())?;
        self.steps = steps;
        Ok(())
    }

    fn tensors(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let l = self.plan.nodes.len();
        let mut v: Vec<Vec<f32>> = (1..=l).map(|i| self.act(i).to_vec()).collect();
        v.push(self.logp.clone());
        for i in (0..l).rev() {
            v.push(self.dact(i + 1).to_vec());
        }
        Ok(tensor_names(&self.plan).into_iter().zip(v).collect())
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
            .ops
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
        let floats: usize = self.acts.iter().chain(&self.dacts).map(|v| v.len()).sum::<usize>()
            + self.indices.iter().map(|v| v.len()).sum::<usize>()
            + 3 * self.params.data.len()
            + self.logp.len();
        4 * floats as u64
    }
}

/// The ops a step times, in order: each node's forward, the loss, each node's backward (last node
/// first), the SGD update; with their floating-point work (a backward without an input gradient
/// does half the work of one with it).
fn op_labels(plan: &Plan, params: usize) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> =
        plan.nodes.iter().map(|n| (n.name.clone(), 2 * node_macs(&n.geo), 0)).collect();
    v.push(("loss".into(), 0, 0));
    for (i, n) in plan.nodes.iter().enumerate().rev() {
        v.push((format!("{}.backward", n.name), 2 * node_macs(&n.geo) * if i > 0 { 2 } else { 1 }, 0));
    }
    v.push(("sgd".into(), 0, 12 * params as u64));
    v
}

/// Multiply-adds of a node's forward pass.
fn node_macs(g: &Geometry) -> u64 {
    (match g {
        Geometry::Conv(c) => c.macs(),
        Geometry::Linear { n, cfg } => n * cfg.in_features * cfg.out_features,
        _ => 0,
    }) as u64
}
