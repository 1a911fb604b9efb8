//! Convolution and pooling geometry, and the one output-size formula every shape check uses:
//! `out = (in + 2 * pad - kernel) / stride + 1`.

/// Output length of a window of `kernel` sliding by `stride` over `input` padded by `pad` on
/// both sides; `None` when the stride is 0 or the window does not fit.
pub fn window_out(input: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    if stride == 0 || kernel == 0 {
        return None;
    }
    (input + 2 * pad)
        .checked_sub(kernel)
        .map(|v| v / stride + 1)
}

/// `[h, w]` output of a 2-D window, `None` if either axis does not fit.
fn window_out2(
    in_hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
) -> Option<[usize; 2]> {
    Some([
        window_out(in_hw[0], kernel[0], stride[0], pad[0])?,
        window_out(in_hw[1], kernel[1], stride[1], pad[1])?,
    ])
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConvGeom {
    /// Input channels.
    pub in_channels: usize,
    /// Input `[h, w]`.
    pub in_hw: [usize; 2],
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding.
    pub padding: [usize; 2],
    /// Output `[h, w]`.
    pub out_hw: [usize; 2],
}

impl ConvGeom {
    /// The geometry with its output size computed; `None` if the kernel does not fit the
    /// padded input or a stride is 0.
    pub fn new(
        in_channels: usize,
        in_hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Option<Self> {
        Some(Self {
            in_channels,
            in_hw,
            kernel,
            stride,
            padding,
            out_hw: window_out2(in_hw, kernel, stride, padding)?,
        })
    }

    /// Whether the output size follows from the rest (a geometry read from a file).
    pub fn is_consistent(&self) -> bool {
        window_out2(self.in_hw, self.kernel, self.stride, self.padding) == Some(self.out_hw)
    }

    /// Output pixels per sample (GEMM rows per sample).
    pub fn pixels(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }
}

/// Geometry of a max pooling (no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PoolGeom {
    /// Channels.
    pub channels: usize,
    /// Input `[h, w]`.
    pub in_hw: [usize; 2],
    /// Kernel.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Output `[h, w]`.
    pub out_hw: [usize; 2],
}

impl PoolGeom {
    /// The geometry with its output size computed; `None` if the window does not fit or a
    /// stride is 0.
    pub fn new(
        channels: usize,
        in_hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> Option<Self> {
        Some(Self {
            channels,
            in_hw,
            kernel,
            stride,
            out_hw: window_out2(in_hw, kernel, stride, [0, 0])?,
        })
    }

    /// Whether the output size follows from input, kernel and stride.
    pub fn is_consistent(&self) -> bool {
        window_out2(self.in_hw, self.kernel, self.stride, [0, 0]) == Some(self.out_hw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_the_formula_and_misfits_are_none() {
        // MNIST CNN: 3x3 pad 1 keeps 28; 2x2 stride 2 pooling halves it.
        let c = ConvGeom::new(1, [28, 28], [3, 3], [1, 1], [1, 1]).unwrap();
        assert_eq!(c.out_hw, [28, 28]);
        assert!(c.is_consistent());
        assert_eq!(
            PoolGeom::new(16, [28, 28], [2, 2], [2, 2]).unwrap().out_hw,
            [14, 14]
        );
        assert_eq!(
            PoolGeom::new(1, [7, 7], [2, 2], [2, 2]).unwrap().out_hw,
            [3, 3]
        );
        assert_eq!(
            ConvGeom::new(1, [5, 9], [3, 3], [2, 3], [0, 1])
                .unwrap()
                .out_hw,
            [2, 3]
        );
        assert!(ConvGeom::new(1, [2, 2], [5, 5], [1, 1], [1, 1]).is_none());
        assert!(ConvGeom::new(1, [8, 8], [3, 3], [0, 1], [0, 0]).is_none());
        assert!(PoolGeom::new(1, [1, 1], [2, 2], [2, 2]).is_none());
        let mut bad = c;
        bad.out_hw = [27, 28];
        assert!(!bad.is_consistent());
    }
}
