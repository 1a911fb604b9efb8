//! Float -> u8 activation quantization on AVX-512, bit-identical to the scalar definition
//! in [`crate::frame::quantize`] (round half to even, the hardware's own rounding, as ONNX's
//! `QuantizeLinear` rounds).

use std::arch::x86_64::*;

/// `out[i] = clamp(round_half_even(x[i] * inv) + zp, lo, hi)` on AVX-512.
pub fn quantize_avx512(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    assert!(
        crate::CpuFeatures::get().avx512_f32(),
        "AVX-512 quantizer called on a CPU without it"
    );
    assert_eq!(x.len(), out.len());
    // SAFETY: features checked above; loads and stores stay within the slices.
    unsafe { quantize_rows(x, inv, zp, lo, hi, out) };
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_rows(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    let n = x.len();
    let vinv = _mm512_set1_ps(inv);
    let (vzp, vlo, vhi) = (
        _mm512_set1_epi32(zp),
        _mm512_set1_epi32(lo),
        _mm512_set1_epi32(hi),
    );
    // The scalar definition's clamp (so the conversion cannot overflow), NaN as 0, then one
    // conversion that rounds half to even.
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
        let r = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, vzp), vlo), vhi);
        // SAFETY: writes 16 bytes at i..i+16 <= n.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(q)) };
        i += 16;
    }
    for j in i..n {
        out[j] = crate::frame::quantize::quantize_scalar(x[j], inv, zp, lo, hi);
    }
}
