//! The model graph in the form the engines run: `Linear`/`Conv2d` fused with a following
//! `ReLU` into one [`Dense`] node (so its output is quantized after the activation, as
//! PyTorch's fused `LinearReLU`/`ConvReLU2d` do), with every node's shapes resolved.
//!
//! Both kinds of dense layer are a GEMM `[rows, k] x [n, k]^T`: a linear layer has one row
//! per sample; a convolution has one row per output pixel (im2col) and `k = c_in*kh*kw`. A
//! depthwise convolution is the one dense layer that is not a GEMM: output channel `j`
//! reads input channel `j` only, `k = kh*kw` taps (`n` = the channels); it is quantized
//! like the others (per-channel weights, the same requantization) and run by its own loop.

pub use quantlab_linalg::{ConvGeom, PoolGeom};

use crate::graph::{Graph, Op};

use crate::error::{QuantError, Result};

/// A linear or convolution layer with float weights `[n, k]`, optionally followed by ReLU.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// `None` for a linear layer, the geometry for a convolution.
    pub conv: Option<ConvGeom>,
    /// Reduction length (`in_features`, or `c_in*kh*kw`).
    pub k: usize,
    /// Outputs (`out_features`, or output channels).
    pub n: usize,
    /// Weights `[n, k]`, row-major (PyTorch layout flattened).
    pub weight: Vec<f32>,
    /// Bias `[n]`.
    pub bias: Vec<f32>,
    /// ReLU fused after the layer.
    pub relu: bool,
    /// The fused ReLU's upper bound (ReLU6: 6), when the layer is followed by a `Clip` from 0.
    pub cap: Option<f32>,
    /// A depthwise convolution (`conv` is set, `n` = its channels, `k = kh*kw`).
    pub depthwise: bool,
}

impl Dense {
    /// Short name for reports.
    pub fn kind(&self) -> &'static str {
        if self.depthwise {
            return match (self.relu, self.cap) {
                (false, _) => "dwconv2d",
                (true, None) => "dwconv2d+relu",
                (true, Some(6.0)) => "dwconv2d+relu6",
                (true, Some(_)) => "dwconv2d+clip",
            };
        }
        match (self.conv.is_some(), self.relu, self.cap) {
            (false, false, _) => "linear",
            (false, true, None) => "linear+relu",
            (false, true, Some(6.0)) => "linear+relu6",
            (false, true, Some(_)) => "linear+clip",
            (true, false, _) => "conv2d",
            (true, true, None) => "conv2d+relu",
            (true, true, Some(6.0)) => "conv2d+relu6",
            (true, true, Some(_)) => "conv2d+clip",
        }
    }

    /// The fused activation on one float output.
    #[inline]
    pub fn activate(&self, v: f32) -> f32 {
        match (self.relu, self.cap) {
            (false, _) => v,
            (true, None) => v.max(0.0),
            (true, Some(c)) => v.max(0.0).min(c),
        }
    }

    /// GEMM rows per sample.
    pub fn rows_per_sample(&self) -> usize {
        self.conv.map_or(1, |g| g.pixels())
    }

    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.conv
            .map_or(self.k, |g| g.in_channels * g.in_hw[0] * g.in_hw[1])
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.n * self.rows_per_sample()
    }

    /// Multiply-accumulates per sample.
    pub fn macs(&self) -> usize {
        self.rows_per_sample() * self.n * self.k
    }
}

/// A node of the network.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Linear or convolution (+ ReLU).
    Dense(Dense),
    /// Max pooling `[c, h, w] -> [c, oh, ow]`.
    MaxPool(PoolGeom),
    /// Average pooling `[c, h, w] -> [c, oh, ow]` (a global average pool has the window of
    /// the whole map).
    AvgPool(PoolGeom),
    /// The activation plus the one at the earlier point `from` (0 the input, `i + 1` the
    /// output of node `i`), optionally followed by ReLU: a residual block's shortcut, fused
    /// with its ReLU as PyTorch's `add_relu` is, so the point after it is quantized once.
    Add {
        /// The point added.
        from: usize,
        /// ReLU fused after the sum.
        relu: bool,
    },
    /// A ReLU that does not follow a dense layer or an Add.
    Relu,
    /// Shape change only.
    Flatten,
}

