//! The matrix runner: for every dataset x model, train (or reuse the cached checkpoint),
//! quantize with every method, and measure accuracy, size, latency, memory and per-layer
//! error on each device, then hand the rows to the writers.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use quantlab_data::{DataError, DatasetName, LabeledSet, Splits, load};
use quantlab_models::{Classifier, ModelKind, ModelSpec};
use quantlab_quant::report::layer_report;
use quantlab_quant::{
    BitWidths, Engine, KernelPath, MethodKind, Network, QuantModel, QuantizeOptions, export,
    quantize, score,
};
use quantlab_train::qat::{QatConfig, fit_qat};
use quantlab_train::{
    Backend, FitOptions, History, OptimizerKind, TrainConfig, TrainError, checkpoint, evaluate,
};
use serde::{Deserialize, Serialize};

use crate::bitwidth::{BitPoint, bit_sweep};
use crate::burn_weights;
use crate::config::{BenchConfig, DeviceKind, Method};
use crate::error::{BenchError, Result, io};
use crate::machine::{Machine, stamp};
use crate::measure::{Timing, latency, peak_during};
use crate::rounds::{Runner, time_in_rounds};
use crate::row::{Row, derive_ratios};
use crate::sweep::{SweepPoint, sweep};

/// Batch sizes measured: one request, the batch the speed-ups are taken at, and a server's
/// batch for throughput.
pub const BATCHES: [usize; 3] = [1, 64, 256];

/// How to run the matrix.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `configs/bench.toml`.
    pub config: PathBuf,
    /// Small subsets, one epoch.
    pub quick: bool,
    /// Only this dataset (and model).
    pub only: Option<(DatasetName, Option<ModelKind>)>,
    /// Devices (overrides the config).
    pub devices: Option<Vec<DeviceKind>>,
    /// Retrain even when a cached checkpoint exists.
    pub retrain: bool,
    /// Where runs and the cache go (`results/`).
    pub results_dir: PathBuf,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Show progress bars.
    pub progress: bool,
    /// Instead of the config's models: one float model brought as an ONNX file (imported by
    /// the caller), measured on one dataset.
    pub onnx: Option<OnnxModel>,
    /// Background work (streaming runs to a tracking server) hushed while rows are timed.
    pub quiet: Option<std::sync::Arc<quantlab_track::Gate>>,
}

/// One dataset/model pair, measured: what [`run_with`] hands its caller as soon as it is,
/// so runs can be recorded (and sent) while the next pair is measured.
#[derive(Debug, Clone, Copy)]
pub struct PairDone<'a> {
    /// The run folder (its `models/` holds the pair's int8 files by now).
    pub dir: &'a Path,
    /// The run's date, as `bench.json` will record it.
    pub date: &'a str,
    /// Calibration images of the static rows.
    pub calib: usize,
    /// The pair's rows, their speed-ups and drops derived.
    pub rows: &'a [Row],
    /// Its training curves.
    pub curve: &'a Curve,
    /// Its calibration-sweep points.
    pub calib_sweep: &'a [SweepPoint],
}

/// A float model from elsewhere (`quantlab bench --onnx FILE --dataset D`), already mapped
/// onto quant's network by the caller (the CLI's import), so the bench never reads ONNX.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// Its name in the rows (the file's stem).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The dataset its input takes.
    pub dataset: DatasetName,
    /// The input normalisation it was trained with.
    pub normalize: quantlab_data::Normalize,
    /// The float network.
    pub network: Network,
    /// What the int8 files written from it record (the CLI's provenance of an ONNX source:
    /// its path, dataset and input normalisation, so `quantlab eval` reloads them alike).
    pub provenance: serde_json::Value,
}

/// Where a pair's float model comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Trained here (or from the cache) from the config.
    Trained(ModelKind),
    /// Imported by the caller.
    Onnx(&'a OnnxModel),
}

impl Source<'_> {
    fn name(&self) -> &str {
        match self {
            Source::Trained(k) => k.as_str(),
            Source::Onnx(m) => &m.name,
        }
    }
}

/// Training curves of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Dataset.
    pub dataset: String,
    /// Model.
    pub model: String,
    /// Whether it was trained in this run (false: loaded from the cache).
    pub trained_now: bool,
    /// The checkpoint folder (its `train.toml` is the training config).
    #[serde(default)]
    pub checkpoint: String,
    /// Per-epoch history.
    pub history: History,
    /// QAT fine-tunes of this model: method name and per-epoch history (fake-quantized
    /// validation figures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qat: Vec<(String, History)>,
}

