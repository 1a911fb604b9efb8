//! AVX-512 VNNI GEMM: `vpdpbusd` multiplies 4 u8 activations by 4 i8 weights and adds the
//! four products into an i32 lane, 16 lanes per instruction, with no intermediate
//! saturation, so the result is exactly the scalar reference's.
//!
//! Register blocking: up to [`MR`] rows x 2 panels of 16 outputs = 16 accumulators; each
//! step loads 2 x 64 bytes of packed weights and broadcasts 4 activation bytes per row.
//! Weights of one panel (16 outputs, the common width of small convolutions) take
//! [`MR_ONE_PANEL`] rows instead, so that they too keep 16 accumulators in flight.
//! Accumulators for a row block go to a small stack-resident tile and straight into the
//! epilogue, so no i32 tensor is written to memory.

use std::arch::x86_64::*;

use crate::frame::epilogue::{Epilogue, OutLayout};
use crate::frame::pack::{NR, Packed};
use crate::frame::requant::Requant;
use crate::frame::rows::{PoolShape, Rows};
use crate::frame::weights::PackedI8;

/// Rows per block.
pub const MR: usize = 8;

/// Rows per block when the weights are a single panel: 8 accumulators cannot hide
/// `vpdpbusd`'s latency (5 cycles) on a core with two such pipes, 16 can.
pub const MR_ONE_PANEL: usize = 16;

/// Rows per block for weights of `p`'s width.
fn rows_per_block(p: &Packed) -> usize {
    if p.panels == 1 { MR_ONE_PANEL } else { MR }
}

/// The four activation bytes of group `g` of a row (zero-filled past `k`) as one u32.
#[inline(always)]
fn quad(row: &[u8], g: usize, k: usize) -> i32 {
    let o = 4 * g;
    if o + 4 <= k {
        i32::from_le_bytes([row[o], row[o + 1], row[o + 2], row[o + 3]])
    } else {
        let mut b = [0u8; 4];
        for (t, v) in b.iter_mut().enumerate() {
            if o + t < k {
                *v = row[o + t];
            }
        }
        i32::from_le_bytes(b)
    }
}

/// Per-output requantization constants, padded to whole panels, for the fused epilogue.
#[derive(Debug, Clone)]
pub(super) struct Fused {
    pub(super) offset: Vec<i32>,
    /// Multipliers as i32, one per output.
    pub(super) mult: Vec<i32>,
    /// Shifts and rounding terms as i64, per panel: the 8 even outputs then the 8 odd ones
    /// (the lane order of `vpmuldq` on even and odd i32 lanes).
    shift: Vec<i64>,
    round: Vec<i64>,
    /// Every shift at least 33 (or a zero multiplier): the short form of [`PanelRequant`],
    /// with `s - 32` and `2^(s-33)` per output in `shift32` and `round32`.
    pub(super) high: bool,
    pub(super) shift32: Vec<i32>,
    pub(super) round32: Vec<i32>,
}

impl Fused {
    /// `None` when a multiplier needs the saturating `shift == 0` case (kept scalar).
    fn new(offset: &[i32], requant: &[Requant], n: usize, panels: usize) -> Option<Self> {
        let len = panels * NR;
        let (mut o, mut m, mut sh, mut rd) = (
            vec![0i32; len],
            vec![0i32; len],
            vec![1i64; len],
            vec![0i64; len],
        );
        // A zero multiplier (and a padded output) takes s = 33 in the short form.
        let (mut sh32, mut rd32) = (vec![1i32; len], vec![1i32; len]);
        let mut high = true;
        for j in 0..n {
            let rq = requant[if requant.len() == 1 { 0 } else { j }];
            if rq.shift == 0 && rq.multiplier != 0 {
                return None;
            }
            o[j] = offset[j];
            m[j] = rq.multiplier;
            // Even outputs of a panel fill its first 8 i64 slots, odd ones the next 8.
            let slot = (j / NR) * NR + (j % NR) % 2 * 8 + (j % NR) / 2;
            sh[slot] = rq.shift.max(1) as i64;
            rd[slot] = if rq.shift == 0 {
                0
            } else {
                1i64 << (rq.shift - 1)
            };
            if rq.multiplier != 0 {
                high &= rq.shift >= 33;
                sh32[j] = rq.shift as i32 - 32;
                rd32[j] = 1i32.checked_shl(rq.shift.saturating_sub(33)).unwrap_or(0);
            }
        }
        Some(Self {
            offset: o,
            mult: m,
            shift: sh,
            round: rd,
            high,
            shift32: sh32,
            round32: rd32,
        })
    }
}

