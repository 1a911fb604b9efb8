//! The crate's one error type.
//!
//! Callers typically turn any tracking error into a one-line warning and go on training, so
//! every variant prints on one line (user-supplied strings are shown `{:?}`-quoted, which
//! escapes newlines) and every variant that comes from the file system names the path.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while recording into an MLflow file store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed; `op` says which (e.g. "create directory").
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A name or key that MLflow would reject (or could not read back).
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What kind of name: "metric key", "param key", "tag key", "experiment name", ...
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it is rejected.
        reason: String,
    },

    /// A param was logged twice with different values; MLflow params are immutable.
    #[error(
        "param {key:?} of run {run_id} already has value {old:?}; MLflow params cannot change \
         (attempted {new:?})"
    )]
    ParamChanged {
        /// The run.
        run_id: String,
        /// The param key.
        key: String,
        /// The value already stored.
        old: String,
        /// The value that was refused.
        new: String,
    },

    /// The experiment exists only in the store's `.trash` (deleted in MLflow).
    #[error(
        "experiment {name:?} exists but is deleted (id {id}, at {}); restore it in MLflow or \
         remove it from .trash",
        path.display()
    )]
    ExperimentDeleted {
        /// The experiment name.
        name: String,
        /// Its id.
        id: String,
        /// Its directory inside `.trash`.
        path: PathBuf,
    },

    /// No active experiment with this id in the store.
    #[error("no active experiment {id} in {}", root.display())]
    NoSuchExperiment {
        /// The id asked for.
        id: String,
        /// The store root.
        root: PathBuf,
    },

    /// The experiment's artifact location is not on the local file system (e.g. `s3://` or
    /// `mlflow-artifacts:`), so this crate cannot write the run's artifacts.
    #[error(
        "experiment {id} stores artifacts at {location:?}, which is not a local path ({})",
        path.display()
    )]
    NonLocalArtifacts {
        /// The experiment id.
        id: String,
        /// The `artifact_location` from its meta.yaml.
        location: String,
        /// The meta.yaml it came from.
        path: PathBuf,
    },

    /// A meta.yaml (or other store file) could not be understood.
    #[error("malformed {}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tracking server could not be reached (connection, timeout, 429/5xx after the
    /// retries, or an answer that is not MLflow's).
    #[error("MLflow server {uri} unreachable: {reason}")]
    Unreachable {
        /// Server URI, without credentials.
        uri: String,
        /// What happened.
        reason: String,
    },
    /// A tracking server refused a call (4xx), with MLflow's error code and message.
    #[error("MLflow server {uri} refused: {message} (HTTP {status} {code})")]
    Server {
        /// Server URI, without credentials.
        uri: String,
        /// HTTP status (0 when refused before any request).
        status: u16,
        /// MLflow's `error_code`, e.g. `INVALID_PARAMETER_VALUE`.
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// A caller-supplied argument conflicts with another one.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps an `io::Error` with what was being done and to which path.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_the_path_on_one_line() {
        let e = Error::io("create directory", "/x/y")(io::Error::from(io::ErrorKind::NotFound));
        let s = e.to_string();
        assert!(s.starts_with("cannot create directory /x/y: "), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn user_strings_are_quoted_so_messages_stay_one_line() {
        let e = Error::InvalidName {
            what: "tag key",
            name: "a\nb".into(),
            reason: "bad".into(),
        };
        assert_eq!(e.to_string(), r#"invalid tag key "a\nb": bad"#);
    }
}
