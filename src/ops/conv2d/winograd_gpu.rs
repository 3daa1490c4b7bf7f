//! The GPU's Winograd convolutions ([`ConvKernels::Winograd`]; f32, in mixed precision too: see
//! [`layer_precision`]): a stride-1, undilated layer with a square 3 × 3 or 5 × 5 kernel and at
//! least 8 input and output channels computes its forward, its input gradient (as the convolution
//! of the output gradient with the flipped, transposed weight) and its weight gradient by
//! Winograd's minimal filtering F(4 × 4, R × R). Each 4 × 4 block of output pixels (a tile) comes
//! from the A × A input patch around it (A = R + 3) as Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, so the
//! multiplications per tile, input channel and output channel are A² (36; 64) where the direct
//! kernels make 16 R² (144; 400): 4 and 6.25 times fewer. The transforms' f32 rounding adds errors
//! of about 1e-5 of a layer's largest output (tests/golden/winograd_transforms.py; about 1e-6 for
//! the direct kernels). The kernels:
//! - conv2d_winograd_weight.wgsl: U[ξ] (IC × OC') = G g Gᵀ, once per step;
//! - conv2d_winograd_input.wgsl: V[ξ] (IC' × T) = Bᵀ d B for the T tiles of a chunk of images;
//! - conv2d_winograd_product.wgsl: M[ξ] (OC' × T) = U[ξ]ᵀ V[ξ], one product per position ξ of the
//!   A × A tile, register-blocked;
//! - conv2d_winograd_output.wgsl: out = Aᵀ M A (+ bias) for each tile;
//! - for the weight gradient, conv2d_winograd_output_gradient.wgsl: dM[ξ] (OC' × T) = A dY Aᵀ;
//!   conv2d_winograd_weight_gradient_product.wgsl: dU[ξ] (OC' × IC') = Σ over the tiles of
//!   dM[ξ] V[ξ]ᵀ, in splits (summed by sum_splits); conv2d_winograd_weight_gradient.wgsl:
//!   dweight = Gᵀ dU G.
//!
//! (C' is C rounded up to 8.) The transforms are scratch: the images go through in chunks whose
//! transforms each fit [`CHUNK_WORDS`] and a binding. They cost memory traffic the direct kernels do
//! not have (A² / 16 = 2.25 and 4 times the tensors they transform), so this is a choice by name
//! (WGRAD_CONV_KERNELS=winograd), to be timed against the direct kernels on each adapter.

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
    pub ICP: u32,
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
    pub TS: u32,
    pub S0: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
    pub _pad3: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(
            s,
            Params,
            [
                N0, NB, IC, ICP, H, W, OC, OCP, OH, OW, PH, PW, TH, TW, TP, XI, has_bias, origin, SOC, SIC, SKH, SKW,
                TS, S0, _pad0, _pad1, _pad2, _pad3
            ]
        )
    };
    [
        "conv2d_winograd_input",
        "conv2d_winograd_product",
        "conv2d_winograd_output",
        "conv2d_winograd_weight",
        "conv2d_winograd_output_gradient",
        "conv2d_winograd_weight_gradient_product",
        "conv2d_winograd_weight_gradient",
    ]
    .into_iter()
    .map(l)
    .collect()
}

/// How a convolution goes through the Winograd kernels: its tiles, its channels rounded up to
/// blocks, the images of a chunk and the columns of a chunk's transforms (its tiles rounded up to a
/// block).
#[derive(Clone, Copy)]
struct Tiling {
    g: Geometry,
    r: usize,
    /// Tiles of an image, rows by columns.
    tiles: (usize, usize),
    icp: usize,
    ocp: usize,
    images: usize,
    tp: usize,
}

