//! The benchmark matrix as data (`configs/bench.toml`): which datasets, models, methods and
//! devices, how each dataset is trained, and how long measurements run.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use quantlab_data::DatasetName;
use quantlab_models::ModelKind;
use quantlab_quant::{Granularity, ObserverKind};
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
        for o in ObserverKind::ALL {
            for g in [Granularity::PerTensor, Granularity::PerChannel] {
                if Method::Static(o, g).name() == s {
                    return Ok(Method::Static(o, g));
                }
            }
        }
        Err(format!(
            "unknown method {s:?}; known: f32, naive, naive-fixed, burn-weights, dynamic, static-<minmax|moving-average|percentile|entropy|mse>-<per-tensor|per-channel>"
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
    pub fn covers(&self, ds: DatasetName, model: ModelKind) -> bool {
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
        ] {
            std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
            let err = BenchConfig::load(&p).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
