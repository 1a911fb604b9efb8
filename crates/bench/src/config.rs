//! The benchmark matrix as data (`configs/bench.toml`): which datasets, models, methods and
//! devices, how each dataset is trained, and how long measurements run.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use quantlab_data::DatasetName;
use quantlab_models::ModelKind;
use quantlab_quant::{BitWidths, Granularity, ObserverKind};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result, io};

/// A method of the matrix, as named in results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The float model.
    F32,
    /// Weights on a 2^-7 grid, float compute.
    Naive,
    /// Fixed 2^-7 int8 everywhere, no calibration.
    NaiveFixed,
    /// burn's `quantize_weights`.
    BurnWeights,
    /// Dynamic int8.
    Dynamic,
    /// Static int8 with an observer and a weight granularity.
    Static(ObserverKind, Granularity),
    /// Static at other bit widths (`static-<observer>-<granularity>-w4a4`).
    StaticBits(ObserverKind, Granularity, BitWidths),
    /// Quantization-aware training from the row's float checkpoint (`qat-w4a4`).
    Qat(BitWidths),
}

/// `w4a4` -> weights 4, activations 4 (edges 8), each in 2..=8.
fn parse_tag(tag: &str) -> Option<BitWidths> {
    let (w, a) = tag.strip_prefix('w')?.split_once('a')?;
    BitWidths::wa(w.parse().ok()?, a.parse().ok()?).check().ok()
}

impl Method {
    /// Name in results (`static-<observer>-<granularity>` for static).
    pub fn name(self) -> String {
        match self {
            Method::F32 => "f32".into(),
            Method::Naive => "naive".into(),
            Method::NaiveFixed => "naive-fixed".into(),
            Method::BurnWeights => "burn-weights".into(),
            Method::Dynamic => "dynamic".into(),
            Method::Static(o, g) => format!("static-{}-{}", o.as_str(), g.as_str()),
            Method::StaticBits(o, g, b) => {
                format!("static-{}-{}-{}", o.as_str(), g.as_str(), b.tag())
            }
            Method::Qat(b) => format!("qat-{}", b.tag()),
        }
    }

    /// The bit widths of the row (8/8/8 for the methods without a width).
    pub fn widths(self) -> BitWidths {
        match self {
            Method::StaticBits(_, _, b) | Method::Qat(b) => b,
            _ => BitWidths::default(),
        }
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => return Ok(Method::F32),
            "naive" => return Ok(Method::Naive),
            "naive-fixed" => return Ok(Method::NaiveFixed),
            "burn-weights" => return Ok(Method::BurnWeights),
            "dynamic" => return Ok(Method::Dynamic),
            _ => {}
        }
        if let Some(b) = s.strip_prefix("qat-").and_then(parse_tag) {
            return Ok(Method::Qat(b));
        }
        for o in ObserverKind::ALL {
            for g in [Granularity::PerTensor, Granularity::PerChannel] {
                let base = Method::Static(o, g).name();
                if base == s {
                    return Ok(Method::Static(o, g));
                }
                if let Some(b) = s
                    .strip_prefix(base.as_str())
                    .and_then(|t| t.strip_prefix('-'))
                    .and_then(parse_tag)
                {
                    return Ok(if b.is_int8() {
                        Method::Static(o, g)
                    } else {
                        Method::StaticBits(o, g, b)
                    });
                }
            }
        }
        Err(format!(
            "unknown method {s:?}; known: f32, naive, naive-fixed, burn-weights, dynamic, static-<minmax|moving-average|percentile|entropy|mse>-<per-tensor|per-channel>[-w<2..8>a<2..8>], qat-w<2..8>a<2..8>"
        ))
    }
}

/// A device column of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU: quantlab's engine, burn flex and burn ndarray.
    Cpu,
    /// wgpu: burn's float forward pass (quantlab's int8 runs on the CPU).
    Gpu,
}

/// Per-dataset training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
}

