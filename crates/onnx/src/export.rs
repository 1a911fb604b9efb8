//! A [`QuantModel`] as a standard ONNX file: the float graph for f32 (and naive) models,
//! and for static int8 the QDQ form ONNX Runtime's `quantize_static` writes, so ONNX
//! Runtime, OpenVINO, tract and TensorRT run it with their own int8 kernels:
//!
//! - every activation point the engine quantizes becomes `QuantizeLinear` ->
//!   `DequantizeLinear` with the calibrated scale and zero point (u8 affine, or int8 with
//!   zero point 0 for `i8-symmetric`);
//! - weights are int8 initializers behind a `DequantizeLinear` (scalar scale per tensor, or
//!   `[n]` scales with `axis = 0` per channel); biases are int32 at scale `s_in * s_w`
//!   behind their own `DequantizeLinear` (`axis = 0` written even where it is the default
//!   reading, because tract rejects the default axis 1 on a rank-1 tensor);
//! - `Relu` follows its layer before the output `QuantizeLinear` (what the engine's fused
//!   epilogue computes), and `MaxPool`/`Flatten` keep their input's parameters with a
//!   `QuantizeLinear`/`DequantizeLinear` pair after them, as ONNX Runtime's tools place them;
//!   `AveragePool` does the same (the engine rounds the window's mean onto its input's grid);
//! - a residual `Add` (+ `Relu`) reads both dequantized inputs and is quantized at its own
//!   calibrated point, the QDQ form ONNX Runtime fuses into `QLinearAdd`;
//! - layers kept in f32 by `--max-drop` stay float `Gemm`/`Conv` between the points.
//!
//! The input is `input` `[batch, ...]` and the output `logits` `[batch, classes]`, batch
//! dynamic. The TensorRT flavour ([`OnnxTarget::TensorRt`]) needs zero points of 0, so it
//! takes only `i8-symmetric` models, and writes float biases (TensorRT's parser rejects an
//! int32 `DequantizeLinear`).

use quantlab_quant::model::StaticLayer;
use quantlab_quant::{ActDtype, Dense, LayerImpl, MethodKind, Node, QParams, QuantModel};

use crate::Result;
use crate::error::Error;
use crate::proto::ModelProto;
use crate::{Attr, GraphBuilder};

/// The opset written (per-axis QuantizeLinear/DequantizeLinear need 13).
pub const OPSET: i64 = 13;
/// The opset of files with 4-bit weights or activations (INT4/UINT4 need 21).
pub const OPSET_4BIT: i64 = 21;
/// The IR version of those files (the first to define INT4/UINT4).
pub const IR_VERSION_4BIT: i64 = 10;
/// Graph input name.
pub const INPUT: &str = "input";
/// Graph output name.
pub const OUTPUT: &str = "logits";

/// Which consumer the file is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OnnxTarget {
    /// ONNX Runtime's `quantize_static` QDQ form (ONNX Runtime, OpenVINO, tract).
    Qdq,
    /// TensorRT's parser: zero points of 0 (i8-symmetric activations), float biases.
    Tensorrt,
}

/// An exported model and what a user should know about it.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The ONNX model.
    pub model: ModelProto,
    /// Facts about the export (target compatibility, layers left in f32).
    pub notes: Vec<String>,
}

fn refuse(reason: String) -> Error {
    Error::invalid("onnx export", reason)
}

