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
use crate::kernels::QWeights;
use crate::model::{DynamicLayer, LayerImpl, QuantModel, Scheme, StaticLayer};
use crate::network::{ConvGeom, Dense, Network, Node};
use crate::qparams::QParams;

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
    /// I8 weight, F32 scales, I32 bias.
    Int8Static,
    /// I8 weight, F32 scales, F32 bias.
    Int8Dynamic,
}

/// A node as the file describes it (weights live in tensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum NodeSpec {
    /// Linear or convolution.
    Dense {
        /// Convolution geometry, absent for linear layers.
        conv: Option<ConvGeom>,
        /// Reduction length.
        k: usize,
        /// Outputs.
        n: usize,
        /// Fused ReLU.
        relu: bool,
        /// Storage.
        precision: Precision,
        /// Number of weight scales (1 or n) for int8 layers.
        scales: usize,
    },
    /// Max pooling.
    MaxPool {
        /// Channels.
        channels: usize,
        /// Input size.
        in_hw: [usize; 2],
        /// Kernel.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Output size.
        out_hw: [usize; 2],
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
    let mut nodes = Vec::new();
    for (i, node) in model.network.nodes.iter().enumerate() {
        let spec = match (node, &model.layers[i]) {
            (Node::Dense(d), Some(layer)) => {
                let (precision, scales) = match layer {
                    LayerImpl::F32 => {
                        tensors.push((
                            format!("n{i}.weight"),
                            Dtype::F32,
                            vec![d.n, d.k],
                            bytes_of(&d.weight),
                        ));
                        tensors.push((
                            format!("n{i}.bias"),
                            Dtype::F32,
                            vec![d.n],
                            bytes_of(&d.bias),
                        ));
                        (Precision::F32, 0)
                    }
                    LayerImpl::Static(l) => {
                        tensors.push((
                            format!("n{i}.weight"),
                            Dtype::I8,
                            vec![d.n, d.k],
                            bytes_of(&l.w.w),
                        ));
                        tensors.push((
                            format!("n{i}.w_scale"),
                            Dtype::F32,
                            vec![l.w_scales.len()],
                            bytes_of(&l.w_scales),
                        ));
                        tensors.push((
                            format!("n{i}.bias"),
                            Dtype::I32,
                            vec![d.n],
                            bytes_of(&l.bias),
                        ));
                        (Precision::Int8Static, l.w_scales.len())
                    }
                    LayerImpl::Dynamic(l) => {
                        tensors.push((
                            format!("n{i}.weight"),
                            Dtype::I8,
                            vec![d.n, d.k],
                            bytes_of(&l.w.w),
                        ));
                        tensors.push((
                            format!("n{i}.w_scale"),
                            Dtype::F32,
                            vec![l.w_scales.len()],
                            bytes_of(&l.w_scales),
                        ));
                        tensors.push((
                            format!("n{i}.bias"),
                            Dtype::F32,
                            vec![d.n],
                            bytes_of(&d.bias),
                        ));
                        (Precision::Int8Dynamic, l.w_scales.len())
                    }
                };
                NodeSpec::Dense {
                    conv: d.conv,
                    k: d.k,
                    n: d.n,
                    relu: d.relu,
                    precision,
                    scales,
                }
            }
            (Node::Dense(_), None) => {
                return Err(QuantError::Graph(format!("node {i} has no implementation")));
            }
            (
                Node::MaxPool {
                    channels,
                    in_hw,
                    kernel,
                    stride,
                    out_hw,
                },
                _,
            ) => NodeSpec::MaxPool {
                channels: *channels,
                in_hw: *in_hw,
                kernel: *kernel,
                stride: *stride,
                out_hw: *out_hw,
            },
            (Node::Relu, _) => NodeSpec::Relu,
            (Node::Flatten, _) => NodeSpec::Flatten,
        };
        nodes.push(spec);
    }
    let meta = FileMeta {
        format_version: FORMAT_VERSION,
        quantlab_version: env!("CARGO_PKG_VERSION").to_string(),
        scheme: model.scheme.clone(),
        input_shape: model.network.input_shape.clone(),
        nodes,
        points: model.points.clone(),
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
        if let Some(q) = q {
            if !q.is_valid() {
                return Err(bad(format!(
                    "activation point {p}: invalid quantization {q:?} (scale must be finite and > 0)"
                )));
            }
        }
    }
    let reader = Reader { st: &st, path };
    let mut nodes = Vec::new();
    let mut layers = Vec::new();
    for (i, spec) in meta.nodes.iter().enumerate() {
        match spec {
            NodeSpec::Dense {
                conv,
                k,
                n,
                relu,
                precision,
                scales,
            } => {
                let (k, n) = (*k, *n);
                if k == 0
                    || n == 0
                    || conv.is_some_and(|g| g.in_channels * g.kernel[0] * g.kernel[1] != k)
                {
                    return Err(bad(format!(
                        "node {i}: inconsistent layer shape k={k} n={n}"
                    )));
                }
                let mut d = Dense {
                    conv: *conv,
                    k,
                    n,
                    weight: Vec::new(),
                    bias: Vec::new(),
                    relu: *relu,
                };
                let layer = match precision {
                    Precision::F32 => {
                        d.weight = reader.f32s(&format!("n{i}.weight"), &[n, k])?;
                        d.bias = reader.f32s(&format!("n{i}.bias"), &[n])?;
                        LayerImpl::F32
                    }
                    Precision::Int8Static | Precision::Int8Dynamic => {
                        if *scales != 1 && *scales != n {
                            return Err(bad(format!(
                                "node {i}: {scales} weight scales for {n} outputs"
                            )));
                        }
                        let w = reader.i8s(&format!("n{i}.weight"), &[n, k])?;
                        let w_scales = reader.f32s(&format!("n{i}.w_scale"), &[*scales])?;
                        if let Some(s) = w_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                            return Err(bad(format!(
                                "node {i}: weight scale {s} is not finite and positive"
                            )));
                        }
                        let w = QWeights::new(w, n, k);
                        if *precision == Precision::Int8Static {
                            let (Some(Some(in_q)), Some(Some(out_q))) =
                                (meta.points.get(i), meta.points.get(i + 1))
                            else {
                                return Err(bad(format!(
                                    "node {i}: static layer without input/output quantization"
                                )));
                            };
                            let bias = reader.i32s(&format!("n{i}.bias"), &[n])?;
                            LayerImpl::Static(StaticLayer::new(w, w_scales, bias, *in_q, *out_q))
                        } else {
                            d.bias = reader.f32s(&format!("n{i}.bias"), &[n])?;
                            LayerImpl::Dynamic(DynamicLayer { w, w_scales })
                        }
                    }
                };
                nodes.push(Node::Dense(d));
                layers.push(Some(layer));
            }
            NodeSpec::MaxPool {
                channels,
                in_hw,
                kernel,
                stride,
                out_hw,
            } => {
                nodes.push(Node::MaxPool {
                    channels: *channels,
                    in_hw: *in_hw,
                    kernel: *kernel,
                    stride: *stride,
                    out_hw: *out_hw,
                });
                layers.push(None);
            }
            NodeSpec::Relu => {
                nodes.push(Node::Relu);
                layers.push(None);
            }
            NodeSpec::Flatten => {
                nodes.push(Node::Flatten);
                layers.push(None);
            }
        }
    }
    let network =
        network_with_shapes(meta.input_shape.clone(), nodes).map_err(|e| bad(e.to_string()))?;
    let model = QuantModel {
        network,
        layers,
        points: meta.points.clone(),
        scheme: meta.scheme.clone(),
    };
    Ok((model, meta))
}

