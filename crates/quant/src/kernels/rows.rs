//! The left operand of a GEMM as the kernels read it: row `r`'s reduction is the
//! concatenation, over `segs`, of `seg_len` values starting at `a[base(r) + seg]`.
//!
//! A plain matrix is one segment of length `k` per row at stride `lda`. A convolution over a
//! zero-padded channels-last input is one segment per kernel tap (`c` values each) at the
//! tap's offset from the output pixel's base: the kernel reads the input where it lies, so
//! no im2col matrix is written (a direct convolution in GEMM form).

/// How row `r` maps to its base offset in `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowMap {
    /// `base(r) = r * lda`.
    Strided {
        /// Row stride.
        lda: usize,
    },
    /// `base(r) = (r / ow) * row_step + (r % ow) * col_step` (output pixels of a conv).
    Conv {
        /// Elements between output rows.
        row_step: usize,
        /// Elements between output columns.
        col_step: usize,
        /// Output width.
        ow: usize,
    },
}

/// A GEMM's left operand, `m` rows of `segs.len() * seg_len` values.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T> {
    /// Backing values.
    pub a: &'a [T],
    /// Rows.
    pub m: usize,
    /// Segment offsets from a row's base.
    pub segs: &'a [usize],
    /// Values per segment.
    pub seg_len: usize,
    /// Row bases.
    pub map: RowMap,
}

impl<'a, T> Rows<'a, T> {
    /// A plain `[m, k]` matrix at row stride `lda`.
    pub fn matrix(a: &'a [T], m: usize, k: usize, lda: usize) -> Self {
        Self {
            a,
            m,
            segs: &[0],
            seg_len: k,
            map: RowMap::Strided { lda },
        }
    }

    /// Reduction length.
    pub fn k(&self) -> usize {
        self.segs.len() * self.seg_len
    }

    /// Base offset of row `r`.
    #[inline(always)]
    pub fn base(&self, r: usize) -> usize {
        match self.map {
            RowMap::Strided { lda } => r * lda,
            RowMap::Conv {
                row_step,
                col_step,
                ow,
            } => (r / ow) * row_step + (r % ow) * col_step,
        }
    }

    /// Panics unless every value any row reads lies inside `a`: the one check that lets the
    /// SIMD kernels read without bounds tests.
    pub fn check(&self) {
        let reach = self.segs.iter().max().copied().unwrap_or(0) + self.seg_len;
        let last = (0..self.m).map(|r| self.base(r)).max().unwrap_or(0);
        assert!(
            self.m == 0 || self.seg_len == 0 || last + reach <= self.a.len(),
            "GEMM rows reach past their buffer ({} + {reach} > {})",
            last,
            self.a.len()
        );
    }
}
