//! Ready-made networks, with PyTorch's module names (so their state dicts load both ways):
//! `../shared/bench/pytorch_models.py` holds the same networks in PyTorch.

use super::{AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Model, Module, ReLU, Sequential};
use crate::graph::{Builder, Value};

/// The tutorial's Tudui network, held as `model1` (keys model1.conv1.weight … model1.fc2.bias):
/// Conv2d(3,32,5,pad 2) → MaxPool2d(2) → Conv2d(32,32,5,pad 2) → MaxPool2d(2) →
/// Conv2d(32,64,5,pad 2) → MaxPool2d(2) → Flatten → Linear(1024,64) → Linear(64,num_classes)
/// (the tutorial's 10).
pub fn tudui_net(num_classes: usize) -> Sequential {
    Sequential::new().add(
        "model1",
        Sequential::new()
            .add("conv1", Conv2d::new(3, 32, 5).padding(2))
            .add("pool1", MaxPool2d::new(2))
            .add("conv2", Conv2d::new(32, 32, 5).padding(2))
            .add("pool2", MaxPool2d::new(2))
            .add("conv3", Conv2d::new(32, 64, 5).padding(2))
            .add("pool3", MaxPool2d::new(2))
            .add("flatten", Flatten::new())
            .add("fc1", Linear::new(1024, 64))
            .add("fc2", Linear::new(64, num_classes)),
    )
}

/// Tudui on 3×32×32 images, initialised like PyTorch from `seed`.
pub fn tudui(seed: u64) -> Model {
    build(&tudui_net(10), seed)
}

/// The network of PyTorch's "Training a Classifier" CIFAR-10 tutorial:
/// `x = pool(relu(conv1(x))); x = pool(relu(conv2(x))); x = flatten(x, 1);
/// x = relu(fc1(x)); x = relu(fc2(x)); return fc3(x)`.
pub struct CifarNet {
    pub conv1: Conv2d,
    pub pool: MaxPool2d,
    pub conv2: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

impl Default for CifarNet {
    fn default() -> Self {
        CifarNet::new(10)
    }
}

impl CifarNet {
    /// The network with `num_classes` outputs (the tutorial's CIFAR-10: 10).
    pub fn new(num_classes: usize) -> Self {
        CifarNet {
            conv1: Conv2d::new(3, 6, 5),
            pool: MaxPool2d::new(2).stride(2),
            conv2: Conv2d::new(6, 16, 5),
            fc1: Linear::new(16 * 5 * 5, 120),
            fc2: Linear::new(120, 84),
            fc3: Linear::new(84, num_classes),
        }
    }
}

impl Module for CifarNet {
    fn forward(&self, g: &mut Builder, x: Value) -> Value {
        let x = g.call("conv1", &self.conv1, x);
        let x = g.relu(x);
        let x = g.call("pool", &self.pool, x);
        let x = g.call("conv2", &self.conv2, x);
        let x = g.relu(x);
        let x = g.call("pool", &self.pool, x);
        let x = g.flatten(x);
        let x = g.call("fc1", &self.fc1, x);
        let x = g.relu(x);
        let x = g.call("fc2", &self.fc2, x);
        let x = g.relu(x);
        g.call("fc3", &self.fc3, x)
    }
}

/// The CIFAR-10 tutorial's network on 3×32×32 images (62,006 parameters).
pub fn cifar_net(seed: u64) -> Model {
    build(&CifarNet::default(), seed)
}

/// He et al.'s basic block (torchvision's naming): `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut)`,
/// the shortcut a projection `downsample = Sequential(Conv2d(cin, cout, 1, stride), BatchNorm2d)`
/// where the shape changes, else `x`.
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub relu: ReLU,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub downsample: Option<Sequential>,
}

