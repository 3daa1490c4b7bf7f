//! PyTorch's files (torch.save's .pt/.pth, read through `pytorch-reader`): reading them, picking
//! the state dict out of them and loading it into Tudui's parameters never panic, nor allocate
//! past the bound `io::pytorch` sets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static LAYOUT: OnceLock<wgrad::nn::ParamSet> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // The reader opens files: each input goes through one of this process's own.
    let p = std::env::temp_dir().join(format!("wgrad-fuzz-{}.pth", std::process::id()));
    if std::fs::write(&p, data).is_err() {
        return;
    }
    let layout = LAYOUT.get_or_init(|| wgrad::models::tudui(0).params);
    if let Ok(f) = wgrad::io::safetensors::File::read(&p) {
        let mut params = layout.clone();
        let _ = wgrad::io::state_dict::apply(&p, &f, &mut params, |_| true);
    }
});
