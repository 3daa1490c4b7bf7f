//! Summing split reductions: when a product's reduction is split over workgroups for parallelism
//! (small layers on big GPUs), each split writes its partial result and `sum_splits.wgsl` adds them
//! in a fixed order. Shared by Conv2d and Linear.

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel};
use crate::Result;

crate::shaders!(sum_splits: 256);

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub M: u32,
    pub splits: u32,
    pub lanes: u32,
    pub _pad0: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("sum_splits", Params, [M, splits, lanes, _pad0])]
}

/// The most invocations that sum one output's splits: 32, so that the outputs of a workgroup
/// reading one split read 8 consecutive words (a 32-byte sector).
pub const MAX_LANES: usize = 32;

/// How many invocations sum each of `outputs` outputs of `splits` splits on `gpu`: one where the
/// outputs alone reach the adapter's split target (and on CPU adapters, which split nothing),
/// else a power of two up to [`MAX_LANES`] that brings the invocations toward it. On an H200,
/// cifar-net's `conv1.dweight.sum_splits` at batch 1024 (450 outputs, 3,136 splits) took 0.18 ms
/// with one, 31 GB/s.
pub fn lanes(gpu: &Gpu, outputs: usize, splits: usize) -> usize {
    let target = gpu.split_target();
    if outputs >= target || splits <= 1 {
        return 1;
    }
    target.div_ceil(outputs.max(1)).min(splits).next_power_of_two().min(MAX_LANES)
}

/// out (M,) = Σ_s part[s·M ..].
pub fn gpu(gpu: &Gpu, label: &str, part: &View, out: &View, splits: usize) -> Result<Kernel> {
    let lanes = lanes(gpu, out.len as usize, splits);
    let p = Params { M: out.len as u32, splits: splits as u32, lanes: lanes as u32, _pad0: 0 };
    let groups = Dispatch::Invocations(out.len * lanes as u64);
    Kernel::new(gpu, "sum_splits", &format!("{label}.sum_splits"), &p, &[part, out], groups)
}

/// How many ways to split a reduction of `len` steps so that `invocations` (unsplit) reach the
/// adapter's target, keeping `splits × out_len` words within one binding.
pub fn choose(gpu: &Gpu, invocations: usize, len: usize, out_len: usize) -> usize {
    let target = gpu.split_target();
    if invocations >= target || len <= 1 {
        return 1;
    }
    let by_memory = (gpu.max_binding_elems() as usize / out_len.max(1)).max(1);
    target.div_ceil(invocations.max(1)).min(len).min(by_memory).max(1)
}
