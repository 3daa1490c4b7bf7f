//! MaxPool2d (nn.MaxPool2d): kernel, stride (default = kernel), padding, dilation, ceil_mode, with
//! PyTorch's output size, tie rule (first maximum in row-major window order), -inf padding and NaN
//! propagation. The forward saves argmax indices; the backward gathers (no atomics).
//! Shaders: maxpool2d_forward.wgsl, maxpool2d_backward.wgsl.

use super::interface::{CpuBackward, CpuForward, GpuIo, Mode, Node, Op, Reads};
use super::{IntoPair, ParamsLayout};
use crate::buffer::View;
use crate::cpu::{multiversion, Real};
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Error, Result};
use rayon::prelude::*;

pub const OP: &str = "MaxPool2d";

crate::shaders!(maxpool2d_forward: 256, maxpool2d_backward: 256);

/// nn.MaxPool2d(kernel_size, stride=kernel_size, padding=0, dilation=1, ceil_mode=False).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
}

impl MaxPool2d {
    /// MaxPool2d(k): stride k, padding 0, dilation 1, floor mode.
    pub fn new(kernel: impl IntoPair) -> Self {
        let kernel = kernel.pair();
        MaxPool2d { kernel, stride: kernel, padding: (0, 0), dilation: (1, 1), ceil_mode: false }
    }
    pub fn stride(mut self, s: impl IntoPair) -> Self {
        self.stride = s.pair();
        self
    }
    pub fn padding(mut self, p: impl IntoPair) -> Self {
        self.padding = p.pair();
        self
    }
    pub fn dilation(mut self, d: impl IntoPair) -> Self {
        self.dilation = d.pair();
        self
    }
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Checks an (N, C, H, W) input and returns the pooling geometry.
    pub fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        let op = || self.describe();
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
        let oh = super::pool_out_size(h, self.kernel.0, self.stride.0, self.padding.0, self.dilation.0, self.ceil_mode);
        let ow = super::pool_out_size(w, self.kernel.1, self.stride.1, self.padding.1, self.dilation.1, self.ceil_mode);
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

impl Op for MaxPool2d {
    fn describe(&self) -> String {
        format!(
            "{OP}(kernel_size={:?}, stride={:?}, padding={:?}, dilation={:?}, ceil_mode={})",
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            super::py_bool(self.ceil_mode)
        )
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        Ok(Box::new(self.geometry(inputs[0])?))
    }
}

/// The forward saves the argmax indices; the backward reads only them and dout.
impl Node for Geometry {
    fn out_shape(&self) -> Vec<usize> {
        Geometry::out_shape(self).to_vec()
    }
    fn backward_reads(&self) -> Reads {
        Reads { inputs: false, output: false }
    }
    fn saved(&self) -> Vec<u64> {
        vec![(self.planes() * self.oh * self.ow) as u64]
    }
    fn forward_cpu(&self, mut io: CpuForward<'_>) {
        let indices: &mut [i32] = bytemuck::cast_slice_mut(&mut *io.saved[0]);
        forward_cpu(self, io.out, indices, io.inputs[0]);
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        if let Some(dinp) = io.dinputs.into_iter().next().flatten() {
            backward_cpu(self, dinp, io.dout, bytemuck::cast_slice(io.saved[0]));
        }
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        forward_gpu(gpu, io.label, self, io.out, io.saved[0], io.inputs[0])
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        match io.dinput(0) {
            Some(dinp) => backward_gpu(gpu, io.label, self, dinp, io.dout.unwrap(), io.saved[0]),
            None => Ok(Program::default()),
        }
    }
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

/// out and indices, both (N, C, OH, OW) and overwritten, from inp (N, C, H, W); indices are flat
/// positions ih·W + iw in the input plane.
pub fn forward_cpu<T: Real>(g: &Geometry, out: &mut [T], idx: &mut [i32], inp: &[T]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let tiled = g.tiled();
    let planes = crate::cpu::planes_per_task(hw);
    out.par_chunks_mut(planes * ohw).zip(idx.par_chunks_mut(planes * ohw)).enumerate().for_each(|(c, (out, idx))| {
        for (p, (out, idx)) in out.chunks_mut(ohw).zip(idx.chunks_mut(ohw)).enumerate() {
            let x = &inp[(c * planes + p) * hw..][..hw];
            if tiled {
                tiled_plane(g, out, idx, x);
            } else {
                plane(g, out, idx, x);
            }
        }
    });
}

impl Geometry {
    /// Whether the windows tile the input: kernel = stride, no padding or dilation, and no
    /// ceil_mode window running past the input (MaxPool2d(2) on even sizes and the like).
    pub fn tiled(&self) -> bool {
        self.kh == self.sh
            && self.kw == self.sw
            && self.ph == 0
            && self.pw == 0
            && self.dh == 1
            && self.dw == 1
            && self.oh * self.kh <= self.h
            && self.ow * self.kw <= self.w
    }
    /// Whether the windows tile the input with nothing left over: every element in one window.
    pub fn tiles_exactly(&self) -> bool {
        self.tiled() && self.oh * self.kh == self.h && self.ow * self.kw == self.w
    }
}

/// One plane, any geometry: the definition the fast path is tested against.
fn plane<T: Real>(g: &Geometry, out: &mut [T], idx: &mut [i32], x: &[T]) {
    // The kernel offsets k whose input position start + k·d lies in [0, size).
    let valid = |start: isize, k: usize, d: usize, size: usize| {
        let lo = if start < 0 { ((-start) as usize).div_ceil(d) } else { 0 };
        let hi = if start >= size as isize { 0 } else { k.min((size as isize - 1 - start) as usize / d + 1) };
        lo..hi.max(lo)
    };
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
            out[oh * g.ow + ow] = best;
            idx[oh * g.ow + ow] = at as i32;
        }
    }
}

