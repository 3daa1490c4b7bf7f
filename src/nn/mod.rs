//! Networks as PyTorch writes them. A [`Module`] adds nodes to a graph in its `forward` (like
//! `nn.Module.forward`); every layer ([`Conv2d`], [`ReLU`], [`BatchNorm2d`], …) is a module, a
//! [`Sequential`] chains named children, and a residual block is a small struct whose `forward`
//! branches and merges (see `examples/custom_network.rs`). Entries are named by the module path
//! exactly as PyTorch names them (`layer2.0.downsample.1.running_var`), initialised like PyTorch's
//! defaults from a seeded RNG and held in one flat [`ParamSet`].

pub mod models;

use crate::graph::{Builder, Graph, Value};
use crate::ops::interface::{Init, Role};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

pub use crate::ops::activation::Approximate;
pub use crate::ops::{
    AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Dropout2d, Flatten, LeakyReLU,
    Linear, MaxPool2d, ReLU, SiLU, Sigmoid, Tanh, ELU, GELU,
};

/// A piece of network: `forward` adds its nodes to the graph and returns its output.
pub trait Module: Send + Sync {
    fn forward(&self, g: &mut Builder, x: Value) -> Value;
}

/// nn.Sequential with named children (`nn.Sequential(OrderedDict(...))`; PyTorch names unnamed
/// children "0", "1", …, which [`Sequential::push`] does too).
#[derive(Clone, Default)]
pub struct Sequential {
    pub children: Vec<(String, Arc<dyn Module>)>,
}

impl Sequential {
    pub fn new() -> Self {
        Sequential::default()
    }
    /// Appends a child under `name`.
    pub fn add(mut self, name: &str, m: impl Module + 'static) -> Self {
        self.children.push((name.into(), Arc::new(m)));
        self
    }
    /// Appends a child named by its index, as `nn.Sequential(a, b, c)` does.
    pub fn push(self, m: impl Module + 'static) -> Self {
        let name = self.children.len().to_string();
        self.add(&name, m)
    }
}

impl Module for Sequential {
    fn forward(&self, g: &mut Builder, mut x: Value) -> Value {
        for (i, (name, m)) in self.children.iter().enumerate() {
            x = g.call_child(i, name, m.as_ref(), x);
        }
        x
    }
}

/// One entry of a state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub key: String,
    /// The key had every [`Sequential`] been built from a list, `nn.Sequential(*layers)`, whose
    /// children PyTorch names by position (`0.0.weight` for Tudui's `model1.conv1.weight`). A
    /// state dict may name each Sequential's children either way: the tutorial that Tudui comes
    /// from holds its layers in an unnamed Sequential, `model1.0.weight`
    /// ([`crate::io::state_dict::select`]).
    pub indexed_key: String,
    pub shape: Vec<usize>,
    pub role: Role,
    pub init: Init,
    /// Index of the graph node the entry belongs to.
    pub node: usize,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_param(&self) -> bool {
        self.role == Role::Param
    }
}

/// A network's state dict in one flat vector: trainable parameters first (the optimizer and the
/// gradients cover `data[..trainable]`), then f32 buffers; each entry starts at a multiple of 64
/// floats (256 bytes) so the GPU can bind it directly, padding staying zero. Int64 counters
/// (`num_batches_tracked`) live in `counters`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSet {
    pub specs: Vec<ParamSpec>,
    /// Start of each entry in `data`, or in `counters` for a [`Role::Counter`].
    pub offsets: Vec<usize>,
    pub data: Vec<f32>,
    pub counters: Vec<i64>,
    /// Words of `data` holding the trainable parameters.
    pub trainable: usize,
}

/// Floats between entry starts (256 bytes).
pub const PARAM_ALIGN: usize = 64;

impl ParamSet {
    pub fn zeros(specs: Vec<ParamSpec>) -> Self {
        let mut offsets = vec![0; specs.len()];
        let aligned = |s: &ParamSpec| s.numel().div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
        let mut at = 0;
        for (i, s) in specs.iter().enumerate().filter(|(_, s)| s.is_param()) {
            offsets[i] = at;
            at += aligned(s);
        }
        let trainable = at.max(PARAM_ALIGN);
        at = trainable;
        for (i, s) in specs.iter().enumerate().filter(|(_, s)| s.role == Role::Buffer) {
            offsets[i] = at;
            at += aligned(s);
        }
        let mut n_counters = 0;
        for (i, _) in specs.iter().enumerate().filter(|(_, s)| s.role == Role::Counter) {
            offsets[i] = n_counters;
            n_counters += 1;
        }
        ParamSet { specs, offsets, data: vec![0.0; at], counters: vec![0; n_counters], trainable }
    }