/// Converts `model` into ONNX for `target`; methods ONNX cannot express faithfully are
/// refused with the reason, never written wrongly.
pub fn to_onnx(model: &QuantModel, target: OnnxTarget) -> Result<Exported> {
    let name = model.scheme.name();
    let act = model.scheme.act_dtype;
    match model.scheme.method {
        MethodKind::F32 | MethodKind::Naive | MethodKind::Static | MethodKind::Qat => {}
        MethodKind::NaiveFixed => {
            return Err(refuse(
                "naive-fixed saturates its uncalibrated 2^-7 activations at -127..127 in \
                 almost every layer, and ONNX QuantizeLinear saturates int8 at -128: the file \
                 would compute a different model. Export a static (calibrated) model instead"
                    .into(),
            ));
        }
        MethodKind::Dynamic => {
            return Err(refuse(
                "dynamic int8 (activations quantized per batch) is not exported: its ONNX \
                 form (DynamicQuantizeLinear + MatMulInteger/ConvInteger) is not written yet. \
                 Export the static method, or the f32 model for ONNX Runtime's \
                 quantize_dynamic"
                    .into(),
            ));
        }
    }
    // ONNX quantizes activations to 8 bits (uint8/int8) or, from opset 21, to 4 (uint4/int4).
    // Other widths have no type whose QuantizeLinear saturates where this model's range
    // ends, and a symmetric 4-bit range is -7..=7 where int4 saturates at -8.
    let widths = model.scheme.widths;
    for (what, bits) in [
        ("activation", widths.acts),
        ("input and logit", widths.edges),
    ] {
        let ok = bits == 8 || (bits == 4 && act != Some(ActDtype::I8Symmetric));
        if !ok {
            return Err(refuse(format!(
                "{}: {bits}-bit {what}s{} cannot be written: ONNX QuantizeLinear quantizes to 8 \
                 bits, or to 4 (opset 21, uint4) for affine activations, and saturates at those \
                 types' bounds, not at this model's {bits}-bit range. Export an 8-bit or a \
                 W*A4 affine model",
                widths.tag(),
                if act == Some(ActDtype::I8Symmetric) {
                    " (symmetric)"
                } else {
                    ""
                }
            )));
        }
    }
    let four_bit = widths.acts == 4 || widths.edges == 4 || widths.weights <= 4;
    if target == OnnxTarget::Tensorrt
        && model.scheme.method.is_static()
        && act != Some(ActDtype::I8Symmetric)
    {
        return Err(refuse(
            "TensorRT takes only zero points of 0; this model has u8-affine activations. \
             Quantize with --act-dtype i8-symmetric, then export with --target tensorrt"
                .into(),
        ));
    }
    let mut notes = Vec::new();
    let mut b = Builder {
        g: GraphBuilder::new(format!("quantlab-{name}")),
        act,
        target,
        n: 0,
        wbits: widths.weights,
    };
    let mut dims = vec![crate::Dim::batch()];
    dims.extend(
        model
            .network
            .input_shape
            .iter()
            .map(|&d| crate::Dim::Fixed(d as i64)),
    );
    b.g.input(INPUT, crate::proto::DataType::Float, &dims);
    let mut cur = INPUT.to_string();
    // The parameters `cur` was last quantized with (None: plain float).
    let mut state: Option<QParams> = None;
    // Every point's tensor and state, for the Adds that read earlier points.
    let mut points = vec![(cur.clone(), state)];
    for (i, node) in model.network.nodes.iter().enumerate() {
        match (node, &model.layers[i]) {
            (Node::Dense(d), Some(LayerImpl::Static(l))) => {
                let x = b.ensure_q(&cur, state, l.in_q, i)?;
                let y = b.static_dense(i, d, l, &x)?;
                cur = b.qdq(&y, l.out_q, &format!("n{i}_out"))?;
                state = Some(l.out_q);
            }
            (Node::Dense(d), Some(LayerImpl::F32)) => {
                if model.scheme.method.is_static() {
                    notes.push(format!("node {i} ({}) stays f32", d.kind()));
                }
                cur = b.float_dense(i, d, &cur)?;
                state = None;
            }
            (Node::Dense(_), Some(LayerImpl::Dynamic(_))) => {
                return Err(refuse(format!(
                    "node {i} is dynamic int8, which is not exported (see the dynamic method)"
                )));
            }
            (Node::Dense(_), None) => {
                return Err(Error::invalid(format!("node {i}"), "has no implementation"));
            }
            (Node::MaxPool(p), _) => {
                let y = b.name(&format!("n{i}_pool"));
                b.g.node(
                    &y,
                    "MaxPool",
                    &[&cur],
                    &[&y],
                    &[
                        ("kernel_shape", ints(&p.kernel)),
                        ("strides", ints(&p.stride)),
                    ],
                );
                cur = b.requantize_after(&y, state, i)?;
            }
            (Node::AvgPool(p), _) => {
                let y = b.name(&format!("n{i}_avgpool"));
                b.g.node(
                    &y,
                    "AveragePool",
                    &[&cur],
                    &[&y],
                    &[
                        ("kernel_shape", ints(&p.kernel)),
                        ("strides", ints(&p.stride)),
                    ],
                );
                cur = b.requantize_after(&y, state, i)?;
            }
            (Node::Add { from, relu }, _) => {
                // As the engine: integer (quantized at the point after) when both inputs
                // are quantized and that point is calibrated, float otherwise.
                let (other, other_state) = points[*from].clone();
                let y = b.name(&format!("n{i}_add"));
                b.g.node(&y, "Add", &[&cur, &other], &[&y], &[]);
                let y = if *relu {
                    let r = b.name(&format!("n{i}_relu"));
                    b.g.node(&r, "Relu", &[&y], &[&r], &[]);
                    r
                } else {
                    y
                };
                (cur, state) = match (state, other_state, model.points[i + 1]) {
                    (Some(_), Some(_), Some(q)) => (b.qdq(&y, q, &format!("n{i}_out"))?, Some(q)),
                    _ => (y, None),
                };
            }
            (Node::Relu, _) => {
                let y = b.name(&format!("n{i}_relu"));
                b.g.node(&y, "Relu", &[&cur], &[&y], &[]);
                cur = b.requantize_after(&y, state, i)?;
            }
            (Node::Flatten, _) => {
                let y = b.name(&format!("n{i}_flatten"));
                b.g.node(&y, "Flatten", &[&cur], &[&y], &[("axis", Attr::Int(1))]);
                cur = b.requantize_after(&y, state, i)?;
            }
        }
        points.push((cur.clone(), state));
    }
    let classes = model.network.out_len() as i64;
    b.g.node("output", "Identity", &[&cur], &[OUTPUT], &[]);
    b.g.batched_output(OUTPUT, &[classes]);
    let mut onnx =
        b.g.finish(if four_bit { OPSET_4BIT } else { OPSET }, "quantlab");
    if four_bit {
        // INT4/UINT4 tensors arrived with IR version 10 (opset 21).
        onnx.ir_version = Some(IR_VERSION_4BIT);
    }
    onnx.producer_version = Some(env!("CARGO_PKG_VERSION").into());
    onnx.doc_string = Some(format!("quantlab {name} ({target:?})"));
    crate::check(&onnx)?;
    if four_bit {
        notes.push(
            "4-bit parts (INT4/UINT4, opset 21): ONNX Runtime runs this file (tested with 1.32); \
             tract and older runtimes do not read 4-bit tensors"
                .into(),
        );
    } else if model.scheme.method.is_static() && act == Some(ActDtype::U8Affine) {
        notes.push(
            "u8-affine activations: ONNX Runtime, OpenVINO and tract run this file; TensorRT \
             takes only zero points of 0 (quantize with --act-dtype i8-symmetric and export \
             with --target tensorrt)"
                .into(),
        );
    }
    Ok(Exported { model: onnx, notes })
}

