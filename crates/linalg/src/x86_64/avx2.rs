//! AVX2 GEMM, exact. The tempting `vpmaddubsw` (u8 x i8 pairs summed into i16) saturates:
//! 255 * 127 * 2 = 64,770 does not fit in i16. This path widens instead: weights are packed
//! once as i16 pairs, activations broadcast as two i16, and `vpmaddwd` sums each pair into
//! an i32 lane exactly. Half the work per instruction of VNNI, but never wrong.
#[cfg(not(target_endian = "little"))]
compile_error!("x86_64 is little-endian; the pair packing below relies on it");

use std::arch::x86_64::*;

use super::avx2_requant;
use crate::frame::epilogue::{Epilogue, OutLayout};
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
    // The block's activations as i16 pairs, one i32 per (row, pair): the inner loop
    // broadcasts them straight from memory instead of assembling each from two bytes.
    let mut pairs = vec![0i32; MR * p.k2];
    let mut row0 = 0;
    while row0 < m {
        let rows = MR.min(m - row0);
        for r in 0..rows {
            let row = &a[(row0 + r) * lda..(row0 + r) * lda + k];
            // The pair `lo | hi << 16` is the two bytes zero-extended to u16, side by side in
            // memory (x86 is little-endian): a plain widening copy, which compiles to
            // `vpmovzxbw` (the byte-by-byte assembly it replaces was a third of an int8
            // convolution's time).
            widen(row, &mut pairs[r * p.k2..(r + 1) * p.k2]);
        }
        // SAFETY: the caller enabled the target features this function is compiled for.
        unsafe {
            match rows {
                4 => block::<4>(&pairs, p, &mut tile, stride),
                3 => block::<3>(&pairs, p, &mut tile, stride),
                2 => block::<2>(&pairs, p, &mut tile, stride),
                _ => block::<1>(&pairs, p, &mut tile, stride),
            }
        }
        // A row-major static epilogue runs in vectors (see `avx2_requant`).
        epilogue(epi, row0, rows, n, &tile, stride);
        row0 += rows;
    }
}

/// [`Epilogue::apply_block`] with the static row-major case in vectors (see
/// [`avx2_requant`]); every x86-64 path with AVX2 uses it for blocks computed outside its
/// GEMMs.
pub fn epilogue(
    epi: &mut Epilogue,
    row0: usize,
    rows: usize,
    n: usize,
    acc: &[i32],
    stride: usize,
) {
    match epi {
        Epilogue::Requant {
            offset,
            requant,
            zo,
            lo,
            hi,
            layout: OutLayout::RowMajor,
            out,
        } if crate::CpuFeatures::get().avx2 && avx2_requant::supported(requant) => {
            avx2_requant::requant_rows(
                acc,
                rows,
                n,
                stride,
                offset,
                requant,
                (*zo, *lo, *hi),
                &mut out[row0 * n..],
            )
        }
        _ => epi.apply_block(row0, rows, n, acc, stride),
    }
}

/// `row` as u16 values in the i32 slots of `pairs` (two per slot), the last half-slot 0
/// when `row` has an odd length.
fn widen(row: &[u8], pairs: &mut [i32]) {
    debug_assert_eq!(pairs.len(), row.len().div_ceil(2));
    // SAFETY: an i32 slice viewed as twice as many u16 (same allocation, alignment 4 >= 2).
    let halves = unsafe {
        std::slice::from_raw_parts_mut(pairs.as_mut_ptr().cast::<u16>(), pairs.len() * 2)
    };
    for (h, &v) in halves.iter_mut().zip(row) {
        *h = v as u16;
    }
    if row.len() % 2 == 1 {
        halves[row.len()] = 0;
    }
}

/// Panels of 8 outputs taken two at a time: each broadcast pair feeds two `vpmaddwd`s,
/// and `R` rows x 2 panels of accumulators stay in registers.
#[target_feature(enable = "avx2")]
unsafe fn block<const R: usize>(pairs: &[i32], p: &Packed16, tile: &mut [i32], stride: usize) {
    let mut panel = 0;
    while panel + 2 <= p.panels {
        // SAFETY: as the caller; panels `panel` and `panel + 1` exist.
        unsafe { panels::<R, 2>(pairs, p, panel, tile, stride) };
        panel += 2;
    }
    if panel < p.panels {
        // SAFETY: as above, for the last panel.
        unsafe { panels::<R, 1>(pairs, p, panel, tile, stride) };
    }
}

#[target_feature(enable = "avx2")]
unsafe fn panels<const R: usize, const P: usize>(
    pairs: &[i32],
    p: &Packed16,
    first: usize,
    tile: &mut [i32],
    stride: usize,
) {
    let k2 = p.k2;
    let panel_len = k2 * NR16 * 2;
    assert!(pairs.len() >= R * k2 && p.data.len() >= (first + P) * panel_len);
    let b: [*const i16; P] = std::array::from_fn(|j| p.data[(first + j) * panel_len..].as_ptr());
    let mut acc = [[_mm256_setzero_si256(); P]; R];
    for g in 0..k2 {
        // SAFETY: group g < k2 lies inside each panel (k2 * 16 i16), checked above.
        let wv: [__m256i; P] =
            std::array::from_fn(|j| unsafe { _mm256_loadu_si256(b[j].add(g * NR16 * 2).cast()) });
        for r in 0..R {
            let bc = _mm256_set1_epi32(pairs[r * k2 + g]);
            for j in 0..P {
                acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(bc, wv[j]));
            }
        }
    }
    for r in 0..R {
        for j in 0..P {
            // SAFETY: writes 8 i32 inside the row's `stride` slots.
            unsafe {
                _mm256_storeu_si256(
                    tile[r * stride + (first + j) * NR16..].as_mut_ptr().cast(),
                    acc[r][j],
                )
            };
        }
    }
}
