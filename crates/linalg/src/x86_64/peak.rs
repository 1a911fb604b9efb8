//! Throughput loops: the instructions the kernels' inner loops are made of, in enough
//! independent chains to fill every pipe, timed by [`crate::peak`]. Each returns a value
//! derived from every chain so that nothing is optimised away, and the multiply-accumulates
//! it did.

use std::arch::x86_64::*;

/// Independent accumulators per loop: more than latency x pipes for every instruction here
/// (FMA 4 x 2, `vpmaddwd` + `vpaddd` 6 x 2, `vpdpbusd` 5 x 2), within the register file.
const CHAINS_256: usize = 12;
const CHAINS_512: usize = 16;

/// AVX2 + FMA: `vfmadd` on 8 f32 lanes.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn fma256(iters: usize) -> (f64, u64) {
    let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS_256];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(a, *x, b);
        }
    }
    let mut s = _mm256_setzero_ps();
    for x in acc {
        s = _mm256_add_ps(s, x);
    }
    let mut out = [0f32; 8];
    // SAFETY: `out` holds 8 f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    let sum = out.iter().map(|&v| f64::from(v)).sum();
    (sum, (iters * CHAINS_256 * 8) as u64)
}

/// AVX-512F: `vfmadd` on 16 f32 lanes.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn fma512(iters: usize) -> (f64, u64) {
    let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS_512];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(a, *x, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for x in acc {
        s = _mm512_add_ps(s, x);
    }
    (
        f64::from(_mm512_reduce_add_ps(s)),
        (iters * CHAINS_512 * 16) as u64,
    )
}

/// The AVX2 int8 path's inner step: `vpmaddwd` (16 i16 products summed in pairs) then
/// `vpaddd` into the accumulator. The products read the accumulator, so the multiply cannot
/// be hoisted out of the loop.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn madd256(iters: usize) -> (f64, u64) {
    let w = _mm256_set1_epi16(std::hint::black_box(3));
    let mut acc: [__m256i; CHAINS_256] =
        std::array::from_fn(|i| _mm256_set1_epi32(std::hint::black_box(i as i32)));
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*x, w));
        }
    }
    let mut s = _mm256_setzero_si256();
    for x in acc {
        s = _mm256_xor_si256(s, x);
    }
    let mut out = [0i32; 8];
    // SAFETY: `out` holds 8 i32.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), s) };
    let sum = out.iter().map(|&v| f64::from(v)).sum();
    (sum, (iters * CHAINS_256 * 16) as u64)
}

/// The VNNI path's inner step: `vpdpbusd` (64 u8 x i8 products into 16 i32).
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(crate) unsafe fn dpbusd512(iters: usize) -> (f64, u64) {
    let a = _mm512_set1_epi8(std::hint::black_box(3));
    let b = _mm512_set1_epi8(std::hint::black_box(-2));
    let mut acc: [__m512i; CHAINS_512] =
        std::array::from_fn(|i| _mm512_set1_epi32(std::hint::black_box(i as i32)));
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    let mut s = _mm512_setzero_si512();
    for x in acc {
        s = _mm512_xor_si512(s, x);
    }
    (
        f64::from(_mm512_reduce_add_epi32(s)),
        (iters * CHAINS_512 * 64) as u64,
    )
}
