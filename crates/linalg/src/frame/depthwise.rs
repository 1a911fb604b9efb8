//! The depthwise convolution of one channels-last sample (MobileNet's per-channel 3x3
//! filters): every output pixel is, per channel, the sum of the products of the `kh * kw`
//! taps with their weights. Float: plus the bias, then the fused activation
//! ([`depthwise_f32`], the fastest path's kernel from its `Ops` table, against the
//! reference [`depthwise_scalar`]: they differ only in FMA rounding). Integer: u8
//! activations times i8 weights (held as i16) into i32 accumulators for the layer's
//! epilogue ([`depthwise_i32`], likewise, equal to [`depthwise_i32_scalar`] bit for bit).

pub use super::activation::Activation;
use super::nhwc::Taps;

/// One zero-padded channels-last sample and what a depthwise layer reads of it: where each
/// output pixel starts (`taps`), the offset of each kernel tap from there (`offsets`) and
/// the tap-major weights `[taps, c]`.
#[derive(Debug, Clone, Copy)]
pub struct DwSample<'a, T, W> {
    /// The padded sample.
    pub padded: &'a [T],
    /// Output pixel bases.
    pub taps: &'a Taps,
    /// Each tap's offset from a pixel's base.
    pub offsets: &'a [usize],
    /// Tap-major weights.
    pub w: &'a [W],
}

impl<T, W> DwSample<'_, T, W> {
    /// Panics unless `c` channels and `out_len / c` pixels read within the sample and the
    /// weights: the one check that lets the SIMD kernels read without bounds tests.
    pub(crate) fn check(&self, c: usize, out_len: usize) {
        assert!(
            c > 0 && out_len.is_multiple_of(c),
            "depthwise: output is not whole pixels"
        );
        assert!(
            self.w.len() >= self.offsets.len() * c,
            "depthwise: too few weights"
        );
        let (taps, pixels) = (self.taps, out_len / c);
        if pixels == 0 {
            return;
        }
        // Bases grow with the pixel within an output row: the largest is the last pixel's or
        // the one ending the row before it.
        let far = match pixels - 1 {
            last if last >= taps.ow => taps.base(last).max(taps.base(last / taps.ow * taps.ow - 1)),
            last => taps.base(last),
        };
        let reach = self.offsets.iter().max().copied().unwrap_or(0) + c;
        assert!(
            far + reach <= self.padded.len(),
            "depthwise: taps reach past the padded sample ({far} + {reach} > {})",
            self.padded.len()
        );
    }
}

/// One sample: `out[p * c + j] = act(bias[j] + sum_t padded[taps.base(p) + offsets[t] + j] *
/// w[t * c + j])` for the `out.len() / c` output pixels, `c = bias.len()`.
///
/// # Panics
/// When a tap of a pixel reads past the sample, or the weights are fewer than
/// `offsets.len() * c`.
pub fn depthwise_f32(x: DwSample<f32, f32>, bias: &[f32], act: Activation, out: &mut [f32]) {
    // The fastest path's kernel: the choice lives in its `Ops` table (each kernel checks
    // the shapes itself, as it reads without bounds tests).
    crate::KernelPath::detect()
        .ops()
        .depthwise_f32(x, bias, act, out)
}

/// [`depthwise_f32`] of one unpadded `[h, w, c]` sample `x` of geometry `g` (tap-major
/// weights `[9, c]`, `c = bias.len()`), where a kernel reads it without a padded copy: 3x3
/// at a stride of 2 or more on AVX-512 (the same values as over the padded copy). Returns
/// `false`, with nothing written, elsewhere: the caller pads and calls [`depthwise_f32`].
/// At stride 1 the copy stays (a value is read by nine taps there, and the kernel over the
/// unpadded sample spent as long on its border pixels as on the rest: 132 -> 169 us on the
/// MobileNet-like model's layer, 2026-12-01); at stride 2 the copy had cost more than the
/// layer's FMAs.
///
/// # Panics
/// When `x`, `w` or `out` do not fit `g` and `c`.
pub fn depthwise_f32_direct(
    x: &[f32],
    g: &crate::ConvGeom,
    w: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if g.kernel == [3, 3]
        && g.stride.iter().all(|&s| s >= 2)
        && crate::CpuFeatures::get().avx512_f32()
    {
        crate::x86_64::depthwise::depthwise_direct_avx512(x, g, w, bias, act, out);
        return true;
    }
    let _ = (x, g, w, bias, act, out);
    false
}

/// One int8 sample: `acc[p * c + j] = sum_t padded[taps.base(p) + offsets[t] + j] *
/// w[t * c + j]` (the padding holds the input's zero point), for the layer's epilogue. `w`
/// holds i8 values widened to i16, so each product fits in i16 (|255 * -128| < 2^15).
///
/// # Panics
/// As [`depthwise_f32`].
pub fn depthwise_i32(x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
    // As `depthwise_f32`: the fastest path's kernel.
    crate::KernelPath::detect().ops().depthwise_i32(x, c, acc)
}

/// The integer reference: plain loops.
pub fn depthwise_i32_scalar(x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
    for (p, a) in acc.chunks_exact_mut(c).enumerate() {
        a.iter_mut().for_each(|v| *v = 0);
        let base = x.taps.base(p);
        for (t, &off) in x.offsets.iter().enumerate() {
            let src = &x.padded[base + off..base + off + c];
            for ((o, &v), &k) in a.iter_mut().zip(src).zip(&x.w[t * c..(t + 1) * c]) {
                *o += i32::from(v as i16 * k);
            }
        }
    }
}

/// The float reference: plain loops, multiply then add.
pub fn depthwise_scalar(x: DwSample<f32, f32>, bias: &[f32], act: Activation, out: &mut [f32]) {
    let c = bias.len();
    for (p, o) in out.chunks_exact_mut(c).enumerate() {
        o.copy_from_slice(bias);
        let base = x.taps.base(p);
        for (t, &off) in x.offsets.iter().enumerate() {
            let src = &x.padded[base + off..base + off + c];
            for ((v, &a), &k) in o.iter_mut().zip(src).zip(&x.w[t * c..(t + 1) * c]) {
                *v += a * k;
            }
        }
        o.iter_mut().for_each(|v| *v = act.apply(*v));
    }
}
