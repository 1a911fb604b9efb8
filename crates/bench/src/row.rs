//! One line of the results: what was measured for a dataset x model x method x device.
//! The field names are the `bench.json` contract the README lists (from the project's
//! design notes); renaming one breaks every reader of saved runs.

use quantlab_quant::report::LayerReport;
use serde::{Deserialize, Serialize};

/// A measured configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Dataset.
    pub dataset: String,
    /// Model.
    pub model: String,
    /// Method (`f32`, `naive`, `naive-fixed`, `burn-weights`, `dynamic`, `static-...`).
    pub method: String,
    /// Weight granularity (`per-tensor`, `per-channel`, or `-`).
    pub granularity: String,
    /// `cpu` or `gpu`.
    pub device: String,
    /// What ran it: `quantlab` (its engine), `burn-flex`, `burn-ndarray`, `burn-wgpu`.
    pub backend: String,
    /// Integer GEMM path for quantlab int8 rows (a `KernelPath` name), else `-`.
    pub kernel: String,
    /// Threads the latencies were measured with: 1, or every core (quantlab's engine splits
    /// a batch across them; burn rows use burn's own thread pool, this many threads).
    #[serde(default = "one")]
    pub threads: usize,
    /// False when the backend cannot run the method (see `note`).
    pub supported: bool,
    /// Why unsupported, or other remarks.
    pub note: String,
    /// Test accuracy (0..1).
    pub accuracy: f64,
    /// Accuracy on the validation split (8-bit static rows of quantlab's engine): what the
    /// headlines choose their int8 method by, so that the test split, which reports it,
    /// chose nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Test cross-entropy.
    pub loss: f64,
    /// Test samples scored.
    pub samples: usize,
    /// Parameters.
    pub params: usize,
    /// Bytes of the exported file.
    pub size_bytes: u64,
    /// Median latency at batch 1 (microseconds).
    pub latency_b1_us: f64,
    /// p90 latency at batch 1.
    pub latency_b1_p90_us: f64,
    /// Median latency at batch 64.
    pub latency_b64_us: f64,
    /// p90 latency at batch 64.
    pub latency_b64_p90_us: f64,
    /// Samples per second at batch 64.
    pub throughput_sps: f64,
    /// Median latency at batch 256, a server's batch (0 in runs from before it was timed).
    #[serde(default)]
    pub latency_b256_us: f64,
    /// Samples per second at batch 256.
    #[serde(default)]
    pub throughput_b256_sps: f64,
    /// Peak heap bytes during one batch-64 inference (0 if not measured).
    pub peak_mem_bytes: u64,
    /// Float accuracy minus this accuracy, percentage points (quantized rows).
    pub accuracy_drop_pp: Option<f64>,
    /// Float file size over this file size (quantized rows).
    pub size_ratio: Option<f64>,
    /// Float latency over this latency at batch 64, same engine's f32 row (quantized rows).
    pub speedup_b64: Option<f64>,
    /// Same at batch 1.
    pub speedup_b1: Option<f64>,
    /// Batch-64 speed-up against burn's flex forward pass of the float model.
    pub speedup_b64_vs_burn_flex: Option<f64>,
    /// Batch-64 speed-up against burn's ndarray forward pass.
    pub speedup_b64_vs_burn_ndarray: Option<f64>,
    /// Median latency at batch 4096, where a GPU shows its throughput (GPU rows on a real
    /// GPU; host transfers included).
    #[serde(default)]
    pub latency_b4096_us: Option<f64>,
    /// Float latency over this latency at batch 4096 (GPU int8 rows against burn-wgpu's f32).
    #[serde(default)]
    pub speedup_b4096: Option<f64>,
    /// Per-layer error and speed (static and dynamic rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerReport>,
    /// The median latency at batch 1 of each timing round (the rows of one model are timed
    /// interleaved, in rounds of a rotating order; `latency_b1_us` is their median).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_b1_rounds_us: Vec<f64>,
    /// Same at batch 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_b64_rounds_us: Vec<f64>,
    /// The reference row's batch-64 latency timed right before this row's, in each round
    /// (`rounds::time_in_rounds`): the per-round speed-up is taken against it, so a change
    /// in the machine's speed between two rows of one round cancels too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_b64_ref_rounds_us: Vec<f64>,
    /// Lowest and highest per-round `speedup_b64` (the reference's round latency over this
    /// row's, round by round): a spread that contains 1.0 is not a significant speed-up.
    #[serde(default)]
    pub speedup_b64_min: Option<f64>,
    /// See `speedup_b64_min`.
    #[serde(default)]
    pub speedup_b64_max: Option<f64>,
}

