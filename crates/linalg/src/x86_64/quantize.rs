//! Float -> u8 activation quantization on AVX-512 and AVX2, bit-identical to the scalar
//! definition in [`crate::frame::quantize`] (round half to even, the hardware's own
//! rounding, as ONNX's `QuantizeLinear` rounds).

use std::arch::x86_64::*;

/// `out[i] = clamp(round_half_even(x[i] * inv) + zp, lo, hi)` on AVX-512.
pub fn quantize_avx512(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    assert!(
        crate::CpuFeatures::get().avx512_f32(),
        "AVX-512 quantizer called on a CPU without it"
    );
    assert_eq!(x.len(), out.len());
    assert!(
        0 <= lo && lo <= hi && hi <= 255,
        "a u8 grid: 0 <= lo <= hi <= 255"
    );
    // SAFETY: features checked above; loads and stores stay within the slices.
    unsafe { quantize_rows(x, inv, zp, lo, hi, out) };
}

/// The AVX-512 quantizer's constants.
struct Avx512Consts {
    inv: __m512,
    /// The clamp on `x * inv` before rounding: `lo - zp` and `hi - zp`, integers, so
    /// rounding after it gives the scalar rule's `clamp(round(t) + zp, lo, hi)` (rounding
    /// is monotonic and keeps integers) with no clamp of the integers after it.
    tlo: __m512,
    thi: __m512,
    zp: __m512i,
}

/// 16 codes as i32 (in `lo..=hi`): NaN as 0, clamped, rounded half to even, plus `zp`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn sixteen_codes(k: &Avx512Consts, v: __m512) -> __m512i {
    let t = _mm512_mul_ps(v, k.inv);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(t, t);
    let t = _mm512_maskz_mov_ps(!nan, t);
    let t = _mm512_min_ps(_mm512_max_ps(t, k.tlo), k.thi);
    let r = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    _mm512_add_epi32(r, k.zp)
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_rows(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    let n = x.len();
    let k = Avx512Consts {
        inv: _mm512_set1_ps(inv),
        tlo: _mm512_set1_ps((lo - zp) as f32),
        thi: _mm512_set1_ps((hi - zp) as f32),
        zp: _mm512_set1_epi32(zp),
    };
    // After the two saturating packs (exact: every code is in 0..=255), 128-bit lane L
    // holds dwords a[4L..], b[4L..], c[4L..], d[4L..] of the four vectors; this puts
    // them back in order. One 64-byte store instead of four narrowing ones, the packs in
    // place of `vpmovdb`'s two shuffles each.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n for both slices.
        let [a, b, c, d] = std::array::from_fn(|j| {
            sixteen_codes(&k, unsafe { _mm512_loadu_ps(x.as_ptr().add(i + 16 * j)) })
        });
        let bytes = _mm512_packus_epi16(_mm512_packus_epi32(a, b), _mm512_packus_epi32(c, d));
        let bytes = _mm512_permutexvar_epi32(order, bytes);
        // SAFETY: writes 64 bytes at i..i+64 <= n.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), bytes) };
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        let q = sixteen_codes(&k, unsafe { _mm512_loadu_ps(x.as_ptr().add(i)) });
        // SAFETY: writes 16 bytes at i..i+16 <= n.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(q)) };
        i += 16;
    }
    for j in i..n {
        out[j] = crate::frame::quantize::quantize_scalar(x[j], inv, zp, lo, hi);
    }
}

/// `out[i] = clamp(round_half_even(x[i] * inv) + zp, lo, hi)` on AVX2: the conversion
/// rounds half to even in the default rounding mode, as the scalar definition's rounding
/// does. A network's first static layer quantizes its float input here (on AVX2 the scalar
/// loop had been a fifth of an int8 MLP's time).
pub fn quantize_avx2(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    assert!(
        crate::CpuFeatures::get().avx2,
        "AVX2 quantizer called on a CPU without it"
    );
    assert_eq!(x.len(), out.len());
    // SAFETY: AVX2 checked above; loads and stores stay within the slices.
    unsafe { quantize_rows_avx2(x, inv, zp, lo, hi, out) };
}

