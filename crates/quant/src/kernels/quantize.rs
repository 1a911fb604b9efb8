//! Float -> u8 activation quantization, the first step of every static int8 model and of
//! every dynamic layer: AVX-512 when available, bit-identical to the scalar definition in
//! [`crate::qparams`] (round half away from zero via truncation, as there is no such
//! hardware rounding mode).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the SIMD path can run here.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[i] = clamp(round_half_away(x[i] * inv) + zp, lo, hi)`; `None` if the SIMD path is
/// unavailable (the caller then runs the scalar loop).
pub fn quantize_simd(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) -> Option<()> {
    if !available() {
        return None;
    }
    assert_eq!(x.len(), out.len());
    // SAFETY: features checked above; loads and stores stay within the slices.
    unsafe { quantize_avx512(x, inv, zp, lo, hi, out) };
    Some(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_avx512(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    let n = x.len();
    let (vinv, half, mhalf) = (
        _mm512_set1_ps(inv),
        _mm512_set1_ps(0.5),
        _mm512_set1_ps(-0.5),
    );
    let (vzp, vlo, vhi, one) = (
        _mm512_set1_epi32(zp),
        _mm512_set1_epi32(lo),
        _mm512_set1_epi32(hi),
        _mm512_set1_epi32(1),
    );
    // Clamping t to a little beyond the representable range first makes the truncating
    // conversion exact (no overflow cases to patch) and leaves every result unchanged: what
    // lies outside rounds to a value the final clamp maps to `lo` or `hi` either way. NaN
    // becomes 0 first, as `round_half_away` makes it.
    let (tlo, thi) = (
        _mm512_set1_ps((lo - zp) as f32 - 2.0),
        _mm512_set1_ps((hi - zp) as f32 + 2.0),
    );
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        let t = _mm512_mul_ps(unsafe { _mm512_loadu_ps(x.as_ptr().add(i)) }, vinv);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(t, t);
        let t = _mm512_mask_mov_ps(t, nan, _mm512_setzero_ps());
        let t = _mm512_min_ps(_mm512_max_ps(t, tlo), thi);
        let ti = _mm512_cvttps_epi32(t);
        let f = _mm512_sub_ps(t, _mm512_cvtepi32_ps(ti));
        let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(f, half);
        let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(f, mhalf);
        let r = _mm512_mask_sub_epi32(_mm512_mask_add_epi32(ti, up, ti, one), down, ti, one);
        let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, vzp), vlo), vhi);
        // SAFETY: writes 16 bytes at i..i+16 <= n.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(q)) };
        i += 16;
    }
    for j in i..n {
        out[j] = crate::qparams::quantize_scalar(x[j], inv, zp, lo, hi);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn quantize_avx512(_: &[f32], _: f32, _: i32, _: i32, _: i32, _: &mut [u8]) {
    unreachable!("checked by available()")
}
