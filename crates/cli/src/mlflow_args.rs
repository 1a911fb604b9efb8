//! `--mlflow-dir` / `--no-mlflow`, shared by `train`, `quantize` and `bench`: every run is
//! also recorded in an MLflow file store unless switched off, and a store that cannot be
//! written is one warning line, never a failed run.

use std::path::PathBuf;

use clap::Args;
use quantlab_bench::tracking;
use quantlab_track::{Run, Status, Store, resolve_store_dir};

/// Where (and whether) runs are recorded in MLflow.
#[derive(Debug, Clone, Args)]
pub struct MlflowArgs {
    /// MLflow file store to record the run in (default: $QUANTLAB_MLFLOW_DIR, else ./mlruns).
    #[arg(long)]
    mlflow_dir: Option<PathBuf>,
    /// Do not record the run in MLflow.
    #[arg(long, conflicts_with = "mlflow_dir")]
    no_mlflow: bool,
}

impl MlflowArgs {
    /// The open store and its folder, or `None` when switched off or unwritable (warned).
    pub fn open(&self) -> Option<(Store, PathBuf)> {
        if self.no_mlflow {
            return None;
        }
        let root = resolve_store_dir(self.mlflow_dir.clone());
        match Store::open(&root) {
            Ok(s) => Some((s, root)),
            Err(e) => {
                warn(&e);
                None
            }
        }
    }
}

/// The one-line warning for a tracking failure.
pub fn warn(e: &dyn std::fmt::Display) {
    eprintln!("warning: MLflow tracking skipped: {e} (the run's own results are written)");
}

/// Starts a run in `experiment` with quantlab's tags for `(dataset, model, backend)`, logs
/// through `f`, and ends it (FAILED if `f` failed, with a warning).
pub fn record(
    args: &MlflowArgs,
    experiment: &str,
    name: &str,
    (dataset, model, backend): (&str, &str, &str),
    f: impl FnOnce(&Run) -> Result<(), quantlab_track::Error>,
) {
    let Some((store, root)) = args.open() else {
        return;
    };
    let go = || -> Result<String, quantlab_track::Error> {
        let exp = store.experiment(experiment)?;
        let commit = tracking::git_commit();
        let tags = tracking::base_tags(dataset, model, backend, commit.as_deref());
        let run = tracking::start(&store, &exp, name, None, &tags)?;
        let id = run.id().to_string();
        match f(&run) {
            Ok(()) => run.end(Status::Finished)?,
            Err(e) => {
                let _ = run.end(Status::Failed);
                return Err(e);
            }
        }
        Ok(id)
    };
    match go() {
        Ok(id) => println!(
            "MLflow: run {id} in experiment \"{experiment}\" of {}",
            root.display()
        ),
        Err(e) => warn(&e),
    }
}
