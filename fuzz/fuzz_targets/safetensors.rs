//! State dicts and checkpoints (safetensors): parsing, loading into Tudui's parameters and reading
//! checkpoint metadata never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static LAYOUT: OnceLock<wgrad::nn::ParamSet> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.safetensors");
    let layout = LAYOUT.get_or_init(|| wgrad::models::tudui(0).params);
    if let Ok(f) = wgrad::io::safetensors::File::parse(p, data) {
        let mut params = layout.clone();
        let _ = wgrad::io::state_dict::apply(p, &f, &mut params, |_| true);
        let _ = wgrad::io::checkpoint::read_meta(p, &f);
        let _ = f.f32(p, "images");
        let _ = f.i64(p, "targets");
    }
});
