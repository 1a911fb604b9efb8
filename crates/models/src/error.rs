//! The models crate's error type.

/// What can go wrong building or running a model description.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An op does not fit the shape flowing into it.
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
    /// Input buffer has the wrong length.
    #[error("input has {found} values, expected {expected}")]
    InputSize {
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The model cannot be built for this input.
    #[error("{model} cannot take input of shape {shape:?}: {reason}")]
    Unsupported {
        /// Model kind.
        model: &'static str,
        /// The per-sample input shape.
        shape: Vec<usize>,
        /// Why.
        reason: String,
    },
    /// A parameter could not be read back from the device.
    #[error("reading parameter {name} from the device: {reason}")]
    Readback {
        /// Parameter name.
        name: String,
        /// Backend message.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
