//! The quantize rules: a float activation to u8 (round half to even, as ONNX
//! `QuantizeLinear` and PyTorch's `quantize_per_tensor`) and a float weight to symmetric i8
//! (round half away from zero, as PyTorch and ONNX Runtime quantize weights). The SIMD
//! quantizers of each path match [`quantize_scalar`] bit for bit.

/// [`quantize_scalar`] over a slice.
pub fn quantize_slice(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_scalar(v, inv, zp, lo, hi);
    }
}

/// The definition: `clamp(round_half_even(x * inv) + zp, lo, hi)`, NaN as 0. Ties go to
/// even, as in ONNX `QuantizeLinear` and PyTorch's `quantize_per_tensor`, so quantlab's
/// engine and ONNX Runtime running its exported QDQ file quantize activations alike.
#[inline(always)]
pub fn quantize_scalar(x: f32, inv: f32, zp: i32, lo: i32, hi: i32) -> u8 {
    let t = x * inv;
    // Anything beyond the clamp maps to lo or hi either way; inside it, |t| < 2^22.
    let t = if t.is_nan() {
        0.0
    } else {
        t.clamp((lo - zp) as f32 - 2.0, (hi - zp) as f32 + 2.0)
    };
    (round_half_even(t) as i32 + zp).clamp(lo, hi) as u8
}

/// Round half to even for `|t| <= 2^22`: adding and removing 1.5 * 2^23 leaves the integer
/// the default rounding mode picks (no libm call on baseline x86-64).
#[inline(always)]
pub fn round_half_even(t: f32) -> f32 {
    const M: f32 = 12_582_912.0;
    (t + M) - M
}

/// Symmetric int8 weight quantization of `w` with `scale` (values -127..=127).
pub fn quantize_weight(w: f32, scale: f32) -> i8 {
    round_half_away(w / scale).clamp(-127.0, 127.0) as i8
}

/// `f32::round` (half away from zero) without the libm call it becomes on baseline x86-64
/// (no SSE4.1 `roundps`): a truncating conversion and one comparison, which vectorises.
/// Identical to `f32::round` for |t| < 2^31; larger values saturate, as the clamps that
/// follow every use would anyway.
#[inline(always)]
pub fn round_half_away(t: f32) -> f32 {
    let i = t as i32 as f32;
    let f = t - i;
    if f >= 0.5 {
        i + 1.0
    } else if f <= -0.5 {
        i - 1.0
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantlab_data::rng::Rng;

    #[test]
    fn round_half_away_matches_f32_round() {
        let mut rng = Rng::new(5);
        let specials = [
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999997,
            -0.49999997,
            8388607.5,
            1e9,
            -1e9,
            0.0,
            -0.0,
        ];
        for &t in &specials {
            assert_eq!(round_half_away(t), t.round(), "{t}");
        }
        for _ in 0..200_000 {
            let t = ((rng.uniform() - 0.5) * 2f64.powi(rng.below(30) as i32)) as f32;
            assert_eq!(round_half_away(t), t.round(), "{t}");
        }
    }

    #[test]
    fn round_half_even_matches_std_where_it_is_used() {
        let mut rng = Rng::new(4);
        for t in [
            0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 254.5, -127.5, 0.0, -0.0,
        ] {
            assert_eq!(round_half_even(t), t.round_ties_even(), "{t}");
        }
        for _ in 0..200_000 {
            let t = ((rng.uniform() - 0.5) * 600.0) as f32;
            assert_eq!(round_half_even(t), t.round_ties_even(), "{t}");
        }
    }
}
