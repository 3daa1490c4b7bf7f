//! The step's schedule and its memory plan. Every tensor a step touches (activations, saved
//! tensors, gradients, gradient contributions, the loss's and every op's scratch) is declared here
//! with its lifetime in the schedule, and tensors whose lifetimes do not overlap share a slot. The
//! executors allocate the slots once and nothing else.
//!
//! Gradients: a value read by one node gets its gradient written by that node's backward (or is
//! that node's output gradient itself, for Add and views). A value read by several nodes gets one
//! contribution per reader, summed in a fixed order (readers in forward order) by an accumulation
//! task before its producer's backward: the same bits every run, on every device.

use super::plan::Plan;
use crate::ops::interface::{Fusible, Reads, Scratch};

/// A tensor to place: its size in words and the first and last times it is alive.
#[derive(Clone, Copy, Debug)]
pub struct Life {
    pub words: u64,
    pub def: usize,
    pub last: usize,
}

/// Assigns each tensor a slot so that tensors sharing a slot never overlap in time (a tensor
/// defined at the time another is last read does not share with it: one kernel reads the one and
/// writes the other). Greedy by size: the largest tensors take slots first, and each smaller one
/// goes into the first slot free over its whole lifetime. Returns (slot of each tensor, size of
/// each slot in words).
pub fn assign(lives: &[Life], share: bool) -> (Vec<usize>, Vec<u64>) {
    let mut order: Vec<usize> = (0..lives.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lives[i].words), lives[i].def, i));
    let mut slot_of = vec![usize::MAX; lives.len()];
    // Per slot: its size and the lifetimes placed in it.
    let mut slots: Vec<(u64, Vec<(usize, usize)>)> = Vec::new();
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 <= b.1 && b.0 <= a.1;
    for i in order {
        let l = lives[i];
        let span = (l.def, l.last);
        let free =
            if share { slots.iter().position(|(_, used)| used.iter().all(|&u| !overlaps(u, span))) } else { None };
        let s = free.unwrap_or_else(|| {
            slots.push((l.words, Vec::new()));
            slots.len() - 1
        });
        slots[s].1.push(span);
        slot_of[i] = s;
    }
    (slot_of, slots.into_iter().map(|s| s.0).collect())
}

/// One unit of the step, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Forward(usize),
    /// CrossEntropyLoss forward and backward.
    Loss,
    /// Sums a value's gradient contributions ([`Schedule::sums`]`[i]`).
    Accumulate(usize),
    Backward(usize),
}

/// A value's gradient as the sum of its contributions: `steps` are (a, b, out) additions in order,
/// the last writing the value's gradient.
#[derive(Clone, Debug)]
pub struct Sum {
    pub value: usize,
    pub terms: Vec<usize>,
    pub steps: Vec<(usize, usize, usize)>,
}

/// The order of a step's work and where every tensor lives. Tensor ids index `words`, `slot_of`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub tasks: Vec<Task>,
    /// Size of each tensor in 32-bit words.
    pub words: Vec<u64>,
    pub slot_of: Vec<usize>,
    pub slot_words: Vec<u64>,
    /// Tensor of each value's data (a view shares its input's).
    pub value: Vec<usize>,
    /// Tensor of each value's complete gradient (training schedules only).
    pub grad: Vec<Option<usize>>,
    /// Per node and input: the tensor its backward writes (None: not needed, or it is the output
    /// gradient itself).
    pub dinputs: Vec<Vec<Option<usize>>>,
    pub saved: Vec<Vec<usize>>,
    pub scratch_forward: Vec<Vec<usize>>,
    pub scratch_backward: Vec<Vec<usize>>,
    /// Per node: its [`Scratch::kept`] tensors.
    pub kept: Vec<Vec<usize>>,
    /// The loss's scratch (what the device's loss kernels ask for) and the logits' gradient.
    pub loss_scratch: Vec<usize>,
    pub dlogits: Option<usize>,
    pub sums: Vec<Sum>,
    /// Time of each task's tensors' first and last use, for reports.
    pub lives: Vec<Life>,
    /// The value each node's forward writes ([`Folds::writes`]).
    pub writes: Vec<usize>,
}

