//! The CPU path of the executor: the schedule run with each op's CPU code (f32), over slots
//! allocated once per executor (the same memory plan as the GPU's, without GPU scratch).

use super::memory::{Request, Schedule, Task};
use super::{loss_options, not_training, random_key, state_buffers, tensor_names, Executor, KernelTime, Options, Plan};
use crate::nn::{split_disjoint, Model, ParamSet};
use crate::ops::interface::{CpuBackward, CpuForward, Mode, RandomKey, Scratch};
use crate::ops::{adam, cross_entropy, sgd};
use crate::optim::{Decay, Optimizer, OptimizerState};
use crate::Result;
use std::time::Instant;

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
    /// Seconds of each task of the last step, then the optimizer's.
    timings: Vec<f64>,
    /// Name, flops and bytes of each timed task, built once.
    labels: Vec<(String, u64, u64)>,
}

impl CpuExecutor {
    pub fn new(model: &Model, batch: usize, opts: Options) -> Result<Self> {
        let plan = Plan::new(model, batch, opts.mode)?;
        let none = |_: usize| Scratch::default();
        let sched = Schedule::new(
            &plan,
            &Request {
                backward: opts.mode == Mode::Train,
                keep_all: opts.keep_all,
                scratch: &none,
                loss_scratch: vec![(batch * plan.classes) as u64],
            },
        );
        let slots = sched.slot_words.iter().map(|&w| vec![0.0; w as usize]).collect();
        let grads = model.params.trainable_layout();
        let n_state = opts.optimizer.map_or(0, |o| o.state_names().len());
        Ok(CpuExecutor {
            labels: labels(&plan, &sched, grads.data.len()),
            opts,
            params: model.params.clone(),
            state: vec![grads.clone(); if opts.mode == Mode::Train { n_state } else { 0 }],
            grads,
            steps: 0,
            slots,
            timings: Vec::new(),
            plan,
            sched,
        })
    }

    fn random(&self, i: usize) -> RandomKey {
        RandomKey { key: random_key(self.opts.seed, i), step: self.steps }
    }

    /// Runs the tasks of the schedule (forward ones only unless `train`), timing each.
    fn run(&mut self, images: &[f32], targets: Option<&[i64]>) -> Result<Option<f32>> {
        self.timings.clear();
        let t0 = self.sched.value[0];
        let (s, w) = (self.sched.slot_of[t0], self.sched.words[t0] as usize);
        self.slots[s][..w].copy_from_slice(images);
        let mut loss = None;
        for k in 0..self.sched.tasks.len() {
            let task = self.sched.tasks[k];
            let t = Instant::now();
            match task {
                Task::Forward(i) => self.forward_node(i),
                Task::Loss => match targets {
                    Some(targets) => loss = Some(self.loss(targets)),
                    None => break,
                },
                Task::Accumulate(s) => self.accumulate(s),
                Task::Backward(j) => self.backward_node(j),
            }
            self.timings.push(t.elapsed().as_secs_f64());
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
        let CpuExecutor { plan, sched, params, slots, .. } = self;
        let node = &plan.nodes[i];
        let mut out = take(slots, sched, sched.value[i + 1]);
        let mut saved: Vec<Vec<f32>> = sched.saved[i].iter().map(|&t| take(slots, sched, t)).collect();
        {
            let inputs = node.inputs.iter().map(|&v| tensor(slots, sched, sched.value[v])).collect();
            let words = sched.words[sched.value[i + 1]] as usize;
            let saved_w: Vec<usize> = sched.saved[i].iter().map(|&t| sched.words[t] as usize).collect();
            node.node.forward_cpu(CpuForward {
                inputs,
                out: &mut out[..words],
                state: params.entries_mut(&node.state),
                saved: saved.iter_mut().zip(saved_w).map(|(v, w)| &mut v[..w]).collect(),
                random,
            });
        }
        put(slots, sched, sched.value[i + 1], out);
        for (&t, v) in sched.saved[i].iter().zip(saved) {
            put(slots, sched, t, v);
        }
    }

    fn backward_node(&mut self, j: usize) {
        let random = self.random(j);
        let CpuExecutor { plan, sched, params, grads, slots, .. } = self;
        let node = &plan.nodes[j];
        let mut dinp: Vec<Option<Vec<f32>>> =
            sched.dinputs[j].iter().map(|t| t.map(|t| take(slots, sched, t))).collect();
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
                    &node.params.iter().map(|&k| params.range(k)).collect::<Vec<_>>(),
                ),
                random,
            });
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
            let (x, y) = (tensor(slots, sched, a), tensor(slots, sched, b));
            for ((o, &p), &q) in out[..n].iter_mut().zip(x).zip(y) {
                *o = p + q;
            }
            put(slots, sched, c, out);
        }
    }

    fn loss(&mut self, targets: &[i64]) -> f32 {
        let CpuExecutor { plan, sched, slots, .. } = self;
        let dims = (plan.batch, plan.classes, 1);
        let o = loss_options();
        let tgt = cross_entropy::Targets::Class(targets);
        let logits = tensor(slots, sched, sched.value[plan.output]);
        let (loss, logp) = cross_entropy::forward_cpu(logits, tgt, &o, dims);
        let dlogits = cross_entropy::backward_cpu(&logp, tgt, &[1.0], &o, dims);
        let lp = sched.loss_scratch[0];
        let (s, w) = (sched.slot_of[lp], sched.words[lp] as usize);
        slots[s][..w].copy_from_slice(&logp);
        let d = sched.dlogits.unwrap();
        let (s, w) = (sched.slot_of[d], sched.words[d] as usize);
        slots[s][..w].copy_from_slice(&dlogits);
        loss[0]
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

    fn step(&mut self, images: &[f32], targets: &[i64], _want_loss: bool) -> Result<Option<f32>> {
        if self.plan.mode != Mode::Train {
            return Err(not_training());
        }
        self.plan.check_batch(images, targets)?;
        let loss = self.run(images, Some(targets))?;
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
        self.plan.check_images(images)?;
        self.run(images, None)?;
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
/// (last node first), then the optimizer.
fn labels(plan: &Plan, sched: &Schedule, trainable: usize) -> Vec<(String, u64, u64)> {
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
    v.push(("optimizer".into(), 0, 16 * trainable as u64));
    v
}