/// The runnable form of a model graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
    /// Nodes in order.
    pub nodes: Vec<Node>,
    /// Per-sample output length of every node (`out_lens[i]` for node `i`).
    pub out_lens: Vec<usize>,
}

/// The most values one sample may have at any point of a network, and the largest weight
/// matrix (64 Mi values: 256 MB of f32 activations per sample, far above any classifier
/// this tool targets). Files and imported graphs beyond it are refused with this number.
pub const MAX_SAMPLE_VALUES: usize = 1 << 26;

/// The product of `dims`, refused (naming `what` and the limit) when it overflows or is over
/// [`MAX_SAMPLE_VALUES`].
fn bounded(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&v| v <= MAX_SAMPLE_VALUES)
        .ok_or_else(|| {
            QuantError::Graph(format!(
                "{what}: sizes {dims:?} give more than quantlab's limit of {MAX_SAMPLE_VALUES} values"
            ))
        })
}

/// Per graph op, whether [`Network::from_graph`] fuses the activation after it: a dense
/// layer followed by ReLU or by a `Clip` from 0 (ReLU6), an Add followed by ReLU; never
/// when an Add reads the value before the activation.
fn relu_fusions(g: &Graph) -> Vec<bool> {
    let read: Vec<usize> = g
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Add { from } => Some(*from),
            _ => None,
        })
        .collect();
    (0..g.ops.len())
        .map(|i| {
            let dense = matches!(
                g.ops[i],
                Op::Linear { .. } | Op::Conv2d { .. } | Op::DepthwiseConv2d { .. }
            );
            let act = match g.ops.get(i + 1) {
                Some(Op::Relu) => dense || matches!(g.ops[i], Op::Add { .. }),
                Some(Op::Clip { min, .. }) => dense && *min == 0.0,
                _ => false,
            };
            act && !read.contains(&(i + 1))
        })
        .collect()
}

/// The index of the first graph op of every node [`Network::from_graph`] builds (a fused
/// ReLU belongs to the op before it): how reports name nodes after the graph's ops.
pub fn first_ops(g: &Graph) -> Vec<usize> {
    let fuses = relu_fusions(g);
    let mut out = Vec::new();
    let mut i = 0;
    while i < g.ops.len() {
        out.push(i);
        i += 1 + usize::from(fuses[i]);
    }
    out
}

/// What a point's values are, beyond their count: the engine stores maps channels-last, so
/// a flattened map and a vector of the same length are in different orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Map([usize; 3]),
    FlatMap([usize; 3]),
    Flat,
}

/// Every Add joins two points of the same form (same map shape, or both plain vectors).
fn check_add_forms(input_shape: &[usize], nodes: &[Node]) -> Result<()> {
    let mut forms = vec![match input_shape {
        &[c, h, w] => Form::Map([c, h, w]),
        _ => Form::Flat,
    }];
    for (i, node) in nodes.iter().enumerate() {
        let here = forms[i];
        let next = match node {
            Node::Dense(Dense {
                conv: Some(g), n, ..
            }) => Form::Map([*n, g.out_hw[0], g.out_hw[1]]),
            Node::Dense(_) => Form::Flat,
            Node::MaxPool(g) | Node::AvgPool(g) => {
                Form::Map([g.channels, g.out_hw[0], g.out_hw[1]])
            }
            Node::Flatten => match here {
                Form::Map(chw) => Form::FlatMap(chw),
                other => other,
            },
            Node::Add { from, .. } => {
                if forms.get(*from) != Some(&here) {
                    return Err(QuantError::Graph(format!(
                        "node {i} adds point {from} ({:?}) to a value of another shape ({here:?})",
                        forms.get(*from)
                    )));
                }
                here
            }
            Node::Relu => here,
        };
        forms.push(next);
    }
    Ok(())
}

