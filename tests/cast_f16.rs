//! cast_f16 (mixed precision's staging of f32 tensors as f16): the unscaled cast rounds as
//! IEEE round-to-nearest-even does; the scaled cast puts the largest magnitude in [2^14, 2^15),
//! stores its exponent after the data, keeps gradients far below f16's smallest normal (6.1e-5)
//! to f16's precision, and overflows nothing where values pass f16's largest (65,504).

mod common;
use common::*;
use wgrad::ops::cast_f16::{self, Layout};
use wgrad::testing::assert_close;

/// The two f16 values of a 32-bit word, low half first.
fn halves(word: u32) -> [f32; 2] {
    [half::f16::from_bits(word as u16).to_f32(), half::f16::from_bits((word >> 16) as u16).to_f32()]
}

/// The f16 values and, when scaled, the exponent the kernels wrote for `x` laid out as `layout`
/// (every half 1.0 before the cast, so that what it leaves unwritten shows).
fn cast_as(gpu: &wgrad::Gpu, x: &[f32], layout: Layout, scaled: bool) -> (Vec<f32>, Option<i32>) {
    let inp = gpu.upload("x", x).unwrap();
    let out = gpu.upload("x16", &vec![f32::from_bits(0x3c00_3c00); layout.words() as usize]).unwrap();
    let [parts, top] = cast_f16::scaling_words(gpu, x.len()).map(|w| gpu.zeros("scaling", w).unwrap());
    cast_f16::gpu(gpu, "cast", &inp, layout, &out, scaled.then_some([&parts, &top])).unwrap().run(gpu, "cast").unwrap();
    let halves: Vec<f32> = gpu.read(&out).unwrap().iter().flat_map(|w| halves(w.to_bits())).collect();
    let n = layout.copy_elements();
    (halves[..n].to_vec(), scaled.then(|| halves[n] as i32))
}

fn cast(gpu: &wgrad::Gpu, x: &[f32], scaled: bool) -> (Vec<f32>, Option<i32>) {
    cast_as(gpu, x, Layout::Flat(x.len()), scaled)
}

#[test]
fn unscaled_cast_rounds_to_nearest_even() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    let mut r = rng(40);
    // Odd length (the last word half used), values across f16's normal range, and exact ties.
    let mut x = uniform(&mut r, 3_001, -100.0, 100.0);
    x.extend([1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 0.0, -0.0, 65_504.0]);
    let (got, e) = cast(&gpu, &x, false);
    assert_eq!(e, None);
    assert_close("unscaled cast", &got, &f16_rounded(&x), 0.0, 0.0);
}

#[test]
fn scaled_cast_keeps_small_gradients_and_overflows_nothing() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    let mut r = rng(41);
    // Per-element gradients of a mean over a large batch: ~1e-7, subnormal or zero in plain f16;
    // then values past f16's largest finite; more than one workgroup of parts; more elements than
    // the first max pass has invocations (it strides over the grid).
    let strided = cast_f16::max_parts(&gpu) as usize * 256 + 1_001;
    for (lo, hi, n) in [(-3e-7f32, 3e-7f32, 70_001usize), (-2e6, 2e6, 1_000), (-1.0, 1.0, 5), (-1.0, 1.0, strided)] {
        let mut x = uniform(&mut r, n, lo, hi);
        // The largest magnitude in the last element: only the last workgroup of the first max
        // pass sees it.
        x[n - 1] = 40.0 * hi;
        let (got, e) = cast(&gpu, &x, true);
        let e = e.unwrap();
        let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let top = m as f64 * 2f64.powi(e);
        assert!(
            (16_384.0..32_768.0).contains(&top),
            "[{lo}, {hi}]: max {m} scaled by 2^{e} = {top}, not in [2^14, 2^15)"
        );
        assert!(got.iter().all(|v| v.is_finite()), "[{lo}, {hi}]: a scaled value overflowed f16");
        let unscaled: Vec<f32> = got.iter().map(|&v| (v as f64 / 2f64.powi(e)) as f32).collect();
        assert_close(&format!("[{lo}, {hi}] scaled cast"), &unscaled, &f16_scaled(&x), 0.0, 0.0);
        // f16's precision (2^-11 relative) for everything above a thousandth of the largest.
        assert_close(&format!("[{lo}, {hi}] against f32"), &unscaled, &x, 2f64.powi(-11), 1e-3 * m as f64);
    }
    // All zeros: exponent 0, zeros out.
    let (got, e) = cast(&gpu, &[0.0; 9], true);
    assert_eq!((got, e), (vec![0.0; 9], Some(0)));
}

