//! Activation observers: how a calibration run turns the values seen at a quantization
//! point into the range `[lo, hi]` the quantizer covers.
//!
//! Every point keeps one [`Stats`]: global min/max and per-batch min/max (pass 1), and,
//! for the histogram observers, a signed and an absolute-value histogram over the range
//! pass 1 found (pass 2). Each observer is then a pure function of the stats, in its own file.

mod entropy;
mod histogram;
mod minmax;
mod moving_average;
mod mse;
mod percentile;

use serde::{Deserialize, Serialize};

use crate::qparams::{ActDtype, QParams};

pub use histogram::{BINS, Histogram};
pub use minmax::batch_range;

/// Percentile kept by the percentile observer.
pub const PERCENTILE: f64 = 99.99;
/// Averaging constant of the moving-average observer (PyTorch's default).
pub const AVERAGING_CONSTANT: f32 = 0.01;

/// The observers quantlab offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ObserverKind {
    /// Global min and max (PyTorch `MinMaxObserver`).
    Minmax,
    /// Exponential moving average of per-batch min and max (`MovingAverageMinMaxObserver`).
    MovingAverage,
    /// The 0.01 and 99.99 percentiles of a histogram.
    Percentile,
    /// Threshold minimising KL divergence between float and quantized histograms (TensorRT).
    Entropy,
    /// Clipping range minimising the expected squared quantization error.
    Mse,
}

impl ObserverKind {
    /// Every observer.
    pub const ALL: [ObserverKind; 5] = [
        ObserverKind::Minmax,
        ObserverKind::MovingAverage,
        ObserverKind::Percentile,
        ObserverKind::Entropy,
        ObserverKind::Mse,
    ];

    /// Name used in method names and results.
    pub fn as_str(self) -> &'static str {
        match self {
            ObserverKind::Minmax => "minmax",
            ObserverKind::MovingAverage => "moving-average",
            ObserverKind::Percentile => "percentile",
            ObserverKind::Entropy => "entropy",
            ObserverKind::Mse => "mse",
        }
    }

    /// Whether calibration must make the second (histogram) pass.
    pub fn needs_histogram(self) -> bool {
        matches!(
            self,
            ObserverKind::Percentile | ObserverKind::Entropy | ObserverKind::Mse
        )
    }
}

/// What calibration records at one quantization point.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
    /// Moving-average min.
    pub ema_min: f32,
    /// Moving-average max.
    pub ema_max: f32,
    batches: usize,
    /// Signed histogram over `[min, max]` (pass 2).
    pub hist: Option<Histogram>,
    /// Histogram of `|x|` over `[0, max(|min|, |max|)]` (pass 2).
    pub abs_hist: Option<Histogram>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ema_min: 0.0,
            ema_max: 0.0,
            batches: 0,
            hist: None,
            abs_hist: None,
        }
    }
}

impl Stats {
    /// Pass 1: one calibration batch.
    pub fn observe_range(&mut self, x: &[f32]) {
        let (lo, hi) = minmax::batch_range(x);
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        moving_average::update(self, lo, hi);
    }

    /// Pass 2: prepares the histograms over the range pass 1 found.
    pub fn start_histograms(&mut self) {
        let amax = self.min.abs().max(self.max.abs());
        self.hist = Some(Histogram::new(self.min, self.max));
        self.abs_hist = Some(Histogram::new(0.0, amax));
    }

    /// Pass 2: one calibration batch.
    ///
    /// Exact zeros stay out of the `|x|` histogram: every range contains 0 and the zero
    /// point represents it exactly, so they are never a quantization error. Left in, the
    /// post-ReLU spike at 0 (half of a layer's values or more) dominates the KL divergence:
    /// any threshold that merges bin 0 with its neighbours is charged `p0 * ln(merge)`, so
    /// the entropy search picked the smallest threshold it could and clipped every layer
    /// (2.5-4 dB SQNR on the MNIST CNN, against 40-45 dB for MinMax).
    pub fn observe_histogram(&mut self, x: &[f32]) {
        if let (Some(h), Some(a)) = (&mut self.hist, &mut self.abs_hist) {
            h.add(x.iter().copied());
            a.add(x.iter().filter(|v| **v != 0.0).map(|v| v.abs()));
        }
    }

