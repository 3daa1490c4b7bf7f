//! Staging f32 tensors as f16 for [`Precision::Mixed`]: Conv2d and Linear
//! cast their input and weight (forward) and their output gradient (backward) with these kernels
//! and run the `_f16` variants of their product kernels on the copies (see [`mod@crate::shaders`]).
//! Shaders: cast_f16_absmax.wgsl (the largest |x|: twice, over the tensor then over its parts),
//! cast_f16.wgsl (the cast), cast_f16_channels_last.wgsl (the cast where the products run on
//! cooperative matrices: channels last, padded to runs of 4, which those kernels read 4 halves at
//! a time), cast_f16_padded.wgsl (a view of a tensor channels last with the convolution's padding
//! and zero rows around it, for the padded cooperative-matrix products of ops::conv2d, which load
//! their tiles straight from such copies; its `_f16` variant recasts a copy already made).
//!
//! An output gradient is scaled by a power of two 2^e chosen on the device from its largest
//! magnitude, so that the largest lands just below 2^15: no value overflows f16, and small
//! gradients (which would fall into f16's subnormals, below 6.1e-5, or to zero) keep their 11
//! bits. e is stored after the data, where the product kernels read it (`scale_at`) and multiply
//! what they accumulate by 2^-e. It is PyTorch AMP's loss scaling, chosen per tensor and per step,
//! so nothing is skipped and nothing is tuned.

use super::interface::{GpuIo, Reads, Scratch};
use super::ParamsLayout;
use crate::buffer::View;
use crate::device::{Gpu, Precision};
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{Error, Result};

crate::shaders!(cast_f16_absmax: 256, cast_f16: 256, cast_f16_channels_last: 256, cast_f16_padded: 256);

/// The most workgroups of the first max pass on `gpu`, and so the parts the second (one workgroup)
/// reduces: on GPUs as many as the cast's, so that both read at the memory's speed (with 256, an
/// H200 read Tudui's `conv1.dout` at 640 GB/s against the cast's 2,550); on CPU adapters 256, since
/// each workgroup's reduction costs its barriers there (lavapipe took 5× as long with 4,096).
pub fn max_parts(gpu: &Gpu) -> u64 {
    if crate::device::is_software(gpu.info.device_type) {
        256
    } else {
        CAST_GROUPS
    }
}
/// Workgroups of the cast (grid-strided beyond).
const CAST_GROUPS: u64 = 4_096;

