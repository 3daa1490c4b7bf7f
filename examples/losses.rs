//! The tutorial's loss cells: nn.L1Loss, nn.MSELoss and nn.CrossEntropyLoss on the selected device
//! (WGRAD_DEVICE / WGRAD_BACKEND / WGRAD_ADAPTER, default auto), cross-checked on the CPU path.
//!
//!     cargo run --release --example losses

use wgrad::functional::{cross_entropy, l1_loss, mse_loss};
use wgrad::ops::cross_entropy::Options;
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
    let mut show = |name: &str, got: (Tensor, Tensor), cpu: (Tensor, Tensor)| {
        let err = got
            .0
            .data
            .iter()
            .chain(&got.1.data)
            .zip(cpu.0.data.iter().chain(&cpu.1.data))
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(err);
        println!(
            "{name:<28} {:.4}   (grad {:?}; CPU path {:.4}, max diff {err:.1e})",
            got.0.data[0], got.1.data, cpu.0.data[0]
        );
    };
    for (name, red) in [("L1Loss(reduction='sum')", Reduction::Sum), ("L1Loss()  # mean", Reduction::Mean)] {
        show(name, l1_loss(&device, &inputs, &targets, red)?, l1_loss(&Device::Cpu, &inputs, &targets, red)?);
    }
    for (name, red) in [("MSELoss(reduction='sum')", Reduction::Sum), ("MSELoss()  # mean", Reduction::Mean)] {
        show(name, mse_loss(&device, &inputs, &targets, red)?, mse_loss(&Device::Cpu, &inputs, &targets, red)?);
    }

    // x = torch.tensor([0.1, 0.2, 0.3]); y = torch.tensor([1]); x = torch.reshape(x, (1, 3))
    let x = Tensor::new(&[3], vec![0.1, 0.2, 0.3])?.reshape(&[1, 3])?;
    let y = [1i64];
    let o = Options::default();
    show(
        "CrossEntropyLoss()",
        cross_entropy(&device, &x, &y, &[1], &o)?,
        cross_entropy(&Device::Cpu, &x, &y, &[1], &o)?,
    );
    println!("computed on {}; largest difference from the CPU path {worst:.1e}", device.name());
    Ok(())
}
