//! quantlab's runs in an MLflow file store (`./mlruns`, written by `quantlab-track`), laid
//! out the way an MLflow user compares float and int8:
//!
//! - one experiment per bench matrix (`quantlab bench: <config stem>`, `--quick` apart), one
//!   for ad-hoc `quantlab train` runs and one for `quantlab quantize`;
//! - a run per trained model: the training config as params, train loss, validation loss
//!   and accuracy and seconds per epoch (`step` = epoch), the best epoch (lowest validation
//!   loss), the float model's metrics, the
//!   calibration sweep (`step` = calibration images), REPORT.md, the plots and `train.toml`;
//! - a child run per measured row (`mlflow.parentRunId`): method, observer, granularity,
//!   activation dtype, calibration size as params; accuracy, loss, drop, size, size ratio,
//!   latencies, throughput, speed-ups and peak memory under the same metric names for the
//!   f32 and the int8 rows (so MLflow's compare view lines them up), per-layer SQNR and
//!   sensitivity with `step` = node index, and the model file.
//!
//! Tracking never stops the work: the callers print a failure as one warning line.

use std::path::Path;

use quantlab_quant::report::LayerReport;
use quantlab_track::{ExperimentId, Run, RunId, Status, Store};
use quantlab_train::{History, TrainConfig};

use crate::row::Row;
use crate::run::PairDone;
use crate::sweep::summarize;

/// Experiment of ad-hoc `quantlab train` runs.
pub const TRAIN_EXPERIMENT: &str = "quantlab train";
/// Experiment of ad-hoc `quantlab quantize` runs.
pub const QUANTIZE_EXPERIMENT: &str = "quantlab quantize";

/// What a bench left in the store.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Experiment name.
    pub experiment: String,
    /// Runs written (models and rows).
    pub runs: usize,
}

/// The command that opens `store` in MLflow's UI (3.13 and later need the flag to read a
/// file store).
pub fn ui_command(store: &Path) -> String {
    format!(
        "MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {}",
        store.display()
    )
}

/// The git commit of the working directory's repository, when there is one.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && s.len() == 40).then_some(s)
}

/// Tags every quantlab run carries; `commit` is [`git_commit`], looked up once per command.
pub fn base_tags(
    dataset: &str,
    model: &str,
    backend: &str,
    commit: Option<&str>,
) -> Vec<(String, String)> {
    let mut t = vec![
        ("dataset".to_string(), dataset.to_string()),
        ("model".to_string(), model.to_string()),
        ("backend".to_string(), backend.to_string()),
        ("mlflow.source.name".to_string(), "quantlab".to_string()),
        // Which split each figure comes from: `val_*` metrics and the best epoch from the
        // validation split, `accuracy`/`loss` (and drops) from the test split.
        ("selection_split".to_string(), "validation".to_string()),
        ("accuracy_split".to_string(), "test".to_string()),
    ];
    if let Some(c) = commit {
        t.push(("mlflow.source.git.commit".into(), c.to_string()));
    }
    t
}

/// Starts a run with `tags` (owned pairs, as [`base_tags`] gives them).
pub fn start(
    store: &Store,
    exp: &ExperimentId,
    name: &str,
    parent: Option<&Run>,
    tags: &[(String, String)],
) -> Result<Run, quantlab_track::Error> {
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    store.start_run(exp, name, parent.map(Run::id), &tags)
}