/// Run-level facts (`bench.json` "meta").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// quantlab version.
    pub quantlab_version: String,
    /// ISO date (UTC).
    pub date: String,
    /// Machine.
    pub machine: Machine,
    /// `--quick` mode.
    pub quick: bool,
    /// Devices measured.
    pub devices: Vec<DeviceKind>,
    /// Datasets or models skipped, and why.
    pub skipped: Vec<String>,
    /// Where each kind of row ran.
    pub notes: Vec<String>,
    /// The config used (after `--quick`).
    pub config: BenchConfig,
}

/// `bench.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Run facts.
    pub meta: Meta,
    /// Measured rows.
    pub rows: Vec<Row>,
    /// Training curves.
    pub curves: Vec<Curve>,
    /// The calibration sweep (`[calib_sweep]`), one point per model, size, seed, observer.
    #[serde(default)]
    pub calib_sweep: Vec<SweepPoint>,
    /// The bit-width sweep (`[bit_sweep]`), one point per model, width, observer.
    #[serde(default)]
    pub bit_sweep: Vec<BitPoint>,
}

/// What one dataset/model pair produced: its rows, training curves, calibration-sweep and
/// bit-width-sweep points.
type Measured = (Vec<Row>, Curve, Vec<SweepPoint>, Vec<BitPoint>);

