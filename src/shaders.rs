//! Every WGSL kernel, compiled into the binary: each op module lists its own with its workgroup
//! size (`shaders/<op>_forward.wgsl`, `shaders/<op>_backward[_<what>].wgsl`, see [`crate::shaders!`]).
//! Pipelines are created from these once per device ([`crate::device::Gpu::pipeline`]).
//!
//! A kernel whose operands are declared `array<operand>` (with the line `alias operand = f32;`,
//! every read converted with `f32(...)`) also exists as `<name>_f16`: the same source reading f16
//! operands (`enable f16;`, `alias operand = f16;`), for [`crate::Precision::Mixed`].
//!
//! A kernel that reads its tile's operands through `fn tile_operands` (the register-blocked
//! convolution kernels) also exists as `<name>_subgroups`: each invocation of a subgroup loads one
//! in eight of the tile's operands and `subgroupBroadcast` hands them round, for adapters with
//! wgpu's SUBGROUP feature and subgroups of at least 8 ([`crate::ConvKernels::Subgroups`]). Its
//! tile constants (`const TC: u32 = ...;`) are those its params layout declares, and its dispatch
//! must keep every subgroup within one tile of channels (the kernels' `stride`, a multiple of the
//! subgroup size).

pub use crate::ops::Shader;
use std::sync::OnceLock;

/// The line that makes a kernel's operand type switchable.
pub const OPERAND_F32: &str = "alias operand = f32;";

/// The line of a kernel that reads its tile's operands one load each.
const TILE_OPERANDS: &str = "fn tile_operands(rows: array<vec4<u32>, TV>, at: u32) -> array<vec4<f32>, TV> {";
/// The `_subgroups` variant's reader, put before the kernel's own (renamed `tile_operands_each`).
const TILE_OPERANDS_SUBGROUPS: &str = "var<private> lane: u32;

fn tile_operands(rows: array<vec4<u32>, TV>, at: u32) -> array<vec4<f32>, TV> {
    // Invocation c (of each 8) loads channels c, c + 8, ...; the array indices are constants once
    // the loop is unrolled, and only vec4 components are chosen per invocation.
    let c = lane % 8u;
    var v: array<vec4<f32>, TV>;
    for (var h = 0u; h < TV; h += 2u) {
        let m = tile_operand(select(rows[h + 1u][c % 4u], rows[h][c % 4u], c < 4u) + at);
        v[h] = vec4<f32>(subgroupBroadcast(m, 0u), subgroupBroadcast(m, 1u), subgroupBroadcast(m, 2u), subgroupBroadcast(m, 3u));
        v[h + 1u] = vec4<f32>(subgroupBroadcast(m, 4u), subgroupBroadcast(m, 5u), subgroupBroadcast(m, 6u), subgroupBroadcast(m, 7u));
    }
    return v;
}

fn tile_operands_each(rows: array<vec4<u32>, TV>, at: u32) -> array<vec4<f32>, TV> {";
/// The end of the kernels' entry-point parameters, and the `_subgroups` variant's.
const ENTRY_END: &str = "@builtin(local_invocation_index) li: u32) {";
const ENTRY_END_SUBGROUPS: &str =
    "@builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) sg_lane: u32) {\n    lane = sg_lane;";

/// `shader`'s `_subgroups` variant, if it reads its tile's operands through `tile_operands`;
/// `layouts`: every kernel's params layout (the variant's declares its tile constants).
fn subgroups_variant(shader: &Shader, layouts: &[crate::ops::ParamsLayout]) -> Option<Shader> {
    if !shader.source.contains(TILE_OPERANDS) {
        return None;
    }
    assert_eq!(shader.source.matches(ENTRY_END).count(), 1, "{}: its entry point must end with {ENTRY_END:?}", shader.name);
    let name = format!("{}_subgroups", shader.name);
    let mut source = shader.source.replacen(TILE_OPERANDS, TILE_OPERANDS_SUBGROUPS, 1).replacen(ENTRY_END, ENTRY_END_SUBGROUPS, 1);
    // The variant's tile constants are those its params layout declares (its own tile shape).
    let consts = layouts.iter().find(|l| l.shader == name).map_or(&[][..], |l| &l.consts[..]);
    for &(c, v) in consts {
        let line = |src: &str| src.lines().find(|l| l.starts_with(&format!("const {c}: u32 = "))).map(str::to_string);
        let old = line(&source).unwrap_or_else(|| panic!("{}: no `const {c}: u32` line for its variant", shader.name));
        source = source.replacen(&old, &format!("const {c}: u32 = {v}u;"), 1);
    }
    Some(Shader {
        // Made once per process, for the process's lifetime: a fixed set of strings.
        name: Box::leak(name.into_boxed_str()),
        source: Box::leak(source.into_boxed_str()),
        workgroup: shader.workgroup,
        variant_of: Some(shader.name),
    })
}

/// Every kernel, the `_subgroups` and f16-operand variants included.
pub fn all() -> &'static [Shader] {
    static ALL: OnceLock<Vec<Shader>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = crate::ops::shaders();
        let layouts = crate::ops::params_layouts();
        let subgroups: Vec<Shader> = v.iter().filter_map(|s| subgroups_variant(s, &layouts)).collect();
        v.extend(subgroups);
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
                variant_of: Some(s.variant_of.unwrap_or(s.name)),
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

