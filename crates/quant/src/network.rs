//! The model graph in the form the engines run: `Linear`/`Conv2d` fused with a following
//! `ReLU` into one [`Dense`] node (so its output is quantized after the activation, as
//! PyTorch's fused `LinearReLU`/`ConvReLU2d` do), with every node's shapes resolved.
//!
//! Both kinds of dense layer are a GEMM `[rows, k] x [n, k]^T`: a linear layer has one row
//! per sample; a convolution has one row per output pixel (im2col) and `k = c_in*kh*kw`.

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
}

impl Dense {
    /// Short name for reports.
    pub fn kind(&self) -> &'static str {
        match (self.conv.is_some(), self.relu) {
            (false, false) => "linear",
            (false, true) => "linear+relu",
            (true, false) => "conv2d",
            (true, true) => "conv2d+relu",
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
    /// A ReLU that does not follow a dense layer.
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

impl Network {
    /// Builds the network from a model graph, fusing `Linear`/`Conv2d` + `ReLU`.
    pub fn from_graph(g: &Graph) -> Result<Self> {
        let shapes = g.shapes()?;
        let misfit =
            |i: usize| QuantError::Graph(format!("op {i}: its window does not fit its input"));
        let mut nodes = Vec::new();
        let mut out_lens = Vec::new();
        let mut i = 0;
        while i < g.ops.len() {
            let sin = &shapes[i];
            let fuse = matches!(g.ops.get(i + 1), Some(Op::Relu));
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
                }),
                op @ Op::MaxPool2d { .. } => {
                    Node::MaxPool(op.pool_geom(sin).ok_or_else(|| misfit(i))?)
                }
                Op::Relu => Node::Relu,
                Op::Flatten => Node::Flatten,
            };
            let fused = matches!(node, Node::Dense(_)) && fuse;
            out_lens.push(shapes[i + 1 + usize::from(fused)].iter().product());
            nodes.push(node);
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
                }
                Node::MaxPool(g) => {
                    let dims = [g.in_hw, g.kernel, g.stride, g.out_hw];
                    for v in dims.iter().flatten().chain([&g.channels]) {
                        bounded(&what, &[*v])?;
                    }
                    bounded(&what, &[g.channels, g.in_hw[0], g.in_hw[1]])?;
                }
                Node::Relu | Node::Flatten => {}
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
                Node::MaxPool(g) => {
                    if g.channels * g.in_hw[0] * g.in_hw[1] != len {
                        return Err(mismatch(g.channels * g.in_hw[0] * g.in_hw[1]));
                    }
                    if !g.is_consistent() {
                        return Err(QuantError::Graph(format!(
                            "node {i}: inconsistent max-pool geometry"
                        )));
                    }
                    g.channels * g.out_hw[0] * g.out_hw[1]
                }
                Node::Relu | Node::Flatten => len,
            };
            out_lens.push(len);
        }
        if out_lens.is_empty() {
            return Err(QuantError::Graph("no nodes".into()));
        }
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
