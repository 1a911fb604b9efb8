//! The bench crate's error type.

use std::path::PathBuf;

/// What can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Data problem.
    #[error(transparent)]
    Data(#[from] quantlab_data::DataError),
    /// Model problem.
    #[error(transparent)]
    Model(#[from] quantlab_models::ModelError),
    /// Training or checkpoint problem.
    #[error(transparent)]
    Train(#[from] quantlab_train::TrainError),
    /// Quantization problem.
    #[error(transparent)]
    Quant(#[from] quantlab_quant::QuantError),
    /// GPU int8 problem.
    #[error(transparent)]
    Gpu(#[from] quantlab_gpu::GpuError),
    /// The bench config is invalid.
    #[error("{path}: {message}")]
    Config {
        /// Config file.
        path: PathBuf,
        /// What is wrong (names the key).
        message: String,
    },
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// A saved run is unreadable.
    #[error("{path}: {message}")]
    Results {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--device gpu` asked for, and no wgpu device found.
    #[error("--device gpu: {0}")]
    NoGpu(String),
    /// Plotting failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// Output file.
        path: PathBuf,
        /// Backend message.
        message: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, BenchError>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}
