//! The data crate's error type: every variant names the file (or dataset) and the problem,
//! so a user can act on it without a backtrace.

use std::path::PathBuf;

/// Everything that can go wrong while finding, reading or validating a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A gzip stream was cut off or is not valid gzip.
    #[error("{path}: gzip data is corrupt or cut off ({source})")]
    Gzip {
        /// File that failed.
        path: PathBuf,
        /// Decoder error.
        source: std::io::Error,
    },
    /// The file holds no bytes at all.
    #[error("{path}: file is empty")]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// An IDX file starts with the wrong magic number.
    #[error("{path}: wrong IDX magic number 0x{found:08x}, expected 0x{expected:08x}")]
    BadMagic {
        /// File that failed.
        path: PathBuf,
        /// Magic number the format requires.
        expected: u32,
        /// Magic number found.
        found: u32,
    },
    /// The header is shorter than the format requires.
    #[error("{path}: header truncated: {found} bytes, the IDX header needs {expected}")]
    ShortHeader {
        /// File that failed.
        path: PathBuf,
        /// Header bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The body has fewer or more bytes than the header announces.
    #[error("{path}: {found} data bytes but the header announces {expected} ({what})")]
    SizeMismatch {
        /// File that failed.
        path: PathBuf,
        /// Bytes the header announces.
        expected: usize,
        /// Bytes present.
        found: usize,
        /// "truncated" or "trailing bytes".
        what: &'static str,
    },
    /// Dimensions in the header are not what this dataset needs.
    #[error("{path}: bad dimensions {found:?}, expected {expected}")]
    BadDims {
        /// File that failed.
        path: PathBuf,
        /// Human description of the expected dimensions.
        expected: String,
        /// Dimensions found.
        found: Vec<usize>,
    },
    /// Images and labels disagree on the number of samples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// Image file.
        images: PathBuf,
        /// Label file.
        labels: PathBuf,
        /// Images found.
        n_images: usize,
        /// Labels found.
        n_labels: usize,
    },
    /// A label is outside `0..num_classes`.
    #[error("{path}: label {label} at sample {index} is not below {num_classes}")]
    BadLabel {
        /// File that failed.
        path: PathBuf,
        /// Sample index.
        index: usize,
        /// Label found.
        label: i64,
        /// Number of classes.
        num_classes: usize,
    },
    /// A CSV row is malformed.
    #[error("{path}: line {line}: {problem}")]
    Csv {
        /// File that failed.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The dataset could not be found in any of the places searched.
    #[error("dataset {name} not found; looked in: {searched}. {hint}")]
    NotFound {
        /// Dataset name.
        name: String,
        /// The directories searched, comma separated.
        searched: String,
        /// How to get the data.
        hint: String,
    },
    /// A parameter (of a generator or split) is out of range.
    #[error("invalid {param}: {problem}")]
    Invalid {
        /// Parameter name.
        param: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The file would make quantlab hold more than a reader's limit.
    #[error("{path}: {what} is over quantlab's limit of {limit} bytes")]
    TooLarge {
        /// File that failed.
        path: PathBuf,
        /// What is too large.
        what: &'static str,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A `.npy` file is not one quantlab can read (header, dtype or values).
    #[error("{path}: {problem}")]
    Npy {
        /// File that failed.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The dataset name is not one quantlab knows.
    #[error("unknown dataset {0:?}; known: mnist, fashion-mnist, digits, synthetic")]
    UnknownDataset(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DataError>;
