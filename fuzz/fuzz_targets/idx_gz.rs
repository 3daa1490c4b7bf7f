//! Fashion-MNIST IDX files, gzipped: decompression (bounded) and the IDX header checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wgrad::data::idx::{gunzip, parse_idx};

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz-idx3-ubyte.gz");
    if let Ok(raw) = gunzip(p, data) {
        let _ = parse_idx(p, &raw, 3);
        let _ = parse_idx(p, &raw, 1);
    }
    // Uncompressed too: the IDX parser sees arbitrary headers more often this way.
    let _ = parse_idx(p, data, 3);
    let _ = parse_idx(p, data, 1);
});
