//! Percentile: clip the range to the `p`-th and `(100-p)`-th percentiles of the histogram,
//! dropping the rarest outliers that would otherwise stretch the scale.

use super::Histogram;

/// `(lo, hi)` at the `100-p` and `p` percentiles, or `None` on an empty histogram.
pub fn range(h: &Histogram, p: f64) -> Option<(f32, f32)> {
    let total = h.total();
    if total == 0 {
        return None;
    }
    let tail = ((1.0 - p / 100.0) * total as f64).floor() as u64;
    let edge = |counts: &mut dyn Iterator<Item = (usize, &u64)>| {
        let mut seen = 0;
        for (i, &c) in counts {
            seen += c;
            if seen > tail {
                return i;
            }
        }
        0
    };
    let lo_bin = edge(&mut h.counts.iter().enumerate());
    let hi_bin = edge(&mut h.counts.iter().enumerate().rev());
    let w = h.bin_width();
    Some((h.lo + lo_bin as f32 * w, h.lo + (hi_bin + 1) as f32 * w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_rare_tail() {
        let mut h = Histogram::new(0.0, 100.0);
        h.add((0..100_000).map(|i| (i % 10) as f32)); // values 0..9
        h.add(std::iter::once(100.0)); // one outlier
        let (lo, hi) = range(&h, 99.99).unwrap();
        assert!(lo <= 0.1 && (9.0..10.5).contains(&hi), "{lo} {hi}");
        let (_, all) = range(&h, 100.0).unwrap();
        assert!(all >= 99.9, "{all}");
    }
}
