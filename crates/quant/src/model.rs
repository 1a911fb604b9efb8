//! A quantized model: the network plus, for every dense layer, how it runs (f32, static
//! int8, or dynamic int8), and the quantization parameters of every activation point.
//!
//! Activation points are numbered like tensors: point 0 is the network input, point `i+1`
//! the output of node `i`. Max pooling, flatten and ReLU keep their input's parameters.

use serde::{Deserialize, Serialize};

use crate::network::{Dense, Network, Node};
use crate::observer::ObserverKind;
use crate::qparams::{ActDtype, BitWidths, QParams, Requant};
pub use quantlab_linalg::QWeights;

/// Weight quantization granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Granularity {
    /// One scale per weight tensor.
    PerTensor,
    /// One scale per output channel.
    PerChannel,
}

impl Granularity {
    /// Name used in method names and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::PerTensor => "per-tensor",
            Granularity::PerChannel => "per-channel",
        }
    }
}

/// A dense layer with int8 weights and calibrated input/output: integer end to end.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticLayer {
    /// Weights with their column sums (packed for a path when an engine prepares the model).
    pub w: QWeights,
    /// Weight scales: one, or one per output.
    pub w_scales: Vec<f32>,
    /// Bias at scale `s_in * s_w[n]`.
    pub bias: Vec<i32>,
    /// Input quantization (the point before the layer).
    pub in_q: QParams,
    /// Output quantization (the point after the layer, after its ReLU).
    pub out_q: QParams,
    /// `s_in * s_w[n] / s_out` as integer multipliers (one or one per output).
    pub requant: Vec<Requant>,
    /// `bias[n] - zp_in * col_sums[n]`, folded at load time.
    pub offset: Vec<i32>,
}

impl StaticLayer {
    /// Assembles a layer, deriving multipliers and offsets from the scales.
    pub fn new(
        w: QWeights,
        w_scales: Vec<f32>,
        bias: Vec<i32>,
        in_q: QParams,
        out_q: QParams,
    ) -> Self {
        let requant = w_scales
            .iter()
            .map(|&sw| Requant::new(in_q.scale as f64 * sw as f64 / out_q.scale as f64))
            .collect();
        let offset = bias
            .iter()
            .zip(&w.col_sums)
            .map(|(&b, &c)| b.wrapping_sub(in_q.zero_point.wrapping_mul(c)))
            .collect();
        Self {
            w,
            w_scales,
            bias,
            in_q,
            out_q,
            requant,
            offset,
        }
    }
}

impl StaticLayer {
    /// `(zero point, lower clamp, upper clamp)` of the requantized output: with a fused ReLU
    /// the lower clamp is the zero point (real 0), and with its cap (ReLU6) the upper clamp
    /// is the level nearest the cap (the grid is calibrated on capped outputs, so that is
    /// usually `qmax` already).
    pub fn out_clamp(&self, relu: bool, cap: Option<f32>) -> (i32, i32, i32) {
        let q = &self.out_q;
        let lo = if relu {
            q.zero_point.max(q.qmin)
        } else {
            q.qmin
        };
        let hi = match (relu, cap) {
            (true, Some(c)) => {
                let level = (c as f64 / q.scale as f64).round() + q.zero_point as f64;
                (level.min(q.qmax as f64) as i32).max(lo)
            }
            _ => q.qmax,
        };
        (q.zero_point, lo, hi)
    }
}

/// A dense layer with int8 weights whose input is quantized per batch, output in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicLayer {
    /// Weights.
    pub w: QWeights,
    /// Weight scales: one, or one per output.
    pub w_scales: Vec<f32>,
}

/// How one dense layer runs.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerImpl {
    /// Float weights, float arithmetic.
    F32,
    /// Integer end to end.
    Static(StaticLayer),
    /// Int8 weights, activations quantized on the fly.
    Dynamic(DynamicLayer),
}

