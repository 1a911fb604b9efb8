//! Deterministic, stratified splits: the train/test split of the sets that ship without one
//! (digits, synthetic) and the validation split every dataset carves from its training data.
//! Each class is shuffled with the seed and cut at the same fraction, so class proportions
//! match between the two sides.

use crate::error::{DataError, Result};
use crate::rng::Rng;
use crate::set::LabeledSet;

/// Splits `set` into `(kept, held_out)` with `fraction` of every class held out. `param`
/// names the setting the fraction came from, for the error.
pub fn stratified_split(
    set: &LabeledSet,
    fraction: f64,
    seed: u64,
    param: &'static str,
) -> Result<(LabeledSet, LabeledSet)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::Invalid {
            param,
            problem: format!("{fraction} (need a value strictly between 0 and 1)"),
        });
    }
    let mut rng = Rng::new(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in 0..set.num_classes {
        let mut idx: Vec<usize> = (0..set.len())
            .filter(|&i| set.labels[i] as usize == class)
            .collect();
        rng.shuffle(&mut idx);
        let n_test = (idx.len() as f64 * fraction).round() as usize;
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    // Interleave classes again so that batches are mixed.
    rng.shuffle(&mut train);
    rng.shuffle(&mut test);
    Ok((set.select(&train), set.select(&test)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> LabeledSet {
        LabeledSet {
            features: (0..n).map(|i| i as f32).collect(),
            labels: (0..n).map(|i| (i % 4) as u8).collect(),
            sample_shape: vec![1],
            num_classes: 4,
        }
    }

    #[test]
    fn split_is_80_20_disjoint_stratified_and_deterministic() {
        let s = set(1000);
        let (tr, te) = stratified_split(&s, 0.2, 9, "f").unwrap();
        assert_eq!((tr.len(), te.len()), (800, 200));
        assert_eq!(te.class_counts(), vec![50; 4]);
        let mut all: Vec<f32> = tr.features.iter().chain(&te.features).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, s.features);
        let (tr2, _) = stratified_split(&s, 0.2, 9, "f").unwrap();
        assert_eq!(tr.features, tr2.features);
        let (tr3, _) = stratified_split(&s, 0.2, 10, "f").unwrap();
        assert_ne!(tr.features, tr3.features);
    }

    #[test]
    fn bad_fraction_is_an_error() {
        let e = stratified_split(&set(10), 1.0, 0, "val_fraction").unwrap_err();
        assert!(e.to_string().contains("val_fraction"), "{e}");
        assert!(stratified_split(&set(10), f64::NAN, 0, "f").is_err());
    }
}
