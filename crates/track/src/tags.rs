//! Tags MLflow itself sets on runs, which the UI reads.
//!
//! Their own module (not `store.rs`) because both starting a run (`store.rs`) and changing one
//! (`run.rs`) use them, and `store.rs` already depends on `run.rs`.

/// The run's display name (also `run_name` in meta.yaml).
pub const RUN_NAME: &str = "mlflow.runName";
/// The parent run's id; the UI nests the run under it.
pub const PARENT_RUN_ID: &str = "mlflow.parentRunId";
/// Who ran it (also `user_id` in meta.yaml).
pub const USER: &str = "mlflow.user";
/// The program that ran it.
pub const SOURCE_NAME: &str = "mlflow.source.name";
/// `LOCAL` for a program run on this machine.
pub const SOURCE_TYPE: &str = "mlflow.source.type";
/// The git commit of the source, shown in the UI when set.
pub const GIT_COMMIT: &str = "mlflow.source.git.commit";
/// The run's description (markdown), shown and edited in the UI.
pub const NOTE: &str = "mlflow.note.content";
