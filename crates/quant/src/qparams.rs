//! Quantization parameters: how a calibrated range becomes a scale and a zero point.
//!
//! - [`QParams`]: `real = scale * (q - zero_point)`. Activations are stored as `u8`
//!   everywhere inside the engine: uint8 affine uses its zero point as is, and int8
//!   symmetric (`q_i8` in -127..=127, zero point 0) is stored as `q_i8 + 128` with zero
//!   point 128, which is the same real value. One kernel shape (u8 x i8) then serves both.
//! - The rules that turn reals into integers live with the kernels in `quantlab-linalg` and
//!   are re-exported here: [`Requant`] (a real multiplier as a 31-bit mantissa and a right
//!   shift, round half up) and the quantize rules (activations round half to even, weights
//!   half away from zero), so every kernel and this crate apply one definition.

pub use quantlab_linalg::Requant;
pub use quantlab_linalg::frame::quantize::{
    quantize_scalar, quantize_weight, round_half_away, round_half_even,
};
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
    /// Parameters covering `[min, max]` at 8 bits (see [`QParams::from_range_bits`]).
    pub fn from_range(min: f32, max: f32, dtype: ActDtype) -> Self {
        Self::from_range_bits(min, max, dtype, 8)
    }

    /// Parameters covering `[min, max]` (widened to include 0, as real 0 must be exact so
    /// that zero padding and ReLU are exact) with `bits` (2..=8, checked by the callers
    /// through [`check_bits`]) of levels: uint affine uses `0..=2^bits-1`, int symmetric
    /// `-(2^(bits-1)-1)..=2^(bits-1)-1` stored around 128. Storage stays one byte; only
    /// the range narrows, so every kernel, clamp and pooling runs unchanged.
    pub fn from_range_bits(min: f32, max: f32, dtype: ActDtype, bits: u8) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        match dtype {
            ActDtype::U8Affine => {
                let top = ((1u32 << bits) - 1) as f32;
                let scale = ((max - min) / top).max(MIN_SCALE);
                let zero_point = (-min / scale).round().clamp(0.0, top) as i32;
                Self {
                    scale,
                    zero_point,
                    qmin: 0,
                    qmax: top as i32,
                }
            }
            ActDtype::I8Symmetric => {
                let half = symmetric_qmax(bits);
                let amax = max.abs().max(min.abs());
                let scale = (amax / half as f32).max(MIN_SCALE);
                Self {
                    scale,
                    zero_point: 128,
                    qmin: 128 - half,
                    qmax: 128 + half,
                }
            }
        }
    }

    /// Levels this point uses (`qmax - qmin + 1`).
    pub fn levels(&self) -> u32 {
        (self.qmax - self.qmin + 1).max(1) as u32
    }

    /// The bit width whose range this is (the smallest `b` with `levels <= 2^b`).
    pub fn bits(&self) -> u8 {
        (u32::BITS - (self.levels() - 1).leading_zeros()).max(1) as u8
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

/// Quantizes a slice into `out` with `q` (the fastest quantizer this CPU has; all are
/// bit-identical to [`quantize_scalar`]).
pub fn quantize_into(x: &[f32], q: &QParams, out: &mut [u8]) {
    quantlab_linalg::quantize_u8(x, 1.0 / q.scale, q.zero_point, q.qmin, q.qmax, out)
}

/// Quantizes `x` with `q` and writes back the real values of the stored integers: the
/// engine's input quantizer and its inverse, for training code that must see exactly the
/// grid the integer model will (QAT's network input, done on the host in one pass rather
/// than as half a dozen tensor ops per batch).
pub fn fake_quantize_in_place(x: &mut [f32], q: &QParams) {
    let mut codes = vec![0u8; x.len()];
    quantize_into(x, q, &mut codes);
    for (v, &c) in x.iter_mut().zip(&codes) {
        *v = q.dequantize(c);
    }
}

/// Scale for symmetric int8 weights whose largest magnitude is `amax`.
pub fn weight_scale(amax: f32) -> f32 {
    weight_scale_bits(amax, 8)
}

/// Scale for symmetric `bits`-bit weights whose largest magnitude is `amax`.
pub fn weight_scale_bits(amax: f32, bits: u8) -> f32 {
    (amax / symmetric_qmax(bits) as f32).max(MIN_SCALE)
}

/// A weight at `scale` on the symmetric `bits`-bit grid `-qmax..=qmax` (round half away,
/// the same rule as [`quantize_weight`], which is this at 8 bits).
pub fn quantize_weight_bits(w: f32, scale: f32, bits: u8) -> i8 {
    let q = symmetric_qmax(bits) as f32;
    round_half_away(w / scale).clamp(-q, q) as i8
}

/// Largest level of a symmetric `bits`-bit grid: 127 at 8 bits, 7 at 4, 1 at 2 (the
/// narrow range, as PyTorch's and ONNX Runtime's symmetric weights use, so that `-qmax`
/// and `qmax` are both there and zero is exact).
pub fn symmetric_qmax(bits: u8) -> i32 {
    (1i32 << (bits.clamp(2, 8) - 1)) - 1
}

/// Smallest and largest bit width quantlab quantizes to.
pub const BITS_RANGE: std::ops::RangeInclusive<u8> = 2..=8;

/// `bits` if it is in [`BITS_RANGE`], else an error naming `what` (`wbits`, `abits`, ...).
pub fn check_bits(what: &'static str, bits: u8) -> crate::Result<u8> {
    if BITS_RANGE.contains(&bits) {
        Ok(bits)
    } else {
        Err(crate::QuantError::Invalid {
            key: what,
            reason: format!("{bits} bits: quantlab quantizes to 2..=8 bits"),
        })
    }
}

/// Bit widths of a model: weights, the activations between layers, and the network's
/// input and logits (the edges, 8 bits by default as in PyTorch's and Brevitas' recipes:
/// the first and last layers are the most sensitive and the cheapest to keep wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BitWidths {
    /// Weights (symmetric).
    pub weights: u8,
    /// Activations inside the network.
    pub acts: u8,
    /// The network input and the logits.
    pub edges: u8,
}