impl Tiling {
    /// Where the convolution `g` can take Winograd on `gpu`: [`ConvKernels::Winograd`] chosen,
    /// stride and dilation 1, a square 3 × 3 or 5 × 5 kernel, at least [`MIN_CHANNELS`] input and
    /// output channels, and one image's transforms, and U, within [`CHUNK_WORDS`] and a binding.
    fn new(gpu: &Gpu, g: &Geometry) -> Option<Tiling> {
        let taken = gpu.conv_kernels() == ConvKernels::Winograd
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
        let (icp, ocp) = (g.ic.next_multiple_of(BLOCK), g.oc.next_multiple_of(BLOCK));
        let rows = icp.max(ocp) as u64;
        let limit = Self::limit(gpu);
        // A chunk's columns are its tiles rounded up to a block.
        let images = ((limit / (xi * rows)).saturating_sub(BLOCK as u64) / per_image).min(g.n as u64) as usize;
        if images == 0 || xi * (icp * ocp) as u64 > limit {
            return None;
        }
        let tp = (images * tiles.0 * tiles.1).next_multiple_of(BLOCK);
        Some(Tiling { g: *g, r, tiles, icp, ocp, images, tp })
    }
    /// The most words of one scratch tensor.
    fn limit(gpu: &Gpu) -> u64 {
        gpu.max_binding_elems().min(CHUNK_WORDS)
    }
    fn xi(&self) -> usize {
        (M + self.r - 1) * (M + self.r - 1)
    }
    /// Each chunk's first image and images.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.g.n).step_by(self.images).map(|n0| (n0, self.images.min(self.g.n - n0)))
    }
    /// The kernels' parameters for the chunk of `nb` images from `n0`, with no weight, bias or
    /// splits (which the kernels reading them set).
    fn params(&self, n0: usize, nb: usize) -> Params {
        let g = &self.g;
        let c = |v: usize| v as u32;
        Params {
            N0: c(n0),
            NB: c(nb),
            IC: c(g.ic),
            ICP: c(self.icp),
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
            XI: c(self.xi()),
            has_bias: 0,
            origin: 0,
            SOC: 0,
            SIC: 0,
            SKH: 0,
            SKW: 0,
            TS: 0,
            S0: 0,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
            _pad3: 0,
        }
    }
    /// The transform kernel `name` for this kernel size.
    fn shader(&self, label: &str, name: &'static str) -> Result<&'static str> {
        crate::shaders::winograd_variant(name, self.r)
            .ok_or_else(|| Error::op(label, format!("no {name} kernel for {r} x {r}", r = self.r)))
    }
    /// The input's transform for the chunk of `p` into `v`.
    fn input(&self, gpu: &Gpu, label: &str, p: &Params, inp: &View, v: &View) -> Result<Kernel> {
        let invocations = Dispatch::Invocations((self.icp * self.tp) as u64);
        let shader = self.shader(label, "conv2d_winograd_input")?;
        Kernel::new(gpu, shader, &format!("{label}.input.winograd"), p, &[inp, v], invocations)
    }
}

/// The scratch views of a Winograd product, refused unless they are as many as `words` and as long.
fn scratch_views<'a, const K: usize>(
    label: &str,
    what: &str,
    views: &[&'a View],
    words: [u64; K],
) -> Result<[&'a View; K]> {
    let refuse = || {
        Error::op(label, format!("the Winograd {what} needs {words:?} words of scratch, given {} views", views.len()))
    };
    let views: [&View; K] = views.try_into().map_err(|_| refuse())?;
    if views.iter().zip(words).any(|(v, w)| v.len < w) {
        return Err(refuse());
    }
    Ok(views)
}

/// A convolution (stride and dilation 1) computed by Winograd: a layer's forward, or its input
/// gradient as a convolution; its weight read through `strides` (oc, ic, kh, kw) from `origin`.
pub struct Winograd {
    t: Tiling,
    strides: [i32; 4],
    origin: usize,
}

