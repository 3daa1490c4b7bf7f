//! Every WGSL kernel, compiled into the binary: each op module lists its own with its workgroup
//! size (`shaders/<op>_forward.wgsl`, `shaders/<op>_backward[_<what>].wgsl`, see [`crate::shaders!`]).
//! Pipelines are created from these once per device ([`crate::device::Gpu::pipeline`]).
//!
//! A kernel whose operands are declared `array<operand>` (with the line `alias operand = f32;`,
//! every read converted with `f32(...)`) also exists as `<name>_f16`: the same source reading f16
//! operands (`enable f16;`, `alias operand = f16;`), for [`crate::Precision::Mixed`].
//!
//! A cooperative-matrix kernel (`enable wgpu_cooperative_matrix;`) is written for 8 x 8 tiles and
//! subgroups of 8 (lavapipe); its `<name>_16x16` variant has 16 x 16 tiles and subgroups of 32
//! (NVIDIA), the lines of [`COOPERATIVE_16X16`] replaced; that one, where it lays its subgroups
//! out by [`NARROW`]'s lines, also as `<name>_16x16_narrow`, its subgroups laid 1 x 4 over a
//! workgroup's tile instead of 2 x 2.
//!
//! A convolution kernel (register-blocked or `_subgroups`) with the line
//! `const WIDE: bool = false;` also exists as `<name>_wide`, 16 channels per invocation instead of
//! 8 (the lines of [`WIDE`] replaced), and that one as `<name>_wide_f16`; so does matmul, 8 x 8
//! outputs per invocation instead of 4 x 4.
//!
//! An elementwise kernel whose elements are declared `array<elem>` (with the line
//! `alias elem = f32;`) also exists as `<name>_vec4`, four elements per invocation ([`VEC4`]).
//!
//! A pooling kernel with the line `const TILES: bool = false;` also exists as `<name>_tiles`, for
//! windows that tile the input ([`TILES`]); a reduction kernel with the line
//! `const PER_CHANNEL: bool = false;` as `<name>_per_channel`, one invocation per channel or
//! chunk of one ([`PER_CHANNEL`]); both before their `_vec4` forms.
//!
//! A Winograd transform kernel, written for 3 x 3 kernels (the line `const R: u32 = 3u;`), also
//! exists as `<name>_5x5` ([`WINOGRAD_5X5`]).

pub use crate::ops::Shader;
use std::sync::OnceLock;

/// The line that makes a kernel's operand type switchable.
pub const OPERAND_F32: &str = "alias operand = f32;";

/// What a cooperative-matrix kernel's `_16x16` variant replaces: its tile, its subgroup size and
/// its matrix types.
pub const COOPERATIVE_16X16: [(&str, &str); 3] = [
    ("const T: u32 = 8u;", "const T: u32 = 16u;"),
    ("const SG: u32 = 8u;", "const SG: u32 = 32u;"),
    ("coop_mat8x8<", "coop_mat16x16<"),
];

/// The workgroup memory a `_narrow` variant may take: more than WebGPU's default 16 KB (its tile of
/// 128 pixel columns, each a padded row of reduction rows), within what every adapter that
/// multiplies cooperative matrices offers (Metal's least is 32 KB; NVIDIA's 48 KB, AMD's and
/// Intel's 64 KB). ops::conv2d takes a narrow variant only where the device offers this much.
pub const NARROW_WORKGROUP_BYTES: u32 = 32_768;

/// What a `_16x16` cooperative-matrix kernel's `_narrow` variant replaces: its four subgroups lie
/// 1 x 4 over the workgroup's tile instead of 2 x 2 (32 rows by 128 columns instead of 64 by 64),
/// for products of at most 32 rows.
pub const NARROW: [(&str, &str); 2] =
    [("const SM: u32 = 2u;", "const SM: u32 = 1u;"), ("const SN: u32 = 2u;", "const SN: u32 = 4u;")];

/// What a convolution kernel's `_wide` variant replaces: 16 channels per invocation instead of 8,
/// the lines its source guards with `if (WIDE)` kept; and matmul's: 8 x 8 outputs instead of 4 x 4.
pub const WIDE: [(&str, &str); 3] = [
    ("const WIDE: bool = false;", "const WIDE: bool = true;"),
    ("const TC: u32 = 8u;", "const TC: u32 = 16u;"),
    ("const T: u32 = 4u;", "const T: u32 = 8u;"),
];

/// What an elementwise kernel's `_vec4` variant replaces: its element type, that of the element's
/// bits and its elements per load (where it has them), four words for one (crate::ops::elementwise
/// says where it runs).
pub const VEC4: [(&str, &str); 3] = [
    ("alias elem = f32;", "alias elem = vec4<f32>;"),
    ("alias bits = u32;", "alias bits = vec4<u32>;"),
    ("const LANES: u32 = 1u;", "const LANES: u32 = 4u;"),
];

/// What a kernel's `_tiles` variant replaces: the path for windows that tile the input (exactly, in
/// max-pool's backward), as a constant (maxpool2d_backward.wgsl says why not a parameter).
pub const TILES: [(&str, &str); 1] = [("const TILES: bool = false;", "const TILES: bool = true;")];

/// What a reduction kernel's `_per_channel` variant replaces: one invocation per channel (or per
/// chunk of a channel) instead of a workgroup, as a constant (bias_backward.wgsl says why not a parameter).
pub const PER_CHANNEL: [(&str, &str); 1] = [("const PER_CHANNEL: bool = false;", "const PER_CHANNEL: bool = true;")];

/// The invocations a `_per_channel` variant's workgroup puts to work (PC in its source, each a
/// channel or a channel's chunk; the rest of the workgroup returns at once): one SIMD group of
/// lavapipe's 8 lanes, the workgroups spread over its threads.
pub const PER_CHANNEL_WORKGROUP: usize = 8;

