//! wgrad: train PyTorch-style networks on any GPU through WebGPU.
//!
//! WGSL compute shaders (shaders/) run through wgpu on Vulkan, Metal, DX12 or GL; a CPU path in
//! plain Rust computes every op too, to verify the GPU and to run where there is no GPU.
//!
//! Data flows one way: host tensors → GPU views → kernels recorded in order into one submit →
//! a few bytes read back. Ops ([`ops`]) know nothing of graphs.

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
