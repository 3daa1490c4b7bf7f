//! Pictures for `wgrad predict`: PNG or JPEG of any size, resized to 32×32 (bilinear) and turned
//! into a 3×32×32 tensor in [0, 1], with limits so a file claiming huge dimensions is refused.

use crate::{Error, Result};
use std::path::Path;

/// Largest width or height accepted, the most pixels (checked before decoding: a 169-byte JPEG may
/// declare 10000×10000), and the most memory a decoder may take.
const MAX_SIDE: u32 = 16_384;
pub const MAX_PIXELS: u64 = 40_000_000;
const MAX_ALLOC: u64 = 512 << 20;

/// Reads an image of any size as a 3×32×32 tensor in [0, 1] (ToTensor after Resize((32, 32))).
pub fn load_image(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    decode_image(path, &bytes)
}

/// Decodes PNG or JPEG bytes (named by `path` in errors) as in [`load_image`].
pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.is_empty() {
        return Err(Error::file(path, "empty file, not an image"));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::file(path, "not a PNG or JPEG image"));
    }
    let (w, h) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .and_then(|r| r.into_dimensions().map_err(std::io::Error::other))
        .map_err(|e| Error::file(path, format!("cannot decode: {e}")))?;
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(Error::file(
            path,
            format!("the image declares {w}×{h} = {} pixels, over the limit of {MAX_PIXELS}", w as u64 * h as u64),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| Error::file(path, format!("cannot decode the image: {e}")))?;
    let small = image::imageops::resize(&img.to_rgb8(), 32, 32, image::imageops::FilterType::Triangle);
    let mut out = vec![0f32; 3 * 32 * 32];
    for (i, p) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * 1024 + i] = p[c] as f32 / 255.0;
        }
    }
    Ok(out)
}
