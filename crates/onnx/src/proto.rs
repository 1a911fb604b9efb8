//! The subset of `onnx.proto` that quantlab writes and reads, as hand-written
//! [`prost`] messages, so that no `protoc` (and no `build.rs`) is needed.
//!
//! Field numbers, field types and packing are copied from the official
//! `onnx/onnx.proto` (ONNX 1.23.2, IR version 14). That file is proto2, and so
//! are the parsers in ONNX Runtime and the `onnx` Python package; therefore
//! every proto2 `optional` field here is an `Option` (its presence is written
//! even when the value is zero or empty, as `onnx.helper` does), and repeated
//! numbers are packed only where `onnx.proto` says `[packed = true]`. With that,
//! a model encoded here re-serializes byte for byte the same through the
//! `onnx` Python package (checked by `scripts/check_onnx.py`).
//!
//! prost derives a getter for each optional field (`attr.i()`, `tensor.name()`,
//! `model.ir_version()`) that returns the proto default when the field is
//! absent.
//!
//! Left out on purpose: sparse tensors, functions, training info, subgraph
//! attributes (`g`, `graphs`), non-tensor types (sequence, map, optional) and
//! quantization annotations. When a file holding them is read, prost skips
//! those fields, so reading is for inspection and re-encoding such a model
//! drops them.

/// A whole ONNX model: versions, operator sets, and the graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The IR version the file follows (see [`crate::IR_VERSION`]).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// The operator sets (domain and version) the graph's nodes come from.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The tool that wrote the model.
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// The version of the tool that wrote the model.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS namespace of the model (e.g. `org.quantlab`).
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// The model's own version number.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free text for people.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Named string metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A key/value string pair (model metadata, external-data locations).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// The value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// An operator set the model uses: a domain (`""` is the default ONNX domain)
/// and its version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// The domain; `""` or `"ai.onnx"` for the default ONNX operators.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// The operator set version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// A graph: nodes in topological order, initializers, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The nodes, each after the producers of its inputs.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights, scales, zero points).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free text for people.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// The values the caller feeds.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// The values the graph returns.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Optional type information for intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One operator call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Names of the values consumed; `""` marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Names of the values produced.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name (for diagnostics).
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// The operator, e.g. `Gemm`.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// The operator's domain; absent or `""` for the default ONNX domain.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// The operator's attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free text for people.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
}

/// A named attribute of a node; `type` says which value field is used.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// The attribute's name, e.g. `transB`.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// In a function body: the name of the caller's attribute this refers to.
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    /// Free text for people.
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// Which of the value fields below holds the value.
    #[prost(enumeration = "AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
    /// A float value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// An integer value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// A string value (UTF-8 bytes).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// A tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// A list of floats.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// A list of integers.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// A list of strings (UTF-8 bytes).
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// A list of tensors.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
}

/// `AttributeProto.AttributeType`: which value field of an attribute is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    /// Not set.
    Undefined = 0,
    /// `f`.
    Float = 1,
    /// `i`.
    Int = 2,
    /// `s`.
    String = 3,
    /// `t`.
    Tensor = 4,
    /// `g` (not modelled here).
    Graph = 5,
    /// `floats`.
    Floats = 6,
    /// `ints`.
    Ints = 7,
    /// `strings`.
    Strings = 8,
    /// `tensors`.
    Tensors = 9,
    /// `graphs` (not modelled here).
    Graphs = 10,
    /// `sparse_tensor` (not modelled here).
    SparseTensor = 11,
    /// `sparse_tensors` (not modelled here).
    SparseTensors = 12,
    /// `tp` (not modelled here).
    TypeProto = 13,
    /// `type_protos` (not modelled here).
    TypeProtos = 14,
}

