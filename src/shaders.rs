//! Every WGSL kernel, compiled into the binary: each op module lists its own with its workgroup
//! size (`shaders/<op>_forward.wgsl`, `shaders/<op>_backward[_<what>].wgsl`, see [`crate::shaders!`]).
//! Pipelines are created from these once per device ([`crate::device::Gpu::pipeline`]).
//!
//! A kernel whose operands are declared `array<operand>` (with the line `alias operand = f32;`,
//! every read converted with `f32(...)`) also exists as `<name>_f16`: the same source reading f16
//! operands (`enable f16;`, `alias operand = f16;`), for [`crate::Precision::Mixed`].

pub use crate::ops::Shader;
use std::sync::OnceLock;

/// The line that makes a kernel's operand type switchable.
pub const OPERAND_F32: &str = "alias operand = f32;";

/// Every kernel, the f16-operand variants included.
pub fn all() -> &'static [Shader] {
    static ALL: OnceLock<Vec<Shader>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = crate::ops::shaders();
        let variants: Vec<Shader> = v
            .iter()
            .filter(|s| s.source.contains(OPERAND_F32))
            .map(|s| Shader {
                // Made once per process, for the process's lifetime: a fixed set of strings.
                name: Box::leak(format!("{}_f16", s.name).into_boxed_str()),
                source: Box::leak(
                    format!("enable f16;\n{}", s.source.replacen(OPERAND_F32, "alias operand = f16;", 1))
                        .into_boxed_str(),
                ),
                workgroup: s.workgroup,
                variant_of: Some(s.name),
            })
            .collect();
        v.extend(variants);
        v
    })
}

pub fn get(name: &str) -> Option<&'static Shader> {
    all().iter().find(|s| s.name == name)
}

/// The name of `shader`'s f16-operand variant (`conv2d_forward` → `conv2d_forward_f16`).
pub fn f16_variant(shader: &'static str) -> Option<&'static str> {
    let want = format!("{shader}_f16");
    all().iter().find(|s| s.name == want).map(|s| s.name)
}
