//! Int8 weights of one dense layer: [`QWeights`], the plain `[n, k]` matrix with the column
//! sums every path needs (model data: what a file stores and a report reads), and
//! [`PackedI8`], the same weights in the one layout a path's kernels read, built once when
//! an engine prepares a model for that path (see [`crate::Ops::pack`]).

use super::pack::{Packed, Packed16};

/// Quantized weights `[n, k]`, row-major, symmetric int8.
#[derive(Debug, Clone, PartialEq)]
pub struct QWeights {
    /// Outputs.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `[n, k]` row-major.
    pub w: Vec<i8>,
    /// `sum_k w[n][k]` for each output (the activation zero-point correction).
    pub col_sums: Vec<i32>,
}

impl QWeights {
    /// Weights `[n, k]` and their column sums.
    pub fn new(w: Vec<i8>, n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight length must be n*k");
        let col_sums = w
            .chunks_exact(k.max(1))
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        Self { n, k, w, col_sums }
    }
}

/// The layouts the kernels read.
#[derive(Debug, Clone, PartialEq)]
pub enum I8Layout {
    /// `[n, k]` as given (the scalar reference).
    RowMajor(Vec<i8>),
    /// Panels of 16 outputs, `k` in groups of 4 bytes.
    Quads(Packed),
    /// Panels of 8 outputs, `k` in pairs widened to i16.
    Pairs(Packed16),
}

/// Int8 weights packed for one path, with the column sums.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedI8 {
    /// Outputs.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `sum_k w[n][k]` for each output.
    pub col_sums: Vec<i32>,
    /// The packed values.
    pub layout: I8Layout,
}

impl PackedI8 {
    /// `w` in `layout`'s form (`layout` built from `w`).
    pub fn new(w: &QWeights, layout: I8Layout) -> Self {
        Self {
            n: w.n,
            k: w.k,
            col_sums: w.col_sums.clone(),
            layout,
        }
    }

    /// The plain weights back, where they are stored row-major (the scalar path's packing;
    /// what another runtime that packs for itself, such as the GPU, starts from).
    pub fn to_qweights(&self) -> Option<QWeights> {
        match &self.layout {
            I8Layout::RowMajor(w) => Some(QWeights {
                n: self.n,
                k: self.k,
                w: w.clone(),
                col_sums: self.col_sums.clone(),
            }),
            _ => None,
        }
    }

    /// The row-major weights; panics if packed for another path (a programming error: a
    /// session packs for the path it runs).
    pub(crate) fn row_major(&self) -> &[i8] {
        match &self.layout {
            I8Layout::RowMajor(w) => w,
            other => panic!("weights packed as {}, not row-major", other.name()),
        }
    }

    /// The 4-byte-group panels; panics if packed for another path.
    #[allow(dead_code)] // read by the x86-64 kernels only
    pub(crate) fn quads(&self) -> &Packed {
        match &self.layout {
            I8Layout::Quads(p) => p,
            other => panic!("weights packed as {}, not quads", other.name()),
        }
    }

    /// The i16-pair panels; panics if packed for another path.
    #[allow(dead_code)] // read by the x86-64 kernels only
    pub(crate) fn pairs(&self) -> &Packed16 {
        match &self.layout {
            I8Layout::Pairs(p) => p,
            other => panic!("weights packed as {}, not pairs", other.name()),
        }
    }
}

impl I8Layout {
    fn name(&self) -> &'static str {
        match self {
            I8Layout::RowMajor(_) => "row-major",
            I8Layout::Quads(_) => "quads",
            I8Layout::Pairs(_) => "pairs",
        }
    }
}
