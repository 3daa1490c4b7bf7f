//! Linear (nn.Linear): y = x·Wᵀ + b with W stored (out, in) as in PyTorch; backward dx = dy·W,
//! dW = dyᵀ·x, db = Σ_n dy. Shaders: matmul.wgsl (strided, serves all three products) and
//! bias_backward.wgsl. The CPU path uses matrixmultiply. With [`Precision::Mixed`](crate::Precision::Mixed) the products
//! run matmul_f16 on f16 copies of the input, the weight and the output gradient (ops::cast_f16),
//! or, where the device multiplies on cooperative matrices, the convolution's
//! `_cooperative_matrix` kernels: a Linear layer is a 1x1 convolution of (N, IN, 1, 1) images.

use super::cast_f16::{self, Operands};
use super::interface::{CpuBackward, CpuForward, Flops, GpuIo, Init, Mode, Node, Op, ParamDecl, Reads, Scratch};
use super::{bias, conv2d, sum_splits, ParamsLayout};
use crate::buffer::View;
use crate::cpu::Real;
use crate::device::Gpu;
use crate::kernel::{Dispatch, Kernel, Program};
use crate::{ensure_op, Error, Result};

pub const OP: &str = "Linear";

crate::shaders!(matmul: 64, matmul_subgroups: 64);

/// nn.Linear(in_features, out_features, bias=True).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl Linear {
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Linear { in_features, out_features, bias: true }
    }
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    pub fn weight_shape(&self) -> [usize; 2] {
        [self.out_features, self.in_features]
    }
    /// Checks an (N, in_features) input; returns N.
    pub fn rows(&self, input: &[usize]) -> Result<usize> {
        let op = self.describe();
        ensure_op!(self.in_features > 0 && self.out_features > 0, op, "feature counts must be positive");
        ensure_op!(input.len() == 2, op, "expected an (N, {}) input, got shape {input:?}", self.in_features);
        ensure_op!(
            input[1] == self.in_features,
            op,
            "input {input:?} has {} features but the weight expects {}",
            input[1],
            self.in_features
        );
        ensure_op!(input[0] > 0, op, "empty batch in input {input:?}");
        Ok(input[0])
    }
}

impl Op for Linear {
    fn describe(&self) -> String {
        format!(
            "{OP}(in_features={}, out_features={}, bias={})",
            self.in_features,
            self.out_features,
            super::py_bool(self.bias)
        )
    }
    fn params(&self) -> Vec<ParamDecl> {
        let init = Init::Uniform { fan_in: self.in_features };
        let mut v = vec![ParamDecl::param("weight", self.weight_shape().to_vec(), init)];
        if self.bias {
            v.push(ParamDecl::param("bias", vec![self.out_features], init));
        }
        v
    }
    fn plan(&self, inputs: &[&[usize]], _mode: Mode) -> Result<Box<dyn Node>> {
        Ok(Box::new(Planned { c: *self, n: self.rows(inputs[0])? }))
    }
}

/// A Linear layer at a batch of `n` rows.
struct Planned {
    c: Linear,
    n: usize,
}

impl Planned {
    /// (m, n, k) of the forward, weight-gradient and input-gradient products.
    fn sizes(&self) -> cast_f16::Sizes {
        let (i, o) = (self.c.in_features, self.c.out_features);
        cast_f16::Sizes { input: [self.n, i, 1], weight: [o, i, 1], dout: [self.n, o, 1] }
    }
    /// The layer as a 1x1 convolution of (N, IN, 1, 1) into (N, OUT, 1, 1): the same memory
    /// layouts, the weight (OUT, IN, 1, 1) included.
    fn as_conv(&self) -> conv2d::Geometry {
        let (n, ic, oc) = (self.n, self.c.in_features, self.c.out_features);
        let (h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw) = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1);
        conv2d::Geometry { n, ic, h, w, oc, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw }
    }
    fn products(&self) -> [(usize, usize, usize); 3] {
        let (n, i, o) = (self.n, self.c.in_features, self.c.out_features);
        [(n, o, i), (o, i, n), (n, i, o)]
    }
}

