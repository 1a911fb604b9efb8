//! `quantlab track push`: sends the file store's runs that a tracking server does not have
//! yet (a server that was down during the run, or a store made before there was one).
//! Idempotent: the store remembers what each server got (`quantlab-push.jsonl`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use quantlab_track::{Store, resolve_store_dir};

use crate::mlflow_args::{TRACKING_URI_VAR, server};

/// `quantlab track ...`.
#[derive(Debug, Subcommand)]
pub enum TrackCmd {
    /// Send every run of the file store that the server does not have yet.
    Push {
        /// The tracking server, http(s)://host:port (default: $MLFLOW_TRACKING_URI).
        #[arg(long)]
        uri: Option<String>,
        /// The file store (default: $QUANTLAB_MLFLOW_DIR, else ./mlruns).
        #[arg(long)]
        mlflow_dir: Option<PathBuf>,
        /// Only this experiment's runs.
        #[arg(long)]
        experiment: Option<String>,
    },
}

/// Runs `quantlab track ...`.
pub fn run(cmd: TrackCmd) -> Result<()> {
    let TrackCmd::Push {
        uri,
        mlflow_dir,
        experiment,
    } = cmd;
    let root = resolve_store_dir(mlflow_dir);
    if !root.is_dir() {
        bail!("no MLflow file store at {}", root.display());
    }
    let Some(server) = server(uri.as_deref()) else {
        bail!("no tracking server: pass --uri http://host:port or set {TRACKING_URI_VAR}");
    };
    let store = Store::open(&root).with_context(|| format!("MLflow store {}", root.display()))?;
    let t = std::time::Instant::now();
    let r = store
        .push(&server, experiment.as_deref())
        .with_context(|| {
            format!(
                "pushing {} (what was sent is kept; run it again)",
                root.display()
            )
        })?;
    println!(
        "{} runs sent to {} ({} metric values, {} artifacts) in {:.1} s; {} already there",
        r.sent,
        server.uri(),
        r.metrics,
        r.artifacts,
        t.elapsed().as_secs_f64(),
        r.already
    );
    if r.running > 0 {
        println!(
            "{} of them still RUNNING in the store: pushed as they are, sent again next time",
            r.running
        );
    }
    Ok(())
}
