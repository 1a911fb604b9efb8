//! The quantization methods, each turning a float [`Network`] into a [`QuantModel`]:
//!
//! - `f32`: the float model on the same engine (the baseline).
//! - `naive`: weights rounded to a `2^-bits` grid, `round(w * 2^b) / 2^b`, computed in float:
//!   the textbook shortcut.
//! - `naive-fixed`: weights *and* activations stored as int8 with the fixed scale `2^-7` and
//!   no calibration at all; integer arithmetic. It shows why calibration matters.
//! - `dynamic`: int8 weights; each layer quantizes its input per batch (u8, min/max of the
//!   batch) and returns f32 (PyTorch's `quantize_dynamic`, extended to convolutions).
//! - `static`: int8 weights, activations calibrated by an observer, integer from the input
//!   quantization to the logits; per-tensor or per-channel weights.

use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibration, calibrate};
use crate::engine::Engine;
use crate::error::{QuantError, Result};
use crate::model::QWeights;
use crate::model::{
    DynamicLayer, Granularity, LayerImpl, MethodKind, QuantModel, Scheme, StaticLayer,
};
use crate::network::{Dense, Network, Node};
use crate::observer::ObserverKind;
use crate::qparams::{
    ActDtype, BitWidths, QParams, quantize_weight, quantize_weight_bits, weight_scale_bits,
};

/// Fractional bits of the naive methods (int8 holds `[-1, 1)` at `2^-7`).
pub const NAIVE_BITS: u32 = 7;
/// Default number of calibration samples.
pub const DEFAULT_CALIB: usize = 1000;

/// What to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizeOptions {
    /// Method.
    pub method: MethodKind,
    /// Activation observer (static).
    pub observer: ObserverKind,
    /// Weight granularity (static, dynamic).
    pub granularity: Granularity,
    /// Activation storage (static).
    pub act_dtype: ActDtype,
    /// Calibration samples (static).
    pub calib: usize,
    /// Bit widths (static; dynamic honours the weights' width).
    #[serde(default)]
    pub bits: BitWidths,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            method: MethodKind::Static,
            observer: ObserverKind::Minmax,
            granularity: Granularity::PerChannel,
            act_dtype: ActDtype::U8Affine,
            calib: DEFAULT_CALIB,
            bits: BitWidths::default(),
        }
    }
}

/// Symmetric int8 weights of a dense layer: `(w_q [n, k], scales)`.
pub fn quantize_weights(d: &Dense, gran: Granularity) -> (Vec<i8>, Vec<f32>) {
    quantize_weights_bits(d, gran, 8)
}

/// Symmetric `bits`-bit weights of a dense layer (MinMax scales): `(w_q [n, k], scales)`.
pub fn quantize_weights_bits(d: &Dense, gran: Granularity, bits: u8) -> (Vec<i8>, Vec<f32>) {
    let amax = |w: &[f32]| w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scales: Vec<f32> = match gran {
        Granularity::PerTensor => vec![weight_scale_bits(amax(&d.weight), bits)],
        Granularity::PerChannel => d
            .weight
            .chunks_exact(d.k)
            .map(|r| weight_scale_bits(amax(r), bits))
            .collect(),
    };
    let wq = weights_at_scales(d, &scales, bits);
    (wq, scales)
}

/// `d`'s weights on the `bits`-bit grid of `scales` (one, or one per output): how the
/// scales a method chose (MinMax, or learned by QAT) become integers.
pub fn weights_at_scales(d: &Dense, scales: &[f32], bits: u8) -> Vec<i8> {
    d.weight
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            quantize_weight_bits(w, scales[if scales.len() == 1 { 0 } else { i / d.k }], bits)
        })
        .collect()
}