/// What a Winograd transform kernel's `_5x5` variant replaces: its kernel size (its tile follows),
/// the transforms it calls (each such kernel defines both, `winograd3` and `winograd5`, and their
/// four-column forms `winograd3v` and `winograd5v` where it has them) and the row of a tile it
/// assembles from two vec4s (`row6`, `row8`).
pub const WINOGRAD_5X5: [(&str, &str); 4] = [
    ("const R: u32 = 3u;", "const R: u32 = 5u;"),
    ("return winograd3(x);", "return winograd5(x);"),
    ("return winograd3v(x);", "return winograd5v(x);"),
    ("return row6(l, h);", "return row8(l, h);"),
];

/// Every kernel, the wide, 5 x 5 Winograd, tiles, per-channel, vec4, f16-operand, 16 x 16 and
/// narrow variants included (the wide ones with f16 variants of their own).
pub fn all() -> &'static [Shader] {
    static ALL: OnceLock<Vec<Shader>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = crate::ops::shaders();
        // The variants a kernel has by a marker line (each list's first), in this order, each
        // family made from the kernels and the variants before it.
        let families: [(&str, &[(&str, &str)]); 5] = [
            ("_wide", &WIDE),
            ("_5x5", &WINOGRAD_5X5),
            ("_tiles", &TILES),
            ("_per_channel", &PER_CHANNEL),
            ("_vec4", &VEC4),
        ];
        for (suffix, lines) in families {
            let family: Vec<Shader> = v
                .iter()
                .filter(|s| s.source.contains(lines[0].0))
                .map(|s| variant_of(s, suffix, "", lines, 1))
                .collect();
            v.extend(family);
        }
        let f16: Vec<Shader> = v
            .iter()
            .filter(|s| s.source.contains(OPERAND_F32))
            .map(|s| variant_of(s, "_f16", "enable f16;\n", &[(OPERAND_F32, "alias operand = f16;")], 1))
            .collect();
        // Four subgroups of 32 instead of four of 8.
        let tiles: Vec<Shader> = v
            .iter()
            .filter(|s| s.needs_cooperative_matrix())
            .map(|s| variant_of(s, "_16x16", "", &COOPERATIVE_16X16, 4))
            .collect();
        let narrow: Vec<Shader> = tiles
            .iter()
            .filter(|s| s.source.contains(NARROW[0].0))
            .map(|s| variant_of(s, "_narrow", "", &NARROW, 1))
            .collect();
        v.extend(f16);
        v.extend(tiles);
        v.extend(narrow);
        v
    })
}

/// `s`'s variant `<name><suffix>`: `header`, then its source with every occurrence of each line of
/// `lines` replaced; its workgroup `scale` times as large. Made once per process, for the
/// process's lifetime (a fixed set of strings).
fn variant_of(s: &Shader, suffix: &str, header: &str, lines: &[(&str, &str)], scale: u32) -> Shader {
    let source = lines.iter().fold(format!("{header}{}", s.source), |src, (from, to)| src.replace(from, to));
    Shader {
        name: Box::leak(format!("{}{suffix}", s.name).into_boxed_str()),
        source: Box::leak(source.into_boxed_str()),
        workgroup: s.workgroup * scale,
        variant_of: Some(s.name),
    }
}

pub fn get(name: &str) -> Option<&'static Shader> {
    all().iter().find(|s| s.name == name)
}

/// The name of `shader`'s variant `<shader><suffix>`, where there is one.
fn variant(shader: &str, suffix: &str) -> Option<&'static str> {
    let want = format!("{shader}{suffix}");
    all().iter().find(|s| s.name == want).map(|s| s.name)
}

/// The name of `shader`'s 16-channel variant (`conv2d_forward` → `conv2d_forward_wide`).
pub fn wide_variant(shader: &'static str) -> Option<&'static str> {
    variant(shader, "_wide")
}

/// The name of `shader`'s four-elements-per-invocation variant (`relu_forward` → `relu_forward_vec4`).
pub fn vec4_variant(shader: &'static str) -> Option<&'static str> {
    variant(shader, "_vec4")
}

/// The name of `shader`'s one-invocation-per-channel variant (`batchnorm2d_forward_stats` →
/// `batchnorm2d_forward_stats_per_channel`).
pub fn per_channel_variant(shader: &'static str) -> Option<&'static str> {
    variant(shader, "_per_channel")
}

/// The name of `shader`'s f16-operand variant (`conv2d_forward` → `conv2d_forward_f16`).
pub fn f16_variant(shader: &'static str) -> Option<&'static str> {
    variant(shader, "_f16")
}

/// The Winograd transform kernel `shader` (written for 3 x 3 kernels) for kernels of `r` x `r`:
/// itself, or its `_5x5` variant.
pub fn winograd_variant(shader: &'static str, r: usize) -> Option<&'static str> {
    match r {
        3 => get(shader).map(|s| s.name),
        5 => variant(shader, "_5x5"),
        _ => None,
    }
}

/// The cooperative-matrix kernel `shader` (written for 8 x 8 tiles) for tiles of `tile`: itself,
/// or its `_16x16` variant, or with `narrow` that one's `_narrow` variant (8 x 8 tiles have none).
pub fn cooperative_variant(shader: &'static str, tile: u32, narrow: bool) -> Option<&'static str> {
    match (tile, narrow) {
        (8, false) => get(shader).map(|s| s.name),
        (16, false) => variant(shader, "_16x16"),
        (16, true) => variant(shader, "_16x16_narrow"),
        _ => None,
    }
}