    /// True once at least one value was observed.
    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// The range `kind` chooses for `dtype` at 8 bits (always containing 0).
    pub fn range(&self, kind: ObserverKind, dtype: ActDtype) -> (f32, f32) {
        self.range_bits(kind, dtype, 8)
    }

    /// The range `kind` chooses for `dtype` at `bits`: MinMax, moving average and
    /// percentile do not depend on the width; entropy and MSE search for the clipping that
    /// suits the levels there are (fewer levels, more clipping).
    pub fn range_bits(&self, kind: ObserverKind, dtype: ActDtype, bits: u8) -> (f32, f32) {
        if self.is_empty() {
            return (0.0, 0.0);
        }
        let hist_or_minmax =
            |f: &dyn Fn() -> Option<(f32, f32)>| f().unwrap_or((self.min, self.max));
        match kind {
            ObserverKind::Minmax => (self.min, self.max),
            ObserverKind::MovingAverage => (self.ema_min, self.ema_max),
            ObserverKind::Percentile => {
                hist_or_minmax(&|| percentile::range(self.hist.as_ref()?, PERCENTILE))
            }
            ObserverKind::Entropy => hist_or_minmax(&|| entropy::range(self, dtype, bits)),
            ObserverKind::Mse => hist_or_minmax(&|| mse::range(self.hist.as_ref()?, dtype, bits)),
        }
    }

    /// Quantization parameters for `kind` and `dtype` at 8 bits.
    pub fn qparams(&self, kind: ObserverKind, dtype: ActDtype) -> QParams {
        self.qparams_bits(kind, dtype, 8)
    }