impl Row {
    /// An empty row for a configuration (measurements filled by the caller).
    pub fn new(dataset: &str, model: &str, method: &str, device: &str, backend: &str) -> Self {
        Self {
            dataset: dataset.into(),
            model: model.into(),
            method: method.into(),
            granularity: "-".into(),
            device: device.into(),
            backend: backend.into(),
            kernel: "-".into(),
            threads: 1,
            supported: true,
            note: String::new(),
            accuracy: 0.0,
            val_accuracy: None,
            loss: 0.0,
            samples: 0,
            params: 0,
            size_bytes: 0,
            latency_b1_us: 0.0,
            latency_b1_p90_us: 0.0,
            latency_b64_us: 0.0,
            latency_b64_p90_us: 0.0,
            throughput_sps: 0.0,
            latency_b256_us: 0.0,
            throughput_b256_sps: 0.0,
            peak_mem_bytes: 0,
            accuracy_drop_pp: None,
            size_ratio: None,
            speedup_b64: None,
            speedup_b1: None,
            speedup_b64_vs_burn_flex: None,
            speedup_b64_vs_burn_ndarray: None,
            latency_b4096_us: None,
            speedup_b4096: None,
            layers: Vec::new(),
            latency_b1_rounds_us: Vec::new(),
            latency_b64_rounds_us: Vec::new(),
            latency_b64_ref_rounds_us: Vec::new(),
            speedup_b64_min: None,
            speedup_b64_max: None,
        }
    }

    /// Whether the batch-64 speed-up's spread over rounds contains 1.0: faster in some
    /// rounds, slower in others, so "faster" or "slower" cannot be claimed.
    pub fn speedup_b64_uncertain(&self) -> bool {
        matches!((self.speedup_b64_min, self.speedup_b64_max), (Some(lo), Some(hi)) if lo <= 1.0 && hi >= 1.0)
    }

    /// The spread of the batch-64 latency over rounds, as a fraction of its median
    /// (`(max - min) / median`); 0 with fewer than two rounds.
    pub fn latency_b64_spread(&self) -> f64 {
        let r = &self.latency_b64_rounds_us;
        if r.len() < 2 || self.latency_b64_us <= 0.0 {
            return 0.0;
        }
        let (lo, hi) = r
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        (hi - lo) / self.latency_b64_us
    }

    /// Whether this is the float row of quantlab's engine (the reference for ratios).
    pub fn is_reference(&self) -> bool {
        self.method == "f32" && self.backend == "quantlab" && self.threads == 1
    }

    /// Whether this is a static row at 8 bits (weights and activations): a candidate for
    /// the headlines' "int8" (the rows below 8 bits are the bit-width section's; a 4-bit
    /// row, the more accurate on a small test split, had read as the int8 result).
    pub fn is_static_int8(&self) -> bool {
        matches!(self.method.parse(), Ok(crate::config::Method::Static(..)))
    }
}

/// The headline's int8 row among `rows` (one pair's, or any set the caller filtered): the
/// 8-bit static row of quantlab's engine on one thread most accurate on the validation split
/// (on the test split for rows measured without one), the first in the rows' order (the
/// config's) on a tie. Not the faster on a tie: methods often tie on a small validation
/// split, and a choice by timing moved the headline from run to run with the machine's noise
/// (and chose it by the figure it reports).
pub fn headline<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Option<&'a Row> {
    let by = |r: &Row| r.val_accuracy.unwrap_or(r.accuracy);
    rows.into_iter()
        .filter(|r| r.is_static_int8() && r.supported && r.threads == 1 && r.backend == "quantlab")
        .fold(None, |best: Option<&Row>, r| match best {
            Some(b) if by(b) >= by(r) => Some(b),
            _ => Some(r),
        })
}

/// The median of sorted values (the mean of the middle two for an even count; 0 for none).
pub fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn one() -> usize {
    1
}

/// Fills the comparison fields of every quantized row from the reference rows measured in
/// the same run (same dataset, model and device).
pub fn derive_ratios(rows: &mut [Row]) {
    let refs: Vec<Row> = rows.iter().filter(|r| r.method == "f32").cloned().collect();
    let find = |r: &Row, backend: &str| {
        refs.iter()
            .find(|f| is_reference_for(f, r, backend))
            .cloned()
    };
    for r in rows.iter_mut().filter(|r| r.method != "f32" && r.supported) {
        let own = reference_backend(r).to_string();
        let (Some(f), flex, nd) = (
            find(r, &own).or_else(|| find(r, "quantlab")),
            find(r, "burn-flex"),
            find(r, "burn-ndarray"),
        ) else {
            continue;
        };
        let ratio = |a: f64, b: f64| (b > 0.0).then_some(a / b);
        r.accuracy_drop_pp = Some((f.accuracy - r.accuracy) * 100.0);
        r.size_ratio = ratio(f.size_bytes as f64, r.size_bytes as f64);
        r.speedup_b64 = ratio(f.latency_b64_us, r.latency_b64_us);
        // Timed in the same rounds: the speed-up of each round, then their median; against
        // the reference timed right before this row where the rounds did that.
        let b = &r.latency_b64_rounds_us;
        let a = if r.latency_b64_ref_rounds_us.len() == b.len() {
            &r.latency_b64_ref_rounds_us
        } else {
            &f.latency_b64_rounds_us
        };
        if a.len() == b.len() && !a.is_empty() && b.iter().all(|&v| v > 0.0) {
            let mut per: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
            per.sort_by(f64::total_cmp);
            r.speedup_b64 = Some(median_sorted(&per));
            r.speedup_b64_min = per.first().copied();
            r.speedup_b64_max = per.last().copied();
        }
        r.speedup_b1 = ratio(f.latency_b1_us, r.latency_b1_us);
        r.speedup_b64_vs_burn_flex = flex.and_then(|x| ratio(x.latency_b64_us, r.latency_b64_us));
        r.speedup_b64_vs_burn_ndarray = nd.and_then(|x| ratio(x.latency_b64_us, r.latency_b64_us));
        r.speedup_b4096 = f
            .latency_b4096_us
            .zip(r.latency_b4096_us)
            .and_then(|(a, b)| ratio(a, b));
    }
}

