//! Entropy calibration (TensorRT's method): choose the clipping threshold `t` whose
//! quantized histogram is closest, in KL divergence, to the float histogram with everything
//! beyond `t` folded into the last bin.

use super::{BINS, Stats};
use crate::qparams::ActDtype;

/// Smoothing for quantized bins that are empty where the float histogram is not.
const EPS: f64 = 1e-4;

/// `(lo, hi)` chosen by minimum KL divergence, or `None` (the caller then keeps MinMax).
///
/// The search runs where TensorRT designed it to: non-negative (post-ReLU) tensors, and
/// symmetric int8 on `|x|`. Signed tensors stored as u8 affine (network inputs such as
/// normalised images, with most of their mass at a negative floor) keep MinMax: a KL
/// threshold there either clips the background (symmetric search: -28 pp on MNIST logreg)
/// or the strokes (one-sided search: -3 pp on the CNN), both measured by this project.
pub fn range(s: &Stats, dtype: ActDtype) -> Option<(f32, f32)> {
    if s.min < 0.0 && dtype == ActDtype::U8Affine {
        return None;
    }
    let h = s.abs_hist.as_ref()?;
    if h.total() == 0 || h.bin_width() <= 0.0 {
        return None;
    }
    let nonneg = s.min >= 0.0;
    // Levels available on |x|: a one-sided u8 range uses all 256, anything else half.
    let levels = if nonneg && dtype == ActDtype::U8Affine {
        256
    } else {
        128
    };
    let best = best_bin(&h.counts, levels);
    let t = best as f32 * h.bin_width();
    Some(if nonneg {
        (0.0, t)
    } else {
        (s.min.max(-t), s.max.min(t))
    })
}

/// Number of leading bins (the threshold index) minimising KL(P || Q).
pub fn best_bin(counts: &[u64], levels: usize) -> usize {
    let mut best = (f64::INFINITY, counts.len());
    let outliers_total: u64 = counts.iter().sum();
    let mut inside: u64 = counts[..levels.min(counts.len())].iter().sum();
    for i in levels..=counts.len() {
        if i > levels {
            inside += counts[i - 1];
        }
        let outliers = outliers_total - inside;
        let kl = kl_for(counts, i, levels, outliers);
        if kl < best.0 {
            best = (kl, i);
        }
    }
    debug_assert!(best.1 <= BINS);
    best.1
}

fn kl_for(counts: &[u64], i: usize, levels: usize, outliers: u64) -> f64 {
    let mut p: Vec<f64> = counts[..i].iter().map(|&c| c as f64).collect();
    p[i - 1] += outliers as f64;
    let mut q = vec![0f64; i];
    for j in 0..levels {
        let (start, end) = (j * i / levels, (j + 1) * i / levels);
        let chunk = &counts[start..end];
        let nonzero = chunk.iter().filter(|&&c| c != 0).count();
        if nonzero == 0 {
            continue;
        }
        let avg = chunk.iter().sum::<u64>() as f64 / nonzero as f64;
        for (k, &c) in chunk.iter().enumerate() {
            if c != 0 {
                q[start + k] = avg;
            }
        }
    }
    let (ps, qs) = (p.iter().sum::<f64>(), q.iter().sum::<f64>().max(EPS));
    p.iter()
        .zip(&q)
        .filter(|(pk, _)| **pk > 0.0)
        .map(|(&pk, &qk)| {
            let (pn, qn) = (pk / ps, (qk / qs).max(EPS / ps));
            pn * (pn / qn).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_data_keeps_the_whole_range() {
        let counts = vec![100u64; BINS];
        assert!(best_bin(&counts, 128) > BINS * 9 / 10);
    }

    #[test]
    fn a_far_outlier_is_clipped() {
        let mut counts = vec![0u64; BINS];
        for (i, c) in counts.iter_mut().enumerate().take(200) {
            *c = 1000 - 4 * i as u64;
        }
        counts[BINS - 1] = 1;
        let b = best_bin(&counts, 128);
        assert!(b < 400, "threshold bin {b}");
    }
}
