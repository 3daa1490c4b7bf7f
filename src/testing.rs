//! Comparison helpers shared by the tests, `wgrad check --verify` and the examples.

/// Worst disagreement between two tensors.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Largest |got - want|.
    pub max_abs: f64,
    /// Largest |got - want| / max(|want|, floor).
    pub max_rel: f64,
    /// Index of the element with the largest relative error, with its values.
    pub worst: usize,
    pub got: f64,
    pub want: f64,
    /// Mismatch in NaN-ness or infinities (a NaN on one side only, or differently signed infinities).
    pub non_finite_mismatch: bool,
}

/// Compares element by element; relative error uses max(|want|, `floor`) as the denominator so
/// values near zero are judged absolutely.
pub fn diff<A: Copy + Into<f64>, B: Copy + Into<f64>>(got: &[A], want: &[B], floor: f64) -> Diff {
    let mut d = Diff::default();
    let mut worst_rel = -1.0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w): (f64, f64) = (g.into(), w.into());
        if !(g.is_finite() && w.is_finite()) {
            let same = (g.is_nan() && w.is_nan()) || g == w;
            if !same {
                d.non_finite_mismatch = true;
                d.worst = i;
                d.got = g;
                d.want = w;
                worst_rel = f64::INFINITY;
            }
            continue;
        }
        let abs = (g - w).abs();
        let rel = abs / w.abs().max(floor);
        d.max_abs = d.max_abs.max(abs);
        d.max_rel = d.max_rel.max(rel);
        if rel > worst_rel {
            worst_rel = rel;
            d.worst = i;
            d.got = g;
            d.want = w;
        }
    }
    d
}

/// Panics with the tensor's name, the worst index, got and want when `got` and `want` differ by
/// more than `rtol` relative to max(|want|, `atol / rtol`), or have different lengths.
#[track_caller]
pub fn assert_close<A: Copy + Into<f64>, B: Copy + Into<f64>>(name: &str, got: &[A], want: &[B], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: got {} elements, want {}", got.len(), want.len());
    let floor = if rtol > 0.0 { atol / rtol } else { 1.0 };
    let d = diff(got, want, floor);
    if std::env::var_os("WGRAD_PRINT_ERRORS").is_some() {
        // For reports: the error each comparison saw, relative to each element (values below a
        // thousandth of the tensor's largest are judged against that) and to the tensor's scale.
        let scale = want.iter().fold(0f64, |m, &w| m.max(w.into().abs()));
        let r = diff(got, want, (1e-3 * scale).max(1e-30));
        eprintln!(
            "assert_close | {name} | max_abs {:.3e} | max_rel {:.3e} | scaled {:.3e}",
            r.max_abs,
            r.max_rel,
            r.max_abs / scale.max(1e-30)
        );
    }
    if d.non_finite_mismatch || d.max_rel > rtol {
        panic!(
            "{name}: mismatch at index {} of {}: got {:.9e}, want {:.9e} (abs err {:.3e}, rel err {:.3e}; rtol {rtol:.1e}, atol {atol:.1e})",
            d.worst,
            got.len(),
            d.got,
            d.want,
            (d.got - d.want).abs(),
            d.max_rel,
        );
    }
}
