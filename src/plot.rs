//! Training curves as a PNG: the loss per step (smoothed) and per epoch (train and test), and test
//! accuracy per epoch. plotters draws the
//! axes and lines; labels use the 8×8 bitmap font (no system fonts needed on headless machines).

use crate::train::EpochRecord;
use crate::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// Draws `text` with the 8×8 font, top-left at (x, y), in `color`; clipped to the image.
pub fn draw_text(img: &mut image::RgbImage, x: i64, y: i64, text: &str, color: [u8; 3]) {
    use font8x8::UnicodeFonts;
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                let (px, py) = (x + i as i64 * 8 + col, y + row as i64);
                if bits & (1 << col) != 0
                    && px >= 0
                    && py >= 0
                    && (px as u32) < img.width()
                    && (py as u32) < img.height()
                {
                    img.put_pixel(px as u32, py as u32, image::Rgb(color));
                }
            }
        }
    }
}

type Chart<'a> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A label to draw once plotters is done: (pixel x, pixel y, text, colour).
type Label = (i64, i64, String, [u8; 3]);

fn axes_labels(chart: &Chart<'_>, x_max: f64, y: (f64, f64), y_fmt: fn(f64) -> String, out: &mut Vec<Label>) {
    let grey = [60, 60, 60];
    for k in 0..=4 {
        let v = y.0 + (y.1 - y.0) * k as f64 / 4.0;
        let (px, py) = chart.backend_coord(&(0.0, v));
        let s = y_fmt(v);
        out.push((px as i64 - 8 * s.len() as i64 - 4, py as i64 - 4, s, grey));
    }
    let step = (x_max / 8.0).ceil().max(1.0);
    let mut e = step;
    while e <= x_max + 1e-9 {
        let (px, py) = chart.backend_coord(&(e, y.0));
        let s = format!("{}", e as u64);
        out.push((px as i64 - 4 * s.len() as i64, py as i64 + 6, s, grey));
        e += step;
    }
}

/// The per-step losses smoothed as TensorBoard does (an exponential moving average with weight
/// `weight`, debiased), at x = step / steps_per_epoch.
pub fn smoothed(steps: &[(u64, f32)], steps_per_epoch: u64, weight: f64) -> Vec<(f64, f64)> {
    let (mut avg, mut norm) = (0.0, 0.0);
    steps
        .iter()
        .map(|&(step, loss)| {
            avg = avg * weight + (1.0 - weight) * loss as f64;
            norm = norm * weight + (1.0 - weight);
            (step as f64 / steps_per_epoch.max(1) as f64, avg / norm)
        })
        .collect()
}

/// Writes the curves to `path` (atomically): `history` per epoch, `steps` as (step, loss).
pub fn curves(path: &Path, history: &[EpochRecord], steps: &[(u64, f32)], steps_per_epoch: u64) -> Result<()> {
    if history.is_empty() && steps.is_empty() {
        return Ok(());
    }
    let (w, h) = (900u32, 420u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let per_step = smoothed(steps, steps_per_epoch, 0.9);
    let x_max = history.iter().map(|r| r.epoch as f64 + 1.0).chain(per_step.last().map(|p| p.0)).fold(1.0, f64::max);
    let max_loss = history
        .iter()
        .flat_map(|r| [r.train_loss, r.test_loss])
        .chain(per_step.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        * 1.1
        + 1e-9;
    let ep = |r: &EpochRecord| r.epoch as f64 + 1.0;
    let (blue, red, green) = (RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44));
    let mut labels: Vec<Label> = Vec::new();
    let mut draw = |labels: &mut Vec<Label>| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(w / 2);
        let panels: [(&DrawingArea<BitMapBackend, _>, &str, f64); 2] =
            [(&left, "loss", max_loss), (&right, "test accuracy", 1.0)];
        for (i, (area, title, y_max)) in panels.into_iter().enumerate() {
            let area = area.margin(30, 30, 60, 20);
            let mut chart = ChartBuilder::on(&area).build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            let grid = RGBColor(225, 225, 225);
            for k in 1..4 {
                let y = y_max * k as f64 / 4.0;
                chart.draw_series(LineSeries::new([(0.0, y), (x_max, y)], grid))?;
            }
            chart.plotting_area().draw(&Rectangle::new([(0.0, 0.0), (x_max, y_max)], BLACK.stroke_width(1)))?;
            let (x0, y0) = chart.backend_coord(&(0.0, y_max));
            labels.push((x0 as i64, y0 as i64 - 20, title.to_string(), [0, 0, 0]));
            let (xe, ye) = chart.backend_coord(&(x_max, 0.0));
            labels.push((xe as i64 - 40, ye as i64 + 18, "epoch".into(), [0, 0, 0]));
            if i == 0 {
                let light = RGBColor(158, 202, 225);
                chart.draw_series(LineSeries::new(per_step.iter().copied(), light.stroke_width(1)))?;
                chart.draw_series(LineSeries::new(
                    history.iter().map(|r| (ep(r), r.train_loss)),
                    blue.stroke_width(2),
                ))?;
                chart
                    .draw_series(LineSeries::new(history.iter().map(|r| (ep(r), r.test_loss)), red.stroke_width(2)))?;
                chart.draw_series(history.iter().map(|r| Circle::new((ep(r), r.test_loss), 3, red.filled())))?;
                labels.push((xe as i64 - 124, y0 as i64 + 6, "train (epoch)".into(), [31, 119, 180]));
                labels.push((xe as i64 - 124, y0 as i64 + 18, "train (step)".into(), [120, 170, 200]));
                labels.push((xe as i64 - 124, y0 as i64 + 30, "test".into(), [214, 39, 40]));
                axes_labels(&chart, x_max, (0.0, y_max), |v| format!("{v:.2}"), labels);
            } else {
                chart.draw_series(LineSeries::new(
                    history.iter().map(|r| (ep(r), r.test_accuracy)),
                    green.stroke_width(2),
                ))?;
                chart.draw_series(history.iter().map(|r| Circle::new((ep(r), r.test_accuracy), 3, green.filled())))?;
                axes_labels(&chart, x_max, (0.0, 1.0), |v| format!("{:.0}%", v * 100.0), labels);
            }
        }
        root.present()?;
        Ok(())
    };
    draw(&mut labels).map_err(|e| Error::file(path, format!("cannot draw the curves: {e}")))?;
    let mut img =
        image::RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::file(path, "plot buffer has the wrong size"))?;
    for (x, y, s, c) in labels {
        draw_text(&mut img, x, y, &s, c);
    }
    crate::io::write_atomic(path, &crate::io::png::encode(path, &img, crate::io::png::Kind::Curves)?)
}
