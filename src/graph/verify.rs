//! `--verify`: every activation, activation gradient and parameter gradient of one executor's
//! last step against another's (the CPU path's).
//!
//! A tensor fails when its relative L2 error, ‖got − want‖ / ‖want‖, exceeds [`VERIFY_TOL`] for
//! activations or [`VERIFY_GRAD_TOL`] for gradients. Not the largest element's error: ReLU and
//! max-pool make a network piecewise, and where an activation lies within float rounding of a kink
//! (ReLU's 0, a max-pool tie) the two devices can take different sides, so one element of a
//! gradient differs by its whole value, and every gradient upstream of it moves. In ResNet-20 at
//! batch 8 that happens within the first steps (seen on lavapipe and an H200: one element of
//! `layer2.0.add grad out` off by 3e-5 where the tensor's largest value is 2e-3: 5e-4 in relative
//! L2), and tests/models.rs saw up to 1.3e-2 in relative L2 upstream of such an input against
//! PyTorch itself. The forward pass has no such jumps and is held to 1e-3. A wrong kernel changes
//! a whole tensor or a region of it, far beyond both; the largest element error stays in the
//! table to show where. Each step is verified from the same state (the reference takes the
//! device's parameters and optimizer state first): two float32 runs of ResNet-20 at batch 8 drift
//! 1e-3 apart in one step and 1e-1 in two, which says nothing about either's kernels.

use super::Executor;
use crate::Result;

/// Tolerance of `--verify` for activations: the largest relative L2 error.
pub const VERIFY_TOL: f64 = 1e-3;
/// Tolerance of `--verify` for gradients (activation and parameter), which ReLU's and max-pool's
/// kinks can move (see the module's header).
pub const VERIFY_GRAD_TOL: f64 = 3e-2;

/// One tensor of a [`Comparison`].
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    /// max_abs over the reference tensor's largest magnitude.
    pub scaled: f64,
    /// ‖got − want‖₂ / ‖want‖₂: what decides `bad`.
    pub rel_l2: f64,
    pub bad: bool,
}

/// Every activation, activation gradient and parameter gradient of two executors' last steps.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub got: String,
    pub want: String,
    pub rows: Vec<Row>,
    /// (which side, tensor) of the first non-finite value on each side, in execution order.
    pub non_finite: Vec<(String, String)>,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.non_finite.is_empty() && self.rows.iter().all(|r| !r.bad)
    }
    pub fn worst(&self) -> Option<&Row> {
        self.rows.iter().max_by(|a, b| a.rel_l2.total_cmp(&b.rel_l2))
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} vs {}", self.got, self.want)?;
        writeln!(
            f,
            "  {:<36} {:>12} {:>12} {:>12} {:>12}",
            "tensor", "max abs err", "max rel err", "scaled err", "rel L2 err"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<36} {:>12.3e} {:>12.3e} {:>12.3e} {:>12.3e}{}",
                r.name,
                r.max_abs,
                r.max_rel,
                r.scaled,
                r.rel_l2,
                if r.bad { "  MISMATCH" } else { "" }
            )?;
        }
        for (who, name) in &self.non_finite {
            writeln!(f, "  first non-finite value on the {who}: in {name}")?;
        }
        Ok(())
    }
}

/// Compares `got` against the reference `want` after both took the same step.
pub fn compare(got: &dyn Executor, want: &dyn Executor) -> Result<Comparison> {
    let (gt, wt) = (got.tensors()?, want.tensors()?);
    let (gg, wg) = (got.grads()?, want.grads()?);
    let mut pairs: Vec<(String, Vec<f32>, Vec<f32>)> =
        gt.into_iter().zip(wt).map(|((n, g), (_, w))| (n, g, w)).collect();
    for (i, s) in gg.specs.iter().enumerate() {
        pairs.push((format!("grad {}", s.key), gg.get(i).to_vec(), wg.get(i).to_vec()));
    }
    let mut rows = Vec::new();
    for (name, g, w) in &pairs {
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let d = crate::testing::diff(g, w, (scale * 1e-3).max(1e-12));
        let scaled = d.max_abs / scale.max(1e-12);
        let rel_l2 = rel_l2(g, w);
        let tol = if name.starts_with("grad ") || name.ends_with(" grad out") { VERIFY_GRAD_TOL } else { VERIFY_TOL };
        rows.push(Row {
            name: name.clone(),
            max_abs: d.max_abs,
            max_rel: d.max_rel,
            scaled,
            rel_l2,
            bad: d.non_finite_mismatch || rel_l2 > tol,
        });
    }
    let mut non_finite = Vec::new();
    for (who, side) in [(got.describe(), 1), (want.describe(), 2)] {
        if let Some(p) = pairs.iter().find(|p| (if side == 1 { &p.1 } else { &p.2 }).iter().any(|x| !x.is_finite())) {
            non_finite.push((who, p.0.clone()));
        }
    }
    Ok(Comparison { got: got.describe(), want: want.describe(), rows, non_finite })
}

/// ‖got − want‖₂ / ‖want‖₂ over the finite pairs (0 when both are zero; the difference's norm
/// when only `want` is).
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let (mut d2, mut w2) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        if g.is_finite() && w.is_finite() {
            d2 += (g as f64 - w as f64).powi(2);
            w2 += (w as f64).powi(2);
        }
    }
    if w2 == 0.0 {
        d2.sqrt()
    } else {
        (d2 / w2).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One element of 65,536 taking the other side of a ReLU passes; the same error spread over
    /// a region (a kernel bug) fails.
    #[test]
    fn an_isolated_kink_passes_and_a_wrong_region_fails() {
        let want: Vec<f32> = (0..65536).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2e-3).collect();
        let mut flipped = want.clone();
        flipped[1234] += 3e-5;
        flipped[4321] -= 3e-5;
        assert!(rel_l2(&flipped, &want) < VERIFY_TOL, "{}", rel_l2(&flipped, &want));
        let mut region = want.clone();
        for v in &mut region[1000..1600] {
            *v *= 0.8;
        }
        assert!(rel_l2(&region, &want) > VERIFY_TOL, "{}", rel_l2(&region, &want));
        assert!(rel_l2(&want[..8], &[0.0; 8]) > VERIFY_TOL);
        assert_eq!(rel_l2(&[0.0; 4], &[0.0; 4]), 0.0);
    }
}