/// Runs the GEMM over `m` rows of `a` (row stride `lda >= k`) and feeds the epilogue.
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
    assert!(
        m == 0 || a.len() >= (m - 1) * lda + w.k,
        "activation buffer too short"
    );
    qgemm_rows(&Rows::matrix(a, m, w.k, lda), w, epi);
}

/// The GEMM over any [`Rows`]: a matrix, or a channels-last convolution read tap by tap
/// (segments must then be whole groups of 4, so no group straddles two taps).
pub fn qgemm_rows(rows: &Rows<u8>, w: &PackedI8, epi: &mut Epilogue) {
    check(rows, w, None);
    // SAFETY: the CPU features were checked above; `rows.check()` bounds every activation
    // read, and weight reads stay within the packed buffer (panels * k4 * 64 bytes).
    unsafe { qgemm_vnni(rows, w, epi) }
}

/// What every entry point checks before its unsafe kernel: the CPU has the instructions,
/// the rows fit the weights and their buffer, a requantizer was built for these weights.
fn check(rows: &Rows<u8>, w: &PackedI8, rq: Option<&Requantizer>) {
    assert!(
        crate::CpuFeatures::get().vnni(),
        "AVX-512 VNNI kernel called on a CPU without it"
    );
    assert_eq!(rows.k(), w.k, "row length must match the weights");
    assert!(
        rows.segs.len() == 1 || rows.seg_len.is_multiple_of(4),
        "segments must hold whole groups of 4"
    );
    if let Some(rq) = rq {
        assert_eq!(
            rq.0.mult.len(),
            w.quads().panels * NR,
            "requantizer built for other weights"
        );
    }
    rows.check();
}

/// A layer's requantization constants laid out for the VNNI epilogue, built once per model
/// (with its prepared weights) rather than per call.
#[derive(Debug, Clone)]
pub struct Requantizer(Fused);

impl Requantizer {
    /// `None` when a multiplier needs the saturating `shift == 0` case (the general
    /// epilogue handles it).
    pub fn new(offset: &[i32], requant: &[Requant], w: &PackedI8) -> Option<Self> {
        Fused::new(offset, requant, w.n, w.quads().panels).map(Self)
    }

    /// The same for `n` outputs without packed weights (a depthwise layer's channels).
    pub fn for_outputs(offset: &[i32], requant: &[Requant], n: usize) -> Option<Self> {
        Fused::new(offset, requant, n, n.div_ceil(NR)).map(Self)
    }

    /// The per-output constants.
    pub(super) fn fused(&self) -> &Fused {
        &self.0
    }
}

