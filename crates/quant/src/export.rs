//! The int8 model file: `safetensors` with I8 / I32 / F32 tensors and one JSON metadata
//! entry (`quantlab`) holding the graph, the scheme, every activation's scale and zero point,
//! and the model and dataset config. Reloading gives bit-identical logits: multipliers and
//! offsets are recomputed from the stored integers and scales by the same code.
//!
//! Reading trusts nothing: the safetensors parser checks the header length and offsets;
//! then every tensor the graph needs must exist with the dtype and shape the graph implies,
//! and every scale must be finite and positive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};
use crate::model::QWeights;
use crate::model::{DynamicLayer, LayerImpl, QuantModel, Scheme, StaticLayer};
use crate::network::{ConvGeom, Dense, Network, Node, PoolGeom};
use crate::pack::{pack, row_bytes, storage_bits, unpack};
use crate::qparams::{QParams, check_bits, symmetric_qmax};

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn eight() -> u8 {
    8
}

fn is_eight(v: &u8) -> bool {
    *v == 8
}

/// The width a layer's integer weights were made at: the scheme's, checked against the
/// weights themselves (a fallback or hand-built layer may be wider than the scheme says).
fn weight_bits_of(w: &[i8], scheme_bits: u8) -> u8 {
    let amax = w.iter().map(|v| (*v as i32).abs()).max().unwrap_or(0);
    if amax <= symmetric_qmax(scheme_bits) {
        scheme_bits
    } else {
        8
    }
}

/// Shared tensor of every int8 layer's weight scales, in node order.
pub const SCALES_TENSOR: &str = "w_scale";
/// Shared tensor of every static layer's int32 bias, in node order.
pub const BIAS_TENSOR: &str = "bias_i32";

/// Version of the layout below; bumped on incompatible change.
pub const FORMAT_VERSION: u32 = 1;
/// Metadata key of the JSON description.
pub const META_KEY: &str = "quantlab";

/// How a dense layer is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// F32 weight and bias.
    F32,
    /// I8 weight, scales in `w_scale`, bias in `bias_i32`.
    Static,
    /// I8 weight, scales in `w_scale`, F32 bias.
    Dynamic,
}

/// A node as the file describes it (weights live in tensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum NodeSpec {
    /// Linear or convolution; `k` and `n` come from its weight tensor's shape.
    Dense {
        /// Convolution geometry, absent for linear layers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conv: Option<ConvGeom>,
        /// Fused ReLU.
        relu: bool,
        /// The fused ReLU's upper bound (ReLU6: 6).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cap: Option<f32>,
        /// A depthwise convolution (`k = kh*kw` taps per channel).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        depthwise: bool,
        /// Storage.
        precision: Precision,
        /// Number of weight scales (1 or n) this int8 layer takes from `w_scale`.
        #[serde(default, skip_serializing_if = "is_zero")]
        scales: usize,
        /// Width of the integer weights (2..=8); below 5 they are packed (see [`crate::pack`]).
        #[serde(default = "eight", skip_serializing_if = "is_eight")]
        weight_bits: u8,
        /// Weights per row (`k`) of a packed weight tensor, whose shape cannot say it.
        #[serde(default, skip_serializing_if = "is_zero")]
        k: usize,
    },
    /// Max pooling.
    MaxPool(PoolGeom),
    /// Average pooling (integer on u8 values, keeping their parameters).
    AvgPool(PoolGeom),
    /// A residual Add of the earlier point `from`, with a fused ReLU.
    Add {
        /// The point added (0 the input, `i + 1` the output of node `i`).
        from: usize,
        /// ReLU fused after the sum.
        relu: bool,
    },
    /// ReLU.
    Relu,
    /// Flatten.
    Flatten,
}

/// The JSON metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Layout version.
    pub format_version: u32,
    /// quantlab version that wrote the file.
    pub quantlab_version: String,
    /// How the model was quantized.
    pub scheme: Scheme,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
    /// Nodes.
    pub nodes: Vec<NodeSpec>,
    /// Activation quantization per point.
    pub points: Vec<Option<QParams>>,
    /// Free-form provenance: model config, dataset, normalisation (written by the caller).
    pub provenance: serde_json::Value,
}

