//! The models crate's error type.

/// What can go wrong building or running a model description.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The graph the model describes does not fit together.
    #[error(transparent)]
    Graph(#[from] quantlab_quant::QuantError),
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
