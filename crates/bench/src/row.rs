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
            loss: 0.0,
            samples: 0,
            params: 0,
            size_bytes: 0,
            latency_b1_us: 0.0,
            latency_b1_p90_us: 0.0,
            latency_b64_us: 0.0,
            latency_b64_p90_us: 0.0,
            throughput_sps: 0.0,
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
        }
    }

    /// Whether this is the float row of quantlab's engine (the reference for ratios).
    pub fn is_reference(&self) -> bool {
        self.method == "f32" && self.backend == "quantlab" && self.threads == 1
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
            .find(|f| {
                f.dataset == r.dataset
                    && f.model == r.model
                    && f.backend == backend
                    && f.supported
                    && (f.threads == r.threads || backend != r.backend)
            })
            .cloned()
    };
    for r in rows.iter_mut().filter(|r| r.method != "f32" && r.supported) {
        // GPU int8 against the GPU's float (burn on wgpu), CPU rows against their own.
        let own = if r.backend.starts_with("burn") {
            r.backend.clone()
        } else if r.backend == "quantlab-gpu" {
            "burn-wgpu".into()
        } else {
            "quantlab".into()
        };
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
        r.speedup_b1 = ratio(f.latency_b1_us, r.latency_b1_us);
        r.speedup_b64_vs_burn_flex = flex.and_then(|x| ratio(x.latency_b64_us, r.latency_b64_us));
        r.speedup_b64_vs_burn_ndarray = nd.and_then(|x| ratio(x.latency_b64_us, r.latency_b64_us));
        r.speedup_b4096 = f
            .latency_b4096_us
            .zip(r.latency_b4096_us)
            .and_then(|(a, b)| ratio(a, b));
    }
}
