//! Channels-last (NHWC) feature maps: the layout the engine runs convolutions in.
//!
//! In NCHW a convolution's GEMM output (pixels in rows, channels in columns) has to be
//! scattered one byte per channel plane, and every im2col tap is a separate short copy. In
//! NHWC the GEMM output rows are the feature map itself (contiguous stores), a tap of a
//! channels-last input is `c` contiguous values, and max pooling takes the max of whole
//! channel rows, which vectorises. The reduction order of a convolution becomes
//! `(ky, kx, c)`, so its weights are permuted once at load ([`conv_weight`]), and the first
//! linear layer after a flatten has its columns permuted from `(c, y, x)` to `(y, x, c)`
//! ([`flatten_columns`]) so that its result is exactly the NCHW model's.

use super::geom::{ConvGeom, PoolGeom};
use super::rows::{PoolShape, RowMap, Rows};

/// `[c, h, w]` -> `[h, w, c]` for one sample.
pub fn to_nhwc<T: Copy>(x: &[T], [c, h, w]: [usize; 3], out: &mut [T]) {
    for ch in 0..c {
        for p in 0..h * w {
            out[p * c + ch] = x[ch * h * w + p];
        }
    }
}

/// `[h, w, c]` -> `[c, h, w]` for one sample.
pub fn to_nchw<T: Copy>(x: &[T], [c, h, w]: [usize; 3], out: &mut [T]) {
    for p in 0..h * w {
        for ch in 0..c {
            out[ch * h * w + p] = x[p * c + ch];
        }
    }
}

/// Conv weights `[n][c][kh][kw]` (PyTorch order) -> `[n][kh][seg]`, where each kernel row
/// holds its `kw * c` weights in `(kx, c)` order followed by zeros up to `seg >= kw * c`
/// (the reduction order of [`Taps`]).
pub fn conv_weight<T: Copy + Default>(w: &[T], n: usize, g: &ConvGeom, seg: usize) -> Vec<T> {
    let (c, [kh, kw]) = (g.in_channels, g.kernel);
    assert!(seg >= kw * c, "a kernel row holds kw * c weights");
    let mut out = Vec::with_capacity(n * kh * seg);
    for o in 0..n {
        for ky in 0..kh {
            for kx in 0..kw {
                for ch in 0..c {
                    out.push(w[((o * c + ch) * kh + ky) * kw + kx]);
                }
            }
            out.resize(out.len() + seg - kw * c, T::default());
        }
    }
    out
}

/// Linear weights `[n][c*h*w]` reading an NCHW-flattened map -> columns in `(y, x, c)` order.
pub fn flatten_columns<T: Copy>(w: &[T], n: usize, [c, h, wd]: [usize; 3]) -> Vec<T> {
    let k = c * h * wd;
    let mut out = Vec::with_capacity(w.len());
    for o in 0..n {
        let row = &w[o * k..(o + 1) * k];
        for p in 0..h * wd {
            for ch in 0..c {
                out.push(row[ch * h * wd + p]);
            }
        }
    }
    out
}

/// Values past the end of a [`pad`]ded sample: a kernel row rounded up to whole groups of 4
/// reads up to 3 values beyond the last pixel (they meet zero weights).
pub const SLACK: usize = 4;

/// Copies one `[h, w, c]` sample into a padded `[h + 2py, w + 2px, c]` buffer (the border
/// holds `pad`, the value of real zero) plus [`SLACK`], so a direct convolution reads every
/// tap without a bounds test.
pub fn pad<T: Copy>(x: &[T], g: &ConvGeom, pad: T, out: &mut Vec<T>) {
    out.resize(padded_len(g), pad);
    pad_into(x, g, pad, out);
}

/// The length of a [`pad`]ded sample of `g`.
pub fn padded_len(g: &ConvGeom) -> usize {
    let ([h, w], [py, px], c) = (g.in_hw, g.padding, g.in_channels);
    (h + 2 * py) * (w + 2 * px) * c + SLACK
}

