//! One module per op: its `Params` (mirrored by `struct Params` in the WGSL), shape checks, the CPU
//! reference forward/backward (generic over f32 and f64) and the GPU kernel builders, which only
//! create dispatches; running them is the caller's business (a test, or the graph executor).

pub mod elementwise_loss;
pub mod interface;

/// A WGSL kernel: its name (`shaders/<name>.wgsl`), its source, and its workgroup size (its
/// `const WG`; tests/shaders.rs checks the two agree), from which dispatches are counted.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
    pub workgroup: u32,
    /// For a variant (`conv2d_forward_f16`, `conv2d_forward_wide`, a `_16x16`), the kernel it is
    /// made from.
    pub variant_of: Option<&'static str>,
}

impl Shader {
    /// Whether the kernel uses f16 (`enable f16;`): the device needs the SHADER_F16 feature.
    pub fn needs_f16(&self) -> bool {
        self.source.starts_with("enable f16;")
    }
    /// Whether the kernel uses subgroup operations: the device needs the SUBGROUP feature.
    pub fn needs_subgroups(&self) -> bool {
        self.source.contains("@builtin(subgroup_invocation_id)")
    }
    /// Whether the kernel multiplies cooperative matrices: the device needs wgpu's
    /// EXPERIMENTAL_COOPERATIVE_MATRIX feature with the kernel's tile size.
    pub fn needs_cooperative_matrix(&self) -> bool {
        self.source.contains("enable wgpu_cooperative_matrix;")
    }
    /// The workgroup memory the device must offer for the kernel, where that is more than
    /// WebGPU's default 16 KB: a `_narrow` cooperative-matrix variant's
    /// [`crate::shaders::NARROW_WORKGROUP_BYTES`] (its subgroups laid out by
    /// [`crate::shaders::NARROW`]).
    pub fn workgroup_memory_needed(&self) -> Option<u32> {
        let narrow = crate::shaders::NARROW[1].1;
        (self.needs_cooperative_matrix() && self.source.contains(narrow))
            .then_some(crate::shaders::NARROW_WORKGROUP_BYTES)
    }
    /// The cooperative-matrix tile a kernel multiplies (8 or 16; see crate::shaders), if any: it
    /// runs where the device's [`Gpu::cooperative_tile`](crate::Gpu::cooperative_tile) is the same.
    pub fn cooperative_tile(&self) -> Option<u32> {
        if !self.needs_cooperative_matrix() {
            None
        } else if self.source.contains("coop_mat16x16<") {
            Some(16)
        } else {
            Some(8)
        }
    }
}

/// Declares the WGSL kernels of an op module with their workgroup sizes, compiled into the
/// binary: `shaders!(relu_forward: 256, relu_backward: 256);`.
#[macro_export]
macro_rules! shaders {
    ($($name:ident: $wg:literal),* $(,)?) => {
        /// This module's kernels.
        pub const SHADERS: &[$crate::ops::Shader] = &[$($crate::ops::Shader {
            name: stringify!($name),
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", stringify!($name), ".wgsl")),
            workgroup: $wg,
            variant_of: None,
        }),*];
    };
}

/// The op modules: each defines `SHADERS` (with [`shaders!`]) and `layouts()` (its `Params`
/// structs, which tests/shaders.rs checks against the WGSL); `module => Layer` (or `=> A | B`)
/// also exports the layer types (as `wgrad::nn::Layer`). Registering an op is its one line here.
macro_rules! registry {
    ($($m:ident $(=> $($layer:ident)|+)?),* $(,)?) => {
        $(pub mod $m;)*
        $($(pub use $m::{$($layer),+};)?)*
        /// The layer types, re-exported by [`crate::nn`].
        pub mod layers {
            $($(pub use super::$m::{$($layer),+};)?)*
        }
        /// Every kernel of every op.
        pub fn shaders() -> Vec<Shader> {
            let mut v = Vec::new();
            $(v.extend_from_slice($m::SHADERS);)*
            v
        }
        /// Every shader's params layout, for the naga layout test.
        pub fn params_layouts() -> Vec<ParamsLayout> {
            let mut v = Vec::new();
            $(v.extend($m::layouts());)*
            v
        }
    };
}

