//! CIFAR-10 Python batches (pickles of numpy arrays, Python 2 or 3): never a panic, hang or OOM.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgrad::data::cifar10::parse_pickle(std::path::Path::new("fuzz_batch"), data);
});
