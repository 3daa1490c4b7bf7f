//! The GPU's Winograd convolutions ([`ConvKernels::Winograd`], f32): a stride-1, undilated layer
//! with a square 3 × 3 or 5 × 5 kernel computes its forward, and its input gradient as the
//! convolution of the output gradient with the flipped, transposed weight, by Winograd's minimal
//! filtering F(4 × 4, R × R). Each 4 × 4 block of output pixels (a tile) comes from the
//! A × A input patch around it (A = R + 3) as Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, so the multiplications
//! per tile, input channel and output channel are A² (36; 64) where the direct kernels make 16 R²
//! (144; 400): 4 and 6.25 times fewer. The transforms' f32 rounding adds errors of about 1e-5 of
//! the output's largest magnitude (tests/golden/winograd_transforms.py; 1e-6 for the direct
//! kernels). Four kernels:
//! - conv2d_winograd_weight.wgsl: U[ξ] (IC × OC') = G g Gᵀ, once per step;
//! - conv2d_winograd_input.wgsl: V[ξ] (IC × T) = Bᵀ d B for the T tiles of a chunk of images;
//! - conv2d_winograd_product.wgsl: M[ξ] (OC' × T) = U[ξ]ᵀ V[ξ], one product per position ξ of the
//!   A × A tile, register-blocked;
//! - conv2d_winograd_output.wgsl: out = Aᵀ M A (+ bias) for each tile.
//!
//! The transformed input and the products are scratch: the images go through in chunks whose V
//! and M each fit [`CHUNK_WORDS`] and a binding. The transforms cost memory traffic the direct
//! kernels do not have (V and M are A² / 16 = 2.25 and 4 times the tensors they transform), so
//! this is a choice by name (WGRAD_CONV_KERNELS=winograd), to be timed against the direct kernels
//! on each adapter.

use super::Geometry;
use crate::buffer::View;
use crate::device::{ConvKernels, Gpu, Precision};
use crate::kernel::{Dispatch, Kernel, Program};
use crate::ops::ParamsLayout;
use crate::{Error, Result};

/// Output pixels per tile side (the m of F(m × m, R × R); M in the shaders).
const M: usize = 4;
/// The output channels (U's and M's rows) and tiles (V's and M's columns) come in blocks of this
/// many: one invocation of the product computes 8 × 8.
const BLOCK: usize = 8;
/// The fewest input and output channels a layer has for the transforms to pay: they cost per
/// channel, the products save per pair of channels.
const MIN_CHANNELS: usize = 8;
/// The most words a chunk's transformed input (V) or products (M) take: 256 MiB each (Tudui's
/// `conv2` at batch 1024 in one chunk: 128 MiB each).
const CHUNK_WORDS: u64 = 1 << 26;

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub N0: u32,
    pub NB: u32,
    pub IC: u32,
    pub H: u32,
    pub W: u32,
    pub OC: u32,
    pub OCP: u32,
    pub OH: u32,
    pub OW: u32,
    pub PH: u32,
    pub PW: u32,
    pub TH: u32,
    pub TW: u32,
    pub TP: u32,
    pub XI: u32,
    pub has_bias: u32,
    pub origin: u32,
    pub SOC: i32,
    pub SIC: i32,
    pub SKH: i32,
    pub SKW: i32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(
            s,
            Params,
            [N0, NB, IC, H, W, OC, OCP, OH, OW, PH, PW, TH, TW, TP, XI, has_bias, origin, SOC, SIC, SKH, SKW, _pad0, _pad1, _pad2]
        )
    };
    ["conv2d_winograd_input", "conv2d_winograd_product", "conv2d_winograd_output", "conv2d_winograd_weight"]
        .into_iter()
        .map(l)
        .collect()
}

/// A convolution `g` (stride and dilation 1) computed by Winograd: a layer's forward, or its input
/// gradient as a convolution; its weight read through `strides` (oc, ic, kh, kw) from `origin`.
pub struct Winograd {
    g: Geometry,
    r: usize,
    strides: [i32; 4],
    origin: usize,
    /// Tiles of an image, rows by columns.
    tiles: (usize, usize),
    /// Output channels rounded up to whole blocks.
    ocp: usize,
    /// Images per chunk, and the columns of a chunk's V and M (its tiles rounded up to a block).
    images: usize,
    tp: usize,
}

/// The Winograd forward of `g` on `gpu`, where it runs instead of the direct kernels: with
/// [`ConvKernels::Winograd`] in f32, where [`plan`]'s conditions hold.
pub fn forward(gpu: &Gpu, g: &Geometry) -> Option<Winograd> {
    let (ic, k) = (g.ic as i32, (g.kh * g.kw) as i32);
    plan(gpu, g, [ic * k, k, g.kw as i32, 1], 0)
}

/// The Winograd input gradient of `g` on `gpu`: the convolution of the output gradient
/// (N, OC, OH, OW), padded by (KH - 1 - PH, KW - 1 - PW), with w'(ic, oc, kh, kw) =
/// w(oc, ic, KH - 1 - kh, KW - 1 - kw), where that convolution takes Winograd and the layer's
/// padding is less than its kernel.
pub fn input_gradient(gpu: &Gpu, g: &Geometry) -> Option<Winograd> {
    if g.ph >= g.kh || g.pw >= g.kw {
        return None;
    }
    let t = Geometry { ic: g.oc, h: g.oh, w: g.ow, oc: g.ic, oh: g.h, ow: g.w, ph: g.kh - 1 - g.ph, pw: g.kw - 1 - g.pw, ..*g };
    let k = (g.kh * g.kw) as i32;
    let strides = [k, g.ic as i32 * k, -(g.kw as i32), -1];
    plan(gpu, &t, strides, (g.kh - 1) * g.kw + g.kw - 1)
}

