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

    /// How many rows from `row0` (at most `max`, within `m`) have bases in one arithmetic
    /// run, `base(row0) + i * step`: all of them for a matrix, the rest of the output row
    /// for a convolution. Kernels that block rows this way address each row by one add.
    #[inline(always)]
    pub fn run_len(&self, row0: usize, max: usize) -> usize {
        let left = max.min(self.m - row0);
        match self.map {
            RowMap::Strided { .. } => left,
            RowMap::Conv { ow, .. } => left.min(ow - row0 % ow),
        }
    }

    /// `(base(row0), step)` of the run starting at `row0` (see [`Self::run_len`]).
    #[inline(always)]
    pub fn run(&self, row0: usize) -> (usize, usize) {
        match self.map {
            RowMap::Strided { lda } => (row0 * lda, lda),
            RowMap::Conv { col_step, .. } => (self.base(row0), col_step),
        }
    }

    /// `(row_step, col_step)` of a convolution's rows (`None` for a matrix): conv pixel
    /// `(oy, ox)` starts at `oy * row_step + ox * col_step`.
    pub fn conv_steps(&self) -> Option<(usize, usize)> {
        match self.map {
            RowMap::Strided { .. } => None,
            RowMap::Conv {
                row_step, col_step, ..
            } => Some((row_step, col_step)),
        }
    }

    /// Bases of rows `row0..row0 + R`: one division per block, then steps.
    #[inline(always)]
    pub fn bases<const R: usize>(&self, row0: usize) -> [usize; R] {
        match self.map {
            RowMap::Strided { lda } => std::array::from_fn(|r| (row0 + r) * lda),
            RowMap::Conv {
                row_step,
                col_step,
                ow,
            } => {
                let (mut oy, mut ox) = (row0 / ow, row0 % ow);
                std::array::from_fn(|_| {
                    let b = oy * row_step + ox * col_step;
                    ox += 1;
                    if ox == ow {
                        (ox, oy) = (0, oy + 1);
                    }
                    b
                })
            }
        }
    }

    /// Panics unless every value any row reads lies inside `a`: the one check that lets the
    /// SIMD kernels read without bounds tests.
    pub fn check(&self) {
        let reach = self.segs.iter().max().copied().unwrap_or(0) + self.seg_len;
        // Bases grow with the row and, within an output row, with the column: the largest is
        // the last row's, or the end of the output row before it.
        let last = match (self.m, self.map) {
            (0, _) => 0,
            (m, RowMap::Conv { ow, .. }) if m > ow => {
                self.base(m - 1).max(self.base((m - 1) / ow * ow - 1))
            }
            (m, _) => self.base(m - 1),
        };
        assert!(
            self.m == 0 || self.seg_len == 0 || last + reach <= self.a.len(),
            "GEMM rows reach past their buffer ({} + {reach} > {})",
            last,
            self.a.len()
        );
    }
}

/// A non-overlapping max pool after a convolution (kernel = stride, floor mode): which
/// pooled output each conv output pixel falls in.
#[derive(Debug, Clone, Copy)]
pub struct PoolShape {
    /// Conv output width.
    pub ow: usize,
    /// Pooled `[h, w]`.
    pub out_hw: [usize; 2],
    /// Window = stride `[sy, sx]`.
    pub window: [usize; 2],
}

impl PoolShape {
    /// The pooled pixel each of the conv output pixels `row0..row0 + R` lands in, if any:
    /// divisions once per block, then counters (a division per row cost more than the
    /// requantization it saves); `usize::MAX` for a pixel no window covers.
    #[inline(always)]
    pub fn targets<const R: usize>(&self, row0: usize) -> [usize; R] {
        let mut t = [usize::MAX; R];
        self.each_target(row0, R, |r, p| t[r] = p);
        t
    }

    /// `f(r, pooled pixel)` for each of the conv output pixels `row0 + r`, `r < rows`, that
    /// a window covers, in order (the counters of [`Self::targets`]).
    #[inline(always)]
    pub fn each_target(&self, row0: usize, rows: usize, mut f: impl FnMut(usize, usize)) {
        let ([sy, sx], [ph, pw]) = (self.window, self.out_hw);
        let (oy, mut ox) = (row0 / self.ow, row0 % self.ow);
        let (mut py, mut cy, mut px, mut cx) = (oy / sy, oy % sy, ox / sx, ox % sx);
        for r in 0..rows {
            if py < ph && px < pw {
                f(r, py * pw + px);
            }
            ox += 1;
            cx += 1;
            if cx == sx {
                (cx, px) = (0, px + 1);
            }
            if ox == self.ow {
                (ox, px, cx) = (0, 0, 0);
                cy += 1;
                if cy == sy {
                    (cy, py) = (0, py + 1);
                }
            }
        }
    }
}

/// Writes `rows` as a plain `[m, k]` matrix into `out` (for kernels that read a matrix).
pub fn gather<T: Copy>(rows: &Rows<T>, out: &mut [T]) {
    rows.check();
    let k = rows.k();
    for r in 0..rows.m {
        let base = rows.base(r);
        let dst = &mut out[r * k..(r + 1) * k];
        for (d, &s) in dst.chunks_exact_mut(rows.seg_len.max(1)).zip(rows.segs) {
            d.copy_from_slice(&rows.a[base + s..base + s + rows.seg_len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_concatenates_segments_and_check_catches_overreach() {
        let a: Vec<u8> = (0..30).collect();
        let rows = Rows {
            a: &a,
            m: 3,
            segs: &[0, 10],
            seg_len: 2,
            map: RowMap::Conv {
                row_step: 7,
                col_step: 3,
                ow: 2,
            },
        };
        let mut out = vec![0u8; 12];
        gather(&rows, &mut out);
        // Rows 0, 1 (first output row), 2 (second output row: base 7).
        assert_eq!(out, [0, 1, 10, 11, 3, 4, 13, 14, 7, 8, 17, 18]);
        let short = Rows {
            a: &a[..18],
            ..rows
        };
        assert!(std::panic::catch_unwind(|| short.check()).is_err());
    }
}