/// The channels-last cast the cooperative-matrix products read: a (B, C, I) tensor as (B, I, C')
/// f16, C' = C padded to whole runs of 4 with zeros (written, not left as they were), scaled as
/// the flat cast is.
#[test]
fn channels_last_cast_transposes_and_pads_with_zeros() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    let mut r = rng(42);
    // Fewer channels than a run, whole runs, one past a run, one pixel; and more runs than the
    // cast has invocations (it strides over the grid).
    for [b, c, i] in [[2, 3, 5], [3, 16, 7], [2, 17, 1], [1, 9, 600_000]] {
        let x = uniform(&mut r, b * c * i, -100.0, 100.0);
        let cp = cast_f16::padded_channels(c);
        let channels_last = |v: &[f32]| -> Vec<f32> {
            (0..b * i * cp)
                .map(|at| {
                    let (bb, ii, cc) = (at / (i * cp), at / cp % i, at % cp);
                    if cc < c {
                        v[(bb * c + cc) * i + ii]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let name = format!("({b}, {c}, {i}) channels last");
        let (got, e) = cast_as(&gpu, &x, Layout::ChannelsLast([b, c, i]), false);
        assert_eq!(e, None);
        assert_close(&name, &got, &channels_last(&f16_rounded(&x)), 0.0, 0.0);
        let (got, e) = cast_as(&gpu, &x, Layout::ChannelsLast([b, c, i]), true);
        let unscaled: Vec<f32> = got.iter().map(|&v| (v as f64 / 2f64.powi(e.unwrap())) as f32).collect();
        assert_close(&format!("{name}, scaled"), &unscaled, &channels_last(&f16_scaled(&x)), 0.0, 0.0);
    }
}

/// The padded cast lays an (A, C, Y, X) view of a tensor out as rows of halves, channels last,
/// with zeros wherever it falls outside the view: around an input (its padding), past a weight's
/// kernel row and its channels, and in the slack after the rows; it writes every half it owns,
/// reads a flipped, transposed view of a weight (negative strides) and an f16 copy, and scales
/// where asked.
#[test]
fn padded_cast_lays_out_channels_last_with_zeros_around() {
    let Some(gpu) = mixed_precision_gpu(false) else { return };
    let mut r = rng(43);
    let padded =
        |shape: [usize; 4], rows: [usize; 2], channels: usize, row: usize, offset: [usize; 2], slack: usize| {
            cast_f16::Padded::of(shape, rows, channels, row, offset, rows[0] * rows[1] * row + slack)
        };
    // The weight (5, 16, 3, 3) as w'(ic, oc, kh, kw) = w(oc, ic, 2 - kh, 2 - kw).
    let flipped =
        cast_f16::Padded { strides: [9, 144, -3, -1], origin: 8, ..padded([16, 5, 3, 3], [32, 3], 8, 24, [0, 0], 0) };
    // An input (2, 3, 4, 5) with padding (1, 2), 8 channels a pixel, slack; a weight (5, 16, 3, 3)
    // as (32, 3, 64) rows; and more halves than the cast has invocations (it strides over the grid).
    for l in [
        padded([2, 3, 4, 5], [2, 6], 8, 9 * 8, [1, 2], 40),
        padded([5, 16, 3, 3], [32, 3], 16, 64, [0, 0], 0),
        flipped,
        padded([1, 8, 512, 1100], [1, 514], 8, 1102 * 8, [1, 1], 0),
    ] {
        let n: usize = l.shape.iter().product();
        let v = uniform(&mut r, n, -100.0, 100.0);
        let want = |v: &[f32]| -> Vec<f32> {
            let [a, c, y, x] = l.shape;
            (0..l.len)
                .map(|at| {
                    let (rowi, rr) = (at / l.row, at % l.row);
                    let (aa, yy, xx, cc) = (rowi / l.rows[1], rowi % l.rows[1], rr / l.channels, rr % l.channels);
                    let (yy, xx) = (yy as isize - l.offset[0] as isize, xx as isize - l.offset[1] as isize);
                    let inside = aa < a && cc < c && (0..y as isize).contains(&yy) && (0..x as isize).contains(&xx);
                    let [sa, sc, sy, sx] = l.strides;
                    let from = l.origin as isize + aa as isize * sa + cc as isize * sc + yy * sy + xx * sx;
                    if inside {
                        v[from as usize]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let (got, e) = cast_as(&gpu, &v, Layout::Padded(l), false);
        assert_eq!(e, None);
        assert_close(&format!("{l:?}"), &got, &want(&f16_rounded(&v)), 0.0, 0.0);
        let (got, e) = cast_as(&gpu, &v, Layout::Padded(l), true);
        let unscaled: Vec<f32> = got.iter().map(|&v| (v as f64 / 2f64.powi(e.unwrap())) as f32).collect();
        assert_close(&format!("{l:?}, scaled"), &unscaled, &want(&f16_scaled(&v)), 0.0, 0.0);
    }
    // From an f16 copy (the kept input's, channels last (2, 4, 5, 8): its view (2, 8, 4, 5)).
    let l =
        cast_f16::Padded { strides: [160, 1, 40, 8], from_f16: true, ..padded([2, 8, 4, 5], [2, 6], 8, 72, [1, 1], 0) };
    let v = f16_rounded(&uniform(&mut r, 320, -100.0, 100.0));
    let words: Vec<u32> = v
        .chunks(2)
        .map(|p| half::f16::from_f32(p[0]).to_bits() as u32 | (half::f16::from_f32(p[1]).to_bits() as u32) << 16)
        .collect();
    let x = gpu.upload("x", &words).unwrap();
    let out = gpu.zeros("x16", Layout::Padded(l).words()).unwrap();
    let mut prog = wgrad::kernel::Program::default();
    prog.push(cast_f16::padded(&gpu, "cast", &x, l, &out, None).unwrap());
    prog.run(&gpu, "cast").unwrap();
    let got: Vec<f32> = gpu.read(&out).unwrap().iter().flat_map(|w| halves(w.to_bits())).take(l.len).collect();
    let want: Vec<f32> = (0..l.len)
        .map(|at| {
            let (rowi, rr) = (at / l.row, at % l.row);
            let (n, y, x, c) = (rowi / 6, rowi % 6, rr / 8, rr % 8);
            let inside = (1..5).contains(&y) && (1..6).contains(&x);
            if inside {
                v[((n * 4 + y - 1) * 5 + x - 1) * 8 + c]
            } else {
                0.0
            }
        })
        .collect();
    assert_close("from an f16 copy", &got, &want, 0.0, 0.0);
    // A view reaching past the tensor is an error.
    let l = cast_f16::Padded { origin: 8, ..padded([1, 8, 2, 2], [1, 2], 8, 16, [0, 0], 0) };
    let x = gpu.upload("x", &[0f32; 32]).unwrap();
    let out = gpu.zeros("x16", Layout::Padded(l).words()).unwrap();
    let e = cast_f16::gpu(&gpu, "cast", &x, Layout::Padded(l), &out, None).err().expect("a view past the tensor");
    assert!(e.to_string().contains("cast_f16 to Padded"), "{e}");
}
