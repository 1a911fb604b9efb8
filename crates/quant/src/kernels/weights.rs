//! Int8 weights of one dense layer, prepared once at load time: the `[n, k]` matrix, its
//! per-output column sums (for the activation zero-point correction), and the packed copy
//! the fast kernels read.

use super::avx2::Packed16;
use super::pack::Packed;

/// Quantized weights `[n, k]` of a dense layer, with everything the kernels precompute.
#[derive(Debug, Clone, PartialEq)]
pub struct QWeights {
    /// Outputs.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `[n, k]` row-major, symmetric int8 (-127..=127).
    pub w: Vec<i8>,
    /// `sum_k w[n][k]` for each output.
    pub col_sums: Vec<i32>,
    /// Packed for the VNNI kernel (4 x i8 groups).
    pub packed: Packed,
    /// Packed for the AVX2 kernel (2 x i16 groups).
    pub packed16: Packed16,
}

impl QWeights {
    /// Prepares weights `[n, k]`.
    pub fn new(w: Vec<i8>, n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight length must be n*k");
        let col_sums = w
            .chunks_exact(k.max(1))
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        let packed = Packed::new(&w, n, k);
        let packed16 = Packed16::new(&w, n, k);
        Self {
            n,
            k,
            w,
            col_sums,
            packed,
            packed16,
        }
    }
}
