//! What the engine prepares once per model: every dense layer's weights in the order and
//! packing its kernels read, for channels-last (NHWC) feature maps.
//!
//! The engine runs feature maps as `[h, w, c]`, so a convolution's weights are permuted to
//! the `(ky, kx, c)` reduction order and the first linear layer after a feature map has its
//! columns permuted from NCHW-flatten order to `(y, x, c)`; the network's input is
//! transposed once on entry (a no-op for one channel). Integer results are unchanged by the
//! permutation (the same products, summed exactly), so int8 logits stay bit-identical to
//! the NCHW reference, and a model's file and ONNX export keep PyTorch's order.
//!
//! A plan is built on a model's first run and cached in it ([`PlanCache`]); a clone starts
//! with an empty cache, so the models `methods::with_fallback` derives get their own.

use std::sync::{Arc, OnceLock};

use crate::kernels::nhwc::{self, Taps};
use crate::kernels::sgemm::PackedF32;
use crate::kernels::{QWeights, avx512};
use crate::model::{LayerImpl, QuantModel};
use crate::network::{ConvGeom, Dense, Node};

/// The prepared form of one node.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Not a dense layer.
    None,
    /// Float weights packed for [`crate::kernels::sgemm`].
    F32(PackedF32),
    /// Int8 weights (static or dynamic layer) in the engine's reduction order.
    Int8(QWeights),
}

/// A model's feature-map layout at one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A vector per sample.
    Flat,
    /// A feature map `[c, h, w]` stored channels-last.
    Map([usize; 3]),
}

/// Everything the engine precomputes for one model.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One entry per node.
    pub nodes: Vec<Prepared>,
    /// Layout of every point (`nodes + 1`; point 0 is the input).
    pub layouts: Vec<Layout>,
    /// For each convolution, its taps over a padded input of its own channel count.
    pub taps: Vec<Option<Taps>>,
    /// For each static layer, its requantization constants for the VNNI epilogue (where
    /// this CPU has VNNI and no multiplier needs the saturating case).
    pub requant: Vec<Option<avx512::Requantizer>>,
}

impl Plan {
    /// Prepares `model`.
    pub fn new(model: &QuantModel) -> Self {
        let net = &model.network;
        let mut layout = match net.input_shape[..] {
            [c, h, w] => Layout::Map([c, h, w]),
            _ => Layout::Flat,
        };
        let mut layouts = vec![layout];
        let mut nodes = Vec::with_capacity(net.nodes.len());
        for (node, layer) in net.nodes.iter().zip(&model.layers) {
            let prepared = match node {
                Node::Dense(d) => {
                    let (prepared, next) = prepare_dense(d, layer.as_ref(), layout);
                    layout = next;
                    prepared
                }
                Node::MaxPool(g) => {
                    layout = Layout::Map([g.channels, g.out_hw[0], g.out_hw[1]]);
                    Prepared::None
                }
                Node::Relu | Node::Flatten => Prepared::None,
            };
            nodes.push(prepared);
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
        let requant = model
            .layers
            .iter()
            .zip(&nodes)
            .map(|(l, p)| match (l, p) {
                (Some(LayerImpl::Static(l)), Prepared::Int8(w)) if avx512::available() => {
                    avx512::Requantizer::new(&l.offset, &l.requant, w)
                }
                _ => None,
            })
            .collect();
        Self {
            nodes,
            layouts,
            taps,
            requant,
        }
    }
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
fn prepare_dense(d: &Dense, layer: Option<&LayerImpl>, layout: Layout) -> (Prepared, Layout) {
    // Int8 kernel rows are rounded up to whole groups of 4 (see `Taps::seg_len4`).
    let (order, order8, next) = match (&d.conv, layout) {
        (Some(g), _) => {
            let t = Taps::new(g);
            (
                Order::Conv(*g, t.seg_len),
                Order::Conv(*g, t.seg_len4()),
                Layout::Map([d.n, g.out_hw[0], g.out_hw[1]]),
            )
        }
        // One channel or one pixel: NHWC and NCHW flatten to the same order.
        (None, Layout::Map(chw)) if chw[0] > 1 && chw[1] * chw[2] > 1 => {
            (Order::Flatten(chw), Order::Flatten(chw), Layout::Flat)
        }
        (None, _) => (Order::Keep, Order::Keep, Layout::Flat),
    };
    let int8 = |w: &QWeights| {
        let wk = order8.apply(&w.w, w.n);
        let k = wk.len() / w.n.max(1);
        Prepared::Int8(QWeights::new(wk, w.n, k))
    };
    let prepared = match layer {
        Some(LayerImpl::F32) | None => Prepared::F32(PackedF32::new(
            &order.apply(&d.weight, d.n),
            &d.bias,
            d.n,
            d.k,
        )),
        Some(LayerImpl::Static(l)) => int8(&l.w),
        Some(LayerImpl::Dynamic(l)) => int8(&l.w),
    };
    (prepared, next)
}

/// A model's plan, built on first use. Equality ignores it (it is derived data).
#[derive(Debug, Default)]
pub struct PlanCache(OnceLock<Arc<Plan>>);

impl PlanCache {
    /// The plan of `model`, building it the first time.
    pub fn get(&self, model: &QuantModel) -> Arc<Plan> {
        self.0.get_or_init(|| Arc::new(Plan::new(model))).clone()
    }
}

impl Clone for PlanCache {
    /// An empty cache: a clone may be changed before it runs.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for PlanCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
