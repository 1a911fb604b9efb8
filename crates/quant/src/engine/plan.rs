//! What [`super::Engine::prepare`] decides once per model and path: every dense layer's
//! weights in the order and packing its kernels read, the layout of every point, and the
//! steps a run executes, fusion included.
//!
//! The engine runs feature maps channels-last (`[h, w, c]`), so a convolution's weights are
//! permuted to the `(ky, kx, c)` reduction order and the first linear layer after a feature
//! map has its columns permuted from NCHW-flatten order to `(y, x, c)`; the network's input
//! is transposed once on entry (a no-op for one channel). Integer results are unchanged by
//! the permutation (the same products, summed exactly), so int8 logits stay bit-identical
//! to the NCHW reference, and a model's file and ONNX export keep PyTorch's order.
//!
//! Fusion is decided here, as explicit steps, not while running: a convolution followed by
//! a non-overlapping max pool over its whole output runs as one step (the float path pools
//! each sample's map while it is in cache; the int8 path max-reduces i32 accumulators, in the
//! kernel where the path has a fused requantizer, else in the epilogue the GEMM hands them to,
//! and requantizes only the pooled pixels), and a static first layer quantizes the caller's
//! input directly. A traced run ([`Plan::traced`]) has no fusion, so every node's output
//! can be seen.

use quantlab_linalg::frame::nhwc::{self, Taps};
use quantlab_linalg::{ConvGeom, Ops, PackedF32, PackedI8, PoolGeom, Requantizer};

use crate::model::{LayerImpl, QuantModel};
use crate::network::{Dense, Node};
use crate::qparams::QParams;

/// A dense layer's weights as its kernels read them.
#[derive(Debug, Clone)]
pub enum Weights {
    /// Float weights and bias packed in panels.
    F32(PackedF32),
    /// Int8 weights (static or dynamic layer) in the engine's reduction order, packed for
    /// the path, with the fused requantizer where the path has one (static layers).
    Int8 {
        /// The packed weights.
        w: PackedI8,
        /// Constants for requantizing in registers.
        rq: Option<Requantizer>,
    },
    /// A depthwise convolution's weights, tap-major, and its taps (see
    /// [`super::depthwise`]).
    Depthwise(super::depthwise::DwWeights),
}

/// A model's feature-map layout at one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A vector per sample.
    Flat,
    /// A feature map `[c, h, w]` stored channels-last.
    Map([usize; 3]),
}

/// How a run turns the caller's f32 input into the first node's activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry {
    /// Transpose each `[c, h, w]` sample to channels-last.
    ToNhwc([usize; 3]),
    /// Quantize straight from the caller's slice (a static first layer).
    Quantize(QParams),
    /// Copy as is.
    Copy,
}

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Dense node `node` in f32; with `pool`, the max pool node after it in the same pass.
    DenseF32 {
        /// Node index.
        node: usize,
        /// The fused pool's node index.
        pool: Option<usize>,
    },
    /// Dense node `node` integer end to end; with `pool`, the max pool after it fused into
    /// the accumulators.
    DenseStatic {
        /// Node index.
        node: usize,
        /// The fused pool's node index.
        pool: Option<usize>,
    },
    /// Dense node `node` with int8 weights, input quantized per batch, f32 output.
    DenseDynamic {
        /// Node index.
        node: usize,
    },
    /// A max pool on its own.
    MaxPool {
        /// Node index.
        node: usize,
    },
    /// An average pool (integer on u8 values).
    AvgPool {
        /// Node index.
        node: usize,
    },
    /// A residual Add (+ ReLU) of a kept point to the activation.
    Add {
        /// Node index.
        node: usize,
    },
    /// A ReLU on its own.
    Relu {
        /// Node index.
        node: usize,
    },
    /// A flatten (no data moves).
    Flatten {
        /// Node index.
        node: usize,
    },
}

impl Step {
    /// The first node this step runs (the point before it is its input).
    pub fn first_node(&self) -> usize {
        match *self {
            Step::DenseF32 { node, .. }
            | Step::DenseStatic { node, .. }
            | Step::DenseDynamic { node }
            | Step::MaxPool { node }
            | Step::AvgPool { node }
            | Step::Add { node }
            | Step::Relu { node }
            | Step::Flatten { node } => node,
        }
    }

    /// The last node this step completes (a trace point follows it).
    pub fn last_node(&self) -> usize {
        match *self {
            Step::DenseF32 { node, pool } | Step::DenseStatic { node, pool } => {
                pool.unwrap_or(node)
            }
            Step::DenseDynamic { node }
            | Step::MaxPool { node }
            | Step::AvgPool { node }
            | Step::Add { node }
            | Step::Relu { node }
            | Step::Flatten { node } => node,
        }
    }
}

