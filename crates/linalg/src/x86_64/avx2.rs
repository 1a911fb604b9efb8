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
use crate::frame::rows::Rows;
use crate::frame::weights::PackedI8;

/// Rows per block.
pub const MR: usize = 4;

/// Rows whose accumulators are handed to the epilogue at once: it builds its per-output
/// constants once per call, which at one block (4 rows) cost a fifth of the requantization.
const CHUNK: usize = 4 * MR;

/// Runs the GEMM over `m` rows of `a` (row stride `lda >= k`) and feeds the epilogue.
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
    qgemm_rows(&Rows::matrix(a, m, w.k, lda), w, epi)
}

/// The GEMM over any [`Rows`] (a convolution read tap by tap from its padded input): each
/// block's rows are widened to i16 pairs straight from where they lie, so no im2col matrix
/// is gathered first (gathering, then widening the gathered copy, was a fifth of an int8
/// CNN's time).
pub fn qgemm_rows(rows: &Rows<u8>, w: &PackedI8, epi: &mut Epilogue) {
    assert!(
        crate::CpuFeatures::get().avx2,
        "AVX2 kernel called on a CPU without it"
    );
    assert_eq!(
        rows.k(),
        w.k,
        "rows and weights disagree on the reduction length"
    );
    rows.check();
    SCRATCH.with(|s| {
        let (tile, pairs) = &mut *s.borrow_mut();
        // SAFETY: AVX2 was checked above; loads stay inside the packed buffer.
        unsafe { qgemm_avx2(rows, w, epi, tile, pairs) }
    })
}

thread_local! {
    /// A block's accumulator tile and widened activations, reused across calls (a
    /// convolution calls once per sample).
    static SCRATCH: std::cell::RefCell<(Vec<i32>, Vec<i32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

#[target_feature(enable = "avx2")]
unsafe fn qgemm_avx2(
    rows: &Rows<u8>,
    w: &PackedI8,
    epi: &mut Epilogue,
    tile: &mut Vec<i32>,
    pairs: &mut Vec<i32>,
) {
    let (m, n) = (rows.m, w.n);
    let p = w.pairs();
    let stride = p.panels * NR16;
    tile.clear();
    tile.resize(CHUNK * stride, 0);
    // The block's activations as i16 pairs, one i32 per (row, pair): the inner loop
    // broadcasts them straight from memory instead of assembling each from two bytes.
    pairs.clear();
    pairs.resize(MR * p.k2, 0);
    let mut chunk0 = 0;
    while chunk0 < m {
        let chunk_rows = CHUNK.min(m - chunk0);
        let mut done = 0;
        while done < chunk_rows {
            let row0 = chunk0 + done;
            let n_rows = MR.min(chunk_rows - done);
            let bases = rows.bases::<MR>(row0);
            for (r, &base) in bases.iter().enumerate().take(n_rows) {
                // The pair `lo | hi << 16` is the two bytes zero-extended to u16, side by
                // side in memory (x86 is little-endian): a widening copy per segment.
                // Safe to call: this function enables AVX2 too.
                widen_row(rows, base, &mut pairs[r * p.k2..(r + 1) * p.k2]);
            }
            let t = &mut tile[done * stride..];
            // SAFETY: the caller enabled the target features this function is compiled for.
            unsafe {
                match n_rows {
                    4 => block::<4>(pairs, p, t, stride),
                    3 => block::<3>(pairs, p, t, stride),
                    2 => block::<2>(pairs, p, t, stride),
                    _ => block::<1>(pairs, p, t, stride),
                }
            }
            done += n_rows;
        }
        // A row-major static epilogue runs in vectors (see `avx2_requant`), its per-output
        // constants built once per chunk of rows.
        epilogue(epi, chunk0, chunk_rows, n, tile, stride);
        chunk0 += chunk_rows;
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

/// The row at `base` (its segments, concatenated) as u16 values in the i32 slots of
/// `pairs` (two per slot), the last half-slot 0 when the row has an odd length.
#[target_feature(enable = "avx2")]
fn widen_row(rows: &Rows<u8>, base: usize, pairs: &mut [i32]) {
    let k = rows.k();
    assert_eq!(pairs.len(), k.div_ceil(2));
    // SAFETY: an i32 slice viewed as twice as many u16 (same allocation, alignment 4 >= 2).
    let halves = unsafe {
        std::slice::from_raw_parts_mut(pairs.as_mut_ptr().cast::<u16>(), pairs.len() * 2)
    };
    let len = rows.seg_len;
    for (i, &s) in rows.segs.iter().enumerate() {
        widen(
            &rows.a[base + s..base + s + len],
            &mut halves[i * len..(i + 1) * len],
        );
    }
    if k % 2 == 1 {
        halves[k] = 0;
    }
}

/// `src` zero-extended into `dst` (same length) with `vpmovzxbw`, 16, 8 and 4 bytes at a
/// time: a convolution's segments are short (4 bytes for a 3x3 kernel over one channel),
/// too short for the compiler's own vectorisation to start.
#[target_feature(enable = "avx2")]
fn widen(src: &[u8], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    let n = src.len();
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    // SAFETY: every load reads `src[i..i + w]` and every store writes `dst[i..i + w]` with
    // `i + w <= n`, the length of both.
    unsafe {
        while i + 16 <= n {
            let v = _mm_loadu_si128(sp.add(i).cast());
            _mm256_storeu_si256(dp.add(i).cast(), _mm256_cvtepu8_epi16(v));
            i += 16;
        }
        if i + 8 <= n {
            let v = _mm_loadl_epi64(sp.add(i).cast());
            _mm_storeu_si128(dp.add(i).cast(), _mm_cvtepu8_epi16(v));
            i += 8;
        }
        if i + 4 <= n {
            let v = _mm_cvtsi32_si128(sp.add(i).cast::<i32>().read_unaligned());
            _mm_storel_epi64(dp.add(i).cast(), _mm_cvtepu8_epi16(v));
            i += 4;
        }
    }
    for j in i..n {
        dst[j] = src[j] as u16;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length through the 16-, 8- and 4-byte steps and the byte tail, at every
    /// alignment, with the bytes around the destination left alone.
    #[test]
    fn widening_equals_zero_extension_at_every_length() {
        if !crate::CpuFeatures::get().avx2 {
            println!("avx2 widening: AVX2 not available on this CPU, not run");
            return;
        }
        let src: Vec<u8> = (0..80u32).map(|i| (i * 37 + 200) as u8).collect();
        for start in 0..4 {
            for n in 0..60 {
                let mut dst = vec![0xBEEFu16; n + 2];
                // SAFETY: AVX2 was checked above.
                unsafe { widen(&src[start..start + n], &mut dst[1..n + 1]) };
                let want: Vec<u16> = src[start..start + n].iter().map(|&v| v as u16).collect();
                assert_eq!(&dst[1..n + 1], &want[..], "start {start}, length {n}");
                assert_eq!((dst[0], dst[n + 1]), (0xBEEF, 0xBEEF), "length {n}");
            }
        }
    }
}
