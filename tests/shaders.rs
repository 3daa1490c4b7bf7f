//! Every shader, without a GPU: it parses and validates with naga; its Rust `Params` struct has
//! exactly the WGSL `struct Params`'s size and field offsets; its workgroup size and the constants
//! the host code assumes (tile sizes) are the WGSL's; it fits WebGPU's default limits (what a
//! browser grants and the lowest any backend offers), but for the workgroup memory a narrow
//! cooperative-matrix variant declares it takes; and it translates, as wgpu would, to SPIR-V
//! (Vulkan), MSL (Metal), HLSL (DX12) and GLSL ES 3.1 (GL), so a shader that would fail only on a
//! Mac, on Windows or in a browser fails here.

use naga::back::{glsl, hlsl, msl, spv};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use wgrad::ops::{params_layouts, ParamsLayout};
use wgrad::shaders::{all, Shader};

/// A kernel parsed and validated with the capabilities it declares it needs (wgrad::ops::Shader).
fn module(s: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let (name, src) = (s.name, s.source);
    let m = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    let mut caps = Capabilities::empty();
    caps.set(Capabilities::SHADER_FLOAT16, s.needs_f16());
    caps.set(Capabilities::SUBGROUP, s.needs_subgroups());
    caps.set(Capabilities::COOPERATIVE_MATRIX, s.needs_cooperative_matrix());
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&m)
        .unwrap_or_else(|e| panic!("{name}.wgsl fails validation: {e:?}"));
    (m, info)
}

#[test]
fn every_shader_parses_and_validates() {
    for s in all() {
        let (m, _) = module(s);
        assert!(m.entry_points.iter().any(|e| e.name == "main"), "{}.wgsl has no `main` entry point", s.name);
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(all().iter().any(|s| s.name == stem), "shaders/{stem}.wgsl is not listed by any op (crate::shaders!)");
    }
}

#[test]
fn params_structs_match_wgsl_layout() {
    let layouts = params_layouts();
    for s in all() {
        let name = s.name;
        let layout = layouts
            .iter()
            .find(|l| l.shader == layout_of(&layouts, s))
            .unwrap_or_else(|| panic!("{name}.wgsl has no Rust params layout in ops::params_layouts()"));
        let (m, _) = module(s);
        let (members, span) = m
            .types
            .iter()
            .find_map(|(_, t)| match (&t.name, &t.inner) {
                (Some(n), naga::TypeInner::Struct { members, span }) if n == "Params" => Some((members.clone(), *span)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}.wgsl has no `struct Params`"));
        assert_eq!(span as usize, layout.size, "{name}: WGSL Params is {span} bytes, Rust's is {}", layout.size);
        let wgsl: Vec<(String, usize)> = members.iter().map(|m| (m.name.clone().unwrap(), m.offset as usize)).collect();
        let rust: Vec<(String, usize)> = layout.fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(wgsl, rust, "{name}: field names/offsets differ between WGSL and Rust");
    }
}

/// The kernel whose Rust params layout (and tile constants) `s` has: its own where the op lists one
/// (a `_wide` variant's), else that of the kernel it is made from.
fn layout_of(layouts: &[ParamsLayout], s: &Shader) -> &'static str {
    if layouts.iter().any(|l| l.shader == s.name) {
        s.name
    } else {
        s.variant_of.unwrap_or(s.name)
    }
}

/// The u32 value of a module-scope `const` of the WGSL.
fn wgsl_const(m: &naga::Module, name: &str) -> Option<u32> {
    m.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).and_then(|(_, c)| {
        match m.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => Some(v),
            _ => None,
        }
    })
}

#[test]
fn workgroup_sizes_and_tile_constants_are_declared_once() {
    let layouts = params_layouts();
    for s in all() {
        let (m, _) = module(s);
        let ep = m.entry_points.iter().find(|e| e.name == "main").unwrap();
        assert_eq!(
            ep.workgroup_size,
            [s.workgroup, 1, 1],
            "{}: the WGSL's workgroup size differs from its shaders! entry (dispatches would miss work)",
            s.name
        );
        assert_eq!(wgsl_const(&m, "WG"), Some(s.workgroup), "{}: `const WG` differs from its shaders! entry", s.name);
        for l in layouts.iter().filter(|l| l.shader == layout_of(&layouts, s)) {
            for &(c, v) in &l.consts {
                assert_eq!(wgsl_const(&m, c), Some(v), "{}: WGSL const {c} differs from the Rust side's {v}", s.name);
            }
        }
    }
}

#[test]
fn every_shader_fits_webgpus_default_limits() {
    let lim = wgpu::Limits::default();
    for s in all() {
        let (m, info) = module(s);
        let (mut storage, mut uniform) = (0u32, 0u32);
        let mut workgroup_bytes = 0u32;
        let layouter = {
            let mut l = naga::proc::Layouter::default();
            l.update(m.to_ctx()).unwrap();
            l
        };
        for (_, g) in m.global_variables.iter() {
            match g.space {
                naga::AddressSpace::Storage { .. } => storage += 1,
                naga::AddressSpace::Uniform => uniform += 1,
                naga::AddressSpace::WorkGroup => workgroup_bytes += layouter[g.ty].size,
                _ => {}
            }
        }
        let _ = info;
        let name = s.name;
        assert!(
            storage <= lim.max_storage_buffers_per_shader_stage,
            "{name}: {storage} storage buffers > {}",
            lim.max_storage_buffers_per_shader_stage
        );
        assert!(uniform <= lim.max_uniform_buffers_per_shader_stage, "{name}: {uniform} uniform buffers");
        assert!(storage + uniform <= lim.max_bindings_per_bind_group, "{name}: too many bindings");
        // The narrow cooperative-matrix variants may take more, and run only where the device
        // offers it (Gpu::can_build).
        let workgroup_limit = s.workgroup_memory_needed().unwrap_or(lim.max_compute_workgroup_storage_size);
        assert!(workgroup_bytes <= workgroup_limit, "{name}: {workgroup_bytes} bytes of workgroup memory");
        let [x, y, z] = m.entry_points[0].workgroup_size;
        assert!(
            x * y * z <= lim.max_compute_invocations_per_workgroup
                && x <= lim.max_compute_workgroup_size_x
                && y <= lim.max_compute_workgroup_size_y
                && z <= lim.max_compute_workgroup_size_z,
            "{name}: workgroup ({x}, {y}, {z}) beyond WebGPU's defaults"
        );
    }
}