/// Recomputes per-node output lengths and checks that consecutive nodes fit.
fn network_with_shapes(input_shape: Vec<usize>, nodes: Vec<Node>) -> Result<Network> {
    let mut len: usize = input_shape.iter().product();
    let mut out_lens = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mismatch = |want: usize| {
            QuantError::Graph(format!(
                "node {i} expects {want} inputs per sample, the previous node gives {len}"
            ))
        };
        len = match node {
            Node::Dense(d) => {
                let want = match d.conv {
                    None => d.k,
                    Some(g) => g.in_channels * g.in_hw[0] * g.in_hw[1],
                };
                if want != len {
                    return Err(mismatch(want));
                }
                d.out_len()
            }
            Node::MaxPool {
                channels,
                in_hw,
                kernel,
                stride,
                out_hw,
            } => {
                if channels * in_hw[0] * in_hw[1] != len {
                    return Err(mismatch(channels * in_hw[0] * in_hw[1]));
                }
                let valid = (0..2).all(|a| {
                    stride[a] > 0
                        && in_hw[a] >= kernel[a]
                        && out_hw[a] == (in_hw[a] - kernel[a]) / stride[a] + 1
                });
                if !valid {
                    return Err(QuantError::Graph(format!(
                        "node {i}: inconsistent max-pool geometry"
                    )));
                }
                channels * out_hw[0] * out_hw[1]
            }
            Node::Relu | Node::Flatten => len,
        };
        out_lens.push(len);
    }
    if out_lens.is_empty() {
        return Err(QuantError::Graph("no nodes".into()));
    }
    Ok(Network {
        input_shape,
        nodes,
        out_lens,
    })
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

    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.view(name, Dtype::F32, shape)?;
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn i32s(&self, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
        let t = self.view(name, Dtype::I32, shape)?;
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn i8s(&self, name: &str, shape: &[usize]) -> Result<Vec<i8>> {
        let t = self.view(name, Dtype::I8, shape)?;
        Ok(t.data().iter().map(|&b| b as i8).collect())
    }
}
