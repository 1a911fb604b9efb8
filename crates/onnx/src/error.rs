//! The crate's one error type: what kind of failure it is, what it is about
//! (a file, a tensor, a node), and what went wrong.
//!
//! Every caller turns these errors into text, so the message is the payload:
//! it names the problem with the expected and found values. The [`ErrorKind`]
//! is there for the few places that branch on the kind of failure (a file that
//! cannot be read, bytes that are not a model, a model that breaks a rule);
//! [`Error::context`] says which file, tensor or node it is about.

use std::path::Path;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file system: a missing file or folder, a file that is not to be
    /// overwritten, a path that names no file, or a failed read, write or
    /// rename. The context is the path.
    Io,
    /// The bytes are not an ONNX model: empty, truncated or corrupt protobuf,
    /// or a protobuf without a graph. The context is the path.
    Decode,
    /// A model, or a tensor being built, breaks a rule: the data does not fit
    /// the dims, or the checker rejects it. The context names the model part.
    Invalid,
}

/// Everything that can go wrong in this crate; prints as `context: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {message}")]
pub struct Error {
    kind: ErrorKind,
    context: String,
    message: String,
}

impl Error {
    /// An error of `kind` about `context` (e.g. `node 'fc' (Gemm)`).
    pub(crate) fn new(
        kind: ErrorKind,
        context: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            context: context.into(),
            message: message.into(),
        }
    }

    /// An [`ErrorKind::Io`] error about `path`.
    pub(crate) fn io(path: &Path, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, path.display().to_string(), message)
    }

    /// An [`ErrorKind::Decode`] error about `path`.
    pub(crate) fn decode(path: &Path, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Decode, path.display().to_string(), message)
    }

    /// An [`ErrorKind::Invalid`] error about `context`.
    pub(crate) fn invalid(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, context, message)
    }

    /// A tensor whose dims have a negative entry, or whose size overflows.
    pub(crate) fn invalid_dims(context: impl Into<String>, dims: &[i64]) -> Self {
        Self::invalid(
            context,
            format!("invalid dims {dims:?} (a dim is negative, or the size overflows)"),
        )
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What it is about: a path, or a model part such as `model`,
    /// `graph 'g'`, `initializer 'w'`, `tensor 'w'`, `node 'fc' (Gemm)`.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// What went wrong, with the expected and found values.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_context_then_message() {
        let e = Error::invalid("tensor 'w'", "dims [2] need 2 elements, got 1");
        assert_eq!(e.to_string(), "tensor 'w': dims [2] need 2 elements, got 1");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(e.context(), "tensor 'w'");
        assert_eq!(e.message(), "dims [2] need 2 elements, got 1");
        let e = Error::io(Path::new("out/m.onnx"), "already exists");
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::Io, "out/m.onnx: already exists")
        );
    }

    #[test]
    fn is_a_thread_safe_std_error() {
        fn boxed<E: std::error::Error + Send + Sync + 'static>(
            e: E,
        ) -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(e)
        }
        let e = boxed(Error::decode(Path::new("m.onnx"), "is empty (0 bytes)"));
        assert!(e.source().is_none());
        assert_eq!(e.to_string(), "m.onnx: is empty (0 bytes)");
    }
}