/// What `--quick` changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickSettings {
    /// Training samples used.
    pub train_limit: usize,
    /// Test samples used.
    pub test_limit: usize,
    /// Epochs (replaces every dataset's).
    pub epochs: usize,
    /// Calibration samples.
    pub calib: usize,
    /// Fewest timed runs.
    pub min_reps: usize,
    /// Most timed runs.
    pub max_reps: usize,
    /// Time budget per latency measurement.
    pub time_budget_s: f64,
    /// Timing rounds.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
}

/// The most timing rounds a config may ask for.
pub const MAX_ROUNDS: usize = 100;

fn default_rounds() -> usize {
    5
}

/// The calibration sweep (`[calib_sweep]`): how much calibration data is enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSettings {
    /// `dataset/model` pairs swept (empty: no sweep). Pairs not in the run are ignored.
    pub pairs: Vec<String>,
    /// Calibration sizes (training images; capped at the training split).
    pub sizes: Vec<usize>,
    /// Seeds choosing which training images (one calibration per size and seed).
    pub seeds: Vec<u64>,
    /// Weight granularity of the swept static models.
    pub granularity: Granularity,
    /// Test images on which per-layer SQNR is measured.
    pub sqnr_samples: usize,
    /// Sizes under `--quick`.
    pub quick_sizes: Vec<usize>,
    /// Seeds under `--quick`.
    pub quick_seeds: Vec<u64>,
}

impl SweepSettings {
    /// Whether `ds/model` is swept.
    pub fn covers(&self, ds: DatasetName, model: &str) -> bool {
        self.pairs.iter().any(|p| *p == format!("{ds}/{model}"))
    }
}

/// `configs/bench.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Datasets.
    pub datasets: Vec<DatasetName>,
    /// Models.
    pub models: Vec<ModelKind>,
    /// Methods besides f32 (names as in results).
    pub methods: Vec<String>,
    /// Devices.
    pub devices: Vec<DeviceKind>,
    /// Calibration samples.
    pub calib: usize,
    /// Warm-up runs before timing.
    pub warmup: usize,
    /// Fewest timed runs.
    pub min_reps: usize,
    /// Most timed runs.
    pub max_reps: usize,
    /// Time budget per latency measurement (seconds), spread over the rounds.
    pub time_budget_s: f64,
    /// Timing rounds: the rows of one model are timed interleaved, each round running every
    /// row once in a rotating order; latencies are the median over rounds, speed-ups the
    /// median of per-round ratios with their min-max spread.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Training per dataset (`mnist`), or per dataset and model (`"mnist/mlp"`, which wins).
    pub train: BTreeMap<String, TrainSettings>,
    /// `--quick` overrides.
    pub quick: QuickSettings,
    /// The calibration sweep; absent means none.
    #[serde(default)]
    pub calib_sweep: Option<SweepSettings>,
    /// The bit-width sweep; absent means none.
    #[serde(default)]
    pub bit_sweep: Option<BitSweepSettings>,
    /// `dataset/model` pairs that get the `qat-*` rows (absent: every pair). QAT trains,
    /// so its rows cost what the fine-tune costs.
    #[serde(default)]
    pub qat_pairs: Option<Vec<String>>,
}

/// The bit-width sweep (`[bit_sweep]`): every observer at every width, accuracy only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitSweepSettings {
    /// Widths (weights and activations alike), each in 2..=8.
    pub widths: Vec<u8>,
    /// Test images on which per-layer SQNR is measured.
    pub sqnr_samples: usize,
}

