//! Host tensors (f32, row-major) and shape helpers.

use crate::{Error, Result};

/// A row-major f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::op(
                "Tensor::new",
                format!("shape {shape:?} holds {n} elements but {} were given", data.len()),
            ));
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
    }
    pub fn scalar(v: f32) -> Self {
        Tensor { shape: vec![], data: vec![v] }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// Same data, new shape (like `torch.reshape` on a contiguous tensor).
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.data.len() {
            return Err(Error::op(
                "reshape",
                format!("cannot view {:?} ({} elements) as {shape:?}", self.shape, self.data.len()),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Splits a shape (N, C, d1, ...) into (N, C, S = d1·d2·…) for ops over dim 1.
pub fn split_class_dim(op: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::op(op, format!("input must be (N, C) or (N, C, d1, ...), got {shape:?}")));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}
