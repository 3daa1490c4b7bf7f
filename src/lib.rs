//! wgrad: train PyTorch-style networks on any GPU through WebGPU.
//!
//! WGSL compute shaders (shaders/) run through wgpu on Vulkan, Metal, DX12 or GL; a CPU path in
//! plain Rust computes every op too, to verify the GPU and to run where there is no GPU.
//!
//! Data flows one way: host tensors → GPU views → kernels recorded in order into one submit →
//! a few bytes read back. Ops ([`ops`]) know nothing of graphs.
//!
//! # A training loop
//!
//! As in PyTorch: a dataset, a `DataLoader`, a model, an optimizer, then steps. An executor holds
//! the model's parameters, activations and gradients on its device (the GPU, or host memory on the
//! CPU path) and runs forward, `CrossEntropyLoss`, backward and the optimizer in one `step`.
//! `wgrad train` is this loop with evaluation, checkpoints and curves ([`train::Trainer`]).
//!
//! ```
//! use std::sync::Arc;
//! use wgrad::data::loader::{Config, DataLoader};
//! use wgrad::data::{synthetic, Split};
//! use wgrad::optim::{Optimizer, Sgd};
//! use wgrad::{models, Device, DeviceOptions, ExecOptions};
//!
//! # fn main() -> wgrad::Result<()> {
//! // The best GPU there is, else the CPU path (WGRAD_DEVICE=gpu|cpu, WGRAD_ADAPTER choose).
//! let (device, why) = Device::select(&DeviceOptions::from_env()?)?;
//! println!("{why}");
//! // DataLoader(dataset, batch_size=64, shuffle=True, drop_last=True) over 10,000 generated
//! // CIFAR-10-like images (wgrad::data::load reads CIFAR-10, Fashion-MNIST and MNIST).
//! let data = Arc::new(synthetic::generate(0, Split::Test)?);
//! let loader = DataLoader::new(data, Config { shuffle: true, drop_last: true, ..Config::new(64) })?;
//! // Tudui with PyTorch's initialisation from seed 0; SGD(lr=0.01, momentum=0.9).
//! let model = models::tudui(0);
//! let sgd = Optimizer::Sgd(Sgd::new(0.01).momentum(0.9));
//! let mut ex = wgrad::executor(&device, &model, 64, ExecOptions { optimizer: Some(sgd), ..Default::default() })?;
//! let mut losses = Vec::new();
//! for batch in loader.epoch(0, 0).take(30) {
//!     // Only the loss (4 bytes) comes back, and only when asked for.
//!     losses.extend(ex.step(&batch.images(), &batch.targets, true)?);
//! }
//! println!("loss {:.3} -> {:.3}", losses[0], losses[29]);
//! assert!(losses[29] < losses[0]);
//! // The trained weights as a state dict with PyTorch's keys (model1.conv1.weight, …).
//! let params = ex.params()?;
//! assert_eq!(params.specs[0].key, "model1.conv1.weight");
//! # Ok(())
//! # }
//! ```

// In the browser wgpu's handles are neither Send nor Sync (one thread); the Arcs that share them
// across threads natively are plain shared handles there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod buffer;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod cpu;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod functional;
pub mod graph;
pub mod io;
pub mod kernel;
pub mod nn;
pub mod ops;
pub mod optim;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
pub mod shaders;
pub mod tensor;
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

pub use device::{BackendChoice, ConvKernels, Device, DeviceKind, DeviceOptions, Gpu, Precision};
pub use error::{Error, Result};
pub use graph::{executor, Executor, Options as ExecOptions};
pub use nn::{models, Model};
pub use ops::Reduction;
pub use tensor::Tensor;
