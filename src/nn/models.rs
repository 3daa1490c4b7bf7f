//! Ready-made networks.

use super::{Layer, Model, Sequential};
use crate::ops::{conv2d, linear, maxpool2d};

/// The tutorial's Tudui network, held as `model1` (keys model1.conv1.weight … model1.fc2.bias):
/// Conv2d(3,32,5,pad 2) → MaxPool2d(2) → Conv2d(32,32,5,pad 2) → MaxPool2d(2) →
/// Conv2d(32,64,5,pad 2) → MaxPool2d(2) → Flatten → Linear(1024,64) → Linear(64,10).
pub fn tudui_net() -> Sequential {
    Sequential::new("model1")
        .add("conv1", Layer::Conv2d(conv2d::Config::new(3, 32, 5).padding(2)))
        .add("pool1", Layer::MaxPool2d(maxpool2d::Config::new(2)))
        .add("conv2", Layer::Conv2d(conv2d::Config::new(32, 32, 5).padding(2)))
        .add("pool2", Layer::MaxPool2d(maxpool2d::Config::new(2)))
        .add("conv3", Layer::Conv2d(conv2d::Config::new(32, 64, 5).padding(2)))
        .add("pool3", Layer::MaxPool2d(maxpool2d::Config::new(2)))
        .add("flatten", Layer::Flatten)
        .add("fc1", Layer::Linear(linear::Config::new(1024, 64)))
        .add("fc2", Layer::Linear(linear::Config::new(64, 10)))
}

/// Tudui on 3×32×32 images, initialised like PyTorch from `seed`.
pub fn tudui(seed: u64) -> Model {
    Model::init(tudui_net(), [3, 32, 32], seed)
}
