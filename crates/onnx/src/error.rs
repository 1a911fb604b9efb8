//! The crate's one error type, so that callers match on a single enum whether a
//! model failed to build, to be written, to be read, or to pass the checker.
//!
//! Every variant names what it is about (a path, a tensor, a node) and carries
//! the expected and found values as fields, so tests and callers can match on
//! structure instead of parsing messages.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- building -------------------------------------------------------
    /// An initializer's data does not have `product(dims)` elements.
    #[error("tensor '{tensor}': dims {dims:?} need {expected} elements, got {found}")]
    ElementCount {
        /// The tensor's name.
        tensor: String,
        /// The dims given.
        dims: Vec<i64>,
        /// `product(dims)`.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A tensor has a negative dimension, or its size overflows `usize`.
    #[error("tensor '{tensor}': invalid dims {dims:?} (negative, or the size overflows)")]
    InvalidDims {
        /// The tensor's name.
        tensor: String,
        /// The dims found.
        dims: Vec<i64>,
    },

    // ---- writing and reading files ---------------------------------------
    /// The folder a model is to be written into does not exist.
    #[error("cannot write {path}: folder {parent} does not exist")]
    ParentMissing {
        /// The file asked for.
        path: PathBuf,
        /// Its missing parent folder.
        parent: PathBuf,
    },
    /// The file exists and overwriting was not allowed.
    #[error("{path} already exists; refusing to overwrite it (pass overwrite = true)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The path names no file (it ends in `..` or is a root).
    #[error("{path} does not name a file")]
    NotAFilePath {
        /// The path given.
        path: PathBuf,
    },
    /// The model file does not exist.
    #[error("ONNX model {path} does not exist")]
    NotFound {
        /// The file asked for.
        path: PathBuf,
    },
    /// The model file has no bytes.
    #[error("ONNX model {path} is empty (0 bytes)")]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// The bytes are not a valid protobuf `ModelProto`: truncated or corrupt.
    #[error(
        "ONNX model {path} ({len} bytes) does not decode, it is truncated or corrupt: {source}"
    )]
    Decode {
        /// The file read.
        path: PathBuf,
        /// Its size in bytes.
        len: usize,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// The bytes decode but hold no graph: not an ONNX model.
    #[error("{path} decodes as protobuf but holds no graph, so it is not an ONNX model")]
    NoGraph {
        /// The file read.
        path: PathBuf,
    },
    /// Any other I/O failure, with what was being done.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    // ---- checker: model level ---------------------------------------------
    /// `ir_version` is absent, zero or negative.
    #[error("model ir_version must be > 0, found {found}")]
    IrVersion {
        /// The value found (0 when absent).
        found: i64,
    },
    /// No opset import for the default domain (`""` or `"ai.onnx"`).
    #[error("model has no opset import for the default ONNX domain (\"\" or \"ai.onnx\")")]
    MissingDefaultOpset,
    /// The default-domain opset is older than this crate supports.
    #[error("default-domain opset is {found}, need at least {expected}")]
    OpsetTooOld {
        /// The minimum supported.
        expected: i64,
        /// The version imported.
        found: i64,
    },
    /// The model has no graph.
    #[error("model has no graph")]
    MissingGraph,

    // ---- checker: graph level ---------------------------------------------
    /// The graph has no name.
    #[error("graph has no name")]
    UnnamedGraph,
    /// The graph has no input.
    #[error("graph '{graph}' has no input")]
    NoInputs {
        /// The graph's name.
        graph: String,
    },
    /// The graph has no output.
    #[error("graph '{graph}' has no output")]
    NoOutputs {
        /// The graph's name.
        graph: String,
    },
    /// Two graph inputs share a name.
    #[error("graph input '{input}' is declared more than once")]
    DuplicateGraphInput {
        /// The repeated name.
        input: String,
    },
    /// An initializer has an empty name.
    #[error("initializer #{index} has no name")]
    UnnamedInitializer {
        /// Its position in `graph.initializer`.
        index: usize,
    },
    /// Two initializers share a name.
    #[error("initializer '{tensor}' is defined more than once")]
    DuplicateInitializer {
        /// The repeated name.
        tensor: String,
    },
    /// An initializer's element type has no fixed byte size this checker knows.
    #[error("initializer '{tensor}': data_type {data_type} is not supported by the checker")]
    UnsupportedDataType {
        /// The tensor's name.
        tensor: String,
        /// The `data_type` value found.
        data_type: i32,
    },
    /// An initializer keeps its data in an external file.
    #[error("initializer '{tensor}' uses external data, which this crate does not read")]
    ExternalData {
        /// The tensor's name.
        tensor: String,
    },
    /// An initializer's data does not match `product(dims) x element size`.
    #[error(
        "initializer '{tensor}' (data_type {data_type}, dims {dims:?}): expected {expected} data bytes, found {found}"
    )]
    TensorByteLength {
        /// The tensor's name.
        tensor: String,
        /// Its `data_type`.
        data_type: i32,
        /// Its dims.
        dims: Vec<i64>,
        /// `product(dims) x element size`.
        expected: usize,
        /// Bytes held (`raw_data`, or the typed field's count x element size).
        found: usize,
    },

    // ---- checker: nodes -----------------------------------------------------
    /// A node has no `op_type`.
    #[error("node {node} has an empty op_type")]
    EmptyOpType {
        /// The node's name, or `#index` when unnamed.
        node: String,
    },
    /// A node input is not a graph input, an initializer, or any node's output.
    #[error("node {node} ({op_type}): input '{input}' is not defined anywhere in the graph")]
    UndefinedInput {
        /// The node.
        node: String,
        /// Its operator.
        op_type: String,
        /// The undefined value.
        input: String,
    },
    /// A node input is produced only by a later node: nodes are not in topological order.
    #[error(
        "node {node} ({op_type}): input '{input}' is produced by the later node {producer}; nodes must be in topological order"
    )]
    NotTopological {
        /// The consuming node.
        node: String,
        /// Its operator.
        op_type: String,
        /// The value consumed too early.
        input: String,
        /// The later node that produces it.
        producer: String,
    },
    /// A value name is assigned twice (the graph must be in SSA form).
    #[error(
        "node {node}: output '{output}' is already defined by {first} (graph must be in SSA form)"
    )]
    DuplicateOutput {
        /// The node defining it the second time.
        node: String,
        /// The value name.
        output: String,
        /// What defined it first: a node, "graph input" or "initializer".
        first: String,
    },
    /// A graph output is not produced by any node (nor is an input or initializer).
    #[error("graph output '{output}' is not produced by any node")]
    OutputNotProduced {
        /// The output's name.
        output: String,
    },
    /// A per-axis Quantize/DequantizeLinear has an `axis` outside the input's rank.
    #[error(
        "node {node} ({op_type}): axis {axis} is out of range for '{tensor}' of rank {rank} (per-axis scale; the default axis is 1)"
    )]
    QuantAxis {
        /// The node.
        node: String,
        /// Its operator.
        op_type: String,
        /// The quantized tensor.
        tensor: String,
        /// The axis (attribute or default).
        axis: i64,
        /// The tensor's rank.
        rank: usize,
    },
    /// A per-axis scale or zero point does not match the quantized axis.
    #[error(
        "node {node} ({op_type}): '{tensor}' has dims {found:?}, expected [{expected}] to match axis {axis} of the quantized tensor"
    )]
    QuantParamShape {
        /// The node.
        node: String,
        /// Its operator.
        op_type: String,
        /// The scale or zero-point tensor.
        tensor: String,
        /// The normalized axis.
        axis: usize,
        /// The length it should have (it should be 1-D): the quantized axis' size.
        expected: i64,
        /// The dims it has.
        found: Vec<i64>,
    },
}
