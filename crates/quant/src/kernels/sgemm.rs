//! The float engine's GEMM and direct convolution: `out[r][n] = act(bias[n] + sum_k
//! rows[r][k] * w[n][k])`, row-major (a linear layer's output, or a channels-last map).
//!
//! Same structure as the int8 kernels: weights packed once at load into panels of [`NR`]
//! outputs (`[panel][k][16]`, zero-filled), a register block of up to `MR` rows x 2 panels
//! of accumulators, the activation broadcast from where it lies ([`Rows`], so a convolution
//! reads its padded input tap by tap with no im2col matrix), and bias + ReLU applied to the
//! registers before the one store. AVX-512F and AVX2 + FMA are picked at run time; the
//! scalar loop is the reference. Paths differ only in float rounding (FMA against
//! multiply-add), which the tests bound.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::KernelPath;
use super::rows::Rows;

/// Outputs per panel (one 512-bit register of f32).
pub const NR: usize = 16;

/// Float weights `[n, k]` packed in panels, with their bias padded to whole panels.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedF32 {
    /// `[panel][k][NR]`.
    pub data: Vec<f32>,
    /// Bias, `panels * NR` (zero past `n`).
    pub bias: Vec<f32>,
    /// Outputs.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `ceil(n / NR)`.
    pub panels: usize,
}

impl PackedF32 {
    /// Packs `w` (`[n, k]`, row-major) and `bias` (`[n]`).
    pub fn new(w: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert!(
            w.len() == n * k && bias.len() == n,
            "weights must be [n, k], bias [n]"
        );
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for j in 0..n {
            let (p, lane) = (j / NR, j % NR);
            for kk in 0..k {
                data[(p * k + kk) * NR + lane] = w[j * k + kk];
            }
        }
        let mut b = vec![0f32; panels * NR];
        b[..n].copy_from_slice(bias);
        Self {
            data,
            bias: b,
            n,
            k,
            panels,
        }
    }
}

/// Whether the AVX2 path can run (it needs FMA as well).
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX-512 path can run.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs the layer on `path` (the engine's integer path names the float one too: scalar,
/// AVX2 + FMA, AVX-512), falling back to scalar where the CPU lacks the instructions.
pub fn sgemm(path: KernelPath, rows: &Rows<f32>, w: &PackedF32, relu: bool, out: &mut [f32]) {
    assert_eq!(rows.k(), w.k, "row length must match the weights");
    assert!(out.len() >= rows.m * w.n, "output buffer too short");
    rows.check();
    match path {
        // SAFETY: features checked; `rows.check()` bounds every activation read, the packed
        // buffers hold panels * k * NR values and the stores are masked to `n`.
        KernelPath::Avx512Vnni if avx512() => unsafe { avx512_rows(rows, w, relu, out) },
        KernelPath::Avx512Vnni | KernelPath::Avx2 if avx2_fma() => unsafe {
            avx2_rows(rows, w, relu, out)
        },
        _ => scalar(rows, w, relu, out),
    }
}

/// The reference: plain loops over the packed weights.
fn scalar(rows: &Rows<f32>, w: &PackedF32, relu: bool, out: &mut [f32]) {
    let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
    for r in 0..rows.m {
        let base = rows.base(r);
        let o = &mut out[r * w.n..(r + 1) * w.n];
        for (j, v) in o.iter_mut().enumerate() {
            let (p, lane) = (j / NR, j % NR);
            let panel = &w.data[p * w.k * NR..];
            let mut acc = 0f32;
            let mut g = 0;
            for &s in rows.segs {
                for x in &rows.a[base + s..base + s + rows.seg_len] {
                    acc += x * panel[g * NR + lane];
                    g += 1;
                }
            }
            *v = (acc + w.bias[j]).max(floor);
        }
    }
}

/// Rows per AVX-512 block: 8 rows x 2 panels = 16 of the 32 vector registers.
const MR512: usize = 8;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_rows(rows: &Rows<f32>, w: &PackedF32, relu: bool, out: &mut [f32]) {
    let mut row0 = 0;
    if w.panels == 1 {
        // One panel (n <= 16, e.g. a first conv): 16 rows share each weight load.
        while rows.m - row0 >= 16 {
            // SAFETY: same features as the caller; bounds as documented in `sgemm`.
            unsafe { block512_one::<16>(rows, row0, w, relu, out) };
            row0 += 16;
        }
    }
    while row0 < rows.m {
        let r = MR512.min(rows.m - row0);
        // SAFETY: same features as the caller; bounds as documented in `sgemm`.
        unsafe {
            match r {
                8 => block512::<8>(rows, row0, w, relu, out),
                7 => block512::<7>(rows, row0, w, relu, out),
                6 => block512::<6>(rows, row0, w, relu, out),
                5 => block512::<5>(rows, row0, w, relu, out),
                4 => block512::<4>(rows, row0, w, relu, out),
                3 => block512::<3>(rows, row0, w, relu, out),
                2 => block512::<2>(rows, row0, w, relu, out),
                _ => block512::<1>(rows, row0, w, relu, out),
            }
        }
        row0 += r;
    }
}

/// [`block512`] for a single panel and up to 16 rows: 16 accumulators, one weight load
/// per 16 FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block512_one<const R: usize>(
    rows: &Rows<f32>,
    row0: usize,
    w: &PackedF32,
    relu: bool,
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
            let mut v = _mm512_add_ps(*v, bias);
            if relu {
                v = _mm512_max_ps(v, _mm512_setzero_ps());
            }
            _mm512_mask_storeu_ps(out.as_mut_ptr().add((row0 + r) * w.n), mask, v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block512<const R: usize>(
    rows: &Rows<f32>,
    row0: usize,
    w: &PackedF32,
    relu: bool,
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
                    let mut v = _mm512_add_ps(*a, bias);
                    if relu {
                        v = _mm512_max_ps(v, _mm512_setzero_ps());
                    }
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add((row0 + r) * w.n + c0), mask, v);
                }
            }
        }
        panel += if two { 2 } else { 1 };
    }
}

