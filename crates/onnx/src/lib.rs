//! `quantlab-onnx`: write ONNX model files (and read them back with clear
//! errors) without `protoc`, for quantlab's float and int8 (QDQ) exports.
//!
//! - [`proto`]: the subset of `onnx.proto` used, as hand-written prost messages;
//! - [`builder`]: [`GraphBuilder`] to assemble inputs, initializers and nodes
//!   into a [`ModelProto`] (IR 7, opset 13 by default);
//! - [`io`]: [`write`](fn@write) (atomic, no silent overwrite) and [`read`];
//! - [`check`](mod@check): [`check()`], the ONNX checker's rules that matter here;
//! - [`error`]: [`Error`], the one error type: an [`ErrorKind`] (I/O, decode,
//!   invalid model), what it is about (a path, tensor or node) and a message;
//! - [`export`]: a quantlab model ([`quantlab_quant::QuantModel`]) as ONNX, float or QDQ.
//!
//! ```
//! use quantlab_onnx::{Attr, GraphBuilder, DEFAULT_OPSET, check};
//! let mut g = GraphBuilder::new("linear");
//! g.batched_input("x", &[4]).batched_output("y", &[3]);
//! g.initializer("w", &[3, 4], &[0.5f32; 12])?;
//! g.initializer("b", &[3], &[0.0f32; 3])?;
//! g.node("fc", "Gemm", &["x", "w", "b"], &["y"], &[("transB", Attr::Int(1))]);
//! let model = g.finish(DEFAULT_OPSET, "quantlab");
//! check(&model)?;
//! # Ok::<(), quantlab_onnx::Error>(())
//! ```
//!
//! `scripts/check_onnx.py` runs written files through the `onnx` checker and
//! ONNX Runtime and compares them with a numpy reference.

#![warn(missing_docs)]

pub mod builder;
pub mod check;
pub mod error;
pub mod export;
pub mod io;
pub mod proto;

pub use builder::{Attr, BATCH_DIM, DEFAULT_OPSET, Dim, Element, GraphBuilder, IR_VERSION, tensor};
pub use check::{MIN_OPSET, check, check_graph};
pub use error::{Error, ErrorKind};
pub use export::{Exported, OnnxTarget, to_onnx};
pub use io::{decode, read, write};
pub use proto::{DataType, ModelProto};

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
