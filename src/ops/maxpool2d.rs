//! MaxPool2d (nn.MaxPool2d): kernel, stride (default = kernel), padding, dilation, ceil_mode, with
//! PyTorch's output size, tie rule (first maximum in row-major window order), -inf padding and NaN
//! propagation. The forward saves argmax indices; the backward gathers (no atomics).
//! Shaders: maxpool2d_forward.wgsl, maxpool2d_backward.wgsl.

use super::ParamsLayout;
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::Kernel;
use crate::{ensure_op, Error, Result};
use rayon::prelude::*;

pub const OP: &str = "MaxPool2d";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
}

impl Config {
    /// MaxPool2d(k): stride k, padding 0, dilation 1, floor mode.
    pub fn new(kernel: usize) -> Self {
        Config {
            kernel: (kernel, kernel),
            stride: (kernel, kernel),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }

    /// Checks an (N, C, H, W) input and returns the pooling geometry.
    pub fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        let op = || {
            format!(
                "{OP}(kernel_size={:?}, stride={:?}, padding={:?}, dilation={:?}, ceil_mode={})",
                self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode
            )
        };
        ensure_op!(input.len() == 4, op(), "expected an (N, C, H, W) input, got shape {input:?}");
        let [n, c, h, w] = [input[0], input[1], input[2], input[3]];
        ensure_op!(self.kernel.0 > 0 && self.kernel.1 > 0, op(), "kernel size must be positive");
        ensure_op!(self.stride.0 > 0 && self.stride.1 > 0, op(), "stride must be positive, got {:?}", self.stride);
        ensure_op!(
            self.dilation.0 > 0 && self.dilation.1 > 0,
            op(),
            "dilation must be positive, got {:?}",
            self.dilation
        );
        ensure_op!(
            self.padding.0 <= self.kernel.0 / 2 && self.padding.1 <= self.kernel.1 / 2,
            op(),
            "padding should be at most half of the kernel size"
        );
        ensure_op!(n * c > 0 && h > 0 && w > 0, op(), "empty input of shape {input:?}");
        let oh = out_size(h, self.kernel.0, self.stride.0, self.padding.0, self.dilation.0, self.ceil_mode);
        let ow = out_size(w, self.kernel.1, self.stride.1, self.padding.1, self.dilation.1, self.ceil_mode);
        match (oh, ow) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok(Geometry {
                n,
                c,
                h,
                w,
                oh,
                ow,
                kh: self.kernel.0,
                kw: self.kernel.1,
                sh: self.stride.0,
                sw: self.stride.1,
                ph: self.padding.0,
                pw: self.padding.1,
                dh: self.dilation.0,
                dw: self.dilation.1,
            }),
            _ => Err(Error::op(
                op(),
                format!("output of input {input:?} would be empty: the kernel is larger than the padded input"),
            )),
        }
    }
}