/// Where a product kernel finds no scale (its `scale_at`): operands in f32, or unscaled.
pub const UNSCALED: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AbsmaxParams {
    pub n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CastParams {
    pub n: u32,
    pub scaled: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ChannelsLastParams {
    pub B: u32,
    pub C: u32,
    pub I: u32,
    pub scaled: u32,
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PaddedParams {
    pub A: u32,
    pub C: u32,
    pub Y: u32,
    pub X: u32,
    pub SA: i32,
    pub SC: i32,
    pub SY: i32,
    pub SX: i32,
    pub origin: u32,
    pub AP: u32,
    pub YP: u32,
    pub CP: u32,
    pub R: u32,
    pub OY: u32,
    pub OX: u32,
    pub total: u32,
    pub scaled: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

pub fn layouts() -> Vec<ParamsLayout> {
    vec![
        crate::params_layout!("cast_f16_absmax", AbsmaxParams, [n, _pad0, _pad1, _pad2]),
        crate::params_layout!("cast_f16", CastParams, [n, scaled, _pad0, _pad1]),
        crate::params_layout!("cast_f16_channels_last", ChannelsLastParams, [B, C, I, scaled])
            .consts(&[("RUN", CHANNEL_RUN)]),
        crate::params_layout!(
            "cast_f16_padded",
            PaddedParams,
            [A, C, Y, X, SA, SC, SY, SX, origin, AP, YP, CP, R, OY, OX, total, scaled, _pad0, _pad1, _pad2]
        ),
    ]
}

/// The channels of a channels-last copy come in runs of this many (zero-padded), which the
/// cooperative-matrix kernels read by one 8-byte load and one bounds test. Four, not more, so
/// that a layer of 3 channels (an RGB image's) pads to 4, not to 8 or 16.
pub const CHANNEL_RUN: usize = 4;

/// The channels of a channels-last copy: `c` rounded up to whole runs.
pub fn padded_channels(c: usize) -> usize {
    c.next_multiple_of(CHANNEL_RUN)
}

/// How a cast lays out its f16 copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// As the tensor: `n` elements.
    Flat(usize),
    /// A (B, C, I) tensor as (B, I, C'), C' its channels padded with zeros to whole runs
    /// ([`padded_channels`]): an input (N, C, H, W) as (N, H, W, C'), a weight (OC, IC, KH, KW) as
    /// (OC, KH, KW, IC'), an output gradient (N, OC, OH, OW) as (N, OH, OW, OC').
    ChannelsLast([usize; 3]),
    /// An (A, C, Y, X) view of a tensor channels last with zeros around it ([`Padded`]).
    Padded(Padded),
}

/// A padded channels-last copy: `rows[0]` × `rows[1]` rows of `row` halves, in row (a, y) the
/// pixels x of `(a, y - offset[0], x - offset[1])`, `channels` halves each (the view's channels,
/// then zeros), zeros past the view; then zeros to `len` halves (a multiple of 4), then the
/// exponent of a scaled copy. The view (A, C, Y, X) = `shape` reads the f32 tensor at `origin` +
/// its indices times `strides` (which may be negative: a flipped kernel). An input
/// (N, C, H, W) becomes (N, H + 2 PH, W + 2 PW, C) with offset (PH, PW); a weight
/// (OC, IC, KH, KW) becomes (OC', KH, KW · IC) with offset 0. The tensor is f32, or f16 where
/// `from_f16` (a copy made already, recast into this layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padded {
    pub shape: [usize; 4],
    pub strides: [isize; 4],
    pub origin: usize,
    pub from_f16: bool,
    pub rows: [usize; 2],
    pub channels: usize,
    pub row: usize,
    pub offset: [usize; 2],
    pub len: usize,
}

impl Padded {
    /// The copy of a whole contiguous f32 tensor of `shape` (its view is itself): `rows` rows of
    /// `row` halves, `channels` a pixel, the tensor at `offset`, `len` halves.
    pub fn of(
        shape: [usize; 4],
        rows: [usize; 2],
        channels: usize,
        row: usize,
        offset: [usize; 2],
        len: usize,
    ) -> Padded {
        let strides = contiguous_strides(shape);
        Padded { shape, strides, origin: 0, from_f16: false, rows, channels, row, offset, len }
    }
}

/// The strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: [usize; 4]) -> [isize; 4] {
    let [_, c, y, x] = shape.map(|d| d as isize);
    [c * y * x, y * x, x, 1]
}

impl Layout {
    /// The elements of the f32 tensor.
    pub fn elements(self) -> usize {
        match self {
            Layout::Flat(n) => n,
            Layout::ChannelsLast(shape) => shape.iter().product(),
            Layout::Padded(p) => p.shape.iter().product(),
        }
    }
    /// The f16 values of the copy, and so where a scaled copy's exponent is.
    pub fn copy_elements(self) -> usize {
        match self {
            Layout::Flat(n) => n,
            Layout::ChannelsLast([b, c, i]) => b * i * padded_channels(c),
            Layout::Padded(p) => p.len,
        }
    }
    /// 32-bit words holding the copy and its scale's exponent (after the values; channels last
    /// and padded, in a run of its own, which the kernels read whole).
    pub fn words(self) -> u64 {
        let exponent = match self {
            Layout::Flat(_) => 1,
            Layout::ChannelsLast(_) | Layout::Padded(_) => CHANNEL_RUN,
        };
        (self.copy_elements() + exponent).div_ceil(2) as u64
    }
}

/// The layout of a (B, C, I) operand's copy on `gpu`: channels last where its products run on
/// cooperative matrices (ops::conv2d), flat elsewhere.
pub fn layout(gpu: &Gpu, shape: [usize; 3]) -> Layout {
    if super::conv2d::runs_cooperative_matrices(gpu) {
        Layout::ChannelsLast(shape)
    } else {
        Layout::Flat(shape.iter().product())
    }
}

/// The first max pass's workgroups, one part each.
fn part_count(gpu: &Gpu, n: usize) -> u64 {
    (n as u64).div_ceil(256).clamp(1, max_parts(gpu))
}

/// The scratch a scaled cast of `n` elements takes: its parts' maxima, and their largest (apart:
/// one pass reads the first while it writes the second, which WebGPU allows only across buffers).
pub fn scaling_words(gpu: &Gpu, n: usize) -> [u64; 2] {
    [part_count(gpu, n), 1]
}

/// Kernels writing `out` = f16(x) laid out as `layout` says ([`Layout::words`] of them), scaled
/// when `scaling` (scratch sized as [`scaling_words`] says) is given: then the values are x·2^e
/// and the exponent e follows them (at [`Layout::copy_elements`]).
pub fn gpu(
    gpu: &Gpu,
    label: &str,
    x: &View,
    layout: Layout,
    out: &View,
    scaling: Option<[&View; 2]>,
) -> Result<Program> {
    let (n, words) = (layout.elements(), layout.words());
    if x.len < n as u64 || out.len < words {
        return Err(Error::op(
            label,
            format!("cast_f16 to {layout:?} given {} input and {} output words, not {n} and {words}", x.len, out.len),
        ));
    }
    let mut prog = match scaling {
        Some(scaling) => largest_magnitude(gpu, label, x, n, scaling)?,
        None => Program::default(),
    };
    let top = scaling.map(|[_, top]| top);
    let scaled = top.is_some() as u32;
    let views = [x, top.unwrap_or(x), out];
    let label = format!("{label}.f16");
    prog.push(match layout {
        Layout::Flat(n) => {
            let p = CastParams { n: n as u32, scaled, _pad0: 0, _pad1: 0 };
            let groups = (n as u64).div_ceil(256).clamp(1, CAST_GROUPS);
            Kernel::new(gpu, "cast_f16", &label, &p, &views, Dispatch::Workgroups(groups))?
        }
        Layout::ChannelsLast([b, c, i]) => {
            let p = ChannelsLastParams { B: b as u32, C: c as u32, I: i as u32, scaled };
            // One invocation per run.
            let groups = ((b * i * padded_channels(c) / CHANNEL_RUN) as u64).div_ceil(256).clamp(1, CAST_GROUPS);
            Kernel::new(gpu, "cast_f16_channels_last", &label, &p, &views, Dispatch::Workgroups(groups))?
        }
        Layout::Padded(l) => padded(gpu, &label, x, l, out, top)?,
    });
    Ok(prog)
}

/// The kernels writing the largest |x| of the first `n` elements of `x` into `top`, through
/// `parts` (scratch sized as [`scaling_words`] says): what a scaled cast scales by.
pub fn largest_magnitude(gpu: &Gpu, label: &str, x: &View, n: usize, [parts, top]: [&View; 2]) -> Result<Program> {
    let absmax = |len: u64, from: &View, to: &View, groups: u64| {
        let p = AbsmaxParams { n: len as u32, _pad0: 0, _pad1: 0, _pad2: 0 };
        Kernel::new(gpu, "cast_f16_absmax", &format!("{label}.absmax"), &p, &[from, to], Dispatch::Workgroups(groups))
    };
    let parts_len = part_count(gpu, n);
    if parts.len < parts_len || top.len < 1 || x.len < n as u64 {
        return Err(Error::op(
            label,
            format!(
                "cast_f16 scaling of {n} elements given {} input, {} and {} scratch words, not {parts_len} and 1",
                x.len, parts.len, top.len
            ),
        ));
    }
    let mut prog = Program::default();
    prog.push(absmax(n as u64, x, parts, parts_len)?);
    prog.push(absmax(parts_len, parts, top, 1)?);
    Ok(prog)
}

/// The kernel writing `out` = f16(x) laid out as `l` says, scaled where `top` (the largest |x|, as
/// [`gpu`]'s scaled casts find it) is given, its exponent then after the values.
pub fn padded(gpu: &Gpu, label: &str, x: &View, l: Padded, out: &View, top: Option<&View>) -> Result<Kernel> {
    let words = Layout::Padded(l).words();
    let reach = (0..4).map(|d| (l.shape[d].max(1) - 1) as isize * l.strides[d]);
    let (lowest, highest) =
        reach.fold((l.origin as isize, l.origin as isize), |(lo, hi), r| (lo + r.min(0), hi + r.max(0)));
    let whole_vec4s = [l.len, l.row, l.channels].iter().all(|v| v.is_multiple_of(4));
    let elements = if l.from_f16 { 2 * x.len } else { x.len };
    // The kernel indexes the tensor in i32.
    let reachable = lowest >= 0 && highest < (elements as isize).min(i32::MAX as isize);
    if out.len < words || !reachable || !whole_vec4s || l.len / 4 >= u32::MAX as usize {
        return Err(Error::op(label, format!("cast_f16 to {l:?} given {} input and {} output words", x.len, out.len)));
    }
    let u = |v: usize| v as u32;
    let total = l.len / 4;
    let p = PaddedParams {
        A: u(l.shape[0]),
        C: u(l.shape[1]),
        Y: u(l.shape[2]),
        X: u(l.shape[3]),
        SA: l.strides[0] as i32,
        SC: l.strides[1] as i32,
        SY: l.strides[2] as i32,
        SX: l.strides[3] as i32,
        origin: u(l.origin),
        AP: u(l.rows[0]),
        YP: u(l.rows[1]),
        CP: u(l.channels),
        R: u(l.row),
        OY: u(l.offset[0]),
        OX: u(l.offset[1]),
        total: u(total),
        scaled: top.is_some() as u32,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let groups = (total as u64).div_ceil(256).clamp(1, CAST_GROUPS);
    let shader = if l.from_f16 { "cast_f16_padded_f16" } else { "cast_f16_padded" };
    Kernel::new(gpu, shader, label, &p, &[x, top.unwrap_or(x), out], Dispatch::Workgroups(groups))
}

/// The shapes of a product op's (Conv2d's, Linear's) operands: its input as (images, channels,
/// pixels of an image), its weight as (output channels, input channels, taps), its output
/// gradient as (images, channels, pixels). A Linear layer's are (N, IN, 1), (OUT, IN, 1) and
/// (N, OUT, 1).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub input: [usize; 3],
    pub weight: [usize; 3],
    pub dout: [usize; 3],
}

/// Adds what a product op running in `precision` on `gpu` needs for its operands to `scratch`: in
/// mixed precision the f16 copies of its input and weight (kept from the forward for the
/// backward), and the output gradient's copy with its scaling scratch (the backward's last three).
/// An op's precision is the device's ([`Gpu::precision`]) but where the op says otherwise
/// (ops::conv2d's Winograd layers run in f32).
pub fn product_scratch(gpu: &Gpu, precision: Precision, sizes: Sizes, scratch: &mut Scratch) {
    if precision == Precision::Mixed {
        scratch.kept = vec![layout(gpu, sizes.input).words(), layout(gpu, sizes.weight).words()];
        let dout = layout(gpu, sizes.dout);
        scratch.backward.push(dout.words());
        scratch.backward.extend(scaling_words(gpu, dout.elements()));
    }
}

/// What a product op's backward reads in `precision`, given what it reads in f32: in mixed
/// precision the kept copies, not the input.
pub fn product_backward_reads(precision: Precision, f32_reads: Reads) -> Reads {
    match precision {
        Precision::F32 => f32_reads,
        Precision::Mixed => Reads { inputs: false, output: false },
    }
}

/// A product op's operands as its kernels read them on a device.
pub struct Staged<'a> {
    /// The casts that make the f16 copies (none in f32).
    pub prog: Program,
    pub input: &'a View,
    pub weight: &'a View,
    /// The output gradient (in a backward).
    pub dout: Option<&'a View>,
    pub ops: Operands,
    /// The node's scratch less the copies' (what the product kernels themselves asked for).
    pub scratch: &'a [&'a View],
    /// In a mixed-precision backward, the output gradient's largest magnitude, which scaled its
    /// copy (for casts of it into other layouts, scaled alike).
    pub top: Option<&'a View>,
}