/// The training config as params (one per TOML key; nested keys joined with `.`).
pub fn log_train_config(run: &Run, cfg: &TrainConfig) -> Result<(), quantlab_track::Error> {
    let value = serde_json::to_value(cfg).unwrap_or_default();
    let mut flat = Vec::new();
    flatten("", &value, &mut flat);
    run.log_params(flat)
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Per-epoch curves (`step` = epoch), on the validation split, and the best epoch (lowest
/// validation loss). The test split is never logged per epoch: it is scored once, on the
/// selected model, and logged as the f32 row's accuracy.
pub fn log_history(run: &Run, h: &History) -> Result<(), quantlab_track::Error> {
    for e in &h.epochs {
        let step = e.epoch as i64;
        run.log_metric("train_loss", e.train_loss, step)?;
        run.log_metric("val_loss", e.val_loss, step)?;
        run.log_metric("val_accuracy", e.val_accuracy, step)?;
        run.log_metric("epoch_seconds", e.seconds, step)?;
    }
    if let Some(b) = h.best() {
        run.log_metric("best_epoch", b.epoch as f64, 0)?;
        run.log_metric("best_val_loss", b.val_loss, 0)?;
        run.log_metric("best_val_accuracy", b.val_accuracy, 0)?;
    }
    Ok(())
}

/// Per-layer SQNR and sensitivity (`step` = node index), and per-layer times.
pub fn log_layers(run: &Run, layers: &[LayerReport]) -> Result<(), quantlab_track::Error> {
    for l in layers {
        let step = l.node as i64;
        run.log_metric("layer_sqnr_db", l.sqnr_db, step)?;
        run.log_metric("layer_cosine", l.cosine, step)?;
        if let Some(s) = l.sensitivity_pp {
            run.log_metric("layer_sensitivity_pp", s, step)?;
        }
        run.log_metric("layer_f32_us", l.f32_us, step)?;
        run.log_metric("layer_int8_us", l.int8_us, step)?;
    }
    Ok(())
}

/// A row's measurements, under the same names for float and quantized rows.
fn log_row_metrics(run: &Run, r: &Row) -> Result<(), quantlab_track::Error> {
    let plain = [
        ("accuracy", r.accuracy),
        ("loss", r.loss),
        ("params", r.params as f64),
        ("size_bytes", r.size_bytes as f64),
        ("latency_b1_us", r.latency_b1_us),
        ("latency_b1_p90_us", r.latency_b1_p90_us),
        ("latency_b64_us", r.latency_b64_us),
        ("latency_b64_p90_us", r.latency_b64_p90_us),
        ("throughput_sps", r.throughput_sps),
        ("latency_b256_us", r.latency_b256_us),
        ("throughput_b256_sps", r.throughput_b256_sps),
        ("peak_mem_bytes", r.peak_mem_bytes as f64),
    ];
    for (k, v) in plain {
        run.log_metric(k, v, 0)?;
    }
    // The batch-64 latency of each timing round, step = round.
    for (i, &v) in r.latency_b64_rounds_us.iter().enumerate() {
        run.log_metric("latency_b64_round_us", v, i as i64)?;
    }
    let derived = [
        ("val_accuracy", r.val_accuracy),
        ("accuracy_drop_pp", r.accuracy_drop_pp),
        ("size_ratio", r.size_ratio),
        ("speedup_b64", r.speedup_b64),
        ("speedup_b64_min", r.speedup_b64_min),
        ("speedup_b64_max", r.speedup_b64_max),
        ("speedup_b1", r.speedup_b1),
        ("speedup_b64_vs_burn_flex", r.speedup_b64_vs_burn_flex),
        ("speedup_b64_vs_burn_ndarray", r.speedup_b64_vs_burn_ndarray),
        ("latency_b4096_us", r.latency_b4096_us),
        ("speedup_b4096", r.speedup_b4096),
    ];
    for (k, v) in derived {
        if let Some(v) = v {
            run.log_metric(k, v, 0)?;
        }
    }
    log_layers(run, &r.layers)
}

/// `(observer, act_dtype)` of a method name as the bench runs it.
fn method_params(method: &str) -> (String, &'static str) {
    match method.strip_prefix("static-") {
        Some(rest) => (
            rest.trim_end_matches("-per-channel")
                .trim_end_matches("-per-tensor")
                .to_string(),
            "u8-affine",
        ),
        None if method == "naive-fixed" => ("-".into(), "i8-symmetric"),
        None if method == "dynamic" => ("-".into(), "u8-affine (per batch)"),
        None => ("-".into(), "-"),
    }
}

/// A bench's runs, recorded pair by pair as the bench measures them ([`crate::run_with`]):
/// each model's run stays RUNNING until [`BenchRecorder::finish`] adds REPORT.md and the
/// plots (drawn at the end) and ends it; its rows' child runs are complete at once, so a
/// tracking server can be sent them while the bench goes on.
pub struct BenchRecorder {
    store: Store,
    exp: ExperimentId,
    experiment: String,
    commit: Option<String>,
    /// Each model's run, with its dataset and model.
    parents: Vec<(Run, String, String)>,
    runs: usize,
}

impl BenchRecorder {
    /// The experiment of `config`'s matrix (`quantlab bench: <stem>`, `(quick)` apart).
    pub fn open(
        store: &Store,
        config: &Path,
        quick: bool,
    ) -> Result<BenchRecorder, quantlab_track::Error> {
        let stem = config
            .file_stem()
            .map_or("bench".into(), |s| s.to_string_lossy().into_owned());
        let experiment = format!(
            "quantlab bench: {stem}{}",
            if quick { " (quick)" } else { "" }
        );
        let exp = store.experiment(&experiment)?;
        Ok(BenchRecorder {
            store: store.clone(),
            exp,
            experiment,
            commit: git_commit(),
            parents: Vec::new(),
            runs: 0,
        })
    }

    /// The experiment's id in the store.
    pub fn experiment_id(&self) -> &ExperimentId {
        &self.exp
    }

    /// Records one measured pair; returns the ids of the runs it wrote (the model's run
    /// first, still RUNNING, then its rows').
    pub fn pair(&mut self, p: &PairDone<'_>) -> Result<Vec<RunId>, quantlab_track::Error> {
        let (store, exp, commit) = (&self.store, &self.exp, self.commit.as_deref());
        let curve = p.curve;
        let (ds, model) = (curve.dataset.as_str(), curve.model.as_str());
        let mut tags = base_tags(ds, model, "quantlab", commit);
        let folder = p.dir.canonicalize().unwrap_or_else(|_| p.dir.to_path_buf());
        tags.push(("run_folder".into(), folder.display().to_string()));
        tags.push(("date".into(), p.date.to_owned()));
        let parent = start(store, exp, &format!("{ds}/{model}"), None, &tags)?;
        let mut ids = vec![parent.id().clone()];
        let ck = Path::new(&curve.checkpoint);
        if let Ok(cfg) =
            TrainConfig::from_toml_file(&ck.join(quantlab_train::checkpoint::CONFIG_FILE))
        {
            log_train_config(&parent, &cfg)?;
            parent.log_artifact(&ck.join(quantlab_train::checkpoint::CONFIG_FILE), None)?;
        }
        parent.set_tag("trained_now", &curve.trained_now.to_string())?;
        log_history(&parent, &curve.history)?;
        if let Some(f) = p.rows.iter().find(|x| x.is_reference()) {
            log_row_metrics(&parent, f)?;
        }
        for s in summarize(p.calib_sweep)
            .iter()
            .filter(|s| s.dataset == ds && s.model == model)
        {
            let step = s.size as i64;
            parent.log_metric(
                &format!("sweep_drop_pp.{}", s.observer),
                s.drop_mean_pp,
                step,
            )?;
            parent.log_metric(
                &format!("sweep_worst_drop_pp.{}", s.observer),
                s.drop_max_pp,
                step,
            )?;
            parent.log_metric(
                &format!("sweep_worst_layer_sqnr_db.{}", s.observer),
                s.worst_layer_sqnr_db,
                step,
            )?;
        }
        for row in p.rows {
            let child = self.row(p, &parent, row)?;
            ids.push(child);
        }
        self.runs += ids.len();
        self.parents.push((parent, ds.to_owned(), model.to_owned()));
        Ok(ids)
    }

    /// One row's child run of `parent`, ended.
    fn row(
        &self,
        p: &PairDone<'_>,
        parent: &Run,
        row: &Row,
    ) -> Result<RunId, quantlab_track::Error> {
        let (ds, model) = (p.curve.dataset.as_str(), p.curve.model.as_str());
        let name = match (row.backend == "quantlab", row.threads) {
            (true, 1) => row.method.clone(),
            (true, t) => format!("{} ({t} threads)", row.method),
            (false, _) => format!("{} ({}, {})", row.method, row.backend, row.device),
        };
        let mut tags = base_tags(ds, model, &row.backend, self.commit.as_deref());
        tags.push(("device".into(), row.device.clone()));
        let child = start(&self.store, &self.exp, &name, Some(parent), &tags)?;
        let (observer, act) = method_params(&row.method);
        child.log_params([
            ("method", row.method.as_str()),
            ("observer", observer.as_str()),
            ("granularity", row.granularity.as_str()),
            ("act_dtype", act),
            ("backend", row.backend.as_str()),
            ("device", row.device.as_str()),
            ("kernel", row.kernel.as_str()),
            ("threads", row.threads.to_string().as_str()),
        ])?;
        let calib = if row.method.starts_with("static-") {
            p.calib.to_string()
        } else {
            "0".into()
        };
        child.log_param("calib_size", calib)?;
        if !row.note.is_empty() {
            child.set_tag("note", &row.note)?;
        }
        if !row.supported {
            child.set_tag("supported", "false")?;
            let id = child.id().clone();
            child.end(Status::Finished)?;
            return Ok(id);
        }
        log_row_metrics(&child, row)?;
        // A QAT row's fine-tune: per-epoch curves (fake-quantized validation figures).
        if let Some((_, h)) = p
            .curve
            .qat
            .iter()
            .find(|(m, _)| *m == row.method && row.backend == "quantlab" && row.threads == 1)
        {
            log_history(&child, h)?;
        }
        if row.backend == "quantlab" {
            let file = p
                .dir
                .join("models")
                .join(format!("{ds}-{model}-{}.safetensors", row.method));
            if file.is_file() {
                child.log_artifact(&file, Some("model"))?;
            }
        }
        let id = child.id().clone();
        child.end(Status::Finished)?;
        Ok(id)
    }

    /// Ends every model's run FINISHED, with the run's REPORT.md and the plots of its
    /// dataset and model (both drawn in `dir` once the bench is over).
    pub fn finish(self, dir: &Path) -> Result<Recorded, quantlab_track::Error> {
        let plots: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("plots"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        for (parent, ds, model) in self.parents {
            parent.log_artifact(&dir.join("REPORT.md"), None)?;
            for p in plots.iter().filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                n.starts_with("training_curves")
                    || n.contains(&format!("-{ds}."))
                    || n.contains(&format!("-{ds}-{model}."))
            }) {
                parent.log_artifact(p, Some("plots"))?;
            }
            parent.end(Status::Finished)?;
        }
        Ok(Recorded {
            experiment: self.experiment,
            runs: self.runs,
        })
    }

    /// Ends every model's run FAILED (the bench stopped on an error); its rows' runs
    /// recorded so far stay as they are.
    pub fn fail(self) -> Result<Recorded, quantlab_track::Error> {
        for (parent, ..) in self.parents {
            parent.end(Status::Failed)?;
        }
        Ok(Recorded {
            experiment: self.experiment,
            runs: self.runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Curve;

    fn pair_rows() -> Vec<Row> {
        let mut f = Row::new("mnist", "mlp", "f32", "cpu", "quantlab");
        f.accuracy = 0.9;
        let mut q = Row::new(
            "mnist",
            "mlp",
            "static-minmax-per-channel",
            "cpu",
            "quantlab",
        );
        q.accuracy = 0.89;
        vec![f, q]
    }

    fn curve() -> Curve {
        Curve {
            dataset: "mnist".into(),
            model: "mlp".into(),
            trained_now: false,
            checkpoint: String::new(),
            history: History::default(),
            qat: Vec::new(),
        }
    }

    /// A pair's rows are complete when recorded, its model's run only once the bench ends:
    /// FINISHED with the report, or FAILED when the bench stopped on an error.
    #[test]
    fn a_pair_is_recorded_at_once_and_its_model_run_ended_by_the_bench() {
        for ok in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let store = Store::open(&tmp.path().join("mlruns")).unwrap();
            let dir = tmp.path().join("run");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("REPORT.md"), "# report").unwrap();
            let mut rec =
                BenchRecorder::open(&store, Path::new("configs/bench.toml"), true).unwrap();
            let (rows, curve) = (pair_rows(), curve());
            let ids = rec
                .pair(&PairDone {
                    dir: &dir,
                    date: "2026-11-30",
                    calib: 100,
                    rows: &rows,
                    curve: &curve,
                    calib_sweep: &[],
                })
                .unwrap();
            assert_eq!(ids.len(), 3);
            let status = |id: &RunId| {
                store
                    .local_runs(Some("quantlab bench: bench (quick)"))
                    .unwrap()
                    .into_iter()
                    .find(|r| &r.id == id)
                    .unwrap()
            };
            assert_eq!(status(&ids[0]).status, Status::Running);
            for child in &ids[1..] {
                let c = status(child);
                assert_eq!(
                    (c.status, c.parent.as_ref()),
                    (Status::Finished, Some(&ids[0]))
                );
            }
            let recorded = if ok { rec.finish(&dir) } else { rec.fail() }.unwrap();
            assert_eq!(recorded.runs, 3);
            let parent = status(&ids[0]);
            if ok {
                assert_eq!(parent.status, Status::Finished);
                assert!(parent.artifacts.iter().any(|(rel, _)| rel == "REPORT.md"));
            } else {
                assert_eq!(parent.status, Status::Failed);
            }
        }
    }
}