/// Int32 bias at scale `s_in * s_w[n]`.
fn quantize_bias(d: &Dense, s_in: f32, w_scales: &[f32]) -> Vec<i32> {
    d.bias
        .iter()
        .enumerate()
        .map(|(n, &b)| {
            let s = s_in as f64 * w_scales[if w_scales.len() == 1 { 0 } else { n }] as f64;
            (b as f64 / s)
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// A static layer for node `d` between points `in_q` and `out_q`.
pub fn static_layer(d: &Dense, gran: Granularity, in_q: QParams, out_q: QParams) -> StaticLayer {
    static_layer_bits(d, gran, 8, in_q, out_q)
}

/// A static layer for node `d` with `wbits`-bit MinMax weights between `in_q` and `out_q`.
pub fn static_layer_bits(
    d: &Dense,
    gran: Granularity,
    wbits: u8,
    in_q: QParams,
    out_q: QParams,
) -> StaticLayer {
    let (_, scales) = quantize_weights_bits(d, gran, wbits);
    static_layer_at_scales(d, scales, wbits, in_q, out_q)
}

/// A static layer for node `d` whose weight scales were chosen elsewhere (QAT learns them).
pub fn static_layer_at_scales(
    d: &Dense,
    scales: Vec<f32>,
    wbits: u8,
    in_q: QParams,
    out_q: QParams,
) -> StaticLayer {
    let wq = weights_at_scales(d, &scales, wbits);
    let bias = quantize_bias(d, in_q.scale, &scales);
    StaticLayer::new(QWeights::new(wq, d.n, d.k), scales, bias, in_q, out_q)
}

fn scheme(opts: &QuantizeOptions, calib: usize) -> Scheme {
    let m = opts.method;
    Scheme {
        method: m,
        observer: (m == MethodKind::Static).then_some(opts.observer),
        granularity: matches!(
            m,
            MethodKind::Static | MethodKind::Qat | MethodKind::Dynamic
        )
        .then_some(opts.granularity),
        act_dtype: match m {
            MethodKind::Static | MethodKind::Qat => Some(opts.act_dtype),
            MethodKind::NaiveFixed => Some(ActDtype::I8Symmetric),
            _ => None,
        },
        calib_samples: calib,
        bits: matches!(m, MethodKind::Naive | MethodKind::NaiveFixed).then_some(NAIVE_BITS),
        fallback: Vec::new(),
        widths: match m {
            MethodKind::Static | MethodKind::Qat => opts.bits,
            MethodKind::Dynamic => BitWidths {
                weights: opts.bits.weights,
                ..BitWidths::default()
            },
            _ => BitWidths::default(),
        },
    }
}

/// Quantizes `net` with `opts`. `calib_x` holds at least `opts.calib` flat training-split
/// samples (used by `static` only).
pub fn quantize(
    net: &Network,
    opts: &QuantizeOptions,
    calib_x: &[f32],
    engine: &Engine,
) -> Result<QuantModel> {
    opts.bits.check()?;
    let narrow = !opts.bits.is_int8();
    let narrow_ok = match opts.method {
        MethodKind::Static => true,
        MethodKind::Dynamic => opts.bits.acts == 8 && opts.bits.edges == 8,
        _ => false,
    };
    if narrow && !narrow_ok {
        return Err(QuantError::Invalid {
            key: "bits",
            reason: format!(
                "{}: {:?} supports 8 bits only (static takes any width, dynamic a weight width)",
                opts.bits.tag(),
                opts.method
            ),
        });
    }
    let mut model = QuantModel::float(net.clone());
    let dense = |i: usize| match &net.nodes[i] {
        Node::Dense(d) => Some(d),
        _ => None,
    };
    match opts.method {
        MethodKind::F32 => {}
        MethodKind::Naive => {
            let step = 2f32.powi(NAIVE_BITS as i32);
            for node in &mut model.network.nodes {
                if let Node::Dense(d) = node {
                    d.weight
                        .iter_mut()
                        .for_each(|w| *w = (*w * step).round() / step);
                }
            }
        }
        MethodKind::NaiveFixed => {
            let q = QParams::fixed_point(NAIVE_BITS as i32);
            model.points = vec![Some(q); net.nodes.len() + 1];
            let s = q.scale;
            for i in net.dense_indices() {
                let d = dense(i).expect("dense index");
                let wq = d.weight.iter().map(|&w| quantize_weight(w, s)).collect();
                let bias = quantize_bias(d, s, &[s]);
                model.layers[i] = Some(LayerImpl::Static(StaticLayer::new(
                    QWeights::new(wq, d.n, d.k),
                    vec![s],
                    bias,
                    q,
                    q,
                )));
            }
        }
        MethodKind::Dynamic => {
            for i in net.dense_indices() {
                let (wq, w_scales) = quantize_weights_bits(
                    dense(i).expect("dense index"),
                    opts.granularity,
                    opts.bits.weights,
                );
                let d = dense(i).expect("dense index");
                model.layers[i] = Some(LayerImpl::Dynamic(DynamicLayer {
                    w: QWeights::new(wq, d.n, d.k),
                    w_scales,
                }));
            }
        }
        MethodKind::Qat => {
            return Err(QuantError::Invalid {
                key: "method",
                reason: "qat trains: it is run by quantlab-train's qat, not by quantize()".into(),
            });
        }
        MethodKind::Static => {
            let samples = opts.calib.min(calib_x.len() / net.in_len().max(1));
            if samples == 0 {
                return Err(QuantError::Invalid {
                    key: "calib",
                    reason: "no calibration samples".into(),
                });
            }
            let cal = calibrate(
                net,
                calib_x,
                samples,
                opts.observer.needs_histogram(),
                engine,
            )?;
            return Ok(static_from_calibration(net, opts, &cal));
        }
    }
    model.scheme = scheme(opts, 0);
    Ok(model)
}

/// The static int8 model that `opts` (observer, granularity, activation dtype) builds from
/// a calibration already run. Observers are pure functions of the statistics, so one
/// calibration (with histograms) serves every observer: the calibration sweep relies on it.
pub fn static_from_calibration(
    net: &Network,
    opts: &QuantizeOptions,
    cal: &Calibration,
) -> QuantModel {
    let mut model = QuantModel::float(net.clone());
    let points = cal.qparams_bits(opts.observer, opts.act_dtype, opts.bits);
    for i in net.dense_indices() {
        if let Node::Dense(d) = &net.nodes[i] {
            model.layers[i] = Some(LayerImpl::Static(static_layer_bits(
                d,
                opts.granularity,
                opts.bits.weights,
                points[i],
                points[i + 1],
            )));
        }
    }
    model.points = points.into_iter().map(Some).collect();
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        ..opts.clone()
    };
    model.scheme = scheme(&opts, cal.samples);
    model
}

/// The same model with the dense layers at `nodes` back in f32 (mixed precision).
pub fn with_fallback(model: &QuantModel, nodes: &[usize]) -> QuantModel {
    let mut m = model.clone();
    for &i in nodes {
        if m.layers[i].is_some() {
            m.layers[i] = Some(LayerImpl::F32);
        }
    }
    m.scheme.fallback = {
        let mut f: Vec<usize> = m.scheme.fallback.iter().chain(nodes).copied().collect();
        f.sort_unstable();
        f.dedup();
        f
    };
    m
}

/// The same model with only the dense layer at `node` quantized.
pub fn only_layer(model: &QuantModel, node: usize) -> QuantModel {
    let others: Vec<usize> = model
        .network
        .dense_indices()
        .into_iter()
        .filter(|&i| i != node)
        .collect();
    with_fallback(model, &others)
}
