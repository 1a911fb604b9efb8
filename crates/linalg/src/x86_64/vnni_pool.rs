//! AVX-512 VNNI: a convolution and the 2x2, stride-2 max pool after it, whole pooling
//! windows in registers.
//!
//! The general fused path ([`super::avx512::conv_pool_rows`]) runs the convolution's GEMM
//! in row blocks and max-reduces each row into an i32 buffer of pooled pixels, which costs
//! a table of pooled targets per block, a load, max and store per conv pixel, and a pass
//! that fills the buffer and another that requantizes it. With a small reduction (the
//! first convolution of an image model: one input channel, K = 9, three `vpdpbusd` per
//! pixel) that bookkeeping was four fifths of the layer. Here a block holds whole pooling
//! windows: the four conv pixels of each of `P` neighbouring pooled pixels accumulate in
//! their own registers, are maxed there, and the pooled pixels are requantized and stored
//! straight away. Same bytes: requantization is monotonic, so it commutes with max.

use std::arch::x86_64::*;

use super::avx512::{Fused, PanelRequant};
use crate::frame::pack::Packed;
use crate::frame::rows::{PoolShape, Rows};

/// Whether [`conv_pool2`] takes these rows and pool: a convolution's rows (segments of
/// whole groups of 4) under a 2x2 window of stride 2.
pub(super) fn applies(rows: &Rows<u8>, pool: &PoolShape) -> bool {
    pool.window == [2, 2] && rows.conv_steps().is_some() && rows.seg_len.is_multiple_of(4)
}

/// Panics unless every conv pixel a 2x2 window of `pool` covers is a row of `rows` (so
/// that `Rows::check` bounds every read a 2x2 kernel makes for it) and `out` holds the
/// pooled map of `n` outputs: what each such kernel checks first.
pub(super) fn check_windows(rows: &Rows<u8>, pool: &PoolShape, n: usize, out: &[u8]) {
    let [ph, pw] = pool.out_hw;
    assert!(
        2 * pw <= pool.ow && 2 * ph * pool.ow <= rows.m,
        "pool windows reach past the conv output"
    );
    assert!(out.len() >= ph * pw * n, "output buffer too short");
}

/// The conv + pool of `rows` into `out` (`[pooled pixels, n]`). The caller has checked the
/// CPU, the rows' reach (`Rows::check`) and [`applies`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
pub(super) unsafe fn conv_pool2(
    rows: &Rows<u8>,
    p: &Packed,
    f: &Fused,
    c: (i32, i32, i32),
    pool: PoolShape,
    n: usize,
    out: &mut [u8],
) {
    check_windows(rows, &pool, n, out);
    let [ph, pw] = pool.out_hw;
    let steps = rows.conv_steps().expect("a convolution's rows");
    let k = Kernel { rows, p, steps, pw };
    // Panels two at a time (2 pooled pixels x 4 conv pixels x 2 panels = 16 accumulators),
    // a last odd one alone (4 pooled pixels x 4 conv pixels); each pass requantizes with
    // its panels' constants loaded once.
    let mut panel = 0;
    while panel < p.panels {
        let rq = |i: usize| PanelRequant::new(f, (panel + i).min(p.panels - 1), c, n);
        let pair = [rq(0), rq(1)];
        // SAFETY (both): same target features; reads and writes as documented on `block`.
        if panel + 1 < p.panels {
            unsafe { k.pass::<2, 4, true>(panel, &pair, ph, out) };
            panel += 2;
        } else {
            unsafe { k.pass::<4, 8, false>(panel, &pair, ph, out) };
            panel += 1;
        }
    }
}

/// What every block of one call shares.
struct Kernel<'a> {
    rows: &'a Rows<'a, u8>,
    p: &'a Packed,
    /// `(row_step, col_step)` of the conv rows.
    steps: (usize, usize),
    /// Pooled width.
    pw: usize,
}

