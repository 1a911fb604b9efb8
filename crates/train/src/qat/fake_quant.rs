//! Fake quantization from float ops, with gradients that pass the rounding.
//!
//! burn 0.22 has no straight-through estimator: its autodiff `quantize` detaches, and
//! `round` has a zero gradient. Both tricks here are the ones LSQ and PyTorch's
//! `FakeQuantize` rely on, written as "value of one expression, gradient of another":
//!
//! - [`round_ste`]: `x + (round(x) - x).detach()` is `round(x)` forwards and the identity
//!   backwards.
//! - [`grad_scale`]: `s * g + (s - s * g).detach()` is `s` forwards and scales the gradient
//!   reaching `s` by `g` (LSQ's `1 / sqrt(N * Qp)`, which keeps the step size's update in
//!   proportion to the weights' updates).
//!
//! `clamp` passes the gradient inside the range and blocks it outside, as PyTorch's
//! fake quantization does (the clipped values' gradient reaches the scale only, through
//! the multiplication that follows).

use burn::tensor::Tensor;

/// `round(x)` forwards, identity backwards.
pub fn round_ste<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let r = x.clone().round();
    x.clone() + (r - x).detach()
}

/// `s` forwards; the gradient reaching `s` is multiplied by `g`.
pub fn grad_scale<const D: usize>(s: Tensor<D>, g: f32) -> Tensor<D> {
    let sg = s.clone().mul_scalar(g);
    sg.clone() + (s - sg).detach()
}

/// Symmetric weights on the grid `s * (-qmax..=qmax)`, one step per output row:
/// `w` is `[n, k]`, `s` is `[n]` (already gradient-scaled by the caller).
pub fn fake_quant_weight(w: Tensor<2>, s: Tensor<1>, qmax: i32) -> Tensor<2> {
    let [n] = s.dims();
    let s = s.reshape([n, 1]);
    let q = round_ste(w.div(s.clone()).clamp(-qmax as f32, qmax as f32));
    q.mul(s)
}

/// Affine activations with a fixed scale and zero point (moving-average or calibrated
/// ranges): `(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale`, the engine's
/// quantize-dequantize (its rounding is half to even, as burn's `round`).
pub fn fake_quant_fixed<const D: usize>(
    x: Tensor<D>,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    // `round(x / s) + z` clamped to `qmin..=qmax`, minus `z`, is `round(x / s)` clamped to
    // `qmin - z..=qmax - z` (z is an integer): two ops fewer per point and step. `x * (1/s)`
    // is how the engine's quantizer computes it.
    let z = zero_point as f32;
    round_ste(x.mul_scalar(1.0 / scale))
        .clamp(qmin as f32 - z, qmax as f32 - z)
        .mul_scalar(scale)
}

/// Affine activations with a learned step `s` (`[1]`, gradient-scaled by the caller) and a
/// fixed zero point: LSQ on activations.
pub fn fake_quant_learned<const D: usize>(
    x: Tensor<D>,
    s: Tensor<1>,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    let z = zero_point as f32;
    let s = s.unsqueeze::<D>();
    round_ste(x.div(s.clone()))
        .clamp(qmin as f32 - z, qmax as f32 - z)
        .mul(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn rounding_passes_the_gradient_and_clipping_blocks_it() {
        let dev = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(vec![0.26f32, 1.4, 9.0, -9.0], [4]), &dev)
            .require_grad();
        // scale 0.5, zero point 2, levels 0..=7: real range [-1, 2.5].
        let y = fake_quant_fixed(x.clone(), 0.5, 2, 0, 7);
        assert_eq!(host(y.clone()), vec![0.5, 1.5, 2.5, -1.0]);
        let g = y.sum().backward();
        let gx = host(x.grad(&g).unwrap());
        assert_eq!(gx, vec![1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn weight_step_gets_the_scaled_gradient() {
        let dev = Device::flex().autodiff();
        let w = Tensor::<2>::from_data(TensorData::new(vec![0.2f32, -0.7, 0.1, 2.0], [2, 2]), &dev)
            .require_grad();
        let s =
            Tensor::<1>::from_data(TensorData::new(vec![0.25f32, 0.5], [2]), &dev).require_grad();
        let q = fake_quant_weight(w.clone(), grad_scale(s.clone(), 0.5), 1);
        // Row 0 at 0.25 with levels -1..=1: 0.2 -> 0.25, -0.7 -> -0.25 (clipped).
        // Row 1 at 0.5: 0.1 -> 0, 2.0 -> 0.5 (clipped).
        assert_eq!(host(q.clone()), vec![0.25, -0.25, 0.0, 0.5]);
        let g = q.sum().backward();
        assert_eq!(host(w.grad(&g).unwrap()), vec![1.0, 0.0, 1.0, 0.0]);
        // d/ds of s * clamp(round(w/s)) with STE: (round(w/s) - w/s) inside, the clamp level
        // outside; times g = 0.5. Row 0: (1 - 0.8) + (-1) = -0.8; row 1: (0 - 0.2) + 1 = 0.8.
        let gs = host(s.grad(&g).unwrap());
        assert!((gs[0] - (-0.8 * 0.5)).abs() < 1e-5, "{gs:?}");
        assert!((gs[1] - 0.8 * 0.5).abs() < 1e-5, "{gs:?}");
    }
}