    /// Quantization parameters for `kind` and `dtype` at `bits`.
    pub fn qparams_bits(&self, kind: ObserverKind, dtype: ActDtype, bits: u8) -> QParams {
        let (lo, hi) = self.range_bits(kind, dtype, bits);
        QParams::from_range_bits(lo, hi, dtype, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantlab_data::rng::Rng;

    /// Post-ReLU-like data: mostly small, a few large outliers.
    pub(crate) fn heavy_tailed(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n)
            .map(|i| {
                let v = r.normal().abs() as f32;
                if i % 20_000 == 0 { v * 40.0 } else { v }
            })
            .collect()
    }

    pub(crate) fn stats_of(x: &[f32], batch: usize) -> Stats {
        let mut s = Stats::default();
        for c in x.chunks(batch) {
            s.observe_range(c);
        }
        s.start_histograms();
        for c in x.chunks(batch) {
            s.observe_histogram(c);
        }
        s
    }

    fn mse_of(x: &[f32], q: &QParams) -> f64 {
        x.iter()
            .map(|&v| (v - q.dequantize(q.quantize(v))) as f64)
            .map(|e| e * e)
            .sum::<f64>()
            / x.len() as f64
    }

    #[test]
    fn clipping_observers_trade_rare_outliers_for_resolution() {
        let x = heavy_tailed(200_000, 3);
        let bulk: Vec<f32> = x.iter().copied().filter(|&v| v < 5.0).collect();
        let s = stats_of(&x, 1000);
        let dt = ActDtype::U8Affine;
        let minmax = s.qparams(ObserverKind::Minmax, dt);
        for k in [ObserverKind::Percentile, ObserverKind::Entropy] {
            let (lo, hi) = s.range(k, dt);
            assert!(
                hi < s.max && hi > 0.5 && lo < 0.01,
                "{k:?}: ({lo}, {hi}) vs max {}",
                s.max
            );
            let (e, base) = (mse_of(&bulk, &s.qparams(k, dt)), mse_of(&bulk, &minmax));
            assert!(e < base, "{k:?}: bulk mse {e} not below minmax {base}");
        }
        // MSE minimises the total error over the histogram: never worse than no clipping.
        let (e, base) = (
            mse_of(&x, &s.qparams(ObserverKind::Mse, dt)),
            mse_of(&x, &minmax),
        );
        assert!(e <= base * 1.01, "mse observer {e} vs minmax {base}");
    }

    #[test]
    fn mse_observer_clips_a_long_tail() {
        // Laplace-like data (difference of exponentials): the optimum clips the far tail.
        let mut r = Rng::new(4);
        let x: Vec<f32> = (0..200_000)
            .map(|_| (-(1.0 - r.uniform()).ln() + (1.0 - r.uniform()).ln()) as f32)
            .collect();
        let s = stats_of(&x, 1000);
        let dt = ActDtype::I8Symmetric;
        let (lo, hi) = s.range(ObserverKind::Mse, dt);
        assert!(
            hi < s.max && lo > s.min,
            "({lo}, {hi}) vs ({}, {})",
            s.min,
            s.max
        );
        let (e, base) = (
            mse_of(&x, &s.qparams(ObserverKind::Mse, dt)),
            mse_of(&x, &s.qparams(ObserverKind::Minmax, dt)),
        );
        assert!(e < base, "mse observer {e} not below minmax {base}");
    }

    /// Signal-to-quantization-noise ratio (dB) of `x` under `q`.
    fn sqnr_of(x: &[f32], q: &QParams) -> f64 {
        let signal: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        10.0 * (signal / mse_of(x, q)).log10()
    }

    #[test]
    fn entropy_is_not_fooled_by_the_relu_spike_at_zero() {
        // A post-ReLU layer: 60% exact zeros, the rest half-normal (what MNIST's conv and
        // hidden layers look like). The zero spike once made the KL search clip at its
        // smallest candidate: SQNR 2.5-4 dB where MinMax gives 40 dB.
        let mut r = Rng::new(7);
        let x: Vec<f32> = (0..200_000)
            .map(|i| {
                if i % 5 < 3 {
                    0.0
                } else {
                    r.normal().abs() as f32
                }
            })
            .collect();
        let s = stats_of(&x, 1000);
        for dt in [ActDtype::U8Affine, ActDtype::I8Symmetric] {
            let minmax = sqnr_of(&x, &s.qparams(ObserverKind::Minmax, dt));
            let entropy = sqnr_of(&x, &s.qparams(ObserverKind::Entropy, dt));
            let (_, hi) = s.range(ObserverKind::Entropy, dt);
            assert!(hi > 0.5 * s.max, "{dt:?}: threshold {hi} of max {}", s.max);
            assert!(
                entropy > minmax - 3.0,
                "{dt:?}: entropy {entropy:.1} dB vs minmax {minmax:.1} dB"
            );
        }
    }

    #[test]
    fn minmax_and_moving_average_on_known_batches() {
        let mut s = Stats::default();
        s.observe_range(&[0.0, 1.0]);
        s.observe_range(&[-1.0, 3.0]);
        assert_eq!(
            s.range(ObserverKind::Minmax, ActDtype::U8Affine),
            (-1.0, 3.0)
        );
        let (lo, hi) = s.range(ObserverKind::MovingAverage, ActDtype::U8Affine);
        assert!(
            (lo - (-0.01)).abs() < 1e-6 && (hi - 1.02).abs() < 1e-6,
            "{lo} {hi}"
        );
    }

    #[test]
    fn empty_and_constant_inputs_are_safe() {
        let s = Stats::default();
        for k in ObserverKind::ALL {
            assert!(s.qparams(k, ActDtype::U8Affine).is_valid());
        }
        let s = stats_of(&[0.0; 100], 10);
        for k in ObserverKind::ALL {
            for dt in [ActDtype::U8Affine, ActDtype::I8Symmetric] {
                assert!(s.qparams(k, dt).is_valid(), "{k:?} {dt:?}");
            }
        }
    }
}