/// Where `g` takes Winograd on `gpu`: [`ConvKernels::Winograd`] chosen, f32, stride and dilation 1,
/// a square 3 × 3 or 5 × 5 kernel, at least [`MIN_CHANNELS`] input and output channels, and one
/// image's V and M, and U, within [`CHUNK_WORDS`] and a binding.
fn plan(gpu: &Gpu, g: &Geometry, strides: [i32; 4], origin: usize) -> Option<Winograd> {
    let taken = gpu.conv_kernels() == ConvKernels::Winograd
        && gpu.precision() == Precision::F32
        && (g.sh, g.sw, g.dh, g.dw) == (1, 1, 1, 1)
        && g.kh == g.kw
        && matches!(g.kh, 3 | 5)
        && g.ic >= MIN_CHANNELS
        && g.oc >= MIN_CHANNELS;
    if !taken {
        return None;
    }
    let r = g.kh;
    let xi = ((M + r - 1) * (M + r - 1)) as u64;
    let tiles = (g.oh.div_ceil(M), g.ow.div_ceil(M));
    let per_image = (tiles.0 * tiles.1) as u64;
    let ocp = g.oc.next_multiple_of(BLOCK);
    let rows = g.ic.max(ocp) as u64;
    let limit = gpu.max_binding_elems().min(CHUNK_WORDS);
    // A chunk's columns are its tiles rounded up to a block.
    let images = ((limit / (xi * rows)).saturating_sub(BLOCK as u64) / per_image).min(g.n as u64) as usize;
    if images == 0 || xi * (g.ic * ocp) as u64 > limit {
        return None;
    }
    let tp = (images * tiles.0 * tiles.1).next_multiple_of(BLOCK);
    Some(Winograd { g: *g, r, strides, origin, tiles, ocp, images, tp })
}

impl Winograd {
    fn xi(&self) -> usize {
        (M + self.r - 1) * (M + self.r - 1)
    }
    /// The words of its scratch: U, V and M.
    pub fn scratch(&self) -> [u64; 3] {
        let (xi, g) = (self.xi(), &self.g);
        [xi * g.ic * self.ocp, xi * g.ic * self.tp, xi * self.ocp * self.tp].map(|w| w as u64)
    }
    /// The kernels writing `out` (overwritten, plus `bias`) from `inp` and `weight` (f32), through
    /// `scratch` ([`Winograd::scratch`]'s U, V and M): the weight's transform, then each chunk's
    /// three kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn gpu(
        &self,
        gpu: &Gpu,
        label: &str,
        inp: &View,
        weight: &View,
        bias: Option<&View>,
        out: &View,
        scratch: &[&View],
    ) -> Result<Program> {
        let &[u, v, m] = scratch else {
            return Err(Error::op(label, format!("the Winograd convolution given {} scratch tensors, not 3", scratch.len())));
        };
        let (g, xi) = (&self.g, self.xi());
        let words = self.scratch();
        if [u, v, m].iter().zip(words).any(|(s, w)| s.len < w) {
            return Err(Error::op(label, format!("the Winograd convolution needs {words:?} words of scratch")));
        }
        let shader = |name| {
            crate::shaders::winograd_variant(name, self.r)
                .ok_or_else(|| Error::op(label, format!("no {name} kernel for {r} x {r}", r = self.r)))
        };
        let c = |v: usize| v as u32;
        let params = |n0: usize, nb: usize| Params {
            N0: c(n0),
            NB: c(nb),
            IC: c(g.ic),
            H: c(g.h),
            W: c(g.w),
            OC: c(g.oc),
            OCP: c(self.ocp),
            OH: c(g.oh),
            OW: c(g.ow),
            PH: c(g.ph),
            PW: c(g.pw),
            TH: c(self.tiles.0),
            TW: c(self.tiles.1),
            TP: c(self.tp),
            XI: c(xi),
            has_bias: bias.is_some() as u32,
            origin: c(self.origin),
            SOC: self.strides[0],
            SIC: self.strides[1],
            SKH: self.strides[2],
            SKW: self.strides[3],
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let mut prog = Program::default();
        let p = params(0, 0);
        let groups = Dispatch::Invocations((g.ic * self.ocp) as u64);
        prog.push(Kernel::new(gpu, shader("conv2d_winograd_weight")?, &format!("{label}.weight.winograd"), &p, &[weight, u], groups)?);
        let per_image = self.tiles.0 * self.tiles.1;
        for n0 in (0..g.n).step_by(self.images) {
            let nb = self.images.min(g.n - n0);
            let p = params(n0, nb);
            let invocations = Dispatch::Invocations((g.ic * self.tp) as u64);
            prog.push(Kernel::new(gpu, shader("conv2d_winograd_input")?, &format!("{label}.input.winograd"), &p, &[inp, v], invocations)?);
            let blocks = Dispatch::Invocations((xi * self.ocp / BLOCK * self.tp / BLOCK) as u64);
            let flops = 2 * (xi * g.ic * self.ocp * self.tp) as u64;
            prog.push(Kernel::new(gpu, "conv2d_winograd_product", label, &p, &[u, v, m], blocks)?.flops(flops));
            let invocations = Dispatch::Invocations((g.oc * nb * per_image) as u64);
            let views = [m, bias.unwrap_or(m), out];
            prog.push(Kernel::new(gpu, shader("conv2d_winograd_output")?, &format!("{label}.output.winograd"), &p, &views, invocations)?);
        }
        Ok(prog)
    }
}
