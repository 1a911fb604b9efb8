//! A small builder that assembles a [`ModelProto`] from inputs, initializers
//! and nodes, so exporters never fill protobuf structs by hand.
//!
//! Initializers are always written as little-endian `raw_data` (what ONNX
//! Runtime's own tools write); scalars have `dims = []`. The model is stamped
//! with [`IR_VERSION`] 7 and one default-domain opset import.
//!
//! Why IR version 7: it is the IR version of ONNX 1.8, the release that
//! introduced opset 13 (`onnx.helper.VERSION_TABLE` pairs opset 13 with IR 7),
//! so it is the lowest IR version whose readers know every opset-13 operator,
//! including per-axis `QuantizeLinear`/`DequantizeLinear`. IR >= 4 is also
//! what lets initializers stay out of the graph inputs (with IR 3 the ONNX
//! checker rejects that). ONNX Runtime 1.32 accepts IR 3 to 11+ and the `onnx`
//! 1.23 checker accepts up to IR 14, so a higher number buys nothing and only
//! narrows the set of older readers.

use crate::error::Error;
use crate::proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    tensor_shape_proto::{Dimension, dimension},
    type_proto,
};

/// The IR version written by [`GraphBuilder::finish`].
pub const IR_VERSION: i64 = 7;

/// The default-domain opset quantlab targets (per-axis QDQ needs >= 13).
pub const DEFAULT_OPSET: i64 = 13;

/// The symbolic name used for the dynamic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// One dimension of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic (dynamic) size, e.g. `batch`.
    Param(String),
}

impl Dim {
    /// The dynamic batch dimension, `dim_param = "batch"`.
    pub fn batch() -> Self {
        Dim::Param(BATCH_DIM.to_owned())
    }

    fn to_proto(&self) -> Dimension {
        let value = match self {
            Dim::Fixed(n) => dimension::Value::DimValue(*n),
            Dim::Param(p) => dimension::Value::DimParam(p.clone()),
        };
        Dimension {
            value: Some(value),
            denotation: None,
        }
    }
}

/// An element type that can be stored in an initializer.
pub trait Element: Copy {
    /// Its ONNX data type.
    const DATA_TYPE: DataType;
    /// Appends its little-endian bytes.
    fn put_le(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DATA_TYPE: DataType = DataType::$dt;
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(f32, Float);
element!(u8, Uint8);
element!(i8, Int8);
element!(i32, Int32);
element!(i64, Int64);

/// `product(dims)` as a count, or `None` if a dim is negative or it overflows.
pub(crate) fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Makes a tensor with little-endian `raw_data`; `dims = &[]` is a scalar.
pub fn tensor<T: Element>(name: &str, dims: &[i64], data: &[T]) -> Result<TensorProto, Error> {
    let context = || format!("tensor '{name}'");
    let expected = element_count(dims).ok_or_else(|| Error::invalid_dims(context(), dims))?;
    if expected != data.len() {
        return Err(Error::invalid(
            context(),
            format!("dims {dims:?} need {expected} elements, got {}", data.len()),
        ));
    }
    let mut raw = Vec::with_capacity(std::mem::size_of_val(data));
    for &x in data {
        x.put_le(&mut raw);
    }
    Ok(TensorProto {
        dims: dims.to_vec(),
        data_type: Some(T::DATA_TYPE as i32),
        name: Some(name.to_owned()),
        raw_data: Some(raw),
        ..Default::default()
    })
}

/// A node attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// An integer (`i`).
    Int(i64),
    /// A list of integers (`ints`).
    Ints(Vec<i64>),
    /// A float (`f`).
    Float(f32),
    /// A list of floats (`floats`).
    Floats(Vec<f32>),
    /// A UTF-8 string (`s`).
    String(String),
    /// A tensor (`t`), e.g. for `Constant`.
    Tensor(Box<TensorProto>),
}

impl Attr {
    /// The attribute as a proto, with `type` set and exactly one value field present.
    pub fn to_proto(&self, name: &str) -> AttributeProto {
        let mut a = AttributeProto {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let kind = match self {
            Attr::Int(v) => {
                a.i = Some(*v);
                AttributeType::Int
            }
            Attr::Ints(v) => {
                a.ints = v.clone();
                AttributeType::Ints
            }
            Attr::Float(v) => {
                a.f = Some(*v);
                AttributeType::Float
            }
            Attr::Floats(v) => {
                a.floats = v.clone();
                AttributeType::Floats
            }
            Attr::String(v) => {
                a.s = Some(v.as_bytes().to_vec());
                AttributeType::String
            }
            Attr::Tensor(t) => {
                a.t = Some(t.as_ref().clone());
                AttributeType::Tensor
            }
        };
        a.set_type(kind);
        a
    }
}

/// Assembles a graph, then stamps it into a model with [`GraphBuilder::finish`].
#[derive(Clone, Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
}

fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(Dim::to_proto).collect(),
                }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn batched(rest: &[i64]) -> Vec<Dim> {
    std::iter::once(Dim::batch())
        .chain(rest.iter().map(|&d| Dim::Fixed(d)))
        .collect()
}

