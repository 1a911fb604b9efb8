//! AVX-512 VNNI + VBMI: a static convolution with few outputs (at most [`MAX_N`], as
//! LeNet's first layer, one input channel to six 5x5), output pixels in the lanes.
//!
//! The GEMM kernels put a layer's outputs in the 16 lanes of a register and broadcast one
//! pixel's 4 input bytes to all of them: with six outputs ten lanes of every `vpdpbusd` and
//! of every requantization multiply nothing. Here the 16 lanes are 16 neighbouring output
//! pixels of one output row. Each kernel row of input is loaded once (64 bytes), `vpermb`
//! lays out each pixel's 4 bytes of a group in its lane, and every output channel adds that
//! group with its own weights broadcast: per 16 pixels one `vpdpbusd` per output and group
//! where the GEMM needed 16. The requantization is then per channel, with the channel's
//! constants broadcast, and the bytes are put back in pixel-major order by two saturating
//! packs and one two-source `vpermb`. A fused 2x2 max pool takes the max of two output rows
//! and of neighbouring lanes before requantizing, so the pooled pixels sit in the even
//! lanes. Same bytes as the reference: the offset starts the accumulator (i32 sums wrap
//! the same in any order), the zero point rides in the rounding term as in
//! [`super::vnni_small`], and requantization is monotonic, so it commutes with max.

use std::arch::x86_64::*;

use super::avx512::Fused;
use crate::frame::pack::Packed;
use crate::frame::rows::{PoolShape, Rows};

/// Most outputs a layer may have here: two registers of packed bytes hold eight channels.
pub const MAX_N: usize = 8;

/// Output pixels per block: the lanes.
const LANES: usize = 16;

/// Groups of four per kernel row at most (one `vpermb` index each).
const MAX_PER_SEG: usize = 4;

/// The per-channel constants of a layer in this form, or `None` where it does not apply:
/// a convolution's rows of whole groups, 1..=[`MAX_N`] outputs in one panel, 16 pixels'
/// groups within 64 bytes of a kernel row, the short form of requantization with room
/// for the zero point in its rounding term, a clamp inside `0..=255`, and a CPU with VBMI.
pub(super) fn prepare(
    rows: &Rows<u8>,
    p: &Packed,
    f: &Fused,
    (zo, lo, hi): (i32, i32, i32),
    n: usize,
) -> Option<Constants> {
    let (_, col_step) = rows.conv_steps()?;
    let per_seg = rows.seg_len / 4;
    let fits = (LANES - 1) * col_step + rows.seg_len <= 64;
    if !(crate::CpuFeatures::get().avx512vbmi
        && p.panels == 1
        && (1..=MAX_N).contains(&n)
        && rows.seg_len.is_multiple_of(4)
        && (1..=MAX_PER_SEG).contains(&per_seg)
        && fits
        && f.high
        && 0 <= lo
        && lo <= hi
        && hi <= 255)
    {
        return None;
    }
    let mut k = Constants {
        n,
        per_seg,
        off: [0; MAX_N],
        m: [0; MAX_N],
        sh: [0; MAX_N],
        rdz: [0; MAX_N],
        lo: lo as u8,
        hi: hi as u8,
    };
    for c in 0..n {
        // (h + rd + zo * 2^k) >> k = ((h + rd) >> k) + zo, kept inside an i32 with margin
        // (as `PanelRequant::folding`).
        let sh = f.shift32[c].clamp(0, 31);
        let rdz = i64::from(f.round32[c]) + (i64::from(zo) << sh);
        if !(-(1 << 30)..1 << 30).contains(&rdz) {
            return None;
        }
        (k.off[c], k.m[c], k.sh[c], k.rdz[c]) = (f.offset[c], f.mult[c], sh, rdz as i32);
    }
    Some(k)
}

/// A layer's constants for this kernel (see [`prepare`]).
#[derive(Debug, Clone)]
pub(super) struct Constants {
    n: usize,
    /// Groups of four per kernel row.
    per_seg: usize,
    /// Per channel: the offset, multiplier, short-form shift and rounding term with the zero
    /// point in it.
    off: [i32; MAX_N],
    m: [i32; MAX_N],
    sh: [i32; MAX_N],
    rdz: [i32; MAX_N],
    lo: u8,
    hi: u8,
}

