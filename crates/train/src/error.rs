//! The train crate's error type.

use std::path::PathBuf;

/// What can go wrong configuring, training, evaluating or (re)loading a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Dataset problem.
    #[error(transparent)]
    Data(#[from] quantlab_data::DataError),
    /// Model problem.
    #[error(transparent)]
    Model(#[from] quantlab_models::ModelError),
    /// A config file could not be parsed (unknown key, wrong type, ...).
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Parser message (names the key).
        message: String,
    },
    /// A config value is out of range.
    #[error("invalid {key} = {value}: {reason}")]
    Invalid {
        /// Key name.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A checkpoint is missing, truncated, corrupt or inconsistent.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backend failed (device lost, read-back error).
    #[error("backend error: {0}")]
    Backend(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
