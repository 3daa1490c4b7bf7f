//! CIFAR-10 binary batches: any bytes give records or a clear error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgrad::data::cifar10::parse_bin(std::path::Path::new("fuzz.bin"), data);
});