/// Nodes an inference schedule folds into the node producing their input, whose forward applies
/// them as an epilogue ([`crate::ops::interface::Node::takes_epilogue`]): eval-mode BatchNorm2d and
/// ReLU after a Conv2d on the CPU path. Their outputs are never written: the producer writes the
/// last one's.
#[derive(Clone, Debug)]
pub struct Folds {
    /// Node i runs inside its producer's forward: no task of its own.
    pub folded: Vec<bool>,
    /// The value node i's forward writes: i + 1, or the output of the last node folded into it.
    pub writes: Vec<usize>,
    /// The affine node (eval-mode BatchNorm2d) folded into node i, if any.
    pub affine: Vec<Option<usize>>,
    /// Whether a ReLU is folded into node i (after the affine node, if both).
    pub relu: Vec<bool>,
}

impl Folds {
    /// No node folded.
    pub fn none(plan: &Plan) -> Folds {
        let n = plan.nodes.len();
        Folds { folded: vec![false; n], writes: (1..=n).collect(), affine: vec![None; n], relu: vec![false; n] }
    }

    /// Each node taking an epilogue folds in the chain after it: an affine node, then a ReLU,
    /// each the only reader of the value before it (which is not the network's output).
    pub fn of(plan: &Plan) -> Folds {
        let mut f = Folds::none(plan);
        let mut readers = vec![Vec::new(); plan.shapes.len()];
        for (j, n) in plan.nodes.iter().enumerate() {
            for &v in &n.inputs {
                readers[v].push(j);
            }
        }
        for i in 0..plan.nodes.len() {
            if f.folded[i] || !plan.nodes[i].node.takes_epilogue() {
                continue;
            }
            let mut v = i + 1;
            while let [j] = readers[v][..] {
                let next = &plan.nodes[j];
                if v == plan.output || next.inputs.len() != 1 {
                    break;
                }
                match next.node.fusible() {
                    Some(Fusible::Affine) if f.affine[i].is_none() && !f.relu[i] => f.affine[i] = Some(j),
                    Some(Fusible::Relu) if !f.relu[i] => f.relu[i] = true,
                    _ => break,
                }
                f.folded[j] = true;
                v = j + 1;
            }
            f.writes[i] = v;
        }
        f
    }
}

/// What to schedule.
pub struct Request<'a> {
    /// Forward, loss and backward (else forward only).
    pub backward: bool,
    /// Give every tensor its own slot (to read every activation and gradient after the step).
    pub keep_all: bool,
    /// Each node's scratch on the device that will run it.
    pub scratch: &'a dyn Fn(usize) -> Scratch,
    /// What each node's backward reads on that device.
    pub reads: &'a dyn Fn(usize) -> Reads,
    /// The loss's scratch on that device.
    pub loss_scratch: Vec<u64>,
    /// Nodes folded into others (forward-only schedules).
    pub folds: Option<&'a Folds>,
}