/// A tensor: element type, dims and data (here always `raw_data`, little-endian).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The shape; empty for a scalar.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// A [`DataType`] value.
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// FLOAT data when `raw_data` is not used.
    #[prost(float, repeated, packed = "true", tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16 data (one per int32)
    /// when `raw_data` is not used.
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub int32_data: Vec<i32>,
    /// STRING data.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// INT64 data when `raw_data` is not used.
    #[prost(int64, repeated, packed = "true", tag = "7")]
    pub int64_data: Vec<i64>,
    /// The tensor's name (the value name nodes refer to).
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Free text for people.
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    /// The elements as fixed-size little-endian bytes, row-major.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// Where the data lives when `data_location` is EXTERNAL.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// DEFAULT (0, data in this message) or EXTERNAL (1).
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
    /// DOUBLE and COMPLEX128 data when `raw_data` is not used.
    #[prost(double, repeated, packed = "true", tag = "10")]
    pub double_data: Vec<f64>,
    /// UINT32 and UINT64 data when `raw_data` is not used.
    #[prost(uint64, repeated, packed = "true", tag = "11")]
    pub uint64_data: Vec<u64>,
}

/// `TensorProto.DataLocation::EXTERNAL`: the data is in another file.
pub const DATA_LOCATION_EXTERNAL: i32 = 1;

/// `TensorProto.DataType`: the element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    Undefined = 0,
    /// 32-bit IEEE float.
    Float = 1,
    /// Unsigned 8-bit integer.
    Uint8 = 2,
    /// Signed 8-bit integer.
    Int8 = 3,
    /// Unsigned 16-bit integer.
    Uint16 = 4,
    /// Signed 16-bit integer.
    Int16 = 5,
    /// Signed 32-bit integer.
    Int32 = 6,
    /// Signed 64-bit integer.
    Int64 = 7,
    /// Byte string.
    String = 8,
    /// Boolean, one byte.
    Bool = 9,
    /// 16-bit IEEE float.
    Float16 = 10,
    /// 64-bit IEEE float.
    Double = 11,
    /// Unsigned 32-bit integer.
    Uint32 = 12,
    /// Unsigned 64-bit integer.
    Uint64 = 13,
    /// Two 32-bit floats.
    Complex64 = 14,
    /// Two 64-bit floats.
    Complex128 = 15,
    /// bfloat16.
    Bfloat16 = 16,
    /// float8 e4m3fn.
    Float8e4m3fn = 17,
    /// float8 e4m3fnuz.
    Float8e4m3fnuz = 18,
    /// float8 e5m2.
    Float8e5m2 = 19,
    /// float8 e5m2fnuz.
    Float8e5m2fnuz = 20,
    /// Unsigned 4-bit integer (two per byte).
    Uint4 = 21,
    /// Signed 4-bit integer (two per byte).
    Int4 = 22,
    /// float4 e2m1 (two per byte).
    Float4e2m1 = 23,
    /// float8 e8m0.
    Float8e8m0 = 24,
    /// Unsigned 2-bit integer (four per byte).
    Uint2 = 25,
    /// Signed 2-bit integer (four per byte).
    Int2 = 26,
    /// float6 e2m3.
    Float6e2m3 = 27,
    /// float6 e3m2.
    Float6e3m2 = 28,
}

impl DataType {
    /// Bytes per element in `raw_data`, for the whole-byte fixed-size types;
    /// `None` for strings, sub-byte types and `Undefined`.
    pub fn element_size(self) -> Option<usize> {
        use DataType::*;
        match self {
            Uint8 | Int8 | Bool | Float8e4m3fn | Float8e4m3fnuz | Float8e5m2 | Float8e5m2fnuz
            | Float8e8m0 => Some(1),
            Uint16 | Int16 | Float16 | Bfloat16 => Some(2),
            Float | Int32 | Uint32 => Some(4),
            Int64 | Uint64 | Double | Complex64 => Some(8),
            Complex128 => Some(16),
            Undefined | String | Uint4 | Int4 | Float4e2m1 | Uint2 | Int2 | Float6e2m3
            | Float6e3m2 => None,
        }
    }
}

