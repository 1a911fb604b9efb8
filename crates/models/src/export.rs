//! Reading burn layers back into graph ops (weights copied to the host, PyTorch layout).

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use quantlab_quant::graph::Op;

fn host<const D: usize>(name: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ModelError::Readback {
            name: name.to_string(),
            reason: format!("{e:?}"),
        })
}

/// `Linear` -> `Op::Linear` (transposes burn's `[in, out]` to `[out, in]`).
pub fn linear_op(name: &str, l: &Linear) -> Result<Op> {
    let w = l.weight.val();
    let [d_in, d_out] = w.dims();
    let weight = host(name, w.transpose())?;
    let bias = match &l.bias {
        Some(b) => host(name, b.val())?,
        None => vec![0.0; d_out],
    };
    Ok(Op::Linear {
        in_features: d_in,
        out_features: d_out,
        weight,
        bias,
    })
}

/// `Conv2d` -> `Op::Conv2d` (symmetric explicit or valid padding only).
pub fn conv_op(name: &str, c: &Conv2d) -> Result<Op> {
    let w = c.weight.val();
    let [c_out, c_in, kh, kw] = w.dims();
    let padding = match c.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => [t, l],
        ref other => {
            return Err(ModelError::Unsupported {
                model: "conv2d",
                shape: vec![c_in, kh, kw],
                reason: format!("padding {other:?} is not symmetric"),
            });
        }
    };
    let bias = match &c.bias {
        Some(b) => host(name, b.val())?,
        None => vec![0.0; c_out],
    };
    Ok(Op::Conv2d {
        in_channels: c_in,
        out_channels: c_out,
        kernel: [kh, kw],
        stride: c.stride,
        padding,
        weight: host(name, w)?,
        bias,
    })
}
