//! The one error of this crate: a kernel path asked for by name that is unknown or that this
//! CPU cannot run.

/// A kernel path that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinalgError {
    /// No path has this name.
    UnknownPath {
        /// The name given.
        name: String,
        /// The names this build knows.
        known: String,
    },
    /// The path exists but this CPU lacks its instructions.
    Unavailable {
        /// The path's name.
        name: &'static str,
    },
    /// `QUANTLAB_KERNEL` holds a path that cannot be used.
    Env(Box<LinalgError>),
}

impl std::fmt::Display for LinalgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinalgError::UnknownPath { name, known } => {
                write!(f, "unknown kernel {name:?}; known: {known}")
            }
            LinalgError::Unavailable { name } => write!(f, "{name} is not supported by this CPU"),
            LinalgError::Env(e) => write!(f, "invalid {}: {e}", crate::KERNEL_ENV),
        }
    }
}

impl std::error::Error for LinalgError {}
