//! Pictures for `wgrad predict` and image folders: PNG, JPEG, BMP, PPM/PGM, TIFF or WebP of any
//! size, framed as the network's dataset framed its images ([`Framing`]) into a 3×32×32 tensor in
//! [0, 1], with limits so a file claiming huge dimensions is refused.

use crate::{Error, Result};
use std::path::Path;

/// Largest width or height accepted, the most pixels (checked before decoding: a 169-byte JPEG may
/// declare 10000×10000), and the most memory a decoder may take.
const MAX_SIDE: u32 = 16_384;
pub const MAX_PIXELS: u64 = 40_000_000;
const MAX_ALLOC: u64 = 512 << 20;

/// How a picture becomes a 3×32×32 input: as the images of the dataset the network learnt from
/// were made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Colour, resized to 32×32 (CIFAR-10 and the synthetic set; ToTensor after Resize((32, 32))).
    Colour,
    /// Grey, resized to 28×28, zero-padded by 2 and its channel replicated (MNIST and
    /// Fashion-MNIST as `data::idx` frames them).
    Grey28,
}

impl Framing {
    /// The framing of the dataset called `name` ([`crate::data::Dataset::name`]).
    pub fn of_dataset(name: &str) -> Framing {
        match crate::data::DatasetKind::from_name(name) {
            Some(crate::data::DatasetKind::FashionMnist | crate::data::DatasetKind::Mnist) => Framing::Grey28,
            _ => Framing::Colour,
        }
    }
}

/// Reads an image of any size as a 3×32×32 tensor in [0, 1].
pub fn load_image(path: &Path, framing: Framing) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    decode_image(path, &bytes, framing)
}

/// Decodes a picture's bytes (named by `path` in errors) as in [`load_image`].
pub fn decode_image(path: &Path, bytes: &[u8], framing: Framing) -> Result<Vec<f32>> {
    Ok(decode_pixels(path, bytes, framing)?.into_iter().map(|b| b as f32 / 255.0).collect())
}

/// Decodes a picture's bytes (named by `path` in errors) into a dataset's image: 3×32×32 bytes,
/// channel-planar, framed as `framing` says (ToTensor of them is [`decode_image`]'s tensor).
pub fn decode_pixels(path: &Path, bytes: &[u8], framing: Framing) -> Result<Vec<u8>> {
    if bytes.is_empty() {
        return Err(Error::file(path, "empty file, not an image"));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::file(path, "not a PNG, JPEG, BMP, PPM/PGM, TIFF or WebP image"));
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
    let mut out = vec![0u8; 3 * 32 * 32];
    let filter = image::imageops::FilterType::Triangle;
    match framing {
        Framing::Colour => {
            let small = image::imageops::resize(&img.to_rgb8(), 32, 32, filter);
            for (i, p) in small.pixels().enumerate() {
                for c in 0..3 {
                    out[c * 1024 + i] = p[c];
                }
            }
        }
        Framing::Grey28 => {
            let small = image::imageops::resize(&img.to_luma8(), 28, 28, filter);
            for (i, p) in small.pixels().enumerate() {
                let (y, x) = (i / 28 + 2, i % 28 + 2);
                for c in 0..3 {
                    out[c * 1024 + y * 32 + x] = p[0];
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40×20 picture, red left half and white right half, as PNG bytes.
    fn picture() -> Vec<u8> {
        let img = image::RgbImage::from_fn(
            40,
            20,
            |x, _| if x < 20 { image::Rgb([255, 0, 0]) } else { image::Rgb([255; 3]) },
        );
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        png
    }

    #[test]
    fn colour_framing_resizes_to_32_by_32_in_colour() {
        let x = decode_image(Path::new("p.png"), &picture(), Framing::Colour).unwrap();
        let at = |c: usize, y: usize, x_: usize| x[c * 1024 + y * 32 + x_];
        assert_eq!((at(0, 5, 2), at(1, 5, 2), at(2, 5, 2)), (1.0, 0.0, 0.0), "red on the left");
        assert_eq!((at(0, 5, 29), at(1, 5, 29), at(2, 5, 29)), (1.0, 1.0, 1.0), "white on the right");
    }

    #[test]
    fn each_dataset_frames_pictures_as_its_images_are() {
        for (name, framing) in [
            ("CIFAR-10", Framing::Colour),
            ("synthetic", Framing::Colour),
            ("Fashion-MNIST", Framing::Grey28),
            ("MNIST", Framing::Grey28),
        ] {
            assert_eq!(Framing::of_dataset(name), framing, "{name}");
        }
    }

    #[test]
    fn grey_framing_is_fashion_mnists_28_by_28_padded_by_2() {
        let x = decode_image(Path::new("p.png"), &picture(), Framing::Grey28).unwrap();
        let at = |c: usize, y: usize, x_: usize| x[c * 1024 + y * 32 + x_];
        // Rec. 601 luma of pure red: 0.299 (the image crate's weights, 8-bit).
        let red = image::Rgb([255u8, 0, 0]);
        let luma = image::Pixel::to_luma(&red)[0] as f32 / 255.0;
        for c in 0..3 {
            for i in 0..32 {
                for edge in [0, 1, 30, 31] {
                    assert_eq!((at(c, edge, i), at(c, i, edge)), (0.0, 0.0), "the 2-pixel border is zero");
                }
            }
            assert_eq!(at(c, 10, 3), luma, "grey of red, every channel");
            assert_eq!(at(c, 10, 28), 1.0, "white");
        }
    }
}
