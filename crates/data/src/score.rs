//! Accuracy and mean cross-entropy of logits against a set's labels. The loss is computed on
//! the host in f64, so a float model on any backend and every quantized engine are scored
//! by the same arithmetic and their differences mean something to the last digit.

use serde::{Deserialize, Serialize};

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

/// Accumulates accuracy and loss from host logits; the training loop and the quantized
/// engines both score through it, so float and int8 are scored identically.
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
