//! Our own checker for the rules of the ONNX checker that quantlab's exports
//! can break, so a bad export fails in `cargo test` with an error that names
//! the model part at fault (an [`ErrorKind::Invalid`](crate::ErrorKind::Invalid)
//! error) instead of failing later inside Python or ONNX Runtime.
//!
//! Checked, in this order (the first violation is returned):
//! - model: `ir_version > 0`; a default-domain (`""` or `"ai.onnx"`) opset
//!   import >= [`MIN_OPSET`]; a graph;
//! - graph: a name, at least one input and one output, unique input names;
//! - initializers: non-empty unique names, no external data, and data bytes
//!   (`raw_data`, or the typed field) equal to `product(dims) x element size`;
//! - nodes, in order: non-empty `op_type`; every non-empty input is a graph
//!   input, an initializer or an output of an *earlier* node (topological
//!   order); every output name is new (SSA, also against graph inputs and
//!   initializers); for per-axis `QuantizeLinear`/`DequantizeLinear` (1-D
//!   scale of more than one element) whose quantized tensor has a known rank:
//!   `axis` (default 1) within that rank, and scale and zero point of length
//!   `dims[axis]`. The ONNX checker (even with `full_check`) does not catch
//!   the last one: a rank-1 bias dequantized per channel without `axis = 0`
//!   passes it and fails only when ONNX Runtime runs the node.
//! - graph outputs: each is produced by a node (or is an input or initializer).

use std::collections::{HashMap, HashSet};

use crate::builder::element_count;
use crate::error::Error;
use crate::proto::{
    DATA_LOCATION_EXTERNAL, DataType, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto, tensor_shape_proto::dimension, type_proto,
};

/// The oldest default-domain opset accepted (per-axis QDQ needs 13).
pub const MIN_OPSET: i64 = 13;

/// Checks a whole model; see the module docs for the rules.
pub fn check(model: &ModelProto) -> Result<(), Error> {
    let ir = model.ir_version();
    if ir <= 0 {
        return Err(Error::invalid(
            "model",
            format!("ir_version must be > 0, found {ir}"),
        ));
    }
    let opset = model
        .opset_import
        .iter()
        .filter(|o| is_default_domain(o.domain()))
        .map(|o| o.version())
        .max()
        .ok_or_else(|| {
            Error::invalid(
                "model",
                "no opset import for the default ONNX domain (\"\" or \"ai.onnx\")",
            )
        })?;
    if opset < MIN_OPSET {
        return Err(Error::invalid(
            "model",
            format!("default-domain opset is {opset}, need at least {MIN_OPSET}"),
        ));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::invalid("model", "has no graph"))?;
    check_graph(graph)
}

fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// Where a value name was defined.
enum Origin {
    GraphInput,
    Initializer,
    Node(String),
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::GraphInput => "a graph input".to_owned(),
            Origin::Initializer => "an initializer".to_owned(),
            Origin::Node(label) => format!("node {label}"),
        }
    }
}

fn node_label(index: usize, node: &NodeProto) -> String {
    match node.name() {
        "" => format!("#{index}"),
        name => format!("'{name}'"),
    }
}

