//! Networks as PyTorch writes them: a Sequential of named layers held under a prefix (Tudui's
//! `model1`), so parameters are named by path (`model1.conv1.weight`), initialised like PyTorch's
//! defaults from a seeded RNG, and stored in one flat [`ParamSet`].

pub mod models;

use crate::ops::{conv2d, linear, maxpool2d};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A layer of a Sequential.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    Conv2d(conv2d::Config),
    MaxPool2d(maxpool2d::Config),
    /// nn.Flatten(): (N, C, H, W) -> (N, C*H*W), a view.
    Flatten,
    Linear(linear::Config),
}

impl Layer {
    /// (name, shape) of the layer's parameters, in PyTorch's order.
    pub fn params(&self) -> Vec<(&'static str, Vec<usize>)> {
        match self {
            Layer::Conv2d(c) => {
                let mut v = vec![("weight", c.weight_shape().to_vec())];
                if c.bias {
                    v.push(("bias", vec![c.out_channels]));
                }
                v
            }
            Layer::Linear(c) => {
                let mut v = vec![("weight", c.weight_shape().to_vec())];
                if c.bias {
                    v.push(("bias", vec![c.out_features]));
                }
                v
            }
            Layer::MaxPool2d(_) | Layer::Flatten => vec![],
        }
    }

    /// Inputs per output: PyTorch's fan_in for its default init.
    fn fan_in(&self) -> usize {
        match self {
            Layer::Conv2d(c) => c.in_channels * c.kernel.0 * c.kernel.1,
            Layer::Linear(c) => c.in_features,
            _ => 1,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Layer::Conv2d(c) => format!(
                "Conv2d({}, {}, kernel_size={:?}, stride={:?}, padding={:?}{})",
                c.in_channels,
                c.out_channels,
                c.kernel,
                c.stride,
                c.padding,
                if c.dilation != (1, 1) { format!(", dilation={:?}", c.dilation) } else { String::new() }
            ),
            Layer::MaxPool2d(c) => format!(
                "MaxPool2d(kernel_size={:?}, stride={:?}, padding={:?}{})",
                c.kernel,
                c.stride,
                c.padding,
                if c.ceil_mode { ", ceil_mode=True" } else { "" }
            ),
            Layer::Flatten => "Flatten()".into(),
            Layer::Linear(c) => format!(
                "Linear(in_features={}, out_features={}, bias={})",
                c.in_features,
                c.out_features,
                if c.bias { "True" } else { "False" }
            ),
        }
    }
}

/// nn.Sequential(OrderedDict(...)) held under a prefix, e.g. `model1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequential {
    pub prefix: String,
    pub layers: Vec<(String, Layer)>,
}

impl Sequential {
    pub fn new(prefix: &str) -> Self {
        Sequential { prefix: prefix.into(), layers: vec![] }
    }
    pub fn add(mut self, name: &str, layer: Layer) -> Self {
        self.layers.push((name.into(), layer));
        self
    }
    /// A layer's path, e.g. `model1.conv1`.
    pub fn path(&self, i: usize) -> String {
        if self.prefix.is_empty() {
            self.layers[i].0.clone()
        } else {
            format!("{}.{}", self.prefix, self.layers[i].0)
        }
    }
    /// Every parameter's key and shape, in state-dict order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut v = vec![];
        for (i, (_, l)) in self.layers.iter().enumerate() {
            for (kind, shape) in l.params() {
                v.push(ParamSpec { key: format!("{}.{kind}", self.path(i)), shape, layer: i, is_bias: kind == "bias" });
            }
        }
        v
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub key: String,
    pub shape: Vec<usize>,
    /// Index of the layer in the Sequential.
    pub layer: usize,
    pub is_bias: bool,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// All parameters of a network in one flat vector; each starts at a multiple of 64 floats
/// (256 bytes) so the GPU can bind it directly. Padding stays zero.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSet {
    pub specs: Vec<ParamSpec>,
    pub offsets: Vec<usize>,
    pub data: Vec<f32>,
}

/// Floats between parameter starts (256 bytes).
pub const PARAM_ALIGN: usize = 64;

impl ParamSet {
    pub fn zeros(specs: Vec<ParamSpec>) -> Self {
        let mut offsets = Vec::with_capacity(specs.len());
        let mut at = 0;
        for s in &specs {
            offsets.push(at);
            at += s.numel().div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
        }
        ParamSet { specs, offsets, data: vec![0.0; at.max(PARAM_ALIGN)] }
    }

    pub fn index(&self, key: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.key == key)
    }
    pub fn get(&self, i: usize) -> &[f32] {
        &self.data[self.offsets[i]..][..self.specs[i].numel()]
    }
    pub fn get_mut(&mut self, i: usize) -> &mut [f32] {
        let n = self.specs[i].numel();
        &mut self.data[self.offsets[i]..][..n]
    }
    pub fn by_key(&self, key: &str) -> Option<&[f32]> {
        self.index(key).map(|i| self.get(i))
    }
    /// Number of parameters (padding excluded).
    pub fn count(&self) -> usize {
        self.specs.iter().map(|s| s.numel()).sum()
    }
    /// Same layout, other values: the flat gradient or momentum of these parameters.
    pub fn like(&self, data: Vec<f32>) -> Result<ParamSet> {
        if data.len() != self.data.len() {
            return Err(Error::Graph(format!(
                "flat tensor of {} floats given for parameters of {}",
                data.len(),
                self.data.len()
            )));
        }
        Ok(ParamSet { specs: self.specs.clone(), offsets: self.offsets.clone(), data })
    }
}

/// A network with its parameters and the input it takes (C, H, W).
#[derive(Clone, Debug)]
pub struct Model {
    pub net: Sequential,
    pub input: [usize; 3],
    pub params: ParamSet,
}

impl Model {
    /// PyTorch's default init: weights kaiming_uniform(a=√5), i.e. U(±1/√fan_in), and biases
    /// U(±1/√fan_in), drawn from ChaCha8 seeded with `seed`.
    pub fn init(net: Sequential, input: [usize; 3], seed: u64) -> Model {
        let mut params = ParamSet::zeros(net.param_specs());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for i in 0..params.specs.len() {
            let bound = 1.0 / (net.layers[params.specs[i].layer].1.fan_in() as f32).sqrt();
            for v in params.get_mut(i) {
                *v = rng.random_range(-bound..=bound);
            }
        }
        Model { net, input, params }
    }
}
