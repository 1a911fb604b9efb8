//! [`GpuModel`]: a static int8 network on the GPU, step by step over device buffers.

use burn::cubecl::server::{Handle, KernelArguments};

use super::shapes::{DenseShape, PoolShape};
use super::{POOL, Weights, Wgsl, client, dense_source, read_back, upload, word_groups};
use quantlab_quant::engine::{Layout, Weights as Prepared};
use quantlab_quant::qparams::{QParams, quantize_into};
use quantlab_quant::{Engine, KernelPath, LayerImpl, Node, QuantModel};

use crate::{GpuError, Result};

/// One step of a network on the device.
#[allow(clippy::large_enum_variant)] // a few steps per model, built once: size is no matter
enum Step {
    Dense {
        weights: Weights,
        /// The dense kernel's parameters (`batch` set per call).
        shape: DenseShape,
        /// Bytes per sample of the output (padding included).
        out_len: usize,
    },
    Pool {
        /// The pool kernel's parameters (`batch` set per call).
        shape: PoolShape,
        out_len: usize,
    },
}

/// A static int8 model on the GPU: weights uploaded once, activations kept on the device as
/// packed u8 channels-last maps from the quantized input to the quantized logits.
pub struct GpuModel {
    client: burn::cubecl::client::Client,
    steps: Vec<Step>,
    in_q: QParams,
    out_q: QParams,
    in_len: usize,
    /// Values per sample of the last step's output, and the bytes per sample it is stored in.
    out_values: usize,
    out_stride: usize,
    /// Each step's `shape` buffer on the device, per batch size seen lately, so a call
    /// uploads its input and nothing else.
    shapes: std::sync::Mutex<Vec<(usize, Vec<Handle>)>>,
}

/// Batch sizes whose shape buffers [`GpuModel`] keeps.
const SHAPE_CACHE: usize = 8;

impl GpuModel {
    /// Prepares `model`, which must be static int8 in every dense layer (the float and
    /// dynamic parts have no GPU path yet).
    pub fn new(model: &QuantModel) -> Result<Self> {
        // The CPU engine's plan on the scalar path: the weights in the channels-last order,
        // unpacked (the GPU packs them for itself), and the layout of every point.
        let session = Engine {
            path: KernelPath::Scalar,
            threads: 1,
        }
        .prepare(model)?;
        let plan = session.plan();
        let client = client()?;
        let mut steps = Vec::new();
        let (mut in_q, mut out_q) = (None, None);
        let mut layout = plan.layouts[0];
        // Bytes per sample of the buffer the next step reads, and its values per sample.
        let mut stride = model.network.in_len();
        let mut values = stride;
        for (i, node) in model.network.nodes.iter().enumerate() {
            let int8 = match &plan.weights[i] {
                Some(Prepared::Int8 { w, .. }) => w.to_qweights(),
                _ => None,
            };
            match (node, &model.layers[i], &int8) {
                (Node::Dense(d), _, _) if d.depthwise => {
                    return Err(GpuError::Invalid {
                        key: "gpu",
                        reason: format!(
                            "node {i} ({}) has no GPU path yet: run this model on the CPU engine",
                            d.kind()
                        ),
                    });
                }
                (Node::Dense(d), Some(LayerImpl::Static(l)), Some(w)) => {
                    if out_q.is_some_and(|q| q != l.in_q) {
                        return Err(GpuError::Invalid {
                            key: "gpu",
                            reason: format!(
                                "node {i} expects other input parameters than the layer before \
                                 produces; requantizing between layers has no GPU path"
                            ),
                        });
                    }
                    in_q.get_or_insert(l.in_q);
                    out_q = Some(l.out_q);
                    // A linear layer's outputs (one pixel) are stored padded to whole words.
                    let pixels = d.out_len() / w.n;
                    let rows = if pixels == 1 {
                        w.n.div_ceil(4) * 4
                    } else {
                        w.n
                    };
                    let weights = upload(&client, w, &l.offset, &l.requant, rows);
                    let k4 = weights.k4;
                    let (zo, lo, hi) = l.out_clamp(d.relu, d.cap);
                    let shape = DenseShape {
                        zp: l.in_q.zero_point,
                        zo,
                        lo,
                        hi,
                        in_stride: stride as i32,
                        ..match &d.conv {
                            Some(g) => DenseShape::conv(rows, k4, g),
                            None => DenseShape::linear(rows, k4, d.k),
                        }
                    };
                    (stride, values) = (pixels * rows, d.out_len());
                    steps.push(Step::Dense {
                        weights,
                        shape,
                        out_len: stride,
                    });
                }
                (Node::Dense(_), _, _) => {
                    return Err(GpuError::Invalid {
                        key: "gpu",
                        reason: format!(
                            "node {i} is not static int8; the GPU runs static int8 models only"
                        ),
                    });
                }
                (Node::MaxPool(g), _, _) => {
                    let shape = PoolShape::of(g);
                    if stride != values {
                        return Err(GpuError::Invalid {
                            key: "gpu",
                            reason: format!(
                                "node {i}: max pooling of a padded map has no GPU path"
                            ),
                        });
                    }
                    stride = g.channels * g.out_hw[0] * g.out_hw[1];
                    values = stride;
                    steps.push(Step::Pool {
                        shape,
                        out_len: stride,
                    });
                }
                (Node::Relu, _, _) => {
                    return Err(GpuError::Invalid {
                        key: "gpu",
                        reason: format!("node {i}: a ReLU not fused into a layer has no GPU path"),
                    });
                }
                (Node::AvgPool(_) | Node::Add { .. }, _, _) => {
                    return Err(GpuError::Invalid {
                        key: "gpu",
                        reason: format!(
                            "node {i} ({}) has no GPU path yet: the GPU runs chains of \
                             conv, linear and max pool; run this model on the CPU engine",
                            node.kind()
                        ),
                    });
                }
                (Node::Flatten, _, _) => {}
            }
            layout = plan.layouts[i + 1];
        }
        if let Layout::Map([c, h, w]) = layout
            && c > 1
            && h * w > 1
        {
            return Err(GpuError::Invalid {
                key: "gpu",
                reason: "a network ending in a feature map has no GPU path".into(),
            });
        }
        let (Some(in_q), Some(out_q)) = (in_q, out_q) else {
            return Err(GpuError::Invalid {
                key: "gpu",
                reason: "the model has no static int8 layer".into(),
            });
        };
        if matches!(plan.layouts[0], Layout::Map([c, _, _]) if c > 1) {
            return Err(GpuError::Invalid {
                key: "gpu",
                reason: "multi-channel inputs are not transposed on the GPU yet".into(),
            });
        }
        Ok(Self {
            client,
            steps,
            in_q,
            out_q,
            in_len: model.network.in_len(),
            out_values: values,
            out_stride: stride,
            shapes: Default::default(),
        })
    }