fn bytes_of<T: Copy>(v: &[T]) -> Vec<u8> {
    // Little-endian on every target quantlab builds for (x86-64, aarch64).
    let mut out = Vec::with_capacity(std::mem::size_of_val(v));
    for x in v {
        // SAFETY: T is a plain number type (i8, i32, f32); reading its bytes is defined.
        let b = unsafe {
            std::slice::from_raw_parts((x as *const T).cast::<u8>(), std::mem::size_of::<T>())
        };
        out.extend_from_slice(b);
    }
    out
}

/// Serialises `model` with `provenance` into safetensors bytes.
pub fn to_bytes(model: &QuantModel, provenance: serde_json::Value) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let (mut scales, mut biases): (Vec<f32>, Vec<i32>) = (Vec::new(), Vec::new());
    let mut nodes = Vec::new();
    for (i, node) in model.network.nodes.iter().enumerate() {
        let spec = match (node, &model.layers[i]) {
            (Node::Dense(d), Some(layer)) => {
                let (w_name, b_name, shape) =
                    (format!("n{i}.weight"), format!("n{i}.bias"), vec![d.n, d.k]);
                let mut int_weights = |w: &[i8]| {
                    let bits = weight_bits_of(w, model.scheme.widths.weights);
                    let sb = storage_bits(bits);
                    if sb == 8 {
                        tensors.push((w_name.clone(), Dtype::I8, shape.clone(), bytes_of(w)));
                        (bits, 0)
                    } else {
                        let packed = pack(w, d.k, sb);
                        let packed_shape = vec![d.n, row_bytes(d.k, sb)];
                        tensors.push((w_name.clone(), Dtype::U8, packed_shape, packed));
                        (bits, d.k)
                    }
                };
                let (precision, n_scales, (weight_bits, k)) = match layer {
                    LayerImpl::F32 => {
                        tensors.push((w_name, Dtype::F32, shape, bytes_of(&d.weight)));
                        tensors.push((b_name, Dtype::F32, vec![d.n], bytes_of(&d.bias)));
                        (Precision::F32, 0, (8, 0))
                    }
                    LayerImpl::Static(l) => {
                        let wb = int_weights(&l.w.w);
                        scales.extend(&l.w_scales);
                        biases.extend(&l.bias);
                        (Precision::Static, l.w_scales.len(), wb)
                    }
                    LayerImpl::Dynamic(l) => {
                        let wb = int_weights(&l.w.w);
                        tensors.push((b_name, Dtype::F32, vec![d.n], bytes_of(&d.bias)));
                        scales.extend(&l.w_scales);
                        (Precision::Dynamic, l.w_scales.len(), wb)
                    }
                };
                NodeSpec::Dense {
                    conv: d.conv,
                    relu: d.relu,
                    cap: d.cap,
                    depthwise: d.depthwise,
                    precision,
                    scales: n_scales,
                    weight_bits,
                    k,
                }
            }
            (Node::Dense(_), None) => {
                return Err(QuantError::Graph(format!("node {i} has no implementation")));
            }
            (Node::MaxPool(g), _) => NodeSpec::MaxPool(*g),
            (Node::AvgPool(g), _) => NodeSpec::AvgPool(*g),
            (Node::Add { from, relu }, _) => NodeSpec::Add {
                from: *from,
                relu: *relu,
            },
            (Node::Relu, _) => NodeSpec::Relu,
            (Node::Flatten, _) => NodeSpec::Flatten,
        };
        nodes.push(spec);
    }
    if !scales.is_empty() {
        tensors.push((
            SCALES_TENSOR.into(),
            Dtype::F32,
            vec![scales.len()],
            bytes_of(&scales),
        ));
    }
    if !biases.is_empty() {
        tensors.push((
            BIAS_TENSOR.into(),
            Dtype::I32,
            vec![biases.len()],
            bytes_of(&biases),
        ));
    }
    // Pass-through points repeat their input's parameters; the file stores them once.
    let points = model
        .points
        .iter()
        .enumerate()
        .map(|(p, q)| {
            if p > 0 && !model.network.nodes[p - 1].sets_grid() {
                None
            } else {
                *q
            }
        })
        .collect();
    let meta = FileMeta {
        format_version: FORMAT_VERSION,
        quantlab_version: env!("CARGO_PKG_VERSION").to_string(),
        scheme: model.scheme.clone(),
        input_shape: model.network.input_shape.clone(),
        nodes,
        points,
        provenance,
    };
    let json = serde_json::to_string(&meta).map_err(|e| QuantError::Graph(e.to_string()))?;
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| QuantError::Graph(e.to_string()))
        })
        .collect::<Result<_>>()?;
    safetensors::tensor::serialize(views, Some(HashMap::from([(META_KEY.to_string(), json)])))
        .map_err(|e| QuantError::Graph(e.to_string()))
}