/// Everything an engine precomputes for one model on one kernel path.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Prepared weights, one entry per node (`None` where not dense).
    pub weights: Vec<Option<Weights>>,
    /// Layout of every point (`nodes + 1`; point 0 is the input).
    pub layouts: Vec<Layout>,
    /// For each convolution, its taps over a padded input of its own channel count.
    pub taps: Vec<Option<Taps>>,
    /// The points a later Add reads (`nodes + 1`): a run keeps a copy of each.
    pub keep: Vec<bool>,
    /// The run's entry and steps, fused.
    pub entry: Entry,
    /// The steps of an untraced run.
    pub steps: Vec<Step>,
    /// The entry and steps of a traced run: one step per node, nothing fused, the input as
    /// given.
    pub traced: (Entry, Vec<Step>),
    /// Bytes of one sample's activations at the untraced run's busiest step: its input, its
    /// output and every point kept for a later Add (what [`super::Session::run`] sizes the
    /// chunks of a batch by).
    pub sample_bytes: usize,
}

impl Plan {
    /// Prepares `model` for the kernels of `ops`.
    pub fn new(model: &QuantModel, ops: &Ops) -> Self {
        let net = &model.network;
        let mut layout = match net.input_shape[..] {
            [c, h, w] => Layout::Map([c, h, w]),
            _ => Layout::Flat,
        };
        let mut layouts = vec![layout];
        let mut weights = Vec::with_capacity(net.nodes.len());
        for (node, layer) in net.nodes.iter().zip(&model.layers) {
            let prepared = match node {
                Node::Dense(d) => {
                    let (prepared, next) = prepare_dense(d, layer.as_ref(), layout, ops);
                    layout = next;
                    Some(prepared)
                }
                Node::MaxPool(g) | Node::AvgPool(g) => {
                    layout = Layout::Map([g.channels, g.out_hw[0], g.out_hw[1]]);
                    None
                }
                Node::Add { .. } | Node::Relu | Node::Flatten => None,
            };
            weights.push(prepared);
            layouts.push(layout);
        }
        let taps = net
            .nodes
            .iter()
            .map(|n| match n {
                Node::Dense(Dense { conv: Some(g), .. }) => Some(Taps::new(g)),
                _ => None,
            })
            .collect();
        let mut keep = vec![false; net.nodes.len() + 1];
        for n in &net.nodes {
            if let Node::Add { from, .. } = n {
                keep[*from] = true;
            }
        }
        let traced = (
            entry(model, layouts[0], true),
            steps(model, &weights, &keep, false),
        );
        let (entry, steps) = (
            entry(model, layouts[0], false),
            steps(model, &weights, &keep, true),
        );
        Self {
            sample_bytes: sample_bytes(model, entry, &steps, &keep),
            entry,
            steps,
            weights,
            layouts,
            taps,
            keep,
            traced,
        }
    }
}

/// The entry: channels-last for a multi-channel image, else quantize once for a static
/// first layer (untraced: a trace wants the input as given), else a copy.
fn entry(model: &QuantModel, input: Layout, traced: bool) -> Entry {
    let first = model
        .network
        .nodes
        .iter()
        .position(|n| !matches!(n, Node::Flatten))
        .and_then(|i| model.layers[i].as_ref());
    match (input, first) {
        (Layout::Map(chw), _) if chw[0] > 1 => Entry::ToNhwc(chw),
        (_, Some(LayerImpl::Static(l))) if !traced => Entry::Quantize(l.in_q),
        _ => Entry::Copy,
    }
}

/// [`Plan::sample_bytes`]: the steps walked with the size of the values they hand on (u8
/// after a static layer, f32 after a float or dynamic one, the input's through pools,
/// ReLUs and flattens; an Add's as the engine runs it: u8 only when both sides are and the
/// point after is calibrated).
fn sample_bytes(model: &QuantModel, entry: Entry, steps: &[Step], keep: &[bool]) -> usize {
    let net = &model.network;
    let len = |point: usize| net.node_in_len(point);
    let mut size = if matches!(entry, Entry::Quantize(_)) {
        1
    } else {
        4
    };
    // Each kept point's size as it was kept, and the bytes kept so far.
    let mut kept_size = vec![0; keep.len()];
    let mut kept = 0;
    if keep[0] {
        kept_size[0] = size;
        kept += len(0) * size;
    }
    let mut most = 0;
    for step in steps {
        let input = len(step.first_node()) * size;
        size = match *step {
            Step::DenseStatic { .. } => 1,
            Step::DenseF32 { .. } | Step::DenseDynamic { .. } => 4,
            Step::Add { node } => match net.nodes[node] {
                Node::Add { from, .. }
                    if size == 1 && kept_size[from] == 1 && model.points[node + 1].is_some() =>
                {
                    1
                }
                _ => 4,
            },
            Step::MaxPool { .. }
            | Step::AvgPool { .. }
            | Step::Relu { .. }
            | Step::Flatten { .. } => size,
        };
        let point = step.last_node() + 1;
        most = most.max(kept + input + len(point) * size);
        if keep[point] {
            kept_size[point] = size;
            kept += len(point) * size;
        }
    }
    most
}

/// A conv's whole output pooled by a non-overlapping window: the pool that can run fused.
fn fusable_pool(conv: &ConvGeom, n: usize, pool: &PoolGeom) -> bool {
    pool.kernel == pool.stride && pool.channels == n && pool.in_hw == conv.out_hw
}

