//! The requantization rule: a real multiplier `M` (e.g. `s_in * s_w / s_out`) as a 31-bit
//! integer mantissa and a right shift, so requantization is `(acc * m + round) >> shift` in
//! i64. **Rounding**: round half up, i.e. `floor(x + 0.5)`, applied once to the exact
//! product `acc * m / 2^shift`. Every kernel, fast or scalar, applies exactly this, so they
//! match bit for bit (the paths' fused epilogues are tested against [`Requant::apply`]).

/// A real multiplier as `m * 2^-shift` with `m` a 31-bit mantissa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
}