/// A static convolution fused with the 2D max pool that follows it: the i32 accumulators
/// are max-reduced per pooled pixel and only the pooled pixels are requantized. Exact:
/// requantization (`acc + offset`, a positive multiplier, the ReLU clamp) is monotonic, so
/// it commutes with max. `out` receives the pooled map, `[pooled pixels, n]`.
pub fn conv_pool_rows(
    rows: &Rows<u8>,
    w: &PackedI8,
    rq: &Requantizer,
    (zo, lo, hi): (i32, i32, i32),
    pool: PoolShape,
    buf: &mut Vec<i32>,
    out: &mut [u8],
) {
    let pooled = pool.out_hw[0] * pool.out_hw[1];
    assert!(out.len() >= pooled * w.n, "output buffer too short");
    check(rows, w, Some(rq));
    if super::vnni_pool::applies(rows, &pool) {
        let c = (zo, lo, hi);
        if let Some(k) = super::vnni_lanes::prepare(rows, w.quads(), &rq.0, c, w.n) {
            // SAFETY: features checked above and by `prepare` (VBMI); reads bounded by
            // `rows.check()`, writes by the output size.
            unsafe { super::vnni_lanes::conv_pool2(rows, w.quads(), &k, pool, out) };
            return;
        }
        // SAFETY (both): features checked above; reads bounded by `rows.check()`, writes by
        // the output size (asserted above).
        if super::vnni_small::fits(rows, w.quads())
            && let Some(k) = unsafe { super::vnni_small::constants(&rq.0, c, w.n, w.quads()) }
        {
            unsafe { super::vnni_small::conv_pool2(rows, w.quads(), &k, pool, out) };
            return;
        }
        unsafe {
            super::vnni_pool::conv_pool2(rows, w.quads(), &rq.0, (zo, lo, hi), pool, w.n, out)
        };
        return;
    }
    let stride = w.quads().panels * NR;
    buf.clear();
    buf.resize(pooled * stride, i32::MIN);
    // SAFETY: features checked above; reads bounded by `rows.check()`, writes by the sizes.
    unsafe {
        conv_pool_vnni(
            rows,
            w.quads(),
            &rq.0,
            (zo, lo, hi),
            pool,
            buf,
            stride,
            w.n,
            out,
        )
    };
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn conv_pool_vnni(
    rows: &Rows<u8>,
    p: &Packed,
    f: &Fused,
    c: (i32, i32, i32),
    pool: PoolShape,
    buf: &mut [i32],
    stride: usize,
    n: usize,
    out: &mut [u8],
) {
    {
        let mut sink = Sink::PoolMax {
            buf: &mut *buf,
            stride,
            pool,
        };
        let (mut row0, mr) = (0, rows_per_block(p));
        while row0 < rows.m {
            let r = rows.run_len(row0, mr);
            // SAFETY: same target features.
            unsafe { rows_block(r, rows, row0, p, &mut sink) };
            row0 += r;
        }
    }
    let layout = OutLayout::RowMajor;
    let rows_out = buf.len() / stride;
    for panel in 0..stride / NR {
        let load = |t: usize| {
            // SAFETY: 16 i32 of pooled row t, inside `buf`.
            unsafe { _mm512_loadu_si512(buf[t * stride + panel * NR..].as_ptr().cast()) }
        };
        let mut t = 0;
        while t + MR <= rows_out {
            let acc: [__m512i; MR] = std::array::from_fn(|r| load(t + r));
            // SAFETY: same target features; stores bounded by `out`'s size check.
            unsafe { requant_panel(&acc, panel, t, f, c, layout, n, out) };
            t += MR;
        }
        for t in t..rows_out {
            // SAFETY: as above.
            unsafe { requant_panel(&[load(t)], panel, t, f, c, layout, n, out) };
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn qgemm_vnni(rows: &Rows<u8>, w: &PackedI8, epi: &mut Epilogue) {
    let (m, n) = (rows.m, w.n);
    let p = w.quads();
    if let Epilogue::Requant {
        offset,
        requant,
        zo,
        lo,
        hi,
        layout,
        out,
    } = epi
        && let Some(f) = Fused::new(offset, requant, n, p.panels)
    {
        // SAFETY: same target features.
        unsafe { requant_vnni(rows, p, &f, (*zo, *lo, *hi), *layout, n, out) };
        return;
    }
    let (stride, mr) = (p.panels * NR, rows_per_block(p));
    let mut tile = vec![0i32; mr * stride];
    let mut row0 = 0;
    while row0 < m {
        let r = rows.run_len(row0, mr);
        // SAFETY: the caller enabled the target features this function is compiled for.
        unsafe {
            rows_block(
                r,
                rows,
                row0,
                p,
                &mut Sink::Tile {
                    tile: &mut tile,
                    stride,
                },
            )
        };
        epi.apply_block(row0, r, n, &tile, stride);
        row0 += r;
    }
}

/// The static GEMM requantized straight from the registers: no i32 tile at all.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn requant_vnni(
    rows: &Rows<u8>,
    p: &Packed,
    f: &Fused,
    (zo, lo, hi): (i32, i32, i32),
    layout: OutLayout,
    n: usize,
    out: &mut [u8],
) {
    // Few outputs: pixels in the lanes.
    if layout == OutLayout::RowMajor
        && let Some(k) = super::vnni_lanes::prepare(rows, p, f, (zo, lo, hi), n)
    {
        // SAFETY: same target features and VBMI (checked by `prepare`); the caller checked
        // the rows' reach.
        unsafe { super::vnni_lanes::requant(rows, p, &k, out) };
        return;
    }
    // A small reduction into one panel: weights and constants in registers for the call.
    if super::vnni_small::fits(rows, p)
        && layout == OutLayout::RowMajor
        && let Some(k) = super::vnni_small::constants(f, (zo, lo, hi), n, p)
    {
        // SAFETY: same target features; the caller checked the rows' reach.
        unsafe { super::vnni_small::requant(rows, p, &k, out) };
        return;
    }
    // One panel: its constants built once here, not per row block.
    let one = if p.panels == 1 {
        Some(PanelRequant::new(f, 0, (zo, lo, hi), n))
    } else {
        None
    };
    let mut sink = Sink::Requant {
        f,
        one,
        zo,
        lo,
        hi,
        layout,
        n,
        out,
    };
    let (mut row0, mr) = (0, rows_per_block(p));
    while row0 < rows.m {
        let r = rows.run_len(row0, mr);
        // SAFETY: the caller enabled the target features this function is compiled for.
        unsafe { rows_block(r, rows, row0, p, &mut sink) };
        row0 += r;
    }
}

/// The static GEMM with requantization constants built once (a [`Requantizer`] kept with
/// the model's prepared weights), `out` row-major `[rows, n]`.
pub fn qgemm_requant(
    rows: &Rows<u8>,
    w: &PackedI8,
    rq: &Requantizer,
    c: (i32, i32, i32),
    out: &mut [u8],
) {
    assert!(out.len() >= rows.m * w.n, "output buffer too short");
    check(rows, w, Some(rq));
    let layout = OutLayout::RowMajor;
    // SAFETY: features checked above; reads bounded by `rows.check()`, writes by the sizes.
    unsafe { requant_vnni(rows, w.quads(), &rq.0, c, layout, w.n, out) };
}

/// Where a block's accumulators go.
// One per call, on the stack: the large variant (a panel's constants) costs nothing, and
// boxing it would allocate per call.
#[allow(clippy::large_enum_variant)]
enum Sink<'a> {
    /// Max-reduced into the pooled pixel's i32 row of `stride` (fused conv + max pool).
    PoolMax {
        buf: &'a mut [i32],
        stride: usize,
        pool: PoolShape,
    },
    /// Stored as i32 rows of `stride` for a general epilogue.
    Tile { tile: &'a mut [i32], stride: usize },
    /// Requantized to u8 in registers (the static epilogue).
    Requant {
        f: &'a Fused,
        /// The constants of the only panel, where the weights have one.
        one: Option<PanelRequant>,
        zo: i32,
        lo: i32,
        hi: i32,
        layout: OutLayout,
        n: usize,
        out: &'a mut [u8],
    },
}

/// The static epilogue on one panel of `R` rows: `clamp(zo + ((acc + offset) * m + round)
/// shifted right by shift, lo, hi)` in 64-bit lanes, exactly
/// [`Requant::apply`]; the panel's constants are loaded once for all rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
#[inline]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn requant_panel<const R: usize>(
    acc: &[__m512i; R],
    panel: usize,
    row0: usize,
    f: &Fused,
    c: (i32, i32, i32),
    layout: OutLayout,
    n: usize,
    out: &mut [u8],
) {
    PanelRequant::new(f, panel, c, n).rows(acc, row0, layout, out);
}

/// One panel's requantization constants in registers, for kernels that requantize many
/// rows of that panel in one call (loaded once, not per row block).
#[derive(Clone, Copy)]
pub(super) struct PanelRequant {
    off: __m512i,
    m: __m512i,
    m_odd: __m512i,
    sh_e: __m512i,
    sh_o: __m512i,
    rd_e: __m512i,
    rd_o: __m512i,
    /// The short form's `s - 32` and `2^(s-33)` (see `bytes`), where `high`.
    high: bool,
    sh32: __m512i,
    rd32: __m512i,
    /// `rd32 + (zo << (s - 32))`: the short form's rounding term with the zero point in it,
    /// where [`Self::folding`] built these constants; `folds` says so: accumulators may then
    /// start at the offset and skip the zero point's add (`BIASED` in [`Self::store4`] and
    /// [`Self::store`]).
    rd32z: __m512i,
    folds: bool,
    zo: __m512i,
    lo: __m512i,
    hi: __m512i,
    /// [`Self::store4`]'s byte clamp and dword order, and whether it applies.
    lo8: __m512i,
    hi8: __m512i,
    rows_order: __m512i,
    rows4: bool,
    /// Whether [`store_chunks`] takes this panel: all 16 outputs there and the clamp in
    /// `0..=255`.
    packs: bool,
    /// First output of the panel, and of the layer.
    c0: usize,
    n: usize,
    /// Outputs of the panel below `n`, and their mask.
    valid: usize,
    mask: u16,
}

impl PanelRequant {
    /// The constants of `panel` (its first output below `n`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    #[inline]
    pub(super) fn new(f: &Fused, panel: usize, (zo, lo, hi): (i32, i32, i32), n: usize) -> Self {
        let c0 = panel * NR;
        let load = |v: &[i32]| {
            assert!(v.len() >= NR);
            // SAFETY: 16 i32 inside `v`.
            unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
        };
        let load64 = |v: &[i64]| {
            assert!(v.len() >= 8);
            // SAFETY: 8 i64 inside `v`.
            unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
        };
        let m = load(&f.mult[c0..]);
        let valid = (n - c0).min(NR);
        Self {
            off: load(&f.offset[c0..]),
            m,
            m_odd: _mm512_srli_epi64::<32>(m),
            sh_e: load64(&f.shift[c0..]),
            sh_o: load64(&f.shift[c0 + 8..]),
            rd_e: load64(&f.round[c0..]),
            rd_o: load64(&f.round[c0 + 8..]),
            high: f.high,
            sh32: load(&f.shift32[c0..]),
            rd32: load(&f.round32[c0..]),
            rd32z: _mm512_setzero_si512(),
            folds: false,
            zo: _mm512_set1_epi32(zo),
            lo: _mm512_set1_epi32(lo),
            hi: _mm512_set1_epi32(hi),
            lo8: _mm512_set1_epi8(lo.clamp(0, 255) as u8 as i8),
            hi8: _mm512_set1_epi8(hi.clamp(0, 255) as u8 as i8),
            rows_order: _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
            rows4: n == NR && (0..=255).contains(&lo) && (lo..=255).contains(&hi),
            packs: valid == NR && (0..=255).contains(&lo) && (lo..=255).contains(&hi),
            c0,
            n,
            valid,
            mask: if valid == NR {
                u16::MAX
            } else {
                (1u16 << valid) - 1
            },
        }
    }

    /// [`Self::new`] that also folds the zero point, or `None` where it does not fit
    /// the rounding term. A separate constructor: `requant_panel` builds constants per row
    /// block, and this costs a few more instructions (in 64-bit lanes; it runs once per
    /// sample and panel).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    pub(super) fn folding(f: &Fused, panel: usize, c: (i32, i32, i32), n: usize) -> Option<Self> {
        if !f.high {
            return None;
        }
        let k = Self::new(f, panel, c, n);
        // (h + rd + zo * 2^s) >> s = ((h + rd) >> s) + zo for an arithmetic shift; with
        // |h| <= 2^30 the sum stays an i32 while the two terms stay below 2^30. The short
        // form's shifts are 1..=31: exact in 64-bit lanes.
        let zo = _mm512_set1_epi64(i64::from(c.0));
        let (lo, hi) = (_mm512_set1_epi64(-(1 << 30)), _mm512_set1_epi64(1 << 30));
        let half = |v: __m512i, upper: bool| {
            let h = if upper {
                _mm512_extracti64x4_epi64::<1>(v)
            } else {
                _mm512_castsi512_si256(v)
            };
            _mm512_cvtepi32_epi64(h)
        };
        let mut t = [_mm512_setzero_si512(); 2];
        for (upper, t) in [false, true].into_iter().zip(&mut t) {
            *t = _mm512_add_epi64(
                half(k.rd32, upper),
                _mm512_sllv_epi64(zo, half(k.sh32, upper)),
            );
            let inside = _mm512_cmpge_epi64_mask(*t, lo) & _mm512_cmplt_epi64_mask(*t, hi);
            if inside != u8::MAX {
                return None;
            }
        }
        let rd32z = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(t[0])),
            _mm512_cvtepi64_epi32(t[1]),
        );
        Some(Self {
            rd32z,
            folds: true,
            ..k
        })
    }

    /// Outputs of the layer (the row length of a row-major output).
    pub(super) fn n(&self) -> usize {
        self.n
    }

    /// The panel's 16 offsets, the start of a `BIASED` accumulator.
    pub(super) fn offset(&self) -> __m512i {
        self.off
    }

    /// Requantizes rows `row0..row0 + R` of this panel into `out`, four at a time where
    /// [`Self::store4`] applies.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    #[inline]
    fn rows<const R: usize>(
        &self,
        acc: &[__m512i; R],
        row0: usize,
        layout: OutLayout,
        out: &mut [u8],
    ) {
        let n = self.n;
        let mut r = 0;
        if self.packs_rows() && layout == OutLayout::RowMajor {
            while r + 4 <= R {
                let four = [acc[r], acc[r + 1], acc[r + 2], acc[r + 3]];
                // SAFETY: this function's target features are `store4`'s contract.
                unsafe { self.store4::<false>(four, (row0 + r) * n, out) };
                r += 4;
            }
        }
        for (r, a) in acc.iter().enumerate().skip(r) {
            let (base, step) = layout.row_base(row0 + r, n);
            self.store::<false>(*a, base, step, out);
        }
    }

    /// The panel's 16 outputs of one row of accumulators as bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    #[inline]
    fn bytes<const BIASED: bool>(&self, a: __m512i) -> __m128i {
        // SAFETY: this function's target features are `ints`' contract.
        let q = unsafe { self.ints::<BIASED>(a) };
        _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, self.lo), self.hi))
    }

    /// The panel's 16 outputs of one row, requantized and shifted by the zero point but not
    /// yet clamped. `BIASED`: `a` already holds the offset and the zero point rides in the
    /// rounding term (only where [`Self::folding`] built these constants).
    ///
    /// # Safety
    /// As [`Self::store4`], which inlines it.
    #[inline(always)]
    unsafe fn ints<const BIASED: bool>(&self, a: __m512i) -> __m512i {
        debug_assert!(!BIASED || self.folds);
        // SAFETY: the caller's CPU has the features (this function's contract).
        unsafe {
            let x = if BIASED {
                a
            } else {
                _mm512_add_epi32(a, self.off)
            };
            // Exact 32x32->64 products of the even and the odd lanes (`vpmuldq`).
            let even = _mm512_mul_epi32(x, self.m);
            let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), self.m_odd);
            // (`BIASED` implies the short form: no test of `high` left in those kernels.)
            let q = if BIASED || self.high {
                // Every shift s >= 33: with h the product's high 32 bits,
                // floor((x + 2^(s-1)) / 2^s) = (h + 2^(s-33)) >> (s - 32) exactly (the rounding
                // term is a multiple of 2^32, and the low word cannot carry a whole step);
                // |h| <= 2^30 and the term <= 2^29, so no overflow. The even products' high
                // words swap down into the even lanes over the odd products, whose high words
                // already lie in the odd lanes: one masked shuffle, then 32-bit lanes only.
                let h = _mm512_mask_shuffle_epi32::<_MM_PERM_CDAB>(odd, 0x5555, even);
                if BIASED {
                    return _mm512_srav_epi32(_mm512_add_epi32(h, self.rd32z), self.sh32);
                }
                _mm512_srav_epi32(_mm512_add_epi32(h, self.rd32), self.sh32)
            } else {
                // Rounded and shifted per output in 64-bit lanes, then the two halves
                // interleaved back into 16 i32.
                let even = _mm512_srav_epi64(_mm512_add_epi64(even, self.rd_e), self.sh_e);
                let odd = _mm512_srav_epi64(_mm512_add_epi64(odd, self.rd_o), self.sh_o);
                _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd))
            };
            _mm512_add_epi32(q, self.zo)
        }
    }

    /// Whether [`Self::store4`] applies: the layer is this one whole panel (16 outputs, so
    /// consecutive rows are consecutive bytes) and its clamp lies in `0..=255`.
    pub(super) fn packs_rows(&self) -> bool {
        self.rows4
    }

    /// Four consecutive rows of a one-panel layer into the 64 bytes at `out[base..]`, as
    /// [`store_chunks`] (same contract).
    ///
    /// # Safety
    /// As [`store_chunks`].
    #[inline(always)]
    pub(super) unsafe fn store4<const BIASED: bool>(
        &self,
        a: [__m512i; 4],
        base: usize,
        out: &mut [u8],
    ) {
        debug_assert!(self.rows4);
        // SAFETY: this function's contract is `store_chunks`'.
        unsafe { store_chunks::<BIASED>([self; 4], a, base, out) }
    }

    /// Whether [`store_chunks`] takes this panel: all 16 outputs there and the clamp
    /// inside `0..=255`.
    pub(super) fn packs(&self) -> bool {
        self.packs
    }

    /// Requantizes one row of accumulators into `out`: output `c0 + j` of the row at
    /// `base + (c0 + j) * step` (panics past the end of `out`). `BIASED` as in
    /// [`Self::ints`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
    #[inline]
    pub(super) fn store<const BIASED: bool>(
        &self,
        a: __m512i,
        base: usize,
        step: usize,
        out: &mut [u8],
    ) {
        let bytes = self.bytes::<BIASED>(a);
        let (c0, valid) = (self.c0, self.valid);
        if step == 1 {
            assert!(base + c0 + valid <= out.len(), "output row past the buffer");
            // SAFETY: writes `valid` bytes at base + c0 .. base + c0 + valid <= out.len().
            unsafe { _mm_mask_storeu_epi8(out[base + c0..].as_mut_ptr().cast(), self.mask, bytes) };
        } else {
            let mut b = [0u8; 16];
            // SAFETY: 16 bytes into a 16-byte array.
            unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), bytes) };
            for (j, v) in b.iter().enumerate().take(valid) {
                out[base + (c0 + j) * step] = *v;
            }
        }
    }
}