registry!(
    activation => LeakyReLU | ELU | GELU | SiLU | Sigmoid | Tanh,
    adam,
    adaptive_avgpool2d => AdaptiveAvgPool2d,
    add => Add,
    avgpool2d => AvgPool2d,
    batchnorm2d => BatchNorm2d | BatchNorm1d,
    bias,
    clip_grad_norm,
    cast_f16,
    conv2d => Conv2d,
    cross_entropy,
    dropout => Dropout | Dropout2d,
    flatten => Flatten,
    group_norm => GroupNorm | LayerNorm | InstanceNorm1d | InstanceNorm2d | InstanceNorm3d,
    l1_loss,
    linear => Linear,
    log_softmax,
    maxpool2d => MaxPool2d,
    mse_loss,
    nll_loss,
    peak,
    reduce_sum,
    relu => ReLU,
    sgd,
    sum_splits,
    to_tensor,
);

use crate::cpu::Real;
use crate::Gpu;

/// PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Reduction {
    None,
    Sum,
    #[default]
    Mean,
}

impl Reduction {
    /// The code shaders receive: none 0, sum 1, mean 2.
    pub fn code(self) -> u32 {
        match self {
            Reduction::None => 0,
            Reduction::Sum => 1,
            Reduction::Mean => 2,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Reduction::None),
            "sum" => Some(Reduction::Sum),
            "mean" => Some(Reduction::Mean),
            _ => None,
        }
    }
}

/// A size PyTorch takes as an int or a pair: `kernel_size=3` or `kernel_size=(3, 1)`.
pub trait IntoPair {
    fn pair(self) -> (usize, usize);
}
impl IntoPair for usize {
    fn pair(self) -> (usize, usize) {
        (self, self)
    }
}
impl IntoPair for (usize, usize) {
    fn pair(self) -> (usize, usize) {
        self
    }
}

/// The elementwise kernel `shader` over `n` elements as `gpu` runs it, and the invocations it takes:
/// its `_vec4` variant ([`crate::shaders::VEC4`]) over n / 4 vec4s on CPU adapters (those that split
/// no reduction, [`Gpu::split_target`]) where n is a multiple of 4, else `shader` over n. lavapipe
/// runs each storage access as a loop over its SIMD lanes, and a vec4's four words take one loop:
/// ResNet-20's ReLUs 14.6 → 6.4 ms a step at batch 64 (history 60). GPUs keep one word per
/// invocation until a GPU has timed the variant.
pub fn elementwise(gpu: &Gpu, shader: &'static str, n: u64) -> (&'static str, u64) {
    match crate::shaders::vec4_variant(shader) {
        Some(v) if gpu.split_target() == 0 && n.is_multiple_of(4) => (v, n / 4),
        _ => (shader, n),
    }
}

/// PyTorch's pooling_output_shape: in ceil mode the last window must start inside the input or
/// the left padding.
pub fn pool_out_size(size: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
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

/// A bool as Python writes it (`True`, `False`), for PyTorch-style layer descriptions.
pub fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// A float as Python's repr writes it (`0.1`, `1e-05`), for PyTorch-style layer descriptions.
pub fn py_float(v: f32) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

/// Sum in f64, whatever T is: the CPU reference should not lose bits the GPU's tree keeps.
pub(crate) fn sum_f64<T: Real>(xs: impl Iterator<Item = T>) -> f64 {
    xs.map(|x| x.to_f64().unwrap_or(f64::NAN)).sum()
}

/// Offsets of a `#[repr(C)]` params struct's fields, compared with naga's layout of the WGSL
/// `struct Params` by the shader tests.
pub struct ParamsLayout {
    pub shader: &'static str,
    pub size: usize,
    pub fields: Vec<(&'static str, usize)>,
    /// WGSL `const`s the Rust side depends on (tile sizes), with the values it assumes.
    pub consts: Vec<(&'static str, u32)>,
}

impl ParamsLayout {
    /// Declares WGSL constants whose values the host code assumes (checked by tests/shaders.rs).
    pub fn consts(mut self, consts: &[(&'static str, usize)]) -> Self {
        self.consts = consts.iter().map(|&(n, v)| (n, v as u32)).collect();
        self
    }
}

#[macro_export]
macro_rules! params_layout {
    ($shader:expr, $ty:ty, [$($field:ident),* $(,)?]) => {
        $crate::ops::ParamsLayout {
            shader: $shader,
            size: std::mem::size_of::<$ty>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
            consts: Vec::new(),
        }
    };
}
