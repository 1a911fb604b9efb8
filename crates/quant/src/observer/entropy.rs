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
pub fn range(s: &Stats, dtype: ActDtype, bits: u8) -> Option<(f32, f32)> {
    if s.min < 0.0 && dtype == ActDtype::U8Affine {
        return None;
    }
    let h = s.abs_hist.as_ref()?;
    if h.total() < MIN_VALUES_PER_BIN * BINS as u64 || h.bin_width() <= 0.0 {
        return None;
    }
    let nonneg = s.min >= 0.0;
    // Levels available on |x|: a one-sided unsigned range uses all 2^bits, anything else half.
    let levels = if nonneg && dtype == ActDtype::U8Affine {
        1usize << bits
    } else {
        1usize << (bits - 1)
    };
    let (counts, last_spike) = flatten_spikes(&h.counts);
    let best = best_bin(&counts, levels).max(last_spike.map_or(0, |b| b + 1));
    let t = best as f32 * h.bin_width();
    Some(if nonneg {
        (0.0, t)
    } else {
        (s.min.max(-t), s.max.min(t))
    })
}

/// Fewest values per histogram bin, on average, for the KL search to run. Below that the
/// tail is a scatter of single counts (the MNIST MLP's layers see 14,000-34,000 non-zero
/// values in 2,048 bins from 1,000 images) and KL clips a handful of values on noise, which
/// carry enough energy to cost 10 dB of SQNR; such points keep MinMax. TensorRT calibrates
/// on convolution maps, millions of values.
pub const MIN_VALUES_PER_BIN: u64 = 64;

/// A bin holding more than this share of all values can be a point mass...
const SPIKE_SHARE: f64 = 1e-3;
/// ...when it also holds this many times the mean of its neighbours.
const SPIKE_RATIO: f64 = 20.0;
/// Neighbours on each side compared with a bin.
const SPIKE_WINDOW: usize = 8;

/// The histogram with its point masses flattened to their neighbours' level, and the last
/// bin that held one.
///
/// A point mass (a constant background response, say: on MNIST every channel of the first
/// convolution answers the flat background with one value, 80% of its outputs) is
/// reconstructed within half a step at any threshold that covers it. TensorRT's KL model
/// spreads each quantized level's mass evenly over the bins it merges, so it charges a
/// spike `p * ln(merge)` as if it were smeared and picks thresholds small enough to merge
/// nothing: 0.89 of 5.15 on the MNIST CNN's first layer, 4 dB SQNR. Flattened, the search
/// sees the continuous part it was designed for; the caller keeps every spike in range.
fn flatten_spikes(counts: &[u64]) -> (Vec<u64>, Option<usize>) {
    let total: u64 = counts.iter().sum();
    let mut out = counts.to_vec();
    let mut last = None;
    for (b, &c) in counts.iter().enumerate() {
        if (c as f64) < SPIKE_SHARE * total as f64 {
            continue;
        }
        let lo = b.saturating_sub(SPIKE_WINDOW);
        let hi = (b + SPIKE_WINDOW + 1).min(counts.len());
        let (sum, n) = (lo..hi)
            .filter(|&j| j != b)
            .fold((0u64, 0u64), |(s, n), j| (s + counts[j], n + 1));
        let mean = sum as f64 / n.max(1) as f64;
        if c as f64 > SPIKE_RATIO * (mean + 1.0) {
            out[b] = mean.round() as u64;
            last = Some(b);
        }
    }
    (out, last)
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
    fn point_masses_do_not_pull_the_threshold_down() {
        // A smooth tail to bin 1800 plus three background spikes low in the range, holding
        // most of the mass: TensorRT's KL alone clips at the first candidates.
        let mut counts: Vec<u64> = (0..BINS)
            .map(|i| if i < 1800 { 2000 - i as u64 } else { 0 })
            .collect();
        for b in [20, 60, 110] {
            counts[b] = 2_000_000;
        }
        let (flat, last) = flatten_spikes(&counts);
        assert_eq!(last, Some(110));
        assert!(flat[60] < 3000, "{}", flat[60]);
        assert!(best_bin(&counts, 256) < 600, "the raw search is fooled");
        assert!(best_bin(&flat, 256) > 1500, "{}", best_bin(&flat, 256));
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
