//! onnx-ir's nodes onto quantlab's ops, in order, checking that they form one chain from
//! the graph input to the graph output, with identity shortcuts (an `Add` of the chain's
//! value and an earlier one) as the only branches.

use std::collections::HashMap;
use std::path::Path;

use onnx_ir::batch_norm::BatchNormConfig;
use onnx_ir::clip::ClipInput;
use onnx_ir::padding::{AutoPad, PaddingConfig2d};
use onnx_ir::reshape::ReshapeInput;
use onnx_ir::{ArgType, Argument, DType, Node, OnnxGraph, TensorDataExt};
use quantlab_quant::graph::transpose;
use quantlab_quant::{Graph, Op};

use crate::fold;
use crate::names::Originals;
use crate::{ImportError, Imported, Result, SUPPORTED};

/// The state of the walk: ops so far, the tensor that carries the activation, its shape.
struct Walk<'a> {
    path: &'a Path,
    ops: Vec<Op>,
    names: Vec<String>,
    notes: Vec<String>,
    /// onnx-ir's name of the value the next node must consume.
    current: String,
    /// Per-sample shape of that value.
    shape: Vec<usize>,
    /// The graph point (0 the input, `i + 1` op `i`'s output) of every value an Add may read.
    points: HashMap<String, usize>,
    /// Per-sample shape of every point.
    shapes: Vec<Vec<usize>>,
    originals: Originals,
}

/// `node 'name' (Op)`, the user's name when the file has one.
fn describe(name: &str, op: &str) -> String {
    format!("node '{name}' ({op})")
}

impl Walk<'_> {
    fn err(&self, msg: impl Into<String>) -> ImportError {
        ImportError::new(self.path, msg)
    }

    /// A constant input as f32 values with its dims.
    fn constant(&self, arg: &Argument, what: &str, at: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let data = arg
            .value()
            .ok_or_else(|| self.err(format!("{at}: its {what} is not a constant initializer")))?;
        let dims = data.shape().to_vec();
        let values = data
            .to_f32_vec()
            .map_err(|e| self.err(format!("{at}: its {what} cannot be read as numbers: {e:?}")))?;
        if values.len() != dims.iter().product::<usize>() {
            return Err(self.err(format!(
                "{at}: its {what} has {} values for dims {dims:?}",
                values.len()
            )));
        }
        Ok((dims, values))
    }

    /// The node's one runtime input must be the current activation: the import reads a
    /// chain of layers.
    fn consume(&self, inputs: &[Argument], at: &str) -> Result<()> {
        let dynamic: Vec<&Argument> = inputs.iter().filter(|a| a.value().is_none()).collect();
        match dynamic.as_slice() {
            [a] if a.name == self.current => Ok(()),
            [_] => Err(self.err(format!(
                "{at}: its input is not the previous layer's output: the graph branches, and \
                 quantlab imports a chain of layers with identity shortcuts (a shortcut with \
                 layers of its own, such as a projection, is not imported yet)"
            ))),
            _ => Err(self.err(format!(
                "{at}: it takes {} runtime inputs (branches meeting), which quantlab imports \
                 only as an Add of an identity shortcut; supported: {SUPPORTED}",
                dynamic.len()
            ))),
        }
    }

    fn push(&mut self, op: Op, name: String, output: &Argument) -> Result<()> {
        let index = self.ops.len();
        self.shape = op
            .output_shape(index, &self.shape)
            .map_err(|e| self.err(format!("{}: {e}", describe(&name, op.kind()))))?;
        self.ops.push(op);
        self.names.push(name);
        self.current = output.name.clone();
        self.points.insert(self.current.clone(), self.ops.len());
        self.shapes.push(self.shape.clone());
        Ok(())
    }

    /// The node passes its input through unchanged (Dropout, Identity, a no-op Flatten):
    /// both names hold the point's values.
    fn pass(&mut self, output: &Argument) {
        if let Some(&p) = self.points.get(&self.current) {
            self.points.insert(output.name.clone(), p);
        }
        self.current = output.name.clone();
    }

    /// The node was folded into the layer before it (BatchNorm, a bias Add): the layer now
    /// computes the node's output, so its old output name no longer names those values.
    fn folded(&mut self, output: &Argument) {
        let p = self.points.remove(&self.current);
        self.current = output.name.clone();
        if let Some(p) = p {
            self.points.insert(self.current.clone(), p);
        }
    }

    /// An `Add` of two runtime values: the current one and an earlier point (a residual
    /// shortcut), which must have the same per-sample shape.
    fn residual(&mut self, inputs: &[Argument], name: String, output: &Argument) -> Result<()> {
        let at = describe(&name, "Add");
        let (cur, other) = match inputs {
            [a, b] if a.name == self.current => (a, b),
            [a, b] if b.name == self.current => (b, a),
            _ => {
                return Err(self.err(format!(
                    "{at}: neither input is the previous layer's output: the graph branches, and \
                     quantlab imports a chain of layers with identity shortcuts"
                )));
            }
        };
        let Some(&from) = self.points.get(&other.name) else {
            return Err(self.err(format!(
                "{at}: adds '{}', which is not an earlier value of the chain (a shortcut with \
                 layers of its own, such as a projection, is not imported yet); supported: {SUPPORTED}",
                other.name
            )));
        };
        debug_assert_eq!(cur.name, self.current);
        if self.shapes[from] != self.shape {
            return Err(self.err(format!(
                "{at}: adds '{}' of shape {:?} to a value of shape {:?}; quantlab imports Adds \
                 of two values of one shape (no broadcasting)",
                other.name, self.shapes[from], self.shape
            )));
        }
        self.push(Op::Add { from }, name, output)
    }

    /// The dense layer the current activation comes from, for a BatchNorm or bias Add.
    fn last_dense(&mut self, at: &str, what: &str) -> Result<(&mut Vec<f32>, &mut Vec<f32>)> {
        match self.ops.last_mut() {
            Some(
                Op::Conv2d { weight, bias, .. }
                | Op::DepthwiseConv2d { weight, bias, .. }
                | Op::Linear { weight, bias, .. },
            ) => Ok((weight, bias)),
            _ => Err(ImportError::new(
                self.path,
                format!("{at}: a {what} must follow a Conv, Gemm or MatMul to be folded into it"),
            )),
        }
    }
}

