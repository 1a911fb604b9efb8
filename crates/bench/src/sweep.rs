//! The calibration sweep: how much calibration data is enough, and which observer stays
//! stable with few images. No quantization tool answers this today; users guess (ONNX
//! Runtime's examples use a few hundred images, TensorRT's "500 to 1,000").
//!
//! For one trained model, every calibration size and seed draws that many training images
//! (a seeded sample without replacement; never test images), runs one calibration with
//! histograms, and builds every observer's static int8 model from those statistics (the
//! observers are pure functions of them). Each model gets its test accuracy and per-layer
//! SQNR against the float activations on a fixed slice of the test split; [`summarize`]
//! turns the seeds into a spread.

use quantlab_data::LabeledSet;
use quantlab_data::rng::Rng;
use quantlab_quant::report::{activations, layer_sqnr};
use quantlab_quant::{
    Engine, Network, ObserverKind, QuantModel, QuantizeOptions, calibrate, score,
    static_from_calibration,
};
use serde::{Deserialize, Serialize};

use crate::config::SweepSettings;
use crate::error::Result;

/// One observer calibrated on one draw of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Dataset.
    pub dataset: String,
    /// Model.
    pub model: String,
    /// Observer.
    pub observer: String,
    /// Weight granularity.
    pub granularity: String,
    /// Calibration images.
    pub size: usize,
    /// Seed that chose them.
    pub seed: u64,
    /// Test accuracy of the int8 model (0..1).
    pub accuracy: f64,
    /// Float accuracy minus int8 accuracy, in percentage points.
    pub drop_pp: f64,
    /// SQNR (dB) at each dense layer's output, in network order.
    pub layer_sqnr_db: Vec<f64>,
}

/// The seeds of one observer at one size, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSummary {
    /// Dataset.
    pub dataset: String,
    /// Model.
    pub model: String,
    /// Observer.
    pub observer: String,
    /// Calibration images.
    pub size: usize,
    /// Seeds.
    pub seeds: usize,
    /// Mean accuracy drop over the seeds (pp).
    pub drop_mean_pp: f64,
    /// Best and worst seed's drop (pp).
    pub drop_min_pp: f64,
    /// Worst seed's drop (pp).
    pub drop_max_pp: f64,
    /// Lowest per-layer SQNR, averaged over the seeds (dB): the weakest layer.
    pub worst_layer_sqnr_db: f64,
    /// Largest spread of one layer's SQNR across the seeds (max - min, dB).
    pub sqnr_spread_db: f64,
}

/// `n` distinct indices below `len`, chosen by `seed` (a partial Fisher-Yates shuffle).
pub fn draw(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let n = n.min(len);
    let mut idx: Vec<usize> = (0..len).collect();
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let j = i + rng.below(len - i);
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx
}

/// Runs the sweep for one model: every size x seed x observer of `settings`.
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    (dataset, model): (&str, &str),
    net: &Network,
    train: &LabeledSet,
    test: &LabeledSet,
    float_accuracy: f64,
    settings: &SweepSettings,
    engine: &Engine,
    mut progress: impl FnMut(&str),
) -> Result<Vec<SweepPoint>> {
    let d = net.in_len();
    let float = QuantModel::float(net.clone());
    let n_sqnr = settings.sqnr_samples.min(test.len());
    let sqnr_x = &test.features[..n_sqnr * d];
    let float_acts = activations(engine, &float, sqnr_x, n_sqnr)?;
    let mut sizes: Vec<usize> = settings.sizes.iter().map(|&s| s.min(train.len())).collect();
    sizes.dedup();
    let mut out = Vec::new();
    for &size in &sizes {
        for &seed in &settings.seeds {
            progress(&format!(
                "{dataset}/{model}: calibration sweep, {size} images, seed {seed}"
            ));
            let x = train.select(&draw(train.len(), size, seed)).features;
            let cal = calibrate(net, &x, size, true, engine)?;
            for observer in ObserverKind::ALL {
                let opts = QuantizeOptions {
                    observer,
                    granularity: settings.granularity,
                    ..QuantizeOptions::default()
                };
                let q = static_from_calibration(net, &opts, &cal);
                let accuracy = score(engine, &q, test)?.accuracy;
                out.push(SweepPoint {
                    dataset: dataset.into(),
                    model: model.into(),
                    observer: observer.as_str().into(),
                    granularity: settings.granularity.as_str().into(),
                    size,
                    seed,
                    accuracy,
                    drop_pp: (float_accuracy - accuracy) * 100.0,
                    layer_sqnr_db: layer_sqnr(engine, &float_acts, &q, sqnr_x, n_sqnr)?,
                });
            }
        }
    }
    Ok(out)
}