/// [`pad`] into `out`, [`padded_len`] long.
fn pad_into<T: Copy>(x: &[T], g: &ConvGeom, pad: T, out: &mut [T]) {
    let ([h, w], [py, px], c) = (g.in_hw, g.padding, g.in_channels);
    let (row, inner) = ((w + 2 * px) * c, w * c);
    let len = out.len();
    assert_eq!(len, padded_len(g), "buffer not sized for this geometry");
    // Only the border is filled (every value outside the copied rows, whatever the buffer
    // held before): filling the whole buffer first wrote each sample twice.
    out[..py * row + px * c].fill(pad);
    for y in 0..h {
        let dst = (y + py) * row + px * c;
        out[dst..dst + inner].copy_from_slice(&x[y * inner..(y + 1) * inner]);
        // The right margin of this row and the left margin of the next (past the end only
        // with no bottom padding, where SLACK may be shorter than a margin).
        out[(dst + inner).min(len)..(dst + inner + 2 * px * c).min(len)].fill(pad);
    }
    out[((h + py) * row + px * c).min(len)..].fill(pad);
}

/// [`pad`] into a buffer that [`pad`] already prepared for the same geometry and value:
/// only the rows are copied, the border being what it was (a convolution's loop pads its
/// first sample and copies the others: for small maps the border's short fills were a
/// tenth of a first layer's time).
pub fn pad_interior<T: Copy>(x: &[T], g: &ConvGeom, out: &mut [T]) {
    let ([h, w], [py, px], c) = (g.in_hw, g.padding, g.in_channels);
    let (row, inner) = ((w + 2 * px) * c, w * c);
    assert_eq!(
        out.len(),
        (h + 2 * py) * row + SLACK,
        "buffer not padded for this geometry"
    );
    for y in 0..h {
        let dst = (y + py) * row + px * c;
        out[dst..dst + inner].copy_from_slice(&x[y * inner..(y + 1) * inner]);
    }
}

/// A [`pad`]ded sample in a buffer kept between samples, its first value on a 64-byte
/// boundary: with a multiple of 16 channels, a pixel's 16 f32 (or widened u8) lanes are
/// then one cache line where they straddled two (a `Vec` is only 16-byte aligned). The
/// AVX-512 float depthwise at 32 channels, stride 2, took 380 instead of 530-700 ns a
/// sample aligned (one core, 2026-12-01).
#[derive(Debug, Clone)]
pub struct Padded<T> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

impl<T> Default for Padded<T> {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }
}

impl<T: Copy> Padded<T> {
    /// The padded sample (empty before the first [`Padded::pad`]).
    pub fn values(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }

    /// `x` padded for `g` with `pad` in the border, as [`pad`].
    pub fn pad(&mut self, x: &[T], g: &ConvGeom, pad: T) {
        let len = padded_len(g);
        // Room to move the start up to one line (64 bytes) along.
        let slack = 64 / std::mem::size_of::<T>().max(1);
        self.buf.resize(len + slack, pad);
        self.start = match self.buf.as_ptr().align_offset(64) {
            k if k < slack => k,
            _ => 0,
        };
        self.len = len;
        pad_into(x, g, pad, &mut self.buf[self.start..self.start + len]);
    }

    /// `x`'s rows only, into a buffer that [`Padded::pad`] prepared for the same geometry
    /// and pad value, as [`pad_interior`].
    pub fn pad_interior(&mut self, x: &[T], g: &ConvGeom) {
        pad_interior(x, g, &mut self.buf[self.start..self.start + self.len]);
    }
}

/// A convolution over a [`pad`]ded channels-last sample as GEMM rows: row `r` is output
/// pixel `(r / ow, r % ow)`, and its reduction is one segment per kernel row, the `kw * c`
/// values a kernel row covers being contiguous in NHWC (whatever the stride).
#[derive(Debug, Clone)]
pub struct Taps {
    /// Offset of kernel row `ky` from the pixel's base, in elements.
    pub offsets: Vec<usize>,
    /// Values per segment: `kw * c`.
    pub seg_len: usize,
    /// Elements between output rows (`sy * padded_width * c`).
    pub row_step: usize,
    /// Elements between output columns (`sx * c`).
    pub col_step: usize,
    /// Output width.
    pub ow: usize,
}

impl Taps {
    /// Taps of `g`.
    pub fn new(g: &ConvGeom) -> Self {
        let c = g.in_channels;
        let wp = g.in_hw[1] + 2 * g.padding[1];
        Self {
            offsets: (0..g.kernel[0]).map(|ky| ky * wp * c).collect(),
            seg_len: g.kernel[1] * c,
            row_step: g.stride[0] * wp * c,
            col_step: g.stride[1] * c,
            ow: g.out_hw[1],
        }
    }

    /// Segment length rounded up to a multiple of `m` (an int8 path's unit, see
    /// `Ops::seg_multiple`).
    pub fn seg_len_to(&self, m: usize) -> usize {
        self.seg_len.next_multiple_of(m.max(1))
    }