/// Maps `g` onto a [`Graph`].
pub fn convert(path: &Path, g: &OnnxGraph, originals: Originals, opset: i64) -> Result<Imported> {
    let err = |m: String| ImportError::new(path, m);
    let [input] = g.inputs.as_slice() else {
        return Err(err(format!(
            "the graph has {} inputs; quantlab imports classifiers with one image or feature input",
            g.inputs.len()
        )));
    };
    let [output] = g.outputs.as_slice() else {
        return Err(err(format!(
            "the graph has {} outputs; quantlab imports classifiers with one output",
            g.outputs.len()
        )));
    };
    let input_shape =
        sample_shape(input).map_err(|m| err(format!("input '{}': {m}", input.name)))?;
    let mut w = Walk {
        path,
        ops: Vec::new(),
        names: Vec::new(),
        notes: Vec::new(),
        current: input.name.clone(),
        shape: input_shape.clone(),
        points: HashMap::from([(input.name.clone(), 0)]),
        shapes: vec![input_shape.clone()],
        originals,
    };
    let count = g.nodes.len();
    for (i, node) in g.nodes.iter().enumerate() {
        map_node(&mut w, node, i + 1 == count)?;
    }
    if w.current != output.name {
        return Err(err(format!(
            "the graph output '{}' is not the end of the chain of layers",
            output.name
        )));
    }
    if !w.ops.iter().any(|op| {
        matches!(
            op,
            Op::Linear { .. } | Op::Conv2d { .. } | Op::DepthwiseConv2d { .. }
        )
    }) {
        return Err(err("the graph has no Conv, Gemm or MatMul layer".into()));
    }
    let graph = Graph {
        input_shape,
        ops: w.ops,
    };
    graph
        .shapes()
        .map_err(|e| err(format!("the imported graph is inconsistent: {e}")))?;
    quantlab_quant::Network::from_graph(&graph)
        .map_err(|e| err(format!("the imported graph cannot run: {e}")))?;
    Ok(Imported {
        path: path.to_path_buf(),
        graph,
        names: w.names,
        notes: w.notes,
        opset,
        input_name: input.name.clone(),
    })
}