/// A named value with its type: a graph input, output or `value_info` entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The value's name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The value's type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free text for people.
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
}

/// The type of a value; only the tensor case is modelled.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// Which kind of type this is.
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    /// Optional denotation (e.g. `IMAGE`).
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
}

/// Nested messages of [`TypeProto`].
pub mod type_proto {
    /// A tensor type: element type and (possibly symbolic) shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// A [`super::DataType`] value.
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// The shape; absent means unknown rank.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// `TypeProto.value`: the kinds of type (only tensors here).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }
}

/// A tensor shape: one entry per dimension.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The dimensions, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension: a fixed size, a symbolic name, or unknown.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The size or the symbol; absent means unknown.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// Optional denotation (e.g. `DATA_BATCH`).
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// `Dimension.value`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A fixed size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A symbolic size, e.g. `batch`.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Attr, GraphBuilder};
    use prost::Message;

    /// Serialized by the `onnx` Python package (see `scripts/make_fixture.py`).
    const ONNX_HELPER_BYTES: &[u8] = &include!("fixture_onnx_helper.in");

    /// The model of `scripts/make_fixture.py`, built with this crate.
    fn same_model() -> ModelProto {
        let mut g = GraphBuilder::new("g");
        g.initializer("w", &[3, 2], &[1i8, -2, 3, -4, 5, -6])
            .unwrap()
            .initializer("s", &[3], &[0.5f32, 0.25, 0.125])
            .unwrap();
        g.scalar("zp", 0u8);
        g.initializer("shape", &[2], &[0i64, -1])
            .unwrap()
            .initializer("b", &[3], &[7i32, -8, 9])
            .unwrap();
        g.batched_input("x", &[2]).batched_output("p", &[3]);
        g.node(
            "dq",
            "DequantizeLinear",
            &["w", "s"],
            &["wf"],
            &[("axis", Attr::Int(0))],
        )
        .node(
            "fc",
            "Gemm",
            &["x", "wf"],
            &["y"],
            &[("alpha", Attr::Float(0.5)), ("transB", Attr::Int(1))],
        )
        .node(
            "pool",
            "MaxPool",
            &["y"],
            &["p"],
            &[
                ("auto_pad", Attr::String("VALID".into())),
                ("kernel_shape", Attr::Ints(vec![2, 2])),
            ],
        );
        g.finish(13, "fixture")
    }

    #[test]
    fn encodes_exactly_like_the_onnx_package() {
        let ours = same_model().encode_to_vec();
        assert_eq!(ours.len(), ONNX_HELPER_BYTES.len());
        assert!(ours == ONNX_HELPER_BYTES, "byte streams differ");
    }

    #[test]
    fn decodes_what_the_onnx_package_wrote() {
        let theirs = ModelProto::decode(ONNX_HELPER_BYTES).unwrap();
        assert_eq!(theirs, same_model());
        let g = theirs.graph.unwrap();
        assert_eq!(g.node[0].attribute[0].i, Some(0));
        assert_eq!(g.node[2].attribute[1].ints, vec![2, 2]);
        assert_eq!(g.initializer[2].dims, Vec::<i64>::new());
    }

    #[test]
    fn element_sizes() {
        assert_eq!(DataType::Float.element_size(), Some(4));
        assert_eq!(DataType::Uint8.element_size(), Some(1));
        assert_eq!(DataType::Int8.element_size(), Some(1));
        assert_eq!(DataType::Int32.element_size(), Some(4));
        assert_eq!(DataType::Int64.element_size(), Some(8));
        assert_eq!(DataType::String.element_size(), None);
        assert_eq!(DataType::Int4.element_size(), None);
        assert_eq!(
            [
                DataType::Float,
                DataType::Uint8,
                DataType::Int8,
                DataType::Int32,
                DataType::Int64
            ]
            .map(|d| d as i32),
            [1, 2, 3, 6, 7]
        );
    }
}
