//! The PNG files wgrad writes (`show`'s grids, a run's curves.png): encoded with a `Software`
//! text chunk naming wgrad, the mark by which wgrad knows a file it may replace
//! ([`super::check_named_output`]).

use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The `Software` text of wgrad's PNG files.
fn software() -> String {
    format!("wgrad {}", env!("CARGO_PKG_VERSION"))
}

/// `img` as PNG bytes carrying wgrad's mark (errors name `path`, the file they are meant for).
pub fn encode(path: &Path, img: &image::RgbImage) -> Result<Vec<u8>> {
    let fail = |e: ::png::EncodingError| Error::file(path, format!("cannot encode PNG: {e}"));
    let mut out = Vec::new();
    let mut enc = ::png::Encoder::new(&mut out, img.width(), img.height());
    enc.set_color(::png::ColorType::Rgb);
    enc.set_depth(::png::BitDepth::Eight);
    enc.add_text_chunk("Software".into(), software()).map_err(fail)?;
    enc.write_header().and_then(|mut w| w.write_image_data(img.as_raw())).map_err(fail)?;
    Ok(out)
}

/// Whether the file at `path` is a PNG wgrad wrote: its text chunks, which [`encode`] puts before
/// the image data (so only the file's start is read), name wgrad as its `Software`.
pub fn written_by_wgrad(path: &Path) -> bool {
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1 << 16).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    let Ok(reader) = ::png::Decoder::new(std::io::Cursor::new(head)).read_info() else { return false };
    reader.info().uncompressed_latin1_text.iter().any(|t| t.keyword == "Software" && t.text.starts_with("wgrad "))
}