/// The backend of the float row that `r`'s speed-ups are taken against: GPU int8 against
/// the GPU's float (burn on wgpu), CPU rows against their own backend.
pub(crate) fn reference_backend(r: &Row) -> &str {
    if r.backend.starts_with("burn") {
        &r.backend
    } else if r.backend == "quantlab-gpu" {
        "burn-wgpu"
    } else {
        "quantlab"
    }
}

/// Whether `f` is the float row of `backend` that `r` is compared with (same pair, and the
/// same thread count within one backend).
pub(crate) fn is_reference_for(f: &Row, r: &Row, backend: &str) -> bool {
    f.method == "f32"
        && f.dataset == r.dataset
        && f.model == r.model
        && f.backend == backend
        && f.supported
        && (f.threads == r.threads || backend != r.backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(method: &str, rounds: &[f64]) -> Row {
        let mut r = Row::new("d", "m", method, "cpu", "quantlab");
        r.latency_b64_rounds_us = rounds.to_vec();
        let mut s = rounds.to_vec();
        s.sort_by(f64::total_cmp);
        r.latency_b64_us = median_sorted(&s);
        r.latency_b1_us = 1.0;
        r
    }

    /// A slow spell that catches the reference in one round but not the row: against the
    /// reference's round medians the speed-up would swing (0.5x to 3x); against the
    /// reference timed right before the row it holds.
    #[test]
    fn speed_ups_use_the_reference_timed_beside_the_row() {
        let mut rows = vec![
            timed("f32", &[100.0, 300.0, 100.0]),
            timed("static", &[200.0, 100.0, 100.0]),
        ];
        rows[1].latency_b64_ref_rounds_us = vec![400.0, 200.0, 200.0];
        derive_ratios(&mut rows);
        let q = &rows[1];
        assert_eq!(q.speedup_b64, Some(2.0));
        assert_eq!(
            (q.speedup_b64_min, q.speedup_b64_max),
            (Some(2.0), Some(2.0))
        );
        // Without the paired timings (a file written before them): the rounds' medians.
        rows[1].latency_b64_ref_rounds_us.clear();
        derive_ratios(&mut rows);
        assert_eq!(rows[1].speedup_b64, Some(1.0));
        assert_eq!(rows[1].speedup_b64_min, Some(0.5));
    }

    /// A burst in one round lands on both rows of that round: the speed-up is taken round
    /// by round, so it does not swing the median, and the spread shows it.
    #[test]
    fn speed_ups_are_taken_round_by_round() {
        let mut rows = vec![
            timed("f32", &[100.0, 100.0, 300.0, 100.0, 100.0]),
            timed("static", &[50.0, 50.0, 150.0, 50.0, 55.0]),
        ];
        derive_ratios(&mut rows);
        let q = &rows[1];
        assert_eq!(q.speedup_b64, Some(2.0));
        assert_eq!(q.speedup_b64_max, Some(2.0));
        assert!((q.speedup_b64_min.unwrap() - 100.0 / 55.0).abs() < 1e-12);
        assert!(!q.speedup_b64_uncertain());
        assert!((rows[0].latency_b64_spread() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_spread_across_one_is_uncertain() {
        let mut rows = vec![
            timed("f32", &[100.0, 100.0, 100.0]),
            timed("static", &[90.0, 105.0, 98.0]),
        ];
        derive_ratios(&mut rows);
        assert!(
            rows[1].speedup_b64_uncertain(),
            "{:?}",
            rows[1].speedup_b64_min
        );
        // Rows without rounds (older results) keep the ratio of medians and no spread.
        let mut old = vec![timed("f32", &[]), timed("static", &[])];
        old[0].latency_b64_us = 100.0;
        old[1].latency_b64_us = 50.0;
        derive_ratios(&mut old);
        assert_eq!(old[1].speedup_b64, Some(2.0));
        assert!(old[1].speedup_b64_min.is_none() && !old[1].speedup_b64_uncertain());
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median_sorted(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_sorted(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
