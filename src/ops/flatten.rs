//! Flatten (nn.Flatten(start_dim=1, end_dim=-1)): a view of its input with dims start..=end merged;
//! no kernel, and its input's gradient is its output's.

use super::interface::{CpuBackward, CpuForward, GpuIo, Mode, Node, Op};
use super::ParamsLayout;
use crate::device::Gpu;
use crate::kernel::Program;
use crate::{ensure_op, Result};

pub const OP: &str = "Flatten";

crate::shaders!();

pub fn layouts() -> Vec<ParamsLayout> {
    Vec::new()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub start_dim: usize,
    /// Negative counts from the end, as in PyTorch.
    pub end_dim: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { start_dim: 1, end_dim: -1 }
    }
}

impl Flatten {
    /// nn.Flatten(): (N, C, H, W) -> (N, C·H·W).
    pub fn new() -> Self {
        Flatten::default()
    }
    pub fn start_dim(mut self, d: usize) -> Self {
        self.start_dim = d;
        self
    }
    pub fn end_dim(mut self, d: isize) -> Self {
        self.end_dim = d;
        self
    }
    /// The flattened shape of `input`.
    pub fn out_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let op = self.describe();
        let rank = input.len() as isize;
        let end = if self.end_dim < 0 { rank + self.end_dim } else { self.end_dim };
        ensure_op!(
            (self.start_dim as isize) < rank && end >= self.start_dim as isize && end < rank,
            op,
            "dims {}..={end} do not fit an input of shape {input:?}",
            self.start_dim
        );
        let end = end as usize;
        let mut out = input[..self.start_dim].to_vec();
        out.push(input[self.start_dim..=end].iter().product());
        out.extend_from_slice(&input[end + 1..]);
        Ok(out)
    }
}

impl Op for Flatten {
    fn describe(&self) -> String {
        format!("{OP}(start_dim={}, end_dim={})", self.start_dim, self.end_dim)
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        Ok(Box::new(View(self.out_shape(inputs[0])?)))
    }
}

/// A view at a shape: nothing to compute in either direction.
pub struct View(pub Vec<usize>);

impl Node for View {
    fn out_shape(&self) -> Vec<usize> {
        self.0.clone()
    }
    fn is_view(&self) -> bool {
        true
    }
    fn forward_cpu(&self, _io: CpuForward<'_>) {}
    fn backward_cpu(&self, _io: CpuBackward<'_>) {}
    fn forward_gpu(&self, _gpu: &Gpu, _io: &GpuIo<'_>) -> Result<Program> {
        Ok(Program::default())
    }
    fn backward_gpu(&self, _gpu: &Gpu, _io: &GpuIo<'_>) -> Result<Program> {
        Ok(Program::default())
    }
}
