//! `quantlab-import`: a float ONNX classifier, as PyTorch's `torch.onnx.export` writes it,
//! turned into quantlab's [`Graph`], so that every observer, the per-layer report,
//! `--max-drop`, the engine and the bench work on a model trained elsewhere.
//!
//! The file is parsed by burn's `onnx-ir` (typed nodes with their weights; it already turns
//! `Gemm` and `MatMul` + `Add` into `Linear`), then mapped op by op:
//!
//! - `Conv` (dilation 1, one group, symmetric padding) and `Gemm`/`MatMul` (+ `Add`) become
//!   dense layers; a `BatchNormalization` after one is folded into its weights and bias;
//! - `Relu`, `MaxPool` (no padding), `Flatten` and a `Reshape` to `[batch, features]` map
//!   one to one; `Dropout` and `Identity` vanish; a final `Softmax` is dropped (argmax and
//!   accuracy do not change; the note says so);
//! - anything else is an error naming the operator, the node and what is supported: never a
//!   half-imported model.
//!
//! onnx-ir renames every node; the user's names are read back from the file
//! ([`Imported::names`]) so that reports can show them.

#![warn(missing_docs)]

mod convert;
mod error;
mod fold;
mod names;

use std::path::{Path, PathBuf};

pub use error::ImportError;
use quantlab_quant::Graph;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ImportError>;

/// The operators the import maps, for error messages.
pub const SUPPORTED: &str = "Conv (dilation 1, symmetric padding, one group or depthwise), Gemm, MatMul (+ Add), \
     BatchNormalization (after Conv or Gemm/MatMul), Relu, Clip from 0 (ReLU6, after Conv or \
     Gemm/MatMul), MaxPool and AveragePool (no padding), \
     GlobalAveragePool, Add of an earlier value (a residual block's identity shortcut), Flatten, \
     Reshape to [batch, features], Dropout, Identity, and a final Softmax";

/// A model read from an ONNX file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The file.
    pub path: PathBuf,
    /// The float graph (BatchNorm folded, Softmax dropped).
    pub graph: Graph,
    /// Per op of `graph`: the name of the node in the file it came from (onnx-ir's name where
    /// the file gives none).
    pub names: Vec<String>,
    /// What the import changed, one line each (folded BatchNorms, a dropped Softmax).
    pub notes: Vec<String>,
    /// The file's default-domain opset.
    pub opset: i64,
    /// The graph input's name.
    pub input_name: String,
}

/// Reads `path`: errors name the file, and the node and operator where one is at fault.
pub fn import_onnx(path: &Path) -> Result<Imported> {
    let bytes = std::fs::read(path).map_err(|e| {
        ImportError::new(
            path,
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => format!("cannot read it: {e}"),
            },
        )
    })?;
    import_onnx_bytes(path, &bytes)
}

/// As [`import_onnx`] for a file already in memory; `path` names it in errors.
pub fn import_onnx_bytes(path: &Path, bytes: &[u8]) -> Result<Imported> {
    // quantlab's own decoder first: empty, truncated and corrupt files get its messages, and
    // it keeps the names onnx-ir replaces.
    let proto =
        quantlab_onnx::decode(path, bytes).map_err(|e| ImportError::new(path, e.to_string()))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| ImportError::new(path, "the file declares no ONNX opset"))?;
    let graph = onnx_ir::OnnxGraphBuilder::new()
        .parse_bytes(bytes)
        .map_err(|e| ImportError::new(path, format!("onnx-ir cannot read it: {e}")))?;
    let original = names::Originals::new(&proto);
    convert::convert(path, &graph, original, opset)
}
