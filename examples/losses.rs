//! The tutorial's loss cells: nn.L1Loss, nn.MSELoss and nn.CrossEntropyLoss on the selected device
//! (WGRAD_DEVICE / WGRAD_BACKEND / WGRAD_ADAPTER, default auto), cross-checked on the CPU path.
//!
//!     cargo run --release --example losses

use wgrad::functional::{cross_entropy, l1_loss, mse_loss, Output};
use wgrad::ops::cross_entropy::{Options, Targets};
use wgrad::{Device, DeviceOptions, Reduction, Tensor};

fn main() -> anyhow::Result<()> {
    let (device, why) = Device::select(&DeviceOptions::from_env()?)?;
    println!("device: {why}");

    // inputs = torch.tensor([1, 2, 3], dtype=torch.float32); targets = torch.tensor([1, 2, 5], ...)
    let inputs = Tensor::new(&[3], vec![1.0, 2.0, 3.0])?;
    let targets = Tensor::new(&[3], vec![1.0, 2.0, 5.0])?;
    println!("inputs {:?}, targets {:?}", inputs.shape, targets.shape);
    let inputs = inputs.reshape(&[1, 3])?;
    let targets = targets.reshape(&[1, 3])?;
    println!("reshaped: inputs {:?}, targets {:?}", inputs.shape, targets.shape);

    let mut worst = 0f32;
    // loss.backward(): the gradient for an upstream gradient of 1.
    let one = Tensor::scalar(1.0);
    let mut show = |name: &str, got: Output, cpu: Output| {
        let (g, c) = ((&got.out, &got.dinputs[0]), (&cpu.out, &cpu.dinputs[0]));
        let err =
            g.0.data
                .iter()
                .chain(&g.1.data)
                .zip(c.0.data.iter().chain(&c.1.data))
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(err);
        println!(
            "{name:<28} {:.4}   (grad {:?}; CPU path {:.4}, max diff {err:.1e})",
            g.0.data[0], g.1.data, c.0.data[0]
        );
    };
    for (name, red) in [("L1Loss(reduction='sum')", Reduction::Sum), ("L1Loss()  # mean", Reduction::Mean)] {
        let (got, cpu) = (
            l1_loss(&device, &inputs, &targets, red, Some(&one))?,
            l1_loss(&Device::Cpu, &inputs, &targets, red, Some(&one))?,
        );
        show(name, got, cpu);
    }
    for (name, red) in [("MSELoss(reduction='sum')", Reduction::Sum), ("MSELoss()  # mean", Reduction::Mean)] {
        let (got, cpu) = (
            mse_loss(&device, &inputs, &targets, red, Some(&one))?,
            mse_loss(&Device::Cpu, &inputs, &targets, red, Some(&one))?,
        );
        show(name, got, cpu);
    }

    // x = torch.tensor([0.1, 0.2, 0.3]); y = torch.tensor([1]); x = torch.reshape(x, (1, 3))
    let x = Tensor::new(&[3], vec![0.1, 0.2, 0.3])?.reshape(&[1, 3])?;
    let y = [1i64];
    let o = Options::default();
    show(
        "CrossEntropyLoss()",
        cross_entropy(&device, &x, Targets::Class(&y), &[1], &o, Some(&one))?,
        cross_entropy(&Device::Cpu, &x, Targets::Class(&y), &[1], &o, Some(&one))?,
    );
    println!("computed on {}; largest difference from the CPU path {worst:.1e}", device.name());
    Ok(())
}
