//! A [`Plan`] fixes a model at a batch size and mode: every node's op planned at its input shapes
//! (errors name the node), which values need a gradient, and which nodes run a backward.

use super::Graph;
use crate::nn::Model;
use crate::ops::interface::{Mode, Node, Role};
use crate::ops::to_tensor::ToTensor;
use crate::{Error, Result};

/// A node of the graph at the plan's shapes.
pub struct PlannedNode {
    /// Path of the node, e.g. `layer2.0.conv1`.
    pub name: String,
    /// PyTorch's repr of its op.
    pub describe: String,
    pub node: Box<dyn Node>,
    /// Value indices read (0: the network's input; i + 1: node i's output).
    pub inputs: Vec<usize>,
    /// ParamSet indices of its f32 entries (parameters and buffers), in declaration order.
    pub state: Vec<usize>,
    /// ParamSet indices of its trainable entries, in declaration order.
    pub params: Vec<usize>,
    /// ParamSet indices of its counters (`num_batches_tracked`).
    pub counters: Vec<usize>,
    /// Whether a training step runs its backward (it has parameters or an input needing a gradient).
    pub backward: bool,
}

/// A model's shapes at one batch size and mode; the output is (N, classes).
pub struct Plan {
    pub batch: usize,
    pub mode: Mode,
    /// The input's shape (N, C, H, W).
    pub input: Vec<usize>,
    /// Shape of every value (0: the input; i + 1: node i's output).
    pub shapes: Vec<Vec<usize>>,
    pub nodes: Vec<PlannedNode>,
    /// The value holding the logits.
    pub output: usize,
    pub classes: usize,
    /// Whether each value needs a gradient in a training step.
    pub needs_grad: Vec<bool>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("batch", &self.batch)
            .field("mode", &self.mode)
            .field("nodes", &self.nodes.iter().map(|n| (&n.name, &self.shapes[n.inputs[0]])).collect::<Vec<_>>())
            .field("classes", &self.classes)
            .finish()
    }
}

impl Plan {
    pub fn new(model: &Model, batch: usize, mode: Mode) -> Result<Plan> {
        if batch == 0 {
            return Err(Error::Graph("batch size must be at least 1".into()));
        }
        let graph: &Graph = &model.graph;
        let input = vec![batch, model.input[0], model.input[1], model.input[2]];
        let mut shapes = vec![input.clone()];
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let mut needs_grad = vec![false];
        for (i, gn) in graph.nodes.iter().enumerate() {
            let ins: Vec<&[usize]> = gn.inputs.iter().map(|&v| shapes[v].as_slice()).collect();
            let node = gn.op.plan(&ins, mode).map_err(|e| Error::Graph(format!("{}: {e}", gn.name)))?;
            let out = node.out_shape();
            if node.is_view() && out.iter().product::<usize>() != ins[0].iter().product::<usize>() {
                return Err(Error::Graph(format!("{}: a view must keep its input's size", gn.name)));
            }
            let mut p = PlannedNode {
                name: gn.name.clone(),
                describe: gn.op.describe(),
                node,
                inputs: gn.inputs.clone(),
                state: Vec::new(),
                params: Vec::new(),
                counters: Vec::new(),
                backward: false,
            };
            // Every entry the op declares must be in the model's ParamSet (the executors rely on it).
            for d in gn.op.params() {
                let key = format!("{}.{}", gn.name, d.name);
                let k = model
                    .params
                    .index(&key)
                    .ok_or_else(|| Error::Graph(format!("{}: the model's parameters have no {key}", gn.name)))?;
                let spec = &model.params.specs[k];
                if spec.shape != d.shape || spec.role != d.role {
                    return Err(Error::Graph(format!(
                        "{}: {key} is {:?} {:?} in the model's parameters, the op declares {:?} {:?}",
                        gn.name, spec.role, spec.shape, d.role, d.shape
                    )));
                }
                match d.role {
                    Role::Param => {
                        p.state.push(k);
                        p.params.push(k);
                    }
                    Role::Buffer => p.state.push(k),
                    Role::Counter => p.counters.push(k),
                }
            }
            p.backward = !p.params.is_empty() || gn.inputs.iter().any(|&v| needs_grad[v]);
            needs_grad.push(p.backward);
            shapes.push(out);
            nodes.push(p);
            debug_assert_eq!(shapes.len(), i + 2);
        }
        // Every node must contribute to the output (a dead branch would get no gradient).
        let mut reaches = vec![false; shapes.len()];
        reaches[graph.output] = true;
        for (i, n) in nodes.iter().enumerate().rev() {
            if reaches[i + 1] {
                for &v in &n.inputs {
                    reaches[v] = true;
                }
            }
        }
        if let Some(i) = (0..nodes.len()).find(|&i| !reaches[i + 1]) {
            return Err(Error::Graph(format!("{}: its output does not reach the network's output", nodes[i].name)));
        }
        let out = &shapes[graph.output];
        if out.len() != 2 {
            return Err(Error::Graph(format!(
                "the network's output {out:?} is not (N, classes), as CrossEntropyLoss needs"
            )));
        }
        Ok(Plan { batch, mode, classes: out[1], output: graph.output, input, shapes, nodes, needs_grad })
    }

