//! A second float baseline for this bench: the `gemm` crate (the same SIMD f32 kernels
//! burn's flex backend uses), beside quantlab's own f32 kernels.

use gemm::{Parallelism, gemm};

#[allow(clippy::too_many_arguments)] // a GEMM is its shape, operands and strides
/// `y[m][n] = sum_k x[m][k] * w[n][k]` with `x` rows at stride `lda`, `w` `[n, k]`;
/// `y` row-major `[m, n]`.
pub fn xwt(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    lda: usize,
    w: &[f32],
    y: &mut [f32],
    threads: usize,
) {
    assert!(x.len() >= (m.max(1) - 1) * lda + k && w.len() >= n * k && y.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assert above bounds every index gemm touches with these strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            lda as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
}

fn parallelism(threads: usize) -> Parallelism {
    if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Panics unless [`xwt`] matches naive loops (strided rows included): checked before the
/// bench times it, since a bench target runs no tests.
pub fn check() {
    let (m, n, k) = (5, 7, 11);
    let x: Vec<f32> = (0..m * 13).map(|i| (i % 7) as f32 - 3.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
    let mut y = vec![0f32; m * n];
    xwt(m, n, k, &x, 13, &w, &mut y, 1);
    for r in 0..m {
        for c in 0..n {
            let want: f32 = (0..k).map(|t| x[r * 13 + t] * w[c * k + t]).sum();
            assert!(
                (y[r * n + c] - want).abs() < 1e-4,
                "gemm crate baseline is wrong"
            );
        }
    }
}
