//! Fake quantization from float ops, with gradients that pass the rounding.
//!
//! burn 0.22 has no straight-through estimator: its autodiff `quantize` detaches, and
//! `round` has a zero gradient. The functions here give the gradients LSQ and PyTorch's
//! `FakeQuantize` use, written as "value of one expression, gradient of another":
//!
//! - the input's gradient passes where the rounded value lies inside the grid's range and
//!   is blocked outside it (PyTorch's mask);
//! - a learned step `s` receives `round(x/s) - x/s` inside the range and the clamp level
//!   outside it (LSQ), summed over the elements that share it.
//!
//! The grid, the mask and those coefficients are computed on tensors without autodiff
//! (`without_autodiff`): burn's autodiff has no clamp of its own and builds one from
//! comparisons and masked fills, forwards and backwards, which on a small network cost
//! more than its matrix products. What the graph records is then a product with a constant
//! mask (and one with the constant coefficients for a learned step) and additions, whose
//! backward passes are one multiplication each. A last constant term makes the forward
//! value exactly `s * clamp(round(x/s))`, the integer model's dequantized value.

use burn::tensor::Tensor;

/// `s` forwards; the gradient reaching `s` is multiplied by `g` (LSQ's `1 / sqrt(N * Qp)`,
/// which keeps the step size's update in proportion to the weights' updates).
pub fn grad_scale<const D: usize>(s: Tensor<D>, g: f32) -> Tensor<D> {
    let sd = s.clone().detach();
    s.mul_scalar(g) + (sd.clone() - sd.mul_scalar(g))
}

/// The levels `clamp(round(v), lo, hi)` of `v` (no autodiff) and the mask of the elements
/// whose rounded value was inside `lo..=hi`, as 0/1.
fn levels<const D: usize>(v: Tensor<D>, lo: f32, hi: f32) -> (Tensor<D>, Tensor<D>) {
    let r0 = v.round();
    let r = r0.clone().clamp(lo, hi);
    let inside = r.clone().equal(r0).float();
    (r, inside)
}

/// Symmetric weights on the grid `s * (-qmax..=qmax)`, one step per output channel: `s`
/// is `[n, 1]` for `[n, k]` weights (a convolution's) or `[1, n]` for `[k, n]` weights (a
/// linear layer's, burn's layout), already gradient-scaled by the caller.
pub fn fake_quant_weight(w: Tensor<2>, s: Tensor<2>, qmax: i32) -> Tensor<2> {
    fake_quant_step(w, s, -qmax as f32, qmax as f32)
}

/// `s * clamp(round(x / s), lo, hi)` with a learned step `s` (broadcast against `x`):
/// identity gradient to `x` inside the range, LSQ's gradient to `s`.
pub fn fake_quant_step<const D: usize>(x: Tensor<D>, s: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    let (xc, sc) = (x.clone().without_autodiff(), s.clone().without_autodiff());
    let v = xc.clone().div(sc.clone());
    let (r, inside) = levels(v.clone(), lo, hi);
    // d/ds: r - v inside, r outside.
    let coef = r.clone() - inside.clone().mul(v);
    let approx = xc.mul(inside.clone()) + sc.clone().mul(coef.clone());
    let exact = sc.mul(r) - approx;
    x.mul(inside) + s.mul(coef) + exact
}

/// Affine activations with a fixed scale and zero point (moving-average or calibrated
/// ranges): `(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale`, the engine's
/// quantize-dequantize (`x * (1/scale)`, rounding half to even, as the engine's quantizer).
pub fn fake_quant_fixed<const D: usize>(
    x: Tensor<D>,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    // `round(x / s) + z` clamped to `qmin..=qmax`, minus `z`, is `round(x / s)` clamped to
    // `qmin - z..=qmax - z` (z is an integer).
    let z = zero_point as f32;
    let xc = x.clone().without_autodiff();
    let (r, inside) = levels(
        xc.clone().mul_scalar(1.0 / scale),
        qmin as f32 - z,
        qmax as f32 - z,
    );
    // `x * inside` is `xc * inside` to the bit, and within the range the dequantized value
    // is within half a step of it, so the sum below is exact.
    let pass = xc.mul(inside.clone());
    x.mul(inside) + (r.mul_scalar(scale) - pass)
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
    fake_quant_step(x, s.unsqueeze::<D>(), qmin as f32 - z, qmax as f32 - z)
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
        let q = fake_quant_weight(w.clone(), grad_scale(s.clone(), 0.5).reshape([2, 1]), 1);
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

    #[test]
    fn forward_values_are_the_integer_grid_to_the_bit() {
        // Values spread over and beyond the range, including exact half steps.
        let xs: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.0137).collect();
        let n = xs.len();
        let dev = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &dev).require_grad();
        let (scale, z) = (0.173f32, 3);
        let fixed = host(fake_quant_fixed(x.clone(), scale, z, 0, 15));
        let step = 0.311f32;
        let s = Tensor::<1>::from_data(TensorData::new(vec![step], [1]), &dev).require_grad();
        let learned = host(fake_quant_learned(x, s, 0, -7, 7));
        for (i, &v) in xs.iter().enumerate() {
            let q = ((v * (1.0 / scale)).round_ties_even() + z as f32).clamp(0.0, 15.0);
            assert_eq!(fixed[i], (q - z as f32) * scale, "fixed, x = {v}");
            let l = (v / step).round_ties_even().clamp(-7.0, 7.0);
            assert_eq!(learned[i], l * step, "learned, x = {v}");
        }
    }

    #[test]
    fn learned_activation_step_gets_lsq_gradient() {
        let dev = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(vec![0.3f32, 1.3, -0.2], [3]), &dev)
            .require_grad();
        let s = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &dev).require_grad();
        // Levels 0..=2 (zero point 0): 0.3 -> 1 (inside), 1.3 -> 2.6 rounds to 3, clipped to
        // 2; -0.2 -> -0.4 rounds to 0, inside.
        let y = fake_quant_learned(x.clone(), s.clone(), 0, 0, 2);
        assert_eq!(host(y.clone()), vec![0.5, 1.0, 0.0]);
        let g = y.sum().backward();
        assert_eq!(host(x.grad(&g).unwrap()), vec![1.0, 0.0, 1.0]);
        // (1 - 0.6) + 2 + (0 - (-0.4)) = 2.8.
        let gs = host(s.grad(&g).unwrap());
        assert!((gs[0] - 2.8).abs() < 1e-5, "{gs:?}");
    }
}
