//! `--mlflow-dir` / `--mlflow-uri` / `--no-mlflow`, shared by `train`, `quantize` and
//! `bench`: every run is also recorded in an MLflow file store unless switched off, and
//! sent to a tracking server when one is named (`--mlflow-uri` or `MLFLOW_TRACKING_URI`).
//! A store that cannot be written or a server that cannot be reached is one warning line,
//! never a failed run; runs a server did not get stay in the store for `quantlab track push`.

use std::path::{Path, PathBuf};

use clap::Args;
use quantlab_bench::tracking;
use quantlab_track::{PushReport, Run, Server, Status, Store, is_server_uri, resolve_store_dir};

/// MLflow's variable naming the tracking server (or store) its clients log to.
pub const TRACKING_URI_VAR: &str = "MLFLOW_TRACKING_URI";

/// Where (and whether) runs are recorded in MLflow.
#[derive(Debug, Clone, Args)]
pub struct MlflowArgs {
    /// MLflow file store to record the run in (default: $QUANTLAB_MLFLOW_DIR, else ./mlruns).
    #[arg(long)]
    mlflow_dir: Option<PathBuf>,
    /// MLflow tracking server to send the runs to, http(s)://host:port (default:
    /// $MLFLOW_TRACKING_URI when it is one). Runs are recorded in the file store first and
    /// sent as they are made (the bench) or when the command ends; credentials come from
    /// MLFLOW_TRACKING_USERNAME/_PASSWORD or MLFLOW_TRACKING_TOKEN.
    #[arg(long)]
    mlflow_uri: Option<String>,
    /// Do not record the run in MLflow.
    #[arg(long, conflicts_with_all = ["mlflow_dir", "mlflow_uri"])]
    no_mlflow: bool,
}

/// The tracking server named by `flag`, else by `MLFLOW_TRACKING_URI` when that is an
/// http(s) URI (MLflow's other forms, a path or `file:`, name a file store: use
/// `--mlflow-dir`). `None` when there is none; a bad URI is a warning and `None`.
pub fn server(flag: Option<&str>) -> Option<Server> {
    let uri = match flag {
        Some(u) => u.to_owned(),
        None => std::env::var(TRACKING_URI_VAR)
            .ok()
            .filter(|u| is_server_uri(u))?,
    };
    match Server::new(&uri) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("warning: MLflow server not used: {e}");
            None
        }
    }
}

/// Sends `experiment`'s runs that `server` does not have yet, printing one line either way.
pub fn send(server: &Server, store: &Store, root: &Path, experiment: &str) {
    send_rest(server, store, root, experiment, None);
}

/// [`send`] after a background push (`streamed`: what it sent while the command worked,
/// and the error that stopped it, if one did): the line says how much was left for the end.
pub fn send_rest(
    server: &Server,
    store: &Store,
    root: &Path,
    experiment: &str,
    streamed: Option<(PushReport, Option<quantlab_track::Error>)>,
) {
    let t = std::time::Instant::now();
    match store.push(server, Some(experiment)) {
        Ok(r) => {
            let secs = t.elapsed().as_secs_f64();
            match streamed {
                None => println!(
                    "MLflow: {} runs ({} metric values, {} artifacts) sent to {} in {secs:.1} s, \
                     experiment \"{experiment}\"",
                    r.sent,
                    r.metrics,
                    r.artifacts,
                    server.uri(),
                ),
                Some((early, _)) => {
                    // A run sent while still RUNNING locally was sent again to finish it.
                    let before = early.sent - early.running;
                    println!(
                        "MLflow: {} runs ({} metric values, {} artifacts) sent to {}: {before} \
                         while the bench ran, the rest in {secs:.1} s after it, experiment \
                         \"{experiment}\"",
                        before + r.sent,
                        early.metrics + r.metrics,
                        early.artifacts + r.artifacts,
                        server.uri(),
                    )
                }
            }
        }
        Err(e) => eprintln!(
            "warning: {e}; the runs are kept in {}: send them later with \
             `quantlab track push --uri {} --mlflow-dir {}`",
            root.display(),
            server.uri(),
            root.display()
        ),
    }
}

impl MlflowArgs {
    /// The tracking server to send runs to, if any (see [`server`]).
    pub fn server(&self) -> Option<Server> {
        if self.no_mlflow {
            return None;
        }
        server(self.mlflow_uri.as_deref())
    }

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
        Ok(id) => {
            println!(
                "MLflow: run {id} in experiment \"{experiment}\" of {}",
                root.display()
            );
            if let Some(server) = args.server() {
                send(&server, &store, &root, experiment);
            }
        }
        Err(e) => warn(&e),
    }
}