impl Kernel<'_> {
    /// Every pooled pixel against `panel` (and `panel + 1` where `PAIR`), `P` pooled pixels
    /// of a row at a time, then the row's last `pw % P` together.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    unsafe fn pass<const P: usize, const W: usize, const PAIR: bool>(
        &self,
        panel: usize,
        rq: &[PanelRequant; 2],
        ph: usize,
        out: &mut [u8],
    ) {
        for py in 0..ph {
            let mut px = 0;
            // SAFETY (every call): same target features and bounds as this function's.
            while px + P <= self.pw {
                if P == 4 && !PAIR && self.pw - px == 5 {
                    // The row's last five in one block (20 accumulators) rather than four
                    // and a lone one, whose 4 accumulators wait on `vpdpbusd`'s latency:
                    // LeNet's second conv has rows of five pooled pixels.
                    unsafe { self.block::<5, 10, false>(panel, rq, py, px, out) };
                    px += 5;
                    continue;
                }
                unsafe { self.block::<P, W, PAIR>(panel, rq, py, px, out) };
                px += P;
            }
            // The row's last pw % P pooled pixels in one block (P = 4 leaves up to 3).
            unsafe {
                match self.pw - px {
                    3 => self.block::<3, 6, PAIR>(panel, rq, py, px, out),
                    2 => self.block::<2, 4, PAIR>(panel, rq, py, px, out),
                    1 => self.block::<1, 2, PAIR>(panel, rq, py, px, out),
                    _ => {}
                }
            }
        }
    }

    /// Pooled pixels `(py, px0..px0 + P)` against `panel` (and the next where `PAIR`):
    /// conv pixels `(2py + dy, 2px0 + x)`, `dy < 2`, `x < W = 2P`, each in its own
    /// accumulator, maxed over each window and requantized into `out`'s rows
    /// `py * pw + px0..`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    #[inline]
    unsafe fn block<const P: usize, const W: usize, const PAIR: bool>(
        &self,
        panel: usize,
        rq: &[PanelRequant; 2],
        py: usize,
        px0: usize,
        out: &mut [u8],
    ) {
        const { assert!(W == 2 * P, "two conv columns per pooled pixel") };
        let (rows, p) = (self.rows, self.p);
        let (row_step, col_step) = self.steps;
        let base = 2 * py * row_step + 2 * px0 * col_step;
        let a = rows.a.as_ptr();
        let groups = rows.seg_len / 4;
        let w0p = p.panel(panel).as_ptr();
        let w1p = if PAIR {
            p.panel(panel + 1).as_ptr()
        } else {
            w0p
        };
        let mut acc0 = [[_mm512_setzero_si512(); W]; 2];
        let mut acc1 = [[_mm512_setzero_si512(); W]; 2];
        let mut g = 0;
        for &s in rows.segs {
            for q in 0..groups {
                // SAFETY: group g < k4 lies inside each panel (k4 * 64 bytes).
                let w0 = unsafe { _mm512_loadu_si512(w0p.add(g * 64).cast()) };
                let w1 = unsafe { _mm512_loadu_si512(w1p.add(g * 64).cast()) };
                for (dy, (acc0, acc1)) in acc0.iter_mut().zip(&mut acc1).enumerate() {
                    let mut at = a.wrapping_add(base + dy * row_step + s + 4 * q);
                    for x in 0..W {
                        // SAFETY: conv pixel (2py + dy, 2px0 + x) is a row of `rows`
                        // (asserted in `conv_pool2`); its group q of segment s ends inside
                        // `a` by `Rows::check`.
                        let v = unsafe { at.cast::<i32>().read_unaligned() };
                        at = at.wrapping_add(col_step);
                        let xv = _mm512_set1_epi32(v);
                        acc0[x] = _mm512_dpbusd_epi32(acc0[x], xv, w0);
                        if PAIR {
                            acc1[x] = _mm512_dpbusd_epi32(acc1[x], xv, w1);
                        }
                    }
                }
                g += 1;
            }
        }
        let t0 = py * self.pw + px0;
        let n = rq[0].n();
        for (acc, rq) in [&acc0, &acc1]
            .into_iter()
            .zip(rq)
            .take(1 + usize::from(PAIR))
        {
            // (A loop, not `array::from_fn`: a closure may stay an out-of-line call.)
            let mut pooled = [_mm512_setzero_si512(); P];
            for (i, v) in pooled.iter_mut().enumerate() {
                let top = _mm512_max_epi32(acc[0][2 * i], acc[0][2 * i + 1]);
                let bottom = _mm512_max_epi32(acc[1][2 * i], acc[1][2 * i + 1]);
                *v = _mm512_max_epi32(top, bottom);
            }
            if P == 4 && rq.packs_rows() {
                // One whole panel: the 4 pooled pixels are 64 consecutive bytes.
                // SAFETY: this function's target features are `store4`'s contract.
                unsafe {
                    rq.store4::<false>([pooled[0], pooled[1], pooled[2], pooled[3]], t0 * n, out)
                };
                continue;
            }
            for (i, v) in pooled.into_iter().enumerate() {
                rq.store::<false>(v, (t0 + i) * n, 1, out);
            }
        }
    }
}
