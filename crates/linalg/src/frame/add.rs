//! The integer Add of two u8 tensors, each requantized to the output's parameters in one
//! fixed-point sum: `y = zo + round(ma * (a - za) + mb * (b - zb))` with `ma = sa / so` and
//! `mb = sb / so` held as integers at `2^-30`, summed in i64 and rounded once (half up), then
//! clamped. This is ONNX Runtime's `QLinearAdd` and PyTorch's `quantized::add` in integer
//! form: it differs from the real-number formula only where the multipliers' rounding
//! (relative `2^-31`) moves a value across a rounding boundary, by one step. The rule lives
//! here, beside [`crate::Requant`], so that the vector kernels and the scalar definition
//! they are tested against are one crate's.

/// Fractional bits of the multipliers.
pub const ADD_SHIFT: u32 = 30;

/// The constants of one integer Add.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QAdd {
    za: i64,
    zb: i64,
    ma: i64,
    mb: i64,
    zo: i64,
    lo: i64,
    hi: i64,
}

/// `ratio` at `2^-ADD_SHIFT`, bounded so that `255 * m` stays far inside i64 for any
/// scales a file may hold (a ratio beyond `2^24` would mean one input's every step
/// saturates the output anyway).
fn fixed(ratio: f64) -> i64 {
    let m = (ratio * (1i64 << ADD_SHIFT) as f64).round();
    if m.is_finite() {
        m.clamp(0.0, (1i64 << 54) as f64) as i64
    } else {
        0
    }
}

/// The same sum in the form the vector kernels compute it: `x = ma * a + mb * b + bias`
/// with u32 multipliers (exact 32 x 32 -> 64-bit products) and every constant folded into
/// `bias`, which also lifts `x` above zero so that a logical shift floors it; the result is
/// then `(x >> 30) - 2^20`, clamped to `[lo, hi]` (held here with the `2^20` added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VectorAdd {
    pub ma: u32,
    pub mb: u32,
    pub bias: u64,
    pub lo: i32,
    pub hi: i32,
}

/// The lift in [`VectorAdd::bias`], `2^50`: above any negative part of the sum (at most
/// `2 * 255 * 2^32 + 255 * 2^30 < 2^42`) and a multiple of `2^30`, so it leaves the floor
/// unchanged but for adding [`LIFT_STEPS`].
const LIFT: u64 = 1 << 50;
/// [`LIFT`] after the shift.
pub(crate) const LIFT_STEPS: i32 = 1 << 20;

impl QAdd {
    /// The Add of `a` (scale, zero point) and `b` into `out`, clamped to `[lo, hi]`.
    pub fn new(a: (f32, i32), b: (f32, i32), out: (f32, i32), (lo, hi): (i32, i32)) -> Self {
        let so = f64::from(out.0);
        Self {
            za: i64::from(a.1),
            zb: i64::from(b.1),
            ma: fixed(f64::from(a.0) / so),
            mb: fixed(f64::from(b.0) / so),
            zo: i64::from(out.1),
            lo: i64::from(lo),
            hi: i64::from(hi),
        }
    }

    /// One output value: the scalar definition.
    #[inline(always)]
    pub fn apply(&self, a: u8, b: u8) -> u8 {
        let acc = self.ma * (a as i64 - self.za) + self.mb * (b as i64 - self.zb);
        let y = ((acc + (1 << (ADD_SHIFT - 1))) >> ADD_SHIFT) + self.zo;
        y.clamp(self.lo, self.hi) as u8
    }

    /// `b[i] = a[i] (+) b[i]` by the scalar definition.
    pub fn run_scalar(&self, a: &[u8], b: &mut [u8]) {
        assert_eq!(a.len(), b.len(), "the two sides of an Add differ in length");
        b.iter_mut()
            .zip(a)
            .for_each(|(y, &x)| *y = self.apply(x, *y));
    }

    /// The vector form, where it is exact: multipliers below `2^32` (scale ratios below 4,
    /// every Add seen in practice) and a clamp inside the byte range.
    pub(crate) fn vector(&self) -> Option<VectorAdd> {
        let ma = u32::try_from(self.ma).ok()?;
        let mb = u32::try_from(self.mb).ok()?;
        if self.lo < 0 || self.hi > 255 || self.lo > self.hi || self.zo.abs() > 1 << 16 {
            return None;
        }
        let half = 1i64 << (ADD_SHIFT - 1);
        let bias = half - self.ma * self.za - self.mb * self.zb + (self.zo << ADD_SHIFT);
        Some(VectorAdd {
            ma,
            mb,
            bias: LIFT.checked_add_signed(bias)?,
            lo: self.lo as i32 + LIFT_STEPS,
            hi: self.hi as i32 + LIFT_STEPS,
        })
    }
}

impl VectorAdd {
    /// The scalar form of what the kernels compute, for their tests and tails.
    pub fn apply(&self, a: u8, b: u8) -> u8 {
        let x = u64::from(self.ma) * u64::from(a) + u64::from(self.mb) * u64::from(b) + self.bias;
        ((x >> ADD_SHIFT) as i32).clamp(self.lo, self.hi) as u8
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Adds over the corners of the vector form's domain: zero points at both ends, ratios
    /// near 0, 1 and just under 4, a ReLU clamp, a 4-bit output range.
    pub(crate) fn cases() -> Vec<QAdd> {
        vec![
            QAdd::new((0.0157, 64), (0.0314, 0), (0.0235, 30), (0, 255)),
            QAdd::new((0.02, 255), (0.05, 3), (0.06, 128), (128, 255)),
            QAdd::new((1e-4, 0), (0.039, 128), (0.039, 128), (0, 255)),
            QAdd::new((0.0999, 17), (0.1, 200), (0.02501, 0), (0, 255)),
            QAdd::new((0.5, 8), (0.25, 7), (0.5, 8), (0, 15)),
            QAdd::new((1.0, 0), (1.0, 0), (1.0, 0), (0, 255)),
        ]
    }

    #[test]
    fn the_vector_form_gives_the_scalar_definitions_byte_for_every_pair() {
        for add in cases() {
            let v = add.vector().expect("ratios below 4 have a vector form");
            for a in 0..=255u8 {
                for b in 0..=255u8 {
                    assert_eq!(v.apply(a, b), add.apply(a, b), "{add:?}: {a} + {b}");
                }
            }
        }
    }

    #[test]
    fn ratios_of_4_and_above_and_wide_clamps_have_no_vector_form() {
        assert!(
            QAdd::new((0.4, 0), (0.01, 0), (0.1, 0), (0, 255))
                .vector()
                .is_none()
        );
        assert!(
            QAdd::new((0.01, 0), (0.01, 0), (0.01, 0), (-128, 127))
                .vector()
                .is_none()
        );
        assert!(
            QAdd::new((0.399, 0), (0.01, 0), (0.1, 0), (0, 255))
                .vector()
                .is_some()
        );
    }
}