/// FNV-1a of a string: a stable cache key for a training config.
fn fnv(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// Runs the matrix; returns the run folder and its results.
pub fn run(opts: &BenchOptions) -> Result<(PathBuf, Results)> {
    run_with(opts, &mut |_| {})
}

/// [`run`], handing each pair to `pair_done` once it is measured.
pub fn run_with(
    opts: &BenchOptions,
    pair_done: &mut dyn FnMut(PairDone<'_>),
) -> Result<(PathBuf, Results)> {
    let mut cfg = BenchConfig::load(&opts.config)?;
    if opts.quick {
        cfg = cfg.quick();
    }
    let methods = cfg.methods().map_err(|message| BenchError::Config {
        path: opts.config.clone(),
        message,
    })?;
    let devices = opts.devices.clone().unwrap_or_else(|| cfg.devices.clone());
    if devices.contains(&DeviceKind::Gpu) {
        let (_, adapter) = quantlab_train::gpu().map_err(BenchError::NoGpu)?;
        for line in adapter.report_lines() {
            eprintln!("{line}");
        }
    }
    let path = KernelPath::from_env().map_err(quantlab_quant::QuantError::from)?;
    let engine = Engine { path, threads: 1 };
    let timing = Timing {
        warmup: cfg.warmup,
        min_reps: cfg.min_reps,
        max_reps: cfg.max_reps,
        budget_s: cfg.time_budget_s,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (folder, date) = stamp(now);
    let dir = opts.results_dir.join(if opts.quick {
        format!("{folder}-quick")
    } else {
        folder
    });
    std::fs::create_dir_all(dir.join("models")).map_err(io(&dir))?;
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut sweep_points = Vec::new();
    let mut bit_points = Vec::new();
    let mut skipped = Vec::new();
    let datasets: Vec<DatasetName> = match &opts.onnx {
        Some(m) => vec![m.dataset],
        None => cfg
            .datasets
            .iter()
            .copied()
            .filter(|d| opts.only.is_none_or(|(o, _)| o == *d))
            .collect(),
    };
    for ds in datasets {
        let data_opts = TrainConfig {
            dataset: ds,
            ..TrainConfig::default()
        }
        .data_options(opts.data_dir.as_deref());
        let mut splits = match load(ds, &data_opts) {
            Ok(s) => s,
            Err(e @ DataError::NotFound { .. }) if opts.onnx.is_none() => {
                let note = format!("{ds}: skipped, {e}");
                println!("{note}");
                skipped.push(note);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let sources: Vec<Source> = match &opts.onnx {
            Some(m) => {
                if splits.train.sample_shape != m.network.input_shape {
                    return Err(BenchError::Config {
                        path: m.path.clone(),
                        message: format!(
                            "its input is {:?} per sample, {ds} is {:?}",
                            m.network.input_shape, splits.train.sample_shape
                        ),
                    });
                }
                splits
                    .renormalize(m.normalize)
                    .map_err(|message| BenchError::Config {
                        path: m.path.clone(),
                        message,
                    })?;
                vec![Source::Onnx(m)]
            }
            None => cfg
                .models
                .iter()
                .copied()
                .filter(|m| opts.only.is_none_or(|(_, om)| om.is_none_or(|om| om == *m)))
                .map(Source::Trained)
                .collect(),
        };
        for source in sources {
            if let Source::Trained(kind) = source
                && kind == ModelKind::Cnn
                && splits.train.sample_shape.len() != 3
            {
                let note =
                    format!("{ds}/{kind}: skipped, the CNN needs images and {ds} is tabular");
                println!("{note}");
                skipped.push(note);
                continue;
            }
            let pair = Pair {
                ds,
                source,
                splits: &splits,
                cfg: &cfg,
                opts,
                engine,
                timing,
                devices: &devices,
                dir: &dir,
            };
            let (mut r, curve, mut sw, mut bits) = pair.measure(&methods)?;
            // Ratios are taken within a pair, so this pair's are final now.
            derive_ratios(&mut r);
            if opts.progress {
                // This pair's figures now; the whole table again at the end.
                let width = crate::summary::name_width([(ds.as_str(), source.name())]);
                if rows.is_empty() {
                    println!("{}", crate::summary::header(width));
                }
                if let Some(l) = crate::summary::line(&r, ds.as_str(), source.name(), width) {
                    println!("{l}");
                }
            }
            pair_done(PairDone {
                dir: &dir,
                date: &date,
                calib: cfg.calib,
                rows: &r,
                curve: &curve,
                calib_sweep: &sw,
            });
            rows.append(&mut r);
            curves.push(curve);
            sweep_points.append(&mut sw);
            bit_points.append(&mut bits);
        }
    }
    let mut notes = vec![
        format!(
            "timing: the rows of each dataset/model are timed interleaved in {} rounds (each round runs every row once, in a rotating order); latencies are medians over rounds, speed-ups medians of per-round ratios, shown with their min-max over rounds; ~ marks a speed-up whose min-max contains 1.00x (not significant)",
            cfg.rounds
        ),
        format!(
            "splits: every float model is the epoch with the lowest loss on a validation split ({:.0}% of each dataset's training data, stratified, seeded); calibration draws from the rest of the training data; the headlines' int8 method is the 8-bit static one most accurate on the same validation split; every accuracy in the rows is on the test split, which nothing was selected or tuned on",
            quantlab_data::DEFAULT_VAL_FRACTION * 100.0
        ),
        format!("quantlab rows (f32 and int8) run on the CPU with quantlab's engine, at 1 thread and (a second row) at every core; int8 GEMM path: {}, f32 kernels: {}", path.as_str(), path.f32_name()),
        format!(
            "burn-flex{} rows: burn's own forward pass of the same float model (host tensor in, host logits out){}",
            if Backend::Ndarray.built() { " / burn-ndarray" } else { "" },
            if Backend::Ndarray.built() { "" } else { "; burn's ndarray backend is not in this build (opt-in: `cargo xtask bench --features ndarray`)" }
        ),
        "burn-weights: burn quantize_weights (MinMax, Q8S per tensor, weights only); burn dequantizes before computing".into(),
    ];
    if let Some(m) = &opts.onnx {
        notes.push(format!(
            "model {}: imported from {} (input normalisation {}); burn rows and burn-weights run only on models quantlab trains, and qat rows only where qat_pairs lists {}/{}",
            m.name,
            m.path.display(),
            m.normalize,
            m.dataset,
            m.name
        ));
    }
    notes.extend(crate::summary::noise(&rows));
    notes.extend(crate::summary::kernel_note(path.as_str()));
    if devices.contains(&DeviceKind::Gpu) {
        notes.push("gpu rows: burn on wgpu (float forward, and burn-weights where burn's packed int8 storage allows), timed with host transfers included: the host batch is uploaded and the logits read back before the clock stops, which also synchronises the device; quantlab-gpu rows: quantlab's static int8 on the GPU (WGSL kernels, bit-identical to the CPU engine), same timing rules, speed-ups against burn-wgpu's f32".into());
        // Initialised (or refused) before the first row, so always there by now.
        if let Ok((_, adapter)) = quantlab_train::gpu() {
            notes.push(format!(
                "wgpu adapter: {}; CubeCL autotune level {}",
                adapter.summary(),
                quantlab_train::autotune_level()
            ));
            notes.push(format!(
                "quantlab-gpu int8 dot product (WGSL dot4I8Packed) on this device: {}",
                adapter.int8_dot.describe()
            ));
            notes.extend(adapter.warning());
        }
        if devices == [DeviceKind::Gpu] {
            notes.push("models trained on wgpu (--device gpu)".into());
        }
    }
    let meta = Meta {
        quantlab_version: env!("CARGO_PKG_VERSION").into(),
        date,
        machine: Machine::detect(path),
        quick: opts.quick,
        devices,
        skipped,
        notes,
        config: cfg,
    };
    Ok((
        dir,
        Results {
            meta,
            rows,
            curves,
            calib_sweep: sweep_points,
            bit_sweep: bit_points,
        },
    ))
}

/// The large batch of the GPU rows' note.
const GPU_LARGE_BATCH: usize = 4096;

struct Pair<'a> {
    ds: DatasetName,
    source: Source<'a>,
    splits: &'a Splits,
    cfg: &'a BenchConfig,
    opts: &'a BenchOptions,
    engine: Engine,
    timing: Timing,
    devices: &'a [DeviceKind],
    dir: &'a Path,
}

impl Pair<'_> {
    fn train_config(&self, kind: ModelKind) -> TrainConfig {
        let t = self.cfg.train_settings(self.ds, kind);
        TrainConfig {
            dataset: self.ds,
            model: ModelSpec::of(kind),
            epochs: t.map_or(1, |t| t.epochs),
            batch_size: t.map_or(64, |t| t.batch_size),
            lr: t.map_or(1e-3, |t| t.lr),
            optimizer: OptimizerKind::Adam,
            train_limit: self.opts.quick.then_some(self.cfg.quick.train_limit),
            test_limit: self.opts.quick.then_some(self.cfg.quick.test_limit),
            ..TrainConfig::default()
        }
    }

    /// QAT from the float network at `bits` on the CPU (flex), with `configs/qat.toml`'s
    /// settings (`--quick`: its training and test limits, one epoch).
    fn qat(&self, net: &Network, bits: BitWidths, calib: usize) -> Result<(QuantModel, History)> {
        let mut cfg = QatConfig::preset()?;
        cfg.calib = calib;
        if self.opts.quick {
            cfg.train_limit = Some(self.cfg.quick.train_limit);
            cfg.test_limit = Some(self.cfg.quick.test_limit);
            cfg.epochs = cfg.epochs.min(self.cfg.quick.epochs);
        }
        let out = fit_qat(net, &cfg, bits, self.splits, &Device::flex(), false)?;
        Ok((out.model, out.history))
    }

    /// Trains on the CPU, or loads the checkpoint cached for this exact config.
    fn checkpoint(&self, kind: ModelKind, bar: &ProgressBar) -> Result<(PathBuf, History, bool)> {
        let tc = self.train_config(kind);
        // `--device gpu` alone trains on wgpu; otherwise models are trained on the CPU (flex).
        let backend = if self.devices == [DeviceKind::Gpu] {
            Backend::Gpu
        } else {
            Backend::Cpu
        };
        let key = fnv(&format!("{}{}", tc.to_toml(), backend.as_str()));
        let ck_dir = self
            .opts
            .results_dir
            .join("cache")
            .join(format!("{}-{}-{key:016x}", self.ds, kind));
        let cached = ck_dir.join(checkpoint::META_FILE).is_file() && !self.opts.retrain;
        if cached && checkpoint::read(&ck_dir).is_ok() {
            let h: History = std::fs::read_to_string(ck_dir.join("history.json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            return Ok((ck_dir, h, false));
        }
        bar.set_message(format!(
            "{}/{}: training {} epoch(s) on {}",
            self.ds,
            kind,
            tc.epochs,
            backend.burn_name()
        ));
        let out = quantlab_train::fit(
            &tc,
            self.splits,
            &backend.device()?,
            &FitOptions {
                out: Some(&ck_dir),
                progress: false,
                backend: backend.as_str(),
            },
        )?;
        Ok((ck_dir, out.history, true))
    }

    fn measure(&self, methods: &[Method]) -> Result<Measured> {
        let sweep_cfg = self
            .cfg
            .calib_sweep
            .as_ref()
            .filter(|s| s.covers(self.ds, self.source.name()));
        let bar = if self.opts.progress {
            ProgressBar::new(
                methods.len() as u64
                    + 3
                    + sweep_cfg.is_some() as u64
                    + self.cfg.bit_sweep.is_some() as u64,
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:25} {pos}/{len} {msg}").expect("static template"),
        );
        // A trained model has its burn checkpoint (the burn rows run it); an imported one
        // only its network.
        let (net, trained, prov, origin) = match self.source {
            Source::Trained(kind) => {
                let (ck_dir, history, trained_now) = self.checkpoint(kind, &bar)?;
                let (ck, model) = checkpoint::load(&ck_dir, &Device::flex())?;
                let net = Network::from_graph(&model.to_graph(&ck.meta.input_shape)?)?;
                // The same provenance as `quantlab quantize` writes: a synthetic model's
                // file needs the set's parameters to be scored or timed again.
                let prov = ck.provenance();
                let origin = ck_dir.display().to_string();
                (net, Some((ck_dir, history, trained_now, ck)), prov, origin)
            }
            Source::Onnx(m) => (
                m.network.clone(),
                None,
                m.provenance.clone(),
                m.path.display().to_string(),
            ),
        };
        let test = match self.opts.quick {
            true => self.splits.test.take(self.cfg.quick.test_limit),
            false => self.splits.test.clone(),
        };
        let d = net.in_len();
        let calib = self.cfg.calib.min(self.splits.train.len());
        let calib_x = &self.splits.train.features[..calib * d];
        let batch_x: Vec<Vec<f32>> = BATCHES.iter().map(|&b| cyclic(&test, b)).collect();
        let (ds, kind) = (self.ds.as_str(), self.source.name());
        let mut rows = Vec::new();
        let mut qat_curves = Vec::new();
        // What each row runs, with its row's index: timed together, in rounds, at the end.
        let mut runners: Vec<(usize, Runner)> = Vec::new();
        let mut add = |rows: &mut Vec<Row>, row: Row, runner: Option<Runner>| {
            if let Some(r) = runner {
                runners.push((rows.len(), r));
            }
            rows.push(row);
        };

        // Float rows: quantlab's engine, burn flex, burn ndarray (when built) and wgpu.
        bar.set_message(format!("{ds}/{kind}: f32"));
        let float = QuantModel::float(net.clone());
        let (f32_row, f32_run) =
            self.quantlab_row(&float, "f32", "-", &test, &batch_x, &prov, None, calib_x)?;
        if let Some((row, run)) = self.all_cores_row(&float, &f32_row, &batch_x)? {
            add(&mut rows, row, Some(run));
        }
        add(&mut rows, f32_row, Some(f32_run));
        bar.inc(1);
        // burn runs the models it trained; an imported model has no burn form here.
        let mut backends: Vec<Backend> = [Backend::Cpu, Backend::Ndarray]
            .into_iter()
            .filter(|b| b.built() && trained.is_some())
            .collect();
        if self.devices.contains(&DeviceKind::Gpu) && trained.is_some() {
            backends.push(Backend::Gpu);
        }
        if let Some((ck_dir, _, _, ck)) = &trained {
            for b in &backends {
                bar.set_message(format!("{ds}/{kind}: f32 on burn {}", b.burn_name()));
                let (_, m) = checkpoint::load(ck_dir, &b.device()?)?;
                let (row, run) =
                    self.burn_row(m, "f32", *b, &test, &batch_x, ck.meta.model_bytes)?;
                add(&mut rows, row, Some(run));
            }
        }
        bar.inc(2);
        for &method in &methods[1..] {
            bar.set_message(format!("{ds}/{kind}: {}", method.name()));
            match method {
                Method::BurnWeights => {
                    if let Some((ck_dir, ..)) = &trained {
                        for b in backends.iter().filter(|b| **b != Backend::Ndarray) {
                            let (row, run) = self.burn_weights_row(ck_dir, *b, &test, &batch_x)?;
                            add(&mut rows, row, run);
                        }
                    }
                }
                Method::F32 => {}
                Method::Qat(_) if !self.cfg.qat_covers(self.ds, kind) => {}
                m => {
                    let (mk, observer, granularity) = match m {
                        Method::Naive => (MethodKind::Naive, None, None),
                        Method::NaiveFixed => (MethodKind::NaiveFixed, None, None),
                        Method::Dynamic => (
                            MethodKind::Dynamic,
                            None,
                            Some(quantlab_quant::Granularity::PerChannel),
                        ),
                        Method::Static(o, g) | Method::StaticBits(o, g, _) => {
                            (MethodKind::Static, Some(o), Some(g))
                        }
                        Method::Qat(_) => (
                            MethodKind::Qat,
                            None,
                            Some(quantlab_quant::Granularity::PerChannel),
                        ),
                        Method::F32 | Method::BurnWeights => unreachable!("handled above"),
                    };
                    let mut qo = QuantizeOptions {
                        method: mk,
                        calib,
                        bits: m.widths(),
                        ..QuantizeOptions::default()
                    };
                    if let Some(o) = observer {
                        qo.observer = o;
                    }
                    if let Some(g) = granularity {
                        qo.granularity = g;
                    }
                    let q = if mk == MethodKind::Qat {
                        let (q, history) = self.qat(&net, qo.bits, calib)?;
                        qat_curves.push((m.name(), history));
                        q
                    } else {
                        quantize(&net, &qo, calib_x, &self.engine)?
                    };
                    let gran = granularity.map_or("-", |g| g.as_str());
                    let with_layers =
                        (mk.is_static() || mk == MethodKind::Dynamic).then_some(&float);
                    let (mut row, run) = self.quantlab_row(
                        &q,
                        &method.name(),
                        gran,
                        &test,
                        &batch_x,
                        &prov,
                        with_layers,
                        calib_x,
                    )?;
                    if mk == MethodKind::Naive {
                        row.kernel = "-".into();
                        row.note =
                            "weights rounded to 2^-7 steps, stored and computed in f32".into();
                    }
                    let all = self.all_cores_row(&q, &row, &batch_x)?;
                    let gpu = (mk.is_static() && self.devices.contains(&DeviceKind::Gpu))
                        .then(|| self.gpu_int8_row(&q, &row, &test))
                        .transpose()?;
                    add(&mut rows, row, Some(run));
                    if let Some((row, run)) = all {
                        add(&mut rows, row, Some(run));
                    }
                    if let Some((row, run)) = gpu {
                        add(&mut rows, row, run);
                    }
                }
            }
            bar.inc(1);
        }
        bar.set_message(format!(
            "{ds}/{kind}: timing {} rows in {} rounds",
            runners.len(),
            self.cfg.rounds
        ));
        let hush = self.opts.quiet.as_deref().map(quantlab_track::Gate::hush);
        time_in_rounds(
            &mut rows,
            &runners,
            &batch_x,
            BATCHES,
            &self.timing,
            self.cfg.rounds,
        )?;
        drop(hush);
        drop(runners);
        gpu_notes(&mut rows);
        let mut points = Vec::new();
        if let Some(sw) = sweep_cfg {
            // Bit-identical at any thread count, so the sweep may use every core.
            let engine = Engine {
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                ..self.engine
            };
            points = sweep(
                (ds, kind),
                &net,
                &self.splits.train,
                &test,
                rows[0].accuracy,
                sw,
                &engine,
                |m| bar.set_message(m.to_string()),
            )?;
            bar.inc(1);
        }
        let mut bit_points = Vec::new();
        if let Some(bs) = &self.cfg.bit_sweep {
            bar.set_message(format!("{ds}/{kind}: bit-width sweep {:?}", bs.widths));
            let engine = Engine {
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                ..self.engine
            };
            bit_points = bit_sweep(
                (ds, kind),
                &net,
                calib_x,
                calib,
                &test,
                rows[0].accuracy,
                (&bs.widths, bs.sqnr_samples),
                &engine,
            )?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (history, trained_now) = match trained {
            Some((_, history, trained_now, _)) => (history, trained_now),
            None => (History::default(), false),
        };
        let curve = Curve {
            dataset: ds.into(),
            model: kind.into(),
            trained_now,
            checkpoint: origin,
            history,
            qat: qat_curves,
        };
        Ok((rows, curve, points, bit_points))
    }

    #[allow(clippy::too_many_arguments)]
    fn quantlab_row(
        &self,
        m: &QuantModel,
        method: &str,
        granularity: &str,
        test: &LabeledSet,
        batch_x: &[Vec<f32>],
        prov: &serde_json::Value,
        float_for_layers: Option<&QuantModel>,
        calib_x: &[f32],
    ) -> Result<(Row, Runner)> {
        let mut row = Row::new(
            self.ds.as_str(),
            self.source.name(),
            method,
            "cpu",
            "quantlab",
        );
        row.granularity = granularity.into();
        row.kernel = if method == "f32" {
            format!("f32 {}", self.engine.path.f32_name())
        } else {
            self.engine.path.as_str().into()
        };
        let s = score(&self.engine, m, test)?;
        (row.accuracy, row.loss, row.samples) = (s.accuracy, s.loss, s.samples);
        if row.is_static_int8() && !self.splits.val.is_empty() {
            // What the headlines choose their method by (`row::headline`).
            row.val_accuracy = Some(score(&self.engine, m, &self.splits.val)?.accuracy);
        }
        row.params = m.network.params();
        let file = self.dir.join("models").join(format!(
            "{}-{}-{method}.safetensors",
            self.ds,
            self.source.name()
        ));
        row.size_bytes = export::save(m, prov.clone(), &file)?;
        let b = BATCHES;
        let session = self.engine.prepare(m)?;
        // The working set of a cold call (the session otherwise reuses its buffers).
        session.release_buffers();
        let (out, peak) = peak_during(|| session.run(&batch_x[1], b[1]));
        out?;
        row.peak_mem_bytes = peak.unwrap_or(0) as u64;
        if let Some(float) = float_for_layers {
            row.layers = layer_report(&self.engine, float, m, calib_x, None)?;
        }
        // One thread: timed pinned to one core, as `taskset -c 0` would.
        Ok((
            row,
            Runner::Engine {
                session: Box::new(session),
                pinned: true,
            },
        ))
    }

    /// The static model `m` on the GPU (quantlab's WGSL int8 kernels), from its CPU row
    /// `cpu`: accuracy, latency at batch 1 and 64 and, in the note, at a large batch where a
    /// GPU shows its throughput. Host transfers are included (quantize, upload, read-back),
    /// and the read-back synchronises the device before the clock stops.
    fn gpu_int8_row(
        &self,
        m: &QuantModel,
        cpu: &Row,
        test: &LabeledSet,
    ) -> Result<(Row, Option<Runner>)> {
        let mut row = Row {
            device: "gpu".into(),
            backend: "quantlab-gpu".into(),
            kernel: "wgsl dot4I8Packed".into(),
            layers: Vec::new(),
            peak_mem_bytes: 0,
            ..cpu.clone()
        };
        let gpu = match quantlab_gpu::GpuModel::new(m) {
            Ok(g) => g,
            Err(e) => {
                row.supported = false;
                row.note = e.to_string();
                return Ok((row, None));
            }
        };
        let s = quantlab_quant::score::score_with(test, |x, n| gpu.run(x, n))?;
        (row.accuracy, row.loss, row.samples) = (s.accuracy, s.loss, s.samples);
        row.latency_b4096_us = large_batch_latency(test, |x, n| {
            gpu.run(x, n)?;
            Ok(())
        })?;
        Ok((row, Some(Runner::Gpu(gpu))))
    }

    /// `row` measured again with every core (the engine splits the batch across them),
    /// when there is more than one and the engine would use them for this model.
    fn all_cores_row(
        &self,
        m: &QuantModel,
        row: &Row,
        batch_x: &[Vec<f32>],
    ) -> Result<Option<(Row, Runner)>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let engine = Engine {
            threads: cores,
            ..self.engine
        };
        let session = engine.prepare(m)?;
        if session.threads_for(BATCHES[1]) <= 1 {
            return Ok(None);
        }
        let mut r = Row {
            threads: cores,
            layers: Vec::new(),
            ..row.clone()
        };
        let b = BATCHES;
        session.release_buffers();
        let (out, peak) = peak_during(|| session.run(&batch_x[1], b[1]));
        out?;
        r.peak_mem_bytes = peak.unwrap_or(0) as u64;
        Ok(Some((
            r,
            Runner::Engine {
                session: Box::new(session),
                pinned: false,
            },
        )))
    }

    fn burn_row(
        &self,
        model: Classifier,
        method: &str,
        b: Backend,
        test: &LabeledSet,
        batch_x: &[Vec<f32>],
        size: u64,
    ) -> Result<(Row, Runner)> {
        let device = b.device()?;
        let dev = if b == Backend::Gpu { "gpu" } else { "cpu" };
        let mut row = Row::new(
            self.ds.as_str(),
            self.source.name(),
            method,
            dev,
            &format!("burn-{}", b.burn_name()),
        );
        row.threads = rayon::current_num_threads();
        let s = evaluate(&model, test, &device)?;
        (row.accuracy, row.loss, row.samples) = (s.accuracy, s.loss, s.samples);
        use burn::module::Module;
        row.params = model.num_params();
        row.size_bytes = size;
        if b == Backend::Gpu {
            row.latency_b4096_us =
                large_batch_latency(test, |x, n| Ok(burn_forward(&model, x, n, &device)?))?;
        } else {
            let (out, peak) =
                peak_during(|| burn_forward(&model, &batch_x[1], BATCHES[1], &device));
            out?;
            row.peak_mem_bytes = peak.unwrap_or(0) as u64;
        }
        Ok((
            row,
            Runner::Burn {
                model: Box::new(model),
                device,
            },
        ))
    }

    fn burn_weights_row(
        &self,
        ck_dir: &Path,
        b: Backend,
        test: &LabeledSet,
        batch_x: &[Vec<f32>],
    ) -> Result<(Row, Option<Runner>)> {
        let device = b.device()?;
        let (ck, model) = checkpoint::load(ck_dir, &device)?;
        let graph = model.to_graph(&ck.meta.input_shape)?;
        if b == Backend::Gpu {
            // burn's default wgpu store packs int8 into u32 and panics on a last dimension not
            // divisible by 4 (see BURN.md); report instead of reshaping the model.
            let bad: Vec<usize> = graph
                .ops
                .iter()
                .filter_map(|op| match op {
                    quantlab_quant::Op::Linear { out_features, .. } if out_features % 4 != 0 => {
                        Some(*out_features)
                    }
                    quantlab_quant::Op::Conv2d { kernel, .. } if kernel[1] % 4 != 0 => {
                        Some(kernel[1])
                    }
                    _ => None,
                })
                .collect();
            if !bad.is_empty() {
                let mut row = Row::new(
                    self.ds.as_str(),
                    self.source.name(),
                    "burn-weights",
                    "gpu",
                    "burn-wgpu",
                );
                row.supported = false;
                row.note = format!(
                    "unsupported: burn's wgpu int8 store (PackedU32) needs a last dimension divisible by 4; this model has {bad:?}"
                );
                return Ok((row, None));
            }
        }
        let q = burn_weights::quantize_weights(model, &device);
        use burn::module::Module;
        let size = q
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| TrainError::Checkpoint {
                path: ck_dir.into(),
                reason: e.to_string(),
            })?
            .len() as u64;
        let (mut row, run) = self.burn_row(q, "burn-weights", b, test, batch_x, size)?;
        row.granularity = "per-tensor".into();
        row.note = "int8 storage, float compute (burn dequantizes before each op)".into();
        Ok((row, Some(run)))
    }
}

/// burn's forward pass of `x` (`batch` samples) on `device`, logits read back to the host.
pub(crate) fn burn_forward(
    model: &Classifier,
    x: &[f32],
    batch: usize,
    device: &Device,
) -> std::result::Result<(), TrainError> {
    let d = x.len() / batch;
    let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [batch, d]), device);
    model
        .forward(t)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Backend(format!("{e:?}")))?;
    Ok(())
}

/// The GPU int8 rows' note, once every row is timed: how they compare with the CPU int8
/// row of the same method (one thread).
fn gpu_notes(rows: &mut [Row]) {
    let cpu: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.backend == "quantlab" && r.threads == 1)
        .map(|r| (r.method.clone(), r.latency_b64_us))
        .collect();
    for r in rows
        .iter_mut()
        .filter(|r| r.backend == "quantlab-gpu" && r.supported)
    {
        if let Some((_, us)) = cpu.iter().find(|(m, _)| *m == r.method) {
            r.note = format!(
                "host transfers included; b64 {:.3}x the CPU int8 row (1 thread)",
                us / r.latency_b64_us
            );
        }
    }
}

/// Median latency at batch [`GPU_LARGE_BATCH`] on the GPU, or `None` on a CPU emulator,
/// where such a batch takes minutes per row and says nothing about a GPU.
fn large_batch_latency(
    test: &LabeledSet,
    mut run: impl FnMut(&[f32], usize) -> Result<()>,
) -> Result<Option<f64>> {
    if quantlab_train::gpu().is_ok_and(|(_, a)| a.is_emulated()) {
        return Ok(None);
    }
    let big = cyclic(test, GPU_LARGE_BATCH);
    let few = Timing {
        warmup: 1,
        min_reps: 3,
        max_reps: 10,
        budget_s: 2.0,
    };
    Ok(Some(
        latency(&few, || run(&big, GPU_LARGE_BATCH))?.median_us,
    ))
}

/// The first `b` test samples (repeating the set if it is smaller).
fn cyclic(set: &LabeledSet, b: usize) -> Vec<f32> {
    (0..b)
        .flat_map(|i| set.sample(i % set.len()).to_vec())
        .collect()
}