impl BasicBlock {
    pub fn new(cin: usize, cout: usize, stride: usize) -> Self {
        BasicBlock {
            conv1: Conv2d::new(cin, cout, 3).stride(stride).padding(1).bias(false),
            bn1: BatchNorm2d::new(cout),
            relu: ReLU,
            conv2: Conv2d::new(cout, cout, 3).padding(1).bias(false),
            bn2: BatchNorm2d::new(cout),
            downsample: (stride != 1 || cin != cout).then(|| {
                Sequential::new()
                    .push(Conv2d::new(cin, cout, 1).stride(stride).bias(false))
                    .push(BatchNorm2d::new(cout))
            }),
        }
    }
}

impl Module for BasicBlock {
    fn forward(&self, g: &mut Builder, x: Value) -> Value {
        let out = g.call("conv1", &self.conv1, x);
        let out = g.call("bn1", &self.bn1, out);
        let out = g.call("relu", &self.relu, out);
        let out = g.call("conv2", &self.conv2, out);
        let out = g.call("bn2", &self.bn2, out);
        let identity = match &self.downsample {
            Some(d) => g.call("downsample", d, x),
            None => x,
        };
        let out = g.add(out, identity);
        g.call("relu", &self.relu, out)
    }
}

/// ResNet for CIFAR-10 (He et al. 2016, §4.2, projection shortcuts): a 3×3 stem of `width`
/// channels, three stages of `blocks` basic blocks with width, 2·width and 4·width channels (the
/// first block of stages 2 and 3 with stride 2), global average pooling and a linear classifier.
pub fn resnet_cifar(width: usize, blocks: usize, classes: usize) -> Sequential {
    let mut net = Sequential::new()
        .add("conv1", Conv2d::new(3, width, 3).padding(1).bias(false))
        .add("bn1", BatchNorm2d::new(width))
        .add("relu", ReLU);
    let mut cin = width;
    for (stage, cout) in [width, 2 * width, 4 * width].into_iter().enumerate() {
        let mut layer = Sequential::new();
        for b in 0..blocks {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            layer = layer.push(BasicBlock::new(cin, cout, stride));
            cin = cout;
        }
        net = net.add(&format!("layer{}", stage + 1), layer);
    }
    net.add("avgpool", AdaptiveAvgPool2d::new(1)).add("flatten", Flatten::new()).add("fc", Linear::new(cin, classes))
}

/// ResNet-20 on 3×32×32 images: 3 stages of 3 basic blocks, 16/32/64 channels (272,474 parameters).
pub fn resnet20(seed: u64) -> Model {
    build(&resnet_cifar(16, 3, 10), seed)
}

/// The built-in networks by name (`--model`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    #[default]
    Tudui,
    CifarNet,
    Resnet20,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [ModelKind::Tudui, ModelKind::CifarNet, ModelKind::Resnet20];
    /// The model with 10 outputs (CIFAR-10's, Fashion-MNIST's, MNIST's classes), initialised
    /// like PyTorch from `seed`.
    pub fn build(self, seed: u64) -> Model {
        self.build_with_classes(10, seed).expect("a built-in network builds")
    }
    /// The model with `num_classes` outputs (torchvision's `num_classes=`: the last Linear's
    /// out_features), initialised like PyTorch from `seed`; an error for 0 classes.
    pub fn build_with_classes(self, num_classes: usize, seed: u64) -> crate::Result<Model> {
        match self {
            ModelKind::Tudui => Model::new(&tudui_net(num_classes), [3, 32, 32], seed),
            ModelKind::CifarNet => Model::new(&CifarNet::new(num_classes), [3, 32, 32], seed),
            ModelKind::Resnet20 => Model::new(&resnet_cifar(16, 3, num_classes), [3, 32, 32], seed),
        }
    }
    /// The name `--model` takes.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Tudui => "tudui",
            ModelKind::CifarNet => "cifar-net",
            ModelKind::Resnet20 => "resnet20",
        }
    }
    pub fn parse(s: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A built-in network's model (their graphs are valid by construction).
fn build(net: &dyn Module, seed: u64) -> Model {
    Model::new(net, [3, 32, 32], seed).expect("a built-in network builds")
}