/// One plane of windows that tile the input (kernel = stride, no padding or dilation): the same
/// result as the general loop, without its bounds arithmetic.
#[multiversion(targets = "simd")]
fn tiled_plane<T: Real>(g: &Geometry, out: &mut [T], idx: &mut [i32], x: &[T]) {
    if g.kh == 2 && g.kw == 2 {
        return pairs(g, out, idx, x);
    }
    for oh in 0..g.oh {
        for ow in 0..g.ow {
            let first = oh * g.sh * g.w + ow * g.sw;
            let (mut best, mut at) = (x[first], first);
            for kh in 0..g.kh {
                let row = first + kh * g.w;
                for (kw, &v) in x[row..row + g.kw].iter().enumerate() {
                    // Row-major over the window, as PyTorch: ties keep the first maximum, NaN wins.
                    if v > best || v.is_nan() {
                        best = v;
                        at = row + kw;
                    }
                }
            }
            out[oh * g.ow + ow] = best;
            idx[oh * g.ow + ow] = at as i32;
        }
    }
}

/// [`tiled_plane`] for 2×2 windows (MaxPool2d(2)), branch-free and over zipped pairs of each row
/// (no index arithmetic) so that a row of windows vectorizes: the same comparisons in the same
/// order (a later value replaces the best when it is greater or NaN).
#[inline(always)]
fn pairs<T: Real>(g: &Geometry, out: &mut [T], idx: &mut [i32], x: &[T]) {
    let w = g.w as i32;
    for oh in 0..g.oh {
        let r0 = 2 * oh * g.w;
        let (top, bottom) = (&x[r0..r0 + 2 * g.ow], &x[r0 + g.w..r0 + g.w + 2 * g.ow]);
        let (o, ix) = (&mut out[oh * g.ow..(oh + 1) * g.ow], &mut idx[oh * g.ow..(oh + 1) * g.ow]);
        let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        for (ow, ((o, ix), (t, b))) in o.iter_mut().zip(ix.iter_mut()).zip(windows).enumerate() {
            let (mut best, mut at) = (t[0], 0i32);
            for (k, v) in [(1i32, t[1]), (w, b[0]), (w + 1, b[1])] {
                let take = v > best || v.is_nan();
                best = if take { v } else { best };
                at = if take { k } else { at };
            }
            *o = best;
            *ix = (r0 + 2 * ow) as i32 + at;
        }
    }
}

