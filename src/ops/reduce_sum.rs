//! Tree reduction of (value, weight) pairs into one scalar: every loss's 'sum' and 'mean'.

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Kernel, Program};
use crate::Result;

/// Pairs one workgroup reduces per pass.
pub const PER_GROUP: u64 = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub is_last: u32,
    pub mode: u32,
    pub _pad: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("reduce_sum", Params, [n, is_last, mode, _pad])]
}

/// How the final pair becomes the scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// result = Σ value
    Sum,
    /// result = Σ value / Σ weight
    WeightedMean,
}

/// Kernels reducing `n` pairs in `pairs` (2n words) into `result[0]`; also returns the final pair
/// (Σ value, Σ weight), which backward kernels read for 'mean'.
pub fn build(gpu: &Gpu, label: &str, pairs: &View, n: u64, finish: Finish, result: &View) -> Result<(Program, View)> {
    let mut prog = Program::default();
    let mut src = pairs.clone();
    let mut len = n;
    let mut pass = 0;
    loop {
        let groups = len.div_ceil(PER_GROUP).max(1);
        let is_last = groups == 1;
        let dst = gpu.zeros(&format!("{label}.partial{pass}"), 2 * groups)?;
        let params =
            Params { n: len as u32, is_last: is_last as u32, mode: (finish == Finish::WeightedMean) as u32, _pad: 0 };
        prog.push(Kernel::new(
            gpu,
            "reduce_sum",
            &format!("{label}.reduce{pass}"),
            &params,
            &[&src, &dst, result],
            groups,
        )?);
        if is_last {
            return Ok((prog, dst));
        }
        src = dst;
        len = groups;
        pass += 1;
    }
}
