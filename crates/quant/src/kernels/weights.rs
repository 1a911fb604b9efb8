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
    /// `[n, ceil(k/4)]`: each output's weights 4 at a time as one little-endian word (zero
    /// filled), the operand the pixels-in-lanes convolution broadcasts.
    pub quads: Vec<i32>,
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
        let quads = w
            .chunks_exact(k.max(1))
            .flat_map(|row| {
                row.chunks(4).map(|q| {
                    let mut b = [0u8; 4];
                    q.iter().zip(&mut b).for_each(|(v, o)| *o = *v as u8);
                    i32::from_le_bytes(b)
                })
            })
            .collect();
        Self {
            n,
            k,
            w,
            col_sums,
            packed,
            packed16,
            quads,
        }
    }
}