/// Checks a graph on its own (the graph-level rules of [`check`]).
pub fn check_graph(graph: &GraphProto) -> Result<(), Error> {
    if graph.name().is_empty() {
        return Err(Error::invalid("graph", "has no name"));
    }
    let graph_context = || format!("graph '{}'", graph.name());
    if graph.input.is_empty() {
        return Err(Error::invalid(graph_context(), "has no input"));
    }
    if graph.output.is_empty() {
        return Err(Error::invalid(graph_context(), "has no output"));
    }

    let mut defined: HashMap<&str, Origin> = HashMap::new();
    for input in &graph.input {
        if defined.insert(input.name(), Origin::GraphInput).is_some() {
            return Err(Error::invalid(
                format!("graph input '{}'", input.name()),
                "is declared more than once",
            ));
        }
    }

    let mut initializers: HashMap<&str, &TensorProto> = HashMap::new();
    for (index, t) in graph.initializer.iter().enumerate() {
        if t.name().is_empty() {
            return Err(Error::invalid(
                format!("initializer #{index}"),
                "has no name",
            ));
        }
        if initializers.insert(t.name(), t).is_some() {
            return Err(Error::invalid(
                format!("initializer '{}'", t.name()),
                "is defined more than once",
            ));
        }
        check_tensor_bytes(t)?;
        // An initializer may share its name with a graph input (an overridable default).
        defined.entry(t.name()).or_insert(Origin::Initializer);
    }

    // The first producer of each value, to tell "later node" from "nowhere".
    let mut producers: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            producers.entry(out.as_str()).or_insert(i);
        }
    }

    let inputs: HashMap<&str, &ValueInfoProto> =
        graph.input.iter().map(|v| (v.name(), v)).collect();
    for (i, node) in graph.node.iter().enumerate() {
        let label = node_label(i, node);
        if node.op_type().is_empty() {
            return Err(Error::invalid(
                format!("node {label}"),
                "has an empty op_type",
            ));
        }
        let context = format!("node {label} ({})", node.op_type());
        for input in node.input.iter().filter(|s| !s.is_empty()) {
            if defined.contains_key(input.as_str()) {
                continue;
            }
            let message = match producers.get(input.as_str()) {
                Some(&p) => format!(
                    "input '{input}' is produced by the later node {}; nodes must be in topological order",
                    node_label(p, &graph.node[p])
                ),
                None => format!("input '{input}' is not defined anywhere in the graph"),
            };
            return Err(Error::invalid(context, message));
        }
        check_quant_params(&context, node, &initializers, &inputs)?;
        for out in node.output.iter().filter(|s| !s.is_empty()) {
            if let Some(first) = defined.get(out.as_str()) {
                return Err(Error::invalid(
                    context,
                    format!(
                        "output '{out}' is already defined by {} (the graph must be in SSA form)",
                        first.describe()
                    ),
                ));
            }
            defined.insert(out, Origin::Node(label.clone()));
        }
    }

    for out in &graph.output {
        if !defined.contains_key(out.name()) {
            return Err(Error::invalid(
                format!("graph output '{}'", out.name()),
                "is not produced by any node (nor is it a graph input or an initializer)",
            ));
        }
    }
    Ok(())
}

/// `product(dims) x element size` against the bytes the tensor holds.
fn check_tensor_bytes(t: &TensorProto) -> Result<(), Error> {
    let context = || format!("initializer '{}'", t.name());
    if t.data_location == Some(DATA_LOCATION_EXTERNAL) {
        return Err(Error::invalid(
            context(),
            "uses external data, which this crate does not read",
        ));
    }
    // 4-bit integers: two per byte of raw_data, the first in the low nibble (opset 21).
    if let Ok(DataType::Int4 | DataType::Uint4) = DataType::try_from(t.data_type()) {
        let expected = element_count(&t.dims)
            .map(|n| n.div_ceil(2))
            .ok_or_else(|| Error::invalid_dims(context(), &t.dims))?;
        let found = t.raw_data.as_ref().map_or(0, Vec::len);
        if found != expected || t.raw_data.is_none() {
            return Err(Error::invalid(
                context(),
                format!(
                    "4-bit data_type {} with dims {:?} needs {expected} raw_data bytes, found {found}",
                    t.data_type(),
                    t.dims
                ),
            ));
        }
        return Ok(());
    }
    let Some((dt, size)) = DataType::try_from(t.data_type())
        .ok()
        .and_then(|dt| dt.element_size().map(|s| (dt, s)))
    else {
        return Err(Error::invalid(
            context(),
            format!(
                "data_type {} is not supported by the checker",
                t.data_type()
            ),
        ));
    };
    let expected = element_count(&t.dims)
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| Error::invalid_dims(context(), &t.dims))?;
    let found = match &t.raw_data {
        Some(raw) => raw.len(),
        None => typed_bytes(dt, size, t),
    };
    if found != expected {
        return Err(Error::invalid(
            context(),
            format!(
                "data_type {} with dims {:?} needs {expected} data bytes, found {found}",
                t.data_type(),
                t.dims
            ),
        ));
    }
    Ok(())
}