/// The per-sample shape of the graph input: `[batch, c, h, w]` or `[batch, features]` in
/// f32, every dimension but the batch fixed.
fn sample_shape(input: &Argument) -> std::result::Result<Vec<usize>, String> {
    let ArgType::Tensor(t) = &input.ty else {
        return Err("not a tensor".into());
    };
    if t.dtype != DType::F32 {
        return Err(format!(
            "element type {:?}; quantlab imports float32 models",
            t.dtype
        ));
    }
    if t.rank != 2 && t.rank != 4 {
        return Err(format!(
            "rank {}; quantlab imports [batch, channels, height, width] or [batch, features]",
            t.rank
        ));
    }
    let dims = t
        .static_shape
        .as_ref()
        .ok_or("its shape is not given in the file")?;
    dims[1..]
        .iter()
        .map(|d| {
            d.ok_or_else(|| format!("a dimension other than the batch is not fixed: {dims:?}"))
        })
        .collect()
}

fn map_node(w: &mut Walk<'_>, node: &Node, last: bool) -> Result<()> {
    let op_name = node.node_type().to_string();
    match node {
        Node::Constant(_) => Ok(()),
        Node::Conv2d(c) => {
            let name = w.originals.next(&["Conv"], &c.name);
            let at = describe(&name, "Conv");
            w.consume(&c.inputs[..1], &at)?;
            let cfg = &c.config;
            if cfg.dilation != [1, 1] {
                return Err(w.err(format!(
                    "{at}: dilation {:?}; quantlab imports dilation 1",
                    cfg.dilation
                )));
            }
            // One group, or a depthwise convolution (one group per channel, one output each);
            // checked against the weight's dims below.
            let depthwise = cfg.groups != 1;
            if !matches!(cfg.auto_pad, AutoPad::NotSet | AutoPad::Valid) {
                return Err(w.err(format!(
                    "{at}: auto_pad {:?}; export with explicit pads",
                    cfg.auto_pad
                )));
            }
            if cfg.padding.is_asymmetric() {
                return Err(w.err(format!(
                    "{at}: asymmetric padding {}; quantlab's convolutions pad both sides alike",
                    cfg.padding
                )));
            }
            let (top, left, _, _) = cfg.padding.as_tuple();
            let (dims, weight) = w.constant(&c.inputs[1], "weight", &at)?;
            let [out_c, in_c, kh, kw] = dims[..] else {
                return Err(w.err(format!(
                    "{at}: weight dims {dims:?}, expected [out, in, kh, kw]"
                )));
            };
            if depthwise && !(in_c == 1 && out_c == cfg.groups && w.shape.first() == Some(&out_c)) {
                return Err(w.err(format!(
                    "{at}: {} groups with weight dims {dims:?} on an input of shape {:?}: \
                     quantlab imports one group or a depthwise convolution (group = channels, \
                     one output per channel), not other grouped convolutions; supported: {SUPPORTED}",
                    cfg.groups, w.shape
                )));
            }
            if [kh, kw] != cfg.kernel_size {
                return Err(w.err(format!(
                    "{at}: weight dims {dims:?} disagree with kernel_shape {:?}",
                    cfg.kernel_size
                )));
            }
            let bias = match c.inputs.get(2).filter(|a| !a.is_optional()) {
                Some(b) => {
                    let (_, v) = w.constant(b, "bias", &at)?;
                    if v.len() != out_c {
                        return Err(w.err(format!(
                            "{at}: bias has {} values for {out_c} output channels",
                            v.len()
                        )));
                    }
                    v
                }
                None => vec![0.0; out_c],
            };
            if depthwise {
                let op = Op::DepthwiseConv2d {
                    channels: out_c,
                    kernel: [kh, kw],
                    stride: cfg.stride,
                    padding: [top, left],
                    weight,
                    bias,
                };
                return w.push(op, name, &c.outputs[0]);
            }
            let op = Op::Conv2d {
                in_channels: in_c,
                out_channels: out_c,
                kernel: [kh, kw],
                stride: cfg.stride,
                padding: [top, left],
                weight,
                bias,
            };
            if w.shape.len() != 3 || w.shape[0] != in_c {
                return Err(w.err(format!(
                    "{at}: takes {in_c} input channels, but its input has shape {:?}",
                    w.shape
                )));
            }
            w.push(op, name, &c.outputs[0])
        }
        Node::Linear(l) => {
            let name = w.originals.next(&["Gemm", "MatMul"], &l.name);
            let at = describe(&name, "Gemm/MatMul");
            w.consume(&l.inputs[..1], &at)?;
            // onnx-ir: `[out, in]` from Gemm with transB = 1, `[in, out]` from MatMul.
            let (out_f, in_f, weight) =
                linear_weight(w, &l.inputs[1], l.config.transpose_weight, &at)?;
            let bias = linear_bias(w, l.inputs.get(2), out_f, &at)?;
            dense_linear(w, in_f, out_f, weight, bias, name, &l.outputs[0], &at)
        }
        Node::Gemm(gm) => {
            let name = w.originals.next(&["Gemm"], &gm.name);
            let at = describe(&name, "Gemm");
            w.consume(&gm.inputs[..1], &at)?;
            let cfg = &gm.config;
            if cfg.trans_a != 0 {
                return Err(w.err(format!(
                    "{at}: transA = {}; quantlab imports transA = 0",
                    cfg.trans_a
                )));
            }
            let (out_f, in_f, mut weight) = linear_weight(w, &gm.inputs[1], cfg.trans_b != 0, &at)?;
            weight.iter_mut().for_each(|v| *v *= cfg.alpha);
            let mut bias = linear_bias(w, gm.inputs.get(2), out_f, &at)?;
            bias.iter_mut().for_each(|v| *v *= cfg.beta);
            dense_linear(w, in_f, out_f, weight, bias, name, &gm.outputs[0], &at)
        }
        Node::Add(a) => {
            let name = w.originals.next(&["Add"], &a.name);
            let at = describe(&name, "Add");
            if a.inputs.iter().all(|x| x.value().is_none()) {
                return w.residual(&a.inputs, name, &a.outputs[0]);
            }
            w.consume(&a.inputs, &at)?;
            let constant = a
                .inputs
                .iter()
                .find(|x| x.value().is_some())
                .ok_or_else(|| w.err(format!("{at}: neither operand is a constant")))?;
            let (_, add) = w.constant(constant, "addend", &at)?;
            let path = w.path;
            let (_, bias) = w.last_dense(&at, "bias Add")?;
            if add.len() != bias.len() {
                return Err(ImportError::new(
                    path,
                    format!(
                        "{at}: adds {} values to a layer of {} outputs; quantlab folds per-output bias Adds only",
                        add.len(),
                        bias.len()
                    ),
                ));
            }
            bias.iter_mut().zip(&add).for_each(|(b, v)| *b += v);
            w.notes
                .push(format!("{at} folded into the bias of the layer before it"));
            w.folded(&a.outputs[0]);
            Ok(())
        }
        Node::BatchNormalization(bn) => {
            let name = w.originals.next(&["BatchNormalization"], &bn.name);
            let at = describe(&name, "BatchNormalization");
            w.consume(&bn.inputs[..1], &at)?;
            let eps = match &bn.config {
                BatchNormConfig::Static(s) => s.epsilon,
                BatchNormConfig::Runtime(r) => r.epsilon,
            };
            let mut params = Vec::new();
            for (arg, what) in bn.inputs[1..]
                .iter()
                .zip(["scale", "bias", "mean", "variance"])
            {
                params.push(w.constant(arg, what, &at)?.1);
            }
            let layer = w.names.last().cloned().unwrap_or_default();
            let (weight, bias) = w.last_dense(&at, "BatchNormalization")?;
            let n = bias.len();
            if params.iter().any(|p| p.len() != n) {
                return Err(w.err(format!(
                    "{at}: its parameters have {:?} values for a layer of {n} outputs",
                    params.iter().map(Vec::len).collect::<Vec<_>>()
                )));
            }
            if params[3]
                .iter()
                .any(|v| (*v + eps as f32).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
            {
                return Err(w.err(format!("{at}: a variance plus epsilon is not positive")));
            }
            fold::batch_norm(
                weight,
                bias,
                [&params[0], &params[1], &params[2], &params[3]],
                eps,
            );
            w.notes.push(format!(
                "{at} folded into '{layer}' (epsilon {})",
                eps as f32
            ));
            w.folded(&bn.outputs[0]);
            Ok(())
        }
        Node::Relu(r) => {
            let name = w.originals.next(&["Relu"], &r.name);
            w.consume(&r.inputs, &describe(&name, "Relu"))?;
            w.push(Op::Relu, name, &r.outputs[0])
        }
        Node::Clip(c) => {
            let name = w.originals.next(&["Clip"], &c.name);
            let at = describe(&name, "Clip");
            w.consume(&c.inputs[..1], &at)?;
            let bound = |b: &Option<ClipInput>, what: &str, none: f64| match b {
                None => Ok(none),
                Some(ClipInput::Static(v)) => Ok(*v),
                Some(ClipInput::Runtime(_)) => Err(w.err(format!(
                    "{at}: its {what} is computed at run time; quantlab imports constant bounds"
                ))),
            };
            let (min, max) = (
                bound(&c.config.min, "min", f64::NEG_INFINITY)?,
                bound(&c.config.max, "max", f64::INFINITY)?,
            );
            let after_layer = matches!(
                w.ops.last(),
                Some(Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } | Op::Linear { .. })
            ) && w.points.get(&w.current) == Some(&w.ops.len());
            if min != 0.0 || !(max.is_finite() && max > 0.0) || !after_layer {
                return Err(w.err(format!(
                    "{at}: Clip({min}, {max}); quantlab imports a Clip from 0 to a positive bound \
                     (ReLU6) right after a Conv, Gemm or MatMul; supported: {SUPPORTED}"
                )));
            }
            let op = Op::Clip {
                min: 0.0,
                max: max as f32,
            };
            w.push(op, name, &c.outputs[0])
        }
        Node::MaxPool2d(p) => {
            let name = w.originals.next(&["MaxPool"], &p.name);
            let at = describe(&name, "MaxPool");
            w.consume(&p.inputs, &at)?;
            let c = &p.config;
            let window = (&c.padding, &c.auto_pad, c.dilation, c.ceil_mode);
            let [kernel, stride] = pool_window(w, &at, "max", window, c.kernel_size, c.strides)?;
            w.push(Op::MaxPool2d { kernel, stride }, name, &p.outputs[0])
        }
        Node::AveragePool2d(p) => {
            let name = w.originals.next(&["AveragePool"], &p.name);
            let at = describe(&name, "AveragePool");
            w.consume(&p.inputs, &at)?;
            let c = &p.config;
            let window = (&c.padding, &c.auto_pad, c.dilation, c.ceil_mode);
            let [kernel, stride] =
                pool_window(w, &at, "average", window, c.kernel_size, c.strides)?;
            w.push(Op::AvgPool2d { kernel, stride }, name, &p.outputs[0])
        }
        Node::GlobalAveragePool(p) => {
            let name = w.originals.next(&["GlobalAveragePool"], &p.name);
            let at = describe(&name, "GlobalAveragePool");
            w.consume(&p.inputs, &at)?;
            let &[_, h, wd] = &w.shape[..] else {
                return Err(w.err(format!(
                    "{at}: its input has shape {:?}; quantlab imports it on [batch, c, h, w]",
                    w.shape
                )));
            };
            // The window of the whole map: one output pixel per channel.
            let op = Op::AvgPool2d {
                kernel: [h, wd],
                stride: [1, 1],
            };
            w.push(op, name, &p.outputs[0])
        }
        Node::Flatten(f) => {
            let name = w.originals.next(&["Flatten"], &f.name);
            let at = describe(&name, "Flatten");
            w.consume(&f.inputs, &at)?;
            if f.config.axis != 1 {
                return Err(w.err(format!(
                    "{at}: axis {}; quantlab imports Flatten at axis 1 (keeping the batch)",
                    f.config.axis
                )));
            }
            flatten(w, name, &f.outputs[0])
        }
        Node::Reshape(r) => {
            let name = w.originals.next(&["Reshape"], &r.name);
            let at = describe(&name, "Reshape");
            w.consume(&r.inputs[..1], &at)?;
            let per_sample: usize = w.shape.iter().product();
            match &r.config.shape {
                ReshapeInput::Static(s)
                    if s.len() == 2
                        && (s[1] == -1 || s[1] as usize == per_sample)
                        && (s[0] == -1 || s[0] == 0 || s[0] == 1 || s[1] as usize == per_sample) =>
                {
                    flatten(w, name, &r.outputs[0])
                }
                ReshapeInput::Static(s) => Err(w.err(format!(
                    "{at}: to {s:?}; quantlab imports a Reshape to [batch, features] ({per_sample} per sample)"
                ))),
                ReshapeInput::Runtime(_) => Err(w.err(format!(
                    "{at}: its shape is computed at run time (as `x.view(x.size(0), -1)` exports); \
                     export with `nn.Flatten` or `torch.flatten(x, 1)` instead"
                ))),
            }
        }
        Node::Softmax(s) => {
            let name = w.originals.next(&["Softmax"], &s.name);
            let at = describe(&name, "Softmax");
            w.consume(&s.inputs, &at)?;
            if !last || w.shape.len() != 1 {
                return Err(w.err(format!(
                    "{at}: a Softmax is imported only as the final node over the class scores"
                )));
            }
            w.notes.push(format!(
                "{at} dropped: quantlab classifies on the scores before it (same argmax and accuracy; \
                 the reported loss is the cross-entropy of those scores)"
            ));
            w.pass(&s.outputs[0]);
            Ok(())
        }
        Node::Dropout(d) => {
            w.consume(&d.inputs[..1], &describe(&d.name, "Dropout"))?;
            w.pass(&d.outputs[0]);
            Ok(())
        }
        Node::Identity(d) => {
            w.consume(&d.inputs, &describe(&d.name, "Identity"))?;
            w.pass(&d.outputs[0]);
            Ok(())
        }
        Node::Custom(c) => {
            let name = w.originals.next(&[c.op_type.as_str()], &c.name);
            let op = if c.domain.is_empty() {
                c.op_type.clone()
            } else {
                format!("{}::{}", c.domain, c.op_type)
            };
            Err(w.err(format!(
                "node '{name}' uses operator {op}, which quantlab does not import; supported: {SUPPORTED}"
            )))
        }
        other => {
            let name = w.originals.next(&[op_name.as_str()], other.name());
            Err(w.err(format!(
                "node '{name}' ({op_name}): quantlab does not import this operator; supported: {SUPPORTED}"
            )))
        }
    }
}

