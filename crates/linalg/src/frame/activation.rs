//! The activation fused into the float kernels' stores (the GEMM's and the depthwise
//! convolution's): applied as each output is written, not in a pass over the output after.

/// The fused activation: none, ReLU, or ReLU capped (ReLU6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activation {
    /// `max(v, 0)`.
    pub relu: bool,
    /// `min(.., cap)` after the ReLU.
    pub cap: Option<f32>,
}

impl Activation {
    /// No activation.
    pub const NONE: Self = Self {
        relu: false,
        cap: None,
    };

    /// ReLU when `on`, uncapped.
    pub fn relu(on: bool) -> Self {
        Self {
            relu: on,
            cap: None,
        }
    }

    /// On one value (a NaN becomes 0 under ReLU, as `f32::max` does).
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match (self.relu, self.cap) {
            (false, _) => v,
            (true, None) => v.max(0.0),
            (true, Some(c)) => v.max(0.0).min(c),
        }
    }
}