impl Schedule {
    pub fn new(plan: &Plan, req: &Request<'_>) -> Schedule {
        let n = plan.nodes.len();
        let numel = |v: usize| plan.shapes[v].iter().product::<usize>() as u64;
        let mut words: Vec<u64> = Vec::new();
        fn new(words: &mut Vec<u64>, w: u64) -> usize {
            words.push(w);
            words.len() - 1
        }
        let mut value = vec![new(&mut words, numel(0))];
        let mut saved = Vec::with_capacity(n);
        let mut scratch_forward = Vec::with_capacity(n);
        let mut scratch_backward = Vec::with_capacity(n);
        let mut kept = Vec::with_capacity(n);
        for (i, node) in plan.nodes.iter().enumerate() {
            let t = if node.node.is_view() { value[node.inputs[0]] } else { new(&mut words, numel(i + 1)) };
            value.push(t);
            saved.push(node.node.saved().into_iter().map(|w| new(&mut words, w)).collect::<Vec<_>>());
            let s = (req.scratch)(i);
            scratch_forward.push(s.forward.into_iter().map(|w| new(&mut words, w)).collect::<Vec<_>>());
            kept.push(s.kept.into_iter().map(|w| new(&mut words, w)).collect::<Vec<_>>());
            let backward = req.backward && node.backward && !node.node.is_view();
            let sb = if backward { s.backward } else { Vec::new() };
            scratch_backward.push(sb.into_iter().map(|w| new(&mut words, w)).collect::<Vec<_>>());
        }
        let none = Folds::none(plan);
        let folds = req.folds.unwrap_or(&none);
        assert!(!req.backward || !folds.folded.contains(&true), "a training schedule folds no nodes");
        // The outputs of folded nodes and of producers that write a later value are never written.
        let written = |v: usize| (0..n).any(|k| !folds.folded[k] && folds.writes[k] == v);
        for (i, node) in plan.nodes.iter().enumerate() {
            if !node.node.is_view() && !written(i + 1) {
                words[value[i + 1]] = 0;
            }
        }
        let mut tasks: Vec<Task> =
            (0..n).filter(|&i| !plan.nodes[i].node.is_view() && !folds.folded[i]).map(Task::Forward).collect();
        let mut grad = vec![None; plan.shapes.len()];
        let mut dinputs: Vec<Vec<Option<usize>>> = plan.nodes.iter().map(|n| vec![None; n.inputs.len()]).collect();
        let mut sums = Vec::new();
        let mut loss_scratch = Vec::new();
        let mut dlogits = None;
        if req.backward {
            // How many contributions each value's gradient has: one per backward reading it, and
            // the loss's for the logits.
            let mut count = vec![0usize; plan.shapes.len()];
            count[plan.output] += 1;
            for node in plan.nodes.iter().filter(|n| n.backward) {
                for &v in node.inputs.iter().filter(|&&v| plan.needs_grad[v]) {
                    count[v] += 1;
                }
            }
            // contrib[v]: tensors holding v's contributions, in the order they are written.
            let mut contrib: Vec<Vec<usize>> = vec![Vec::new(); plan.shapes.len()];
            let edge = |words: &mut Vec<u64>,
                        grad: &mut Vec<Option<usize>>,
                        contrib: &mut Vec<Vec<usize>>,
                        v: usize,
                        alias: Option<usize>| {
                let t = alias.unwrap_or_else(|| new(words, numel(v)));
                if count[v] == 1 {
                    grad[v] = Some(t);
                }
                contrib[v].push(t);
                t
            };
            loss_scratch = req.loss_scratch.iter().map(|&w| new(&mut words, w)).collect();
            tasks.push(Task::Loss);
            dlogits = Some(edge(&mut words, &mut grad, &mut contrib, plan.output, None));
            for (j, node) in plan.nodes.iter().enumerate().rev() {
                if !node.backward {
                    continue;
                }
                let out = j + 1;
                if count[out] > 1 {
                    // Written last reader first: summed in forward order.
                    let terms: Vec<usize> = contrib_of(&contrib, out);
                    let mut steps = Vec::new();
                    let mut acc = terms[0];
                    for &t in &terms[1..] {
                        let dst = new(&mut words, numel(out));
                        steps.push((acc, t, dst));
                        acc = dst;
                    }
                    grad[out] = Some(acc);
                    tasks.push(Task::Accumulate(sums.len()));
                    sums.push(Sum { value: out, terms, steps });
                }
                let dout = grad[out].expect("every value needing a gradient receives one");
                for (k, &v) in node.inputs.iter().enumerate() {
                    if !plan.needs_grad[v] {
                        continue;
                    }
                    let alias = node.node.grad_is_dout(k).then_some(dout);
                    let t = edge(&mut words, &mut grad, &mut contrib, v, alias);
                    if alias.is_none() {
                        dinputs[j][k] = Some(t);
                    }
                }
                if !node.node.is_view() {
                    tasks.push(Task::Backward(j));
                }
            }
        }

        // Lifetimes: time 0 is the upload of the input, task k runs at time k + 1.
        let mut lives: Vec<Life> = words.iter().map(|&w| Life { words: w, def: usize::MAX, last: 0 }).collect();
        let mut touch = |t: usize, time: usize| {
            lives[t].def = lives[t].def.min(time);
            lives[t].last = lives[t].last.max(time);
        };
        touch(value[0], 0);
        for (k, task) in tasks.iter().enumerate() {
            let time = k + 1;
            match *task {
                Task::Forward(i) => {
                    let node = &plan.nodes[i];
                    node.inputs.iter().for_each(|&v| touch(value[v], time));
                    touch(value[folds.writes[i]], time);
                    saved[i].iter().chain(&scratch_forward[i]).chain(&kept[i]).for_each(|&t| touch(t, time));
                }
                Task::Loss => {
                    touch(value[plan.output], time);
                    loss_scratch.iter().chain(dlogits.iter()).for_each(|&t| touch(t, time));
                }
                Task::Accumulate(s) => {
                    for &(a, b, c) in &sums[s].steps {
                        [a, b, c].into_iter().for_each(|t| touch(t, time));
                    }
                }
                Task::Backward(j) => {
                    let node = &plan.nodes[j];
                    let reads = (req.reads)(j);
                    touch(grad[j + 1].unwrap(), time);
                    if reads.inputs {
                        node.inputs.iter().for_each(|&v| touch(value[v], time));
                    }
                    if reads.output {
                        touch(value[j + 1], time);
                    }
                    saved[j].iter().chain(&scratch_backward[j]).chain(&kept[j]).for_each(|&t| touch(t, time));
                    dinputs[j].iter().flatten().for_each(|&t| touch(t, time));
                }
            }
        }
        // The logits stay readable after the step, and the batch stays on the device until the
        // next one replaces it (`Executor::step_resident` runs on it again); a tensor nothing
        // touches (the saved tensors of a forward-only schedule are still written) lives at its
        // definition.
        let end = tasks.len() + 1;
        touch(value[plan.output], end);
        touch(value[0], end);
        for l in lives.iter_mut() {
            if l.def == usize::MAX {
                l.def = 0;
            }
            l.last = l.last.max(l.def);
        }
        let (slot_of, slot_words) = assign(&lives, !req.keep_all);
        Schedule {
            tasks,
            words,
            slot_of,
            slot_words,
            value,
            grad,
            dinputs,
            saved,
            scratch_forward,
            scratch_backward,
            kept,
            loss_scratch,
            dlogits,
            sums,
            lives,
            writes: folds.writes.clone(),
        }
    }