/// Bytes held in the typed field that `onnx.proto` assigns to `dt`.
fn typed_bytes(dt: DataType, size: usize, t: &TensorProto) -> usize {
    use DataType::*;
    match dt {
        // COMPLEX64 is two floats per element, so count the floats' bytes.
        Float | Complex64 => t.float_data.len() * 4,
        Double | Complex128 => t.double_data.len() * 8,
        Int64 => t.int64_data.len() * 8,
        Uint32 | Uint64 => t.uint64_data.len() * size,
        // The small types are stored one per int32.
        _ => t.int32_data.len() * size,
    }
}

/// Dims of a value when known: an initializer's, or a graph input's declared
/// shape (`None` for a symbolic dim).
fn known_dims(
    name: &str,
    initializers: &HashMap<&str, &TensorProto>,
    inputs: &HashMap<&str, &ValueInfoProto>,
) -> Option<Vec<Option<i64>>> {
    if let Some(t) = initializers.get(name) {
        return Some(t.dims.iter().map(|&d| Some(d)).collect());
    }
    let ty = inputs.get(name)?.r#type.as_ref()?;
    let Some(type_proto::Value::TensorType(tensor)) = &ty.value else {
        return None;
    };
    let shape = tensor.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(dimension::Value::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect(),
    )
}

