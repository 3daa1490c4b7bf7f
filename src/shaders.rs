//! Every WGSL kernel, compiled into the binary: `shaders/<op>_forward.wgsl`,
//! `shaders/<op>_backward[_<what>].wgsl`. Pipelines are created from these once per device
//! ([`crate::device::Gpu::pipeline`]).

macro_rules! shaders {
    ($($name:literal),* $(,)?) => {
        /// (name, WGSL source) of every kernel.
        pub const ALL: &[(&str, &str)] = &[$(($name, include_str!(concat!("../shaders/", $name, ".wgsl")))),*];
    };
}

shaders!(
    "reduce_sum",
    "l1_loss_forward",
    "l1_loss_backward",
    "mse_loss_forward",
    "mse_loss_backward",
    "log_softmax_forward",
    "log_softmax_backward",
    "nll_loss_forward",
    "nll_loss_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "bias_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "matmul",
    "sgd_step",
    "sum_splits",
);

pub fn source(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
