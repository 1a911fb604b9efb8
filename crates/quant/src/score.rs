//! Scoring a model run by the engine with the same arithmetic as burn models are scored
//! (`quantlab_data::ScoreAccumulator`), so accuracy drops are comparable to the last digit.

use quantlab_data::LabeledSet;
use quantlab_data::{Score, ScoreAccumulator};

use crate::engine::Engine;
use crate::error::Result;
use crate::model::QuantModel;

/// Samples per scoring batch.
pub const SCORE_BATCH: usize = 256;

/// Accuracy and loss of `model` on `set` (prepared once for `engine`).
pub fn score(engine: &Engine, model: &QuantModel, set: &LabeledSet) -> Result<Score> {
    let session = engine.prepare(model)?;
    score_with(set, |x, n| session.run(x, n))
}

/// Accuracy and loss of any runner of `(inputs, batch) -> logits` (the GPU's, for one),
/// with the runner's own error type.
pub fn score_with<E>(
    set: &LabeledSet,
    mut logits_of: impl FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, E>,
) -> std::result::Result<Score, E> {
    let d = set.dim();
    let mut acc = ScoreAccumulator::default();
    for start in (0..set.len()).step_by(SCORE_BATCH) {
        let n = SCORE_BATCH.min(set.len() - start);
        let logits = logits_of(&set.features[start * d..(start + n) * d], n)?;
        acc.add(&logits, &set.labels[start..start + n]);
    }
    Ok(acc.score())
}