/// Every output pixel of `rows` requantized into `out` (`[rows.m, n]`). The caller has
/// checked the CPU's VNNI and the rows' reach (`Rows::check`), and built `k` for them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,avx512vbmi")]
pub(super) unsafe fn requant(rows: &Rows<u8>, p: &Packed, k: &Constants, out: &mut [u8]) {
    assert!(out.len() >= rows.m * k.n, "output buffer too short");
    // SAFETY (each): same target features and contract.
    unsafe {
        match k.n {
            1 => Lanes::<1>::new(rows, p, k).conv(out),
            2 => Lanes::<2>::new(rows, p, k).conv(out),
            3 => Lanes::<3>::new(rows, p, k).conv(out),
            4 => Lanes::<4>::new(rows, p, k).conv(out),
            5 => Lanes::<5>::new(rows, p, k).conv(out),
            6 => Lanes::<6>::new(rows, p, k).conv(out),
            7 => Lanes::<7>::new(rows, p, k).conv(out),
            _ => Lanes::<8>::new(rows, p, k).conv(out),
        }
    }
}

/// The convolution and the 2x2, stride-2 max pool after it into `out` (`[pooled pixels,
/// n]`). The caller has checked as for [`requant`], and that the window is 2x2.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,avx512vbmi")]
pub(super) unsafe fn conv_pool2(
    rows: &Rows<u8>,
    p: &Packed,
    k: &Constants,
    pool: PoolShape,
    out: &mut [u8],
) {
    // (Bounds every read a kept lane makes.)
    super::vnni_pool::check_windows(rows, &pool, k.n, out);
    // SAFETY (each): same target features and contract.
    unsafe {
        match k.n {
            1 => Lanes::<1>::new(rows, p, k).pool(pool, out),
            2 => Lanes::<2>::new(rows, p, k).pool(pool, out),
            3 => Lanes::<3>::new(rows, p, k).pool(pool, out),
            4 => Lanes::<4>::new(rows, p, k).pool(pool, out),
            5 => Lanes::<5>::new(rows, p, k).pool(pool, out),
            6 => Lanes::<6>::new(rows, p, k).pool(pool, out),
            7 => Lanes::<7>::new(rows, p, k).pool(pool, out),
            _ => Lanes::<8>::new(rows, p, k).pool(pool, out),
        }
    }
}

/// A layer of `N` outputs: where its weights lie, the `vpermb` indices and the constants.
struct Lanes<'a, const N: usize> {
    rows: &'a Rows<'a, u8>,
    k: &'a Constants,
    /// The packed panel: output `c`'s 4 weights of group `g` at `g * 64 + 4 * c`.
    w: *const u8,
    /// Per group of a kernel row, lane `i` takes bytes `i * col_step + 4q ..` of the row.
    idx: [__m512i; MAX_PER_SEG],
    /// The output bytes, pixel-major, of 16 pixels and of the 8 pooled ones in even lanes,
    /// from the two registers of packed bytes.
    out_idx: [__m512i; 2],
    pooled_idx: __m512i,
}

impl<'a, const N: usize> Lanes<'a, N> {
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,avx512vbmi")]
    fn new(rows: &'a Rows<'a, u8>, p: &Packed, k: &'a Constants) -> Self {
        assert_eq!(k.n, N, "constants of another layer");
        let panel = p.panel(0);
        assert!(
            panel.len() >= rows.segs.len() * k.per_seg * 64,
            "packed weights too short"
        );
        let (_, col_step) = rows.conv_steps().expect("a convolution's rows");
        // Built per call (a call is one sample): a loop of 64 bytes, and tables fixed per N.
        let mut base = [0u8; 64];
        for (j, b) in base.iter_mut().enumerate() {
            *b = ((j / 4) * col_step + j % 4) as u8;
        }
        let load = |b: &[u8; 64]| {
            // SAFETY: 64 bytes.
            unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
        };
        let base = load(&base);
        Self {
            rows,
            k,
            w: panel.as_ptr().cast(),
            idx: std::array::from_fn(|q| _mm512_add_epi8(base, _mm512_set1_epi8(4 * q as i8))),
            out_idx: [load(&Self::OUT[0]), load(&Self::OUT[1])],
            pooled_idx: load(&Self::POOLED),
        }
    }

    /// Where the unpooled output's bytes come from: byte `j` (pixel `j / N`, channel
    /// `j % N`) of 16 pixels, in two registers. Past the 16 pixels' bytes (a store never
    /// keeps them) any in-range index will do.
    const OUT: [[u8; 64]; 2] = {
        let mut t = [[0u8; 64]; 2];
        let mut j = 0;
        while j < 128 {
            let k = if j < LANES * N { j } else { LANES * N - 1 };
            t[j / 64][j % 64] = source(k / N, k % N);
            j += 1;
        }
        t
    };