/// The precision the layer `g` runs in on `gpu`: the device's, but f32 in mixed precision where
/// Winograd takes all three of its products ([`takes_layer`]). Its transforms stay f32 there:
/// stored in f16 they alone would put errors of about 1e-2 of a tile's largest output, 18 to 34
/// times those of the direct kernels' f16 operands (`tests/golden/winograd_transforms.py
/// precision`). The products then read the f32 input, weight and output gradient, so the layer
/// makes none of mixed precision's f16 copies (ops::cast_f16).
pub fn layer_precision(gpu: &Gpu, g: &Geometry) -> Precision {
    match gpu.precision() {
        Precision::Mixed if takes_layer(gpu, g) => Precision::F32,
        p => p,
    }
}

/// Whether Winograd can take all three of `g`'s products on `gpu`: its forward, its input gradient
/// and its weight gradient ([`Tiling::new`]'s conditions, and theirs).
fn takes_layer(gpu: &Gpu, g: &Geometry) -> bool {
    plan_forward(gpu, g).is_some() && plan_input_gradient(gpu, g).is_some() && plan_weight_gradient(gpu, g).is_some()
}

/// Whether `g`'s products run Winograd where they can on `gpu`: in f32 each product that can, in
/// mixed precision only where all three can ([`layer_precision`]).
fn runs(gpu: &Gpu, g: &Geometry) -> bool {
    gpu.precision() == Precision::F32 || takes_layer(gpu, g)
}

/// The Winograd forward of `g` on `gpu`, where it runs instead of the direct kernels
/// ([`Tiling::new`]'s conditions, in mixed precision [`layer_precision`]'s).
pub fn forward(gpu: &Gpu, g: &Geometry) -> Option<Winograd> {
    plan_forward(gpu, g).filter(|_| runs(gpu, g))
}

fn plan_forward(gpu: &Gpu, g: &Geometry) -> Option<Winograd> {
    let (ic, k) = (g.ic as i32, (g.kh * g.kw) as i32);
    Some(Winograd { t: Tiling::new(gpu, g)?, strides: [ic * k, k, g.kw as i32, 1], origin: 0 })
}

/// The Winograd input gradient of `g` on `gpu`: the convolution of the output gradient
/// (N, OC, OH, OW), padded by (KH - 1 - PH, KW - 1 - PW), with w'(ic, oc, kh, kw) =
/// w(oc, ic, KH - 1 - kh, KW - 1 - kw), where that convolution takes Winograd and the layer's
/// padding is less than its kernel (and, in mixed precision, [`layer_precision`]'s conditions).
pub fn input_gradient(gpu: &Gpu, g: &Geometry) -> Option<Winograd> {
    plan_input_gradient(gpu, g).filter(|_| runs(gpu, g))
}

fn plan_input_gradient(gpu: &Gpu, g: &Geometry) -> Option<Winograd> {
    if g.ph >= g.kh || g.pw >= g.kw {
        return None;
    }
    let t = Geometry {
        ic: g.oc,
        h: g.oh,
        w: g.ow,
        oc: g.ic,
        oh: g.h,
        ow: g.w,
        ph: g.kh - 1 - g.ph,
        pw: g.kw - 1 - g.pw,
        ..*g
    };
    let k = (g.kh * g.kw) as i32;
    let strides = [k, g.ic as i32 * k, -(g.kw as i32), -1];
    Some(Winograd { t: Tiling::new(gpu, &t)?, strides, origin: (g.kh - 1) * g.kw + g.kw - 1 })
}

