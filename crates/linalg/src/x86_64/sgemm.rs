//! The float GEMM's AVX-512F and AVX2 + FMA kernels (see [`crate::frame::sgemm`] for the
//! layout): a register block of rows x 2 panels, bias and ReLU applied in registers.

use std::arch::x86_64::*;

use crate::CpuFeatures;
use crate::frame::activation::Activation;
use crate::frame::rows::Rows;
use crate::frame::sgemm::{NR, PackedF32, check};

/// The layer on AVX-512F.
pub fn sgemm_avx512(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    assert!(
        CpuFeatures::get().avx512f,
        "AVX-512 kernel called on a CPU without it"
    );
    check(rows, w, out);
    // SAFETY: features checked; `check` bounds every activation read, the packed buffers
    // hold panels * k * NR values and the stores are masked to `n`.
    unsafe { avx512_rows(rows, w, act, out) }
}

/// The layer on AVX2 + FMA.
pub fn sgemm_avx2_fma(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    assert!(
        CpuFeatures::get().avx2_fma(),
        "AVX2 + FMA kernel called on a CPU without it"
    );
    check(rows, w, out);
    // SAFETY: as above.
    unsafe { avx2_rows(rows, w, act, out) }
}

/// Rows per AVX-512 block: 8 rows x 2 panels = 16 of the 32 vector registers.
const MR512: usize = 8;

#[target_feature(enable = "avx512f")]
unsafe fn avx512_rows(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    let mut row0 = 0;
    if w.panels == 1 && rows.k() <= MAX_SMALL_K {
        // SAFETY: same features as the caller; bounds as documented in `sgemm`.
        unsafe { small512(rows, w, act, out) };
        return;
    }
    if w.panels == 1 {
        // One panel (n <= 16, e.g. a first conv): 16 rows share each weight load.
        while rows.m - row0 >= 16 {
            // SAFETY: same features as the caller; bounds as documented in `sgemm`.
            unsafe { block512_one::<16>(rows, row0, w, act, out) };
            row0 += 16;
        }
    }
    while row0 < rows.m {
        let r = MR512.min(rows.m - row0);
        // SAFETY: same features as the caller; bounds as documented in `sgemm`.
        unsafe {
            match r {
                8 => block512::<8>(rows, row0, w, act, out),
                7 => block512::<7>(rows, row0, w, act, out),
                6 => block512::<6>(rows, row0, w, act, out),
                5 => block512::<5>(rows, row0, w, act, out),
                4 => block512::<4>(rows, row0, w, act, out),
                3 => block512::<3>(rows, row0, w, act, out),
                2 => block512::<2>(rows, row0, w, act, out),
                _ => block512::<1>(rows, row0, w, act, out),
            }
        }
        row0 += r;
    }
}

/// Rows [`small_rows`] runs at a time.
const SMALL_ROWS: usize = 8;

/// Longest reduction [`small512`] takes: its weights stay in 16 of the 32 registers.
const MAX_SMALL_K: usize = 16;

/// [`small_rows`] for the layer's reduction length `k <= MAX_SMALL_K`.
///
/// # Safety
/// As [`small_rows`].
#[target_feature(enable = "avx512f")]
unsafe fn small512(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    // SAFETY (each): this function's contract.
    unsafe {
        match rows.k() {
            1 => small_rows::<1>(rows, w, act, out),
            2 => small_rows::<2>(rows, w, act, out),
            3 => small_rows::<3>(rows, w, act, out),
            4 => small_rows::<4>(rows, w, act, out),
            5 => small_rows::<5>(rows, w, act, out),
            6 => small_rows::<6>(rows, w, act, out),
            7 => small_rows::<7>(rows, w, act, out),
            8 => small_rows::<8>(rows, w, act, out),
            9 => small_rows::<9>(rows, w, act, out),
            10 => small_rows::<10>(rows, w, act, out),
            11 => small_rows::<11>(rows, w, act, out),
            12 => small_rows::<12>(rows, w, act, out),
            13 => small_rows::<13>(rows, w, act, out),
            14 => small_rows::<14>(rows, w, act, out),
            15 => small_rows::<15>(rows, w, act, out),
            _ => small_rows::<16>(rows, w, act, out),
        }
    }
}

