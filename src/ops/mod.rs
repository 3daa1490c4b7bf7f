//! One module per op: its `Params` (mirrored by `struct Params` in the WGSL), shape checks, the CPU
//! reference forward/backward (generic over f32 and f64) and the GPU kernel builders, which only
//! create dispatches; running them is the caller's business (a test, or the graph executor).

pub mod bias;
pub mod conv2d;
pub mod cross_entropy;
pub mod elementwise_loss;
pub mod l1_loss;
pub mod linear;
pub mod log_softmax;
pub mod maxpool2d;
pub mod mse_loss;
pub mod nll_loss;
pub mod reduce_sum;
pub mod sgd;
pub mod sum_splits;

use crate::cpu::Real;

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

/// Gradients of a layer with parameters: dinp only when asked for (the first layer needs none).
#[derive(Clone, Debug)]
pub struct Grads<T> {
    pub dinp: Option<Vec<T>>,
    pub dweight: Vec<T>,
    pub dbias: Option<Vec<T>>,
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
}

#[macro_export]
macro_rules! params_layout {
    ($shader:expr, $ty:ty, [$($field:ident),* $(,)?]) => {
        $crate::ops::ParamsLayout {
            shader: $shader,
            size: std::mem::size_of::<$ty>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }
    };
}

/// Every shader's params layout, for the naga layout test.
pub fn params_layouts() -> Vec<ParamsLayout> {
    let mut v = Vec::new();
    v.extend(reduce_sum::layouts());
    v.extend(l1_loss::layouts());
    v.extend(mse_loss::layouts());
    v.extend(log_softmax::layouts());
    v.extend(nll_loss::layouts());
    v.extend(cross_entropy::layouts());
    v.extend(bias::layouts());
    v.extend(conv2d::layouts());
    v.extend(maxpool2d::layouts());
    v.extend(linear::layouts());
    v.extend(sgd::layouts());
    v.extend(sum_splits::layouts());
    v
}