/// The kept copies of a mixed-precision product, checked.
fn kept<'a>(io: &'a GpuIo<'_>) -> Result<[&'a View; 2]> {
    match io.kept.as_slice() {
        &[x, w] => Ok([x, w]),
        k => Err(Error::op(io.label, format!("mixed precision given {} kept tensors, not 2", k.len()))),
    }
}

/// The forward's operands in `precision`: the input and weight, or in mixed precision their f16
/// copies (cast into the kept tensors [`product_scratch`] asked for, laid out as [`layout`] says).
pub fn stage_forward<'a>(gpu: &Gpu, precision: Precision, io: &'a GpuIo<'_>, sizes: Sizes) -> Result<Staged<'a>> {
    let (input, weight) = (io.inputs[0], io.state[0]);
    if precision == Precision::F32 {
        let prog = Program::default();
        return Ok(Staged { prog, input, weight, dout: None, ops: Operands::F32, scratch: &io.scratch, top: None });
    }
    let [x16, w16] = kept(io)?;
    let (input_label, weight_label) = (format!("{}.input", io.label), format!("{}.weight", io.label));
    let mut prog = self::gpu(gpu, &input_label, input, layout(gpu, sizes.input), x16, None)?;
    prog.extend(self::gpu(gpu, &weight_label, weight, layout(gpu, sizes.weight), w16, None)?);
    let ops = Operands::F16 { scale_at: UNSCALED };
    Ok(Staged { prog, input: x16, weight: w16, dout: None, ops, scratch: &io.scratch, top: None })
}