/// PyTorch's pooling_output_shape: in ceil mode the last window must start inside the input or
/// the left padding.
fn out_size(size: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    let span = (size + 2 * p) as i64 - (d * (k - 1)) as i64 - 1;
    if span < 0 {
        return None;
    }
    let num = span + if ceil { s as i64 - 1 } else { 0 };
    let mut out = num / s as i64 + 1;
    if ceil && (out - 1) * s as i64 >= (size + p) as i64 {
        out -= 1;
    }
    Some(out as usize)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl Geometry {
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
}

/// (out, indices), both (N, C, OH, OW); indices are flat positions ih·W + iw in the input plane.
pub fn forward_cpu<T: Real>(g: &Geometry, inp: &[T]) -> (Vec<T>, Vec<i32>) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut out = vec![T::zero(); g.planes() * ohw];
    let mut idx = vec![0i32; g.planes() * ohw];
    // The kernel offsets k whose input position start + k·d lies in [0, size).
    let valid = |start: isize, k: usize, d: usize, size: usize| {
        let lo = if start < 0 { ((-start) as usize).div_ceil(d) } else { 0 };
        let hi = if start >= size as isize { 0 } else { k.min((size as isize - 1 - start) as usize / d + 1) };
        lo..hi.max(lo)
    };
    const PLANES: usize = 16;
    out.par_chunks_mut(PLANES * ohw).zip(idx.par_chunks_mut(PLANES * ohw)).enumerate().for_each(|(c, (out, idx))| {
        for p in 0..out.len() / ohw {
            let x = &inp[(c * PLANES + p) * hw..][..hw];
            for oh in 0..g.oh {
                let h0 = (oh * g.sh) as isize - g.ph as isize;
                for ow in 0..g.ow {
                    let w0 = (ow * g.sw) as isize - g.pw as isize;
                    let (mut best, mut at) = (T::neg_infinity(), usize::MAX);
                    // Row-major over the window, as PyTorch: ties keep the first maximum, NaN wins.
                    for kh in valid(h0, g.kh, g.dh, g.h) {
                        let row = (h0 + (kh * g.dh) as isize) as usize * g.w;
                        for kw in valid(w0, g.kw, g.dw, g.w) {
                            let i = row + (w0 + (kw * g.dw) as isize) as usize;
                            let v = x[i];
                            if at == usize::MAX || v > best || v.is_nan() {
                                best = v;
                                at = i;
                            }
                        }
                    }
                    out[p * ohw + oh * g.ow + ow] = best;
                    idx[p * ohw + oh * g.ow + ow] = at as i32;
                }
            }
        }
    });
    (out, idx)
}

/// dinp (N, C, H, W): each output's gradient goes to the input element its index names.
pub fn backward_cpu<T: Real>(g: &Geometry, indices: &[i32], dout: &[T]) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dinp = vec![T::zero(); g.planes() * hw];
    dinp.par_chunks_mut(hw).enumerate().for_each(|(plane, d)| {
        for o in plane * ohw..(plane + 1) * ohw {
            d[indices[o] as usize] += dout[o];
        }
    });
    dinp
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub planes: u32,
    pub H: u32,
    pub W: u32,
    pub OH: u32,
    pub OW: u32,
    pub KH: u32,
    pub KW: u32,
    pub SH: u32,
    pub SW: u32,
    pub PH: u32,
    pub PW: u32,
    pub DH: u32,
    pub DW: u32,
    pub disjoint: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(s, Params, [planes, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, disjoint, _pad1, _pad2])
    };
    vec![l("maxpool2d_forward"), l("maxpool2d_backward")]
}

fn params(g: &Geometry) -> Params {
    let u = |v: usize| v as u32;
    Params {
        planes: u(g.planes()),
        H: u(g.h),
        W: u(g.w),
        OH: u(g.oh),
        OW: u(g.ow),
        KH: u(g.kh),
        KW: u(g.kw),
        SH: u(g.sh),
        SW: u(g.sw),
        PH: u(g.ph),
        PW: u(g.pw),
        DH: u(g.dh),
        DW: u(g.dw),
        disjoint: (g.sh > g.dh * (g.kh - 1) && g.sw > g.dw * (g.kw - 1)) as u32,
        _pad1: 0,
        _pad2: 0,
    }
}

/// out and indices (i32) from inp.
pub fn forward_gpu(gpu: &Gpu, label: &str, g: &Geometry, inp: &View, out: &View, indices: &View) -> Result<Kernel> {
    let n = (g.planes() * g.oh * g.ow) as u64;
    Kernel::new(gpu, "maxpool2d_forward", label, &params(g), &[inp, out, indices], n.div_ceil(256))
}

/// dinp (overwritten) from the forward's indices and dout.
pub fn backward_gpu(gpu: &Gpu, label: &str, g: &Geometry, indices: &View, dout: &View, dinp: &View) -> Result<Kernel> {
    let n = (g.planes() * g.h * g.w) as u64;
    Kernel::new(
        gpu,
        "maxpool2d_backward",
        &format!("{label}.dinp"),
        &params(g),
        &[indices, dout, dinp],
        n.div_ceil(256),
    )
}
