//! AVX2 GEMM, exact. The tempting `vpmaddubsw` (u8 x i8 pairs summed into i16) saturates:
//! 255 * 127 * 2 = 64,770 does not fit in i16. This path widens instead: weights are packed
//! once as i16 pairs, activations broadcast as two i16, and `vpmaddwd` sums each pair into
//! an i32 lane exactly. Half the work per instruction of VNNI, but never wrong.

use std::arch::x86_64::*;

use crate::frame::epilogue::Epilogue;
use crate::frame::pack::{NR16, Packed16};
use crate::frame::weights::PackedI8;

/// Rows per block.
pub const MR: usize = 4;

/// Runs the GEMM over `m` rows of `a` (row stride `lda >= k`) and feeds the epilogue.
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
    assert!(
        crate::CpuFeatures::get().avx2,
        "AVX2 kernel called on a CPU without it"
    );
    assert!(
        m == 0 || a.len() >= (m - 1) * lda + w.k,
        "activation buffer too short"
    );
    // SAFETY: AVX2 was checked above; loads stay inside the packed buffer.
    unsafe { qgemm_avx2(m, a, lda, w, epi) }
}

#[target_feature(enable = "avx2")]
unsafe fn qgemm_avx2(m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
    let (n, k) = (w.n, w.k);
    let p = w.pairs();
    let stride = p.panels * NR16;
    let mut tile = vec![0i32; MR * stride];
    let mut row0 = 0;
    while row0 < m {
        let rows = MR.min(m - row0);
        // SAFETY: the caller enabled the target features this function is compiled for.
        unsafe {
            match rows {
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

#[target_feature(enable = "avx2")]
unsafe fn block<const R: usize>(
    a: &[u8],
    lda: usize,
    row0: usize,
    k: usize,
    p: &Packed16,
    tile: &mut [i32],
    stride: usize,
) {
    let rows: [&[u8]; R] = std::array::from_fn(|r| &a[(row0 + r) * lda..(row0 + r) * lda + k]);
    let pair = |row: &[u8], g: usize| -> i32 {
        let lo = row[2 * g] as i32;
        let hi = if 2 * g + 1 < k {
            row[2 * g + 1] as i32
        } else {
            0
        };
        lo | (hi << 16)
    };
    let panel_len = p.k2 * NR16 * 2;
    for panel in 0..p.panels {
        let b = p.data[panel * panel_len..(panel + 1) * panel_len].as_ptr();
        let mut acc = [_mm256_setzero_si256(); R];
        for g in 0..p.k2 {
            // SAFETY: group g < k2 lies inside the panel (k2 * 16 i16).
            let wv = unsafe { _mm256_loadu_si256(b.add(g * NR16 * 2).cast()) };
            for r in 0..R {
                acc[r] = _mm256_add_epi32(
                    acc[r],
                    _mm256_madd_epi16(_mm256_set1_epi32(pair(rows[r], g)), wv),
                );
            }
        }
        for r in 0..R {
            // SAFETY: writes 8 i32 inside the row's `stride` slots.
            unsafe {
                _mm256_storeu_si256(
                    tile[r * stride + panel * NR16..].as_mut_ptr().cast(),
                    acc[r],
                )
            };
        }
    }
}
