//! MinMax: the range is exactly what was seen. Cheap and outlier-sensitive.

/// Min and max of one batch (NaNs ignored).
pub fn batch_range(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}
