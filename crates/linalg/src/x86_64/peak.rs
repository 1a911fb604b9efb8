//! Throughput loops: the instructions the kernels' inner loops are made of, in enough
//! independent chains to fill every pipe, timed by [`crate::peak`]. Each returns a value
//! derived from every chain so that nothing is optimised away, and the multiply-accumulates
//! it did.

use std::arch::x86_64::*;

/// Independent accumulators per loop: more than latency x pipes for every instruction here
/// (FMA 4 x 2, `vpdpbusd` 5 x 2), within the register file.
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

/// The AVX2 int8 path's inner step as the kernel runs it: `vpmaddwd` of a broadcast pair
/// and a weight vector (16 i16 products summed in pairs), then `vpaddd` into one of 12
/// accumulators. Written in assembly: in Rust the multiply of loop-invariant operands is
/// hoisted out of the loop, and the earlier form that multiplied the accumulator itself
/// (a chain of `vpmaddwd` + `vpaddd`, 6 cycles) measured about 5% under what the kernel
/// reached, so a layer read 104% of it.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn madd256(iters: usize) -> (f64, u64) {
    let x = _mm256_set1_epi16(std::hint::black_box(3));
    let w = _mm256_set1_epi16(std::hint::black_box(-2));
    let mut acc: [__m256i; 12] =
        std::array::from_fn(|i| _mm256_set1_epi32(std::hint::black_box(i as i32)));
    let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] = &mut acc;
    if iters > 0 {
        // SAFETY: AVX2 (the caller's contract); registers only, no memory, no stack.
        unsafe {
            std::arch::asm!(
                "2:",
                "vpmaddwd {t0}, {x}, {w}",
                "vpmaddwd {t1}, {x}, {w}",
                "vpaddd {a0}, {a0}, {t0}",
                "vpaddd {a1}, {a1}, {t1}",
                "vpmaddwd {t0}, {x}, {w}",
                "vpmaddwd {t1}, {x}, {w}",
                "vpaddd {a2}, {a2}, {t0}",
                "vpaddd {a3}, {a3}, {t1}",
                "vpmaddwd {t0}, {x}, {w}",
                "vpmaddwd {t1}, {x}, {w}",
                "vpaddd {a4}, {a4}, {t0}",
                "vpaddd {a5}, {a5}, {t1}",
                "vpmaddwd {t0}, {x}, {w}",
                "vpmaddwd {t1}, {x}, {w}",
                "vpaddd {a6}, {a6}, {t0}",
                "vpaddd {a7}, {a7}, {t1}",
                "vpmaddwd {t0}, {x}, {w}",
                "vpmaddwd {t1}, {x}, {w}",
                "vpaddd {a8}, {a8}, {t0}",
                "vpaddd {a9}, {a9}, {t1}",
                "vpmaddwd {t0}, {x}, {w}",
                "vpmaddwd {t1}, {x}, {w}",
                "vpaddd {a10}, {a10}, {t0}",
                "vpaddd {a11}, {a11}, {t1}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                x = in(ymm_reg) x,
                w = in(ymm_reg) w,
                t0 = out(ymm_reg) _,
                t1 = out(ymm_reg) _,
                a0 = inout(ymm_reg) *a0,
                a1 = inout(ymm_reg) *a1,
                a2 = inout(ymm_reg) *a2,
                a3 = inout(ymm_reg) *a3,
                a4 = inout(ymm_reg) *a4,
                a5 = inout(ymm_reg) *a5,
                a6 = inout(ymm_reg) *a6,
                a7 = inout(ymm_reg) *a7,
                a8 = inout(ymm_reg) *a8,
                a9 = inout(ymm_reg) *a9,
                a10 = inout(ymm_reg) *a10,
                a11 = inout(ymm_reg) *a11,
                options(nomem, nostack),
            );
        }
    }
    let mut s = _mm256_setzero_si256();
    for v in acc {
        s = _mm256_xor_si256(s, v);
    }
    let mut out = [0i32; 8];
    // SAFETY: `out` holds 8 i32.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), s) };
    let sum = out.iter().map(|&v| f64::from(v)).sum();
    (sum, (iters * 12 * 16) as u64)
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