/// dinp (N, C, H, W), overwritten: each output's gradient goes to the input element its index names.
pub fn backward_cpu<T: Real>(g: &Geometry, dinp: &mut [T], dout: &[T], indices: &[i32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    crate::cpu::par_planes(dinp, hw, |plane, d| {
        d.fill(T::zero());
        for o in plane * ohw..(plane + 1) * ohw {
            d[indices[o] as usize] += dout[o];
        }
    });
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
    pub run: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(s, Params, [planes, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, disjoint, run, _pad2])
    };
    vec![l("maxpool2d_forward"), l("maxpool2d_backward")]
}

fn params(gpu: &Gpu, g: &Geometry) -> Params {
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
        // Windows that cannot overlap (the backward's one-candidate path; where they tile the input
        // exactly its `_tiles` variant runs instead).
        disjoint: (g.sh > g.dh * (g.kh - 1) && g.sw > g.dw * (g.kw - 1)) as u32,
        run: u(run(gpu, g)),
        _pad2: 0,
    }
}

/// Output elements (windows) per invocation of the forward and of the backward where windows tile
/// the input exactly, consecutive along one output row: a whole row on CPU adapters, which run an
/// invocation's integer divisions lane by lane (on lavapipe, Tudui's `pool1.dinp` 12.7 → 3.6 ms
/// at batch 64, history 58), one window on GPUs.
fn run(gpu: &Gpu, g: &Geometry) -> usize {
    if gpu.split_target() == 0 {
        g.ow
    } else {
        1
    }
}

/// out and indices (i32), overwritten, from inp.
pub fn forward_gpu(gpu: &Gpu, label: &str, g: &Geometry, out: &View, indices: &View, inp: &View) -> Result<Program> {
    let n = (g.planes() * g.oh * g.ow / run(gpu, g)) as u64;
    let shader = if g.tiled() { "maxpool2d_forward_tiles" } else { "maxpool2d_forward" };
    Ok(Kernel::new(gpu, shader, label, &params(gpu, g), &[inp, out, indices], Dispatch::Invocations(n))?.into())
}

/// dinp, overwritten, from dout and the forward's indices.
pub fn backward_gpu(gpu: &Gpu, label: &str, g: &Geometry, dinp: &View, dout: &View, indices: &View) -> Result<Program> {
    let n = match g.tiles_exactly() {
        true => g.planes() * g.oh * g.ow / run(gpu, g),
        false => g.planes() * g.h * g.w,
    } as u64;
    let label = format!("{label}.dinp");
    let shader = if g.tiles_exactly() { "maxpool2d_backward_tiles" } else { "maxpool2d_backward" };
    Ok(Kernel::new(gpu, shader, &label, &params(gpu, g), &[indices, dout, dinp], Dispatch::Invocations(n))?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The tiled fast path equals the general loop, ties and NaN included.
    #[test]
    fn tiled_windows_match_the_general_loop() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for k in 1..=4 {
            for (h, w) in [(k, k), (2 * k, 3 * k), (5 * k + k - 1, 4 * k), (7, 9)] {
                let pool = MaxPool2d::new(k);
                let Ok(g) = pool.geometry(&[1, 1, h, w]) else { continue };
                assert!(g.tiled(), "{g:?}");
                // Few distinct values (ties), and some NaN.
                let x: Vec<f32> = (0..h * w)
                    .map(|_| match rng.random_range(0..10) {
                        0 => f32::NAN,
                        v => (v % 4) as f32,
                    })
                    .collect();
                let n = g.oh * g.ow;
                let (mut a, mut ia, mut b, mut ib) = (vec![0f32; n], vec![0i32; n], vec![0f32; n], vec![0i32; n]);
                tiled_plane(&g, &mut a, &mut ia, &x);
                plane(&g, &mut b, &mut ib, &x);
                assert_eq!(ia, ib, "{g:?}");
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{g:?}");
            }
        }
    }
}
