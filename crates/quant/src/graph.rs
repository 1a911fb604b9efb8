//! The graph every model becomes: a list of plain ops with their float weights, in PyTorch
//! layout (`Linear` weights `[out, in]`, `Conv2d` weights `[out, in, kh, kw]`, activations
//! NCHW). The burn models describe themselves in it (`quantlab-models`), and everything
//! after (network, calibration, quantization, engine, export) reads only this, never burn.
//!
//! [`Graph::forward_reference`] is a deliberately naive f32 interpreter: it is the
//! definition of what the graph computes, checked against burn's forward pass.

use quantlab_linalg::{ConvGeom, PoolGeom};

use crate::error::{QuantError, Result};

/// One operation of a classifier.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `y = x W^T + b`.
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// `[out, in]` row-major.
        weight: Vec<f32>,
        /// `[out]`.
        bias: Vec<f32>,
    },
    /// 2-D convolution, NCHW, zero padding, no dilation, one group.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
        /// Symmetric zero padding `[ph, pw]`.
        padding: [usize; 2],
        /// `[out, in, kh, kw]` row-major.
        weight: Vec<f32>,
        /// `[out]`.
        bias: Vec<f32>,
    },
    /// Depthwise 2-D convolution (ONNX's `Conv` with `group` = channels, one output per
    /// channel): each channel convolved with its own kernel. NCHW, zero padding, no dilation.
    DepthwiseConv2d {
        /// Channels (in and out).
        channels: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
        /// Symmetric zero padding `[ph, pw]`.
        padding: [usize; 2],
        /// `[c, kh, kw]` row-major (PyTorch's `[c, 1, kh, kw]`).
        weight: Vec<f32>,
        /// `[c]`.
        bias: Vec<f32>,
    },
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`: ONNX's `Clip`, PyTorch's `ReLU6` (0, 6) and `Hardtanh`. The
    /// engines run it fused after a dense layer with `min = 0` (a capped ReLU).
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// Max pooling, no padding.
    MaxPool2d {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
    },
    /// Average pooling, no padding: ONNX's `AveragePool` without pads, and its
    /// `GlobalAveragePool` as the window of the whole map.
    AvgPool2d {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
    },
    /// `x + a`, where `a` is the activation at the earlier point `from`: a residual block's
    /// identity shortcut. Points are numbered as in [`Graph::shapes`] (0 the input, `i + 1`
    /// the output of op `i`); point `from` must have this op's input shape. A graph of ops
    /// with such skips is what a chain of residual blocks is; a shortcut with layers of its
    /// own (a projection) is not.
    Add {
        /// The point added to the current activation.
        from: usize,
    },
    /// `[c, h, w]` -> `[c*h*w]` (a no-op on the flat buffer, kept for shape bookkeeping).
    Flatten,
}

impl Op {
    /// Short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::DepthwiseConv2d { .. } => "dwconv2d",
            Op::Relu => "relu",
            Op::Clip { .. } => "clip",
            Op::MaxPool2d { .. } => "maxpool2d",
            Op::AvgPool2d { .. } => "avgpool2d",
            Op::Add { .. } => "add",
            Op::Flatten => "flatten",
        }
    }

    /// Number of weights and biases.
    pub fn params(&self) -> usize {
        match self {
            Op::Linear { weight, bias, .. }
            | Op::Conv2d { weight, bias, .. }
            | Op::DepthwiseConv2d { weight, bias, .. } => weight.len() + bias.len(),
            _ => 0,
        }
    }

    /// A convolution's geometry on a per-sample input `shape` (`[c, h, w]`); `None` for
    /// another op, another rank, or a kernel that does not fit.
    pub fn conv_geom(&self, shape: &[usize]) -> Option<ConvGeom> {
        match (self, shape) {
            (
                Op::Conv2d {
                    in_channels,
                    kernel,
                    stride,
                    padding,
                    ..
                },
                &[_, h, w],
            ) => ConvGeom::new(*in_channels, [h, w], *kernel, *stride, *padding),
            (
                Op::DepthwiseConv2d {
                    channels,
                    kernel,
                    stride,
                    padding,
                    ..
                },
                &[_, h, w],
            ) => ConvGeom::new(*channels, [h, w], *kernel, *stride, *padding),
            _ => None,
        }
    }

    /// A max or average pool's geometry on a per-sample input `shape` (`[c, h, w]`); `None`
    /// for another op, another rank, or a window that does not fit.
    pub fn pool_geom(&self, shape: &[usize]) -> Option<PoolGeom> {
        match (self, shape) {
            (Op::MaxPool2d { kernel, stride } | Op::AvgPool2d { kernel, stride }, &[c, h, w]) => {
                PoolGeom::new(c, [h, w], *kernel, *stride)
            }
            _ => None,
        }
    }

    /// Shape of this op's output for a per-sample input `shape`, or an error if they do not fit.
    pub fn output_shape(&self, index: usize, shape: &[usize]) -> Result<Vec<usize>> {
        let bad = |expected: String| QuantError::GraphShape {
            index,
            op: self.kind(),
            expected,
            found: shape.to_vec(),
        };
        match self {
            Op::Linear {
                in_features,
                out_features,
                weight,
                bias,
            } => {
                if shape != [*in_features] {
                    return Err(bad(format!("[{in_features}]")));
                }
                if weight.len() != in_features * out_features || bias.len() != *out_features {
                    return Err(bad("weights matching in/out features".into()));
                }
                Ok(vec![*out_features])
            }
            Op::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                weight,
                bias,
                ..
            } => {
                if shape.len() != 3 || shape[0] != *in_channels {
                    return Err(bad(format!("[{in_channels}, h, w]")));
                }
                if weight.len() != out_channels * in_channels * kernel[0] * kernel[1]
                    || bias.len() != *out_channels
                    || stride.contains(&0)
                {
                    return Err(bad("weights matching channels and kernel".into()));
                }
                match self.conv_geom(shape) {
                    Some(g) => Ok(vec![*out_channels, g.out_hw[0], g.out_hw[1]]),
                    None => Err(bad(format!("an image at least {kernel:?} after padding"))),
                }
            }
            Op::DepthwiseConv2d {
                channels,
                kernel,
                stride,
                weight,
                bias,
                ..
            } => {
                if shape.len() != 3 || shape[0] != *channels {
                    return Err(bad(format!("[{channels}, h, w]")));
                }
                if weight.len() != channels * kernel[0] * kernel[1]
                    || bias.len() != *channels
                    || stride.contains(&0)
                {
                    return Err(bad("weights matching channels and kernel".into()));
                }
                match self.conv_geom(shape) {
                    Some(g) => Ok(vec![*channels, g.out_hw[0], g.out_hw[1]]),
                    None => Err(bad(format!("an image at least {kernel:?} after padding"))),
                }
            }
            Op::MaxPool2d { kernel, .. } | Op::AvgPool2d { kernel, .. } => {
                match self.pool_geom(shape) {
                    Some(g) => Ok(vec![shape[0], g.out_hw[0], g.out_hw[1]]),
                    None => Err(bad(format!("[c, h, w] with h, w >= {kernel:?}"))),
                }
            }
            Op::Relu | Op::Add { .. } => Ok(shape.to_vec()),
            Op::Clip { min, max } => {
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(bad(format!("bounds min <= max (got {min}, {max})")));
                }
                Ok(shape.to_vec())
            }
            Op::Flatten => Ok(vec![shape.iter().product()]),
        }
    }
}

/// A classifier as plain ops.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Per-sample input shape (`[c, h, w]` or `[features]`).
    pub input_shape: Vec<usize>,
    /// Ops in execution order.
    pub ops: Vec<Op>,
}

impl Graph {
    /// Per-sample shape after every op (`shapes[0]` is the input), validating the graph.
    /// An [`Op::Add`] must name an earlier point of its input's shape.
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        let mut shapes = vec![self.input_shape.clone()];
        for (i, op) in self.ops.iter().enumerate() {
            let sin = shapes.last().expect("non-empty");
            if let Op::Add { from } = op
                && shapes.get(*from).is_none_or(|s| s != sin)
            {
                return Err(QuantError::GraphShape {
                    index: i,
                    op: op.kind(),
                    expected: format!("an earlier point of shape {sin:?} to add"),
                    found: shapes.get(*from).cloned().unwrap_or_default(),
                });
            }
            let next = op.output_shape(i, sin)?;
            shapes.push(next);
        }
        Ok(shapes)
    }

    /// Number of classes (size of the last output).
    pub fn num_outputs(&self) -> Result<usize> {
        Ok(self.shapes()?.last().map_or(0, |s| s.iter().product()))
    }

    /// Total weights and biases.
    pub fn params(&self) -> usize {
        self.ops.iter().map(Op::params).sum()
    }

    /// Naive f32 forward pass of `batch` samples (flat input). The reference semantics.
    pub fn forward_reference(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let shapes = self.shapes()?;
        let in_len: usize = self.input_shape.iter().product();
        if input.len() != batch * in_len {
            return Err(QuantError::InputSize {
                expected: batch * in_len,
                found: input.len(),
                batch,
            });
        }
        // Every point is kept: an Add reads an earlier one.
        let mut points = vec![input.to_vec()];
        for (op, (sin, sout)) in self.ops.iter().zip(shapes.iter().zip(&shapes[1..])) {
            let x = points.last().expect("non-empty");
            let y = match op {
                Op::Add { from } => x.iter().zip(&points[*from]).map(|(a, b)| a + b).collect(),
                _ => apply_reference(op, x, batch, sin, sout),
            };
            points.push(y);
        }
        Ok(points.pop().expect("non-empty"))
    }
}

/// One op, naive loops, `f64` accumulation (so it is a stricter reference than burn's f32).
/// An [`Op::Add`] needs the point it reads: [`Graph::forward_reference`] runs it; here it
/// returns its input unchanged.
pub fn apply_reference(
    op: &Op,
    x: &[f32],
    batch: usize,
    sin: &[usize],
    sout: &[usize],
) -> Vec<f32> {
    let in_len: usize = sin.iter().product();
    let out_len: usize = sout.iter().product();
    let mut y = vec![0f32; batch * out_len];
    match op {
        Op::Linear {
            in_features,
            out_features,
            weight,
            bias,
        } => {
            for b in 0..batch {
                let xr = &x[b * in_len..(b + 1) * in_len];
                for o in 0..*out_features {
                    let w = &weight[o * in_features..(o + 1) * in_features];
                    let acc: f64 = xr.iter().zip(w).map(|(&a, &c)| a as f64 * c as f64).sum();
                    y[b * out_len + o] = (acc + bias[o] as f64) as f32;
                }
            }
        }
        Op::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            weight,
            bias,
        } => {
            let (h, w) = (sin[1] as isize, sin[2] as isize);
            let (oh, ow) = (sout[1], sout[2]);
            for b in 0..batch {
                let xb = &x[b * in_len..(b + 1) * in_len];
                for oc in 0..*out_channels {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = bias[oc] as f64;
                            for ic in 0..*in_channels {
                                for ky in 0..kernel[0] {
                                    for kx in 0..kernel[1] {
                                        let iy =
                                            (oy * stride[0] + ky) as isize - padding[0] as isize;
                                        let ix =
                                            (ox * stride[1] + kx) as isize - padding[1] as isize;
                                        if iy < 0 || ix < 0 || iy >= h || ix >= w {
                                            continue;
                                        }
                                        let xv = xb[(ic * h as usize + iy as usize) * w as usize
                                            + ix as usize];
                                        let wv = weight[((oc * in_channels + ic) * kernel[0] + ky)
                                            * kernel[1]
                                            + kx];
                                        acc += xv as f64 * wv as f64;
                                    }
                                }
                            }
                            y[b * out_len + (oc * oh + oy) * ow + ox] = acc as f32;
                        }
                    }
                }
            }
        }
        Op::DepthwiseConv2d {
            channels,
            kernel,
            stride,
            padding,
            weight,
            bias,
        } => {
            let (h, w) = (sin[1] as isize, sin[2] as isize);
            let (oh, ow) = (sout[1], sout[2]);
            let taps = kernel[0] * kernel[1];
            for b in 0..batch {
                let xb = &x[b * in_len..(b + 1) * in_len];
                for c in 0..*channels {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = bias[c] as f64;
                            for ky in 0..kernel[0] {
                                for kx in 0..kernel[1] {
                                    let iy = (oy * stride[0] + ky) as isize - padding[0] as isize;
                                    let ix = (ox * stride[1] + kx) as isize - padding[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= h || ix >= w {
                                        continue;
                                    }
                                    let xv = xb
                                        [(c * h as usize + iy as usize) * w as usize + ix as usize];
                                    acc +=
                                        xv as f64 * weight[c * taps + ky * kernel[1] + kx] as f64;
                                }
                            }
                            y[b * out_len + (c * oh + oy) * ow + ox] = acc as f32;
                        }
                    }
                }
            }
        }
        Op::MaxPool2d { kernel, stride } => {
            let (c, h, w) = (sin[0], sin[1], sin[2]);
            let (oh, ow) = (sout[1], sout[2]);
            for b in 0..batch {
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut m = f32::NEG_INFINITY;
                            for ky in 0..kernel[0] {
                                for kx in 0..kernel[1] {
                                    let v = x[b * in_len
                                        + (ch * h + oy * stride[0] + ky) * w
                                        + ox * stride[1]
                                        + kx];
                                    m = m.max(v);
                                }
                            }
                            y[b * out_len + (ch * oh + oy) * ow + ox] = m;
                        }
                    }
                }
            }
        }
        Op::AvgPool2d { kernel, stride } => {
            let (c, h, w) = (sin[0], sin[1], sin[2]);
            let (oh, ow) = (sout[1], sout[2]);
            let n = (kernel[0] * kernel[1]) as f64;
            for b in 0..batch {
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = 0f64;
                            for ky in 0..kernel[0] {
                                for kx in 0..kernel[1] {
                                    acc += x[b * in_len
                                        + (ch * h + oy * stride[0] + ky) * w
                                        + ox * stride[1]
                                        + kx] as f64;
                                }
                            }
                            y[b * out_len + (ch * oh + oy) * ow + ox] = (acc / n) as f32;
                        }
                    }
                }
            }
        }
        Op::Relu => y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.max(0.0)),
        Op::Clip { min, max } => y
            .iter_mut()
            .zip(x)
            .for_each(|(o, &v)| *o = v.max(*min).min(*max)),
        Op::Flatten | Op::Add { .. } => y.copy_from_slice(x),
    }
    y
}

/// `[rows, cols]` row-major values as `[cols, rows]`: between PyTorch's `[out, in]` weight
/// layout and the `[in, out]` one of burn's linear layers and ONNX's `MatMul`.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for (r, row) in v.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_pool_shapes_and_values() {
        // 1 channel 3x3 image, 2x2 all-ones kernel, padding 0: sums of 2x2 windows.
        let g = Graph {
            input_shape: vec![1, 3, 3],
            ops: vec![
                Op::Conv2d {
                    in_channels: 1,
                    out_channels: 1,
                    kernel: [2, 2],
                    stride: [1, 1],
                    padding: [0, 0],
                    weight: vec![1.0; 4],
                    bias: vec![0.5],
                },
                Op::MaxPool2d {
                    kernel: [2, 2],
                    stride: [2, 2],
                },
                Op::Flatten,
            ],
        };
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        assert_eq!(g.shapes().unwrap().last().unwrap(), &vec![1]);
        // windows: 1+2+4+5=12, 2+3+5+6=16, 4+5+7+8=24, 5+6+8+9=28; max 28 + 0.5.
        assert_eq!(g.forward_reference(&x, 1).unwrap(), vec![28.5]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let g = Graph {
            input_shape: vec![4],
            ops: vec![Op::Linear {
                in_features: 3,
                out_features: 1,
                weight: vec![0.0; 3],
                bias: vec![0.0],
            }],
        };
        assert!(matches!(
            g.shapes(),
            Err(QuantError::GraphShape { index: 0, .. })
        ));
        let g = Graph {
            input_shape: vec![1, 2, 2],
            ops: vec![Op::MaxPool2d {
                kernel: [3, 3],
                stride: [1, 1],
            }],
        };
        assert!(g.shapes().is_err());
        let ok = Graph {
            input_shape: vec![2],
            ops: vec![Op::Relu],
        };
        assert!(matches!(
            ok.forward_reference(&[1.0], 1),
            Err(QuantError::InputSize { .. })
        ));
    }

    #[test]
    fn transpose_round_trips() {
        let v: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let t = transpose(&v, 2, 3);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, 3, 2), v);
    }
}