/// One line per (dataset, model, observer, size), in first-seen order.
pub fn summarize(points: &[SweepPoint]) -> Vec<SweepSummary> {
    let mut keys: Vec<(&str, &str, &str, usize)> = Vec::new();
    for p in points {
        let k = (
            p.dataset.as_str(),
            p.model.as_str(),
            p.observer.as_str(),
            p.size,
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(ds, m, o, size)| {
            let group: Vec<&SweepPoint> = points
                .iter()
                .filter(|p| p.dataset == ds && p.model == m && p.observer == o && p.size == size)
                .collect();
            let n = group.len() as f64;
            let drops: Vec<f64> = group.iter().map(|p| p.drop_pp).collect();
            let layers = group
                .iter()
                .map(|p| p.layer_sqnr_db.len())
                .min()
                .unwrap_or(0);
            let worst = group
                .iter()
                .map(|p| {
                    p.layer_sqnr_db
                        .iter()
                        .copied()
                        .fold(f64::INFINITY, f64::min)
                })
                .sum::<f64>()
                / n;
            let spread = (0..layers)
                .map(|l| {
                    let v = group.iter().map(|p| p.layer_sqnr_db[l]);
                    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                        (a.min(x), b.max(x))
                    });
                    hi - lo
                })
                .fold(0f64, f64::max);
            SweepSummary {
                dataset: ds.into(),
                model: m.into(),
                observer: o.into(),
                size,
                seeds: group.len(),
                drop_mean_pp: drops.iter().sum::<f64>() / n,
                drop_min_pp: drops.iter().copied().fold(f64::INFINITY, f64::min),
                drop_max_pp: drops.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                worst_layer_sqnr_db: worst,
                sqnr_spread_db: spread,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_distinct_seeded_and_capped() {
        let a = draw(100, 30, 1);
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 30);
        assert!(a.iter().all(|&i| i < 100));
        assert_eq!(a, draw(100, 30, 1));
        assert_ne!(a, draw(100, 30, 2));
        assert_eq!(draw(10, 50, 3).len(), 10);
    }

    fn point(observer: &str, seed: u64, drop_pp: f64, sqnr: [f64; 2]) -> SweepPoint {
        SweepPoint {
            dataset: "mnist".into(),
            model: "mlp".into(),
            observer: observer.into(),
            granularity: "per-channel".into(),
            size: 16,
            seed,
            accuracy: 0.9,
            drop_pp,
            layer_sqnr_db: sqnr.to_vec(),
        }
    }

    #[test]
    fn summary_spreads_over_seeds() {
        let pts = [
            point("minmax", 1, 0.1, [30.0, 20.0]),
            point("minmax", 2, 0.3, [34.0, 21.0]),
            point("entropy", 1, 1.0, [10.0, 12.0]),
        ];
        let s = summarize(&pts);
        assert_eq!(s.len(), 2);
        let m = &s[0];
        assert_eq!((m.observer.as_str(), m.seeds), ("minmax", 2));
        assert!((m.drop_mean_pp - 0.2).abs() < 1e-12);
        assert_eq!((m.drop_min_pp, m.drop_max_pp), (0.1, 0.3));
        assert!((m.worst_layer_sqnr_db - 20.5).abs() < 1e-12);
        assert!((m.sqnr_spread_db - 4.0).abs() < 1e-12);
        assert_eq!(s[1].sqnr_spread_db, 0.0);
    }
}
