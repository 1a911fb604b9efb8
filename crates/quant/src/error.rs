//! The quant crate's error type.

use std::path::PathBuf;

/// What can go wrong quantizing, running, exporting or reading a quantized model.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// An op of a graph does not fit the shape flowing into it.
    #[error("graph op {index} ({op}) expects {expected}, got input shape {found:?}")]
    GraphShape {
        /// Position of the op.
        index: usize,
        /// Op kind.
        op: &'static str,
        /// What it needs.
        expected: String,
        /// Shape it got.
        found: Vec<usize>,
    },
    /// The graph cannot be quantized as asked.
    #[error("graph: {0}")]
    Graph(String),
    /// A kernel path asked for that is unknown or that this CPU cannot run.
    #[error(transparent)]
    Kernel(#[from] quantlab_linalg::LinalgError),
    /// Input data does not fit the network.
    #[error("input has {found} values, expected {expected} ({batch} samples)")]
    InputSize {
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
        /// Samples.
        batch: usize,
    },
    /// A setting is out of range.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// What.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// A quantized model file is unreadable or inconsistent.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, QuantError>;
