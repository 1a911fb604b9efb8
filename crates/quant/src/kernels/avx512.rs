//! AVX-512 VNNI GEMM: `vpdpbusd` multiplies 4 u8 activations by 4 i8 weights and adds the
//! four products into an i32 lane, 16 lanes per instruction, with no intermediate
//! saturation, so the result is exactly the scalar reference's.
//!
//! Register blocking: up to [`MR`] rows x 2 panels of 16 outputs = 16 accumulators; each
//! step loads 2 x 64 bytes of packed weights and broadcasts 4 activation bytes per row.
//! Accumulators for a row block go to a small stack-resident tile and straight into the
//! epilogue, so no i32 tensor is written to memory.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::epilogue::Epilogue;
use super::pack::NR;
use super::weights::QWeights;

/// Rows per block.
pub const MR: usize = 8;

/// Whether this CPU has the instructions the kernel uses.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The four activation bytes of group `g` of a row (zero-filled past `k`) as one u32.
#[inline(always)]
fn quad(row: &[u8], g: usize, k: usize) -> i32 {
    let o = 4 * g;
    if o + 4 <= k {
        i32::from_le_bytes([row[o], row[o + 1], row[o + 2], row[o + 3]])
    } else {
        let mut b = [0u8; 4];
        for (t, v) in b.iter_mut().enumerate() {
            if o + t < k {
                *v = row[o + t];
            }
        }
        i32::from_le_bytes(b)
    }
}

/// Runs the GEMM (see [`super::qgemm`]); callers must check [`available`].
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &QWeights, epi: &mut Epilogue) {
    assert!(
        available(),
        "AVX-512 VNNI kernel called on a CPU without it"
    );
    assert!(
        m == 0 || a.len() >= (m - 1) * lda + w.k,
        "activation buffer too short"
    );
    // SAFETY: the CPU features were checked above; all indexing below is bounds-checked or
    // within the packed buffer, whose size is panels * k4 * 64 bytes.
    unsafe { qgemm_vnni(m, a, lda, w, epi) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn qgemm_vnni(m: usize, a: &[u8], lda: usize, w: &QWeights, epi: &mut Epilogue) {
    let (n, k) = (w.n, w.k);
    let p = &w.packed;
    let stride = p.panels * NR;
    let mut tile = vec![0i32; MR * stride];
    let mut row0 = 0;
    while row0 < m {
        let rows = MR.min(m - row0);
        // SAFETY: the caller enabled the target features this function is compiled for.
        unsafe {
            match rows {
                8 => block::<8>(a, lda, row0, k, p, &mut tile, stride),
                7 => block::<7>(a, lda, row0, k, p, &mut tile, stride),
                6 => block::<6>(a, lda, row0, k, p, &mut tile, stride),
                5 => block::<5>(a, lda, row0, k, p, &mut tile, stride),
                4 => block::<4>(a, lda, row0, k, p, &mut tile, stride),
                3 => block::<3>(a, lda, row0, k, p, &mut tile, stride),
                2 => block::<2>(a, lda, row0, k, p, &mut tile, stride),
                _ => block::<1>(a, lda, row0, k, p, &mut tile, stride),
            }
        }
        epi.apply_block(row0, rows, n, &tile, stride);
        row0 += rows;
    }
}

/// Computes rows `row0..row0+R` against every panel into `tile` (`R x stride` i32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn block<const R: usize>(
    a: &[u8],
    lda: usize,
    row0: usize,
    k: usize,
    p: &super::pack::Packed,
    tile: &mut [i32],
    stride: usize,
) {
    let rows: [&[u8]; R] = std::array::from_fn(|r| &a[(row0 + r) * lda..(row0 + r) * lda + k]);
    let full = k / 4;
    let mut panel = 0;
    while panel < p.panels {
        let two = panel + 1 < p.panels;
        let b0 = p.panel(panel).as_ptr();
        let b1 = if two { p.panel(panel + 1).as_ptr() } else { b0 };
        let mut acc0 = [_mm512_setzero_si512(); R];
        let mut acc1 = [_mm512_setzero_si512(); R];
        let mut step = |g: usize, quads: [i32; R]| {
            // SAFETY: group g < k4 lies inside each panel (k4 * 64 bytes).
            let w0 = unsafe { _mm512_loadu_si512(b0.add(g * 64).cast()) };
            let w1 = unsafe { _mm512_loadu_si512(b1.add(g * 64).cast()) };
            for r in 0..R {
                let x = _mm512_set1_epi32(quads[r]);
                acc0[r] = _mm512_dpbusd_epi32(acc0[r], x, w0);
                if two {
                    acc1[r] = _mm512_dpbusd_epi32(acc1[r], x, w1);
                }
            }
        };
        for g in 0..full {
            // SAFETY: 4 * g + 4 <= k, the length of every row slice.
            step(
                g,
                std::array::from_fn(|r| unsafe {
                    rows[r].as_ptr().add(4 * g).cast::<i32>().read_unaligned()
                }),
            );
        }
        if full < p.k4 {
            step(full, std::array::from_fn(|r| quad(rows[r], full, k)));
        }
        for r in 0..R {
            let dst = &mut tile[r * stride + panel * NR..];
            // SAFETY: each store writes 16 i32 inside the row's `stride` (panels * 16) slots.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), acc0[r]) };
            if two {
                unsafe { _mm512_storeu_si512(dst[NR..].as_mut_ptr().cast(), acc1[r]) };
            }
        }
        panel += if two { 2 } else { 1 };
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn qgemm_vnni(_: usize, _: &[u8], _: usize, _: &QWeights, _: &mut Epilogue) {
    unreachable!("checked by available()")
}
