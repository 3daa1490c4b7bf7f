//! Building a graph from modules: each node is an op applied to values, named by the module path
//! it was added under (`layer2.0.conv1`), its parameters keyed `<path>.<name>` as in PyTorch.

use crate::nn::{Module, ParamSpec};
use crate::ops::interface::{Op, Role};
use crate::ops::{add::Add, flatten::Flatten, relu::ReLU};
use crate::{Error, Result};
use std::collections::HashSet;
use std::sync::Arc;

/// A tensor of the graph: the network's input or a node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Value(pub(crate) usize);

impl Value {
    /// The graph's value index: 0 is the input, `i + 1` the output of node `i`.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One node: an op, the values it reads, and its path.
#[derive(Clone, Debug)]
pub struct GraphNode {
    pub name: String,
    /// The path with every child of a [`crate::nn::Sequential`] named by its position, as
    /// `nn.Sequential(*layers)` names them (`model1.0` for `model1.conv1`).
    pub indexed_name: String,
    pub op: Arc<dyn Op>,
    /// Value indices (0: the network's input; i + 1: the output of node i).
    pub inputs: Vec<usize>,
}

/// A network as a list of nodes in the order `forward` added them (a topological order); node `i`
/// writes value `i + 1`, and `output` is the value the network returns.
#[derive(Clone, Debug)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub output: usize,
}

impl Graph {
    /// Every node's parameters and buffers, in node order, keyed by path.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut v = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for d in n.op.params() {
                v.push(ParamSpec {
                    key: format!("{}.{}", n.name, d.name),
                    indexed_key: format!("{}.{}", n.indexed_name, d.name),
                    shape: d.shape,
                    role: d.role,
                    init: d.init,
                    node: i,
                });
            }
        }
        v
    }
    /// Whether any entry is trainable in node `i`.
    pub fn has_params(&self, i: usize) -> bool {
        self.nodes[i].op.params().iter().any(|d| d.role == Role::Param)
    }
}

/// What a module's `forward` writes into: `call` a child module under a name, `apply` an op.
pub struct Builder {
    /// The modules being called: each one's name, and its position where a Sequential calls it.
    scope: Vec<(String, String)>,
    nodes: Vec<GraphNode>,
    names: HashSet<String>,
    errors: Vec<String>,
}

impl Builder {
    /// Runs `module.forward` on the network's input and returns the graph it built; an error lists
    /// every problem (an op given the wrong number of inputs, a parameter key used twice).
    pub fn build(module: &dyn Module) -> Result<Graph> {
        let mut b = Builder { scope: Vec::new(), nodes: Vec::new(), names: HashSet::new(), errors: Vec::new() };
        let out = module.forward(&mut b, Value(0));
        let mut keys = HashSet::new();
        for (i, n) in b.nodes.iter().enumerate() {
            for d in n.op.params() {
                let key = format!("{}.{}", n.name, d.name);
                if !keys.insert(key.clone()) {
                    b.errors.push(format!(
                        "{key} is declared by two nodes (node {i}, {}); each module with parameters may be called once",
                        n.name
                    ));
                }
            }
        }
        if b.nodes.is_empty() {
            b.errors.push("the network has no layers".into());
        }
        if !b.errors.is_empty() {
            return Err(Error::Graph(format!("building the network: {}", b.errors.join("; "))));
        }
        Ok(Graph { nodes: b.nodes, output: out.0 })
    }

    /// Runs a child module's `forward` under `name` (its nodes and parameters are named
    /// `<scope>.<name>.…`).
    pub fn call(&mut self, name: &str, m: &dyn Module, x: Value) -> Value {
        self.call_as(name, name, m, x)
    }

    /// [`Builder::call`] of a Sequential's child: `name`, or `index` in the entries'
    /// [`ParamSpec::indexed_key`].
    pub(crate) fn call_child(&mut self, index: usize, name: &str, m: &dyn Module, x: Value) -> Value {
        self.call_as(name, &index.to_string(), m, x)
    }

    fn call_as(&mut self, name: &str, indexed: &str, m: &dyn Module, x: Value) -> Value {
        self.scope.push((name.to_string(), indexed.to_string()));
        let y = m.forward(self, x);
        self.scope.pop();
        y
    }

    /// Adds a node applying `op` to `inputs`, named by the current scope and `name` (the scope
    /// alone when `name` is empty: a layer called as a module). A name already taken gets `#2`,
    /// `#3`, … (a parameter-free module such as a ReLU may be called several times).
    pub fn apply(&mut self, name: &str, op: impl Op + 'static, inputs: &[Value]) -> Value {
        let path = |part: fn(&(String, String)) -> &str| {
            let mut path: Vec<&str> = self.scope.iter().map(part).filter(|s| !s.is_empty()).collect();
            if !name.is_empty() {
                path.push(name);
            }
            if path.is_empty() {
                format!("node{}", self.nodes.len())
            } else {
                path.join(".")
            }
        };
        let (base, indexed) = (path(|s| &s.0), path(|s| &s.1));
        let (mut full, mut suffix) = (base.clone(), String::new());
        let mut k = 2;
        while self.names.contains(&full) {
            suffix = format!("#{k}");
            full = format!("{base}{suffix}");
            k += 1;
        }
        let indexed_name = indexed + &suffix;
        if op.arity() != inputs.len() {
            self.errors.push(format!("{full}: {} takes {} inputs, given {}", op.describe(), op.arity(), inputs.len()));
        }
        if let Some(v) = inputs.iter().find(|v| v.0 > self.nodes.len()) {
            self.errors.push(format!("{full}: input value {} does not exist yet", v.0));
        }
        self.names.insert(full.clone());
        let inputs = inputs.iter().map(|v| v.0).collect();
        self.nodes.push(GraphNode { name: full, indexed_name, op: Arc::new(op), inputs });
        Value(self.nodes.len())
    }

    /// `F.relu(x)`.
    pub fn relu(&mut self, x: Value) -> Value {
        self.apply("relu", ReLU, &[x])
    }
    /// `a + b` (a residual merge).
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.apply("add", Add, &[a, b])
    }
    /// `torch.flatten(x, 1)`.
    pub fn flatten(&mut self, x: Value) -> Value {
        self.apply("flatten", Flatten::new(), &[x])
    }
}

/// Every op is a module: calling it adds one node named by the scope it is called under.
impl<T: Op + Clone + 'static> Module for T {
    fn forward(&self, g: &mut Builder, x: Value) -> Value {
        g.apply("", self.clone(), &[x])
    }
}