impl Node for Planned {
    fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c.out_features]
    }
    fn flops(&self) -> Flops {
        let f = 2 * (self.n * self.c.in_features * self.c.out_features) as u64;
        Flops { forward: f, backward_input: f, backward_params: f }
    }
    fn gpu_scratch(&self, gpu: &Gpu, dinputs: &[bool]) -> Scratch {
        if conv2d::runs_cooperative_matrices(gpu) {
            let mut scratch = conv2d::product_scratch(gpu, &self.as_conv(), dinputs[0]);
            cast_f16::product_scratch(gpu, gpu.precision(), self.sizes(), &mut scratch);
            return scratch;
        }
        let part = |(m, n, k): (usize, usize, usize)| {
            let (splits, _) = matmul_splits(gpu, (m, n, k));
            (splits > 1).then_some((splits * m * n) as u64)
        };
        let [f, dw, di] = self.products();
        let mut scratch = Scratch {
            forward: part(f).into_iter().collect(),
            backward: part(dw).into_iter().chain(part(di).filter(|_| dinputs[0])).collect(),
            kept: Vec::new(),
        };
        cast_f16::product_scratch(gpu, gpu.precision(), self.sizes(), &mut scratch);
        scratch
    }
    fn gpu_backward_reads(&self, gpu: &Gpu) -> Reads {
        cast_f16::product_backward_reads(gpu.precision(), self.backward_reads())
    }
    fn forward_cpu(&self, io: CpuForward<'_>) {
        let bias = self.c.bias.then(|| &*io.state[1]);
        forward_cpu(&self.c, self.n, io.out, io.inputs[0], io.state[0], bias);
    }
    fn backward_cpu(&self, io: CpuBackward<'_>) {
        let mut dparams = io.dparams.into_iter();
        let dweight = dparams.next().unwrap();
        let dinp = io.dinputs.into_iter().next().flatten();
        backward_cpu(&self.c, self.n, dinp, dweight, dparams.next(), io.dout, io.inputs[0], io.state[0]);
    }
    fn forward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let i = self.c.in_features;
        let [f, _, _] = self.products();
        let (bias, part) = (io.state.get(1).copied(), io.scratch.first().copied());
        let s = cast_f16::stage_forward(gpu, gpu.precision(), io, self.sizes())?;
        let mut prog = s.prog;
        if conv2d::runs_cooperative_matrices(gpu) {
            let g = self.as_conv();
            prog.extend(conv2d::forward_gpu(gpu, io.label, &g, io.out, s.input, s.weight, bias, s.scratch, s.ops)?);
            return Ok(prog);
        }
        prog.extend(matmul_gpu(gpu, io.label, f, s.input, (i, 1), s.weight, (1, i), bias, io.out, part, s.ops)?);
        Ok(prog)
    }
    fn backward_gpu(&self, gpu: &Gpu, io: &GpuIo<'_>) -> Result<Program> {
        let (i, o) = (self.c.in_features, self.c.out_features);
        let [_, dw, di] = self.products();
        let label = io.label;
        let s = cast_f16::stage_backward(gpu, gpu.precision(), io, self.sizes(), cast_f16::DoutCopy::Cast)?;
        let (mut prog, dout_op) = (s.prog, s.dout.unwrap());
        if let Some(db) = io.dparams.get(1) {
            prog.extend(bias::backward_gpu(gpu, label, io.dout.unwrap(), db, None, (self.n, o, 1))?);
        }
        if conv2d::runs_cooperative_matrices(gpu) {
            let grads = conv2d::GpuGrads { dinp: io.dinput(0), dweight: io.dparams[0], dbias: None };
            let g = self.as_conv();
            prog.extend(conv2d::backward_gpu(
                gpu,
                label,
                &g,
                grads,
                io.dout.unwrap(),
                Some(dout_op),
                s.input,
                s.weight,
                s.top,
                s.scratch,
                s.ops,
            )?);
            return Ok(prog);
        }
        let mut scratch = s.scratch.iter().copied();
        let mut part = |mnk| if matmul_splits(gpu, mnk).0 > 1 { scratch.next() } else { None };
        let (dweight, ops) = (io.dparams[0], s.ops);
        prog.extend(matmul_gpu(
            gpu,
            &format!("{label}.dweight"),
            dw,
            dout_op,
            (1, o),
            s.input,
            (i, 1),
            None,
            dweight,
            part(dw),
            ops,
        )?);
        if let Some(dinp) = io.dinput(0) {
            prog.extend(matmul_gpu(
                gpu,
                &format!("{label}.dinp"),
                di,
                dout_op,
                (o, 1),
                s.weight,
                (i, 1),
                None,
                dinp,
                part(di),
                ops,
            )?);
        }
        Ok(prog)
    }
}

