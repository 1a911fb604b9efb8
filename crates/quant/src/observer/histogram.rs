//! Fixed-range histogram shared by the percentile, entropy and MSE observers.

/// Bins per histogram (TensorRT's entropy calibrator uses 2048).
pub const BINS: usize = 2048;

/// Counts of values in `BINS` equal bins over `[lo, hi]` (values outside are clamped in).
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Lower edge.
    pub lo: f32,
    /// Upper edge.
    pub hi: f32,
    /// Counts.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over `[lo, hi]`.
    pub fn new(lo: f32, hi: f32) -> Self {
        Self {
            lo,
            hi,
            counts: vec![0; BINS],
        }
    }

    /// Width of one bin (0 for a degenerate range).
    pub fn bin_width(&self) -> f32 {
        (self.hi - self.lo) / BINS as f32
    }

    /// Adds values.
    pub fn add(&mut self, values: impl Iterator<Item = f32>) {
        let w = self.bin_width();
        if w <= 0.0 {
            self.counts[0] += values.count() as u64;
            return;
        }
        let inv = 1.0 / w;
        for v in values {
            let b = ((v - self.lo) * inv) as isize;
            self.counts[b.clamp(0, BINS as isize - 1) as usize] += 1;
        }
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Centre of bin `i`.
    pub fn center(&self, i: usize) -> f32 {
        self.lo + (i as f32 + 0.5) * self.bin_width()
    }
}
