//! The network under quantization-aware training: quant's [`Network`] (the fused form the
//! integer engine runs) as a burn module whose forward pass fake-quantizes exactly where
//! the engine quantizes: the input, and the output of every dense layer (after its fused
//! ReLU). Max pooling, flatten and ReLU keep their input's grid, as in the engine. Built
//! from any network, so a model trained here, a checkpoint from elsewhere or an imported
//! graph all train the same way.

use burn::module::{Module, Param};
use burn::tensor::module::{avg_pool2d, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use quantlab_quant::graph::transpose;
use quantlab_quant::methods::static_layer_at_scales;
use quantlab_quant::model::{Granularity, LayerImpl, MethodKind, QuantModel, Scheme};
use quantlab_quant::qparams::{ActDtype, BitWidths, MIN_SCALE, QParams, symmetric_qmax};
use quantlab_quant::{Network, Node};

use super::fake_quant::{fake_quant_fixed, fake_quant_learned, fake_quant_weight, grad_scale};
use crate::error::{Result, TrainError};

/// A dense layer's trainable tensors.
#[derive(Module, Debug)]
pub struct QatDense {
    /// Float weights: a convolution's `[n, c*kh*kw]`, a linear layer's `[k, n]` (burn's
    /// layout, so that the product needs no transpose each step).
    pub weight: Param<Tensor<2>>,
    /// Bias `[n]`.
    pub bias: Param<Tensor<1>>,
    /// Learned weight step per output channel (LSQ), `[n]`.
    pub w_step: Param<Tensor<1>>,
}

/// How the activation points get their grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ActRanges {
    /// Moving averages of each batch's min and max, frozen after a chosen epoch (PyTorch's
    /// default QAT recipe).
    MovingAverage,
    /// Learned step sizes (LSQ) on the points between layers; the input and the logits keep
    /// moving-average ranges.
    Learned,
}

/// What the forward pass needs besides the tensors: plain data, not trained.
#[derive(Debug, Clone)]
pub struct QatPlan {
    /// The float network (shapes, geometry; its weights are the starting point).
    pub network: Network,
    /// Bit widths.
    pub bits: BitWidths,
    /// Activation ranges.
    pub act_ranges: ActRanges,
    /// Per point: the index into `act_steps` when its step is learned.
    pub learned: Vec<Option<usize>>,
}

/// The network with fake quantization.
#[derive(Module, Debug)]
pub struct QatNet {
    /// Dense layers in node order.
    pub dense: Vec<QatDense>,
    /// Learned activation steps (`[1]` each), in point order; empty with moving averages.
    pub act_steps: Vec<Param<Tensor<1>>>,
    /// The plan.
    #[module(skip)]
    pub plan: QatPlan,
}

/// Whether point `p` is quantized (the input, or a dense node's or an Add's output); the
/// others repeat their input's grid.
pub fn is_quant_point(net: &Network, p: usize) -> bool {
    p == 0 || net.nodes[p - 1].sets_grid()
}

/// Activation of one sample batch: flat rows or NCHW images.
#[derive(Clone)]
enum Act {
    Flat(Tensor<2>),
    Image(Tensor<4>),
}

impl Act {
    fn flat(self) -> Tensor<2> {
        match self {
            Act::Flat(t) => t,
            Act::Image(t) => {
                let [b, c, h, w] = t.dims();
                t.reshape([b, c * h * w])
            }
        }
    }

    fn image(self, c: usize, hw: [usize; 2]) -> Tensor<4> {
        match self {
            Act::Image(t) => t,
            Act::Flat(t) => {
                let [b, _] = t.dims();
                t.reshape([b, c, hw[0], hw[1]])
            }
        }
    }

    fn map(
        self,
        f2: impl FnOnce(Tensor<2>) -> Tensor<2>,
        f4: impl FnOnce(Tensor<4>) -> Tensor<4>,
    ) -> Self {
        match self {
            Act::Flat(t) => Act::Flat(f2(t)),
            Act::Image(t) => Act::Image(f4(t)),
        }
    }

    /// `[min, max]` of the batch, detached.
    fn range(&self) -> Tensor<1> {
        let (lo, hi) = match self {
            Act::Flat(t) => (t.clone().min(), t.clone().max()),
            Act::Image(t) => (t.clone().min(), t.clone().max()),
        };
        Tensor::cat(vec![lo, hi], 0).detach()
    }
}