/// out (N, OUT), overwritten, = inp (N, IN) · weightᵀ + bias.
pub fn forward_cpu<T: Real>(c: &Linear, n: usize, out: &mut [T], inp: &[T], weight: &[T], bias: Option<&[T]>) {
    let (i, o) = (c.in_features, c.out_features);
    match bias {
        Some(b) => out.chunks_mut(o).for_each(|row| row.copy_from_slice(b)),
        None => out.fill(T::zero()),
    }
    T::gemm(n, i, o, T::one(), inp, i as isize, 1, weight, 1, i as isize, T::one(), out, o as isize, 1);
}

/// Gradients w.r.t. the input (when `dinp` is given), the weight and the bias (when `dbias` is
/// given), overwritten, from dout (N, OUT), inp and weight.
#[allow(clippy::too_many_arguments)]
pub fn backward_cpu<T: Real>(
    c: &Linear,
    n: usize,
    dinp: Option<&mut [T]>,
    dweight: &mut [T],
    dbias: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    weight: &[T],
) {
    let (i, o) = (c.in_features, c.out_features);
    // dW (OUT, IN) = doutᵀ (OUT, N) · inp (N, IN)
    T::gemm(o, n, i, T::one(), dout, 1, o as isize, inp, i as isize, 1, T::zero(), dweight, i as isize, 1);
    if let Some(d) = dinp {
        // dinp (N, IN) = dout (N, OUT) · W (OUT, IN)
        T::gemm(n, o, i, T::one(), dout, o as isize, 1, weight, i as isize, 1, T::zero(), d, i as isize, 1);
    }
    if let Some(db) = dbias {
        bias::backward_cpu(db, dout, n, o, 1);
    }
}

#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub M: u32,
    pub N: u32,
    pub K: u32,
    pub has_bias: u32,
    pub sam: u32,
    pub sak: u32,
    pub sbk: u32,
    pub sbn: u32,
    pub splits: u32,
    pub chunk: u32,
    /// Where a's scale exponent is (ops::cast_f16; UNSCALED: nowhere).
    pub scale_at: u32,
    /// Invocations per tile of columns in `matmul_subgroups` ([`MatmulKernel::stride`]); the
    /// other kernels ignore it.
    pub stride: u32,
}

/// Rows and columns of the product per matmul invocation (T in matmul.wgsl: vec4 accumulators).
pub const MATMUL_TILE: usize = 4;
/// The same for `matmul_wide` ([`matmul_kernel`]).
pub const MATMUL_WIDE_TILE: usize = 8;
/// `matmul_subgroups`' rows per invocation and columns per tile (TM and TN in its source).
pub const SUBGROUPS_TILE: (usize, usize) = (4, 16);

pub fn layouts() -> Vec<ParamsLayout> {
    let l = |s| {
        crate::params_layout!(s, MatmulParams, [M, N, K, has_bias, sam, sak, sbk, sbn, splits, chunk, scale_at, stride])
    };
    vec![
        l("matmul").consts(&[("T", MATMUL_TILE)]),
        l("matmul_wide").consts(&[("T", MATMUL_WIDE_TILE)]),
        l("matmul_subgroups").consts(&[("TM", SUBGROUPS_TILE.0), ("TN", SUBGROUPS_TILE.1)]),
    ]
}

/// How one product runs: its kernel, the rows and columns of a tile, and the invocations per tile
/// of columns (`stride`; for `matmul` and `matmul_wide` one per tile of rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulKernel {
    pub shader: &'static str,
    pub tile: (usize, usize),
    pub stride: usize,
}

impl MatmulKernel {
    /// Invocations per split.
    pub fn invocations(&self, n: usize) -> usize {
        self.stride * n.div_ceil(self.tile.1)
    }
}

