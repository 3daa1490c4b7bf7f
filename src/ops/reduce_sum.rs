//! Tree reduction of (value, weight) pairs into one scalar: every loss's 'sum' and 'mean'.

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::Result;

crate::shaders!(reduce_sum: 256);

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
    vec![crate::params_layout!("reduce_sum", Params, [n, is_last, mode, _pad])
        .consts(&[("PER_GROUP", PER_GROUP as usize)])]
}

/// How the final pair becomes the scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// result = Σ value
    Sum,
    /// result = Σ value / Σ weight
    WeightedMean,
}

/// Words of each pass's partial pairs when `n` pairs are reduced; the last pass's is the final pair
/// (Σ value, Σ weight), which backward kernels read for 'mean'.
pub fn partial_words(n: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut len = n;
    loop {
        let groups = len.div_ceil(PER_GROUP).max(1);
        v.push(2 * groups);
        if groups == 1 {
            return v;
        }
        len = groups;
    }
}

/// Kernels reducing `n` pairs in `pairs` (2n words) into `result[0]`, through `partials` sized as
/// [`partial_words`] says.
pub fn build(
    gpu: &Gpu,
    label: &str,
    pairs: &View,
    n: u64,
    finish: Finish,
    result: &View,
    partials: &[&View],
) -> Result<Program> {
    let mut prog = Program::default();
    let mut src = pairs;
    let mut len = n;
    for (pass, dst) in partials.iter().enumerate() {
        let groups = len.div_ceil(PER_GROUP).max(1);
        let is_last = groups == 1;
        let params =
            Params { n: len as u32, is_last: is_last as u32, mode: (finish == Finish::WeightedMean) as u32, _pad: 0 };
        let label = format!("{label}.reduce{pass}");
        prog.push(Kernel::new(gpu, "reduce_sum", &label, &params, &[src, dst, result], Dispatch::Workgroups(groups))?);
        src = dst;
        len = groups;
    }
    Ok(prog)
}