/// Runtime checks as wgrad creates its pipelines (device.rs): bounds checks on, loop bounding and
/// integer-division checks off.
fn policies() -> BoundsCheckPolicies {
    BoundsCheckPolicies {
        index: BoundsCheckPolicy::Restrict,
        buffer: BoundsCheckPolicy::Restrict,
        image_load: BoundsCheckPolicy::Restrict,
        binding_array: BoundsCheckPolicy::Unchecked,
    }
}

/// Translates one shader for every backend; the first error names the shader and the backend.
/// Cooperative-matrix kernels are translated to SPIR-V only: wgpu offers cooperative matrices on
/// Vulkan and (8 x 8 f32 only) on Metal, where wgrad does not run them (Gpu::cooperative_tile).
fn translate(s: &Shader) -> Result<(), String> {
    let name = s.name;
    let (m, info) = module(s);
    let ep = |stage| Some((stage, "main".to_string()));
    // Subgroup operations need SPIR-V 1.3 (what wgpu asks for with SUBGROUP); cooperative
    // matrices come with Vulkan 1.3 drivers, which wgpu gives SPIR-V 1.6.
    let subgroups = s.needs_subgroups();
    let cooperative = s.needs_cooperative_matrix();
    let spv_opts = spv::Options {
        lang_version: if cooperative {
            (1, 6)
        } else if subgroups {
            (1, 3)
        } else {
            (1, 0)
        },
        bounds_check_policies: policies(),
        force_loop_bounding: false,
        emit_int_div_checks: false,
        ..spv::Options::default()
    };
    let spv_pipeline = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
    spv::write_vec(&m, &info, &spv_opts, Some(&spv_pipeline)).map_err(|e| format!("{name}: SPIR-V (Vulkan): {e}"))?;
    if cooperative {
        return Ok(());
    }
    let msl_opts = msl::Options {
        lang_version: (2, 0),
        bounds_check_policies: policies(),
        force_loop_bounding: false,
        emit_int_div_checks: false,
        ..msl::Options::default()
    };
    let msl_pipeline = msl::PipelineOptions { entry_point: ep(naga::ShaderStage::Compute), ..Default::default() };
    msl::write_string(&m, &info, &msl_opts, &msl_pipeline).map_err(|e| format!("{name}: MSL (Metal): {e}"))?;
    // f16 needs shader model 6.2 on DX12 (what wgpu asks for with SHADER_F16); GL has no f16, and
    // wgpu offers SHADER_F16 on no GL adapter, nor SUBGROUP.
    let f16 = s.needs_f16();
    let shader_model = if f16 { hlsl::ShaderModel::V6_2 } else { hlsl::ShaderModel::V6_0 };
    let hlsl_opts = hlsl::Options { shader_model, force_loop_bounding: false, ..hlsl::Options::default() };
    let hlsl_pipeline = hlsl::PipelineOptions { entry_point: ep(naga::ShaderStage::Compute) };
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &hlsl_opts, &hlsl_pipeline)
        .write(&m, &info, None)
        .map_err(|e| format!("{name}: HLSL (DX12): {e}"))?;
    if f16 || subgroups {
        return Ok(());
    }
    let glsl_opts = glsl::Options { version: glsl::Version::new_gles(310), ..glsl::Options::default() };
    let glsl_pipeline =
        glsl::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into(), multiview: None };
    let mut out = String::new();
    glsl::Writer::new(&mut out, &m, &info, &glsl_opts, &glsl_pipeline, policies())
        .and_then(|mut w| w.write().map(|_| ()))
        .map_err(|e| format!("{name}: GLSL ES 3.1 (GL): {e}"))?;
    Ok(())
}

#[test]
fn every_shader_translates_for_vulkan_metal_dx12_and_gl() {
    for s in all() {
        translate(s).unwrap();
    }
}

#[test]
fn a_shader_broken_for_one_backend_fails_the_translation() {
    // 64-bit floats parse and validate with the capability, but MSL (and GLSL ES) have none.
    let src = "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n\
               @compute @workgroup_size(1) fn main() { let x: f64 = 1.0lf; out[0] = f32(x); }";
    let m = naga::front::wgsl::parse_str(src).unwrap();
    let info = Validator::new(ValidationFlags::all(), Capabilities::FLOAT64).validate(&m).unwrap();
    let msl_pipeline =
        msl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, "main".into())), ..Default::default() };
    assert!(msl::write_string(&m, &info, &msl::Options::default(), &msl_pipeline).is_err(), "MSL should refuse f64");
}