    /// Words of every slot together: the planned memory.
    pub fn planned_words(&self) -> u64 {
        self.slot_words.iter().sum()
    }

    /// The most words alive at one time (views counted once): no assignment can use less.
    pub fn peak_live_words(&self) -> u64 {
        let end = self.lives.iter().map(|l| l.last).max().unwrap_or(0);
        (0..=end)
            .map(|t| self.lives.iter().filter(|l| l.def <= t && t <= l.last).map(|l| l.words).sum::<u64>())
            .max()
            .unwrap_or(0)
    }
}

/// The contributions gathered for `v`, in forward order of their readers.
fn contrib_of(contrib: &[Vec<usize>], v: usize) -> Vec<usize> {
    contrib[v].iter().rev().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_lifetimes_share_and_overlapping_do_not() {
        let lives = [
            Life { words: 10, def: 0, last: 2 },
            Life { words: 5, def: 1, last: 3 },
            Life { words: 8, def: 3, last: 4 }, // may take slot 0 (free after 2), not slot 1 (last read at 3)
        ];
        let (slot, sizes) = assign(&lives, true);
        assert_eq!(slot, vec![0, 1, 0]);
        assert_eq!(sizes, vec![10, 5]);
        let (slot, sizes) = assign(&lives, false);
        assert_eq!(slot, vec![0, 2, 1]);
        assert_eq!(sizes, vec![10, 8, 5]);
    }
}