impl Winograd {
    /// The words of its scratch: U, V and M.
    pub fn scratch(&self) -> [u64; 3] {
        let (t, xi) = (&self.t, self.t.xi());
        [xi * t.g.ic * t.ocp, xi * t.icp * t.tp, xi * t.ocp * t.tp].map(|w| w as u64)
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
        let [u, v, m] = scratch_views(label, "convolution", scratch, self.scratch())?;
        let t = &self.t;
        let g = &t.g;
        let with_weight = |p: Params| Params {
            has_bias: bias.is_some() as u32,
            origin: self.origin as u32,
            SOC: self.strides[0],
            SIC: self.strides[1],
            SKH: self.strides[2],
            SKW: self.strides[3],
            ..p
        };
        let mut prog = Program::default();
        let p = with_weight(t.params(0, 0));
        let groups = Dispatch::Invocations((g.ic * t.ocp) as u64);
        let shader = t.shader(label, "conv2d_winograd_weight")?;
        prog.push(Kernel::new(gpu, shader, &format!("{label}.weight.winograd"), &p, &[weight, u], groups)?);
        for (n0, nb) in t.chunks() {
            let p = with_weight(t.params(n0, nb));
            prog.push(t.input(gpu, label, &p, inp, v)?);
            let xi = t.xi();
            let blocks = Dispatch::Invocations((xi * t.ocp / BLOCK * t.tp / BLOCK) as u64);
            let flops = 2 * (xi * g.ic * t.ocp * t.tp) as u64;
            prog.push(Kernel::new(gpu, "conv2d_winograd_product", label, &p, &[u, v, m], blocks)?.flops(flops));
            let invocations = Dispatch::Invocations((g.oc * nb * t.tiles.0 * t.tiles.1) as u64);
            let shader = t.shader(label, "conv2d_winograd_output")?;
            let views = [m, bias.unwrap_or(m), out];
            prog.push(Kernel::new(gpu, shader, &format!("{label}.output.winograd"), &p, &views, invocations)?);
        }
        Ok(prog)
    }
}

/// The tiles one split of the weight gradient's product sums at least.
const MIN_SPLIT_TILES: usize = 64;

/// A layer's weight gradient by Winograd: dU[ξ] (OC × IC) = Σ over the tiles of
/// (A dY Aᵀ)[ξ] (Bᵀ d B)[ξ], dweight = Gᵀ dU G; the sum over tiles split across invocations where
/// the GPU wants more (`splits` per chunk, `ts` tiles each), each chunk's splits written apart and
/// all added by sum_splits.
pub struct WeightGradient {
    t: Tiling,
    splits: usize,
    ts: usize,
}

/// The Winograd weight gradient of `g` on `gpu`, where its forward takes Winograd and its partial
/// sums fit.
pub fn weight_gradient(gpu: &Gpu, g: &Geometry) -> Option<WeightGradient> {
    plan_weight_gradient(gpu, g).filter(|_| runs(gpu, g))
}

fn plan_weight_gradient(gpu: &Gpu, g: &Geometry) -> Option<WeightGradient> {
    let t = Tiling::new(gpu, g)?;
    let invocations = t.xi() * t.ocp / BLOCK * t.icp / BLOCK;
    let chunks = t.g.n.div_ceil(t.images);
    let part_words = |splits: usize| (chunks * splits * t.xi() * t.ocp * t.icp) as u64;
    let mut splits = gpu.split_target().div_ceil(invocations).clamp(1, (t.tp / MIN_SPLIT_TILES).max(1));
    while splits > 1 && part_words(splits) > Tiling::limit(gpu) {
        splits /= 2;
    }
    if part_words(splits) > Tiling::limit(gpu) {
        return None;
    }
    let ts = t.tp.div_ceil(splits).next_multiple_of(4);
    Some(WeightGradient { t, splits: t.tp.div_ceil(ts), ts })
}

