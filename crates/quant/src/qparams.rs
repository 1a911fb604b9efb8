//! Quantization parameters and the one place where real numbers become integers.
//!
//! - [`QParams`]: `real = scale * (q - zero_point)`. Activations are stored as `u8`
//!   everywhere inside the engine: uint8 affine uses its zero point as is, and int8
//!   symmetric (`q_i8` in -127..=127, zero point 0) is stored as `q_i8 + 128` with zero
//!   point 128, which is the same real value. One kernel shape (u8 x i8) then serves both.
//! - [`Requant`]: a real multiplier `M` (e.g. `s_in * s_w / s_out`) as a 31-bit integer
//!   mantissa and a right shift, so requantization is `(acc * m + round) >> shift` in i64.
//!
//! **Rounding rule** (used by every kernel, fast or scalar): round half up, i.e.
//! `floor(x + 0.5)`, applied once to the exact product `acc * m / 2^shift`. Quantizing a
//! float uses round-half-away-from-zero (`f32::round`), as PyTorch and ONNX Runtime do for
//! weights; both are exact integer definitions, so every kernel can match bit for bit.

use serde::{Deserialize, Serialize};

/// How a tensor is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ActDtype {
    /// uint8 with a zero point (0..=255).
    U8Affine,
    /// int8 symmetric (-127..=127, zero point 0); stored internally as u8 with zero point 128.
    I8Symmetric,
}

/// `real = scale * (q - zero_point)`, with `q` in `qmin..=qmax` (u8 storage).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// Step between adjacent integer levels.
    pub scale: f32,
    /// Integer that represents real 0.
    pub zero_point: i32,
    /// Smallest stored value.
    #[serde(default, skip_serializing_if = "is_u8_min")]
    pub qmin: i32,
    /// Largest stored value.
    #[serde(default = "u8_max", skip_serializing_if = "is_u8_max")]
    pub qmax: i32,
}

fn is_u8_min(v: &i32) -> bool {
    *v == 0
}

fn is_u8_max(v: &i32) -> bool {
    *v == 255
}

fn u8_max() -> i32 {
    255
}

/// Smallest scale ever produced: keeps `1/scale` finite for degenerate (all-zero) ranges.
pub const MIN_SCALE: f32 = 1e-8;

impl QParams {
    /// Parameters covering `[min, max]` (widened to include 0, as real 0 must be exact so
    /// that zero padding and ReLU are exact).
    pub fn from_range(min: f32, max: f32, dtype: ActDtype) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        match dtype {
            ActDtype::U8Affine => {
                let scale = ((max - min) / 255.0).max(MIN_SCALE);
                let zero_point = (-min / scale).round().clamp(0.0, 255.0) as i32;
                Self {
                    scale,
                    zero_point,
                    qmin: 0,
                    qmax: 255,
                }
            }
            ActDtype::I8Symmetric => {
                let amax = max.abs().max(min.abs());
                let scale = (amax / 127.0).max(MIN_SCALE);
                Self {
                    scale,
                    zero_point: 128,
                    qmin: 1,
                    qmax: 255,
                }
            }
        }
    }

    /// Fixed-point parameters: `scale = 2^-bits`, symmetric int8 (the uncalibrated shortcut).
    pub fn fixed_point(bits: i32) -> Self {
        Self {
            scale: (2f32).powi(-bits),
            zero_point: 128,
            qmin: 1,
            qmax: 255,
        }
    }

    /// Quantizes one value (`x * (1/scale)`, round half to even, clamp); the same
    /// arithmetic as [`quantize_into`].
    pub fn quantize(&self, x: f32) -> u8 {
        let mut out = [0u8];
        quantize_into(&[x], self, &mut out);
        out[0]
    }

    /// The real value of a stored integer.
    pub fn dequantize(&self, q: u8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }

    /// True when every field is usable (finite positive scale, consistent range).
    pub fn is_valid(&self) -> bool {
        self.problem().is_none()
    }

    /// What is wrong, naming the field and its value, or `None` when every field is usable:
    /// a file with a bad zero point must say "zero_point", not blame the scale.
    pub fn problem(&self) -> Option<String> {
        let (s, z, lo, hi) = (self.scale, self.zero_point, self.qmin, self.qmax);
        if !(s.is_finite() && s > 0.0) {
            Some(format!("scale {s} must be finite and > 0"))
        } else if !(0..=255).contains(&lo) {
            Some(format!("qmin {lo} must be in 0..=255"))
        } else if !(0..=255).contains(&hi) {
            Some(format!("qmax {hi} must be in 0..=255"))
        } else if lo > hi {
            Some(format!("qmin {lo} must not exceed qmax {hi}"))
        } else if !(lo..=hi).contains(&z) {
            Some(format!(
                "zero_point {z} must be in qmin..=qmax ({lo}..={hi})"
            ))
        } else {
            None
        }
    }
}

