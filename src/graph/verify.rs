//! `--verify`: every activation, activation gradient and parameter gradient of one executor's
//! last step against another's (the CPU path's).

use super::Executor;
use crate::Result;

/// Tolerance of `--verify`: the largest error relative to the tensor's largest magnitude.
pub const VERIFY_TOL: f64 = 1e-3;

/// One tensor of a [`Comparison`].
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    /// max_abs over the reference tensor's largest magnitude.
    pub scaled: f64,
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
        self.rows.iter().max_by(|a, b| a.scaled.total_cmp(&b.scaled))
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} vs {}", self.got, self.want)?;
        writeln!(f, "  {:<36} {:>12} {:>12} {:>12}", "tensor", "max abs err", "max rel err", "scaled err")?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<36} {:>12.3e} {:>12.3e} {:>12.3e}{}",
                r.name,
                r.max_abs,
                r.max_rel,
                r.scaled,
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
        rows.push(Row {
            name: name.clone(),
            max_abs: d.max_abs,
            max_rel: d.max_rel,
            scaled,
            bad: d.non_finite_mismatch || scaled > VERIFY_TOL,
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
