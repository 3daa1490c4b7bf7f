//! Every WGSL kernel, compiled into the binary: each op module lists its own with its workgroup
//! size (`shaders/<op>_forward.wgsl`, `shaders/<op>_backward[_<what>].wgsl`, see [`crate::shaders!`]).
//! Pipelines are created from these once per device ([`crate::device::Gpu::pipeline`]).

pub use crate::ops::Shader;
use std::sync::OnceLock;

/// Every kernel.
pub fn all() -> &'static [Shader] {
    static ALL: OnceLock<Vec<Shader>> = OnceLock::new();
    ALL.get_or_init(crate::ops::shaders)
}

pub fn get(name: &str) -> Option<&'static Shader> {
    all().iter().find(|s| s.name == name)
}
