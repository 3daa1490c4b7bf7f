//! The PNG files wgrad writes (`show`'s grids, a run's curves.png): encoded with a `Software`
//! text chunk naming wgrad and a `Title` naming the kind of picture, the marks by which wgrad
//! knows a file it may replace ([`super::check_named_output`]): `show` replaces its own grids,
//! never a run's curves.

use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The `Software` text of wgrad's PNG files.
fn software() -> String {
    format!("wgrad {}", env!("CARGO_PKG_VERSION"))
}

/// The kinds of picture wgrad writes, as their `Title` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `wgrad show`'s grid of images.
    Grid,
    /// A run's curves.png.
    Curves,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Grid => "wgrad show: a grid of images",
            Kind::Curves => "wgrad train: training curves",
        }
    }
}

/// `img` as PNG bytes carrying wgrad's marks for a picture of `kind` (errors name `path`, the file
/// they are meant for).
pub fn encode(path: &Path, img: &image::RgbImage, kind: Kind) -> Result<Vec<u8>> {
    let fail = |e: ::png::EncodingError| Error::file(path, format!("cannot encode PNG: {e}"));
    let mut out = Vec::new();
    let mut enc = ::png::Encoder::new(&mut out, img.width(), img.height());
    enc.set_color(::png::ColorType::Rgb);
    enc.set_depth(::png::BitDepth::Eight);
    enc.add_text_chunk("Software".into(), software()).map_err(fail)?;
    enc.add_text_chunk("Title".into(), kind.title().into()).map_err(fail)?;
    enc.write_header().and_then(|mut w| w.write_image_data(img.as_raw())).map_err(fail)?;
    Ok(out)
}

/// Whether the file at `path` is a grid `wgrad show` wrote ([`written_by_wgrad`] as
/// [`Kind::Grid`]).
pub fn is_grid(path: &Path) -> bool {
    written_by_wgrad(path, Kind::Grid)
}

/// Whether the file at `path` is a PNG wgrad wrote as a picture of `kind`: its text chunks, which
/// [`encode`] puts before the image data (so only the file's start is read), name wgrad as its
/// `Software` and the kind as its `Title`.
pub fn written_by_wgrad(path: &Path, kind: Kind) -> bool {
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1 << 16).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    let Ok(reader) = ::png::Decoder::new(std::io::Cursor::new(head)).read_info() else { return false };
    let text = &reader.info().uncompressed_latin1_text;
    let has = |key: &str, ok: &dyn Fn(&str) -> bool| text.iter().any(|t| t.keyword == key && ok(&t.text));
    has("Software", &|t| t.starts_with("wgrad ")) && has("Title", &|t| t == kind.title())
}
