//! Pictures for `wgrad predict` and image folders (PNG, JPEG, BMP, PPM/PGM, TIFF, WebP): decoding
//! under limits never panics or exhausts memory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for framing in [wgrad::data::image::Framing::Colour, wgrad::data::image::Framing::Grey28] {
        let _ = wgrad::data::image::decode_image(std::path::Path::new("fuzz.png"), data, framing);
    }
});
