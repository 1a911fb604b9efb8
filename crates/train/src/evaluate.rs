//! Accuracy and average cross-entropy of a model on a labelled set. Logits come back to the
//! host once per batch and the loss is computed there in f64, so every backend is scored by
//! the same arithmetic.

use burn::module::Module;
use burn::tensor::Device;
use quantlab_data::LabeledSet;
use quantlab_models::Classifier;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Samples per evaluation batch.
pub const EVAL_BATCH: usize = 1000;

/// Scores of a model on a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Fraction correct, 0..1.
    pub accuracy: f64,
    /// Mean cross-entropy (natural log).
    pub loss: f64,
    /// Samples scored.
    pub samples: usize,
}

/// Accumulates accuracy and loss from host logits; shared with the quantized engines so
/// float and int8 are scored identically.
#[derive(Debug, Default, Clone)]
pub struct ScoreAccumulator {
    correct: usize,
    loss_sum: f64,
    samples: usize,
}

impl ScoreAccumulator {
    /// Adds a batch of `[n, classes]` logits with their labels.
    pub fn add(&mut self, logits: &[f32], labels: &[u8]) {
        let classes = logits.len() / labels.len().max(1);
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            self.loss_sum += lse - row[label as usize] as f64;
            let argmax = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0;
            self.correct += usize::from(argmax == label as usize);
            self.samples += 1;
        }
    }

    /// The score so far.
    pub fn score(&self) -> Score {
        let n = self.samples.max(1) as f64;
        Score {
            accuracy: self.correct as f64 / n,
            loss: self.loss_sum / n,
            samples: self.samples,
        }
    }
}

/// Logits of `model` for samples `indices` of `set`, on the host.
pub fn logits(
    model: &Classifier,
    set: &LabeledSet,
    indices: &[usize],
    device: &Device,
) -> Result<Vec<f32>> {
    let batch = set.batch(indices, device);
    model
        .forward(batch.images)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))
}

/// Scores `model` (evaluation mode) on all of `set`.
pub fn evaluate(model: &Classifier, set: &LabeledSet, device: &Device) -> Result<Score> {
    let model = model.valid();
    let mut acc = ScoreAccumulator::default();
    let all: Vec<usize> = (0..set.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let out = logits(&model, set, chunk, device)?;
        let labels: Vec<u8> = chunk.iter().map(|&i| set.labels[i]).collect();
        acc.add(&out, &labels);
    }
    Ok(acc.score())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulator_matches_hand_computed_cross_entropy() {
        let mut a = ScoreAccumulator::default();
        // Row 0: uniform over 2 classes -> loss ln 2, argmax 0 (ties go to the first).
        // Row 1: logits (0, ln 3) -> p(1) = 3/4 -> loss -ln(3/4), correct.
        a.add(&[0.0, 0.0, 0.0, 3f32.ln()], &[1, 1]);
        let s = a.score();
        assert_eq!(s.samples, 2);
        assert!((s.accuracy - 0.5).abs() < 1e-12);
        let want = (2f64.ln() - 0.75f64.ln()) / 2.0;
        assert!((s.loss - want).abs() < 1e-6, "{} vs {want}", s.loss);
    }
}
