//! AVX-512F: a float convolution and the 2x2, stride-2 max pool after it, whole pooling
//! windows in registers (the float twin of [`super::vnni_pool`]).
//!
//! The general float path writes a sample's unpooled map and pools it afterwards; for the
//! first convolution of an image model (one input channel, K = 9: nine FMAs per pixel)
//! storing and re-reading the map, and the row blocks' bookkeeping, cost more than the
//! FMAs. Here the four conv pixels of each of `P` neighbouring pooled pixels accumulate in
//! their own registers, in the same order as the GEMM's, and only the pooled pixel gets
//! bias, ReLU and a store. Same bits as pooling afterwards: adding the bias (rounded) and
//! ReLU are monotonic, so they commute with max.

use std::arch::x86_64::*;

use crate::CpuFeatures;
use crate::frame::rows::{PoolShape, Rows};
use crate::frame::sgemm::{NR, PackedF32};

/// The conv + pool of `rows` into `out` (`[pooled pixels, n]`) if this kernel takes it (a
/// convolution's rows under a 2x2 window of stride 2); `false`, with nothing written,
/// otherwise.
pub fn sgemm_pool2_avx512(
    rows: &Rows<f32>,
    w: &PackedF32,
    relu: bool,
    pool: PoolShape,
    out: &mut [f32],
) -> bool {
    let Some(steps) = rows.conv_steps() else {
        return false;
    };
    if pool.window != [2, 2] {
        return false;
    }
    assert!(
        CpuFeatures::get().avx512f,
        "AVX-512 kernel called on a CPU without it"
    );
    let [ph, pw] = pool.out_hw;
    assert!(
        2 * pw <= pool.ow && 2 * ph * pool.ow <= rows.m,
        "pool windows reach past the conv output"
    );
    assert!(out.len() >= ph * pw * w.n, "output buffer too short");
    assert_eq!(rows.k(), w.k, "row length must match the weights");
    // Every pixel a window covers is a row of `rows`, so this bounds every read.
    rows.check();
    let k = Kernel {
        rows,
        w,
        relu,
        steps,
        pw,
    };
    let mut panel = 0;
    while panel < w.panels {
        // SAFETY (both): features checked above; reads bounded by `rows.check()` and the window
        // assertion, stores masked to `n` inside `out` (asserted).
        if panel + 1 < w.panels {
            unsafe { k.pass::<2, 4, true>(panel, ph, out) };
            panel += 2;
        } else {
            unsafe { k.pass::<4, 8, false>(panel, ph, out) };
            panel += 1;
        }
    }
    true
}

/// What every block of one call shares.
struct Kernel<'a> {
    rows: &'a Rows<'a, f32>,
    w: &'a PackedF32,
    relu: bool,
    /// `(row_step, col_step)` of the conv rows.
    steps: (usize, usize),
    /// Pooled width.
    pw: usize,
}

impl Kernel<'_> {
    /// Every pooled pixel against `panel` (and `panel + 1` where `PAIR`), `P` pooled pixels
    /// of a row at a time, then the row's last `pw % P` together.
    #[target_feature(enable = "avx512f")]
    unsafe fn pass<const P: usize, const W: usize, const PAIR: bool>(
        &self,
        panel: usize,
        ph: usize,
        out: &mut [f32],
    ) {
        for py in 0..ph {
            let mut px = 0;
            // SAFETY (every call): same target features and bounds as this function's.
            while px + P <= self.pw {
                unsafe { self.block::<P, W, PAIR>(panel, py, px, out) };
                px += P;
            }
            unsafe {
                match self.pw - px {
                    3 => self.block::<3, 6, PAIR>(panel, py, px, out),
                    2 => self.block::<2, 4, PAIR>(panel, py, px, out),
                    1 => self.block::<1, 2, PAIR>(panel, py, px, out),
                    _ => {}
                }
            }
        }
    }

    /// Pooled pixels `(py, px0..px0 + P)` against `panel` (and the next where `PAIR`):
    /// conv pixels `(2py + dy, 2px0 + x)`, `dy < 2`, `x < W = 2P`, each in its own
    /// accumulator, maxed over each window, biased, rectified and stored to `out`'s rows
    /// `py * pw + px0..`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const P: usize, const W: usize, const PAIR: bool>(
        &self,
        panel: usize,
        py: usize,
        px0: usize,
        out: &mut [f32],
    ) {
        const { assert!(W == 2 * P, "two conv columns per pooled pixel") };
        let (rows, w) = (self.rows, self.w);
        let (row_step, col_step) = self.steps;
        let base = 2 * py * row_step + 2 * px0 * col_step;
        let a = rows.a.as_ptr();
        // SAFETY: panel (and panel + 1 with PAIR) < panels; each holds k * NR values.
        let b0 = unsafe { w.data.as_ptr().add(panel * w.k * NR) };
        let b1 = if PAIR {
            unsafe { b0.add(w.k * NR) }
        } else {
            b0
        };
        let mut acc0 = [[_mm512_setzero_ps(); W]; 2];
        let mut acc1 = [[_mm512_setzero_ps(); W]; 2];
        let mut g = 0;
        for &s in rows.segs {
            for c in 0..rows.seg_len {
                // SAFETY: g < k inside each panel.
                let (w0, w1) = unsafe {
                    (
                        _mm512_loadu_ps(b0.add(g * NR)),
                        _mm512_loadu_ps(b1.add(g * NR)),
                    )
                };
                for (dy, (acc0, acc1)) in acc0.iter_mut().zip(&mut acc1).enumerate() {
                    let mut at = a.wrapping_add(base + dy * row_step + s + c);
                    for x in 0..W {
                        // SAFETY: conv pixel (2py + dy, 2px0 + x) is a row of `rows`
                        // (asserted by the caller); its value c of segment s lies inside
                        // `a` by `rows.check()`.
                        let v = _mm512_set1_ps(unsafe { at.read() });
                        at = at.wrapping_add(col_step);
                        acc0[x] = _mm512_fmadd_ps(v, w0, acc0[x]);
                        if PAIR {
                            acc1[x] = _mm512_fmadd_ps(v, w1, acc1[x]);
                        }
                    }
                }
                g += 1;
            }
        }
        let t0 = py * self.pw + px0;
        let n = w.n;
        for (j, acc) in [&acc0, &acc1]
            .into_iter()
            .enumerate()
            .take(1 + usize::from(PAIR))
        {
            let c0 = (panel + j) * NR;
            let valid = (n - c0).min(NR);
            let mask: u16 = if valid == NR {
                u16::MAX
            } else {
                (1 << valid) - 1
            };
            // SAFETY: the bias holds panels * NR values.
            let bias = unsafe { _mm512_loadu_ps(w.bias.as_ptr().add(c0)) };
            for i in 0..P {
                let top = _mm512_max_ps(acc[0][2 * i], acc[0][2 * i + 1]);
                let bottom = _mm512_max_ps(acc[1][2 * i], acc[1][2 * i + 1]);
                let mut v = _mm512_add_ps(_mm512_max_ps(top, bottom), bias);
                if self.relu {
                    v = _mm512_max_ps(v, _mm512_setzero_ps());
                }
                let at = (t0 + i) * n + c0;
                assert!(at + valid <= out.len(), "pooled row past the buffer");
                // SAFETY: `valid` lanes at `at`, inside `out` (asserted).
                unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), mask, v) };
            }
        }
    }
}