/// The backward's operands in `precision`: the input, weight and output gradient, or in mixed
/// precision the kept copies and the output gradient's scaled f16 copy (cast into the backward
/// scratch's last three; with [`DoutCopy::ScaleOnly`] only its largest magnitude, and no copy).
pub fn stage_backward<'a>(
    gpu: &Gpu,
    precision: Precision,
    io: &'a GpuIo<'_>,
    sizes: Sizes,
    copy: DoutCopy,
) -> Result<Staged<'a>> {
    let dout = io.dout.ok_or_else(|| Error::op(io.label, "a backward given no output gradient"))?;
    if precision == Precision::F32 {
        let (input, weight, prog) = (io.inputs[0], io.state[0], Program::default());
        return Ok(Staged {
            prog,
            input,
            weight,
            dout: Some(dout),
            ops: Operands::F32,
            scratch: &io.scratch,
            top: None,
        });
    }
    let [x16, w16] = kept(io)?;
    let n = io.scratch.len();
    let Some(own) = n.checked_sub(3) else {
        return Err(Error::op(io.label, format!("mixed precision given {n} backward scratch tensors, fewer than 3")));
    };
    let [d16, parts, top] = [io.scratch[own], io.scratch[own + 1], io.scratch[own + 2]];
    let layout = layout(gpu, sizes.dout);
    let label = format!("{}.dout", io.label);
    let (prog, dout) = match copy {
        DoutCopy::Cast => (self::gpu(gpu, &label, dout, layout, d16, Some([parts, top]))?, Some(d16)),
        DoutCopy::ScaleOnly => (largest_magnitude(gpu, &label, dout, layout.elements(), [parts, top])?, None),
    };
    let ops = Operands::F16 { scale_at: layout.copy_elements() as u32 };
    Ok(Staged { prog, input: x16, weight: w16, dout, ops, scratch: &io.scratch[..own], top: Some(top) })
}