impl LayerImpl {
    /// Short name for reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            LayerImpl::F32 => "f32",
            LayerImpl::Static(_) => "int8-static",
            LayerImpl::Dynamic(_) => "int8-dynamic",
        }
    }
}

/// The method that produced a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// The float model, run by the same engine.
    F32,
    /// Weights rounded to a `2^-bits` grid, float compute (fake quantization).
    Naive,
    /// Weights and activations as int8 with the fixed scale `2^-7`, no calibration.
    NaiveFixed,
    /// Int8 weights, activations quantized per batch, float output.
    Dynamic,
    /// Int8 weights and calibrated activations, integer end to end.
    Static,
    /// Quantization-aware training: weights, weight scales and activation ranges learned
    /// through fake quantization, converted to the same integer model as `Static`.
    Qat,
}

impl MethodKind {
    /// True for the methods whose model is integer end to end with calibrated points
    /// (`static` and `qat`): the engine, the GPU path and the exports treat them alike.
    pub fn is_static(self) -> bool {
        matches!(self, MethodKind::Static | MethodKind::Qat)
    }
}

/// Everything that says how a model was quantized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheme {
    /// Method.
    pub method: MethodKind,
    /// Activation observer (static).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<ObserverKind>,
    /// Weight granularity (dynamic, static).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    /// Activation storage (static, naive-fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_dtype: Option<ActDtype>,
    /// Calibration samples used (static).
    #[serde(default)]
    pub calib_samples: usize,
    /// Fractional bits (naive methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// Dense layers kept in f32 by the accuracy budget (node indices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<usize>,
    /// Bit widths of weights and activations (static, qat; 8/8/8 unless asked).
    #[serde(default, skip_serializing_if = "BitWidths::is_int8")]
    pub widths: BitWidths,
}

impl Scheme {
    /// The method's name in results: `f32`, `naive`, `naive-fixed`, `dynamic`,
    /// `static-<observer>-<granularity>`.
    pub fn name(&self) -> String {
        match self.method {
            MethodKind::F32 => "f32".into(),
            MethodKind::Naive => "naive".into(),
            MethodKind::NaiveFixed => "naive-fixed".into(),
            MethodKind::Dynamic => "dynamic".into(),
            MethodKind::Static => {
                let mut name = format!(
                    "static-{}-{}",
                    self.observer.map_or("minmax", ObserverKind::as_str),
                    self.granularity.map_or("per-channel", Granularity::as_str)
                );
                if !self.widths.is_int8() {
                    name.push('-');
                    name.push_str(&self.widths.tag());
                }
                name
            }
            MethodKind::Qat => format!("qat-{}", self.widths.tag()),
        }
    }
}

/// A network ready to run, float or quantized.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantModel {
    /// The network (float weights stay for f32 layers and for reports).
    pub network: Network,
    /// One entry per node: `Some` for dense nodes.
    pub layers: Vec<Option<LayerImpl>>,
    /// Quantization of every activation point (`nodes + 1` entries) where calibrated.
    pub points: Vec<Option<QParams>>,
    /// How it was made.
    pub scheme: Scheme,
}

impl QuantModel {
    /// The float model: every dense layer in f32.
    pub fn float(network: Network) -> Self {
        let layers = network
            .nodes
            .iter()
            .map(|n| matches!(n, Node::Dense(_)).then_some(LayerImpl::F32))
            .collect();
        let points = vec![None; network.nodes.len() + 1];
        let scheme = Scheme {
            method: MethodKind::F32,
            observer: None,
            granularity: None,
            act_dtype: None,
            calib_samples: 0,
            bits: None,
            fallback: Vec::new(),
            widths: BitWidths::default(),
        };
        Self {
            network,
            layers,
            points,
            scheme,
        }
    }

    /// The dense layer and its implementation at node `i`.
    pub fn dense(&self, i: usize) -> Option<(&Dense, &LayerImpl)> {
        match (&self.network.nodes[i], &self.layers[i]) {
            (Node::Dense(d), Some(l)) => Some((d, l)),
            _ => None,
        }
    }
}
