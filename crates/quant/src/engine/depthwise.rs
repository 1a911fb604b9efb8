//! Depthwise convolutions (MobileNet's 3x3 per-channel filters): not a GEMM, so not the
//! GEMM kernels. On a channels-last sample every tap is a row of `c` contiguous values
//! multiplied by the tap's row of `c` weights, so the loops run over channels innermost
//! (`quantlab_linalg::frame::depthwise`, with AVX2 kernels for both forms). Weights are kept
//! tap-major (`[kh*kw, c]`).
//!
//! The float form adds the bias and the fused activation. The integer form pads with the
//! input's zero point and hands each sample's i32 accumulators to the same [`Epilogue`] as
//! the GEMMs (offset `bias - zp * col_sums`, requantization or dequantization), so a
//! depthwise layer is quantized and requantized exactly like every other dense layer; a
//! static one on a path with a fused requantizer (VNNI) is requantized where it is computed
//! ([`run_static`]), with the same constants and bytes.
//! Weights below 8 bits are stored as i8 values too, so the i16 products below hold.

use quantlab_linalg::frame::depthwise::{Activation, DwSample};
use quantlab_linalg::frame::nhwc::{Padded, Taps};
use quantlab_linalg::{ConvGeom, Epilogue, Ops, Requantizer};

use crate::model::LayerImpl;
use crate::network::Dense;

/// A depthwise layer as a session runs it, prepared once: weights tap-major (f32 for a
/// float layer, the integer ones widened to i16 for an int8 one) and where each tap reads.
#[derive(Debug, Clone)]
pub struct DwWeights {
    f32: Vec<f32>,
    int8: Vec<i16>,
    taps: Taps,
    /// The padded-sample offset of every tap, for a sample padded by
    /// [`quantlab_linalg::frame::nhwc::pad`].
    offsets: Vec<usize>,
    /// A static layer's constants for the path's fused form ([`run_static`]), where it has
    /// one.
    rq: Option<Requantizer>,
}

impl DwWeights {
    /// `d`'s weights for its implementation `layer` (`d` is depthwise, with a geometry).
    pub fn new(d: &Dense, g: &ConvGeom, layer: Option<&LayerImpl>, ops: &Ops) -> Self {
        let taps = g.kernel[0] * g.kernel[1];
        let int8 = |w: &quantlab_linalg::QWeights| {
            let wide: Vec<i16> = w.w.iter().map(|&v| v as i16).collect();
            tap_major(&wide, d.n, taps)
        };
        let (f32, int8) = match layer {
            Some(LayerImpl::F32) | None => (tap_major(&d.weight, d.n, taps), Vec::new()),
            Some(LayerImpl::Static(l)) => (Vec::new(), int8(&l.w)),
            Some(LayerImpl::Dynamic(l)) => (Vec::new(), int8(&l.w)),
        };
        let (c, wp) = (g.in_channels, g.in_hw[1] + 2 * g.padding[1]);
        let offsets = (0..g.kernel[0])
            .flat_map(|ky| (0..g.kernel[1]).map(move |kx| (ky * wp + kx) * c))
            .collect();
        let rq = match layer {
            Some(LayerImpl::Static(l)) => ops.depthwise_requantizer(&l.offset, &l.requant, d.n),
            _ => None,
        };
        Self {
            f32,
            int8,
            taps: Taps::new(g),
            offsets,
            rq,
        }
    }

    /// The fused constants of a static layer, where the path has them.
    pub fn requantizer(&self) -> Option<&Requantizer> {
        self.rq.as_ref()
    }
}

impl DwWeights {
    /// A padded sample as the kernels read it, with these taps and weights `w`.
    fn sample<'a, T, W>(&'a self, padded: &'a [T], w: &'a [W]) -> DwSample<'a, T, W> {
        DwSample {
            padded,
            taps: &self.taps,
            offsets: &self.offsets,
            w,
        }
    }
}

