//! ToTensor then Normalize, for a batch that crosses to the device as the bytes the dataset stores:
//! torchvision's `ToTensor()` (p / 255) and `Normalize(mean, std)` ((x − mean) / std, per
//! channel) of a u8 image are a function of the byte and its channel only, so [`ToTensor`] holds
//! them as a table of 256 floats per channel, computed on the host. The data loader makes its f32
//! batches from it ([`ToTensor::apply`]) and the executors' `upload_pixels` sends the bytes, a
//! quarter of the f32 batch, and looks them up on the device: the input is bit for bit the same
//! either way. Shader: to_tensor.wgsl.

use super::ParamsLayout;
use crate::buffer::View;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel};
use crate::{Error, Result};

pub const OP: &str = "ToTensor";

crate::shaders!(to_tensor: 256);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub plane: u32,
    pub channels: u32,
    pub _pad0: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![crate::params_layout!("to_tensor", Params, [n, plane, channels, _pad0])]
}

/// `transforms.Compose([ToTensor(), Normalize(mean, std)])` for u8 images (N, C, H, W), or
/// `ToTensor()` alone, as a table: entry `c · 256 + p` is what byte `p` of channel `c` becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct ToTensor {
    table: Vec<f32>,
}

impl ToTensor {
    /// ToTensor() alone (p / 255) for `channels` channels.
    pub fn new(channels: usize) -> Self {
        Self::table(&vec![0.0; channels], &vec![1.0; channels])
    }

    /// ToTensor() then Normalize(mean, std), one mean and std per channel; every std must be
    /// positive and finite, every mean finite.
    pub fn normalized(mean: &[f32], std: &[f32]) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::op(
                OP,
                format!("Normalize needs one mean and one std per channel, got {mean:?} and {std:?}"),
            ));
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::op(OP, format!("Normalize std must be positive, got {std:?}")));
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::op(OP, format!("Normalize mean must be finite, got {mean:?}")));
        }
        Ok(Self::table(mean, std))
    }

    fn table(mean: &[f32], std: &[f32]) -> Self {
        let table = mean.iter().zip(std).flat_map(|(&m, &s)| (0..=255u8).map(move |p| (p as f32 / 255.0 - m) / s));
        ToTensor { table: table.collect() }
    }

    pub fn channels(&self) -> usize {
        self.table.len() / 256
    }

    /// Entry `c · 256 + p`: what byte `p` of channel `c` becomes.
    pub fn values(&self) -> &[f32] {
        &self.table
    }

    /// The f32 tensor of `pixels`, (N, C, H, W) bytes with `plane` = H·W, into `out` (the same
    /// length): the reference the device's kernel is tested against.
    pub fn apply(&self, pixels: &[u8], plane: usize, out: &mut [f32]) {
        debug_assert_eq!(pixels.len(), out.len());
        let channels = self.channels();
        for (i, (planes, outs)) in pixels.chunks(plane).zip(out.chunks_mut(plane)).enumerate() {
            let table = &self.table[(i % channels) * 256..][..256];
            for (o, &p) in outs.iter_mut().zip(planes) {
                *o = table[p as usize];
            }
        }
    }

    /// Checks that `pixels` can be the input of shape `input` (N, C, H, W): their count, and
    /// the table's channels against C.
    pub fn check(&self, pixels: usize, input: &[usize]) -> Result<()> {
        let want: usize = input.iter().product();
        if pixels != want {
            return Err(Error::op(OP, format!("pixels hold {pixels} bytes; a batch of shape {input:?} needs {want}")));
        }
        let channels = input.get(1).copied().unwrap_or(1);
        if channels != self.channels() {
            return Err(Error::op(
                OP,
                format!("a table for {} channels cannot make an input of shape {input:?}", self.channels()),
            ));
        }
        Ok(())
    }
}

/// Words that hold `n` bytes of pixels, four to a word.
pub fn pixel_words(n: u64) -> u64 {
    n.div_ceil(4)
}

/// out = the table's value of each byte of `pixels` ([`pixel_words`] of `out.len` bytes), with
/// `plane` elements per channel plane and the table's channels in turn.
pub fn to_tensor_gpu(gpu: &Gpu, label: &str, pixels: &View, table: &View, plane: u64, out: &View) -> Result<Kernel> {
    let channels = table.len / 256;
    if pixels.len < pixel_words(out.len) || channels == 0 || plane == 0 || out.len > u32::MAX as u64 {
        return Err(Error::op(
            label,
            format!(
                "{OP}: {} words of pixels and a table of {} floats cannot make {} values of planes of {plane}",
                pixels.len, table.len, out.len
            ),
        ));
    }
    let p = Params { n: out.len as u32, plane: plane as u32, channels: channels as u32, _pad0: 0 };
    Kernel::new(gpu, "to_tensor", label, &p, &[pixels, table, out], Dispatch::Invocations(pixel_words(out.len)))
}