/// Writes `model` to `path`; returns the file size in bytes.
pub fn save(model: &QuantModel, provenance: serde_json::Value, path: &Path) -> Result<u64> {
    let bytes = to_bytes(model, provenance)?;
    std::fs::write(path, &bytes).map_err(|source| QuantError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes.len() as u64)
}

/// Reads a model file. Every inconsistency is an error naming `path`.
pub fn load(path: &Path) -> Result<(QuantModel, FileMeta)> {
    let bytes = std::fs::read(path).map_err(|source| QuantError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Parses safetensors bytes (`path` is only used in messages).
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(QuantModel, FileMeta)> {
    let bad = |reason: String| QuantError::File {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            bad(format!(
                "no `{META_KEY}` metadata: not a quantlab model file"
            ))
        })?;
    let meta: FileMeta = serde_json::from_str(json)
        .map_err(|e| bad(format!("corrupt `{META_KEY}` metadata: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            meta.format_version
        )));
    }
    if meta.points.len() != meta.nodes.len() + 1 {
        return Err(bad(format!(
            "{} activation points for {} nodes",
            meta.points.len(),
            meta.nodes.len()
        )));
    }
    for (p, q) in meta.points.iter().enumerate() {
        if let Some(why) = q.and_then(|q| q.problem()) {
            return Err(bad(format!("activation point {p}: {why}")));
        }
    }
    // Pass-through points were stored once: restore them from their input point.
    let mut points = meta.points.clone();
    for p in 1..points.len() {
        if !matches!(
            meta.nodes[p - 1],
            NodeSpec::Dense { .. } | NodeSpec::Add { .. }
        ) && points[p].is_none()
        {
            points[p] = points[p - 1];
        }
    }
    let reader = Reader { st: &st, path };
    let all_scales = reader.f32s_any(SCALES_TENSOR)?;
    let all_biases = reader.i32s_any(BIAS_TENSOR)?;
    let (mut next_scale, mut next_bias) = (0usize, 0usize);
    let mut nodes = Vec::new();
    let mut layers = Vec::new();
    for (i, spec) in meta.nodes.iter().enumerate() {
        let (node, layer) = match spec {
            NodeSpec::Dense {
                conv,
                relu,
                cap,
                depthwise,
                precision,
                scales,
                weight_bits,
                k: packed_k,
            } => {
                if cap.is_some_and(|c| !(c.is_finite() && c > 0.0 && *relu)) {
                    return Err(bad(format!(
                        "node {i}: cap {cap:?} must be a positive number after a fused ReLU"
                    )));
                }
                let w_name = format!("n{i}.weight");
                let [n, k_or_bytes] = reader.matrix_shape(&w_name)?;
                if check_bits("weight_bits", *weight_bits).is_err() {
                    return Err(bad(format!(
                        "node {i}: weight_bits {weight_bits} is not a width quantlab writes (2..=8)"
                    )));
                }
                let sb = storage_bits(*weight_bits);
                let packed = *precision != Precision::F32 && sb < 8;
                let k = if packed { *packed_k } else { k_or_bytes };
                if packed && row_bytes(k, sb) != k_or_bytes {
                    return Err(bad(format!(
                        "tensor {w_name}: {k_or_bytes} bytes per row, {k} weights at {weight_bits} bits pack into {}",
                        row_bytes(k, sb)
                    )));
                }
                let want_k = |g: &ConvGeom| {
                    let taps = g.kernel[0].checked_mul(g.kernel[1]);
                    if *depthwise {
                        taps
                    } else {
                        taps.and_then(|t| t.checked_mul(g.in_channels))
                    }
                };
                if k == 0
                    || n == 0
                    || conv.as_ref().is_some_and(|g| want_k(g) != Some(k))
                    || (*depthwise && conv.is_none_or(|g| g.in_channels != n))
                {
                    return Err(bad(format!(
                        "node {i}: weight shape [{n}, {k}] does not fit the layer"
                    )));
                }
                let mut d = Dense {
                    conv: *conv,
                    k,
                    n,
                    weight: Vec::new(),
                    bias: Vec::new(),
                    relu: *relu,
                    cap: *cap,
                    depthwise: *depthwise,
                };
                let layer = match precision {
                    Precision::F32 => {
                        d.weight = reader.f32s(&w_name, &[n, k])?;
                        d.bias = reader.f32s(&format!("n{i}.bias"), &[n])?;
                        LayerImpl::F32
                    }
                    Precision::Static | Precision::Dynamic => {
                        if *scales != 1 && *scales != n {
                            return Err(bad(format!(
                                "node {i}: {scales} weight scales for {n} outputs"
                            )));
                        }
                        let qmax = symmetric_qmax(*weight_bits);
                        let ints = if packed {
                            reader.packed(&w_name, n, k, sb, qmax)?
                        } else {
                            reader.i8s_within(&w_name, &[n, k], qmax)?
                        };
                        let w = QWeights::new(ints, n, k);
                        let w_scales = take(&all_scales, &mut next_scale, *scales)
                            .ok_or_else(|| {
                                bad(format!("node {i}: tensor {SCALES_TENSOR} is too short"))
                            })?
                            .to_vec();
                        if let Some(s) = w_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                            return Err(bad(format!(
                                "node {i}: weight scale {s} is not finite and positive"
                            )));
                        }
                        if *precision == Precision::Static {
                            let (Some(in_q), Some(out_q)) = (points[i], points[i + 1]) else {
                                return Err(bad(format!(
                                    "node {i}: static layer without input/output quantization"
                                )));
                            };
                            let bias = take(&all_biases, &mut next_bias, n)
                                .ok_or_else(|| {
                                    bad(format!("node {i}: tensor {BIAS_TENSOR} is too short"))
                                })?
                                .to_vec();
                            LayerImpl::Static(StaticLayer::new(w, w_scales, bias, in_q, out_q))
                        } else {
                            d.bias = reader.f32s(&format!("n{i}.bias"), &[n])?;
                            LayerImpl::Dynamic(DynamicLayer { w, w_scales })
                        }
                    }
                };
                (Node::Dense(d), Some(layer))
            }
            NodeSpec::MaxPool(g) => (Node::MaxPool(*g), None),
            NodeSpec::AvgPool(g) => (Node::AvgPool(*g), None),
            NodeSpec::Add { from, relu } => (
                Node::Add {
                    from: *from,
                    relu: *relu,
                },
                None,
            ),
            NodeSpec::Relu => (Node::Relu, None),
            NodeSpec::Flatten => (Node::Flatten, None),
        };
        nodes.push(node);
        layers.push(layer);
    }
    if next_scale != all_scales.len() || next_bias != all_biases.len() {
        return Err(bad(format!(
            "{SCALES_TENSOR} / {BIAS_TENSOR} hold {} / {} values, the layers use {next_scale} / {next_bias}",
            all_scales.len(),
            all_biases.len()
        )));
    }
    let network =
        Network::from_nodes(meta.input_shape.clone(), nodes).map_err(|e| bad(e.to_string()))?;
    let model = QuantModel {
        network,
        layers,
        points,
        scheme: meta.scheme.clone(),
    };
    Ok((model, meta))
}

