//! In-memory labelled data: a flat `f32` feature matrix with a per-sample shape, and the
//! train/test pair a dataset loads into. Kept as plain vectors so that every consumer
//! (burn batching, the quantizer's calibration, the benchmark) can read it without burn.

use serde::{Deserialize, Serialize};

/// Samples with labels, row-major: sample `i` is `features[i*d..(i+1)*d]` with
/// `d = sample_shape.iter().product()`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSet {
    /// Flat features, already normalised when this set comes from [`crate::load`].
    pub features: Vec<f32>,
    /// One label per sample, each `< num_classes`.
    pub labels: Vec<u8>,
    /// Shape of one sample: `[channels, height, width]` for images, `[features]` for tables.
    pub sample_shape: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
}

impl LabeledSet {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per sample.
    pub fn dim(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// The features of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.features[i * d..(i + 1) * d]
    }

    /// Samples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// A new set holding the samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> LabeledSet {
        let d = self.dim();
        let mut features = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.sample(i));
            labels.push(self.labels[i]);
        }
        LabeledSet {
            features,
            labels,
            sample_shape: self.sample_shape.clone(),
            num_classes: self.num_classes,
        }
    }

    /// The first `n` samples (all of them when `n >= len`).
    pub fn take(&self, n: usize) -> LabeledSet {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&idx)
    }
}

/// Normalisation statistics, computed on the training split only and applied to both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// One mean for all features (images) or one per feature (tables).
    pub mean: Vec<f32>,
    /// Matching standard deviations (never zero: constant features get 1).
    pub std: Vec<f32>,
}

impl Normalization {
    /// One mean/std over every feature of every sample (images: the usual MNIST statistic).
    pub fn global(set: &LabeledSet) -> Self {
        let n = set.features.len().max(1) as f64;
        let mean = set.features.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = set
            .features
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Self {
            mean: vec![mean as f32],
            std: vec![nonzero(var.sqrt()) as f32],
        }
    }

    /// Mean/std per feature column (tabular data, as scikit-learn's `StandardScaler`).
    pub fn per_feature(set: &LabeledSet) -> Self {
        let d = set.dim();
        let n = set.len().max(1) as f64;
        let mut mean = vec![0f64; d];
        for i in 0..set.len() {
            for (m, &x) in mean.iter_mut().zip(set.sample(i)) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; d];
        for i in 0..set.len() {
            for ((v, &x), m) in var.iter_mut().zip(set.sample(i)).zip(&mean) {
                *v += (x as f64 - m).powi(2);
            }
        }
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: var
                .iter()
                .map(|&v| nonzero((v / n).sqrt()) as f32)
                .collect(),
        }
    }

    /// Normalises `set` in place: `(x - mean) / std`.
    pub fn apply(&self, set: &mut LabeledSet) {
        let d = set.dim();
        for (j, x) in set.features.iter_mut().enumerate() {
            let k = if self.mean.len() == 1 { 0 } else { j % d };
            *x = (*x - self.mean[k]) / self.std[k];
        }
    }
}

fn nonzero(s: f64) -> f64 {
    if s > 1e-12 { s } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> LabeledSet {
        LabeledSet {
            features: vec![1.0, 10.0, 3.0, 10.0, 5.0, 10.0],
            labels: vec![0, 1, 0],
            sample_shape: vec![2],
            num_classes: 2,
        }
    }

    #[test]
    fn per_feature_standardises_columns_and_guards_constant_ones() {
        let mut s = table();
        let n = Normalization::per_feature(&s);
        assert_eq!(n.mean, vec![3.0, 10.0]);
        assert_eq!(n.std[1], 1.0);
        n.apply(&mut s);
        let col0: Vec<f32> = (0..3).map(|i| s.sample(i)[0]).collect();
        assert!((col0.iter().sum::<f32>()).abs() < 1e-6);
        assert_eq!(s.sample(2)[1], 0.0);
    }

    #[test]
    fn select_and_counts() {
        let s = table();
        let t = s.select(&[2, 0]);
        assert_eq!(t.features, vec![5.0, 10.0, 1.0, 10.0]);
        assert_eq!(t.class_counts(), vec![2, 0]);
        assert_eq!(s.take(10).len(), 3);
    }
}
