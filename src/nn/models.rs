//! Ready-made networks, with PyTorch's module names (so their state dicts load both ways).

use super::{Conv2d, Flatten, Linear, MaxPool2d, Model, Sequential};

/// The tutorial's Tudui network, held as `model1` (keys model1.conv1.weight … model1.fc2.bias):
/// Conv2d(3,32,5,pad 2) → MaxPool2d(2) → Conv2d(32,32,5,pad 2) → MaxPool2d(2) →
/// Conv2d(32,64,5,pad 2) → MaxPool2d(2) → Flatten → Linear(1024,64) → Linear(64,10).
pub fn tudui_net() -> Sequential {
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
            .add("fc2", Linear::new(64, 10)),
    )
}

/// Tudui on 3×32×32 images, initialised like PyTorch from `seed`.
pub fn tudui(seed: u64) -> Model {
    build(&tudui_net(), seed)
}

/// A built-in network's model (their graphs are valid by construction).
fn build(net: &dyn super::Module, seed: u64) -> Model {
    Model::new(net, [3, 32, 32], seed).expect("a built-in network builds")
}
