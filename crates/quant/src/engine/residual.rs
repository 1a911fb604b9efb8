//! The Add of a residual block, in f32 and integer end to end.
//!
//! The integer Add requantizes both inputs to the output's grid in one fixed-point sum,
//! clamped (at the zero point with a fused ReLU): ONNX Runtime's `QLinearAdd` and
//! PyTorch's `quantized::add` (`add_relu`) in integer form. Its rule and vector kernels
//! live in quantlab-linalg (`QAdd`, `Ops::add_u8`); this module builds one from a model's
//! calibrated points and keeps the tabulated form for Adds without a vector form.

use quantlab_linalg::{Ops, QAdd};

use crate::qparams::QParams;

/// The integer Add of a value at `a` and one at `b` into `out`, with `relu` fused (the
/// clamp's lower end at the output's zero point).
pub fn qadd(a: &QParams, b: &QParams, out: &QParams, relu: bool) -> QAdd {
    let lo = if relu {
        out.zero_point.max(out.qmin)
    } else {
        out.qmin
    };
    QAdd::new(
        (a.scale, a.zero_point),
        (b.scale, b.zero_point),
        (out.scale, out.zero_point),
        (lo, out.qmax),
    )
}

/// `b[i] = a[i] (+) b[i]`: the path's vector kernel where the Add has one (every Add of a
/// scale ratio below 4), else `table` (built on first use by the caller's `OnceLock`).
pub fn run_add<'t>(
    ops: &Ops,
    add: &QAdd,
    table: impl FnOnce() -> &'t AddTable,
    a: &[u8],
    b: &mut [u8],
) {
    if ops.add_u8(add, a, b) {
        return;
    }
    let t = table();
    if t.add() == add {
        t.run(a, b);
    } else {
        add.run_scalar(a, b);
    }
}

/// A [`QAdd`] tabulated: the output byte of every `(a, b)` pair (64 KiB, built once per
/// Add node of a session). One table load per value instead of two 64-bit multiplies: the
/// integer Add was a tenth of the residual CNN's int8 time. Bit-identical by construction.
#[derive(Debug)]
pub struct AddTable {
    add: QAdd,
    table: Box<[u8; 1 << 16]>,
}

impl AddTable {
    /// The table of `add`.
    pub fn new(add: QAdd) -> Self {
        let mut table = Box::new([0u8; 1 << 16]);
        for (i, y) in table.iter_mut().enumerate() {
            *y = add.apply((i >> 8) as u8, i as u8);
        }
        Self { add, table }
    }

    /// The Add this table holds.
    pub fn add(&self) -> &QAdd {
        &self.add
    }

    /// [`QAdd::run_scalar`] by table.
    pub fn run(&self, a: &[u8], b: &mut [u8]) {
        assert_eq!(a.len(), b.len(), "the two sides of an Add differ in length");
        b.iter_mut()
            .zip(a)
            .for_each(|(y, &x)| *y = self.table[usize::from(u16::from_be_bytes([x, *y]))]);
    }
}

/// `b[i] += a[i]`, then ReLU if fused.
pub fn add_f32(a: &[f32], b: &mut [f32], relu: bool) {
    // One pass, the ReLU's branch outside the loop (both loops vectorise).
    if relu {
        b.iter_mut()
            .zip(a)
            .for_each(|(y, &x)| *y = (*y + x).max(0.0));
    } else {
        b.iter_mut().zip(a).for_each(|(y, &x)| *y += x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qparams::ActDtype;

    /// The real-number formula the integer Add stands for (in f64 from the f32 scales), and
    /// whether it lands within `1e-6` of a rounding tie, where either neighbour is right.
    fn exact(a: u8, b: u8, qa: &QParams, qb: &QParams, qo: &QParams, relu: bool) -> (i64, bool) {
        let deq = |v: u8, q: &QParams| q.scale as f64 * (v as i64 - q.zero_point as i64) as f64;
        let real = deq(a, qa) + deq(b, qb);
        let real = if relu { real.max(0.0) } else { real } / qo.scale as f64;
        let tie = ((real - real.floor()) - 0.5).abs() < 1e-6;
        let y = ((real + 0.5).floor() as i64 + qo.zero_point as i64)
            .clamp(qo.qmin as i64, qo.qmax as i64);
        (y, tie)
    }

    #[test]
    fn integer_add_is_the_real_sum_rounded_except_at_ties() {
        let q = |lo: f32, hi: f32| QParams::from_range(lo, hi, ActDtype::U8Affine);
        let cases = [
            (q(-1.0, 3.0), q(0.0, 2.5), q(-0.7, 5.2)),
            (q(0.0, 6.0), q(-4.0, 4.0), q(-3.0, 9.0)),
            (q(-0.01, 0.02), q(-10.0, 10.0), q(-10.0, 10.0)),
            (q(0.0, 1.0), q(0.0, 1.0), q(0.0, 1.0)),
        ];
        for (qa, qb, qo) in &cases {
            for relu in [false, true] {
                let add = qadd(qa, qb, qo, relu);
                for a in 0..=255u8 {
                    for b in 0..=255u8 {
                        let (want, tie) = exact(a, b, qa, qb, qo, relu);
                        let got = add.apply(a, b) as i64;
                        let ok = got == want || (tie && (got - want).abs() == 1);
                        assert!(ok, "{qa:?} {qb:?} {qo:?}: {a} {b}: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_table_gives_the_adds_bytes_for_every_pair() {
        let q = |lo: f32, hi: f32| QParams::from_range(lo, hi, ActDtype::U8Affine);
        let add = qadd(&q(-1.0, 3.0), &q(-4.0, 4.0), &q(-0.7, 5.2), true);
        let t = AddTable::new(add);
        let a: Vec<u8> = (0..=255u8).flat_map(|x| [x; 256]).collect();
        let b: Vec<u8> = (0..256 * 256).map(|i| i as u8).collect();
        let mut got = b.clone();
        t.run(&a, &mut got);
        let mut want = b;
        add.run_scalar(&a, &mut want);
        assert_eq!(got, want);
        // Operands taken the other way round give another result: the order is not lost.
        assert_ne!(
            AddTable::new(qadd(&q(-4.0, 4.0), &q(-1.0, 3.0), &q(-0.7, 5.2), true)).table,
            t.table
        );
    }

    #[test]
    fn a_fused_relu_clamps_at_the_zero_point_and_f32_agrees() {
        let q = QParams::from_range(-2.0, 2.0, ActDtype::U8Affine);
        let add = qadd(&q, &q, &q, true);
        let zp = q.zero_point as u8;
        assert_eq!(add.apply(0, 0), zp);
        let mut b = vec![-1.0f32, 2.0];
        add_f32(&[0.5, 0.5], &mut b, true);
        assert_eq!(b, vec![0.0, 2.5]);
    }
}
