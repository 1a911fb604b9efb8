//! Moving-average MinMax: `ema += c * (batch - ema)` with `c = 0.01`, started at the first
//! batch's range, as PyTorch's `MovingAverageMinMaxObserver`.

use super::{AVERAGING_CONSTANT, Stats};

/// Folds one batch's range into the moving averages.
pub fn update(s: &mut Stats, lo: f32, hi: f32) {
    if s.batches == 0 {
        s.ema_min = lo;
        s.ema_max = hi;
    } else {
        s.ema_min += AVERAGING_CONSTANT * (lo - s.ema_min);
        s.ema_max += AVERAGING_CONSTANT * (hi - s.ema_max);
    }
    s.batches += 1;
}