/// The constants of [`eight_codes`].
struct Avx2Consts {
    inv: __m256,
    tlo: __m256,
    thi: __m256,
    zp: __m256i,
    lo: __m256i,
    hi: __m256i,
}

/// Eight codes as i32 lanes: the scalar definition's clamp (so the conversion cannot
/// overflow), NaN as 0, one conversion, the zero point and the clamp.
#[target_feature(enable = "avx2")]
#[inline]
fn eight_codes(k: &Avx2Consts, v: __m256) -> __m256i {
    let t = _mm256_mul_ps(v, k.inv);
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t);
    let t = _mm256_andnot_ps(nan, t);
    let t = _mm256_min_ps(_mm256_max_ps(t, k.tlo), k.thi);
    let r = _mm256_cvtps_epi32(t);
    _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, k.zp), k.lo), k.hi)
}

#[target_feature(enable = "avx2")]
unsafe fn quantize_rows_avx2(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    let n = x.len();
    let k = Avx2Consts {
        inv: _mm256_set1_ps(inv),
        tlo: _mm256_set1_ps((lo - zp) as f32 - 2.0),
        thi: _mm256_set1_ps((hi - zp) as f32 + 2.0),
        zp: _mm256_set1_epi32(zp),
        lo: _mm256_set1_epi32(lo),
        hi: _mm256_set1_epi32(hi),
    };
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        let (a, b) = unsafe {
            (
                eight_codes(&k, _mm256_loadu_ps(x.as_ptr().add(i))),
                eight_codes(&k, _mm256_loadu_ps(x.as_ptr().add(i + 8))),
            )
        };
        // Codes are in 0..=255 (the clamp), so the saturating packs are exact: i32 pairs to
        // u16 within each 128-bit lane, the lanes' halves put back in order, then to bytes.
        let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a, b));
        let bytes = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
        // SAFETY: writes 16 bytes at i..i+16 <= n.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), bytes) };
        i += 16;
    }
    for j in i..n {
        out[j] = crate::frame::quantize::quantize_scalar(x[j], inv, zp, lo, hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::quantize::quantize_scalar;

    /// Ties, extremes, NaN and infinities at every position of a 16-value step, on every
    /// grid shape the engine uses: the same bytes as the scalar definition.
    #[test]
    fn avx2_quantizer_equals_the_scalar_definition() {
        if !crate::CpuFeatures::get().avx2 {
            println!("avx2 quantizer: AVX2 not available on this CPU, not run");
            return;
        }
        equals_the_scalar_definition(quantize_avx2);
    }

    #[test]
    fn avx512_quantizer_equals_the_scalar_definition() {
        if !crate::CpuFeatures::get().avx512_f32() {
            println!("avx512 quantizer: AVX-512 not available on this CPU, not run");
            return;
        }
        equals_the_scalar_definition(quantize_avx512);
    }

    fn equals_the_scalar_definition(quantize: fn(&[f32], f32, i32, i32, i32, &mut [u8])) {
        let special = [
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            254.5,
            255.5,
            1e10,
            -1e10,
            3e9,
            -3e9,
            f32::MAX,
            f32::MIN,
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            127.5,
            -128.5,
        ];
        let mut x: Vec<f32> = (0..997).map(|i| (i as f32 - 498.0) * 0.37).collect();
        for (i, &s) in special.iter().enumerate() {
            for slot in 0..16 {
                x[(i * 41 + slot * 3) % 990 + slot % 7] = s;
            }
            x.extend(std::iter::repeat_n(s, 17));
        }
        for (inv, zp, lo, hi) in [
            (1.0, 0, 0, 255),
            (1.0, 128, 0, 255),
            (3.7, 17, 0, 255),
            (0.25, 0, 0, 15),
            (1.0, 8, 0, 15),
            (0.9, 100, 100, 255),
            (2.0, 0, 3, 200),
        ] {
            let mut got = vec![0u8; x.len()];
            quantize(&x, inv, zp, lo, hi, &mut got);
            for (j, (&g, &v)) in got.iter().zip(&x).enumerate() {
                assert_eq!(
                    g,
                    quantize_scalar(v, inv, zp, lo, hi),
                    "x[{j}] = {v}, grid {inv} {zp} {lo}..{hi}"
                );
            }
        }
    }
}
