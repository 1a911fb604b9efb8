//! What happens to a block of i32 accumulators before it leaves the kernel: zero-point
//! correction and bias (folded into one per-output offset at load time), then either
//! requantization to the next layer's u8 (static) or scaling to f32 (dynamic). Kernels hand
//! over small row blocks that are still in cache, so no i32 tensor goes back to memory.

use super::requant::Requant;
use super::rows::PoolShape;

/// Where output `(row, col)` of a GEMM goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutLayout {
    /// `[rows, n]` (linear layers).
    RowMajor,
    /// Rows are `sample * pixels + pixel`; written as NCHW `[sample, n, pixels]` (convolutions).
    Nchw {
        /// Output pixels per sample.
        pixels: usize,
    },
}

impl OutLayout {
    /// `(index of (row, 0), distance between consecutive columns)`: computed once per row so
    /// the inner loop has no division.
    #[inline(always)]
    pub fn row_base(self, row: usize, n: usize) -> (usize, usize) {
        match self {
            OutLayout::RowMajor => (row * n, 1),
            OutLayout::Nchw { pixels } => ((row / pixels) * n * pixels + row % pixels, pixels),
        }
    }

    /// Flat output index of `(row, col)` for `n` outputs.
    #[inline(always)]
    pub fn index(self, row: usize, col: usize, n: usize) -> usize {
        match self {
            OutLayout::RowMajor => row * n + col,
            OutLayout::Nchw { pixels } => (row / pixels) * n * pixels + col * pixels + row % pixels,
        }
    }
}

/// The epilogue of one GEMM call.
#[derive(Debug)]
pub enum Epilogue<'a> {
    /// Static int8: `out = clamp(zo + requant[n](acc + offset[n]), lo, hi)` as u8.
    Requant {
        /// `bias_i32[n] - za * col_sums[n]`.
        offset: &'a [i32],
        /// Per-output (or one shared) multiplier `s_a * s_w[n] / s_out`.
        requant: &'a [Requant],
        /// Output zero point.
        zo: i32,
        /// Lower clamp (the zero point when ReLU is fused).
        lo: i32,
        /// Upper clamp.
        hi: i32,
        /// Output layout.
        layout: OutLayout,
        /// Destination.
        out: &'a mut [u8],
    },
    /// Dynamic int8: `out = scale[n] * (acc + offset[n]) + bias[n]`, optional ReLU, as f32.
    Dequant {
        /// `-za * col_sums[n]`.
        offset: &'a [i32],
        /// `s_a * s_w[n]` (one shared value or one per output).
        scales: &'a [f32],
        /// Float bias.
        bias: &'a [f32],
        /// Fused ReLU.
        relu: bool,
        /// Output layout.
        layout: OutLayout,
        /// Destination.
        out: &'a mut [f32],
    },
    /// The raw accumulators, `[rows, n]` (tests and benchmarks of the GEMM alone).
    Raw {
        /// Destination.
        out: &'a mut [i32],
    },
    /// A convolution's raw accumulators max-reduced into the non-overlapping pool after it:
    /// `out[t * stride + j] = max(out[t * stride + j], acc)` for the pooled pixel `t` each
    /// row falls in (`out` starts at `i32::MIN`). Requantizing the pooled maxima afterwards
    /// gives the bytes of pooling the requantized outputs, since requantization is
    /// monotonic; and no per-pixel accumulator tensor is written.
    PoolMax {
        /// Which pooled pixel each conv output pixel falls in.
        pool: PoolShape,
        /// Values per pooled pixel in `out`, at least `n` (a multiple of 8 lets the AVX2
        /// path take whole vectors; the values past `n` are never read).
        stride: usize,
        /// `[pooled pixels, stride]`.
        out: &'a mut [i32],
    },
}

impl Epilogue<'_> {
    /// Consumes accumulators of rows `row0..row0+rows`: row `r` is `acc[r*stride..][..n]`.
    #[inline]
    pub fn apply_block(&mut self, row0: usize, rows: usize, n: usize, acc: &[i32], stride: usize) {
        match self {
            Epilogue::Requant {
                offset,
                requant,
                zo,
                lo,
                hi,
                layout,
                out,
            } => {
                let (zo, lo, hi) = (*zo, *lo, *hi);
                for r in 0..rows {
                    let (base, step) = layout.row_base(row0 + r, n);
                    let a = &acc[r * stride..r * stride + n];
                    let q = |j: usize, rq: &Requant| {
                        // Saturating: a damaged file's requantizer can reach i32::MAX
                        // (found by fuzzing); the clamp gives the same byte either way.
                        zo.saturating_add(rq.apply(a[j].wrapping_add(offset[j])))
                            .clamp(lo, hi) as u8
                    };
                    match (requant.len() == 1, step == 1) {
                        (true, true) => out[base..base + n]
                            .iter_mut()
                            .enumerate()
                            .for_each(|(j, o)| *o = q(j, &requant[0])),
                        (false, true) => out[base..base + n]
                            .iter_mut()
                            .enumerate()
                            .for_each(|(j, o)| *o = q(j, &requant[j])),
                        (shared, false) => {
                            for j in 0..n {
                                out[base + j * step] = q(j, &requant[if shared { 0 } else { j }]);
                            }
                        }
                    }
                }
            }
            Epilogue::Dequant {
                offset,
                scales,
                bias,
                relu,
                layout,
                out,
            } => {
                let shared = scales.len() == 1;
                let floor = if *relu { 0.0 } else { f32::NEG_INFINITY };
                for r in 0..rows {
                    let (base, step) = layout.row_base(row0 + r, n);
                    for j in 0..n {
                        let s = if shared { scales[0] } else { scales[j] };
                        let v = s * (acc[r * stride + j] + offset[j]) as f32 + bias[j];
                        out[base + j * step] = v.max(floor);
                    }
                }
            }
            Epilogue::Raw { out } => {
                for r in 0..rows {
                    out[(row0 + r) * n..(row0 + r + 1) * n]
                        .copy_from_slice(&acc[r * stride..r * stride + n]);
                }
            }
            Epilogue::PoolMax {
                pool,
                stride: os,
                out,
            } => pool.each_target(row0, rows, |r, t| {
                out[t * *os..t * *os + n]
                    .iter_mut()
                    .zip(&acc[r * stride..r * stride + n])
                    .for_each(|(o, &a)| *o = (*o).max(a));
            }),
        }
    }
}