/// The steps; a conv's output that an Add reads (`keep`) is never fused away.
fn steps(model: &QuantModel, weights: &[Option<Weights>], keep: &[bool], fuse: bool) -> Vec<Step> {
    let nodes = &model.network.nodes;
    let mut steps = Vec::with_capacity(nodes.len());
    let mut i = 0;
    while i < nodes.len() {
        let pool_after = |d: &Dense| match (d.conv.as_ref(), nodes.get(i + 1)) {
            (Some(g), Some(Node::MaxPool(pg)))
                if fuse && !d.depthwise && !keep[i + 1] && fusable_pool(g, d.n, pg) =>
            {
                Some(i + 1)
            }
            _ => None,
        };
        let step = match (&nodes[i], &model.layers[i], &weights[i]) {
            (Node::Dense(d), Some(LayerImpl::F32), _) => Step::DenseF32 {
                node: i,
                pool: pool_after(d),
            },
            (Node::Dense(d), Some(LayerImpl::Static(_)), Some(Weights::Int8 { .. })) => {
                Step::DenseStatic {
                    node: i,
                    pool: pool_after(d),
                }
            }
            (Node::Dense(_), Some(LayerImpl::Static(_)), Some(Weights::Depthwise(_))) => {
                Step::DenseStatic {
                    node: i,
                    pool: None,
                }
            }
            (Node::Dense(_), Some(LayerImpl::Dynamic(_)), _) => Step::DenseDynamic { node: i },
            (Node::Dense(_), _, _) => Step::DenseF32 {
                node: i,
                pool: None,
            },
            (Node::MaxPool(_), _, _) => Step::MaxPool { node: i },
            (Node::AvgPool(_), _, _) => Step::AvgPool { node: i },
            (Node::Add { .. }, _, _) => Step::Add { node: i },
            (Node::Relu, _, _) => Step::Relu { node: i },
            (Node::Flatten, _, _) => Step::Flatten { node: i },
        };
        i = step.last_node() + 1;
        steps.push(step);
    }
    steps
}

/// How a dense layer's `[n, k]` weight columns are reordered for its NHWC input.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Conv: `(c, ky, kx)` -> `(ky, kx, c)`, each kernel row zero-padded to this length.
    Conv(ConvGeom, usize),
    /// Linear reading a flattened map: `(c, y, x)` -> `(y, x, c)`.
    Flatten([usize; 3]),
    /// Already in order.
    Keep,
}

impl Order {
    fn apply<T: Copy + Default>(self, w: &[T], n: usize) -> Vec<T> {
        match self {
            Order::Conv(g, seg) => nhwc::conv_weight(w, n, &g, seg),
            Order::Flatten(chw) => nhwc::flatten_columns(w, n, chw),
            Order::Keep => w.to_vec(),
        }
    }
}

/// A dense layer's weights in the order the input `layout` needs, and the output layout.
fn prepare_dense(
    d: &Dense,
    layer: Option<&LayerImpl>,
    layout: Layout,
    ops: &Ops,
) -> (Weights, Layout) {
    if let (true, Some(g)) = (d.depthwise, &d.conv) {
        let prepared = Weights::Depthwise(super::depthwise::DwWeights::new(d, g, layer, ops));
        return (prepared, Layout::Map([d.n, g.out_hw[0], g.out_hw[1]]));
    }
    // Int8 kernel rows are rounded up to the path's unit (see `Ops::seg_multiple`).
    let (order, order8, next) = match (&d.conv, layout) {
        (Some(g), _) => {
            let t = Taps::new(g);
            (
                Order::Conv(*g, t.seg_len),
                Order::Conv(*g, t.seg_len_to(ops.seg_multiple())),
                Layout::Map([d.n, g.out_hw[0], g.out_hw[1]]),
            )
        }
        // One channel or one pixel: NHWC and NCHW flatten to the same order.
        (None, Layout::Map(chw)) if chw[0] > 1 && chw[1] * chw[2] > 1 => {
            (Order::Flatten(chw), Order::Flatten(chw), Layout::Flat)
        }
        (None, _) => (Order::Keep, Order::Keep, Layout::Flat),
    };
    let int8 = |w: &quantlab_linalg::QWeights| {
        let wk = order8.apply(&w.w, w.n);
        let k = wk.len() / w.n.max(1);
        ops.pack(&quantlab_linalg::QWeights::new(wk, w.n, k))
    };
    let prepared = match layer {
        Some(LayerImpl::F32) | None => Weights::F32(PackedF32::new(
            &order.apply(&d.weight, d.n),
            &d.bias,
            d.n,
            d.k,
        )),
        Some(LayerImpl::Static(l)) => {
            let w = int8(&l.w);
            let rq = ops.requantizer(&l.offset, &l.requant, &w);
            Weights::Int8 { w, rq }
        }
        Some(LayerImpl::Dynamic(l)) => Weights::Int8 {
            w: int8(&l.w),
            rq: None,
        },
    };
    (prepared, next)
}
