//! Writing your own network: a residual block as a small struct whose `forward` branches and
//! merges (like an `nn.Module`), a model around it, then a few SGD steps on synthetic images and
//! the loss as it falls. Runs on the selected device (WGRAD_DEVICE / WGRAD_BACKEND / WGRAD_ADAPTER).
//!
//!     cargo run --release --example custom_network

use rand::SeedableRng;
use wgrad::data::synthetic;
use wgrad::graph::{Builder, Value};
use wgrad::nn::{AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, Model, Module, ReLU, Sequential};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{Device, DeviceOptions, ExecOptions};

/// out = relu(bn2(conv2(relu(bn1(conv1(x))))) + x), as in PyTorch:
///
/// ```python
/// class Residual(nn.Module):
///     def __init__(self, c):
///         super().__init__()
///         self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
///         self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
///     def forward(self, x):
///         out = F.relu(self.bn1(self.conv1(x)))
///         return F.relu(self.bn2(self.conv2(out)) + x)
/// ```
struct Residual {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
}

impl Residual {
    fn new(c: usize) -> Self {
        let conv = || Conv2d::new(c, c, 3).padding(1).bias(false);
        Residual { conv1: conv(), bn1: BatchNorm2d::new(c), conv2: conv(), bn2: BatchNorm2d::new(c) }
    }
}

impl Module for Residual {
    fn forward(&self, g: &mut Builder, x: Value) -> Value {
        let out = g.call("conv1", &self.conv1, x);
        let out = g.call("bn1", &self.bn1, out);
        let out = g.relu(out);
        let out = g.call("conv2", &self.conv2, out);
        let out = g.call("bn2", &self.bn2, out);
        let out = g.add(out, x);
        g.relu(out)
    }
}

fn main() -> anyhow::Result<()> {
    let (device, why) = Device::select(&DeviceOptions::from_env()?)?;
    println!("device: {why}");

    // A chain of modules is a Sequential; the residual block is one of its children.
    let net = Sequential::new()
        .add("stem", Conv2d::new(3, 16, 3).stride(2).padding(1))
        .add("relu", ReLU)
        .add("block", Residual::new(16))
        .add("pool", AdaptiveAvgPool2d::new(1))
        .add("flatten", Flatten::new())
        .add("dropout", Dropout::new(0.1))
        .add("fc", Linear::new(16, 10));
    let model = Model::new(&net, [3, 32, 32], 0)?;
    print!("{}", model.describe());
    println!(
        "{} parameters; state dict keys: {}",
        model.params.count(),
        model.params.specs.iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join(", ")
    );

    // Synthetic CIFAR-10-like images (see wgrad::data::synthetic), scaled to [0, 1].
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let batch = 32;
    let mut images = Vec::new();
    let mut targets = Vec::new();
    for i in 0..8 * batch {
        let rec = synthetic::record(&mut rng, (i % 10) as u8);
        targets.push(rec[0] as i64);
        images.extend(rec[1..].iter().map(|&b| b as f32 / 255.0));
    }

    let opts = ExecOptions { optimizer: Some(Optimizer::Sgd(Sgd::new(0.05).momentum(0.9))), ..Default::default() };
    let mut ex = wgrad::executor(&device, &model, batch, opts)?;
    let per = batch * 3 * 32 * 32;
    for step in 0..40 {
        let b = step % 8;
        let loss = ex.step(&images[b * per..(b + 1) * per], &targets[b * batch..(b + 1) * batch], true)?;
        if step % 5 == 4 {
            println!("step {:2}: loss {:.4}", step + 1, loss.unwrap_or(f32::NAN));
        }
    }
    // Eval mode (running statistics, no dropout) on the first batch.
    let mut eval = wgrad::executor(&device, &model, batch, ExecOptions::inference())?;
    eval.set_params(&ex.params()?)?;
    let logits = eval.forward(&images[..per])?;
    let correct = logits.chunks(10).zip(&targets).filter(|(row, &t)| wgrad::eval::argmax(row) as i64 == t).count();
    println!("eval mode on the first batch: {correct}/{batch} correct");
    Ok(())
}