/// The next `n` values of a shared tensor.
fn take<'a, T>(all: &'a [T], next: &mut usize, n: usize) -> Option<&'a [T]> {
    let s = all.get(*next..*next + n)?;
    *next += n;
    Some(s)
}

struct Reader<'a> {
    st: &'a SafeTensors<'a>,
    path: &'a Path,
}

impl Reader<'_> {
    fn view(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<TensorView<'_>> {
        let bad = |reason: String| QuantError::File {
            path: PathBuf::from(self.path),
            reason,
        };
        let t = self
            .st
            .tensor(name)
            .map_err(|_| bad(format!("missing tensor {name}")))?;
        if t.dtype() != dtype {
            return Err(bad(format!(
                "tensor {name} is {:?}, the graph needs {dtype:?}",
                t.dtype()
            )));
        }
        if t.shape() != shape {
            return Err(bad(format!(
                "tensor {name} has shape {:?}, the graph needs {shape:?}",
                t.shape()
            )));
        }
        Ok(t)
    }

    fn bad(&self, reason: String) -> QuantError {
        QuantError::File {
            path: PathBuf::from(self.path),
            reason,
        }
    }

    /// Shape `[n, k]` of a weight matrix.
    fn matrix_shape(&self, name: &str) -> Result<[usize; 2]> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| self.bad(format!("missing tensor {name}")))?;
        match *t.shape() {
            [n, k] => Ok([n, k]),
            ref other => Err(self.bad(format!(
                "tensor {name} has shape {other:?}, a weight matrix needs 2 dimensions"
            ))),
        }
    }

    /// A 1-D tensor of any length, or empty if absent.
    fn f32s_any(&self, name: &str) -> Result<Vec<f32>> {
        self.any_len(name, |n| self.f32s(name, &[n]))
    }

    /// A 1-D tensor of any length, or empty if absent.
    fn i32s_any(&self, name: &str) -> Result<Vec<i32>> {
        self.any_len(name, |n| self.i32s(name, &[n]))
    }

    fn any_len<T>(&self, name: &str, read: impl FnOnce(usize) -> Result<Vec<T>>) -> Result<Vec<T>> {
        match self.st.tensor(name) {
            Ok(t) => read(t.shape().iter().product()),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The values of a 4-byte little-endian tensor, checked against `dtype` and `shape`.
    fn words<T>(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        decode: fn([u8; 4]) -> T,
    ) -> Result<Vec<T>> {
        let t = self.view(name, dtype, shape)?;
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| decode([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.words(name, Dtype::F32, shape, f32::from_le_bytes)
    }

    fn i32s(&self, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
        self.words(name, Dtype::I32, shape, i32::from_le_bytes)
    }

    /// An I8 tensor whose values must lie in `-qmax..=qmax` (their width's grid).
    fn i8s_within(&self, name: &str, shape: &[usize], qmax: i32) -> Result<Vec<i8>> {
        let t = self.view(name, Dtype::I8, shape)?;
        let k = shape.last().copied().unwrap_or(1).max(1);
        unpack(t.data(), t.data().len() / k, k, 8, qmax)
            .map_err(|why| self.bad(format!("tensor {name}: {why}")))
    }

    /// A packed U8 weight tensor `[n, row_bytes]` unpacked to `n * k` checked values.
    fn packed(&self, name: &str, n: usize, k: usize, storage: u8, qmax: i32) -> Result<Vec<i8>> {
        let t = self.view(name, Dtype::U8, &[n, row_bytes(k, storage)])?;
        unpack(t.data(), n, k, storage, qmax)
            .map_err(|why| self.bad(format!("tensor {name}: {why}")))
    }
}