    /// The same for the 8 pooled pixels, which sit in the even lanes.
    const POOLED: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut j = 0;
        while j < 64 {
            let k = if j < LANES / 2 * N {
                j
            } else {
                LANES / 2 * N - 1
            };
            t[j] = source(2 * (k / N), k % N);
            j += 1;
        }
        t
    };

    /// The accumulators of `R` runs of 16 pixels, run `r` from `at[r]` (its first pixel's
    /// base): one register per run and output, each started at its output's offset. Two
    /// runs keep twice the outputs' `vpdpbusd` chains in flight (one run of six outputs
    /// waited on their latency).
    ///
    /// # Safety
    /// The CPU has the features of [`Self::new`]; inlined into the callers, which take them.
    /// Rows are loaded with a mask at the end of the buffer, so no read leaves it; lanes of
    /// pixels past the output row read neighbouring bytes, and their results are not kept.
    #[inline(always)]
    unsafe fn block<const R: usize>(&self, at: [usize; R]) -> [[__m512i; N]; R] {
        let a = self.rows.a;
        let k = self.k;
        // SAFETY: this function's contract; every load is masked to `a`, every weight read
        // lies inside the panel (asserted in `new`).
        unsafe {
            // (Loops, not `array::from_fn`: a closure does not take the target features.)
            let mut acc = [[_mm512_setzero_si512(); N]; R];
            for acc in &mut acc {
                for (acc, &off) in acc.iter_mut().zip(&k.off) {
                    *acc = _mm512_set1_epi32(off);
                }
            }
            let mut g = 0;
            for &s in self.rows.segs {
                let mut row = [_mm512_setzero_si512(); R];
                for (row, &at) in row.iter_mut().zip(&at) {
                    let start = at + s;
                    let left = a.len().saturating_sub(start);
                    let mask = if left >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << left) - 1
                    };
                    *row = _mm512_maskz_loadu_epi8(mask, a.as_ptr().wrapping_add(start).cast());
                }
                for &idx in &self.idx[..k.per_seg] {
                    let wg = self.w.add(g * 64).cast::<i32>();
                    for (acc, &row) in acc.iter_mut().zip(&row) {
                        let x = _mm512_permutexvar_epi8(idx, row);
                        for (c, acc) in acc.iter_mut().enumerate() {
                            let wq = _mm512_set1_epi32(wg.add(c).read_unaligned());
                            *acc = _mm512_dpbusd_epi32(*acc, x, wq);
                        }
                    }
                    g += 1;
                }
            }
            acc
        }
    }

    /// The 16 lanes' bytes, packed: channel `c` of lane `x` at [`source`]`(x, c)`, the
    /// two registers side by side, clamped.
    ///
    /// # Safety
    /// As [`Self::block`].
    #[inline(always)]
    unsafe fn bytes(&self, acc: &[__m512i; N]) -> [__m512i; 2] {
        let k = self.k;
        // SAFETY: this function's contract.
        unsafe {
            let mut q = [_mm512_setzero_si512(); 8];
            for (c, (q, &a)) in q.iter_mut().zip(acc).enumerate() {
                // Exact 32x32 -> 64 products of the even and odd lanes, the high words
                // gathered into the even lanes over the odd products', then the short form
                // of `PanelRequant::ints` with this channel's constants in every lane.
                let m = _mm512_set1_epi64(i64::from(k.m[c]));
                let even = _mm512_mul_epi32(a, m);
                let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(a), m);
                let h = _mm512_mask_shuffle_epi32::<_MM_PERM_CDAB>(odd, 0x5555, even);
                let h = _mm512_add_epi32(h, _mm512_set1_epi32(k.rdz[c]));
                *q = _mm512_srav_epi32(h, _mm512_set1_epi32(k.sh[c]));
            }
            // Channels past N repeat one that exists (their bytes are not kept).
            for c in N..8 {
                q[c] = q[N - 1];
            }
            let (lo, hi) = (_mm512_set1_epi8(k.lo as i8), _mm512_set1_epi8(k.hi as i8));
            let low = pack4([q[0], q[1], q[2], q[3]], lo, hi);
            if N <= 4 {
                [low, low]
            } else {
                [low, pack4([q[4], q[5], q[6], q[7]], lo, hi)]
            }
        }
    }

    /// Every output row, two blocks of 16 pixels at a time where the row has more than 16
    /// left (the last block of a row partly kept).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,avx512vbmi")]
    unsafe fn conv(&self, out: &mut [u8]) {
        let (row_step, col_step) = self.rows.conv_steps().expect("a convolution's rows");
        let ow = match self.rows.map {
            crate::frame::rows::RowMap::Conv { ow, .. } => ow,
            crate::frame::rows::RowMap::Strided { .. } => unreachable!("checked by conv_steps"),
        };
        let oh = self.rows.m / ow;
        for oy in 0..oh {
            let mut ox = 0;
            while ox < ow {
                let at = oy * row_step + ox * col_step;
                // SAFETY (every call): this function's features; see `block`.
                if ox + LANES < ow {
                    let [b0, b1] = unsafe { self.block([at, at + LANES * col_step]) };
                    unsafe { self.store(&b0, oy * ow + ox, ow - ox, out) };
                    unsafe { self.store(&b1, oy * ow + ox + LANES, ow - ox - LANES, out) };
                    ox += 2 * LANES;
                } else {
                    let [b0] = unsafe { self.block([at]) };
                    unsafe { self.store(&b0, oy * ow + ox, ow - ox, out) };
                    ox += LANES;
                }
            }
        }
    }

    /// The 16 pixels of `acc` requantized into `out` from pixel `first`, the first `left` of
    /// them kept.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,avx512vbmi")]
    #[inline]
    unsafe fn store(&self, acc: &[__m512i; N], first: usize, left: usize, out: &mut [u8]) {
        // SAFETY: this function's features.
        let b = unsafe { self.bytes(acc) };
        let kept = left.min(LANES) * N;
        let base = first * N;
        assert!(base + kept <= out.len(), "output past the buffer");
        for (h, &idx) in self.out_idx.iter().enumerate() {
            if kept > 64 * h {
                let v = _mm512_permutex2var_epi8(b[0], idx, b[1]);
                // SAFETY: the mask keeps bytes below `kept`, inside `out` (asserted).
                unsafe {
                    let to = out.as_mut_ptr().add(base + 64 * h).cast();
                    _mm512_mask_storeu_epi8(to, keep(kept - 64 * h), v)
                };
            }
        }
    }

    /// Every pooled row: two conv rows of 16 pixels a block, maxed down the window's rows
    /// and across neighbouring lanes; the 8 pooled pixels in even lanes (the last block of a
    /// row partly kept).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl,avx512vbmi")]
    unsafe fn pool(&self, pool: PoolShape, out: &mut [u8]) {
        let [ph, pw] = pool.out_hw;
        let (row_step, col_step) = self.rows.conv_steps().expect("a convolution's rows");
        for py in 0..ph {
            let mut px = 0;
            while px < pw {
                let at = 2 * py * row_step + 2 * px * col_step;
                // SAFETY (all): this function's features; see `block`.
                unsafe {
                    let [mut acc, below] = self.block([at, at + row_step]);
                    for (a, b) in acc.iter_mut().zip(below) {
                        let v = _mm512_max_epi32(*a, b);
                        *a = _mm512_max_epi32(v, _mm512_shuffle_epi32::<_MM_PERM_CDAB>(v));
                    }
                    let b = self.bytes(&acc);
                    let kept = (pw - px).min(LANES / 2) * N;
                    let base = (py * pw + px) * N;
                    assert!(base + kept <= out.len(), "output past the buffer");
                    let v = _mm512_permutex2var_epi8(b[0], self.pooled_idx, b[1]);
                    _mm512_mask_storeu_epi8(out.as_mut_ptr().add(base).cast(), keep(kept), v);
                }
                px += LANES / 2;
            }
        }
    }
}