    pub fn index(&self, key: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.key == key)
    }
    /// An f32 entry's values (empty for a counter).
    pub fn get(&self, i: usize) -> &[f32] {
        match self.specs[i].role {
            Role::Counter => &[],
            _ => &self.data[self.offsets[i]..][..self.specs[i].numel()],
        }
    }
    pub fn get_mut(&mut self, i: usize) -> &mut [f32] {
        match self.specs[i].role {
            Role::Counter => &mut [],
            _ => {
                let n = self.specs[i].numel();
                &mut self.data[self.offsets[i]..][..n]
            }
        }
    }
    /// (offset, length) of an f32 entry in `data`.
    pub fn range(&self, i: usize) -> (usize, usize) {
        match self.specs[i].role {
            Role::Counter => (0, 0),
            _ => (self.offsets[i], self.specs[i].numel()),
        }
    }
    /// Several distinct f32 entries at once, mutable, in the order asked.
    pub fn entries_mut(&mut self, idx: &[usize]) -> crate::ops::interface::Bufs<&mut [f32]> {
        let ranges: crate::ops::interface::Bufs<(usize, usize)> = idx.iter().map(|&i| self.range(i)).collect();
        split_disjoint(&mut self.data, &ranges)
    }
    /// A counter entry's value.
    pub fn counter(&self, i: usize) -> i64 {
        self.counters[self.offsets[i]]
    }
    pub fn set_counter(&mut self, i: usize, v: i64) {
        let at = self.offsets[i];
        self.counters[at] = v;
    }
    pub fn by_key(&self, key: &str) -> Option<&[f32]> {
        self.index(key).map(|i| self.get(i))
    }
    /// Number of trainable parameters (`sum(p.numel() for p in model.parameters())`).
    pub fn count(&self) -> usize {
        self.specs.iter().filter(|s| s.is_param()).map(|s| s.numel()).sum()
    }
    /// The trainable entries only, zeroed: the layout of gradients and optimizer state.
    pub fn trainable_layout(&self) -> ParamSet {
        let (specs, offsets): (Vec<_>, Vec<_>) =
            self.specs.iter().zip(&self.offsets).filter(|(s, _)| s.is_param()).map(|(s, &o)| (s.clone(), o)).unzip();
        ParamSet { specs, offsets, data: vec![0.0; self.trainable], counters: Vec::new(), trainable: self.trainable }
    }
    /// Same layout, other values: a flat gradient or optimizer state of these entries.
    pub fn like(&self, data: Vec<f32>) -> Result<ParamSet> {
        if data.len() != self.data.len() {
            return Err(Error::Graph(format!(
                "flat tensor of {} floats given for parameters of {}",
                data.len(),
                self.data.len()
            )));
        }
        Ok(ParamSet { data, ..self.clone() })
    }
    /// Copies every entry of `from` that has the same key, kind and shape here (`load_state_dict`
    /// of what fits); gives the keys of the entries left as they were.
    pub fn copy_matching(&mut self, from: &ParamSet) -> Vec<String> {
        let mut left = Vec::new();
        for i in 0..self.specs.len() {
            let s = &self.specs[i];
            match from.index(&s.key).filter(|&j| from.specs[j].shape == s.shape && from.specs[j].role == s.role) {
                Some(j) if s.role == Role::Counter => self.set_counter(i, from.counter(j)),
                Some(j) => self.get_mut(i).copy_from_slice(from.get(j)),
                None => left.push(s.key.clone()),
            }
        }
        left
    }
    /// Whether every entry (counters aside) is finite; else the key of the first that is not.
    pub fn first_non_finite(&self) -> Option<&str> {
        (0..self.specs.len()).find(|&i| self.get(i).iter().any(|v| !v.is_finite())).map(|i| self.specs[i].key.as_str())
    }
}

/// Mutable slices of disjoint (offset, length) ranges of `data`, in the order given.
pub fn split_disjoint<'a>(
    data: &'a mut [f32],
    ranges: &[(usize, usize)],
) -> crate::ops::interface::Bufs<&'a mut [f32]> {
    let mut order: crate::ops::interface::Bufs<usize> = (0..ranges.len()).collect();
    order.sort_unstable_by_key(|&i| ranges[i].0);
    let mut out: crate::ops::interface::Bufs<Option<&'a mut [f32]>> = (0..ranges.len()).map(|_| None).collect();
    let mut rest = data;
    let mut at = 0;
    for i in order {
        let (off, len) = ranges[i];
        assert!(off >= at, "split_disjoint: ranges overlap");
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(off - at);
        let (mine, tail) = tail.split_at_mut(len);
        out[i] = Some(mine);
        rest = tail;
        at = off + len;
    }
    out.into_iter().map(|s| s.unwrap()).collect()
}

/// A network: its graph, the input it takes (C, H, W) and its state dict.
#[derive(Clone)]
pub struct Model {
    pub graph: Arc<Graph>,
    pub input: [usize; 3],
    pub params: ParamSet,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("input", &self.input).field("nodes", &self.graph.nodes.len()).finish()
    }
}

impl Model {
    /// Builds the graph of `module` on a (C, H, W) input and initialises every entry as PyTorch's
    /// defaults do: U(±1/√fan_in) for Conv2d/Linear weights and biases, constants for BatchNorm,
    /// drawn in state-dict order from ChaCha8 seeded with `seed`. Shapes are checked when the model
    /// is planned at a batch size ([`crate::graph::Plan::new`]).
    pub fn new(module: &dyn Module, input: [usize; 3], seed: u64) -> Result<Model> {
        let graph = Builder::build(module)?;
        let mut params = ParamSet::zeros(graph.param_specs());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for i in 0..params.specs.len() {
            match params.specs[i].init {
                Init::Uniform { fan_in } => {
                    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                    for v in params.get_mut(i) {
                        *v = rng.random_range(-bound..=bound);
                    }
                }
                Init::Const(c) => params.get_mut(i).fill(c),
            }
        }
        Ok(Model { graph: Arc::new(graph), input, params })
    }

    /// Like `print(model)`: one line per node, `(path): repr`.
    pub fn describe(&self) -> String {
        self.graph.nodes.iter().map(|n| format!("  ({}): {}\n", n.name, n.op.describe())).collect()
    }
}
