//! Evaluation: accuracy and mean CrossEntropyLoss of parameters over a dataset split.

use crate::data::loader::{Config, DataLoader};
use crate::data::Dataset;
use crate::graph::{self, Executor};
use crate::nn::{Model, ParamSet};
use crate::ops::cross_entropy;
use crate::{Device, Result};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub images: usize,
    /// Fraction of images whose largest logit is their label.
    pub accuracy: f64,
    /// Mean CrossEntropyLoss.
    pub loss: f64,
    /// Each label's images and how many of them were classified right (as the accuracy per class
    /// of PyTorch's "Training a Classifier" tutorial).
    pub per_class: Vec<ClassScore>,
    /// `confusion[label][predicted]`: how many images of each label went to each class (as
    /// sklearn's `confusion_matrix(y_true, y_pred)` counts them); its diagonal is `per_class`'s
    /// `correct`.
    pub confusion: Vec<Vec<usize>>,
}

/// One label's part of a [`Score`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassScore {
    pub images: usize,
    pub correct: usize,
}

impl ClassScore {
    /// Fraction of the label's images classified right (0 for a label with none).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }
}

/// Index of the largest value (the first, on ties).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

/// The `k` most probable classes of each row of `logits` (N, classes), with their softmax
/// probabilities, most probable first: what `wgrad predict` and the browser page show.
pub fn top_classes(logits: &[f32], classes: usize, k: usize) -> Vec<Vec<(usize, f32)>> {
    let logp = crate::ops::log_softmax::forward_cpu(logits, (logits.len() / classes.max(1), classes, 1));
    logp.chunks(classes.max(1))
        .map(|row| {
            let mut ranked: Vec<(usize, f32)> = row.iter().map(|lp| lp.exp()).enumerate().collect();
            ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
            ranked.truncate(k);
            ranked
        })
        .collect()
}

/// Adds a batch's logits to running totals: (correct, summed loss).
pub fn score_logits(logits: &[f32], targets: &[i64], classes: usize) -> (usize, f64) {
    let n = targets.len();
    let correct = logits.chunks(classes).zip(targets).filter(|(row, &t)| argmax(row) as i64 == t).count();
    let o = cross_entropy::Options { reduction: crate::Reduction::Sum, ..Default::default() };
    let (loss, _) = cross_entropy::forward_cpu(logits, cross_entropy::Targets::Class(targets), &o, (n, classes, 1));
    (correct, loss[0] as f64)
}

/// Evaluates parameters over datasets, keeping its executors (one per batch size met) from call to
/// call, so a training run builds them once rather than every epoch.
pub struct Evaluator {
    device: Device,
    model: Model,
    batch: usize,
    executors: Vec<Box<dyn Executor>>,
}

impl Evaluator {
    pub fn new(device: &Device, model: &Model, batch: usize) -> Self {
        Evaluator { device: device.clone(), model: model.clone(), batch, executors: Vec::new() }
    }

    /// Forward passes over every image of `ds` in batches (the last one smaller).
    pub fn score(&mut self, params: &ParamSet, ds: &Arc<Dataset>) -> Result<Score> {
        self.score_with(params, ds, &mut |_, _| {})
    }

    /// [`Evaluator::score`], calling `progress(batches done, batches)` after each batch.
    pub fn score_with(
        &mut self,
        params: &ParamSet,
        ds: &Arc<Dataset>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Score> {
        let dl = DataLoader::new(ds.clone(), Config::new(self.batch))?;
        let total = dl.len() as u64;
        for e in &mut self.executors {
            e.set_params(params)?;
        }
        let (mut correct, mut loss) = (0usize, 0f64);
        let mut per_class: Vec<ClassScore> = Vec::new();
        let mut confusion: Vec<Vec<usize>> = Vec::new();
        for b in dl.epoch(0, 0) {
            let i = match self.executors.iter().position(|e| e.plan().batch == b.len()) {
                Some(i) => i,
                None => {
                    let mut e = graph::executor(&self.device, &self.model, b.len(), graph::Options::inference())?;
                    e.set_params(params)?;
                    self.executors.push(e);
                    self.executors.len() - 1
                }
            };
            let ex = &mut self.executors[i];
            ex.upload_pixels(&b.pixels, &b.to_tensor, None)?;
            let logits = ex.forward_resident()?;
            let classes = ex.plan().classes;
            let (c, l) = score_logits(&logits, &b.targets, classes);
            correct += c;
            loss += l;
            per_class.resize(classes, ClassScore::default());
            confusion.resize(classes, vec![0; classes]);
            for (row, &t) in logits.chunks(classes).zip(&b.targets) {
                let predicted = argmax(row);
                if let Some(t) = usize::try_from(t).ok().filter(|&t| t < classes) {
                    per_class[t].images += 1;
                    per_class[t].correct += usize::from(predicted == t);
                    confusion[t][predicted] += 1;
                }
            }
            progress(b.index as u64 + 1, total);
        }
        let n = ds.len().max(1);
        let (accuracy, loss) = (correct as f64 / n as f64, loss / n as f64);
        Ok(Score { images: ds.len(), accuracy, loss, per_class, confusion })
    }
}

/// Forward passes over every image of `ds` in batches of `batch` (the last one smaller).
pub fn evaluate(device: &Device, model: &Model, params: &ParamSet, ds: &Arc<Dataset>, batch: usize) -> Result<Score> {
    Evaluator::new(device, model, batch).score(params, ds)
}

#[cfg(test)]
mod tests {
    #[test]
    fn top_classes_ranks_each_row_by_softmax_probability() {
        // Row 0: softmax of [0, ln 2, ln 4, ln 1] = [1, 2, 4, 1] / 8; row 1 ties keep index order.
        let logits = [0.0, 2f32.ln(), 4f32.ln(), 0.0, 1.0, 1.0, 0.0, 0.0];
        let top = super::top_classes(&logits, 4, 3);
        let want = [vec![(2, 0.5), (1, 0.25), (0, 0.125)], vec![(0, 0.365_529), (1, 0.365_529), (2, 0.134_471)]];
        assert_eq!(top.len(), 2);
        for (got, want) in top.iter().zip(&want) {
            assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want.iter().map(|w| w.0).collect::<Vec<_>>());
            for (g, w) in got.iter().zip(want) {
                assert!((g.1 - w.1).abs() < 1e-5, "{got:?}");
            }
        }
    }
}