impl BenchConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bad = |message: String| BenchError::Config {
            path: path.to_path_buf(),
            message,
        };
        let cfg: BenchConfig =
            toml::from_str(&text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))?;
        cfg.methods().map_err(&bad)?;
        for key in cfg.train.keys() {
            let (ds, model) = key
                .split_once('/')
                .map_or((key.as_str(), None), |(d, m)| (d, Some(m)));
            DatasetName::from_str(ds).map_err(|e| bad(format!("[train.{key}]: {e}")))?;
            if let Some(m) = model {
                serde_json::from_value::<ModelKind>(serde_json::Value::String(m.into())).map_err(
                    |_| {
                        bad(format!(
                            "[train.\"{key}\"]: unknown model {m:?}; known: logreg, mlp, cnn"
                        ))
                    },
                )?;
            }
        }
        for (key, t) in &cfg.train {
            if t.epochs == 0 || t.batch_size == 0 || !(t.lr.is_finite() && t.lr > 0.0) {
                return Err(bad(format!(
                    "[train.{key}]: epochs and batch_size must be >= 1 and lr > 0"
                )));
            }
        }
        if cfg.calib == 0
            || !(1..=MAX_ROUNDS).contains(&cfg.rounds)
            || !(1..=MAX_ROUNDS).contains(&cfg.quick.rounds)
            || cfg.min_reps == 0
            || cfg.max_reps < cfg.min_reps
            || cfg.time_budget_s.is_nan()
            || cfg.time_budget_s <= 0.0
        {
            return Err(bad(format!(
                "calib and min_reps must be >= 1, rounds 1 to {MAX_ROUNDS}, max_reps >= min_reps, time_budget_s > 0"
            )));
        }
        for key in cfg.qat_pairs.iter().flatten() {
            let ok = key.split_once('/').is_some_and(|(d, m)| {
                DatasetName::from_str(d).is_ok()
                    && serde_json::from_value::<ModelKind>(serde_json::Value::String(m.into()))
                        .is_ok()
            });
            if !ok {
                return Err(bad(format!(
                    "qat_pairs: {key:?} is not dataset/model (datasets: mnist, fashion-mnist, digits, synthetic; models: logreg, mlp, cnn)"
                )));
            }
        }
        if let Some(bs) = &cfg.bit_sweep
            && (bs.widths.is_empty()
                || bs.widths.iter().any(|b| !(2..=8).contains(b))
                || bs.sqnr_samples == 0)
        {
            return Err(bad(format!(
                "[bit_sweep]: widths {:?} must be non-empty and each in 2..=8, sqnr_samples >= 1",
                bs.widths
            )));
        }
        if let Some(sw) = &cfg.calib_sweep {
            for key in &sw.pairs {
                let (ds, m) = key.split_once('/').ok_or_else(|| {
                    bad(format!("[calib_sweep] pairs: {key:?} is not dataset/model"))
                })?;
                DatasetName::from_str(ds)
                    .map_err(|e| bad(format!("[calib_sweep] pairs: {key:?}: {e}")))?;
                serde_json::from_value::<ModelKind>(serde_json::Value::String(m.into())).map_err(
                    |_| {
                        bad(format!(
                            "[calib_sweep] pairs: {key:?}: unknown model {m:?}; known: logreg, mlp, cnn"
                        ))
                    },
                )?;
            }
            for (key, sizes, seeds) in [
                ("sizes", &sw.sizes, &sw.seeds),
                ("quick_sizes", &sw.quick_sizes, &sw.quick_seeds),
            ] {
                if sizes.is_empty() || sizes.contains(&0) || seeds.is_empty() {
                    return Err(bad(format!(
                        "[calib_sweep] {key}: need at least one size, every size >= 1, and at least one seed"
                    )));
                }
            }
            if sw.sqnr_samples == 0 {
                return Err(bad("[calib_sweep] sqnr_samples: need at least 1".into()));
            }
        }
        let q = &cfg.quick;
        if q.train_limit == 0
            || q.test_limit == 0
            || q.epochs == 0
            || q.calib == 0
            || q.min_reps == 0
            || q.max_reps < q.min_reps
        {
            return Err(bad(
                "[quick]: limits, epochs, calib and reps must be >= 1".into()
            ));
        }
        Ok(cfg)
    }

    /// The methods, parsed (f32 first, always).
    pub fn methods(&self) -> std::result::Result<Vec<Method>, String> {
        let mut m = vec![Method::F32];
        for s in &self.methods {
            let parsed: Method = s.parse().map_err(|e| format!("methods: {e}"))?;
            if !m.contains(&parsed) {
                m.push(parsed);
            }
        }
        Ok(m)
    }

    /// Whether the `qat-*` rows run on `ds/model`.
    pub fn qat_covers(&self, ds: DatasetName, model: &str) -> bool {
        self.qat_pairs
            .as_ref()
            .is_none_or(|p| p.iter().any(|p| *p == format!("{ds}/{model}")))
    }

    /// Training settings of a dataset/model pair.
    pub fn train_settings(&self, ds: DatasetName, model: ModelKind) -> Option<&TrainSettings> {
        self.train
            .get(&format!("{ds}/{model}"))
            .or_else(|| self.train.get(ds.as_str()))
    }

    /// Applies `--quick`.
    pub fn quick(mut self) -> Self {
        let q = self.quick.clone();
        self.calib = q.calib;
        self.min_reps = q.min_reps;
        self.max_reps = q.max_reps;
        self.time_budget_s = q.time_budget_s;
        self.rounds = q.rounds;
        for t in self.train.values_mut() {
            t.epochs = q.epochs;
        }
        if let Some(sw) = &mut self.calib_sweep {
            sw.sizes = sw.quick_sizes.clone();
            sw.seeds = sw.quick_seeds.clone();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bench.toml")
    }

    #[test]
    fn shipped_config_parses() {
        let c = BenchConfig::load(&shipped()).unwrap();
        let m = c.methods().unwrap();
        assert_eq!(m[0], Method::F32);
        assert!(m.contains(&Method::Static(
            ObserverKind::Percentile,
            Granularity::PerChannel
        )));
        assert_eq!(c.quick().train["mnist"].epochs, 1);
    }

    #[test]
    fn method_names_round_trip() {
        for o in ObserverKind::ALL {
            for g in [Granularity::PerTensor, Granularity::PerChannel] {
                let m = Method::Static(o, g);
                assert_eq!(m.name().parse::<Method>().unwrap(), m);
            }
        }
        assert!("static-foo-per-channel".parse::<Method>().is_err());
        let low = Method::StaticBits(
            ObserverKind::Mse,
            Granularity::PerChannel,
            BitWidths::wa(4, 4),
        );
        assert_eq!(low.name(), "static-mse-per-channel-w4a4");
        assert_eq!(low.name().parse::<Method>().unwrap(), low);
        let qat = Method::Qat(BitWidths::wa(2, 2));
        assert_eq!(qat.name().parse::<Method>().unwrap(), qat);
        for bad in [
            "qat-w1a4",
            "qat-w4a9",
            "qat-4a4",
            "static-minmax-per-channel-w4",
            "qat-",
        ] {
            assert!(bad.parse::<Method>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_configs_are_errors_naming_the_key() {
        let text = std::fs::read_to_string(shipped()).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.toml");
        for (from, to, key) in [
            ("calib = 1000", "calib = 1000\nbogus = 1", "bogus"),
            ("\"naive\",", "\"naiive\",", "naiive"),
            ("devices = [\"cpu\"]", "devices = [\"tpu\"]", "tpu"),
            ("[train.digits]", "[train.digitz]", "digitz"),
            ("\"mnist/cnn\", \"digits", "\"mnist/cnm\", \"digits", "cnm"),
            ("sizes = [16,", "sizes = [0,", "sizes"),
            ("sqnr_samples = 256", "sqnr_samples = 0", "sqnr_samples"),
            ("widths = [8, 6, 4, 3, 2]", "widths = [8, 1]", "bit_sweep"),
            (
                "\"digits/cnn\", \"synthetic",
                "\"digits/cnx\", \"synthetic",
                "qat_pairs",
            ),
            ("\"qat-w2a2\",", "\"qat-w9a2\",", "qat-w9a2"),
        ] {
            std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
            let err = BenchConfig::load(&p).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