fn ints(v: &[usize; 2]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

struct Builder {
    g: GraphBuilder,
    act: Option<ActDtype>,
    target: OnnxTarget,
    n: usize,
    /// Weight width of the model (4 or below: INT4 initializers).
    wbits: u8,
}

impl Builder {
    /// A fresh tensor name (names stay unique even if a stem repeats).
    fn name(&mut self, stem: &str) -> String {
        self.n += 1;
        format!("{stem}_{}", self.n)
    }

    /// Scale and zero point initializers of an activation point; int8 with zero point 0
    /// for i8-symmetric (stored by the engine as u8 around 128), else u8.
    fn act_params(&mut self, q: QParams, stem: &str) -> Result<(String, String)> {
        let (s, z) = (format!("{stem}_scale"), format!("{stem}_zp"));
        self.g.scalar(&s, q.scale);
        if self.act == Some(ActDtype::I8Symmetric) {
            self.g.scalar(&z, (q.zero_point - 128) as i8);
        } else if q.levels() == 16 {
            // A 4-bit affine point: uint4 zero point, so QuantizeLinear saturates at 0..=15.
            self.g
                .initializer_4bit(&z, &[], &[q.zero_point as i8], false)?;
        } else {
            let zp = u8::try_from(q.zero_point)
                .map_err(|_| refuse(format!("zero point {} is not a u8", q.zero_point)))?;
            self.g.scalar(&z, zp);
        }
        Ok((s, z))
    }

    /// `QuantizeLinear` -> `DequantizeLinear` of `x` at `q`; returns the float output.
    fn qdq(&mut self, x: &str, q: QParams, stem: &str) -> Result<String> {
        let (s, z) = self.act_params(q, stem)?;
        let (xq, xd) = (
            self.name(&format!("{stem}_q")),
            self.name(&format!("{stem}_dq")),
        );
        self.g
            .node(&xq, "QuantizeLinear", &[x, &s, &z], &[&xq], &[]);
        self.g
            .node(&xd, "DequantizeLinear", &[&xq, &s, &z], &[&xd], &[]);
        Ok(xd)
    }

    /// `x` quantized at `q`: as it is when it already is, else through a new Q/DQ pair.
    fn ensure_q(
        &mut self,
        x: &str,
        state: Option<QParams>,
        q: QParams,
        i: usize,
    ) -> Result<String> {
        if state == Some(q) {
            Ok(x.to_string())
        } else {
            self.qdq(x, q, &format!("n{i}_in"))
        }
    }

    /// After a node that keeps its input's parameters: the same Q/DQ again when quantized.
    fn requantize_after(&mut self, y: &str, state: Option<QParams>, i: usize) -> Result<String> {
        match state {
            Some(q) => self.qdq(y, q, &format!("n{i}_keep")),
            None => Ok(y.to_string()),
        }
    }

    /// Weight dims in ONNX layout: `[n, k]` (Gemm with transB), `[n, c, kh, kw]`, or
    /// `[c, 1, kh, kw]` for a depthwise convolution (`group` = c).
    fn weight_dims(d: &Dense) -> Vec<i64> {
        match &d.conv {
            None => vec![d.n as i64, d.k as i64],
            Some(g) => vec![
                d.n as i64,
                if d.depthwise { 1 } else { g.in_channels as i64 },
                g.kernel[0] as i64,
                g.kernel[1] as i64,
            ],
        }
    }

    /// The Gemm or Conv node with its ReLU; returns the float output name.
    fn op(&mut self, i: usize, d: &Dense, x: &str, w: &str, bias: &str) -> String {
        let y = self.name(&format!(
            "n{i}_{}",
            if d.conv.is_some() { "conv" } else { "gemm" }
        ));
        match &d.conv {
            None => {
                self.g.node(
                    &y,
                    "Gemm",
                    &[x, w, bias],
                    &[&y],
                    &[("transB", Attr::Int(1))],
                );
            }
            Some(g) => {
                let (p, s) = (g.padding, g.stride);
                let mut attrs = vec![
                    ("kernel_shape", ints(&g.kernel)),
                    ("strides", ints(&s)),
                    (
                        "pads",
                        Attr::Ints(vec![p[0] as i64, p[1] as i64, p[0] as i64, p[1] as i64]),
                    ),
                ];
                if d.depthwise {
                    attrs.push(("group", Attr::Int(d.n as i64)));
                }
                self.g.node(&y, "Conv", &[x, w, bias], &[&y], &attrs);
            }
        }
        if !d.relu {
            return y;
        }
        let r = self.name(&format!("n{i}_relu"));
        match d.cap {
            None => {
                self.g.node(&r, "Relu", &[&y], &[&r], &[]);
            }
            Some(c) => {
                // ReLU6 as PyTorch exports it: Clip with its bounds as inputs (opset >= 11).
                let (lo, hi) = (format!("n{i}_clip_min"), format!("n{i}_clip_max"));
                self.g.scalar(&lo, 0f32);
                self.g.scalar(&hi, c);
                self.g.node(&r, "Clip", &[&y, &lo, &hi], &[&r], &[]);
            }
        }
        r
    }

    fn float_dense(&mut self, i: usize, d: &Dense, x: &str) -> Result<String> {
        let (w, b) = (format!("n{i}_weight"), format!("n{i}_bias"));
        self.g.initializer(&w, &Self::weight_dims(d), &d.weight)?;
        self.g.initializer(&b, &[d.n as i64], &d.bias)?;
        Ok(self.op(i, d, x, &w, &b))
    }

    fn static_dense(&mut self, i: usize, d: &Dense, l: &StaticLayer, x: &str) -> Result<String> {
        let per_channel = l.w_scales.len() > 1;
        let n = d.n as i64;
        let sdims: &[i64] = if per_channel { &[n] } else { &[] };
        let axis: &[(&str, Attr)] = if per_channel {
            &[("axis", Attr::Int(0))]
        } else {
            &[]
        };
        // Weights: int8 -> DequantizeLinear.
        let (wq, ws, wz, w) = (
            format!("n{i}_weight_q"),
            format!("n{i}_weight_scale"),
            format!("n{i}_weight_zp"),
            format!("n{i}_weight"),
        );
        let amax = l.w.w.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        if self.wbits <= 4 && amax <= 7 {
            // 4-bit weights (and 2-, 3-bit ones, whose values int4 holds exactly).
            self.g
                .initializer_4bit(&wq, &Self::weight_dims(d), &l.w.w, true)?;
            self.g
                .initializer_4bit(&wz, sdims, &vec![0i8; l.w_scales.len()], true)?;
        } else {
            self.g.initializer(&wq, &Self::weight_dims(d), &l.w.w)?;
            self.g
                .initializer(&wz, sdims, &vec![0i8; l.w_scales.len()])?;
        }
        self.g.initializer(&ws, sdims, &l.w_scales)?;
        self.g
            .node(&w, "DequantizeLinear", &[&wq, &ws, &wz], &[&w], axis);
        // Bias: int32 at s_in * s_w (QDQ), or its float value (TensorRT).
        let bias_scale: Vec<f32> = l
            .w_scales
            .iter()
            .map(|&sw| (l.in_q.scale as f64 * sw as f64) as f32)
            .collect();
        let b = format!("n{i}_bias");
        if self.target == OnnxTarget::Tensorrt {
            let real: Vec<f32> = l
                .bias
                .iter()
                .enumerate()
                .map(|(c, &q)| q as f32 * bias_scale[if per_channel { c } else { 0 }])
                .collect();
            self.g.initializer(&b, &[n], &real)?;
        } else {
            let (bq, bs, bz) = (
                format!("n{i}_bias_q"),
                format!("n{i}_bias_scale"),
                format!("n{i}_bias_zp"),
            );
            self.g.initializer(&bq, &[n], &l.bias)?;
            self.g.initializer(&bs, sdims, &bias_scale)?;
            self.g
                .initializer(&bz, sdims, &vec![0i32; bias_scale.len()])?;
            self.g.node(
                &b,
                "DequantizeLinear",
                &[&bq, &bs, &bz],
                &[&b],
                &[("axis", Attr::Int(0))],
            );
        }
        Ok(self.op(i, d, x, &w, &b))
    }
}