/// Four rows of 16 accumulators, each requantized with its own panel's constants `rq`,
/// into the 64 consecutive bytes at `out[base..]`: four rows of a one-panel layer
/// ([`PanelRequant::store4`]) or two rows of a two-panel one (each row's panels 0 and 1).
/// The saturating packs (i32 to i16 to u8) clamp to `0..=255` and put the rows' bytes side
/// by side in each 128-bit lane, one permute orders them, the clamp to `lo..=hi` runs on
/// the bytes, and one store writes them; per row that is a quarter of the clamps and packs
/// of [`PanelRequant::store`]. Same bytes: the clamp after a saturation to a wider range is
/// the clamp. `BIASED` as in [`PanelRequant::ints`]; every panel [`PanelRequant::packs`],
/// with the layer's one clamp.
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL. (Not `#[target_feature]`, which cannot be
/// `#[inline(always)]`: inlined into the kernels that call it, it takes theirs; as an
/// out-of-line call per four rows it cost a fifth of a small-K layer.)
#[inline(always)]
pub(super) unsafe fn store_chunks<const BIASED: bool>(
    rq: [&PanelRequant; 4],
    a: [__m512i; 4],
    base: usize,
    out: &mut [u8],
) {
    debug_assert!(rq.iter().all(|k| k.packs));
    // (Not `a.map(..)`: a closure does not inherit the target features, so it is a call.)
    // SAFETY: the caller's CPU has the features (this function's contract).
    let b = unsafe {
        let q = [
            rq[0].ints::<BIASED>(a[0]),
            rq[1].ints::<BIASED>(a[1]),
            rq[2].ints::<BIASED>(a[2]),
            rq[3].ints::<BIASED>(a[3]),
        ];
        // Lane j: rows 0 and 1's outputs 4j..4j + 4 as i16, then rows 2 and 3's; as bytes,
        // dword d of lane j is row d's outputs 4j..4j + 4.
        let b = _mm512_packus_epi16(
            _mm512_packs_epi32(q[0], q[1]),
            _mm512_packs_epi32(q[2], q[3]),
        );
        let b = _mm512_permutexvar_epi32(rq[0].rows_order, b);
        _mm512_min_epu8(_mm512_max_epu8(b, rq[0].lo8), rq[0].hi8)
    };
    assert!(base + 64 <= out.len(), "output rows past the buffer");
    // SAFETY: 64 bytes at base .. base + 64 <= out.len().
    unsafe { _mm512_storeu_si512(out[base..].as_mut_ptr().cast(), b) };
}

/// [`block`] for a run-time row count: `1..=MR`, or `1..=MR_ONE_PANEL` for single-panel
/// weights (which never need the second panel's accumulators).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn rows_block(r: usize, rows: &Rows<u8>, row0: usize, p: &Packed, sink: &mut Sink) {
    // SAFETY: same target features as the caller.
    unsafe {
        if p.panels == 1 {
            match r {
                16 => block::<16, false>(rows, row0, p, sink),
                15 => block::<15, false>(rows, row0, p, sink),
                14 => block::<14, false>(rows, row0, p, sink),
                13 => block::<13, false>(rows, row0, p, sink),
                12 => block::<12, false>(rows, row0, p, sink),
                11 => block::<11, false>(rows, row0, p, sink),
                10 => block::<10, false>(rows, row0, p, sink),
                9 => block::<9, false>(rows, row0, p, sink),
                8 => block::<8, false>(rows, row0, p, sink),
                7 => block::<7, false>(rows, row0, p, sink),
                6 => block::<6, false>(rows, row0, p, sink),
                5 => block::<5, false>(rows, row0, p, sink),
                4 => block::<4, false>(rows, row0, p, sink),
                3 => block::<3, false>(rows, row0, p, sink),
                2 => block::<2, false>(rows, row0, p, sink),
                _ => block::<1, false>(rows, row0, p, sink),
            }
            return;
        }
        match r {
            8 => block::<8, true>(rows, row0, p, sink),
            7 => block::<7, true>(rows, row0, p, sink),
            6 => block::<6, true>(rows, row0, p, sink),
            5 => block::<5, true>(rows, row0, p, sink),
            4 => block::<4, true>(rows, row0, p, sink),
            3 => block::<3, true>(rows, row0, p, sink),
            2 => block::<2, true>(rows, row0, p, sink),
            _ => block::<1, true>(rows, row0, p, sink),
        }
    }
}