impl Default for BitWidths {
    fn default() -> Self {
        Self {
            weights: 8,
            acts: 8,
            edges: 8,
        }
    }
}

impl BitWidths {
    /// Weights `w`, activations `a`, edges at 8 bits.
    pub fn wa(w: u8, a: u8) -> Self {
        Self {
            weights: w,
            acts: a,
            edges: 8,
        }
    }

    /// Every width in range, else an error naming the first that is not.
    pub fn check(self) -> crate::Result<Self> {
        check_bits("wbits", self.weights)?;
        check_bits("abits", self.acts)?;
        check_bits("edge bits", self.edges)?;
        Ok(self)
    }

    /// The width of activation point `p` of `points`: the first (the input) and the last
    /// (the logits) are edges, the others activations.
    pub fn at_point(&self, p: usize, points: usize) -> u8 {
        if p == 0 || p + 1 >= points {
            self.edges
        } else {
            self.acts
        }
    }

    /// True for the 8/8/8 default.
    pub fn is_int8(&self) -> bool {
        *self == Self::default()
    }

    /// `w4a4` (with `-e6` when the edges are not 8 bits): the suffix of method names.
    pub fn tag(&self) -> String {
        let mut t = format!("w{}a{}", self.weights, self.acts);
        if self.edges != 8 {
            t.push_str(&format!("-e{}", self.edges));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantlab_data::rng::Rng;

    #[test]
    fn fake_quantize_in_place_is_quantize_then_dequantize() {
        let q = QParams::from_range_bits(-1.3, 2.1, ActDtype::U8Affine, 4);
        let mut rng = Rng::new(7);
        let xs: Vec<f32> = (0..1000)
            .map(|_| rng.uniform() as f32 * 6.0 - 3.0)
            .collect();
        let mut fq = xs.clone();
        fake_quantize_in_place(&mut fq, &q);
        for (x, y) in xs.iter().zip(&fq) {
            assert_eq!(*y, q.dequantize(q.quantize(*x)), "x = {x}");
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
    fn narrow_ranges_use_exactly_their_levels() {
        for bits in 2..=8u8 {
            let q = QParams::from_range_bits(-1.0, 3.0, ActDtype::U8Affine, bits);
            assert_eq!((q.qmin, q.qmax), (0, (1 << bits) - 1));
            assert_eq!(q.bits(), bits);
            assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
            assert_eq!(q.quantize(100.0) as i32, q.qmax);
            let s = QParams::from_range_bits(-1.0, 3.0, ActDtype::I8Symmetric, bits);
            let half = symmetric_qmax(bits);
            assert_eq!(
                (s.qmin, s.qmax, s.zero_point),
                (128 - half, 128 + half, 128)
            );
            assert!(s.is_valid());
            assert_eq!(s.quantize(-100.0) as i32, s.qmin);
            let ws = weight_scale_bits(2.0, bits);
            assert_eq!(quantize_weight_bits(2.0, ws, bits) as i32, half);
            assert_eq!(quantize_weight_bits(-9.0, ws, bits) as i32, -half);
        }
        assert_eq!(QParams::from_range(0.0, 1.0, ActDtype::U8Affine).bits(), 8);
        assert_eq!(symmetric_qmax(2), 1);
        assert!(check_bits("wbits", 1).is_err() && check_bits("abits", 9).is_err());
        assert_eq!(BitWidths::wa(4, 4).tag(), "w4a4");
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