    /// Base offset of output pixel `r`.
    #[inline(always)]
    pub fn base(&self, r: usize) -> usize {
        (r / self.ow) * self.row_step + (r % self.ow) * self.col_step
    }

    /// The convolution's `pixels` output pixels as GEMM rows over one [`pad`]ded sample:
    /// one segment per kernel row, `seg_len` values long (`kw * c`, or for int8 that
    /// rounded up to the path's unit).
    pub fn rows<'a, T>(&'a self, padded: &'a [T], pixels: usize, seg_len: usize) -> Rows<'a, T> {
        Rows {
            a: padded,
            m: pixels,
            segs: &self.offsets,
            seg_len,
            map: RowMap::Conv {
                row_step: self.row_step,
                col_step: self.col_step,
                ow: self.ow,
            },
        }
    }
}

impl PoolShape {
    /// The fused pool `pool` after the convolution `conv` (window = stride).
    pub fn after(conv: &ConvGeom, pool: &PoolGeom) -> Self {
        Self {
            ow: conv.out_hw[1],
            out_hw: pool.out_hw,
            window: pool.stride,
        }
    }
}

/// Max pooling of `batch` `[h, w, c]` samples into `out` (`[oh, ow, c]` each): the max of
/// whole channel rows, which the compiler vectorises. Bytes are maxed in an AVX2 build
/// where the CPU has it (the residual CNN's u8 2x2 pool at batch 64: 75 -> 49 us); floats
/// keep the portable build, which was faster for them (79 against 87 us).
pub fn maxpool<T: Copy + PartialOrd>(x: &[T], batch: usize, g: &PoolGeom, out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if size_of::<T>() == 1 && crate::CpuFeatures::get().avx2 {
        // SAFETY: the CPU has AVX2.
        return unsafe { maxpool_avx2(x, batch, g, out) };
    }
    maxpool_rows(x, batch, g, out)
}

/// [`maxpool_rows`] with AVX2 enabled.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn maxpool_avx2<T: Copy + PartialOrd>(x: &[T], batch: usize, g: &PoolGeom, out: &mut [T]) {
    maxpool_rows(x, batch, g, out)
}

/// [`maxpool`]'s loops.
#[inline(always)]
fn maxpool_rows<T: Copy + PartialOrd>(x: &[T], batch: usize, g: &PoolGeom, out: &mut [T]) {
    let ([h, w], [oh, ow], [kh, kw], [sy, sx], c) =
        (g.in_hw, g.out_hw, g.kernel, g.stride, g.channels);
    let max = |a: T, b: T| if b > a { b } else { a };
    if [kh, kw, sy, sx] == [2, 2, 2, 2] {
        // The common case: two input rows per output row, fixed-size windows that vectorise.
        for (xs, os) in x
            .chunks_exact(h * w * c)
            .zip(out.chunks_exact_mut(oh * ow * c))
            .take(batch)
        {
            for oy in 0..oh {
                let r0 = &xs[2 * oy * w * c..][..2 * ow * c];
                let r1 = &xs[(2 * oy + 1) * w * c..][..2 * ow * c];
                let dst = &mut os[oy * ow * c..][..ow * c];
                for (ox, d) in dst.chunks_exact_mut(c).enumerate() {
                    let (a0, a1) = r0[2 * ox * c..][..2 * c].split_at(c);
                    let (b0, b1) = r1[2 * ox * c..][..2 * c].split_at(c);
                    for i in 0..c {
                        d[i] = max(max(a0[i], a1[i]), max(b0[i], b1[i]));
                    }
                }
            }
        }
        return;
    }
    for b in 0..batch {
        let xs = &x[b * h * w * c..(b + 1) * h * w * c];
        let os = &mut out[b * oh * ow * c..(b + 1) * oh * ow * c];
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = &mut os[(oy * ow + ox) * c..][..c];
                let first = (oy * sy * w + ox * sx) * c;
                dst.copy_from_slice(&xs[first..first + c]);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let s = ((oy * sy + ky) * w + ox * sx + kx) * c;
                        dst.iter_mut()
                            .zip(&xs[s..s + c])
                            .for_each(|(d, &v)| *d = max(*d, v));
                    }
                }
            }
        }
    }
}

