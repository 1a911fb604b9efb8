//! The GPU crate's error type.

/// What can go wrong putting a model on the GPU or running it there.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// wgpu found no adapter on this machine (the one condition a test may skip on).
    #[error("no wgpu device on this machine")]
    NoDevice,
    /// A model or setting the GPU path does not take.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// What.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// Input data does not fit the model or layer.
    #[error("input has {found} values, expected {expected} ({batch} samples)")]
    InputSize {
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
        /// Samples.
        batch: usize,
    },
    /// The device failed or returned something unreadable.
    #[error("gpu: {0}")]
    Graph(String),
    /// Preparing the model's plan failed.
    #[error(transparent)]
    Quant(#[from] quantlab_quant::QuantError),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, GpuError>;