impl WeightGradient {
    /// The partial sums: each chunk's splits.
    fn parts(&self) -> usize {
        self.t.g.n.div_ceil(self.t.images) * self.splits
    }
    /// The words of its scratch: V, the output gradient's transform, the partial sums and, where
    /// there are several, their sum.
    pub fn scratch(&self) -> Vec<u64> {
        let (t, xi) = (&self.t, self.t.xi());
        let du = xi * t.ocp * t.icp;
        let mut words = vec![xi * t.icp * t.tp, xi * t.ocp * t.tp, self.parts() * du];
        words.extend((self.parts() > 1).then_some(du));
        words.into_iter().map(|w| w as u64).collect()
    }
    /// The kernels writing `dweight` (overwritten) from the input `inp` and the output gradient
    /// `dout` through `scratch` ([`WeightGradient::scratch`]'s).
    pub fn gpu(
        &self,
        gpu: &Gpu,
        label: &str,
        inp: &View,
        dout: &View,
        dweight: &View,
        scratch: &[&View],
    ) -> Result<Program> {
        let words = self.scratch();
        let (v, dm, part, du) = match words.len() {
            3 => scratch_views(label, "weight gradient", scratch, [words[0], words[1], words[2]])
                .map(|[v, dm, p]| (v, dm, p, p))?,
            _ => scratch_views(label, "weight gradient", scratch, [words[0], words[1], words[2], words[3]])
                .map(|[v, dm, p, du]| (v, dm, p, du))?,
        };
        let t = &self.t;
        let xi = t.xi();
        let mut prog = Program::default();
        for (c, (n0, nb)) in t.chunks().enumerate() {
            let p = Params { TS: self.ts as u32, S0: (c * self.splits) as u32, ..t.params(n0, nb) };
            prog.push(t.input(gpu, label, &p, inp, v)?);
            let invocations = Dispatch::Invocations((t.ocp * t.tp) as u64);
            let shader = t.shader(label, "conv2d_winograd_output_gradient")?;
            prog.push(Kernel::new(gpu, shader, &format!("{label}.dout.winograd"), &p, &[dout, dm], invocations)?);
            let blocks = Dispatch::Invocations((self.splits * xi * t.ocp / BLOCK * t.icp / BLOCK) as u64);
            let flops = 2 * (xi * t.ocp * t.icp * t.tp) as u64;
            let product = "conv2d_winograd_weight_gradient_product";
            prog.push(Kernel::new(gpu, product, label, &p, &[dm, v, part], blocks)?.flops(flops));
        }
        if self.parts() > 1 {
            prog.push(crate::ops::sum_splits::gpu(gpu, label, part, du, self.parts())?);
        }
        let p = t.params(0, 0);
        let invocations = Dispatch::Invocations((t.g.oc * t.g.ic) as u64);
        let shader = t.shader(label, "conv2d_winograd_weight_gradient")?;
        prog.push(Kernel::new(gpu, shader, &format!("{label}.transform.winograd"), &p, &[du, dweight], invocations)?);
        Ok(prog)
    }
}

/// The backward's Winograd scratch where its weight gradient and input gradient run so (either,
/// both or neither): the two big transforms first, which the two share (one runs after the other),
/// then the weight gradient's partial sums (and their sum), then the input gradient's transformed
/// weight.
pub fn backward_scratch(dweight: Option<&WeightGradient>, dinp: Option<&Winograd>) -> Vec<u64> {
    let w = dweight.map(|w| w.scratch()).unwrap_or_default();
    let d = dinp.map(|d| d.scratch());
    let big = |i: usize| w.get(i).copied().unwrap_or(0).max(d.map_or(0, |d| d[i + 1]));
    let mut words = Vec::new();
    if !w.is_empty() || d.is_some() {
        words.extend([big(0), big(1)]);
    }
    words.extend(w.iter().skip(2));
    words.extend(d.map(|d| d[0]));
    words
}

/// The weight gradient's and the input gradient's scratch views from the backward's, as
/// [`backward_scratch`] laid them out (fewer than it laid out: none, and the products refuse them).
pub fn backward_views<'a>(
    dweight: Option<&WeightGradient>,
    dinp: Option<&Winograd>,
    views: &[&'a View],
) -> (Vec<&'a View>, Vec<&'a View>) {
    let own = dweight.map_or(0, |w| w.scratch().len() - 2);
    if views.len() != backward_scratch(dweight, dinp).len() || views.len() < 2 {
        return (Vec::new(), Vec::new());
    }
    let (shared, rest) = views.split_at(2);
    let w = dweight.map_or(Vec::new(), |_| shared.iter().chain(&rest[..own]).copied().collect());
    let d = dinp.map_or(Vec::new(), |_| [rest[own]].into_iter().chain(shared.iter().copied()).collect());
    (w, d)
}