/// Average pooling of `batch` `[h, w, c]` float samples into `out` (`[oh, ow, c]` each):
/// the window's sum over whole channel rows, divided by the window's size.
pub fn avgpool_f32(x: &[f32], batch: usize, g: &PoolGeom, out: &mut [f32]) {
    let inv = 1.0 / (g.kernel[0] * g.kernel[1]) as f32;
    sums(x, batch, g, out, |d, a: f32| *d = a * inv);
}

/// Average pooling of u8 values that share one scale and zero point `zp`: the window's
/// integer sum of `q - zp` divided by its size, rounded half to even (as ONNX's
/// `QuantizeLinear` rounds the float mean), plus `zp`. The mean of `q - zp` needs no other
/// scale, so the output keeps the input's quantization parameters (as PyTorch's quantized
/// `avg_pool2d` does) and the pool stays integer.
pub fn avgpool_u8(x: &[u8], batch: usize, g: &PoolGeom, zp: u8, out: &mut [u8]) {
    let n = g.kernel[0] * g.kernel[1];
    match MeanU8::new(n, zp) {
        Some(mean) => sums(x, batch, g, out, |d, a: i32| *d = mean.of(a)),
        // A window whose lifted sums would not fit an i32: i64 sums, an exact division.
        None => sums(x, batch, g, out, |d, a: i64| {
            *d = mean_exact(a, n as i64, zp)
        }),
    }
}

/// [`avgpool_u8`]'s output from the sum `a` of `n` bytes by i64 division (windows too large
/// for [`MeanU8`]; the reference [`MeanU8::of`] is tested against).
fn mean_exact(a: i64, n: i64, zp: u8) -> u8 {
    let zp = i64::from(zp);
    let (q, r) = ((a - n * zp).div_euclid(n), (a - n * zp).rem_euclid(n));
    let q = q + i64::from(2 * r > n || (2 * r == n && q & 1 == 1));
    (q + zp).clamp(0, 255) as u8
}

/// [`avgpool_u8`]'s output from a window's sum.
#[derive(Debug, Clone, Copy)]
struct MeanU8 {
    n: i32,
    /// `255 n - n zp`: the sum less the zero points, lifted by 255 windows so that it is
    /// never negative.
    lift: i32,
    inv: f32,
    zp: i32,
}

impl MeanU8 {
    /// Windows up to this many values: their lifted sums (at most `510 n`) fit an i32.
    const MAX_N: usize = (i32::MAX / 510) as usize;

    /// `None` for a window of more than [`Self::MAX_N`] values (2052 x 2052).
    fn new(n: usize, zp: u8) -> Option<Self> {
        if !(1..=Self::MAX_N).contains(&n) {
            return None;
        }
        let n = n as i32;
        Some(Self {
            n,
            lift: 255 * n - n * i32::from(zp),
            inv: 1.0 / n as f32,
            zp: i32::from(zp),
        })
    }

    /// `clamp(round_half_even((a - n zp) / n) + zp, 0, 255)` for the sum `a` of `n` bytes.
    #[inline(always)]
    fn of(&self, a: i32) -> u8 {
        let (q, r) = self.div(a + self.lift);
        let q = q - 255;
        let q = q + i32::from(2 * r > self.n || (2 * r == self.n && q & 1 == 1));
        (q + self.zp).clamp(0, 255) as u8
    }

    /// `(a / n, a % n)` for `0 <= a <= 510 n`: through the reciprocal, then one step either
    /// way. The quotient is at most 510, so the float estimate is off by at most one (its
    /// relative error is a few 2^-24): low at some exact multiples (n = 41), high just
    /// below some (n = 224 * 224). A division per output had been most of the pool's time
    /// (it does not vectorize; this does).
    #[inline(always)]
    fn div(&self, a: i32) -> (i32, i32) {
        let n = self.n;
        let q = (a as f32 * self.inv) as i32;
        let r = a - q * n;
        let step = i32::from(r >= n) - i32::from(r < 0);
        (q + step, r - step * n)
    }
}

/// Channels summed per block in [`window_sums`]: a block's sums stay in registers across
/// the window's taps (summing whole channel rows into a buffer stored and reloaded every
/// sum per tap: the MobileNet-like model's 7x7 global average pool over 64 channels took
/// 26-30 us at batch 64).
const SUM_BLOCK: usize = 16;

