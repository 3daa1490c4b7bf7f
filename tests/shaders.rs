//! Every shader parses and validates with naga (no GPU needed), and every Rust `Params` struct has
//! exactly the size and field offsets of the WGSL `struct Params`.

use wgrad::ops::params_layouts;
use wgrad::shaders::all;

fn module(name: &str, src: &str) -> naga::Module {
    let m = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&m)
        .unwrap_or_else(|e| panic!("{name}.wgsl fails validation: {e:?}"));
    m
}

#[test]
fn every_shader_parses_and_validates() {
    for (name, src) in all() {
        module(name, src);
        assert!(src.contains("fn main("), "{name}.wgsl has no `main` entry point");
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(all().iter().any(|(n, _)| *n == stem), "shaders/{stem}.wgsl is not listed by any op (crate::shaders!)");
    }
}

#[test]
fn params_structs_match_wgsl_layout() {
    let layouts = params_layouts();
    for (name, src) in all() {
        let layout = layouts
            .iter()
            .find(|l| l.shader == *name)
            .unwrap_or_else(|| panic!("{name}.wgsl has no Rust params layout in ops::params_layouts()"));
        let m = module(name, src);
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
