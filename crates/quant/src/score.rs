//! Scoring a model run by the engine with the same arithmetic as burn models are scored
//! (`quantlab_train::ScoreAccumulator`), so accuracy drops are comparable to the last digit.

use quantlab_data::LabeledSet;
use quantlab_train::{Score, ScoreAccumulator};

use crate::engine::Engine;
use crate::error::Result;
use crate::model::QuantModel;

/// Samples per scoring batch.
pub const SCORE_BATCH: usize = 256;

/// Accuracy and loss of `model` on `set`.
pub fn score(engine: &Engine, model: &QuantModel, set: &LabeledSet) -> Result<Score> {
    score_with(set, |x, n| engine.run(model, x, n))
}

/// Accuracy and loss of any runner of `(inputs, batch) -> logits` (the GPU's, for one).
pub fn score_with(
    set: &LabeledSet,
    mut logits_of: impl FnMut(&[f32], usize) -> Result<Vec<f32>>,
) -> Result<Score> {
    let d = set.dim();
    let mut acc = ScoreAccumulator::default();
    for start in (0..set.len()).step_by(SCORE_BATCH) {
        let n = SCORE_BATCH.min(set.len() - start);
        let logits = logits_of(&set.features[start * d..(start + n) * d], n)?;
        acc.add(&logits, &set.labels[start..start + n]);
    }
    Ok(acc.score())
}