/// A pool's `[kernel, stride]`, refused unless it has no padding, dilation 1 and floor mode
/// (what quantlab's pools compute).
fn pool_window(
    w: &Walk<'_>,
    at: &str,
    what: &str,
    (padding, auto_pad, dilation, ceil_mode): (&PaddingConfig2d, &AutoPad, [usize; 2], bool),
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Result<[[usize; 2]; 2]> {
    if *padding != PaddingConfig2d::Valid || !matches!(auto_pad, AutoPad::NotSet | AutoPad::Valid) {
        return Err(w.err(format!(
            "{at}: padding {padding}; quantlab imports {what} pooling without padding"
        )));
    }
    if dilation != [1, 1] || ceil_mode {
        return Err(w.err(format!(
            "{at}: dilation {dilation:?}, ceil_mode {ceil_mode}; quantlab imports dilation 1 and floor mode"
        )));
    }
    Ok([kernel, stride])
}

/// A linear layer's constant weight matrix as `(out, in, [out, in] values)`, from `[out, in]`
/// (`out_in`) or `[in, out]`.
fn linear_weight(
    w: &Walk<'_>,
    arg: &Argument,
    out_in: bool,
    at: &str,
) -> Result<(usize, usize, Vec<f32>)> {
    let (dims, values) = w.constant(arg, "weight", at)?;
    let [a, b] = dims[..] else {
        return Err(w.err(format!("{at}: weight dims {dims:?}, expected a matrix")));
    };
    Ok(if out_in {
        (a, b, values)
    } else {
        (b, a, transpose(&values, a, b))
    })
}

/// A linear layer's bias: the optional constant input, `[n]` or `[1, n]`, zeros if absent.
fn linear_bias(w: &Walk<'_>, arg: Option<&Argument>, n: usize, at: &str) -> Result<Vec<f32>> {
    match arg.filter(|a| !a.is_optional()) {
        None => Ok(vec![0.0; n]),
        Some(a) => {
            let (_, v) = w.constant(a, "bias", at)?;
            match v.len() {
                l if l == n => Ok(v),
                1 => Ok(vec![v[0]; n]),
                l => Err(w.err(format!("{at}: bias has {l} values for {n} outputs"))),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn dense_linear(
    w: &mut Walk<'_>,
    in_f: usize,
    out_f: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    name: String,
    output: &Argument,
    at: &str,
) -> Result<()> {
    if w.shape.len() != 1 {
        return Err(w.err(format!(
            "{at}: its input has shape {:?}; quantlab imports Gemm/MatMul on [batch, features] (flatten first)",
            w.shape
        )));
    }
    if w.shape[0] != in_f {
        return Err(w.err(format!(
            "{at}: takes {in_f} features, but its input has {}",
            w.shape[0]
        )));
    }
    let op = Op::Linear {
        in_features: in_f,
        out_features: out_f,
        weight,
        bias,
    };
    w.push(op, name, output)
}

/// `[c, h, w]` to `[c*h*w]`; already flat values pass through.
fn flatten(w: &mut Walk<'_>, name: String, output: &Argument) -> Result<()> {
    if w.shape.len() == 1 {
        w.pass(output);
        Ok(())
    } else {
        w.push(Op::Flatten, name, output)
    }
}