/// [`window_sums`], compiled for AVX2 where the CPU has it: the crate's portable code
/// targets baseline x86-64 (SSE2), which widens u8 to i32 in several steps per vector. The
/// same sums in the same order, so the same values.
fn sums<T: Copy, A: Copy + Default + std::ops::AddAssign + From<T>>(
    x: &[T],
    batch: usize,
    g: &PoolGeom,
    out: &mut [T],
    put: impl Fn(&mut T, A),
) {
    #[cfg(target_arch = "x86_64")]
    if crate::CpuFeatures::get().avx2 {
        // SAFETY: the CPU has AVX2.
        return unsafe { window_sums_avx2(x, batch, g, out, put) };
    }
    window_sums(x, batch, g, out, put)
}

/// [`window_sums`] with AVX2 enabled.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn window_sums_avx2<T: Copy, A: Copy + Default + std::ops::AddAssign + From<T>>(
    x: &[T],
    batch: usize,
    g: &PoolGeom,
    out: &mut [T],
    put: impl Fn(&mut T, A),
) {
    window_sums(x, batch, g, out, put)
}

/// For every output pixel, the channel-wise sums of its window (in the window's order),
/// handed to `put` per channel with the output value to write.
#[inline(always)]
fn window_sums<T: Copy, A: Copy + Default + std::ops::AddAssign + From<T>>(
    x: &[T],
    batch: usize,
    g: &PoolGeom,
    out: &mut [T],
    put: impl Fn(&mut T, A),
) {
    let ([h, w], [oh, ow], [kh, kw], [sy, sx], c) =
        (g.in_hw, g.out_hw, g.kernel, g.stride, g.channels);
    for (xs, os) in x
        .chunks_exact(h * w * c)
        .zip(out.chunks_exact_mut(oh * ow * c))
        .take(batch)
    {
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = &mut os[(oy * ow + ox) * c..][..c];
                let tap = |ky: usize, kx: usize| ((oy * sy + ky) * w + ox * sx + kx) * c;
                let mut c0 = 0;
                while c0 + SUM_BLOCK <= c {
                    let mut acc = [A::default(); SUM_BLOCK];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let row: &[T; SUM_BLOCK] = xs[tap(ky, kx) + c0..][..SUM_BLOCK]
                                .try_into()
                                .expect("a block of channels");
                            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += A::from(v));
                        }
                    }
                    (dst[c0..c0 + SUM_BLOCK].iter_mut().zip(acc)).for_each(|(d, a)| put(d, a));
                    c0 += SUM_BLOCK;
                }
                if c0 < c {
                    let mut acc = [A::default(); SUM_BLOCK];
                    let n = c - c0;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let row = &xs[tap(ky, kx) + c0..][..n];
                            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += A::from(v));
                        }
                    }
                    (dst[c0..].iter_mut().zip(acc)).for_each(|(d, a)| put(d, a));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::im2col as nchw;

    fn geom(c: usize, hw: [usize; 2], pad: usize, stride: usize) -> ConvGeom {
        ConvGeom::new(c, hw, [3, 3], [stride; 2], [pad; 2]).expect("a 3x3 kernel fits")
    }

    #[test]
    fn padding_rewrites_every_border_value_whatever_the_buffer_held() {
        for (c, hw, [py, px]) in [
            (1, [5, 4], [1, 1]),
            (16, [3, 3], [0, 1]),
            (3, [4, 6], [2, 0]),
            (2, [2, 2], [0, 0]),
            (5, [3, 2], [1, 3]),
        ] {
            let g = ConvGeom::new(c, hw, [1, 1], [1, 1], [py, px]).expect("a 1x1 kernel fits");
            let x: Vec<i32> = (1..=(c * hw[0] * hw[1]) as i32).collect();
            let (hp, wp) = (hw[0] + 2 * py, hw[1] + 2 * px);
            let mut want = vec![-1; hp * wp * c + SLACK];
            for y in 0..hw[0] {
                for xx in 0..hw[1] {
                    for ch in 0..c {
                        want[((y + py) * wp + xx + px) * c + ch] = x[(y * hw[1] + xx) * c + ch];
                    }
                }
            }
            for held in [0, want.len() - 3, want.len(), want.len() + 7] {
                let mut out = vec![99; held];
                pad(&x, &g, -1, &mut out);
                assert_eq!(out, want, "c={c} {hw:?} pad {py},{px}, buffer of {held}");
            }
        }
    }

    #[test]
    fn a_padded_buffer_starts_on_a_line_and_holds_what_pad_writes() {
        let mut bufs = (Padded::<f32>::default(), Padded::<u8>::default());
        assert!(bufs.0.values().is_empty());
        // Geometries that grow, shrink and grow the buffer again (a reallocation moves it).
        for (c, hw) in [(16, [7, 7]), (3, [28, 28]), (32, [14, 14]), (1, [2, 3])] {
            let g = geom(c, hw, 1, 1);
            let x: Vec<f32> = (0..c * hw[0] * hw[1]).map(|i| i as f32).collect();
            let y: Vec<f32> = x.iter().map(|v| -v).collect();
            let (mut want, mut want_y) = (Vec::new(), Vec::new());
            pad(&x, &g, 0.5, &mut want);
            pad(&y, &g, 0.5, &mut want_y);
            bufs.0.pad(&x, &g, 0.5);
            assert_eq!(bufs.0.values(), &want[..], "c={c} {hw:?}");
            assert_eq!(bufs.0.values().as_ptr() as usize % 64, 0, "c={c} {hw:?}");
            bufs.0.pad_interior(&y, &g);
            assert_eq!(bufs.0.values(), &want_y[..], "c={c} {hw:?}, second sample");
            let b: Vec<u8> = x.iter().map(|&v| v as u8).collect();
            let mut want_b = Vec::new();
            pad(&b, &g, 7, &mut want_b);
            bufs.1.pad(&b, &g, 7);
            assert_eq!(bufs.1.values(), &want_b[..], "c={c} {hw:?}, bytes");
            assert_eq!(
                bufs.1.values().as_ptr() as usize % 64,
                0,
                "c={c} {hw:?}, bytes"
            );
        }
    }

    #[test]
    fn a_second_sample_copied_into_the_padded_buffer_is_that_sample_padded() {
        for (c, hw, p) in [
            (1, [5, 4], [1, 1]),
            (3, [4, 6], [2, 0]),
            (2, [3, 3], [0, 0]),
        ] {
            let g = ConvGeom::new(c, hw, [1, 1], [1, 1], p).expect("a 1x1 kernel fits");
            let first: Vec<i32> = (1..=(c * hw[0] * hw[1]) as i32).collect();
            let second: Vec<i32> = first.iter().map(|v| 1000 - v).collect();
            let (mut out, mut want) = (Vec::new(), Vec::new());
            pad(&first, &g, -1, &mut out);
            pad_interior(&second, &g, &mut out);
            pad(&second, &g, -1, &mut want);
            assert_eq!(out, want, "c={c} {hw:?} pad {p:?}");
        }
    }

    #[test]
    #[should_panic(expected = "buffer not padded for this geometry")]
    fn copying_into_a_buffer_padded_for_another_geometry_panics() {
        let g = ConvGeom::new(1, [4, 4], [1, 1], [1, 1], [1, 1]).expect("fits");
        let other = ConvGeom::new(1, [4, 5], [1, 1], [1, 1], [1, 1]).expect("fits");
        let mut out = Vec::new();
        pad(&[0; 20], &other, 0, &mut out);
        pad_interior(&[0; 16], &g, &mut out);
    }

    #[test]
    fn padded_segments_read_the_nchw_im2col_rows_permuted() {
        for (c, hw, pad_, stride) in [(1, [5, 4], 1, 1), (3, [6, 5], 1, 2), (4, [4, 4], 0, 1)] {
            let g = geom(c, hw, pad_, stride);
            let x: Vec<i32> = (0..(c * hw[0] * hw[1]) as i32).collect();
            let k = c * 9;
            let mut col = vec![0; g.pixels() * k];
            nchw::im2col(&x, &g, -1, &mut col, k);
            let mut xn = vec![0; x.len()];
            to_nhwc(&x, [c, hw[0], hw[1]], &mut xn);
            let mut padded = Vec::new();
            pad(&xn, &g, -1, &mut padded);
            let taps = Taps::new(&g);
            for p in 0..g.pixels() {
                // The NHWC reduction = the NCHW im2col row read in (ky, kx, c) order.
                let want = conv_weight(&col[p * k..(p + 1) * k], 1, &g, taps.seg_len);
                let got: Vec<i32> = taps
                    .offsets
                    .iter()
                    .flat_map(|o| {
                        let s = taps.base(p) + o;
                        padded[s..s + taps.seg_len].to_vec()
                    })
                    .collect();
                assert_eq!(got, want, "c={c} pixel {p}");
            }
        }
    }

    #[test]
    fn weight_rows_are_zero_padded_to_the_segment() {
        let g = geom(1, [4, 4], 1, 1);
        let w: Vec<i32> = (1..=9).collect();
        assert_eq!(
            conv_weight(&w, 1, &g, 4),
            [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0]
        );
    }

    #[test]
    fn layout_round_trip_and_pool() {
        let x: Vec<u8> = (0..2 * 4 * 4).map(|v| (v * 7 % 31) as u8).collect();
        let mut n = vec![0; x.len()];
        to_nhwc(&x, [2, 4, 4], &mut n);
        let mut back = vec![0; x.len()];
        to_nchw(&n, [2, 4, 4], &mut back);
        assert_eq!(back, x);
        let g = PoolGeom {
            channels: 2,
            in_hw: [4, 4],
            kernel: [2, 2],
            stride: [2, 2],
            out_hw: [2, 2],
        };
        let mut pooled = vec![0; 8];
        maxpool(&n, 1, &g, &mut pooled);
        // Channel 1, output (1, 0): max of NCHW plane 1 rows 2-3, columns 0-1.
        let plane = &x[16..];
        let want = [plane[8], plane[9], plane[12], plane[13]]
            .into_iter()
            .max()
            .unwrap();
        // NHWC index of (y 1, x 0, channel 1): (1 * 2 + 0) * 2 + 1.
        assert_eq!(pooled[5], want);
    }

    #[test]
    fn flatten_columns_follow_the_nhwc_order() {
        let w: Vec<i32> = (0..2 * 12).collect();
        let p = flatten_columns(&w, 2, [3, 2, 2]);
        // Column (y, x, c) = (0, 1, 2) of output 1 is NCHW index 2 * 4 + 1.
        assert_eq!(p[12 + 3 + 2], w[12 + 2 * 4 + 1]);
    }

    #[test]
    fn the_u8_mean_is_the_exact_rounded_quotient_for_every_sum() {
        let exact = |a: i32, n: i32, zp: i32| mean_exact(a.into(), n.into(), zp as u8);
        // Windows from 1 value to a 56x56 global pool: every possible sum.
        for n in [
            1, 2, 3, 4, 5, 7, 9, 16, 25, 49, 100, 196, 255, 256, 784, 3136,
        ] {
            for zp in [0u8, 3, 128, 254, 255] {
                let m = MeanU8::new(n as usize, zp).expect("a window MeanU8 takes");
                for a in 0..=255 * n {
                    assert_eq!(m.of(a), exact(a, n, i32::from(zp)), "n {n} zp {zp} sum {a}");
                }
            }
        }
        // The quotient itself next to every multiple, where the float estimate can be off
        // by one in either direction (low for 41, high for 224 * 224 and 26,272).
        for n in [41, 61, 26_272, 224 * 224] {
            let m = MeanU8::new(n as usize, 0).expect("a window MeanU8 takes");
            for a in (0..=510).flat_map(|k| (-2..=2).map(move |d| k * n + d)) {
                if (0..=510 * n).contains(&a) {
                    assert_eq!(m.div(a), (a / n, a % n), "n {n} sum {a}");
                }
            }
        }
        // A 224x224 global pool: near every multiple of n and its half, and a stride through
        // the rest.
        let n = 224 * 224;
        for zp in [0u8, 77, 255] {
            let m = MeanU8::new(n as usize, zp).expect("a window MeanU8 takes");
            let near = (0..=510).flat_map(|k| (-3..=3).map(move |d| k * n / 2 + d));
            for a in near.chain((0..=255 * n).step_by(997)) {
                if (0..=255 * n).contains(&a) {
                    assert_eq!(m.of(a), exact(a, n, i32::from(zp)), "n {n} zp {zp} sum {a}");
                }
            }
        }
    }

    #[test]
    fn a_window_too_large_for_i32_sums_pools_exactly() {
        // 2053 x 2053 values: past MeanU8's windows, so i64 sums and the exact division.
        let hw = 2053;
        assert!(MeanU8::new(hw * hw, 0).is_none() && MeanU8::new(2052 * 2052, 0).is_some());
        // Values near 255, so that a lifted i32 sum (510 n past 2^31) would wrap.
        let x: Vec<u8> = (0..hw * hw).map(|i| 255 - u8::from(i % 97 == 0)).collect();
        let g = PoolGeom::new(1, [hw, hw], [hw, hw], [1, 1]).expect("a global pool");
        let sum: u64 = x.iter().map(|&v| u64::from(v)).sum();
        for zp in [0u8, 3] {
            let mut out = [0u8];
            avgpool_u8(&x, 1, &g, zp, &mut out);
            let mean = sum as f64 / (hw * hw) as f64;
            let want = ((mean - f64::from(zp)).round_ties_even() + f64::from(zp)).clamp(0.0, 255.0);
            assert_eq!(f64::from(out[0]), want, "zp {zp}");
        }
    }

    #[test]
    fn average_pools_match_the_window_means() {
        // 4x4, global window and a 2x2/2 window; u8 rounds half to even around the zero
        // point. Channels within one block of sums, one whole block, and whole blocks with a
        // part block after them.
        let (h, w, zp) = (4, 4, 3u8);
        for (c, k, s) in [2, 16, 21, 35].into_iter().flat_map(|c| {
            [([4, 4], [1, 1]), ([2, 2], [2, 2]), ([3, 2], [1, 2])].map(|(k, s)| (c, k, s))
        }) {
            let x: Vec<u8> = (0..(c * h * w) as u32)
                .map(|v| (v * 7 % 251) as u8)
                .collect();
            let g = PoolGeom::new(c, [h, w], k, s).expect("fits");
            let len = c * g.out_hw[0] * g.out_hw[1];
            let (mut q, mut f) = (vec![0u8; len], vec![0f32; len]);
            avgpool_u8(&x, 1, &g, zp, &mut q);
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            avgpool_f32(&xf, 1, &g, &mut f);
            for oy in 0..g.out_hw[0] {
                for ox in 0..g.out_hw[1] {
                    for ch in 0..c {
                        let mut sum = 0u32;
                        for ky in 0..k[0] {
                            for kx in 0..k[1] {
                                sum += x[((oy * s[0] + ky) * w + ox * s[1] + kx) * c + ch] as u32;
                            }
                        }
                        let mean = sum as f64 / (k[0] * k[1]) as f64;
                        let o = (oy * g.out_hw[1] + ox) * c + ch;
                        assert!((f[o] as f64 - mean).abs() < 1e-4, "{k:?} {o}");
                        let want = (mean - zp as f64).round_ties_even() + zp as f64;
                        assert_eq!(q[o] as f64, want, "{k:?} {o}");
                    }
                }
            }
        }
    }

    /// The byte max pool's AVX2 build gives the portable build's bytes: the 2x2 form and a
    /// general window.
    #[test]
    fn byte_max_pools_agree_across_builds() {
        let (h, w, c) = (6, 8, 19);
        let x: Vec<u8> = (0..(c * h * w * 2) as u32)
            .map(|v| (v * 29 % 256) as u8)
            .collect();
        for (k, s) in [([2, 2], [2, 2]), ([3, 2], [1, 2])] {
            let g = PoolGeom::new(c, [h, w], k, s).expect("fits");
            let len = 2 * c * g.out_hw[0] * g.out_hw[1];
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            maxpool(&x, 2, &g, &mut a);
            maxpool_rows(&x, 2, &g, &mut b);
            assert_eq!(a, b, "{k:?}");
        }
    }

    /// The AVX2 build of the window sums gives the portable build's values (the same sums
    /// in the same order), u8 and f32, blocks and part blocks.
    #[test]
    fn window_sums_agree_across_builds() {
        let (h, w, c) = (7, 7, 37);
        let x: Vec<u8> = (0..(c * h * w * 2) as u32)
            .map(|v| (v * 13 % 256) as u8)
            .collect();
        let xf: Vec<f32> = x.iter().map(|&v| v as f32 * 0.37 - 11.0).collect();
        let g = PoolGeom::new(c, [h, w], [7, 7], [1, 1]).expect("fits");
        // The sums' residues, so that every bit of them counts.
        let residue = |d: &mut u8, v: i32| *d = (v % 251) as u8;
        let (mut qa, mut qb) = (vec![0u8; 2 * c], vec![0u8; 2 * c]);
        sums(&x, 2, &g, &mut qa, residue);
        window_sums(&x, 2, &g, &mut qb, residue);
        assert_eq!(qa, qb);
        let (mut fa, mut fb) = (vec![0f32; 2 * c], vec![0f32; 2 * c]);
        sums(&xf, 2, &g, &mut fa, |d, v: f32| *d = v);
        window_sums(&xf, 2, &g, &mut fb, |d, v: f32| *d = v);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fa), bits(&fb), "same bits");
    }
}
