//! AVX-512 VNNI: a static convolution whose whole reduction is a few groups of four (at
//! most 4, K <= 16), as the first convolution of an image model (one input channel, 3x3:
//! three groups, the padded fourth byte of each kernel row against a zero weight) or a
//! pointwise one over few channels, with or without the 2x2 max pool after it; one to four
//! panels of 16 outputs, one panel at a time (a 32-output layer's two together, so that
//! two rows' 64 bytes are packed and stored at once).
//!
//! Such a layer does three `vpdpbusd` per pixel and then requantizes 16 outputs, so its
//! epilogue, not its dot products, sets its speed (docs/figures.md, "The requantizing
//! epilogue and kept points"). The general kernels reload the weights and walk the segments
//! per block of rows, hand the accumulators to an epilogue through memory, and add the
//! offset and the zero point there. Here the panel's weights stay in registers for the
//! whole call, each accumulator starts at its output's offset, the zero point rides in the
//! rounding term ([`PanelRequant::folding`]), and four pixels (or four pooled pixels) are
//! requantized and stored at once: six vector instructions per row of 16 outputs where the
//! epilogue took eight. Same bytes: i32 addition wraps the same in any order, and the
//! offset commutes with the pool's max.

use std::arch::x86_64::*;

use super::avx512::{Fused, PanelRequant, store_chunks};
use crate::frame::pack::Packed;
use crate::frame::rows::{PoolShape, RowMap, Rows};

/// Most groups of four a reduction may have here (one register each). With 8 (a pointwise
/// conv 32 -> 64 of the MobileNet-like model) the GEMM, two panels per pass, was faster:
/// 16% against 18-20% of the peak.
const MAX_GROUPS: usize = 4;

/// Most panels of 16 outputs (their constants are built per call).
const MAX_PANELS: usize = 4;

/// Whether the shape suits this kernel: at most [`MAX_PANELS`] panels of weights `p` and a
/// reduction of whole groups, at most [`MAX_GROUPS`] of them (checked before the constants
/// are built).
pub(super) fn fits(rows: &Rows<u8>, p: &Packed) -> bool {
    (1..=MAX_PANELS).contains(&p.panels)
        && rows.seg_len.is_multiple_of(4)
        && (1..=4 * MAX_GROUPS).contains(&rows.k())
}

/// Every panel's constants from [`PanelRequant::folding`], or `None` where a panel's zero
/// point cannot ride in its rounding term.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
pub(super) fn constants(f: &Fused, c: (i32, i32, i32), n: usize, p: &Packed) -> Option<Constants> {
    let mut panels = [None; MAX_PANELS];
    for (i, k) in panels.iter_mut().enumerate().take(p.panels) {
        *k = Some(PanelRequant::folding(f, i, c, n)?);
    }
    Some(Constants(panels))
}

/// One [`PanelRequant`] per panel of a layer, each folding its zero point.
pub(super) struct Constants([Option<PanelRequant>; MAX_PANELS]);

impl Constants {
    fn panels(&self) -> impl Iterator<Item = (usize, &PanelRequant)> {
        self.0.iter().map_while(Option::as_ref).enumerate()
    }
}

/// Every row of `rows` requantized into `out` (`[rows.m, n]`, row-major). The caller has
/// checked the CPU, the rows' reach (`Rows::check`) and [`fits`], and built `k` for `p`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
pub(super) unsafe fn requant(rows: &Rows<u8>, p: &Packed, k: &Constants, out: &mut [u8]) {
    if let [Some(a), Some(b), None, None] = &k.0
        && a.n() == 32
        && a.packs()
        && b.packs()
    {
        assert!(out.len() >= rows.m * 32, "output buffer too short");
        // SAFETY (each): same target features and contract.
        unsafe {
            match rows.k() / 4 {
                1 => Small::<1>::new(rows, p, 0, a).pair(&Small::new(rows, p, 1, b), out),
                2 => Small::<2>::new(rows, p, 0, a).pair(&Small::new(rows, p, 1, b), out),
                3 => Small::<3>::new(rows, p, 0, a).pair(&Small::new(rows, p, 1, b), out),
                _ => Small::<4>::new(rows, p, 0, a).pair(&Small::new(rows, p, 1, b), out),
            }
        }
        return;
    }
    for (panel, rq) in k.panels() {
        assert!(out.len() >= rows.m * rq.n(), "output buffer too short");
        // SAFETY (each): same target features and contract.
        unsafe {
            match rows.k() / 4 {
                1 => Small::<1>::new(rows, p, panel, rq).requant(out),
                2 => Small::<2>::new(rows, p, panel, rq).requant(out),
                3 => Small::<3>::new(rows, p, panel, rq).requant(out),
                _ => Small::<4>::new(rows, p, panel, rq).requant(out),
            }
        }
    }
}