impl Node {
    /// Whether the point after this node has a grid of its own (calibrated or learned): a
    /// dense layer's or an Add's output. The others (pools, ReLU, flatten) keep their
    /// input's, as the integer engine runs them.
    pub fn sets_grid(&self) -> bool {
        matches!(self, Node::Dense(_) | Node::Add { .. })
    }

    /// Short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Dense(d) => d.kind(),
            Node::MaxPool(_) => "maxpool2d",
            Node::AvgPool(_) => "avgpool2d",
            Node::Add { relu: false, .. } => "add",
            Node::Add { relu: true, .. } => "add+relu",
            Node::Relu => "relu",
            Node::Flatten => "flatten",
        }
    }
}

impl Network {
    /// Builds the network from a model graph, fusing `Linear`/`Conv2d`/`Add` + `ReLU` and
    /// `Linear`/`Conv2d` + `Clip` from 0 (a capped ReLU). Any other `Clip` is refused.
    pub fn from_graph(g: &Graph) -> Result<Self> {
        let shapes = g.shapes()?;
        let misfit =
            |i: usize| QuantError::Graph(format!("op {i}: its window does not fit its input"));
        let mut nodes = Vec::new();
        let mut out_lens = Vec::new();
        // The network point of every graph point (`None` inside a fused pair).
        let mut points: Vec<Option<usize>> = vec![Some(0)];
        let fuses = relu_fusions(g);
        let mut i = 0;
        while i < g.ops.len() {
            let sin = &shapes[i];
            let fuse = fuses[i];
            let cap = match (fuse, g.ops.get(i + 1)) {
                (true, Some(Op::Clip { max, .. })) => Some(*max),
                _ => None,
            };
            let node = match &g.ops[i] {
                Op::Linear {
                    in_features,
                    out_features,
                    weight,
                    bias,
                } => Node::Dense(Dense {
                    conv: None,
                    k: *in_features,
                    n: *out_features,
                    weight: weight.clone(),
                    bias: bias.clone(),
                    relu: fuse,
                    cap,
                    depthwise: false,
                }),
                op @ Op::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    weight,
                    bias,
                    ..
                } => Node::Dense(Dense {
                    conv: Some(op.conv_geom(sin).ok_or_else(|| misfit(i))?),
                    k: in_channels * kernel[0] * kernel[1],
                    n: *out_channels,
                    weight: weight.clone(),
                    bias: bias.clone(),
                    relu: fuse,
                    cap,
                    depthwise: false,
                }),
                op @ Op::DepthwiseConv2d {
                    channels,
                    kernel,
                    weight,
                    bias,
                    ..
                } => Node::Dense(Dense {
                    conv: Some(op.conv_geom(sin).ok_or_else(|| misfit(i))?),
                    k: kernel[0] * kernel[1],
                    n: *channels,
                    weight: weight.clone(),
                    bias: bias.clone(),
                    relu: fuse,
                    cap,
                    depthwise: true,
                }),
                op @ Op::MaxPool2d { .. } => {
                    Node::MaxPool(op.pool_geom(sin).ok_or_else(|| misfit(i))?)
                }
                op @ Op::AvgPool2d { .. } => {
                    Node::AvgPool(op.pool_geom(sin).ok_or_else(|| misfit(i))?)
                }
                Op::Add { from } => Node::Add {
                    from: points.get(*from).copied().flatten().ok_or_else(|| {
                        QuantError::Graph(format!(
                            "op {i}: adds point {from}, which is inside a layer and its fused ReLU"
                        ))
                    })?,
                    relu: fuse,
                },
                Op::Relu => Node::Relu,
                Op::Clip { min, max } => {
                    return Err(QuantError::Graph(format!(
                        "op {i}: Clip({min}, {max}) runs only fused after a Conv or Gemm with \
                         min 0 (ReLU6 and other capped ReLUs)"
                    )));
                }
                Op::Flatten => Node::Flatten,
            };
            let fused = fuse;
            out_lens.push(shapes[i + 1 + usize::from(fused)].iter().product());
            nodes.push(node);
            if fused {
                points.push(None);
            }
            points.push(Some(nodes.len()));
            i += 1 + usize::from(fused);
        }
        if !nodes.iter().any(|n| matches!(n, Node::Dense(_))) {
            return Err(QuantError::Graph(
                "the graph has no linear or convolution layer to quantize".into(),
            ));
        }
        Ok(Self {
            input_shape: g.input_shape.clone(),
            nodes,
            out_lens,
        })
    }

    /// The model graph this network runs (fused ReLUs as ops of their own again): the
    /// inverse of [`Self::from_graph`], for the reference interpreter and reports.
    pub fn to_graph(&self) -> Graph {
        let mut ops = Vec::new();
        // The graph point of every network point.
        let mut points = vec![0];
        for node in &self.nodes {
            let cap = match node {
                Node::Dense(d) => d.cap,
                _ => None,
            };
            let (op, relu) = match node {
                Node::Dense(d) => (
                    match d.conv {
                        Some(g) if d.depthwise => Op::DepthwiseConv2d {
                            channels: d.n,
                            kernel: g.kernel,
                            stride: g.stride,
                            padding: g.padding,
                            weight: d.weight.clone(),
                            bias: d.bias.clone(),
                        },
                        None => Op::Linear {
                            in_features: d.k,
                            out_features: d.n,
                            weight: d.weight.clone(),
                            bias: d.bias.clone(),
                        },
                        Some(g) => Op::Conv2d {
                            in_channels: g.in_channels,
                            out_channels: d.n,
                            kernel: g.kernel,
                            stride: g.stride,
                            padding: g.padding,
                            weight: d.weight.clone(),
                            bias: d.bias.clone(),
                        },
                    },
                    d.relu,
                ),
                Node::MaxPool(g) => (
                    Op::MaxPool2d {
                        kernel: g.kernel,
                        stride: g.stride,
                    },
                    false,
                ),
                Node::AvgPool(g) => (
                    Op::AvgPool2d {
                        kernel: g.kernel,
                        stride: g.stride,
                    },
                    false,
                ),
                Node::Add { from, relu } => (
                    Op::Add {
                        from: points[*from],
                    },
                    *relu,
                ),
                Node::Relu => (Op::Relu, false),
                Node::Flatten => (Op::Flatten, false),
            };
            ops.push(op);
            match (relu, cap) {
                (true, Some(max)) => ops.push(Op::Clip { min: 0.0, max }),
                (true, None) => ops.push(Op::Relu),
                _ => {}
            }
            points.push(ops.len());
        }
        Graph {
            input_shape: self.input_shape.clone(),
            ops,
        }
    }

    /// Builds a network from nodes (e.g. read from a file), recomputing every node's output
    /// length and checking that consecutive nodes fit.
    /// Every size is checked against [`MAX_SAMPLE_VALUES`] before any is multiplied, so a
    /// file cannot make the engine size its buffers from an overflowed product.
    pub fn from_nodes(input_shape: Vec<usize>, nodes: Vec<Node>) -> Result<Self> {
        let mut len = bounded("the input", &input_shape)?;
        let mut out_lens = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let what = format!("node {i}");
            match node {
                Node::Dense(d) => {
                    bounded(&what, &[d.k])?;
                    bounded(&what, &[d.n])?;
                    bounded(&what, &[d.n, d.k])?;
                    if let Some(g) = &d.conv {
                        let dims = [g.in_hw, g.kernel, g.stride, g.padding, g.out_hw];
                        for v in dims.iter().flatten().chain([&g.in_channels]) {
                            bounded(&what, &[*v])?;
                        }
                        bounded(&what, &[g.in_channels, g.in_hw[0], g.in_hw[1]])?;
                        bounded(&what, &[d.n, g.out_hw[0], g.out_hw[1]])?;
                        bounded(&what, &[d.k, g.out_hw[0], g.out_hw[1]])?;
                    }
                    let taps = d.conv.and_then(|g| g.kernel[0].checked_mul(g.kernel[1]));
                    let fits = match (&d.conv, d.depthwise) {
                        (None, depthwise) => !depthwise,
                        (Some(g), true) => g.in_channels == d.n && taps == Some(d.k),
                        (Some(g), false) => {
                            taps.and_then(|t| t.checked_mul(g.in_channels)) == Some(d.k)
                        }
                    };
                    if !fits {
                        return Err(QuantError::Graph(format!(
                            "node {i}: {} weights [{}, {}] do not fit its geometry",
                            d.kind(),
                            d.n,
                            d.k
                        )));
                    }
                }
                Node::MaxPool(g) | Node::AvgPool(g) => {
                    let dims = [g.in_hw, g.kernel, g.stride, g.out_hw];
                    for v in dims.iter().flatten().chain([&g.channels]) {
                        bounded(&what, &[*v])?;
                    }
                    bounded(&what, &[g.channels, g.in_hw[0], g.in_hw[1]])?;
                }
                Node::Add { .. } | Node::Relu | Node::Flatten => {}
            }
            let mismatch = |want: usize| {
                QuantError::Graph(format!(
                    "node {i} expects {want} inputs per sample, the previous node gives {len}"
                ))
            };
            len = match node {
                Node::Dense(d) => {
                    if d.in_len() != len {
                        return Err(mismatch(d.in_len()));
                    }
                    if d.conv.is_some_and(|g| !g.is_consistent()) {
                        return Err(QuantError::Graph(format!(
                            "node {i}: inconsistent convolution geometry"
                        )));
                    }
                    d.out_len()
                }
                Node::MaxPool(g) | Node::AvgPool(g) => {
                    if g.channels * g.in_hw[0] * g.in_hw[1] != len {
                        return Err(mismatch(g.channels * g.in_hw[0] * g.in_hw[1]));
                    }
                    if !g.is_consistent() {
                        return Err(QuantError::Graph(format!(
                            "node {i}: inconsistent pooling geometry"
                        )));
                    }
                    g.channels * g.out_hw[0] * g.out_hw[1]
                }
                Node::Add { from, .. } => {
                    // Earlier points only, of this node's input length (the layouts of two
                    // points of one length can still differ: checked by `layouts`).
                    let from_len = match *from {
                        0 => Some(bounded("the input", &input_shape)?),
                        p if p <= i => Some(out_lens[p - 1]),
                        _ => None,
                    };
                    if from_len != Some(len) {
                        return Err(QuantError::Graph(format!(
                            "node {i} adds point {from}, which is not an earlier point of {len} values per sample"
                        )));
                    }
                    len
                }
                Node::Relu | Node::Flatten => len,
            };
            out_lens.push(len);
        }
        if out_lens.is_empty() {
            return Err(QuantError::Graph("no nodes".into()));
        }
        check_add_forms(&input_shape, &nodes)?;
        Ok(Self {
            input_shape,
            nodes,
            out_lens,
        })
    }

    /// Per-sample input length.
    pub fn in_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Per-sample output length (classes).
    pub fn out_len(&self) -> usize {
        *self.out_lens.last().expect("a network has nodes")
    }

    /// Indices of the dense nodes (the layers a report talks about).
    pub fn dense_indices(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i], Node::Dense(_)))
            .collect()
    }

    /// Total parameters.
    pub fn params(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Dense(d) => d.weight.len() + d.bias.len(),
                _ => 0,
            })
            .sum()
    }

    /// Input length of node `i`.
    pub fn node_in_len(&self, i: usize) -> usize {
        if i == 0 {
            self.in_len()
        } else {
            self.out_lens[i - 1]
        }
    }
}
