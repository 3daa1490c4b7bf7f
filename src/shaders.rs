//! Every WGSL kernel, compiled into the binary: each op module lists its own
//! (`shaders/<op>_forward.wgsl`, `shaders/<op>_backward[_<what>].wgsl`, see [`crate::shaders!`]).
//! Pipelines are created from these once per device ([`crate::device::Gpu::pipeline`]).

use std::sync::OnceLock;

/// (name, WGSL source) of every kernel.
pub fn all() -> &'static [(&'static str, &'static str)] {
    static ALL: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    ALL.get_or_init(crate::ops::shaders)
}

pub fn source(name: &str) -> Option<&'static str> {
    all().iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
