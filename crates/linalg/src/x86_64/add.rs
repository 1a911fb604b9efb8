//! The integer Add ([`crate::frame::add`]) on AVX-512 and AVX2: exact 32 x 32 -> 64-bit
//! products (`vpmuludq`) of each byte with its side's multiplier, summed with the folded
//! constant, shifted and clamped; the same bytes as the scalar definition. The tabulated
//! form (a 64 KiB table, one load per value) took a tenth of the residual CNN's int8 time.
//! With AVX-512 VNNI the products go in 16-bit pieces through `vpdpwssd` ([`add_vnni`]):
//! the residual CNN's Add steps 177 -> 112-125 us and 44 -> 28-31 us (batch 64, one pinned
//! thread, 2026-12-01).

use std::arch::x86_64::*;

use crate::frame::add::{LIFT_STEPS, VectorAdd};

/// `b[i] = a[i] (+) b[i]` on AVX-512F, 16 values per step.
pub fn add_avx512(v: &VectorAdd, a: &[u8], b: &mut [u8]) {
    assert!(
        crate::CpuFeatures::get().avx512_f32(),
        "AVX-512 Add called on a CPU without it"
    );
    assert_eq!(a.len(), b.len(), "the two sides of an Add differ in length");
    // SAFETY: features checked above; loads and stores stay within the slices.
    unsafe { add_512(v, a, b) };
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn add_512(v: &VectorAdd, a: &[u8], b: &mut [u8]) {
    let n = a.len();
    let (ma, mb) = (
        _mm512_set1_epi64(i64::from(v.ma)),
        _mm512_set1_epi64(i64::from(v.mb)),
    );
    let bias = _mm512_set1_epi64(v.bias as i64);
    let (lo, hi) = (_mm512_set1_epi32(v.lo), _mm512_set1_epi32(v.hi));
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        let (xa, xb) = unsafe {
            (
                _mm512_cvtepu8_epi32(_mm_loadu_si128(a.as_ptr().add(i).cast())),
                _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(i).cast())),
            )
        };
        // Even i32 lanes are the low halves of the 64-bit lanes `vpmuludq` reads; the odd
        // ones are shifted down into place.
        let sum = |xa: __m512i, xb: __m512i| {
            let s = _mm512_add_epi64(_mm512_mul_epu32(xa, ma), _mm512_mul_epu32(xb, mb));
            _mm512_srli_epi64::<30>(_mm512_add_epi64(s, bias))
        };
        let even = sum(xa, xb);
        let odd = sum(_mm512_srli_epi64::<32>(xa), _mm512_srli_epi64::<32>(xb));
        let y = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
        // Clamped to [lo, hi] + 2^20; the low byte is the output (2^20 is a multiple of 256).
        let y = _mm512_min_epi32(_mm512_max_epi32(y, lo), hi);
        // SAFETY: writes 16 bytes at i..i+16 <= n.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(y)) };
        i += 16;
    }
    for j in i..n {
        b[j] = v.apply(a[j], b[j]);
    }
}

/// `b[i] = a[i] (+) b[i]` on AVX-512 VNNI, 64 values per step: the products in 16-bit
/// pieces, so that each i32 lane holds a value's whole sum and no lane is a 64-bit product.
/// With `m = m2 * 2^30 + m1 * 2^15 + m0` for each side (`m0`, `m1` below `2^15`, `m2`
/// below 4) and the lifted bias as `Bh * 2^30 + B1 * 2^15 + B0`,
/// `floor(x / 2^30) = S2 + Bh + floor((S1 + B1 + floor((S0 + B0) / 2^15)) / 2^15)` where
/// `Sk = mk_a * a + mk_b * b`: each `Sk + Bk` is one `vpdpwssd` of the (a, b) word pairs
/// against the (mk_a, mk_b) pair, every term stays below `2^25`, and all are exact. About
/// ten vector instructions per 16 values where [`add_avx512`] takes twenty (two 64-bit
/// products per lane pair, shifts, a blend, the clamp and a narrowing per 16).
pub fn add_vnni(v: &VectorAdd, a: &[u8], b: &mut [u8]) {
    assert!(
        crate::CpuFeatures::get().vnni(),
        "VNNI Add called on a CPU without AVX-512 VNNI"
    );
    assert_eq!(a.len(), b.len(), "the two sides of an Add differ in length");
    // SAFETY: features checked above; loads and stores stay within the slices.
    let done = unsafe { add_vnni_64(v, a, b) };
    add_avx512(v, &a[done..], &mut b[done..]);
}

/// The constants of the 16-bit pieces form ([`add_vnni`], [`add_avx2`]): each piece's
/// `(a, b)` multipliers as the i16 pair of an i32 lane, the bias's parts, and the clamp.
struct Pieces {
    m: [i32; 3],
    b0: i32,
    b1: i32,
    /// The lifted bias's high part less the lift: the sum's own integer part.
    bh: i32,
    lo: u8,
    hi: u8,
}

