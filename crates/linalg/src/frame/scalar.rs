//! The scalar reference GEMM: `acc[m][n] = sum_k a[m][k] * w[n][k]` (u8 x i8 -> i32), plain
//! loops over the unpacked weights. Every fast path must match it bit for bit.

use super::epilogue::Epilogue;
use super::weights::PackedI8;

/// Rows per block handed to the epilogue.
const MR: usize = 4;

/// Runs the GEMM over `m` rows of `a` (row stride `lda >= k`) and feeds the epilogue.
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
    let (n, k) = (w.n, w.k);
    let wm = w.row_major();
    let mut acc = vec![0i32; MR * n];
    for row0 in (0..m).step_by(MR) {
        let rows = MR.min(m - row0);
        for r in 0..rows {
            let ar = &a[(row0 + r) * lda..(row0 + r) * lda + k];
            for j in 0..n {
                let wr = &wm[j * k..(j + 1) * k];
                acc[r * n + j] = ar.iter().zip(wr).map(|(&x, &y)| x as i32 * y as i32).sum();
            }
        }
        epi.apply_block(row0, rows, n, &acc[..rows * n], n);
    }
}