    /// Logits `[batch, classes]` for `x` (`[batch, in_len]`): the input quantized on the
    /// host, every layer on the device, the u8 logits read back and dequantized.
    pub fn run(&self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        if x.len() != batch * self.in_len {
            return Err(GpuError::InputSize {
                expected: batch * self.in_len,
                found: x.len(),
                batch,
            });
        }
        if batch == 0 {
            // Nothing to upload (and a zero-byte device buffer is not a thing to ask for).
            return Ok(Vec::new());
        }
        let client = &self.client;
        let mut q = vec![0u8; x.len().div_ceil(4) * 4];
        quantize_into(x, &self.in_q, &mut q[..x.len()]);
        let mut cur = client.create_from_slice(&q);
        let mut len = x.len();
        let shapes = self.shape_buffers(batch);
        for (step, shape) in self.steps.iter().zip(shapes) {
            match step {
                Step::Dense {
                    weights: Weights { w, params, .. },
                    out_len,
                    ..
                } => {
                    len = batch * out_len;
                    let out = client.empty(len.div_ceil(4) * 4);
                    client.launch(
                        Box::new(Wgsl {
                            source: dense_source(),
                            entry: "dense",
                        }),
                        word_groups(len),
                        KernelArguments::new()
                            .with_buffer(cur.binding())
                            .with_buffer(w.clone().binding())
                            .with_buffer(params.clone().binding())
                            .with_buffer(shape.binding())
                            .with_buffer(out.clone().binding()),
                    );
                    cur = out;
                }
                Step::Pool { out_len, .. } => {
                    len = batch * out_len;
                    let out = client.empty(len.div_ceil(4) * 4);
                    client.launch(
                        Box::new(Wgsl {
                            source: POOL,
                            entry: "pool",
                        }),
                        word_groups(len),
                        KernelArguments::new()
                            .with_buffer(cur.binding())
                            .with_buffer(shape.binding())
                            .with_buffer(out.clone().binding()),
                    );
                    cur = out;
                }
            }
        }
        let bytes = read_back(client, cur)?;
        debug_assert_eq!(len, batch * self.out_stride);
        Ok(bytes[..len]
            .chunks_exact(self.out_stride)
            .flat_map(|sample| &sample[..self.out_values])
            .map(|&v| self.out_q.dequantize(v))
            .collect())
    }

    /// The steps' `shape` vectors with `batch` in their last slot, on the device: uploaded
    /// on the first call at this batch size, then reused.
    fn shape_buffers(&self, batch: usize) -> Vec<Handle> {
        let mut cache = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, handles)) = cache.iter().find(|(b, _)| *b == batch) {
            return handles.clone();
        }
        let handles: Vec<Handle> = self
            .steps
            .iter()
            .map(|step| {
                let bytes = match step {
                    Step::Dense { shape, .. } => DenseShape {
                        batch: batch as i32,
                        ..*shape
                    }
                    .bytes(),
                    Step::Pool { shape, .. } => PoolShape {
                        batch: batch as i32,
                        ..*shape
                    }
                    .bytes(),
                };
                self.client.create_from_slice(&bytes)
            })
            .collect();
        if cache.len() == SHAPE_CACHE {
            cache.remove(0);
        }
        cache.push((batch, handles.clone()));
        handles
    }
}
