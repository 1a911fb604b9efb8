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
use crate::frame::rows::{PoolShape, RowMap, Rows};
use crate::frame::weights::PackedI8;

/// Rows per block.
pub const MR: usize = 4;

/// Rows whose accumulators are handed to the epilogue at once: it builds its per-output
/// constants once per call, which at one block (4 rows) cost a fifth of the
/// requantization, and at 16 rows still a third of the MobileNet-like model's epilogue
/// time (1x1 convolutions: few multiply-adds per output). 64 rows of up to 64 outputs
/// keep the tile in L1 (16 KiB).
const CHUNK: usize = 16 * MR;

/// Runs the GEMM over `m` rows of `a` (row stride `lda >= k`) and feeds the epilogue.
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
    qgemm_rows(&Rows::matrix(a, m, w.k, lda), w, epi)
}

/// The GEMM over any [`Rows`] (a convolution read tap by tap from its padded input), read
/// where they lie, so no im2col matrix is gathered first (gathering, then widening the
/// gathered copy, was a fifth of an int8 CNN's time). A convolution's input is widened to
/// i16 once per call, not once per row that reads it (up to kh * kw times: widening per
/// row was a fifth of the residual CNN's int8 time, and the bulk of a 1-channel conv's).
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

/// Where a block's rows read their i16 pairs: row `r`'s pair `i` of segment `s` is the
/// `u16` pair at `rows[r] + segs[s] + 2 * i` (read as one i32: `lo | hi << 16`).
struct Src<'a, const R: usize> {
    rows: [*const u16; R],
    segs: &'a [usize],
    seg_pairs: usize,
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
    // A convolution's rows read a copy of the whole input (one sample) widened once: its
    // taps read each value up to kh * kw times, and even a 1x1 convolution's rows, read
    // once each, cost a widening call per row otherwise. Where the rows read less than half
    // of the input (a strided 1x1 convolution) or are a matrix (a linear layer's, whose
    // widened rows then stay in L1 block by block), each block's rows are widened as they
    // come, into one i32 per (row, pair) that the inner loop broadcasts from memory.
    let needed = m.saturating_mul(rows.k());
    let whole = rows.seg_len.is_multiple_of(2)
        && (rows.a.len() < needed
            || matches!(rows.map, RowMap::Conv { .. }) && rows.a.len() <= 2 * needed);
    pairs.clear();
    pairs.resize(
        if whole {
            rows.a.len().div_ceil(2)
        } else {
            MR * p.k2
        },
        0,
    );
    // SAFETY: an i32 buffer viewed as twice as many u16 (same allocation, alignment 4 >= 2).
    let halves = unsafe {
        std::slice::from_raw_parts_mut(pairs.as_mut_ptr().cast::<u16>(), pairs.len() * 2)
    };
    if whole {
        // Safe to call: this function enables AVX2 too.
        widen(rows.a, &mut halves[..rows.a.len()]);
    }
    let row_segs = [0];
    let (segs, seg_pairs): (&[usize], usize) = if whole {
        (rows.segs, rows.seg_len / 2)
    } else {
        (&row_segs, p.k2)
    };
    let mut chunk0 = 0;
    while chunk0 < m {
        let chunk_rows = CHUNK.min(m - chunk0);
        let mut done = 0;
        while done < chunk_rows {
            let row0 = chunk0 + done;
            let n_rows = MR.min(chunk_rows - done);
            let bases = rows.bases::<MR>(row0);
            if !whole {
                for (r, &base) in bases.iter().enumerate().take(n_rows) {
                    // The pair `lo | hi << 16` is the two bytes zero-extended to u16, side
                    // by side in memory (x86 is little-endian): a widening copy per segment.
                    widen_row(rows, base, &mut halves[r * 2 * p.k2..(r + 1) * 2 * p.k2]);
                }
            }
            let start = |r: usize| {
                let at = if whole { bases[r] } else { r * 2 * p.k2 };
                halves[at.min(halves.len())..].as_ptr()
            };
            let src = Src {
                rows: std::array::from_fn(start),
                segs,
                seg_pairs,
            };
            let t = &mut tile[done * stride..];
            // SAFETY: the caller enabled the target features this function is compiled for;
            // every pair a row reads lies in `halves`: inside the widened block of its row,
            // or (whole input) inside the input, which `Rows::check` proved for every row
            // (`n_rows` of the `MR` pointers are read).
            unsafe {
                match n_rows {
                    4 => block::<4>(&src, p, t, stride),
                    3 => block::<3>(&src.first::<3>(), p, t, stride),
                    2 => block::<2>(&src.first::<2>(), p, t, stride),
                    _ => block::<1>(&src.first::<1>(), p, t, stride),
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

impl<'a> Src<'a, MR> {
    /// The first `R` rows.
    fn first<const R: usize>(&self) -> Src<'a, R> {
        Src {
            rows: std::array::from_fn(|r| self.rows[r]),
            segs: self.segs,
            seg_pairs: self.seg_pairs,
        }
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
        Epilogue::PoolMax {
            pool,
            stride: os,
            out,
        } if crate::CpuFeatures::get().avx2 && os.is_multiple_of(8) && stride >= *os => {
            assert!(rows == 0 || acc.len() >= (rows - 1) * stride + *os);
            // SAFETY: AVX2 was checked; `acc`'s rows hold `os` values (asserted above).
            unsafe { pool_max(*pool, row0, rows, acc, stride, out, *os) }
        }
        _ => epi.apply_block(row0, rows, n, acc, stride),
    }
}

/// [`Epilogue::PoolMax`] in whole 8-lane vectors (`os` a multiple of 8): the scalar form's
/// read-modify-write per value, each waiting on the last row's store to the same pooled
/// pixel, cost more than the copy and separate pool pass it replaced.
///
/// # Safety
/// AVX2, and every row `r < rows` of `acc` holds `os` values at `r * stride`.
#[target_feature(enable = "avx2")]
unsafe fn pool_max(
    pool: PoolShape,
    row0: usize,
    rows: usize,
    acc: &[i32],
    stride: usize,
    out: &mut [i32],
    os: usize,
) {
    if pool.window == [2, 2] {
        // SAFETY: as this function's (the same promise on `acc`; AVX2 enabled here too).
        return unsafe { pool_max_2x2(pool, row0, rows, acc, stride, out, os) };
    }
    const STEP: usize = 16;
    for c in (0..rows).step_by(STEP) {
        let n_rows = STEP.min(rows - c);
        let targets = pool.targets::<STEP>(row0 + c);
        let mut r = 0;
        while r < n_rows {
            let t = targets[r];
            // The run of rows in the same window (neighbours along a pooled row): their
            // maximum is taken in registers, then stored once.
            let mut end = r + 1;
            while end < n_rows && targets[end] == t {
                end += 1;
            }
            if t != usize::MAX {
                let o = &mut out[t * os..(t + 1) * os];
                for j in (0..os).step_by(8) {
                    // SAFETY: `j + 8 <= os`, inside `o` (a checked slice) and inside each
                    // row of `acc` (the caller's promise).
                    unsafe {
                        let p = o.as_mut_ptr().add(j).cast::<__m256i>();
                        let mut v = _mm256_loadu_si256(p);
                        for rr in r..end {
                            let a = acc[(c + rr) * stride..].as_ptr().add(j);
                            v = _mm256_max_epi32(v, _mm256_loadu_si256(a.cast()));
                        }
                        _mm256_storeu_si256(p, v);
                    }
                }
            }
            r = end;
        }
    }
}

/// [`pool_max`] for the 2x2 window (LeNet's and the MNIST CNN's): the pooled pixel of each
/// row from counters stepped along the rows (two divisions per call, none per row), and the
/// two neighbours of a window along a row maxed in registers and stored once. The general
/// form's per-16-row target table and run search cost more than the maxima it feeds: the
/// pool epilogue was a sixth of the MNIST CNN's int8 time.
///
/// # Safety
/// AVX2, and every row `r < rows` of `acc` holds `os` values at `r * stride`.
#[target_feature(enable = "avx2")]
unsafe fn pool_max_2x2(
    pool: PoolShape,
    row0: usize,
    rows: usize,
    acc: &[i32],
    stride: usize,
    out: &mut [i32],
    os: usize,
) {
    let ([ph, pw], ow) = (pool.out_hw, pool.ow);
    assert!(ow > 0 && os.is_multiple_of(8) && out.len() >= ph * pw * os);
    let (mut oy, mut ox) = (row0 / ow, row0 % ow);
    let mut r = 0;
    while r < rows {
        // Rows r and r + 1 share a window when r sits at an even column with a next one.
        let pair = ox.is_multiple_of(2) && ox + 1 < ow && r + 1 < rows;
        let (py, px) = (oy / 2, ox / 2);
        if py < ph && px < pw {
            // SAFETY: the pooled pixel is inside `out` (asserted above); rows `r` and
            // `r + 1` (when `pair`, so `r + 1 < rows`) hold `os` values (the caller's
            // promise), read 8 at a time with `j + 8 <= os`.
            unsafe {
                let o = out.as_mut_ptr().add((py * pw + px) * os);
                let a = acc.as_ptr().add(r * stride);
                let b = if pair { a.add(stride) } else { a };
                for j in (0..os).step_by(8) {
                    let v = _mm256_max_epi32(
                        _mm256_loadu_si256(a.add(j).cast()),
                        _mm256_loadu_si256(b.add(j).cast()),
                    );
                    let p = o.add(j).cast::<__m256i>();
                    _mm256_storeu_si256(p, _mm256_max_epi32(_mm256_loadu_si256(p), v));
                }
            }
        }
        let step = 1 + usize::from(pair);
        r += step;
        ox += step;
        if ox == ow {
            (ox, oy) = (0, oy + 1);
        }
    }
}

/// The row at `base` (its segments, concatenated) zero-extended to u16 in `halves`
/// (`2 * ceil(k / 2)` slots), the last one 0 when the row has an odd length.
#[target_feature(enable = "avx2")]
fn widen_row(rows: &Rows<u8>, base: usize, halves: &mut [u16]) {
    let k = rows.k();
    assert_eq!(halves.len(), 2 * k.div_ceil(2));
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
///
/// # Safety
/// AVX2; every pair `src` names for its `R` rows is readable, and `k` of the weights is
/// `src.segs.len() * src.seg_pairs` pairs.
#[target_feature(enable = "avx2")]
unsafe fn block<const R: usize>(src: &Src<R>, p: &Packed16, tile: &mut [i32], stride: usize) {
    let mut panel = 0;
    while panel + 2 <= p.panels {
        // SAFETY: as the caller; panels `panel` and `panel + 1` exist.
        unsafe { panels::<R, 2>(src, p, panel, tile, stride) };
        panel += 2;
    }
    if panel < p.panels {
        // SAFETY: as above, for the last panel.
        unsafe { panels::<R, 1>(src, p, panel, tile, stride) };
    }
}

#[target_feature(enable = "avx2")]
unsafe fn panels<const R: usize, const P: usize>(
    src: &Src<R>,
    p: &Packed16,
    first: usize,
    tile: &mut [i32],
    stride: usize,
) {
    let k2 = p.k2;
    let panel_len = k2 * NR16 * 2;
    assert!(src.segs.len() * src.seg_pairs == k2 && p.data.len() >= (first + P) * panel_len);
    let b: [*const i16; P] = std::array::from_fn(|j| p.data[(first + j) * panel_len..].as_ptr());
    let mut acc = [[_mm256_setzero_si256(); P]; R];
    let mut g = 0;
    for &s in src.segs {
        for i in 0..src.seg_pairs {
            // SAFETY: group g < k2 lies inside each panel (k2 * 16 i16), checked above.
            let wv: [__m256i; P] = std::array::from_fn(|j| unsafe {
                _mm256_loadu_si256(b[j].add(g * NR16 * 2).cast())
            });
            for (row, a) in src.rows.iter().zip(acc.iter_mut()) {
                // SAFETY: a pair the caller vouched for.
                let pair = unsafe { row.add(s + 2 * i).cast::<i32>().read_unaligned() };
                let bc = _mm256_set1_epi32(pair);
                for j in 0..P {
                    a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(bc, wv[j]));
                }
            }
            g += 1;
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