impl Pieces {
    fn new(v: &VectorAdd) -> Self {
        const MASK15: u32 = (1 << 15) - 1;
        let pair = |shift: u32, mask: u32| {
            let (pa, pb) = ((v.ma >> shift) & mask, (v.mb >> shift) & mask);
            (pa | pb << 16) as i32
        };
        Self {
            m: [pair(0, MASK15), pair(15, MASK15), pair(30, 3)],
            b0: (v.bias & u64::from(MASK15)) as i32,
            b1: ((v.bias >> 15) & u64::from(MASK15)) as i32,
            bh: ((v.bias >> 30) as i64 - i64::from(LIFT_STEPS)) as i32,
            // `vector()` keeps the clamp inside 0..=255.
            lo: (v.lo - LIFT_STEPS) as u8,
            hi: (v.hi - LIFT_STEPS) as u8,
        }
    }
}

/// The whole 64-value steps of [`add_vnni`]; returns how many values it wrote.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn add_vnni_64(v: &VectorAdd, a: &[u8], b: &mut [u8]) -> usize {
    let k = Pieces::new(v);
    let [m0, m1, m2] = k.m.map(|v| _mm512_set1_epi32(v));
    let [b0, b1, bh] = [k.b0, k.b1, k.bh].map(|v| _mm512_set1_epi32(v));
    let (lo8, hi8) = (_mm512_set1_epi8(k.lo as i8), _mm512_set1_epi8(k.hi as i8));
    let zero = _mm512_setzero_si512();
    // The sums of 16 values from their (a, b) word pairs.
    let sum = |p: __m512i| {
        let t = _mm512_srli_epi32::<15>(_mm512_dpwssd_epi32(b0, p, m0));
        let u = _mm512_add_epi32(_mm512_dpwssd_epi32(b1, p, m1), t);
        _mm512_add_epi32(_mm512_dpwssd_epi32(bh, p, m2), _mm512_srli_epi32::<15>(u))
    };
    let n = a.len() / 64 * 64;
    for i in (0..n).step_by(64) {
        // SAFETY: i + 64 <= n <= the slices' length.
        let (xa, xb) = unsafe {
            (
                _mm512_loadu_si512(a.as_ptr().add(i).cast()),
                _mm512_loadu_si512(b.as_ptr().add(i).cast()),
            )
        };
        // In each 128-bit lane L: `lo` pairs values 16L..16L + 8, `hi` the next 8; widened,
        // the four sums hold values 16L + 4k .. 16L + 4k + 4 in lane L, and the packs
        // below put each lane's 16 back in order.
        let (pl, ph) = (_mm512_unpacklo_epi8(xa, xb), _mm512_unpackhi_epi8(xa, xb));
        let s = [
            sum(_mm512_unpacklo_epi8(pl, zero)),
            sum(_mm512_unpackhi_epi8(pl, zero)),
            sum(_mm512_unpacklo_epi8(ph, zero)),
            sum(_mm512_unpackhi_epi8(ph, zero)),
        ];
        // Saturating packs (i32 to i16 to u8) clamp to 0..=255; then `lo..=hi` on bytes.
        let y = _mm512_packus_epi16(
            _mm512_packs_epi32(s[0], s[1]),
            _mm512_packs_epi32(s[2], s[3]),
        );
        let y = _mm512_min_epu8(_mm512_max_epu8(y, lo8), hi8);
        // SAFETY: 64 bytes at i .. i + 64 <= n.
        unsafe { _mm512_storeu_si512(b.as_mut_ptr().add(i).cast(), y) };
    }
    n
}

/// `b[i] = a[i] (+) b[i]` on AVX2: 32 values per step in the 16-bit pieces of
/// [`add_vnni`] (`vpmaddwd` and an add where VNNI has one `vpdpwssd`), the last values 16
/// at a time in 64-bit products.
pub fn add_avx2(v: &VectorAdd, a: &[u8], b: &mut [u8]) {
    assert!(
        crate::CpuFeatures::get().avx2,
        "AVX2 Add called on a CPU without it"
    );
    assert_eq!(a.len(), b.len(), "the two sides of an Add differ in length");
    // SAFETY: features checked above; loads and stores stay within the slices.
    unsafe {
        let done = add_pieces_256(v, a, b);
        add_256(v, &a[done..], &mut b[done..]);
    }
}