/// The conv + 2x2, stride-2 max pool of `rows` into `out` (`[pooled pixels, n]`). The
/// caller has checked the CPU, the rows' reach, [`fits`] and `vnni_pool::applies`, and
/// built `k` for `p`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
pub(super) unsafe fn conv_pool2(
    rows: &Rows<u8>,
    p: &Packed,
    k: &Constants,
    pool: PoolShape,
    out: &mut [u8],
) {
    for (panel, rq) in k.panels() {
        super::vnni_pool::check_windows(rows, &pool, rq.n(), out);
        // SAFETY (each): same target features and contract.
        unsafe {
            match rows.k() / 4 {
                1 => Small::<1>::new(rows, p, panel, rq).pool(pool, out),
                2 => Small::<2>::new(rows, p, panel, rq).pool(pool, out),
                3 => Small::<3>::new(rows, p, panel, rq).pool(pool, out),
                _ => Small::<4>::new(rows, p, panel, rq).pool(pool, out),
            }
        }
    }
}

/// A layer of `G` groups: its weights in registers and where each group lies in a row.
struct Small<'a, const G: usize> {
    rows: &'a Rows<'a, u8>,
    rq: &'a PanelRequant,
    w: [__m512i; G],
    /// Offset of group `g` from a row's base.
    at: [usize; G],
}

impl<'a, const G: usize> Small<'a, G> {
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    fn new(rows: &'a Rows<'a, u8>, p: &Packed, panel: usize, rq: &'a PanelRequant) -> Self {
        let per_seg = rows.seg_len / 4;
        assert_eq!(rows.segs.len() * per_seg, G, "groups of the rows");
        let panel = p.panel(panel);
        assert!(panel.len() >= G * 64, "packed weights too short");
        Self {
            rows,
            rq,
            // SAFETY: 64 bytes of group g inside the panel (asserted above).
            w: std::array::from_fn(|g| unsafe {
                _mm512_loadu_si512(panel[g * 64..].as_ptr().cast())
            }),
            at: std::array::from_fn(|g| rows.segs[g / per_seg] + 4 * (g % per_seg)),
        }
    }

    /// The accumulators of the `R` rows based at `bases`, each started at its offsets.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VNNI; every base is a row's of `self.rows` (whose reads
    /// `Rows::check` bounded). Inlined into the callers, which take their features.
    #[inline(always)]
    unsafe fn pixels<const R: usize>(&self, bases: [usize; R]) -> [__m512i; R] {
        let a = self.rows.a.as_ptr();
        let mut acc = [self.rq.offset(); R];
        for g in 0..G {
            for (acc, b) in acc.iter_mut().zip(bases) {
                // SAFETY: group g of a row ends inside `a` (this function's contract).
                unsafe {
                    let v = a.add(b + self.at[g]).cast::<i32>().read_unaligned();
                    *acc = _mm512_dpbusd_epi32(*acc, _mm512_set1_epi32(v), self.w[g]);
                }
            }
        }
        acc
    }