/// `[n, taps]` weights (PyTorch's order) as `[taps, n]`.
pub fn tap_major<T: Copy + Default>(w: &[T], n: usize, taps: usize) -> Vec<T> {
    let mut out = vec![T::default(); n * taps];
    for (j, row) in w.chunks_exact(taps).enumerate().take(n) {
        for (t, &v) in row.iter().enumerate() {
            out[t * n + j] = v;
        }
    }
    out
}

/// The float layer over `batch` channels-last samples of `x` into `y` (`[oh, ow, c]` each).
pub fn run_f32(
    ops: &Ops,
    d: &Dense,
    dw: &DwWeights,
    x: &[f32],
    batch: usize,
    padded: &mut Padded<f32>,
    y: &mut [f32],
) {
    let g = d.conv.as_ref().expect("a depthwise layer has a geometry");
    let w = &dw.f32;
    let act = Activation {
        relu: d.relu,
        cap: d.cap,
    };
    let samples = x
        .chunks_exact(d.in_len())
        .zip(y.chunks_exact_mut(d.out_len()))
        .take(batch);
    // Whether a kernel reads this layer's samples unpadded is the same for every sample:
    // the first one tells.
    let mut direct = true;
    for (i, (xs, ys)) in samples.enumerate() {
        if direct {
            direct = ops.depthwise_f32_direct(xs, g, w, &d.bias, act, ys);
            if direct {
                continue;
            }
        }
        super::pad_sample(i, xs, g, 0.0, padded);
        ops.depthwise_f32(dw.sample(padded.values(), w), &d.bias, act, ys);
    }
}

/// The integer layer: `batch` channels-last u8 samples of `input` (padded with `zp`), each
/// sample's accumulators `[pixels, c]` handed to `epi` as rows `sample * pixels ..`.
#[allow(clippy::too_many_arguments)] // a layer, its weights, input, scratch and epilogue
pub fn run_int8(
    ops: &Ops,
    d: &Dense,
    dw: &DwWeights,
    input: &[u8],
    batch: usize,
    zp: u8,
    (padded, acc): (&mut Padded<u8>, &mut Vec<i32>),
    epi: &mut Epilogue,
) {
    let g = d.conv.as_ref().expect("a depthwise layer has a geometry");
    let (c, w) = (d.n, &dw.int8);
    let pixels = g.pixels();
    acc.clear();
    acc.resize(pixels * c, 0);
    for (s, xs) in input.chunks_exact(d.in_len()).take(batch).enumerate() {
        super::pad_sample(s, xs, g, zp, padded);
        ops.depthwise_i32(dw.sample(padded.values(), w), c, acc);
        ops.epilogue(epi, s * pixels, pixels, c, acc, c);
    }
}

/// The static integer layer on the path's fused form: `batch` channels-last u8 samples of
/// `input` (padded with `zp`), each requantized into `out` (`[pixels, c]` per sample) as it
/// is computed, with `rq` and the clamp `c`: no i32 buffer, no separate epilogue pass.
#[allow(clippy::too_many_arguments)] // a layer, its weights, input, output and constants
pub fn run_static(
    ops: &Ops,
    d: &Dense,
    dw: &DwWeights,
    (rq, clamp): (&Requantizer, quantlab_linalg::Clamp),
    input: &[u8],
    batch: usize,
    zp: u8,
    padded: &mut Padded<u8>,
    out: &mut [u8],
) {
    let g = d.conv.as_ref().expect("a depthwise layer has a geometry");
    let samples = input
        .chunks_exact(d.in_len())
        .zip(out.chunks_exact_mut(d.out_len()))
        .take(batch);
    for (s, (xs, os)) in samples.enumerate() {
        super::pad_sample(s, xs, g, zp, padded);
        ops.depthwise_requant(dw.sample(padded.values(), &dw.int8), rq, clamp, os);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_major_transposes() {
        // 2 channels, 3 taps.
        let w = [1, 2, 3, 4, 5, 6];
        assert_eq!(tap_major(&w, 2, 3), vec![1, 4, 2, 5, 3, 6]);
    }
}