/// Computes rows `row0..row0+R` against every panel, two panels at a time where `PAIR`
/// (one at a time otherwise), and hands each panel's accumulators to `sink`. Group `g` of
/// the packed weights pairs with the `g`-th 4 bytes of the row's segments in order.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn block<const R: usize, const PAIR: bool>(
    rows: &Rows<u8>,
    row0: usize,
    p: &Packed,
    sink: &mut Sink,
) {
    // The block's rows are one run: every caller takes R from `Rows::run_len`, so row r's
    // base is `b0 + r * step` (what the reads below rely on to stay inside `a`), and each
    // row's address is one add from the last, with no table of bases to spill.
    let (b0, step) = rows.run(row0);
    let a = rows.a.as_ptr();
    let (full, tail) = (rows.seg_len / 4, !rows.seg_len.is_multiple_of(4));
    let mut panel = 0;
    while panel < p.panels {
        let two = PAIR && panel + 1 < p.panels;
        let w0p = p.panel(panel).as_ptr();
        let w1p = if two {
            p.panel(panel + 1).as_ptr()
        } else {
            w0p
        };
        let mut acc0 = [_mm512_setzero_si512(); R];
        let mut acc1 = [_mm512_setzero_si512(); R];
        // Each row's 4 bytes are broadcast straight from memory inside the row loop: read
        // into an array first, they were gathered into a vector register and extracted
        // again (twice the instructions at 16 rows).
        let mut g = 0;
        for &s in rows.segs {
            for q in 0..full {
                // SAFETY: group g < k4 lies inside each panel (k4 * 64 bytes).
                let w0 = unsafe { _mm512_loadu_si512(w0p.add(g * 64).cast()) };
                let w1 = unsafe { _mm512_loadu_si512(w1p.add(g * 64).cast()) };
                let mut at = a.wrapping_add(b0 + s + 4 * q);
                for r in 0..R {
                    // SAFETY: row r's base + s + 4q + 4 <= its base + s + seg_len, inside
                    // `a` by `rows.check()`.
                    let v = unsafe { at.cast::<i32>().read_unaligned() };
                    at = at.wrapping_add(step);
                    let x = _mm512_set1_epi32(v);
                    acc0[r] = _mm512_dpbusd_epi32(acc0[r], x, w0);
                    if two {
                        acc1[r] = _mm512_dpbusd_epi32(acc1[r], x, w1);
                    }
                }
                g += 1;
            }
        }
        if tail {
            // Only a single-segment (matrix) row has a ragged end.
            let s = rows.segs[0];
            // SAFETY: as above.
            let w0 = unsafe { _mm512_loadu_si512(w0p.add(g * 64).cast()) };
            let w1 = unsafe { _mm512_loadu_si512(w1p.add(g * 64).cast()) };
            for r in 0..R {
                let x = _mm512_set1_epi32(quad(&rows.a[b0 + r * step + s..], full, rows.seg_len));
                acc0[r] = _mm512_dpbusd_epi32(acc0[r], x, w0);
                if two {
                    acc1[r] = _mm512_dpbusd_epi32(acc1[r], x, w1);
                }
            }
        }
        match sink {
            Sink::Tile { tile, stride } => {
                for r in 0..R {
                    let dst = &mut tile[r * *stride + panel * NR..];
                    // SAFETY: each store writes 16 i32 inside the row's `stride` slots.
                    unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), acc0[r]) };
                    if two {
                        unsafe { _mm512_storeu_si512(dst[NR..].as_mut_ptr().cast(), acc1[r]) };
                    }
                }
            }
            Sink::PoolMax { buf, stride, pool } => {
                let targets = pool.targets::<R>(row0);
                for r in 0..R {
                    let t = targets[r];
                    if t == usize::MAX {
                        continue;
                    }
                    let dst = &mut buf[t * *stride + panel * NR..];
                    // SAFETY: 16 (or 32 with `two`) i32 inside the pooled row's `stride` slots.
                    unsafe {
                        let p0 = dst.as_mut_ptr().cast();
                        _mm512_storeu_si512(p0, _mm512_max_epi32(_mm512_loadu_si512(p0), acc0[r]));
                        if two {
                            let p1 = dst[NR..].as_mut_ptr().cast();
                            _mm512_storeu_si512(
                                p1,
                                _mm512_max_epi32(_mm512_loadu_si512(p1), acc1[r]),
                            );
                        }
                    }
                }
            }
            Sink::Requant {
                f,
                one,
                zo,
                lo,
                hi,
                layout,
                n,
                out,
            } => {
                let c = (*zo, *lo, *hi);
                // SAFETY: same target features; stores bounded as documented there.
                unsafe {
                    if let Some(k) = one {
                        k.rows(&acc0, row0, *layout, out);
                        panel += 1;
                        continue;
                    }
                    requant_panel(&acc0, panel, row0, f, c, *layout, *n, out);
                    if two {
                        requant_panel(&acc1, panel + 1, row0, f, c, *layout, *n, out);
                    }
                }
            }
        }
        panel += if two { 2 } else { 1 };
    }
}