/// The per-axis rules of opset-13 `QuantizeLinear`/`DequantizeLinear`;
/// `context` names the node in errors.
fn check_quant_params(
    context: &str,
    node: &NodeProto,
    initializers: &HashMap<&str, &TensorProto>,
    inputs: &HashMap<&str, &ValueInfoProto>,
) -> Result<(), Error> {
    let op = node.op_type();
    if !is_default_domain(node.domain()) || !matches!(op, "QuantizeLinear" | "DequantizeLinear") {
        return Ok(());
    }
    let (Some(x), Some(scale)) = (node.input.first(), node.input.get(1)) else {
        return Ok(());
    };
    let Some(scale_t) = initializers.get(scale.as_str()) else {
        return Ok(());
    };
    let per_axis = scale_t.dims.len() == 1 && scale_t.dims[0] > 1;
    let Some(x_dims) = known_dims(x, initializers, inputs).filter(|_| per_axis) else {
        return Ok(());
    };
    let rank = x_dims.len();
    let axis = node
        .attribute
        .iter()
        .find(|a| a.name() == "axis")
        .map_or(1, |a| a.i());
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(Error::invalid(
            context,
            format!(
                "axis {axis} is out of range for '{x}' of rank {rank} (per-axis scale; the default axis is 1)"
            ),
        ));
    }
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    let mut params = vec![*scale_t];
    if let Some(zp) = node.input.get(2).and_then(|z| initializers.get(z.as_str())) {
        params.push(zp);
    }
    let mut seen = HashSet::new();
    for p in params.into_iter().filter(|p| seen.insert(p.name())) {
        let ok = match x_dims[axis] {
            Some(n) => p.dims == [n],
            None => p.dims == scale_t.dims,
        };
        if !ok {
            return Err(Error::invalid(
                context,
                format!(
                    "'{}' has dims {:?}, expected [{}] to match axis {axis} of the quantized tensor '{x}'",
                    p.name(),
                    p.dims,
                    x_dims[axis].unwrap_or(scale_t.dims[0])
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Attr, GraphBuilder};
    use crate::error::ErrorKind;
    use crate::proto::{OperatorSetIdProto, StringStringEntryProto};

    /// x[batch,4] -> Q/DQ -> Gemm(DQ(w int8 [3,4], axis 0), DQ(b int32 [3], axis 0)) -> Relu -> y
    fn valid() -> ModelProto {
        let mut g = GraphBuilder::new("qdq");
        g.batched_input("x", &[4]).batched_output("y", &[3]);
        g.scalar("x_scale", 0.02f32).scalar("x_zp", 128u8);
        g.initializer(
            "w_q",
            &[3, 4],
            &[1i8, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12],
        )
        .unwrap()
        .initializer("w_scale", &[3], &[0.1f32, 0.2, 0.3])
        .unwrap()
        .initializer("w_zp", &[3], &[0i8; 3])
        .unwrap()
        .initializer("b_q", &[3], &[10i32, -20, 30])
        .unwrap()
        .initializer("b_scale", &[3], &[0.002f32, 0.004, 0.006])
        .unwrap()
        .initializer("b_zp", &[3], &[0i32; 3])
        .unwrap();
        let axis0 = [("axis", Attr::Int(0))];
        g.node(
            "q_x",
            "QuantizeLinear",
            &["x", "x_scale", "x_zp"],
            &["x_q"],
            &[],
        )
        .node(
            "dq_x",
            "DequantizeLinear",
            &["x_q", "x_scale", "x_zp"],
            &["x_dq"],
            &[],
        )
        .node(
            "dq_w",
            "DequantizeLinear",
            &["w_q", "w_scale", "w_zp"],
            &["w"],
            &axis0,
        )
        .node(
            "dq_b",
            "DequantizeLinear",
            &["b_q", "b_scale", "b_zp"],
            &["b"],
            &axis0,
        )
        .node(
            "gemm",
            "Gemm",
            &["x_dq", "w", "b"],
            &["h"],
            &[("transB", Attr::Int(1))],
        )
        .node("relu", "Relu", &["h"], &["y"], &[]);
        g.finish(13, "test")
    }

    fn graph(m: &mut ModelProto) -> &mut GraphProto {
        m.graph.as_mut().unwrap()
    }

    fn init<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
        graph(m)
            .initializer
            .iter_mut()
            .find(|t| t.name() == name)
            .unwrap()
    }

    fn node<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
        graph(m).node.iter_mut().find(|n| n.name() == name).unwrap()
    }

    fn broken(f: impl FnOnce(&mut ModelProto)) -> Error {
        let mut m = valid();
        f(&mut m);
        check(&m).expect_err("the broken model passed the checker")
    }

    /// Asserts that `e` is a checker error about `context` whose message
    /// names `problem`.
    #[track_caller]
    fn assert_invalid(e: &Error, context: &str, problem: &str) {
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        assert_eq!(e.context(), context, "{e}");
        assert!(e.message().contains(problem), "{e}");
    }

    #[test]
    fn valid_model_passes() {
        check(&valid()).unwrap();
    }

    #[test]
    fn ir_version_must_be_positive() {
        let e = broken(|m| m.ir_version = Some(0));
        assert_eq!(e.to_string(), "model: ir_version must be > 0, found 0");
        let e = broken(|m| m.ir_version = None);
        assert_invalid(&e, "model", "ir_version must be > 0, found 0");
        let e = broken(|m| m.ir_version = Some(-3));
        assert_invalid(&e, "model", "ir_version must be > 0, found -3");
    }

    #[test]
    fn default_opset_must_be_imported() {
        let e = broken(|m| m.opset_import[0].domain = Some("com.microsoft".into()));
        assert_invalid(&e, "model", "no opset import for the default ONNX domain");
        let mut m = valid();
        m.opset_import = vec![OperatorSetIdProto {
            domain: Some("ai.onnx".into()),
            version: Some(13),
        }];
        check(&m).unwrap();
    }

    #[test]
    fn default_opset_must_be_at_least_13() {
        let e = broken(|m| m.opset_import[0].version = Some(12));
        assert_invalid(&e, "model", "default-domain opset is 12, need at least 13");
    }

    #[test]
    fn graph_is_required() {
        let e = broken(|m| m.graph = None);
        assert_invalid(&e, "model", "has no graph");
    }

    #[test]
    fn graph_needs_a_name() {
        let e = broken(|m| graph(m).name = Some(String::new()));
        assert_invalid(&e, "graph", "has no name");
    }

    #[test]
    fn graph_needs_an_input() {
        let e = broken(|m| graph(m).input.clear());
        assert_invalid(&e, "graph 'qdq'", "has no input");
    }

    #[test]
    fn graph_needs_an_output() {
        let e = broken(|m| graph(m).output.clear());
        assert_invalid(&e, "graph 'qdq'", "has no output");
    }

    #[test]
    fn graph_input_names_are_unique() {
        let e = broken(|m| {
            let x = graph(m).input[0].clone();
            graph(m).input.push(x);
        });
        assert_invalid(&e, "graph input 'x'", "declared more than once");
    }

    #[test]
    fn initializers_need_names() {
        // An unused extra initializer, so only the naming rule is broken.
        let e = broken(|m| {
            let mut t = init(m, "w_zp").clone();
            t.name = Some(String::new());
            graph(m).initializer.push(t);
        });
        assert_invalid(&e, "initializer #8", "has no name");
    }

    #[test]
    fn initializer_names_are_unique() {
        let e = broken(|m| {
            let t = init(m, "w_scale").clone();
            graph(m).initializer.push(t);
        });
        assert_invalid(&e, "initializer 'w_scale'", "defined more than once");
    }

    #[test]
    fn raw_data_length_must_match_dims() {
        let e = broken(|m| {
            init(m, "w_q").raw_data.as_mut().unwrap().pop();
        });
        assert_eq!(
            e.to_string(),
            "initializer 'w_q': data_type 3 with dims [3, 4] needs 12 data bytes, found 11"
        );
        // A scalar is one element: 4 bytes of FLOAT, not 8.
        let e = broken(|m| init(m, "x_scale").raw_data = Some(vec![0; 8]));
        assert_invalid(
            &e,
            "initializer 'x_scale'",
            "data_type 1 with dims [] needs 4 data bytes, found 8",
        );
    }

    #[test]
    fn typed_data_length_must_match_dims() {
        let mut m = valid();
        let t = init(&mut m, "w_scale");
        t.raw_data = None;
        t.float_data = vec![0.1, 0.2, 0.3];
        check(&m).unwrap();
        let e = broken(|m| {
            let t = init(m, "w_scale");
            t.raw_data = None;
            t.float_data = vec![0.1, 0.2];
        });
        assert_invalid(&e, "initializer 'w_scale'", "needs 12 data bytes, found 8");
        let e = broken(|m| {
            let t = init(m, "b_q");
            t.raw_data = None;
            t.int32_data = vec![1, 2, 3, 4];
        });
        assert_invalid(&e, "initializer 'b_q'", "needs 12 data bytes, found 16");
    }

    #[test]
    fn negative_dims_are_named() {
        let e = broken(|m| init(m, "w_q").dims = vec![-3, -4]);
        assert_invalid(&e, "initializer 'w_q'", "invalid dims [-3, -4]");
    }

    #[test]
    fn unsupported_data_type_is_named() {
        let e = broken(|m| init(m, "b_zp").data_type = Some(DataType::String as i32));
        assert_invalid(&e, "initializer 'b_zp'", "data_type 8 is not supported");
    }

    #[test]
    fn external_data_is_refused() {
        let e = broken(|m| {
            let t = init(m, "w_q");
            t.data_location = Some(DATA_LOCATION_EXTERNAL);
            t.external_data.push(StringStringEntryProto {
                key: Some("location".into()),
                value: Some("w.bin".into()),
            });
        });
        assert_invalid(&e, "initializer 'w_q'", "uses external data");
    }

    #[test]
    fn op_type_must_be_non_empty() {
        let e = broken(|m| node(m, "relu").op_type = Some(String::new()));
        assert_invalid(&e, "node 'relu'", "has an empty op_type");
        // An unnamed node is named by its position.
        let e = broken(|m| {
            let n = node(m, "relu");
            n.name = None;
            n.op_type = None;
        });
        assert_invalid(&e, "node #5", "has an empty op_type");
    }

    #[test]
    fn inputs_must_be_defined() {
        let e = broken(|m| node(m, "gemm").input[0] = "nowhere".into());
        assert_eq!(
            e.to_string(),
            "node 'gemm' (Gemm): input 'nowhere' is not defined anywhere in the graph"
        );
        // An omitted optional input ("") is fine.
        let mut m = valid();
        node(&mut m, "q_x").input[2] = String::new();
        check(&m).unwrap();
    }

    #[test]
    fn nodes_must_be_in_topological_order() {
        let e = broken(|m| graph(m).node.swap(4, 5));
        assert_invalid(
            &e,
            "node 'relu' (Relu)",
            "input 'h' is produced by the later node 'gemm'; nodes must be in topological order",
        );
    }

    #[test]
    fn outputs_are_assigned_once() {
        let e = broken(|m| node(m, "dq_b").output[0] = "w".into());
        assert_invalid(
            &e,
            "node 'dq_b' (DequantizeLinear)",
            "output 'w' is already defined by node 'dq_w' (the graph must be in SSA form)",
        );
        let e = broken(|m| node(m, "relu").output[0] = "x".into());
        assert_invalid(
            &e,
            "node 'relu' (Relu)",
            "output 'x' is already defined by a graph input",
        );
        let e = broken(|m| node(m, "dq_x").output[0] = "w_q".into());
        assert_invalid(
            &e,
            "node 'dq_x' (DequantizeLinear)",
            "output 'w_q' is already defined by an initializer",
        );
    }

    #[test]
    fn graph_outputs_must_be_produced() {
        let e = broken(|m| graph(m).output[0].name = Some("z".into()));
        assert_invalid(&e, "graph output 'z'", "is not produced by any node");
    }

    #[test]
    fn rank1_per_channel_dequantize_needs_axis_0() {
        // Without `axis`, the default 1 is out of range for the rank-1 bias.
        let e = broken(|m| node(m, "dq_b").attribute.clear());
        assert_invalid(
            &e,
            "node 'dq_b' (DequantizeLinear)",
            "axis 1 is out of range for 'b_q' of rank 1",
        );
        // Negative axes count from the end.
        let mut m = valid();
        node(&mut m, "dq_b").attribute[0].i = Some(-1);
        check(&m).unwrap();
    }

    #[test]
    fn per_channel_scale_must_match_the_axis() {
        // axis 1 of the [3,4] weight has 4 entries, the scale has 3.
        let e = broken(|m| node(m, "dq_w").attribute[0].i = Some(1));
        assert_eq!(
            e.to_string(),
            "node 'dq_w' (DequantizeLinear): 'w_scale' has dims [3], expected [4] to match axis 1 of the quantized tensor 'w_q'"
        );
    }

    #[test]
    fn per_channel_zero_point_must_match_the_axis() {
        let e = broken(|m| {
            let t = init(m, "w_zp");
            t.dims = vec![2];
            t.raw_data = Some(vec![0; 2]);
        });
        assert_invalid(
            &e,
            "node 'dq_w' (DequantizeLinear)",
            "'w_zp' has dims [2], expected [3] to match axis 0",
        );
    }

    #[test]
    fn per_channel_quantize_of_a_graph_input_uses_its_declared_shape() {
        // Q(x[batch,4]) per channel on axis 1 needs 4 scales.
        let mut m = valid();
        let g = graph(&mut m);
        g.initializer
            .push(crate::builder::tensor("xs4", &[4], &[0.1f32; 4]).unwrap());
        g.initializer
            .push(crate::builder::tensor("xz4", &[4], &[0u8; 4]).unwrap());
        let q = node(&mut m, "q_x");
        q.input = vec!["x".into(), "xs4".into(), "xz4".into()];
        check(&m).unwrap();
        node(&mut m, "q_x").input[1] = "w_scale".into();
        let e = check(&m).unwrap_err();
        assert_invalid(
            &e,
            "node 'q_x' (QuantizeLinear)",
            "'w_scale' has dims [3], expected [4] to match axis 1 of the quantized tensor 'x'",
        );
    }
}