/// The matmul kernel for an (m, n) product on `gpu`:
/// - `matmul_subgroups` where the convolutions run their `_subgroups` kernels (lavapipe's default,
///   [`conv2d::runs_subgroups`]): a subgroup's invocations share their tile's 16 columns of b,
///   loaded once per subgroup, each invocation 4 rows (history 72);
/// - else on CPU adapters (which split no reduction, [`Gpu::split_target`]) `matmul_wide` (8 × 8
///   outputs an invocation) where its workgroups of 64 still number as many as the 4 × 4 kernel's
///   or this machine's threads (a CPU adapter's): lavapipe runs every load as a loop over the SIMD
///   lanes, and 8 × 8 makes four multiplications per load where 4 × 4 made two (cifar-net's
///   `fc1` products 1.2 → 0.7 ms at batch 64, history 67);
/// - else `matmul`, 4 × 4.
pub fn matmul_kernel(gpu: &Gpu, m: usize, n: usize) -> MatmulKernel {
    if conv2d::runs_subgroups(gpu) {
        let (tm, tn) = SUBGROUPS_TILE;
        let stride = m.div_ceil(tm).next_multiple_of(conv2d::subgroup_rounding(gpu));
        return MatmulKernel { shader: "matmul_subgroups", tile: (tm, tn), stride };
    }
    let square = |shader, t: usize| MatmulKernel { shader, tile: (t, t), stride: m.div_ceil(t) };
    let workgroups = |t: usize| (m.div_ceil(t) * n.div_ceil(t)).div_ceil(64);
    match gpu.split_target() {
        0 if workgroups(MATMUL_WIDE_TILE) >= workgroups(MATMUL_TILE).min(threads()) => {
            square("matmul_wide", MATMUL_WIDE_TILE)
        }
        _ => square("matmul", MATMUL_TILE),
    }
}

/// The shortest chunk of k a CPU adapter's split takes: below it the split's sum_splits dispatch
/// (about 0.05 ms on lavapipe) costs what the second thread saves (cifar-net's `fc3`, k = 84).
pub const MIN_SPLIT_CHUNK: usize = 256;

/// This machine's threads: a CPU adapter's.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |t| t.get())
}

/// How a product's reduction over k is split on an adapter: (splits, chunk). GPUs with more cores
/// than the product has tiles split it ([`sum_splits::choose`]); on CPU adapters `matmul_subgroups`
/// splits it where its workgroups number fewer than this machine's threads (Tudui's `fc1`
/// forward, 64 × 64 outputs, makes one), in chunks of at least [`MIN_SPLIT_CHUNK`]; the other
/// kernels never do.
pub fn matmul_splits(gpu: &Gpu, (m, n, k): (usize, usize, usize)) -> (usize, usize) {
    let kernel = matmul_kernel(gpu, m, n);
    let invocations = kernel.invocations(n);
    let splits = match gpu.split_target() {
        0 if kernel.shader == "matmul_subgroups" => {
            threads().div_ceil(invocations.div_ceil(64)).min(k / MIN_SPLIT_CHUNK).max(1)
        }
        _ => sum_splits::choose(gpu, invocations, k.div_ceil(16), m * n),
    };
    let chunk = k.div_ceil(splits);
    (k.div_ceil(chunk).max(1), chunk)
}

/// c (m, n) = a·b (+ bias), overwritten, where a[i, k] = a[i·sa.0 + k·sa.1] and
/// b[k, j] = b[k·sb.0 + j·sb.1]; `part` is the scratch [`matmul_splits`] asks for when split; a
/// and b are f32 or f16 copies as `ops` says.
#[allow(clippy::too_many_arguments)]
pub fn matmul_gpu(
    gpu: &Gpu,
    label: &str,
    (m, n, k): (usize, usize, usize),
    a: &View,
    sa: (usize, usize),
    b: &View,
    sb: (usize, usize),
    bias: Option<&View>,
    c: &View,
    part: Option<&View>,
    ops: Operands,
) -> Result<Program> {
    let kernel = matmul_kernel(gpu, m, n);
    let shader = ops.shader(label, kernel.shader)?;
    let u = |v: usize| v as u32;
    let (splits, chunk) = matmul_splits(gpu, (m, n, k));
    let p = MatmulParams {
        M: u(m),
        N: u(n),
        K: u(k),
        has_bias: bias.is_some() as u32,
        sam: u(sa.0),
        sak: u(sa.1),
        sbk: u(sb.0),
        sbn: u(sb.1),
        splits: u(splits),
        chunk: u(chunk),
        scale_at: ops.scale_at(),
        stride: u(kernel.stride),
    };
    let mut prog = Program::default();
    let groups = Dispatch::Invocations((kernel.invocations(n) * splits) as u64);
    let flops = 2 * (m * n * k) as u64;
    if splits == 1 {
        prog.push(Kernel::new(gpu, shader, label, &p, &[a, b, bias.unwrap_or(a), c], groups)?.flops(flops));
    } else {
        let part =
            part.ok_or_else(|| Error::op(label, format!("{shader} is split {splits} ways but was given no scratch")))?;
        prog.push(Kernel::new(gpu, shader, label, &p, &[a, b, bias.unwrap_or(a), part], groups)?.flops(flops));
        prog.push(sum_splits::gpu(gpu, label, part, c, splits)?);
    }
    Ok(prog)
}
