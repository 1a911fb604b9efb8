//! Seeded parameter creation on the host. burn's own initialisers draw from the backend's
//! generator, which differs between flex, ndarray and wgpu; drawing here instead makes "same
//! seed, same weights" hold on every backend, so CPU and GPU training can be compared.
//! Bounds follow PyTorch's defaults: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use quantlab_data::rng::Rng;

fn uniform<const D: usize>(
    rng: &mut Rng,
    shape: [usize; D],
    bound: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), device))
}

/// A `Linear` layer `d_in -> d_out` (burn layout: weight `[d_in, d_out]`).
pub fn linear(rng: &mut Rng, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    Linear {
        weight: uniform(rng, [d_in, d_out], bound, device),
        bias: Some(uniform(rng, [d_out], bound, device)),
    }
}

/// A square-kernel `Conv2d` with stride 1 and symmetric zero padding `pad`.
pub fn conv2d(
    rng: &mut Rng,
    c_in: usize,
    c_out: usize,
    k: usize,
    pad: usize,
    device: &Device,
) -> Conv2d {
    let bound = 1.0 / ((c_in * k * k) as f64).sqrt();
    Conv2d {
        weight: uniform(rng, [c_out, c_in, k, k], bound, device),
        bias: Some(uniform(rng, [c_out], bound, device)),
        stride: [1, 1],
        kernel_size: [k, k],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
    }
}