/// Quantizes a slice into `out` (AVX-512 where available, else [`quantize_scalar`]).
pub fn quantize_into(x: &[f32], q: &QParams, out: &mut [u8]) {
    let inv = 1.0 / q.scale;
    if crate::kernels::quantize::quantize_simd(x, inv, q.zero_point, q.qmin, q.qmax, out).is_none()
    {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = quantize_scalar(v, inv, q.zero_point, q.qmin, q.qmax);
        }
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

/// Scale for symmetric int8 weights whose largest magnitude is `amax`.
pub fn weight_scale(amax: f32) -> f32 {
    (amax / 127.0).max(MIN_SCALE)
}

/// A real multiplier as `m * 2^-shift` with `m` a 31-bit mantissa.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requant {
    /// Mantissa in `[2^30, 2^31)`, or 0 for a multiplier too small to matter.
    pub multiplier: i32,
    /// Right shift, `0..=62`.
    pub shift: u32,
}

/// Largest right shift; multipliers below `2^-(MAX_SHIFT-31)` round every i32 to 0.
const MAX_SHIFT: i32 = 62;

impl Requant {
    /// Decomposes `real` (must be finite and >= 0) into mantissa and shift.
    pub fn new(real: f64) -> Self {
        if !(real.is_finite() && real > 0.0) {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        // real = frac * 2^exp with frac in [0.5, 1).
        let mut exp = real.log2().floor() as i32 + 1;
        let mut frac = real / 2f64.powi(exp);
        if frac >= 1.0 {
            frac /= 2.0;
            exp += 1;
        }
        if frac < 0.5 {
            frac *= 2.0;
            exp -= 1;
        }
        let mut m = (frac * (1u64 << 31) as f64).round() as i64;
        if m == 1 << 31 {
            m /= 2;
            exp += 1;
        }
        let shift = 31 - exp;
        if shift > MAX_SHIFT {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        // A multiplier >= 2^31 (shift < 0) cannot occur for quantized layers (it would need
        // scales differing by 2^31); clamp so the arithmetic stays defined.
        let shift = shift.max(0);
        Self {
            multiplier: m as i32,
            shift: shift as u32,
        }
    }

    /// The real multiplier this represents.
    pub fn real(&self) -> f64 {
        self.multiplier as f64 / 2f64.powi(self.shift as i32)
    }

    /// `round_half_up(acc * real)`, exactly, in i64.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i32 {
        if self.shift == 0 {
            return (acc as i64 * self.multiplier as i64).clamp(i32::MIN as i64, i32::MAX as i64)
                as i32;
        }
        let round = 1i64 << (self.shift - 1);
        ((acc as i64 * self.multiplier as i64 + round) >> self.shift) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantlab_data::rng::Rng;

    /// |requant(acc) - round(acc * real)| may differ by the mantissa's rounding (relative
    /// 2^-31) plus one for a tie landing on the other side.
    fn check(real: f64, acc: i32) {
        let r = Requant::new(real);
        let exact = acc as f64 * real;
        let got = r.apply(acc) as f64;
        let tol = 1.0 + exact.abs() * 2f64.powi(-30);
        assert!(
            (got - exact).abs() <= tol,
            "real {real:e} acc {acc}: got {got}, exact {exact}"
        );
        if r.multiplier != 0 {
            assert!(
                (r.real() / real - 1.0).abs() < 2f64.powi(-30),
                "{real:e} -> {r:?}"
            );
            assert!(
                (1 << 30..1i64 << 31).contains(&(r.multiplier as i64)),
                "{r:?}"
            );
        }
    }

    #[test]
    fn requant_matches_real_multiplication_over_1e_minus_8_to_1e3() {
        let mut rng = Rng::new(11);
        for _ in 0..20_000 {
            let real = 10f64.powf(-8.0 + 11.0 * rng.uniform());
            // Accumulators a real layer can produce without the result overflowing i32.
            let lim = ((i32::MAX as f64 / real.max(1.0)) as i64).min(i32::MAX as i64);
            let acc = (rng.next_u64() % (2 * lim as u64 + 1)) as i64 - lim;
            check(real, acc as i32);
        }
        for real in [1e-8, 1e-3, 0.5, 1.0, 2.0, 1e3] {
            for acc in [0, 1, -1, i32::MAX / 1024, i32::MIN / 1024] {
                check(real, acc);
            }
        }
    }

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

    #[test]
    fn simd_quantize_matches_scalar() {
        let mut rng = Rng::new(9);
        let mut x: Vec<f32> = (0..10_007)
            .map(|_| ((rng.uniform() - 0.5) * 600.0) as f32)
            .collect();
        x.extend([
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            1e10,
            -1e10,
            3e9,
            -3e9,
            f32::MAX,
            f32::MIN,
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        for q in [
            QParams::from_range(-0.4, 2.8, ActDtype::U8Affine),
            QParams::from_range(0.0, 100.0, ActDtype::U8Affine),
            QParams::from_range(-1.0, 1.0, ActDtype::I8Symmetric),
            QParams::fixed_point(7),
        ] {
            let mut fast = vec![0u8; x.len()];
            quantize_into(&x, &q, &mut fast);
            let inv = 1.0 / q.scale;
            let slow: Vec<u8> = x
                .iter()
                .map(|&v| quantize_scalar(v, inv, q.zero_point, q.qmin, q.qmax))
                .collect();
            let bad = fast.iter().zip(&slow).position(|(a, b)| a != b);
            assert!(
                bad.is_none(),
                "{q:?}: x={} fast={} slow={}",
                x[bad.unwrap()],
                fast[bad.unwrap()],
                slow[bad.unwrap()]
            );
        }
    }

    #[test]
    fn requant_rounds_half_up() {
        let half = Requant::new(0.5);
        assert_eq!(half.shift, 31);
        assert_eq!(
            [half.apply(1), half.apply(-1), half.apply(3), half.apply(-3)],
            [1, 0, 2, -1]
        );
        assert_eq!(Requant::new(1.0).apply(-7), -7);
    }

    #[test]
    fn degenerate_multipliers_give_zero() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-30] {
            assert_eq!(Requant::new(r).apply(i32::MAX), 0, "{r}");
        }
    }

    #[test]
    fn qparams_represent_zero_exactly_at_the_edges() {
        for (lo, hi) in [
            (0.0, 1.0),
            (-1.0, 0.0),
            (-0.3, 2.8),
            (0.0, 0.0),
            (5.0, 6.0),
            (-1e-9, 1e-9),
        ] {
            for dt in [ActDtype::U8Affine, ActDtype::I8Symmetric] {
                let q = QParams::from_range(lo, hi, dt);
                assert!(q.is_valid(), "{q:?}");
                assert_eq!(q.dequantize(q.quantize(0.0)), 0.0, "{lo} {hi} {dt:?}");
                let top = q.dequantize(q.quantize(hi));
                assert!(
                    (top - hi.max(0.0)).abs() <= q.scale * 0.5 + 1e-6,
                    "{lo} {hi} {dt:?}: {top}"
                );
            }
        }
        // Zero point at the edges: an all-positive range puts it at 0, all-negative at 255.
        assert_eq!(
            QParams::from_range(0.0, 1.0, ActDtype::U8Affine).zero_point,
            0
        );
        assert_eq!(
            QParams::from_range(-1.0, 0.0, ActDtype::U8Affine).zero_point,
            255
        );
    }

    #[test]
    fn quantize_clamps_and_weights_are_symmetric() {
        let q = QParams::from_range(0.0, 1.0, ActDtype::U8Affine);
        assert_eq!(q.quantize(10.0), 255);
        assert_eq!(q.quantize(-10.0), 0);
        let s = weight_scale(2.0);
        assert_eq!(quantize_weight(2.0, s), 127);
        assert_eq!(quantize_weight(-5.0, s), -127);
        let mut out = [0u8; 3];
        quantize_into(&[0.0, 0.5, 2.0], &q, &mut out);
        assert_eq!([out[0], out[2]], [0, 255]);
        assert!((q.dequantize(out[1]) - 0.5).abs() <= q.scale / 2.0 + 1e-7);
    }
}
