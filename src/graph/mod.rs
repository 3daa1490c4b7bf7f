//! The graph executor. A [`Plan`] infers every shape of a network at a batch size (errors name the
//! layer); its backward is derived by reversing the forward (reverse mode over the chain), with the
//! loss (CrossEntropyLoss, mean) at the end. [`cpu::CpuExecutor`] and [`gpu::GpuExecutor`] run the
//! same plan: forward, loss, backward and the optimizer step.

pub mod cpu;
pub mod gpu;
pub mod memory;

use crate::nn::{Layer, Model, ParamSet};
use crate::ops::{conv2d, cross_entropy, linear, maxpool2d, sgd};
use crate::{Error, Result};

/// Sizes of one node at the plan's batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Geometry {
    Conv(conv2d::Geometry),
    Pool(maxpool2d::Geometry),
    Flatten,
    Linear { n: usize, cfg: linear::Config },
}

#[derive(Clone, Debug)]
pub struct Node {
    /// Path of the layer, e.g. `model1.conv1`.
    pub name: String,
    pub layer: Layer,
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    pub geo: Geometry,
    /// Indices into the ParamSet.
    pub weight: Option<usize>,
    pub bias: Option<usize>,
}

impl Node {
    /// Whether the backward reads the node's input (Conv2d and Linear, for the weight gradient).
    pub fn backward_reads_input(&self) -> bool {
        matches!(self.geo, Geometry::Conv(_) | Geometry::Linear { .. })
    }
}

/// A network's shapes at one batch size; the last node's output is (N, classes).
#[derive(Clone, Debug)]
pub struct Plan {
    pub batch: usize,
    pub input: Vec<usize>,
    pub nodes: Vec<Node>,
    pub classes: usize,
}

impl Plan {
    pub fn new(model: &Model, batch: usize) -> Result<Plan> {
        if batch == 0 {
            return Err(Error::Graph("batch size must be at least 1".into()));
        }
        let input = vec![batch, model.input[0], model.input[1], model.input[2]];
        let mut shape = input.clone();
        let mut nodes = Vec::new();
        for (i, (_, layer)) in model.net.layers.iter().enumerate() {
            let name = model.net.path(i);
            let ctx = |e: Error| Error::Graph(format!("{name}: {e}"));
            let (geo, out) = match layer {
                Layer::Conv2d(c) => {
                    let g = c.geometry(&shape).map_err(ctx)?;
                    (Geometry::Conv(g), g.out_shape().to_vec())
                }
                Layer::MaxPool2d(c) => {
                    let g = c.geometry(&shape).map_err(ctx)?;
                    (Geometry::Pool(g), g.out_shape().to_vec())
                }
                Layer::Flatten => {
                    if shape.len() < 2 {
                        return Err(Error::Graph(format!(
                            "{name}: Flatten needs at least 2 dimensions, got {shape:?}"
                        )));
                    }
                    (Geometry::Flatten, vec![shape[0], shape[1..].iter().product()])
                }
                Layer::Linear(c) => {
                    let n = c.rows(&shape).map_err(ctx)?;
                    (Geometry::Linear { n, cfg: *c }, vec![n, c.out_features])
                }
            };
            let (weight, bias) =
                (model.params.index(&format!("{name}.weight")), model.params.index(&format!("{name}.bias")));
            // Every parameter a layer declares must be in the model's ParamSet (the executors rely on it).
            for (kind, _) in layer.params() {
                if model.params.index(&format!("{name}.{kind}")).is_none() {
                    return Err(Error::Graph(format!("{name}: the model's parameters have no {name}.{kind}")));
                }
            }
            nodes.push(Node {
                name,
                layer: *layer,
                in_shape: shape.clone(),
                out_shape: out.clone(),
                geo,
                weight,
                bias,
            });
            shape = out;
        }
        if shape.len() != 2 {
            return Err(Error::Graph(format!(
                "the network's output {shape:?} is not (N, classes), as CrossEntropyLoss needs"
            )));
        }
        Ok(Plan { batch, input, classes: shape[1], nodes })
    }

    /// Forward multiply-adds per batch.
    pub fn forward_macs(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n.geo {
                Geometry::Conv(g) => g.macs(),
                Geometry::Linear { n, cfg } => n * cfg.in_features * cfg.out_features,
                _ => 0,
            })
            .sum()
    }

    /// Checks a batch: image count and values' length, and targets in [0, classes).
    pub fn check_batch(&self, images: &[f32], targets: &[i64]) -> Result<()> {
        let want: usize = self.input.iter().product();
        if images.len() != want {
            return Err(Error::Graph(format!(
                "images hold {} floats; a batch of shape {:?} needs {want}",
                images.len(),
                self.input
            )));
        }
        if targets.len() != self.batch {
            return Err(Error::Graph(format!("{} targets for a batch of {}", targets.len(), self.batch)));
        }
        if let Some((i, t)) = targets.iter().enumerate().find(|(_, &t)| t < 0 || t >= self.classes as i64) {
            return Err(Error::Graph(format!("target {t} at index {i} is out of range for {} classes", self.classes)));
        }
        Ok(())
    }
}

/// How an executor steps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The optimizer; None: forward, loss and backward only.
    pub sgd: Option<sgd::Config>,
    /// Keep every activation and gradient alive to the end of the step (for --verify) instead of
    /// reusing buffers whose lifetimes do not overlap.
    pub keep_all: bool,
}

