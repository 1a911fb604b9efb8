//! Records quantlab's runs in an MLflow **file store** (the `./mlruns` directory layout that
//! MLflow's `FileStore` reads), written by Rust alone: no Python, no server, no network.
//!
//! Why a file store: training runs on machines where nothing but the disk is certain, and
//! `mlflow ui --backend-store-uri ./mlruns` (or `mlflow.search_runs`) reads the directory
//! afterwards, anywhere it is copied to. The layout follows MLflow 3.17/3.18's
//! `mlflow/store/tracking/file_store.py` field for field (see `meta.rs`, `metric_line.rs`).
//! MLflow 3.13+ opens a file store only with `MLFLOW_ALLOW_FILE_STORE=true` set, and
//! `mlflow migrate-filestore --source DIR --target sqlite:///mlflow.db` converts one to its
//! database backend.
//!
//! ```
//! use quantlab_track::{Status, Store};
//!
//! # fn main() -> Result<(), quantlab_track::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("mlruns");
//! let store = Store::open(&dir)?; // e.g. resolve_store_dir(cli.mlflow_dir)
//! let exp = store.experiment("mnist/mlp")?;
//! let run = store.start_run(&exp, "train", None, &[("dataset", "mnist")])?;
//! run.log_params([("lr", "0.01"), ("epochs", "5")])?;
//! for epoch in 0..5 {
//!     run.log_metric("loss", 1.0 / (epoch + 1) as f64, epoch)?;
//! }
//! let child = store.start_run(&exp, "int8", Some(run.id()), &[])?;
//! child.log_artifact_bytes("report.json", b"{}")?;
//! child.end(Status::Finished)?;
//! run.end(Status::Finished)?;
//! # Ok(()) }
//! ```
//!
//! A team's **tracking server** gets the same runs afterwards: [`Store::push`] sends every
//! run of the store that a [`Server`] (MLflow's REST API) does not have yet, idempotently
//! (`quantlab-push.jsonl` in the store remembers what each server got), so a server that
//! was down loses nothing. [`Store::push_in_background`] streams runs while the command
//! still works, held off by a [`Gate`] while it times something.
//!
//! Tracking is usually optional to the program doing the work: every error names the path
//! or the name it concerns on one line, so a caller can print it as a warning and go on.
//! Several threads and processes may write to one store at once (see [`Store::experiment`]
//! and `fsio.rs`).

#![warn(missing_docs)]

mod context;
mod error;
mod experiment;
mod fsio;
mod gate;
mod ids;
mod local;
mod location;
mod meta;
mod metric_line;
mod push;
mod run;
mod server;
mod status;
mod store;
pub mod tags;
mod uri;
mod validate;
mod yaml;

pub use error::Error;
pub use gate::{Gate, Hush};
pub use ids::{ExperimentId, RunId};
pub use local::{LocalRun, MetricPoint};
pub use location::{DEFAULT_DIR, ENV_VAR, resolve_store_dir, resolve_store_dir_from};
pub use meta::experiment_meta_from_bytes;
pub use push::{Background, PUSH_RECORD, PushReport};
pub use run::Run;
pub use server::{Server, is_server_uri};
pub use status::Status;
pub use store::Store;
pub use validate::{MAX_EXPERIMENT_NAME_LEN, MAX_KEY_LEN, MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN};

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