/// One panel (`n <= 16`) over a reduction of `K <= 16` values (a first convolution over
/// one channel: K = 9), every row: the K weight vectors stay in registers for the whole
/// call and four rows go at a time, each value broadcast from memory. The general kernel
/// reloads a weight vector per reduction step and addresses 16 rows from a table of bases
/// (the MobileNet-like model's first conv, 1 -> 16 3x3, ran at 22% of the f32 peak). The
/// same sums in the same order (from zero, then the bias), so the same values.
///
/// # Safety
/// The CPU has AVX-512F; `check` passed; `w` is one panel of `K` values a row.
#[target_feature(enable = "avx512f")]
unsafe fn small_rows<const K: usize>(
    rows: &Rows<f32>,
    w: &PackedF32,
    act: Activation,
    out: &mut [f32],
) {
    let a = rows.a.as_ptr();
    let mut wk = [_mm512_setzero_ps(); K];
    let mut at = [0usize; K];
    for g in 0..K {
        // SAFETY: the panel holds K * NR values.
        wk[g] = unsafe { _mm512_loadu_ps(w.data.as_ptr().add(g * NR)) };
        at[g] = rows.segs[g / rows.seg_len] + g % rows.seg_len;
    }
    let mask: u16 = if w.n == NR { u16::MAX } else { (1 << w.n) - 1 };
    // SAFETY (the block): every base is a row's below `m`, whose K reads `check` bounded;
    // the bias holds NR values; stores are masked to the row's `n` within `m * n`.
    unsafe {
        let bias = _mm512_loadu_ps(w.bias.as_ptr());
        let o = out.as_mut_ptr();
        let mut row0 = 0;
        while row0 + SMALL_ROWS <= rows.m {
            let bases: [usize; SMALL_ROWS] = rows.bases(row0);
            let mut acc = [_mm512_setzero_ps(); SMALL_ROWS];
            for g in 0..K {
                for r in 0..SMALL_ROWS {
                    let x = _mm512_set1_ps(*a.add(bases[r] + at[g]));
                    acc[r] = _mm512_fmadd_ps(x, wk[g], acc[r]);
                }
            }
            for (r, v) in acc.iter().enumerate() {
                let v = act512(_mm512_add_ps(*v, bias), act);
                _mm512_mask_storeu_ps(o.add((row0 + r) * w.n), mask, v);
            }
            row0 += SMALL_ROWS;
        }
        for row in row0..rows.m {
            let base = rows.base(row);
            let mut acc = _mm512_setzero_ps();
            for g in 0..K {
                acc = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(base + at[g])), wk[g], acc);
            }
            let v = act512(_mm512_add_ps(acc, bias), act);
            _mm512_mask_storeu_ps(o.add(row * w.n), mask, v);
        }
    }
}

