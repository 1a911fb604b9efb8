//! Accuracy and average cross-entropy of a model on a labelled set. Logits come back to the
//! host once per batch and the loss is computed there in f64, so every backend is scored by
//! the same arithmetic.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use quantlab_data::LabeledSet;
pub use quantlab_data::score::{Score, ScoreAccumulator};
use quantlab_models::Classifier;

use crate::error::{Result, TrainError};

/// Samples per evaluation batch.
pub const EVAL_BATCH: usize = 1000;

/// Logits of `model` for samples `indices` of `set`, on the host.
pub fn logits(
    model: &Classifier,
    set: &LabeledSet,
    indices: &[usize],
    device: &Device,
) -> Result<Vec<f32>> {
    let batch = set.batch(indices, device);
    host_logits(model.forward(batch.images))
}

/// Scores `model` (evaluation mode) on all of `set`.
pub fn evaluate(model: &Classifier, set: &LabeledSet, device: &Device) -> Result<Score> {
    let model = model.valid();
    evaluate_with(set, device, |x| model.forward(x))
}

/// Scores any forward pass (`[batch, features]` -> logits) on all of `set`, batch by batch.
pub fn evaluate_with(
    set: &LabeledSet,
    device: &Device,
    forward: impl Fn(Tensor<2>) -> Tensor<2>,
) -> Result<Score> {
    let mut acc = ScoreAccumulator::default();
    let all: Vec<usize> = (0..set.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let out = host_logits(forward(set.batch(chunk, device).images))?;
        let labels: Vec<u8> = chunk.iter().map(|&i| set.labels[i]).collect();
        acc.add(&out, &labels);
    }
    Ok(acc.score())
}

/// Logits on the host.
pub fn host_logits(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))
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