/// The loss every executor computes: CrossEntropyLoss with PyTorch's defaults.
pub fn loss_options() -> cross_entropy::Options {
    cross_entropy::Options::default()
}

/// What both executors offer; the GPU one keeps everything on the device until asked.
pub trait Executor {
    fn plan(&self) -> &Plan;
    /// Forward, loss, backward and (if configured) the SGD step; the loss only when `want_loss`.
    fn step(&mut self, images: &[f32], targets: &[i64], want_loss: bool) -> Result<Option<f32>>;
    /// Forward only; returns the logits (N, classes).
    fn forward(&mut self, images: &[f32]) -> Result<Vec<f32>>;
    /// Logits of the last step or forward.
    fn logits(&self) -> Result<Vec<f32>>;
    fn params(&self) -> Result<ParamSet>;
    fn set_params(&mut self, p: &ParamSet) -> Result<()>;
    /// Flat parameter gradients of the last step (same layout as the parameters).
    fn grads(&self) -> Result<ParamSet>;
    /// Flat momentum buffers and how many optimizer steps were taken.
    fn optimizer_state(&self) -> Result<(ParamSet, u64)>;
    fn set_optimizer_state(&mut self, momentum: &ParamSet, steps: u64) -> Result<()>;
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

/// Names [`Executor::tensors`] uses: node outputs in forward order, then gradients in backward order.
pub fn tensor_names(plan: &Plan) -> Vec<String> {
    let mut v: Vec<String> = plan.nodes.iter().map(|n| format!("{} out", n.name)).collect();
    v.push("loss logp".into());
    for n in plan.nodes.iter().rev() {
        v.push(format!("{} grad out", n.name));
    }
    v
}

/// Builds an executor on a device.
pub fn executor(device: &crate::Device, model: &Model, batch: usize, opts: Options) -> Result<Box<dyn Executor>> {
    if let Some(s) = &opts.sgd {
        s.check()?;
    }
    Ok(match device {
        crate::Device::Cpu => Box::new(cpu::CpuExecutor::new(model, batch, opts)?),
        crate::Device::Gpu(g) => Box::new(gpu::GpuExecutor::new(g.clone(), model, batch, opts)?),
    })
}

/// Tolerance of `--verify`: the largest error relative to the tensor's largest magnitude.
pub const VERIFY_TOL: f64 = 1e-3;

/// One tensor of a [`Comparison`].
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    /// max_abs over the reference tensor's largest magnitude.
    pub scaled: f64,
    pub bad: bool,
}

/// Every activation, activation gradient and parameter gradient of two executors' last steps.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub got: String,
    pub want: String,
    pub rows: Vec<Row>,
    /// (which side, tensor) of the first non-finite value on each side, in execution order.
    pub non_finite: Vec<(String, String)>,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.non_finite.is_empty() && self.rows.iter().all(|r| !r.bad)
    }
    pub fn worst(&self) -> Option<&Row> {
        self.rows.iter().max_by(|a, b| a.scaled.total_cmp(&b.scaled))
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} vs {}", self.got, self.want)?;
        writeln!(f, "  {:<36} {:>12} {:>12} {:>12}", "tensor", "max abs err", "max rel err", "scaled err")?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<36} {:>12.3e} {:>12.3e} {:>12.3e}{}",
                r.name,
                r.max_abs,
                r.max_rel,
                r.scaled,
                if r.bad { "  MISMATCH" } else { "" }
            )?;
        }
        for (who, name) in &self.non_finite {
            writeln!(f, "  first non-finite value on the {who}: in {name}")?;
        }
        Ok(())
    }
}

/// Compares `got` against the reference `want` after both took the same step.
pub fn compare(got: &dyn Executor, want: &dyn Executor) -> Result<Comparison> {
    let (gt, wt) = (got.tensors()?, want.tensors()?);
    let (gg, wg) = (got.grads()?, want.grads()?);
    let mut pairs: Vec<(String, Vec<f32>, Vec<f32>)> =
        gt.into_iter().zip(wt).map(|((n, g), (_, w))| (n, g, w)).collect();
    for (i, s) in gg.specs.iter().enumerate() {
        pairs.push((format!("grad {}", s.key), gg.get(i).to_vec(), wg.get(i).to_vec()));
    }
    let mut rows = Vec::new();
    for (name, g, w) in &pairs {
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let d = crate::testing::diff(g, w, (scale * 1e-3).max(1e-12));
        let scaled = d.max_abs / scale.max(1e-12);
        rows.push(Row {
            name: name.clone(),
            max_abs: d.max_abs,
            max_rel: d.max_rel,
            scaled,
            bad: d.non_finite_mismatch || scaled > VERIFY_TOL,
        });
    }
    let mut non_finite = Vec::new();
    for (who, side) in [(got.describe(), 1), (want.describe(), 2)] {
        if let Some(p) = pairs.iter().find(|p| (if side == 1 { &p.1 } else { &p.2 }).iter().any(|x| !x.is_finite())) {
            non_finite.push((who, p.0.clone()));
        }
    }
    Ok(Comparison { got: got.describe(), want: want.describe(), rows, non_finite })
}