/// What a mixed-precision backward makes of the output gradient: its scaled f16 copy, or (where
/// every product reading it casts it into a layout of its own) only its largest magnitude, which
/// those casts scale by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoutCopy {
    Cast,
    ScaleOnly,
}

/// What a product kernel (conv2d, matmul) reads: f32 tensors, or f16 copies made by [`gpu`] (its
/// `_f16` variant), the first of them scaled with its exponent at element `scale_at`
/// ([`UNSCALED`]: not scaled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    F32,
    F16 { scale_at: u32 },
}

impl Operands {
    /// The kernel to run: `shader` or its `_f16` variant (`shader` itself where it reads f16
    /// only: the cooperative-matrix kernels).
    pub fn shader(self, label: &str, shader: &'static str) -> Result<&'static str> {
        match self {
            Operands::F32 => Ok(shader),
            Operands::F16 { .. } if crate::shaders::get(shader).is_some_and(|s| s.needs_f16()) => Ok(shader),
            Operands::F16 { .. } => crate::shaders::f16_variant(shader)
                .ok_or_else(|| Error::op(label, format!("{shader} has no f16-operand variant"))),
        }
    }
    /// The kernel's `scale_at` parameter.
    pub fn scale_at(self) -> u32 {
        match self {
            Operands::F32 => UNSCALED,
            Operands::F16 { scale_at } => scale_at,
        }
    }
}