/// The whole 32-value steps of [`add_avx2`]; returns how many values it wrote.
#[target_feature(enable = "avx2")]
unsafe fn add_pieces_256(v: &VectorAdd, a: &[u8], b: &mut [u8]) -> usize {
    let k = Pieces::new(v);
    let [m0, m1, m2] = k.m.map(|v| _mm256_set1_epi32(v));
    let [b0, b1, bh] = [k.b0, k.b1, k.bh].map(|v| _mm256_set1_epi32(v));
    let (lo8, hi8) = (_mm256_set1_epi8(k.lo as i8), _mm256_set1_epi8(k.hi as i8));
    let zero = _mm256_setzero_si256();
    // The sums of 8 values from their (a, b) word pairs.
    let sum = |p: __m256i| {
        let t = _mm256_srli_epi32::<15>(_mm256_add_epi32(_mm256_madd_epi16(p, m0), b0));
        let u = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(p, m1), b1), t);
        let w = _mm256_add_epi32(_mm256_madd_epi16(p, m2), bh);
        _mm256_add_epi32(w, _mm256_srli_epi32::<15>(u))
    };
    let n = a.len() / 32 * 32;
    for i in (0..n).step_by(32) {
        // SAFETY: i + 32 <= n <= the slices' length.
        let (xa, xb) = unsafe {
            (
                _mm256_loadu_si256(a.as_ptr().add(i).cast()),
                _mm256_loadu_si256(b.as_ptr().add(i).cast()),
            )
        };
        // Per 128-bit lane as in `add_vnni_64`: the packs put each lane's 16 back in order.
        let (pl, ph) = (_mm256_unpacklo_epi8(xa, xb), _mm256_unpackhi_epi8(xa, xb));
        let s = [
            sum(_mm256_unpacklo_epi8(pl, zero)),
            sum(_mm256_unpackhi_epi8(pl, zero)),
            sum(_mm256_unpacklo_epi8(ph, zero)),
            sum(_mm256_unpackhi_epi8(ph, zero)),
        ];
        let y = _mm256_packus_epi16(
            _mm256_packs_epi32(s[0], s[1]),
            _mm256_packs_epi32(s[2], s[3]),
        );
        let y = _mm256_min_epu8(_mm256_max_epu8(y, lo8), hi8);
        // SAFETY: 32 bytes at i .. i + 32 <= n.
        unsafe { _mm256_storeu_si256(b.as_mut_ptr().add(i).cast(), y) };
    }
    n
}

#[target_feature(enable = "avx2")]
unsafe fn add_256(v: &VectorAdd, a: &[u8], b: &mut [u8]) {
    let n = a.len();
    let (ma, mb) = (
        _mm256_set1_epi64x(i64::from(v.ma)),
        _mm256_set1_epi64x(i64::from(v.mb)),
    );
    let bias = _mm256_set1_epi64x(v.bias as i64);
    let lift = _mm256_set1_epi32(LIFT_STEPS);
    let (lo, hi) = (_mm256_set1_epi32(v.lo), _mm256_set1_epi32(v.hi));
    // Eight values from 8 bytes at `p`, as i32 in [0, 255] after the clamp.
    let eight = |pa: *const u8, pb: *const u8| {
        // SAFETY: the caller passes 8 readable bytes at each pointer.
        let (xa, xb) = unsafe {
            (
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(pa.cast())),
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(pb.cast())),
            )
        };
        let sum = |xa: __m256i, xb: __m256i| {
            let s = _mm256_add_epi64(_mm256_mul_epu32(xa, ma), _mm256_mul_epu32(xb, mb));
            _mm256_srli_epi64::<30>(_mm256_add_epi64(s, bias))
        };
        let even = sum(xa, xb);
        let odd = sum(_mm256_srli_epi64::<32>(xa), _mm256_srli_epi64::<32>(xb));
        let y = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        _mm256_sub_epi32(_mm256_min_epi32(_mm256_max_epi32(y, lo), hi), lift)
    };
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        let (p, q) = unsafe {
            (
                eight(a.as_ptr().add(i), b.as_ptr().add(i)),
                eight(a.as_ptr().add(i + 8), b.as_ptr().add(i + 8)),
            )
        };
        // Values in 0..=255, so the saturating packs are exact (as in the quantizer).
        let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(p, q));
        let bytes = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
        // SAFETY: writes 16 bytes at i..i+16 <= n.
        unsafe { _mm_storeu_si128(b.as_mut_ptr().add(i).cast(), bytes) };
        i += 16;
    }
    for j in i..n {
        b[j] = v.apply(a[j], b[j]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::add::tests::cases;

    type AddFn = fn(&VectorAdd, &[u8], &mut [u8]);

    /// Every (a, b) pair at every position of a 16-value step, plus a ragged tail: the
    /// scalar definition's bytes, for each path this CPU has.
    #[test]
    fn vector_adds_equal_the_scalar_definition() {
        let a: Vec<u8> = (0..=255u8).flat_map(|x| [x; 256]).chain(0..7).collect();
        let b: Vec<u8> = (0..256 * 256)
            .map(|i| (i * 7 + i / 256) as u8)
            .chain(9..16)
            .collect();
        let cpu = crate::CpuFeatures::get();
        let paths: [(&str, bool, AddFn); 3] = [
            ("avx512vnni", cpu.vnni(), add_vnni),
            ("avx512", cpu.avx512_f32(), add_avx512),
            ("avx2", cpu.avx2, add_avx2),
        ];
        for (name, available, f) in paths {
            if !available {
                println!("{name} Add: not available on this CPU, not run");
                continue;
            }
            for add in cases() {
                let mut want = b.clone();
                add.run_scalar(&a, &mut want);
                let mut got = b.clone();
                f(&add.vector().expect("a vector form"), &a, &mut got);
                assert!(got == want, "{name} {add:?}");
            }
        }
    }
}