    /// Floating-point work of one forward pass.
    pub fn forward_flops(&self) -> u64 {
        self.nodes.iter().map(|n| n.node.flops().forward).sum()
    }

    /// Floating-point work of one training step: forward, and each backward as it runs (input
    /// gradients only where needed).
    pub fn step_flops(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                let f = n.node.flops();
                let dinp = n.inputs.iter().any(|&v| self.needs_grad[v]);
                f.forward + if n.backward { f.backward_params + if dinp { f.backward_input } else { 0 } } else { 0 }
            })
            .sum()
    }

    /// Checks what an executor is given to upload: images, with targets for a training step (an
    /// error on an inference plan).
    pub fn check_input(&self, images: &[f32], targets: Option<&[i64]>) -> Result<()> {
        match targets {
            Some(_) if self.mode != Mode::Train => Err(super::not_training()),
            Some(targets) => self.check_batch(images, targets),
            None => self.check_images(images),
        }
    }

    /// [`Plan::check_input`] for a batch given as bytes and the table that makes the input of
    /// them ([`crate::Executor::upload_pixels`]).
    pub fn check_pixels(&self, pixels: &[u8], to_tensor: &ToTensor, targets: Option<&[i64]>) -> Result<()> {
        to_tensor.check(pixels.len(), &self.input)?;
        match targets {
            Some(_) if self.mode != Mode::Train => Err(super::not_training()),
            Some(targets) => self.check_targets(targets),
            None => Ok(()),
        }
    }

    /// Checks images against the input shape.
    fn check_images(&self, images: &[f32]) -> Result<()> {
        let want: usize = self.input.iter().product();
        if images.len() != want {
            return Err(Error::Graph(format!(
                "images hold {} floats; a batch of shape {:?} needs {want}",
                images.len(),
                self.input
            )));
        }
        Ok(())
    }

    /// Checks a batch: image count and values' length, and targets in [0, classes).
    fn check_batch(&self, images: &[f32], targets: &[i64]) -> Result<()> {
        self.check_images(images)?;
        self.check_targets(targets)
    }

    /// Checks targets: one per image, each in [0, classes).
    fn check_targets(&self, targets: &[i64]) -> Result<()> {
        if targets.len() != self.batch {
            return Err(Error::Graph(format!("{} targets for a batch of {}", targets.len(), self.batch)));
        }
        if let Some((i, t)) = targets.iter().enumerate().find(|(_, &t)| t < 0 || t >= self.classes as i64) {
            return Err(Error::Graph(format!("target {t} at index {i} is out of range for {} classes", self.classes)));
        }
        Ok(())
    }
}