/// [`block512`] for a single panel and up to 16 rows: 16 accumulators, one weight load
/// per 16 FMAs.
#[target_feature(enable = "avx512f")]
unsafe fn block512_one<const R: usize>(
    rows: &Rows<f32>,
    row0: usize,
    w: &PackedF32,
    act: Activation,
    out: &mut [f32],
) {
    let bases: [usize; R] = rows.bases(row0);
    let a = rows.a.as_ptr();
    let b0 = w.data.as_ptr();
    let mut acc = [_mm512_setzero_ps(); R];
    let mut g = 0;
    for &s in rows.segs {
        for c in 0..rows.seg_len {
            // SAFETY: g < k; activation offsets bounded by `rows.check()`.
            unsafe {
                let w0 = _mm512_loadu_ps(b0.add(g * NR));
                for r in 0..R {
                    let x = _mm512_set1_ps(*a.add(bases[r] + s + c));
                    acc[r] = _mm512_fmadd_ps(x, w0, acc[r]);
                }
            }
            g += 1;
        }
    }
    let mask: u16 = if w.n == NR { u16::MAX } else { (1 << w.n) - 1 };
    // SAFETY: the bias holds NR values; stores are masked to the row's `n`.
    unsafe {
        let bias = _mm512_loadu_ps(w.bias.as_ptr());
        for (r, v) in acc.iter().enumerate() {
            let v = act512(_mm512_add_ps(*v, bias), act);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add((row0 + r) * w.n), mask, v);
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn block512<const R: usize>(
    rows: &Rows<f32>,
    row0: usize,
    w: &PackedF32,
    act: Activation,
    out: &mut [f32],
) {
    let bases: [usize; R] = rows.bases(row0);
    let a = rows.a.as_ptr();
    let k = w.k;
    let mut panel = 0;
    while panel < w.panels {
        let two = panel + 1 < w.panels;
        // SAFETY: panel (and panel + 1 when `two`) < panels; each holds k * NR values.
        let b0 = unsafe { w.data.as_ptr().add(panel * k * NR) };
        let b1 = if two { unsafe { b0.add(k * NR) } } else { b0 };
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        let mut g = 0;
        for &s in rows.segs {
            for c in 0..rows.seg_len {
                // SAFETY: g < k; activation offsets bounded by `rows.check()`.
                unsafe {
                    let w0 = _mm512_loadu_ps(b0.add(g * NR));
                    if two {
                        let w1 = _mm512_loadu_ps(b1.add(g * NR));
                        for r in 0..R {
                            let x = _mm512_set1_ps(*a.add(bases[r] + s + c));
                            acc0[r] = _mm512_fmadd_ps(x, w0, acc0[r]);
                            acc1[r] = _mm512_fmadd_ps(x, w1, acc1[r]);
                        }
                    } else {
                        for r in 0..R {
                            let x = _mm512_set1_ps(*a.add(bases[r] + s + c));
                            acc0[r] = _mm512_fmadd_ps(x, w0, acc0[r]);
                        }
                    }
                }
                g += 1;
            }
        }
        for (p, acc) in [(panel, &acc0), (panel + 1, &acc1)]
            .into_iter()
            .take(1 + usize::from(two))
        {
            let c0 = p * NR;
            let valid = (w.n - c0).min(NR);
            let mask: u16 = if valid == NR {
                u16::MAX
            } else {
                (1 << valid) - 1
            };
            // SAFETY: the bias holds panels * NR values; stores are masked to the row's `n`.
            unsafe {
                let bias = _mm512_loadu_ps(w.bias.as_ptr().add(c0));
                for (r, a) in acc.iter().enumerate() {
                    let v = act512(_mm512_add_ps(*a, bias), act);
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add((row0 + r) * w.n + c0), mask, v);
                }
            }
        }
        panel += if two { 2 } else { 1 };
    }
}

/// Rows per AVX2 block: 6 rows x one 16-wide panel (two 8-lane halves) = 12 of 16 registers.
const MR256: usize = 6;

#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_rows(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    let mut row0 = 0;
    while row0 < rows.m {
        let r = MR256.min(rows.m - row0);
        // SAFETY: same features as the caller; bounds as documented in `sgemm`.
        unsafe {
            match r {
                6 => block256::<6>(rows, row0, w, act, out),
                5 => block256::<5>(rows, row0, w, act, out),
                4 => block256::<4>(rows, row0, w, act, out),
                3 => block256::<3>(rows, row0, w, act, out),
                2 => block256::<2>(rows, row0, w, act, out),
                _ => block256::<1>(rows, row0, w, act, out),
            }
        }
        row0 += r;
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn block256<const R: usize>(
    rows: &Rows<f32>,
    row0: usize,
    w: &PackedF32,
    act: Activation,
    out: &mut [f32],
) {
    let bases: [usize; R] = rows.bases(row0);
    let a = rows.a.as_ptr();
    let k = w.k;
    for panel in 0..w.panels {
        // SAFETY: panel < panels; it holds k * NR values.
        let b = unsafe { w.data.as_ptr().add(panel * k * NR) };
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let mut g = 0;
        for &s in rows.segs {
            for c in 0..rows.seg_len {
                // SAFETY: g < k; activation offsets bounded by `rows.check()`.
                unsafe {
                    let (w0, w1) = (
                        _mm256_loadu_ps(b.add(g * NR)),
                        _mm256_loadu_ps(b.add(g * NR + 8)),
                    );
                    for r in 0..R {
                        let x = _mm256_set1_ps(*a.add(bases[r] + s + c));
                        lo[r] = _mm256_fmadd_ps(x, w0, lo[r]);
                        hi[r] = _mm256_fmadd_ps(x, w1, hi[r]);
                    }
                }
                g += 1;
            }
        }
        let c0 = panel * NR;
        let valid = (w.n - c0).min(NR);
        for r in 0..R {
            let dst = &mut out[(row0 + r) * w.n + c0..][..valid];
            // SAFETY: the bias holds panels * NR values; the stores write 16 values into
            // `dst` when it has 16 (a full panel), else into a local array.
            unsafe {
                let (b0, b1) = (
                    _mm256_loadu_ps(w.bias.as_ptr().add(c0)),
                    _mm256_loadu_ps(w.bias.as_ptr().add(c0 + 8)),
                );
                let x0 = act256(_mm256_add_ps(lo[r], b0), act);
                let x1 = act256(_mm256_add_ps(hi[r], b1), act);
                // A full panel is stored straight into the output: through a local array
                // and a copy of variable length, every row had called memmove.
                if valid == NR {
                    _mm256_storeu_ps(dst.as_mut_ptr(), x0);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(8), x1);
                } else {
                    let mut v = [0f32; NR];
                    _mm256_storeu_ps(v.as_mut_ptr(), x0);
                    _mm256_storeu_ps(v.as_mut_ptr().add(8), x1);
                    dst.copy_from_slice(&v[..valid]);
                }
            }
        }
    }
}

/// `act` on 16 outputs: `max(v, 0)` (a NaN becomes 0, as `f32::max(NaN, 0)` gives), then
/// the cap's `min` (after the ReLU no NaN is left, so `min` is `f32::min`).
///
/// # Safety
/// The CPU has AVX-512F (inlined into the kernels, which take their features).
#[inline(always)]
unsafe fn act512(v: __m512, act: Activation) -> __m512 {
    // SAFETY: this function's contract.
    unsafe {
        match (act.relu, act.cap) {
            (false, _) => v,
            (true, None) => _mm512_max_ps(v, _mm512_setzero_ps()),
            (true, Some(c)) => {
                _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(c))
            }
        }
    }
}

/// [`act512`] on 8 outputs.
///
/// # Safety
/// The CPU has AVX (inlined into the kernels, which take their features).
#[inline(always)]
unsafe fn act256(v: __m256, act: Activation) -> __m256 {
    // SAFETY: this function's contract.
    unsafe {
        match (act.relu, act.cap) {
            (false, _) => v,
            (true, None) => _mm256_max_ps(v, _mm256_setzero_ps()),
            (true, Some(c)) => {
                _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(c))
            }
        }
    }
}
