//! MSE-optimal clipping: among ranges `[a*min, a*max]`, `a` in 0.10..=1.00, the one whose
//! quantize-dequantize round trip at the point's bit width has the smallest squared error
//! over the histogram.

use super::Histogram;
use crate::qparams::{ActDtype, QParams};

/// Smallest shrink factor tried.
const MIN_SHRINK: usize = 10;

/// `(lo, hi)` with least expected squared error, or `None` on an empty histogram.
pub fn range(h: &Histogram, dtype: ActDtype, bits: u8) -> Option<(f32, f32)> {
    if h.total() == 0 {
        return None;
    }
    let mut best = (f64::INFINITY, (h.lo, h.hi));
    for pct in MIN_SHRINK..=100 {
        let a = pct as f32 / 100.0;
        let (lo, hi) = (h.lo * a, h.hi * a);
        let q = QParams::from_range_bits(lo, hi, dtype, bits);
        let err: f64 = h
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| {
                let x = h.center(i);
                let e = (x - q.dequantize(q.quantize(x))) as f64;
                c as f64 * e * e
            })
            .sum();
        if err < best.0 {
            best = (err, (lo, hi));
        }
    }
    Some(best.1)
}