/// Rows per AVX2 block: 6 rows x one 16-wide panel (two 8-lane halves) = 12 of 16 registers.
const MR256: usize = 6;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_rows(rows: &Rows<f32>, w: &PackedF32, relu: bool, out: &mut [f32]) {
    let mut row0 = 0;
    while row0 < rows.m {
        let r = MR256.min(rows.m - row0);
        // SAFETY: same features as the caller; bounds as documented in `sgemm`.
        unsafe {
            match r {
                6 => block256::<6>(rows, row0, w, relu, out),
                5 => block256::<5>(rows, row0, w, relu, out),
                4 => block256::<4>(rows, row0, w, relu, out),
                3 => block256::<3>(rows, row0, w, relu, out),
                2 => block256::<2>(rows, row0, w, relu, out),
                _ => block256::<1>(rows, row0, w, relu, out),
            }
        }
        row0 += r;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block256<const R: usize>(
    rows: &Rows<f32>,
    row0: usize,
    w: &PackedF32,
    relu: bool,
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
            let mut v = [0f32; NR];
            // SAFETY: two 8-lane stores into a 16-value array; bias holds panels * NR values.
            unsafe {
                let (b0, b1) = (
                    _mm256_loadu_ps(w.bias.as_ptr().add(c0)),
                    _mm256_loadu_ps(w.bias.as_ptr().add(c0 + 8)),
                );
                let (mut x0, mut x1) = (_mm256_add_ps(lo[r], b0), _mm256_add_ps(hi[r], b1));
                if relu {
                    x0 = _mm256_max_ps(x0, _mm256_setzero_ps());
                    x1 = _mm256_max_ps(x1, _mm256_setzero_ps());
                }
                _mm256_storeu_ps(v.as_mut_ptr(), x0);
                _mm256_storeu_ps(v.as_mut_ptr().add(8), x1);
            }
            out[(row0 + r) * w.n + c0..][..valid].copy_from_slice(&v[..valid]);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn avx512_rows(_: &Rows<f32>, _: &PackedF32, _: bool, _: &mut [f32]) {
    unreachable!("checked by avx512()")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn avx2_rows(_: &Rows<f32>, _: &PackedF32, _: bool, _: &mut [f32]) {
    unreachable!("checked by avx2_fma()")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rows::RowMap;
    use quantlab_data::rng::Rng;

    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
        let n = b.len();
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|t| x[r * k + t] as f64 * w[j * k + t] as f64)
                    .sum();
                let v = s as f32 + b[j];
                y[r * n + j] = if relu { v.max(0.0) } else { v };
            }
        }
        y
    }

    #[test]
    fn every_path_matches_the_reference_on_odd_shapes() {
        let mut rng = Rng::new(5);
        for case in 0..40 {
            let (m, n, k) = (1 + rng.below(30), 1 + rng.below(70), 1 + rng.below(90));
            let x: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32 - 0.5).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.uniform() as f32 - 0.5).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
            let relu = case % 2 == 0;
            let want = reference(&x, m, k, &w, &b, relu);
            let p = PackedF32::new(&w, &b, n, k);
            for path in KernelPath::ALL {
                let mut y = vec![f32::NAN; m * n];
                sgemm(path, &Rows::matrix(&x, m, k, k), &p, relu, &mut y);
                for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - e).abs() < 1e-4,
                        "{path:?} m={m} n={n} k={k} at {i}: {a} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn segmented_rows_equal_their_concatenation() {
        // Two segments of 3 values, rows 4 apart: the same as the explicit [m, 6] matrix.
        let a: Vec<f32> = (0..40).map(|v| v as f32 * 0.25).collect();
        let segs = [0, 10];
        let rows = Rows {
            a: &a,
            m: 5,
            segs: &segs,
            seg_len: 3,
            map: RowMap::Strided { lda: 4 },
        };
        let flat: Vec<f32> = (0..5)
            .flat_map(|r| [0, 1, 2, 10, 11, 12].map(|o| a[r * 4 + o]))
            .collect();
        let w: Vec<f32> = (0..7 * 6).map(|v| (v % 5) as f32 - 2.0).collect();
        let p = PackedF32::new(&w, &[0.5; 7], 7, 6);
        let want = reference(&flat, 5, 6, &w, &[0.5; 7], false);
        for path in KernelPath::ALL {
            let mut y = vec![0f32; 35];
            sgemm(path, &rows, &p, false, &mut y);
            assert!(
                y.iter().zip(&want).all(|(a, e)| (a - e).abs() < 1e-4),
                "{path:?}"
            );
        }
    }
}