/// Four channels' 16 lanes as bytes, clamped to `lo..=hi`: lane `x` of channel `c` at
/// `(x / 4) * 16 + c * 4 + x % 4`. The saturating packs (i32 to i16 to u8) keep `0..=255`,
/// so the byte clamp after them is the clamp.
///
/// # Safety
/// The CPU has AVX-512BW (inlined into the kernels, which take their features).
#[inline(always)]
unsafe fn pack4(q: [__m512i; 4], lo: __m512i, hi: __m512i) -> __m512i {
    // SAFETY: this function's contract.
    unsafe {
        let b = _mm512_packus_epi16(
            _mm512_packs_epi32(q[0], q[1]),
            _mm512_packs_epi32(q[2], q[3]),
        );
        _mm512_min_epu8(_mm512_max_epu8(b, lo), hi)
    }
}

/// Where [`pack4`] puts channel `c` of lane `x` in the two registers of packed bytes.
const fn source(x: usize, c: usize) -> u8 {
    ((c / 4) * 64 + (x / 4) * 16 + (c % 4) * 4 + x % 4) as u8
}

/// The store mask of the first `bytes` bytes of a register.
fn keep(bytes: usize) -> u64 {
    if bytes >= 64 {
        u64::MAX
    } else {
        (1u64 << bytes) - 1
    }
}