    /// This panel of every row requantized into `out`, eight rows a step. A one-panel
    /// layer stores four rows at once (consecutive rows are consecutive 16-byte outputs,
    /// across output rows too); wider ones, each row's 16 outputs at their place in it.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    unsafe fn requant(&self, out: &mut [u8]) {
        let (m, rq) = (self.rows.m, self.rq);
        let n = rq.n();
        let mut bases = Bases::new(self.rows);
        let mut r = 0;
        // SAFETY (every `pixels` and store): the features are this function's; the bases
        // are rows below m, and the stores check their bytes against `out`.
        unsafe {
            if rq.packs_rows() {
                while r + 8 <= m {
                    let acc = self.pixels::<8>(bases.take());
                    rq.store4::<true>([acc[0], acc[1], acc[2], acc[3]], r * n, out);
                    rq.store4::<true>([acc[4], acc[5], acc[6], acc[7]], (r + 4) * n, out);
                    r += 8;
                }
                if r + 4 <= m {
                    let acc = self.pixels::<4>(bases.take());
                    rq.store4::<true>(acc, r * n, out);
                    r += 4;
                }
            } else {
                while r + 8 <= m {
                    let acc = self.pixels::<8>(bases.take());
                    for (i, a) in acc.into_iter().enumerate() {
                        rq.store::<true>(a, (r + i) * n, 1, out);
                    }
                    r += 8;
                }
            }
            for r in r..m {
                let [acc] = self.pixels::<1>(bases.take());
                rq.store::<true>(acc, r * n, 1, out);
            }
        }
    }

    /// Every row of a 32-output layer into `out`, this panel its first 16 outputs and
    /// `hi` its last: two rows' 64 bytes requantized and stored at once
    /// ([`store_chunks`]), where panel by panel each row's 16 bytes took their own clamp,
    /// pack and masked store. The caller has checked that both panels pack.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    unsafe fn pair(&self, hi: &Self, out: &mut [u8]) {
        let (m, rq) = (self.rows.m, [self.rq, hi.rq, self.rq, hi.rq]);
        let mut bases = Bases::new(self.rows);
        let mut r = 0;
        // SAFETY (every `pixels` and store): the features are this function's; the bases
        // are rows below m, and the stores check their bytes against `out`.
        unsafe {
            while r + 4 <= m {
                let b = bases.take::<4>();
                let (x, y) = (self.pixels(b), hi.pixels(b));
                store_chunks::<true>(rq, [x[0], y[0], x[1], y[1]], r * 32, out);
                store_chunks::<true>(rq, [x[2], y[2], x[3], y[3]], (r + 2) * 32, out);
                r += 4;
            }
            for r in r..m {
                let b = bases.take::<1>();
                let ([x], [y]) = (self.pixels(b), hi.pixels(b));
                self.rq.store::<true>(x, r * 32, 1, out);
                hi.rq.store::<true>(y, r * 32, 1, out);
            }
        }
    }

    /// Every pooled pixel into `out`: four pooled pixels (two conv rows of eight pixels) a
    /// block, then the rest of the pooled row one at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    unsafe fn pool(&self, pool: PoolShape, out: &mut [u8]) {
        let [ph, pw] = pool.out_hw;
        let (rs, cs) = self.rows.conv_steps().expect("a convolution's rows");
        let rq = self.rq;
        let n = rq.n();
        for py in 0..ph {
            let line = 2 * py * rs;
            let mut px = 0;
            // SAFETY (every `pixels` and store): the features are this function's; every
            // window's pixels are rows of `self.rows` (asserted by `conv_pool2`); the
            // stores check their bytes against `out`.
            unsafe {
                while px + 4 <= pw {
                    let b0 = line + 2 * px * cs;
                    let acc =
                        self.pixels::<16>(std::array::from_fn(|i| b0 + i / 8 * rs + i % 8 * cs));
                    // (A loop, not `array::from_fn`: a closure does not take the features.)
                    let mut pooled = [_mm512_setzero_si512(); 4];
                    for (i, v) in pooled.iter_mut().enumerate() {
                        *v = max4([acc[2 * i], acc[2 * i + 1], acc[8 + 2 * i], acc[9 + 2 * i]]);
                    }
                    let at = (py * pw + px) * n;
                    if rq.packs_rows() {
                        rq.store4::<true>(pooled, at, out);
                    } else {
                        for (i, v) in pooled.into_iter().enumerate() {
                            rq.store::<true>(v, at + i * n, 1, out);
                        }
                    }
                    px += 4;
                }
                for px in px..pw {
                    let b0 = line + 2 * px * cs;
                    let window = self.pixels::<4>([b0, b0 + cs, b0 + rs, b0 + rs + cs]);
                    rq.store::<true>(max4(window), (py * pw + px) * n, 1, out);
                }
            }
        }
    }
}

/// The max of a pooling window's four accumulators.
///
/// # Safety
/// The CPU has AVX-512F (inlined into the kernels, which take their features).
#[inline(always)]
unsafe fn max4([a, b, c, d]: [__m512i; 4]) -> __m512i {
    // SAFETY: this function's contract.
    unsafe { _mm512_max_epi32(_mm512_max_epi32(a, b), _mm512_max_epi32(c, d)) }
}

/// The bases of consecutive rows, one add each (a division only where the rows start).
struct Bases {
    next: usize,
    /// Base of the current output row, and the row's column.
    line: usize,
    col: usize,
    /// Columns per output row (`usize::MAX` for a matrix), and the steps.
    width: usize,
    col_step: usize,
    row_step: usize,
}

impl Bases {
    fn new(rows: &Rows<u8>) -> Self {
        let (width, col_step, row_step) = match rows.map {
            RowMap::Strided { lda } => (usize::MAX, lda, 0),
            RowMap::Conv {
                row_step,
                col_step,
                ow,
            } => (ow, col_step, row_step),
        };
        Self {
            next: 0,
            line: 0,
            col: 0,
            width,
            col_step,
            row_step,
        }
    }

    /// The next `R` rows' bases.
    #[inline(always)]
    fn take<const R: usize>(&mut self) -> [usize; R] {
        if self.col + R < self.width {
            // Inside one output row: steps only.
            let b0 = self.next;
            self.col += R;
            self.next += R * self.col_step;
            return std::array::from_fn(|i| b0 + i * self.col_step);
        }
        std::array::from_fn(|_| {
            let b = self.next;
            self.col += 1;
            if self.col == self.width {
                self.col = 0;
                self.line += self.row_step;
                self.next = self.line;
            } else {
                self.next += self.col_step;
            }
            b
        })
    }
}