fn tensor1(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// LSQ's initial step: `2 * mean|w| / sqrt(Qp)` per row.
fn lsq_init(weight: &[f32], k: usize, qmax: i32) -> Vec<f32> {
    weight
        .chunks_exact(k)
        .map(|r| {
            let mean = r.iter().map(|v| v.abs() as f64).sum::<f64>() / k as f64;
            ((2.0 * mean / (qmax as f64).sqrt()) as f32).max(MIN_SCALE)
        })
        .collect()
}

impl QatNet {
    /// The network with its float weights, LSQ-initialised weight steps and, for learned
    /// activation ranges, steps initialised from `ranges` (calibrated).
    pub fn new(
        network: &Network,
        bits: BitWidths,
        act_ranges: ActRanges,
        ranges: &[QParams],
        device: &Device,
    ) -> Result<Self> {
        bits.check().map_err(|e| TrainError::Invalid {
            key: "bits",
            value: bits.tag(),
            reason: e.to_string(),
        })?;
        let qmax = symmetric_qmax(bits.weights);
        let mut dense = Vec::new();
        for node in &network.nodes {
            if let Node::Dense(d) = node {
                let weight = match d.conv {
                    Some(_) => TensorData::new(d.weight.clone(), [d.n, d.k]),
                    None => TensorData::new(transpose(&d.weight, d.n, d.k), [d.k, d.n]),
                };
                dense.push(QatDense {
                    weight: Param::from_tensor(Tensor::from_data(weight, device)),
                    bias: Param::from_tensor(tensor1(d.bias.clone(), device)),
                    w_step: Param::from_tensor(tensor1(lsq_init(&d.weight, d.k, qmax), device)),
                });
            }
        }
        let points = network.nodes.len() + 1;
        let mut learned = vec![None; points];
        let mut act_steps = Vec::new();
        if act_ranges == ActRanges::Learned {
            for (p, slot) in learned.iter_mut().enumerate().take(points - 1).skip(1) {
                if is_quant_point(network, p) {
                    *slot = Some(act_steps.len());
                    act_steps.push(Param::from_tensor(tensor1(vec![ranges[p].scale], device)));
                }
            }
        }
        Ok(Self {
            dense,
            act_steps,
            plan: QatPlan {
                network: network.clone(),
                bits,
                act_ranges,
                learned,
            },
        })
    }

    /// Fake-quantized logits `[batch, classes]` of flat inputs `x`, with the fixed-grid
    /// points at `ranges`. With `observe`, also every fixed-grid point's batch `[min, max]`
    /// (before quantization) in point order, for the moving averages: one tensor, so the
    /// caller reads them all with one device sync.
    pub fn forward(
        &self,
        x: Tensor<2>,
        ranges: &[QParams],
        observe: bool,
    ) -> (Tensor<2>, Option<Tensor<1>>) {
        self.run(x, ranges, observe, false)
    }

    /// As [`QatNet::forward`] for inputs the caller has already put on the input's grid
    /// (`ranges[0]`) and observed itself: the training loop does both on the host in one
    /// pass ([`quantlab_quant::qparams::fake_quantize_in_place`]), where the tensor ops
    /// cost as much as a layer. The observed ranges then start at the first layer's output.
    pub fn forward_on_grid(
        &self,
        x: Tensor<2>,
        ranges: &[QParams],
        observe: bool,
    ) -> (Tensor<2>, Option<Tensor<1>>) {
        self.run(x, ranges, observe, true)
    }

    fn run(
        &self,
        x: Tensor<2>,
        ranges: &[QParams],
        observe: bool,
        on_grid: bool,
    ) -> (Tensor<2>, Option<Tensor<1>>) {
        let net = &self.plan.network;
        let mut seen = Vec::new();
        let device = x.device();
        // Quantizes at point `p`; also returns the point's step as a `[1]` tensor (the
        // bias grid of the next dense layer depends on it).
        // With `relu`, the layer's ReLU is fused into the quantizer: the lowest level
        // becomes the zero point (real 0), which is what ReLU then quantization gives
        // (ranges are never above 0, so the zero point is a level), in one op instead of
        // two. The one difference is in the gradient: values in `(-step/2, 0)` round to
        // the zero level from below and pass it, as any value inside the range does.
        let quant =
            |act: Act, p: usize, relu: bool, seen: &mut Vec<Tensor<1>>| -> (Act, Tensor<1>) {
                let q = ranges[p];
                let q = QParams {
                    qmin: if relu {
                        q.qmin.max(q.zero_point)
                    } else {
                        q.qmin
                    },
                    ..q
                };
                match self.plan.learned[p] {
                    Some(j) => {
                        let elems = net.out_lens.get(p.wrapping_sub(1)).copied().unwrap_or(1);
                        let g = 1.0 / ((elems as f32) * q.qmax as f32).sqrt();
                        let s = grad_scale(self.act_steps[j].val(), g).clamp_min(MIN_SCALE);
                        let out = act.map(
                            |t| fake_quant_learned(t, s.clone(), q.zero_point, q.qmin, q.qmax),
                            |t| fake_quant_learned(t, s.clone(), q.zero_point, q.qmin, q.qmax),
                        );
                        (out, s)
                    }
                    None => {
                        if observe {
                            // The range of `relu(y)` is that of `y` with both ends at least 0.
                            let r = act.range();
                            seen.push(if relu { r.clamp_min(0.0) } else { r });
                        }
                        let out = act.map(
                            |t| fake_quant_fixed(t, q.scale, q.zero_point, q.qmin, q.qmax),
                            |t| fake_quant_fixed(t, q.scale, q.zero_point, q.qmin, q.qmax),
                        );
                        (out, tensor1(vec![q.scale], &device))
                    }
                }
            };
        let qmax = symmetric_qmax(self.plan.bits.weights);
        let (mut act, mut s_in) = if on_grid {
            (Act::Flat(x), tensor1(vec![ranges[0].scale], &device))
        } else {
            quant(Act::Flat(x), 0, false, &mut seen)
        };
        // The points a residual Add reads, kept as they pass.
        let mut kept: Vec<Option<Act>> = vec![None; net.nodes.len() + 1];
        let keep = |p: usize| {
            net.nodes
                .iter()
                .any(|n| matches!(n, Node::Add { from, .. } if *from == p))
        };
        if keep(0) {
            kept[0] = Some(act.clone());
        }
        let mut next_dense = 0;
        for (i, node) in net.nodes.iter().enumerate() {
            act = match node {
                Node::Dense(d) => {
                    let l = &self.dense[next_dense];
                    next_dense += 1;
                    let g = 1.0 / ((d.k as f32) * qmax as f32).sqrt();
                    let s = grad_scale(l.w_step.val(), g).clamp_min(MIN_SCALE);
                    // The bias on the integer model's grid, `s_in * s_w` (an i32 there):
                    // left in float, its rounding moves outputs by up to half of
                    // `s_in * s_w / s_out` steps, which at 2-4-bit activations flips
                    // enough levels to change a prediction in a hundred.
                    // Its rounding is a detached correction (the gradient reaches the
                    // float bias as it is, not the steps): one recorded op, not six.
                    let s_b = s.clone().detach().mul(s_in.clone().detach());
                    let b = l.bias.val();
                    let bd = b.clone().detach();
                    let bias = b + (bd.clone().div(s_b.clone()).round().mul(s_b) - bd);
                    let y = match d.conv {
                        Some(geom) => {
                            let w = fake_quant_weight(l.weight.val(), s.reshape([d.n, 1]), qmax);
                            let x = act.image(geom.in_channels, geom.in_hw);
                            // A depthwise conv: one input channel per group.
                            let (cin, groups) = if d.depthwise {
                                (1, d.n)
                            } else {
                                (geom.in_channels, 1)
                            };
                            let w = w.reshape([d.n, cin, geom.kernel[0], geom.kernel[1]]);
                            let opts = ConvOptions::new(geom.stride, geom.padding, [1, 1], groups);
                            Act::Image(conv2d(x, w, Some(bias), opts))
                        }
                        None => {
                            let w = fake_quant_weight(l.weight.val(), s.reshape([1, d.n]), qmax);
                            Act::Flat(linear(act.flat(), w, Some(bias)))
                        }
                    };
                    // A capped ReLU (ReLU6): the cap here, the ReLU fused into the quantizer.
                    let y = match (d.relu, d.cap) {
                        (true, Some(c)) => y.map(|t| t.clamp_max(c), |t| t.clamp_max(c)),
                        _ => y,
                    };
                    let (y, s) = quant(y, i + 1, d.relu, &mut seen);
                    s_in = s;
                    y
                }
                Node::MaxPool(g) => {
                    let x = act.image(g.channels, g.in_hw);
                    let opts = MaxPoolOptions {
                        kernel_size: g.kernel,
                        stride: g.stride,
                        padding: [(0, 0); 2],
                        dilation: [1, 1],
                        ceil_mode: false,
                    };
                    Act::Image(max_pool2d(x, opts))
                }
                Node::AvgPool(g) => {
                    // The engine rounds the window's mean back onto the input's grid.
                    let x = act.image(g.channels, g.in_hw);
                    let opts = AvgPoolOptions {
                        kernel_size: g.kernel,
                        stride: g.stride,
                        padding: [(0, 0); 2],
                        count_include_pad: true,
                        ceil_mode: false,
                    };
                    let y = avg_pool2d(x, opts);
                    let q = ranges[i];
                    Act::Image(fake_quant_learned(
                        y,
                        s_in.clone(),
                        q.zero_point,
                        q.qmin,
                        q.qmax,
                    ))
                }
                Node::Add { from, relu } => {
                    let other = kept[*from].clone().expect("a kept point precedes its Add");
                    let y = match (act, other) {
                        (Act::Image(a), b) => {
                            let [_, c, h, w] = a.dims();
                            Act::Image(a + b.image(c, [h, w]))
                        }
                        (a, b) => Act::Flat(a.flat() + b.flat()),
                    };
                    let (y, s) = quant(y, i + 1, *relu, &mut seen);
                    s_in = s;
                    y
                }
                Node::Relu => act.map(
                    burn::tensor::activation::relu,
                    burn::tensor::activation::relu,
                ),
                Node::Flatten => Act::Flat(act.flat()),
            };
            if keep(i + 1) {
                kept[i + 1] = Some(act.clone());
            }
        }
        let observed = (observe && !seen.is_empty()).then(|| Tensor::cat(seen, 0));
        (act.flat(), observed)
    }

    /// The integer model this network trained into: weights at the learned steps, points
    /// at `ranges` (fixed) or the learned steps; the same [`QuantModel`] and file as PTQ.
    pub fn to_quant_model(&self, ranges: &[QParams], calib_samples: usize) -> Result<QuantModel> {
        let host = |t: Tensor<1>| -> Result<Vec<f32>> {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Backend(format!("{e:?}")))
        };
        let mut network = self.plan.network.clone();
        let mut points: Vec<QParams> = ranges.to_vec();
        for (p, slot) in self.plan.learned.iter().enumerate() {
            if let Some(j) = slot {
                let s = host(self.act_steps[*j].val())?[0].max(MIN_SCALE);
                points[p] = QParams {
                    scale: s,
                    ..ranges[p]
                };
            }
        }
        for p in 1..points.len() {
            if !is_quant_point(&network, p) {
                points[p] = points[p - 1];
            }
        }
        let bits = self.plan.bits;
        let mut layers = vec![None; network.nodes.len()];
        let mut next_dense = 0;
        for (i, node) in network.nodes.iter_mut().enumerate() {
            if let Node::Dense(d) = node {
                let l = &self.dense[next_dense];
                next_dense += 1;
                let w2: Tensor<2> = l.weight.val();
                let [rows, cols] = w2.dims();
                let flat = host(w2.reshape([rows * cols]))?;
                d.weight = match d.conv {
                    Some(_) => flat,
                    None => transpose(&flat, rows, cols),
                };
                d.bias = host(l.bias.val())?;
                let steps: Vec<f32> = host(l.w_step.val())?
                    .into_iter()
                    .map(|s| s.max(MIN_SCALE))
                    .collect();
                layers[i] = Some(LayerImpl::Static(static_layer_at_scales(
                    d,
                    steps,
                    bits.weights,
                    points[i],
                    points[i + 1],
                )));
            }
        }
        for (i, node) in network.nodes.iter().enumerate() {
            if !matches!(node, Node::Dense(_)) {
                layers[i] = None;
            }
        }
        Ok(QuantModel {
            network,
            layers,
            points: points.into_iter().map(Some).collect(),
            scheme: Scheme {
                method: MethodKind::Qat,
                observer: None,
                granularity: Some(Granularity::PerChannel),
                act_dtype: Some(ActDtype::U8Affine),
                calib_samples,
                bits: None,
                fallback: Vec::new(),
                widths: bits,
            },
        })
    }
}
