//! The tutorial's Tudui network: build it, run forward + CrossEntropyLoss + backward on a batch of
//! 64 random 3×32×32 images, print the output's shape and the loss (CIFAR-10 data: see the
//! tudui_cifar10 example).
//!
//!     cargo run --release --example tudui

use rand::{Rng, SeedableRng};
use wgrad::{models, Device, DeviceOptions, ExecOptions};

fn main() -> anyhow::Result<()> {
    let (device, why) = Device::select(&DeviceOptions::from_env()?)?;
    println!("device: {why}");
    let tudui = models::tudui(0);
    print!("{}", tudui.describe());

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let images: Vec<f32> = (0..64 * 3 * 32 * 32).map(|_| rng.random::<f32>()).collect();
    let targets: Vec<i64> = (0..64).map(|_| rng.random_range(0..10)).collect();

    let mut ex = wgrad::executor(&device, &tudui, 64, ExecOptions::default())?;
    let loss = ex.step(&images, &targets, true)?.unwrap_or(f32::NAN);
    let plan = ex.plan();
    println!("input {:?} -> output {:?}", plan.input, plan.shapes[plan.output]);
    println!("loss {loss:.4}");
    let grads = ex.grads()?;
    let norm: f32 = grads.data.iter().map(|g| g * g).sum::<f32>().sqrt();
    println!("gradient norm over {} parameters: {norm:.4}", grads.count());
    println!("ok");
    Ok(())
}