impl GraphBuilder {
    /// An empty graph with this name.
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            graph: GraphProto {
                name: Some(name.into()),
                ..Default::default()
            },
        }
    }

    /// Declares a graph input of any element type and shape.
    pub fn input(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.input.push(value_info(name, elem_type, dims));
        self
    }

    /// Declares a float input of shape `[batch, rest...]`, batch dynamic.
    pub fn batched_input(&mut self, name: &str, rest: &[i64]) -> &mut Self {
        self.input(name, DataType::Float, &batched(rest))
    }

    /// Declares a graph output of any element type and shape.
    pub fn output(&mut self, name: &str, elem_type: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.output.push(value_info(name, elem_type, dims));
        self
    }

    /// Declares a float output of shape `[batch, rest...]`, batch dynamic.
    pub fn batched_output(&mut self, name: &str, rest: &[i64]) -> &mut Self {
        self.output(name, DataType::Float, &batched(rest))
    }

    /// Adds an initializer; `data` must hold `product(dims)` elements
    /// (`dims = &[]` for a scalar).
    pub fn initializer<T: Element>(
        &mut self,
        name: &str,
        dims: &[i64],
        data: &[T],
    ) -> Result<&mut Self, Error> {
        self.graph.initializer.push(tensor(name, dims, data)?);
        Ok(self)
    }

    /// Adds a 4-bit initializer (INT4 when `signed`, else UINT4; opset 21): `values` (each
    /// in the type's range) packed two per byte over the flattened tensor, the first in the
    /// low nibble; `dims = &[]` is a scalar.
    pub fn initializer_4bit(
        &mut self,
        name: &str,
        dims: &[i64],
        values: &[i8],
        signed: bool,
    ) -> Result<&mut Self, Error> {
        let context = || format!("tensor '{name}'");
        let expected = element_count(dims).ok_or_else(|| Error::invalid_dims(context(), dims))?;
        let (lo, hi) = if signed { (-8, 7) } else { (0, 15) };
        if expected != values.len() || values.iter().any(|v| !(lo..=hi).contains(v)) {
            return Err(Error::invalid(
                context(),
                format!(
                    "dims {dims:?} need {expected} values in {lo}..={hi}, got {} values",
                    values.len()
                ),
            ));
        }
        let raw = values
            .chunks(2)
            .map(|p| (p[0] as u8 & 0x0f) | (p.get(1).map_or(0, |v| (*v as u8 & 0x0f) << 4)))
            .collect();
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(if signed {
                DataType::Int4
            } else {
                DataType::Uint4
            } as i32),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..Default::default()
        });
        Ok(self)
    }

    /// Adds a scalar initializer (`dims = []`).
    pub fn scalar<T: Element>(&mut self, name: &str, value: T) -> &mut Self {
        let mut raw = Vec::with_capacity(std::mem::size_of::<T>());
        value.put_le(&mut raw);
        self.graph.initializer.push(TensorProto {
            data_type: Some(T::DATA_TYPE as i32),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..Default::default()
        });
        self
    }

    /// Appends a default-domain node. Nodes must be added in topological
    /// order (producers before consumers); `""` marks an omitted optional input.
    pub fn node(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> &mut Self {
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name: Some(name.to_owned()),
            op_type: Some(op_type.to_owned()),
            attribute: attrs.iter().map(|(n, a)| a.to_proto(n)).collect(),
            ..Default::default()
        });
        self
    }

    /// The graph built so far.
    pub fn graph(&self) -> &GraphProto {
        &self.graph
    }

    /// The model: IR [`IR_VERSION`], one default-domain opset import
    /// (`domain = ""`, `version = opset`), `producer_name = producer`.
    pub fn finish(self, opset: i64, producer: &str) -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            producer_name: Some(producer.to_owned()),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use prost::Message;

    fn sample() -> ModelProto {
        let mut g = GraphBuilder::new("g");
        g.batched_input("x", &[4]).batched_output("y", &[3]);
        g.initializer("w", &[3, 4], &[0.5f32; 12])
            .unwrap()
            .initializer("wq", &[3, 4], &[-7i8; 12])
            .unwrap()
            .initializer("zp", &[3], &[1u8, 2, 3])
            .unwrap()
            .initializer("b", &[3], &[-1i32, 0, 1])
            .unwrap()
            .initializer("shape", &[2], &[0i64, -1])
            .unwrap();
        g.scalar("s", 0.25f32);
        g.node(
            "gemm",
            "Gemm",
            &["x", "w"],
            &["y"],
            &[
                ("transB", Attr::Int(1)),
                ("alpha", Attr::Float(1.5)),
                ("perm", Attr::Ints(vec![1, 0])),
                ("mode", Attr::String("constant".into())),
                ("zero", Attr::Int(0)),
            ],
        );
        g.finish(DEFAULT_OPSET, "quantlab-test")
    }

    #[test]
    fn encode_decode_round_trip() {
        let m = sample();
        let bytes = m.encode_to_vec();
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.ir_version(), IR_VERSION);
        assert_eq!(back.opset_import[0].version(), 13);
        assert_eq!(back.producer_name(), "quantlab-test");
    }

    #[test]
    fn batch_dimension_is_symbolic() {
        let m = sample();
        let input = &m.graph.as_ref().unwrap().input[0];
        let Some(type_proto::Value::TensorType(t)) = &input.r#type.as_ref().unwrap().value else {
            panic!("input is not a tensor");
        };
        assert_eq!(t.elem_type(), DataType::Float as i32);
        let dims: Vec<_> = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.value.clone())
            .collect();
        assert_eq!(
            dims,
            vec![
                Some(dimension::Value::DimParam("batch".into())),
                Some(dimension::Value::DimValue(4))
            ]
        );
    }

    #[test]
    fn raw_data_is_little_endian_and_scalars_have_no_dims() {
        let g = sample().graph.unwrap();
        let find = |n: &str| g.initializer.iter().find(|t| t.name() == n).unwrap();
        assert_eq!(find("w").raw_data()[..4], 0.5f32.to_le_bytes());
        assert_eq!(find("wq").raw_data(), &[0xf9u8; 12]);
        assert_eq!(find("zp").raw_data(), &[1, 2, 3]);
        assert_eq!(find("b").raw_data()[..4], [0xff; 4]);
        assert_eq!(find("shape").raw_data()[8..], (-1i64).to_le_bytes());
        assert_eq!(find("shape").data_type(), DataType::Int64 as i32);
        let s = find("s");
        assert!(s.dims.is_empty());
        assert_eq!(s.raw_data(), &0.25f32.to_le_bytes());
    }

    #[test]
    fn zero_valued_attributes_keep_their_value_field() {
        // proto2 presence: `i = 0` must be on the wire, as onnx.helper writes it.
        let a = Attr::Int(0).to_proto("axis");
        assert_eq!(a.i, Some(0));
        assert_eq!(a.r#type(), AttributeType::Int);
        let back = AttributeProto::decode(a.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.i, Some(0));
        assert_eq!(Attr::String("x".into()).to_proto("m").s(), b"x");
        assert_eq!(Attr::Ints(vec![2, 2]).to_proto("k").ints, vec![2, 2]);
        assert_eq!(Attr::Float(0.0).to_proto("f").f, Some(0.0));
    }

    #[test]
    fn wrong_element_count_is_rejected() {
        let err = GraphBuilder::new("g")
            .initializer("w", &[3, 4], &[0f32; 11])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "tensor 'w': dims [3, 4] need 12 elements, got 11"
        );
        let err = tensor("n", &[-1, 4], &[0i8; 4]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(err.context(), "tensor 'n'");
        assert!(err.message().contains("invalid dims [-1, 4]"), "{err}");
    }
}
