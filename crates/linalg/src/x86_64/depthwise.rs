//! The depthwise convolution on AVX2: the float form eight channels per vector with FMA, the
//! taps accumulated in a register (the portable loop wrote every tap's products back to
//! memory), the channels past the last multiple of 8 through masked loads and stores; the
//! integer form sixteen channels per step with exact i16 products; with AVX-512 VNNI, the
//! integer form's products added by `vpdpwssd`.

use std::arch::x86_64::*;

use crate::frame::depthwise::{Activation, DwSample};

/// [`crate::frame::depthwise::depthwise_f32`] on AVX2 + FMA.
pub fn depthwise_avx2(x: DwSample<f32, f32>, bias: &[f32], act: Activation, out: &mut [f32]) {
    assert!(
        crate::CpuFeatures::get().avx2_fma(),
        "AVX2 depthwise called on a CPU without AVX2 and FMA"
    );
    x.check(bias.len(), out.len());
    // SAFETY: the features and every reach were checked above.
    unsafe { run(x, bias, act, out) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run(x: DwSample<f32, f32>, bias: &[f32], act: Activation, out: &mut [f32]) {
    let c = bias.len();
    let full = c / 8 * 8;
    let tail = c - full;
    let mask: [i32; 8] = std::array::from_fn(|i| if i < tail { -1 } else { 0 });
    // SAFETY: a 32-byte load from a local array.
    let mask = unsafe { _mm256_loadu_si256(mask.as_ptr().cast()) };
    let zero = _mm256_setzero_ps();
    let cap = _mm256_set1_ps(act.cap.unwrap_or(f32::INFINITY));
    let activate = |v: __m256| match (act.relu, act.cap) {
        (false, _) => v,
        // `max(v, 0)` returns its second operand for a NaN, as `f32::max(NaN, 0)` gives 0.
        (true, None) => _mm256_max_ps(v, zero),
        (true, Some(_)) => _mm256_min_ps(_mm256_max_ps(v, zero), cap),
    };
    let (pp, wp, bp) = (x.padded.as_ptr(), x.w.as_ptr(), bias.as_ptr());
    let op = out.as_mut_ptr();
    let pixels = out.len() / c;
    // A 3x3 kernel: eight channels at a time over every pixel, the nine weight vectors
    // held in registers (reloading them for every pixel made the loop load-bound: two loads
    // per FMA).
    let nine = x.offsets.len() == 9;
    if nine {
        let off: [usize; 9] = std::array::from_fn(|t| x.offsets[t]);
        for j in (0..full).step_by(8) {
            // SAFETY (whole block): `check` bounded every tap's reach `base + off + c` by the
            // sample's length and the weights by `9 * c`; `j + 8 <= c`.
            unsafe {
                let w: [__m256; 9] = std::array::from_fn(|t| _mm256_loadu_ps(wp.add(t * c + j)));
                let b = _mm256_loadu_ps(bp.add(j));
                for_bases(x, pixels, |p, base| {
                    let mut acc = b;
                    for t in 0..9 {
                        let v = _mm256_loadu_ps(pp.add(base + off[t] + j));
                        acc = _mm256_fmadd_ps(v, w[t], acc);
                    }
                    _mm256_storeu_ps(op.add(p * c + j), activate(acc));
                });
            }
        }
    }
    let first = if nine { full } else { 0 };
    if first == c {
        return;
    }
    for_bases(x, pixels, |p, base| {
        let o = p * c;
        let mut j = first;
        // SAFETY (whole block): as above, with `offsets.len() * c` weights; `j + 8 <= c` in
        // the loop and the tail's masked lanes stay below `c`.
        unsafe {
            while j < full {
                let mut acc = _mm256_loadu_ps(bp.add(j));
                for (t, &off) in x.offsets.iter().enumerate() {
                    let v = _mm256_loadu_ps(pp.add(base + off + j));
                    acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(wp.add(t * c + j)), acc);
                }
                _mm256_storeu_ps(op.add(o + j), activate(acc));
                j += 8;
            }
            if tail > 0 {
                let mut acc = _mm256_maskload_ps(bp.add(j), mask);
                for (t, &off) in x.offsets.iter().enumerate() {
                    let v = _mm256_maskload_ps(pp.add(base + off + j), mask);
                    acc = _mm256_fmadd_ps(v, _mm256_maskload_ps(wp.add(t * c + j), mask), acc);
                }
                _mm256_maskstore_ps(op.add(o + j), mask, activate(acc));
            }
        }
    });
}

/// [`crate::frame::depthwise::depthwise_f32`] on AVX-512F for a 3x3 kernel (other kernels
/// take [`depthwise_avx2`]): sixteen channels per vector (the last block masked), the nine
/// weight vectors in registers, one pixel at a time along plain row and column loops. The
/// same FMAs in the same order per lane as the AVX2 kernel, so the same values. Timed alone
/// on one sample in L1 (2026-12-01): 16 channels @14x14 1,511 -> 834 ns, 32 channels
/// stride 2 591 -> 438 ns against the AVX2 kernel (which walks the pixels through a
/// closure and decides the activation per pixel).
pub fn depthwise_avx512(x: DwSample<f32, f32>, bias: &[f32], act: Activation, out: &mut [f32]) {
    assert!(
        crate::CpuFeatures::get().avx512_f32(),
        "AVX-512 depthwise called on a CPU without it"
    );
    assert_eq!(
        x.offsets.len(),
        9,
        "the AVX-512 depthwise takes 3x3 kernels"
    );
    x.check(bias.len(), out.len());
    // SAFETY (each): the features and every reach were checked above.
    unsafe {
        match (act.relu, act.cap) {
            (false, _) => run512::<0>(x, bias, 0.0, out),
            (true, None) => run512::<1>(x, bias, 0.0, out),
            (true, Some(cap)) => run512::<2>(x, bias, cap, out),
        }
    }
}

/// [`depthwise_avx512`]'s loops; `ACT` 0: none, 1: ReLU, 2: ReLU then `min(.., cap)`.
///
/// # Safety
/// The CPU has AVX-512F/BW; `x.check` passed for `bias.len()` channels and `out`; nine taps.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn run512<const ACT: u8>(x: DwSample<f32, f32>, bias: &[f32], cap: f32, out: &mut [f32]) {
    let c = bias.len();
    let (t, pixels) = (x.taps, out.len() / c);
    // Output rows, the last one possibly part of a row (as `check` allows).
    let rows = pixels.div_ceil(t.ow);
    let off: [usize; 9] = std::array::from_fn(|i| x.offsets[i]);
    let (pp, wp, op) = (x.padded.as_ptr(), x.w.as_ptr(), out.as_mut_ptr());
    // SAFETY (the block): `check` bounded every tap's reach `base + off + c` by the sample
    // and the weights by `9 * c`; the lanes past `c` are masked off in loads and stores.
    unsafe {
        for j in (0..c).step_by(16) {
            let k = FloatPanel::new(wp, bias, j, cap);
            for oy in 0..rows {
                for ox in 0..t.ow.min(pixels - oy * t.ow) {
                    let base = pp.add(oy * t.row_step + ox * t.col_step + j);
                    let mut acc = k.b;
                    for (&o, &kt) in off.iter().zip(&k.w) {
                        acc = _mm512_fmadd_ps(k.load(base.add(o)), kt, acc);
                    }
                    k.store::<ACT>(acc, op.add((oy * t.ow + ox) * c + j));
                }
            }
        }
    }
}

/// One panel of 16 channels (fewer at the end) of a float 3x3 depthwise on AVX-512: its
/// lane mask, nine weight vectors, bias and cap.
struct FloatPanel {
    m: __mmask16,
    w: [__m512; 9],
    b: __m512,
    cap: __m512,
}

impl FloatPanel {
    /// Channels `j..j + 16` (below `bias.len()`) of the tap-major weights at `w`.
    ///
    /// # Safety
    /// The CPU has AVX-512F (inlined into the kernels, which take their features); `w`
    /// holds `9 * bias.len()` values and `j < bias.len()`.
    #[inline(always)]
    unsafe fn new(w: *const f32, bias: &[f32], j: usize, cap: f32) -> Self {
        let c = bias.len();
        let m: __mmask16 = if c - j >= 16 {
            u16::MAX
        } else {
            (1 << (c - j)) - 1
        };
        // SAFETY: this function's contract; lanes past `c` are masked off.
        unsafe {
            // (A loop, not `array::from_fn`: a closure does not take the kernel's features.)
            let mut k = [_mm512_setzero_ps(); 9];
            for (i, v) in k.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_ps(m, w.add(i * c + j));
            }
            Self {
                m,
                w: k,
                b: _mm512_maskz_loadu_ps(m, bias.as_ptr().add(j)),
                cap: _mm512_set1_ps(cap),
            }
        }
    }

    /// The panel's lanes at `p`: a plain load for a whole panel (a masked one costs a
    /// vector uop besides the load on Intel cores, nine per pixel).
    ///
    /// # Safety
    /// As [`Self::new`]; the panel's lanes are readable at `p`.
    #[inline(always)]
    unsafe fn load(&self, p: *const f32) -> __m512 {
        // SAFETY: this function's contract.
        unsafe {
            if self.m == u16::MAX {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(self.m, p)
            }
        }
    }

    /// `acc` through the activation (`ACT` 0: none, 1: ReLU, 2: ReLU then the cap) into
    /// the panel's lanes at `p`.
    ///
    /// # Safety
    /// As [`Self::new`]; the panel's lanes are writable at `p`.
    #[inline(always)]
    unsafe fn store<const ACT: u8>(&self, acc: __m512, p: *mut f32) {
        // SAFETY: this function's contract.
        unsafe {
            let zero = _mm512_setzero_ps();
            // `max(v, 0)` returns its second operand for a NaN, as `f32::max(NaN, 0)`.
            let v = match ACT {
                0 => acc,
                1 => _mm512_max_ps(acc, zero),
                _ => _mm512_min_ps(_mm512_max_ps(acc, zero), self.cap),
            };
            _mm512_mask_storeu_ps(p, self.m, v);
        }
    }
}

/// The float 3x3 depthwise on AVX-512 straight from the unpadded sample `x` (`[h, w, c]`
/// of `g`), where [`depthwise_avx512`] reads a padded copy: a tap outside the sample reads
/// zero lanes, so every pixel takes the same nine FMAs in the same order as over the
/// padded sample (the same values). At stride 2 the copy had cost more than the layer:
/// 32 channels @14x14, one sample, 0.87 us to pad (the copy and its source did not fit L1
/// together) against 0.38 us of FMAs. Tap-major weights `[9, c]`, `c = bias.len()`.
pub fn depthwise_direct_avx512(
    x: &[f32],
    g: &crate::ConvGeom,
    w: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    assert!(
        crate::CpuFeatures::get().avx512_f32(),
        "AVX-512 depthwise called on a CPU without it"
    );
    let c = bias.len();
    assert!(
        g.kernel == [3, 3] && g.in_channels == c && c > 0,
        "the direct depthwise takes 3x3 kernels over the bias's channels"
    );
    assert_eq!(
        x.len(),
        g.in_hw[0] * g.in_hw[1] * c,
        "depthwise: input is not the geometry's"
    );
    assert_eq!(
        out.len(),
        g.pixels() * c,
        "depthwise: output is not the geometry's"
    );
    assert!(w.len() >= 9 * c, "depthwise: too few weights");
    // SAFETY (each): the features and every reach were checked above (`direct512` reads
    // only taps inside the sample).
    unsafe {
        match (act.relu, act.cap) {
            (false, _) => direct512::<0>(x, g, w, bias, 0.0, out),
            (true, None) => direct512::<1>(x, g, w, bias, 0.0, out),
            (true, Some(cap)) => direct512::<2>(x, g, w, bias, cap, out),
        }
    }
}

/// [`depthwise_direct_avx512`]'s loops; `ACT` as in [`run512`].
///
/// # Safety
/// The CPU has AVX-512F/BW; the shapes were checked as there.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn direct512<const ACT: u8>(
    x: &[f32],
    g: &crate::ConvGeom,
    w: &[f32],
    bias: &[f32],
    cap: f32,
    out: &mut [f32],
) {
    let c = bias.len();
    let ([h, wd], [oh, ow], [sy, sx]) = (g.in_hw, g.out_hw, g.stride);
    let [py, px] = g.padding.map(|p| p as isize);
    let off: [usize; 9] = std::array::from_fn(|t| (t / 3 * wd + t % 3) * c);
    let (xp, wp, op) = (x.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    // SAFETY (the block): a tap is read only where its pixel lies inside the sample (the
    // interior test, or each tap's own), `c` lanes at most (masked past `c`); weights
    // `9 * c` and the output's pixels were checked by the caller.
    unsafe {
        let zero = _mm512_setzero_ps();
        for j in (0..c).step_by(16) {
            let k = FloatPanel::new(wp, bias, j, cap);
            for oy in 0..oh {
                let iy0 = (oy * sy) as isize - py;
                for ox in 0..ow {
                    let ix0 = (ox * sx) as isize - px;
                    let mut acc = k.b;
                    if iy0 >= 0 && iy0 + 2 < h as isize && ix0 >= 0 && ix0 + 2 < wd as isize {
                        let base = xp.add((iy0 as usize * wd + ix0 as usize) * c + j);
                        for (&o, &kt) in off.iter().zip(&k.w) {
                            acc = _mm512_fmadd_ps(k.load(base.add(o)), kt, acc);
                        }
                    } else {
                        for (t, &kt) in k.w.iter().enumerate() {
                            let (iy, ix) = (iy0 + (t / 3) as isize, ix0 + (t % 3) as isize);
                            let v = if (0..h as isize).contains(&iy)
                                && (0..wd as isize).contains(&ix)
                            {
                                k.load(xp.add((iy as usize * wd + ix as usize) * c + j))
                            } else {
                                zero
                            };
                            acc = _mm512_fmadd_ps(v, kt, acc);
                        }
                    }
                    k.store::<ACT>(acc, op.add((oy * ow + ox) * c + j));
                }
            }
        }
    }
}

/// `f(p, base of pixel p)` for the sample's `pixels` output pixels in order, the bases
/// stepped along each output row (`Taps::base` divides, once per pixel and channel block).
#[inline(always)]
fn for_bases<T, W>(x: DwSample<T, W>, pixels: usize, mut f: impl FnMut(usize, usize)) {
    let t = x.taps;
    let (mut row, mut ox) = (0, 0);
    for p in 0..pixels {
        f(p, row + ox * t.col_step);
        ox += 1;
        if ox == t.ow {
            (ox, row) = (0, row + t.row_step);
        }
    }
}

/// [`crate::frame::depthwise::depthwise_i32`] on AVX2: sixteen channels per step, each
/// tap's u8 values widened to i16, multiplied by the i16 weights (exact: every product fits),
/// and added into two registers of eight i32; the last `c % 16` channels as the reference.
pub fn depthwise_i32_avx2(x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
    assert!(
        crate::CpuFeatures::get().avx2,
        "AVX2 depthwise called on a CPU without AVX2"
    );
    x.check(c, acc.len());
    // SAFETY: the feature and every reach were checked above.
    unsafe { run_i32(x, c, acc) }
}

#[target_feature(enable = "avx2")]
unsafe fn run_i32(x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
    let full = c / 16 * 16;
    let (pp, wp) = (x.padded.as_ptr(), x.w.as_ptr());
    let ap = acc.as_mut_ptr();
    let pixels = acc.len() / c;
    // `v` (16 u8 widened to i16) times the tap's weights `k`, added to the two i32 halves.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mac(v: __m128i, k: __m256i, (lo, hi): (__m256i, __m256i)) -> (__m256i, __m256i) {
        let prod = _mm256_mullo_epi16(_mm256_cvtepu8_epi16(v), k);
        let half = |h: __m128i| _mm256_cvtepi16_epi32(h);
        (
            _mm256_add_epi32(lo, half(_mm256_castsi256_si128(prod))),
            _mm256_add_epi32(hi, half(_mm256_extracti128_si256::<1>(prod))),
        )
    }
    // A 3x3 kernel: sixteen channels at a time over every pixel, the nine weight vectors in
    // registers; other kernels pixel by pixel.
    let nine = x.offsets.len() == 9;
    // SAFETY (whole block): `check` bounded every tap's reach `base + off + c` by the
    // sample's length and the weights by `offsets.len() * c`; `j + 16 <= c` here.
    unsafe {
        if nine {
            let off: [usize; 9] = std::array::from_fn(|t| x.offsets[t]);
            for j in (0..full).step_by(16) {
                let w: [__m256i; 9] =
                    std::array::from_fn(|t| _mm256_loadu_si256(wp.add(t * c + j).cast()));
                for_bases(x, pixels, |p, base| {
                    let mut s = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for t in 0..9 {
                        s = mac(_mm_loadu_si128(pp.add(base + off[t] + j).cast()), w[t], s);
                    }
                    _mm256_storeu_si256(ap.add(p * c + j).cast(), s.0);
                    _mm256_storeu_si256(ap.add(p * c + j + 8).cast(), s.1);
                });
            }
        } else {
            for_bases(x, pixels, |p, base| {
                for j in (0..full).step_by(16) {
                    let mut s = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for (t, &off) in x.offsets.iter().enumerate() {
                        let k = _mm256_loadu_si256(wp.add(t * c + j).cast());
                        s = mac(_mm_loadu_si128(pp.add(base + off + j).cast()), k, s);
                    }
                    _mm256_storeu_si256(ap.add(p * c + j).cast(), s.0);
                    _mm256_storeu_si256(ap.add(p * c + j + 8).cast(), s.1);
                }
            });
        }
    }
    if full == c {
        return;
    }
    for_bases(x, pixels, |p, base| {
        for (jj, slot) in acc[p * c..(p + 1) * c].iter_mut().enumerate().skip(full) {
            let mut s = 0i32;
            for (t, &off) in x.offsets.iter().enumerate() {
                s += i32::from(x.padded[base + off + jj] as i16 * x.w[t * c + jj]);
            }
            *slot = s;
        }
    });
}

/// [`crate::frame::depthwise::depthwise_i32`] with AVX-512 VNNI: sixteen channels per
/// step, each tap's 16 u8 zero-extended into i32 lanes (`vpmovzxbd`) and multiplied-added
/// with `vpdpwssd` against the weights in the lanes' low halves. Exact: the high i16 of
/// every activation lane is 0, so each lane adds one product `x * w` (a 3x3 tap costs 2
/// instructions where the AVX2 form's widenings took 6); the last `c % 16` channels through
/// masked loads and stores.
pub fn depthwise_i32_vnni(x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
    assert!(
        crate::CpuFeatures::get().vnni(),
        "VNNI depthwise called on a CPU without AVX-512 VNNI"
    );
    x.check(c, acc.len());
    // SAFETY: the features and every reach were checked above.
    unsafe { run_vnni(x, c, acc) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn run_vnni(x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
    let mut out = Out::Sums(acc);
    for j in (0..c).step_by(16) {
        // SAFETY: this function's features; `check` bounded every read.
        unsafe { channels::<u8, false>(x, j, c, &mut out) };
    }
}

/// The static int8 depthwise layer, requantized where it is computed: `out[p * c + j]` for
/// the `out.len() / c` output pixels, with the constants of `rq` (built for `c` outputs by
/// [`super::avx512::Requantizer::for_outputs`]) and the clamp `(zo, lo, hi)`. The same
/// products as [`depthwise_i32_vnni`]; no i32 buffer, and each row of 16 channels goes
/// through the VNNI epilogue's constants in registers (the accumulator started at the
/// offset and the zero point in the rounding term where they fit: `PanelRequant::folding`).
pub fn depthwise_requant_vnni(
    x: DwSample<u8, i16>,
    rq: &super::avx512::Requantizer,
    clamp: (i32, i32, i32),
    out: &mut [u8],
) {
    assert!(
        crate::CpuFeatures::get().vnni(),
        "VNNI depthwise called on a CPU without AVX-512 VNNI"
    );
    let f = rq.fused();
    let c = f.offset.len().min(x.w.len() / x.offsets.len().max(1));
    assert!(
        c > 0 && f.mult.len() == c.div_ceil(16) * 16 && x.w.len() == x.offsets.len() * c,
        "requantizer built for another layer"
    );
    x.check(c, out.len());
    // SAFETY: the features and every reach were checked above.
    unsafe { requant_vnni(x, f, clamp, c, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn requant_vnni(
    x: DwSample<u8, i16>,
    f: &super::avx512::Fused,
    clamp: (i32, i32, i32),
    c: usize,
    out: &mut [u8],
) {
    // At stride 2 a value is read by about two taps, not nine: widening the whole padded
    // sample (four times the outputs) cost more than it saved (72 -> 110 us on the
    // MobileNet-like model's 32-channel layer).
    if x.taps.col_step != c || !rows_of_three(x.offsets, c) {
        // SAFETY: this function's features and checks.
        return unsafe { requant_panels(x, f, clamp, c, out) };
    }
    WIDE.with_borrow_mut(|wide| {
        // The sample widened once to one u32 per value, its right neighbour in the high
        // half: each of the nine taps that read a value loads its lanes instead of widening
        // them again (`vpmovzxbd` runs on the one shuffle port: nine per pixel and 16
        // channels had been the kernel's bound), and a kernel row's first two taps are one
        // `vpdpwssd` (six per pixel, not nine).
        // SAFETY: this function's features.
        let wide = unsafe { pairs(x.padded, c, wide) };
        let x = DwSample {
            padded: wide,
            taps: x.taps,
            offsets: x.offsets,
            w: x.w,
        };
        // SAFETY: this function's features; `check` bounded every read (the widened sample
        // has the same length).
        unsafe { requant_panels(x, f, clamp, c, out) }
    });
}

/// Whether `offsets` are a 3x3 kernel's over `c` channels: three rows of three
/// neighbouring pixels (what the paired sample of [`pairs`] serves).
fn rows_of_three(offsets: &[usize], c: usize) -> bool {
    offsets.len() == 9
        && offsets
            .chunks_exact(3)
            .all(|r| r[1] == r[0] + c && r[2] == r[0] + 2 * c)
}

/// `src` as u32 values in `dst`, each with the value `c` places on (the next pixel's, same
/// channel) in its high half, 0 past the end; started on a cache line, so that a pixel's 16
/// lanes are one line, not two. (A plain loop in a function of its own, which takes the
/// features: as an iterator chain inside a closure it was a call per value.)
///
/// # Safety
/// The CPU has AVX-512F/BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pairs<'a>(src: &[u8], c: usize, dst: &'a mut Vec<u32>) -> &'a [u32] {
    dst.resize(src.len() + 15, 0);
    let skip = dst.as_ptr().align_offset(64).min(15);
    let d = &mut dst[skip..skip + src.len()];
    let split = src.len().saturating_sub(c);
    let (body, end) = d.split_at_mut(split);
    for ((d, &v), &next) in body.iter_mut().zip(src).zip(&src[c.min(src.len())..]) {
        *d = u32::from(v) | u32::from(next) << 16;
    }
    for (d, &v) in end.iter_mut().zip(&src[split..]) {
        *d = u32::from(v);
    }
    d
}

/// Every panel of 16 channels of [`requant_vnni`] on `x` (u8 or widened values).
///
/// # Safety
/// As [`requant_vnni`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn requant_panels<T: Lanes>(
    x: DwSample<T, i16>,
    f: &super::avx512::Fused,
    clamp: (i32, i32, i32),
    c: usize,
    out: &mut [u8],
) {
    use super::avx512::PanelRequant;
    for j in (0..c).step_by(16) {
        let panel = j / 16;
        // SAFETY (both): this function's features; `check` bounded every read.
        unsafe {
            match PanelRequant::folding(f, panel, clamp, c) {
                Some(rq) => channels::<T, true>(x, j, c, &mut Out::Bytes(&rq, out)),
                None => {
                    let rq = PanelRequant::new(f, panel, clamp, c);
                    channels::<T, false>(x, j, c, &mut Out::Bytes(&rq, out))
                }
            }
        }
    }
}

thread_local! {
    /// A paired sample for [`requant_vnni`] ([`pairs`]), kept between calls on this thread.
    static WIDE: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Activations the VNNI depthwise reads: sixteen channels into the i32 lanes, each lane's
/// high half 0 (what `vpdpwssd` against the weights in the low halves needs).
trait Lanes: Copy {
    /// The lanes of `m` from `p`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW; `m`'s lanes are readable at `p`. Inlined into the kernel,
    /// which takes its features.
    unsafe fn lanes(p: *const Self, m: __mmask16) -> __m512i;

    /// All 16 lanes from `p`: a plain load (a masked one costs a vector uop besides the
    /// load on Intel cores, nine per pixel).
    ///
    /// # Safety
    /// As [`Lanes::lanes`], with every lane readable.
    unsafe fn full(p: *const Self) -> __m512i;

    /// Whether each lane's high half holds the next pixel's value ([`pairs`]): a kernel
    /// row's first two taps are then one `vpdpwssd` against their two weights.
    const PAIRED: bool;
}

impl Lanes for u8 {
    const PAIRED: bool = false;

    #[inline(always)]
    unsafe fn lanes(p: *const Self, m: __mmask16) -> __m512i {
        // SAFETY: this function's contract.
        unsafe { _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p.cast())) }
    }

    #[inline(always)]
    unsafe fn full(p: *const Self) -> __m512i {
        // SAFETY: this function's contract.
        unsafe { _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast())) }
    }
}

impl Lanes for u32 {
    const PAIRED: bool = true;

    #[inline(always)]
    unsafe fn lanes(p: *const Self, m: __mmask16) -> __m512i {
        // SAFETY: this function's contract.
        unsafe { _mm512_maskz_loadu_epi32(m, p.cast()) }
    }

    #[inline(always)]
    unsafe fn full(p: *const Self) -> __m512i {
        // SAFETY: this function's contract.
        unsafe { _mm512_loadu_si512(p.cast()) }
    }
}

/// `vpdpwssd`: `s` plus, per i32 lane, the two i16 products of `v` and `k`. As inline
/// assembly because LLVM, seeing the activations' zero high halves, rewrote most of the
/// intrinsic's uses into `vpmaddwd` and `vpaddd`: two instructions on the vector ports
/// where one does (the requantizing kernel held 9 `vpdpwssd` and 27 `vpmaddwd`; with this,
/// only `vpdpwssd`, 2026-12-01).
///
/// # Safety
/// The CPU has AVX-512 VNNI (inlined into the kernel, which has the same features).
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn dpwssd(mut s: __m512i, v: __m512i, k: __m512i) -> __m512i {
    // SAFETY: registers only; the caller's CPU has the instruction.
    unsafe {
        std::arch::asm!(
            "vpdpwssd {s}, {v}, {k}",
            s = inout(zmm_reg) s,
            v = in(zmm_reg) v,
            k = in(zmm_reg) k,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    s
}

/// Where [`channels`] puts each pixel's 16 sums.
enum Out<'a> {
    /// As i32 at `acc[p * c + j..]`.
    Sums(&'a mut [i32]),
    /// Requantized with a panel's constants into `out[p * c + j..]` (`BIASED`: constants
    /// from `PanelRequant::folding`).
    Bytes(&'a super::avx512::PanelRequant, &'a mut [u8]),
}

/// Channels `j..j + 16` (fewer at the end) of every output pixel into `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn channels<T: Lanes, const BIASED: bool>(
    x: DwSample<T, i16>,
    j: usize,
    c: usize,
    out: &mut Out,
) {
    // SAFETY (both): the caller's contract.
    unsafe {
        if j + 16 <= c {
            panel::<T, BIASED, true>(x, j, c, out)
        } else {
            panel::<T, BIASED, false>(x, j, c, out)
        }
    }
}

/// [`channels`] for one panel; `FULL`: all 16 channels there (plain loads).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq,avx512vl")]
unsafe fn panel<T: Lanes, const BIASED: bool, const FULL: bool>(
    x: DwSample<T, i16>,
    j: usize,
    c: usize,
    out: &mut Out,
) {
    let (pp, wp) = (x.padded.as_ptr(), x.w.as_ptr());
    let pixels = match out {
        Out::Sums(acc) => acc.len() / c,
        Out::Bytes(_, o) => o.len() / c,
    };
    let taps = x.offsets.len();
    let t = x.taps;
    let m = if j + 16 <= c {
        u16::MAX
    } else {
        (1u16 << (c - j)) - 1
    };
    let start = match out {
        Out::Bytes(rq, _) if BIASED => rq.offset(),
        _ => _mm512_setzero_si512(),
    };
    // SAFETY (whole block): the caller checked every tap's reach `base + off + c` and the
    // weights (`taps * c`); reads past `c` channels are masked off; `store` checks `out`.
    unsafe {
        let weight = |tap: usize| {
            _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, wp.add(tap * c + j).cast()))
        };
        let mut w = [_mm512_setzero_si512(); 9];
        if taps <= 9 {
            for (tap, w) in w.iter_mut().enumerate().take(taps) {
                *w = weight(tap);
            }
        }
        let off9: [usize; 9] = std::array::from_fn(|tap| x.offsets.get(tap).copied().unwrap_or(0));
        // Paired weights: a row's first two taps as the (low, high) i16 halves of each lane,
        // its third alone with a zero high half (the paired sample's high half there is the
        // pixel after the kernel).
        let (mut k01, mut k2) = ([_mm512_setzero_si512(); 3], [_mm512_setzero_si512(); 3]);
        if T::PAIRED {
            let half = |tap: usize| {
                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, wp.add(tap * c + j).cast()))
            };
            for ky in 0..3 {
                k01[ky] = _mm512_or_si512(half(3 * ky), _mm512_slli_epi32::<16>(half(3 * ky + 1)));
                k2[ky] = half(3 * ky + 2);
            }
        }
        let zero = _mm512_setzero_si512();
        let (mut row, mut ox) = (0, 0);
        for p in 0..pixels {
            let base = row + ox * t.col_step + j;
            let s = if T::PAIRED {
                // Rows of three taps (`requant_vnni` checked): the first two of a row in
                // one `vpdpwssd`, the third against its weight with a zero high half; two
                // chains of three.
                let v = |tap: usize| {
                    let p = pp.add(base + off9[tap]);
                    if FULL { T::full(p) } else { T::lanes(p, m) }
                };
                let mut a = dpwssd(start, v(0), k01[0]);
                let mut b = dpwssd(zero, v(2), k2[0]);
                a = dpwssd(a, v(3), k01[1]);
                b = dpwssd(b, v(5), k2[1]);
                a = dpwssd(a, v(6), k01[2]);
                b = dpwssd(b, v(8), k2[2]);
                _mm512_add_epi32(a, b)
            } else if taps == 9 {
                // Three chains of three: each `vpdpwssd` waits on the one before it in its
                // chain, and one chain of nine per pixel kept too few pixels in flight.
                let v = |tap: usize| {
                    let p = pp.add(base + off9[tap]);
                    if FULL { T::full(p) } else { T::lanes(p, m) }
                };
                let mut a = dpwssd(start, v(0), w[0]);
                let mut b = dpwssd(zero, v(1), w[1]);
                let mut d = dpwssd(zero, v(2), w[2]);
                a = dpwssd(a, v(3), w[3]);
                b = dpwssd(b, v(4), w[4]);
                d = dpwssd(d, v(5), w[5]);
                a = dpwssd(a, v(6), w[6]);
                b = dpwssd(b, v(7), w[7]);
                d = dpwssd(d, v(8), w[8]);
                _mm512_add_epi32(_mm512_add_epi32(a, b), d)
            } else {
                let mut s = start;
                for (tap, &off) in x.offsets.iter().enumerate() {
                    let v = T::lanes(pp.add(base + off), m);
                    let k = if taps <= 9 { w[tap] } else { weight(tap) };
                    s = dpwssd(s, v, k);
                }
                s
            };
            match out {
                Out::Sums(acc) => {
                    // `check` sized `acc` to whole pixels of `c`; masked past `c`.
                    _mm512_mask_storeu_epi32(acc.as_mut_ptr().add(p * c + j).cast(), m, s)
                }
                Out::Bytes(rq, o) => rq.store::<BIASED>(s, p * c, 1, o),
            }
            ox += 1;
            if ox == t.ow {
                (ox, row) = (0, row + t.row_step);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::depthwise::{depthwise_i32_scalar, depthwise_scalar};
    use crate::frame::geom::ConvGeom;
    use crate::frame::nhwc::{self, Taps};

    /// A 3x3 depthwise layer's taps over a `c`-channel sample (padding 1): the geometry,
    /// the pixel bases, each tap's offset and the padded sample's length.
    fn layer(
        c: usize,
        hw: [usize; 2],
        stride: usize,
        k: usize,
    ) -> (ConvGeom, Taps, Vec<usize>, usize) {
        let pad = k / 2;
        let g = ConvGeom::new(c, hw, [k, k], [stride, stride], [pad, pad]).unwrap();
        let wp = hw[1] + 2 * pad;
        let offsets = (0..k)
            .flat_map(|ky| (0..k).map(move |kx| (ky * wp + kx) * c))
            .collect();
        (g, Taps::new(&g), offsets, (hw[0] + 2 * pad) * wp * c)
    }

    /// Channel counts around the vector widths, strides 1 and 2, every activation: the
    /// AVX2 kernel within FMA rounding of the reference, and the AVX-512 one (3x3), where the
    /// CPU has it, the AVX2 kernel's values exactly (the same FMAs per lane); on a CPU
    /// without it this says so.
    #[test]
    fn float_depthwise_kernels_match_the_reference() {
        if !crate::CpuFeatures::get().avx512_f32() {
            println!("avx512 depthwise: AVX-512F/BW not available on this CPU, not run");
        }
        if !crate::CpuFeatures::get().avx2_fma() {
            println!("avx2 depthwise: AVX2 + FMA not available on this CPU, not run");
            return;
        }
        // 3x3 kernels (weights held in registers) and others (5x5, 1x1: pixel by pixel).
        for (c, stride, k) in [
            (1, 1, 3),
            (3, 2, 3),
            (8, 1, 3),
            (13, 1, 3),
            (16, 2, 3),
            (21, 1, 3),
            (32, 1, 3),
            (13, 1, 5),
            (8, 2, 1),
        ] {
            let (g, taps, offsets, len) = layer(c, [7, 6], stride, k);
            let padded: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0)
                .collect();
            let w: Vec<f32> = (0..k * k * c)
                .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let x = DwSample {
                padded: &padded,
                taps: &taps,
                offsets: &offsets,
                w: &w,
            };
            let bias: Vec<f32> = (0..c).map(|j| j as f32 * 0.1 - 0.4).collect();
            for (relu, cap) in [(false, None), (true, None), (true, Some(1.5))] {
                let act = Activation { relu, cap };
                let n = g.pixels() * c;
                let (mut want, mut got) = (vec![0.0; n], vec![f32::NAN; n]);
                depthwise_scalar(x, &bias, act, &mut want);
                depthwise_avx2(x, &bias, act, &mut got);
                for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                        "c {c} stride {stride} {k}x{k} {act:?} [{i}]: {a} vs {b}"
                    );
                }
                // The AVX-512 kernel (3x3): the AVX2 kernel's values exactly.
                if k == 3 && crate::CpuFeatures::get().avx512_f32() {
                    let mut wide = vec![f32::NAN; n];
                    depthwise_avx512(x, &bias, act, &mut wide);
                    assert_eq!(wide, got, "AVX-512: c {c} stride {stride} {act:?}");
                    // The first pixels only, the last row cut short.
                    let part = n - 2 * c;
                    let mut short = vec![f32::NAN; part];
                    depthwise_avx512(x, &bias, act, &mut short);
                    assert_eq!(short, got[..part], "AVX-512 part: c {c} stride {stride}");
                }
            }
        }
    }

    /// The direct (unpadded) AVX-512 depthwise gives the padded kernel's values exactly:
    /// strides 1 to 3, padding 0 to 2 (rows and columns apart), channel counts around the
    /// vector width, maps whose last taps end on the sample's edge and past it.
    #[test]
    fn the_direct_float_depthwise_equals_the_padded_one() {
        if !crate::CpuFeatures::get().avx512_f32() {
            println!("direct avx512 depthwise: AVX-512F/BW not available on this CPU, not run");
            return;
        }
        for (c, hw, stride, pad) in [
            (32, [14, 14], [2, 2], [1, 1]),
            (16, [7, 6], [2, 2], [1, 1]),
            (21, [9, 8], [1, 1], [1, 1]),
            (8, [5, 9], [2, 1], [0, 2]),
            (48, [6, 7], [3, 2], [2, 0]),
            (1, [4, 4], [2, 2], [1, 1]),
        ] {
            let g = ConvGeom::new(c, hw, [3, 3], stride, pad).expect("fits");
            let x: Vec<f32> = (0..c * hw[0] * hw[1])
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0)
                .collect();
            let mut padded = Vec::new();
            nhwc::pad(&x, &g, 0.0, &mut padded);
            let taps = Taps::new(&g);
            let wp = hw[1] + 2 * pad[1];
            let offsets: Vec<usize> = (0..9).map(|t| (t / 3 * wp + t % 3) * c).collect();
            let w: Vec<f32> = (0..9 * c)
                .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let bias: Vec<f32> = (0..c).map(|j| j as f32 * 0.1 - 0.4).collect();
            let sample = DwSample {
                padded: &padded,
                taps: &taps,
                offsets: &offsets,
                w: &w,
            };
            for (relu, cap) in [(false, None), (true, None), (true, Some(1.5))] {
                let act = Activation { relu, cap };
                let n = g.pixels() * c;
                let (mut want, mut got) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                depthwise_avx512(sample, &bias, act, &mut want);
                depthwise_direct_avx512(&x, &g, &w, &bias, act, &mut got);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "c {c} {hw:?} stride {stride:?} pad {pad:?} {act:?}"
                );
            }
        }
    }

    /// `(channels, stride, kernel)` of the integer tests: channel counts around the
    /// vector widths (partial last blocks), strides 1 and 2, 3x3, 5x5 and 1x1.
    const INT8_CASES: [(usize, usize, usize); 8] = [
        (1, 1, 3),
        (5, 2, 3),
        (16, 1, 3),
        (21, 1, 3),
        (32, 2, 3),
        (48, 1, 3),
        (21, 1, 5),
        (32, 2, 1),
    ];

    /// One int8 case of [`INT8_CASES`] over a 6x7 sample: its geometry, taps and a padded
    /// sample with weights, extremes included (255 activations, -128 weights) so that an
    /// i16 intermediate would saturate.
    struct Int8Layer {
        g: ConvGeom,
        taps: Taps,
        offsets: Vec<usize>,
        padded: Vec<u8>,
        w: Vec<i16>,
    }

    impl Int8Layer {
        fn new(c: usize, stride: usize, k: usize) -> Self {
            let (g, taps, offsets, len) = layer(c, [6, 7], stride, k);
            let padded = (0..len)
                .map(|i| match i % 11 {
                    0 => 255,
                    _ => (i * 7919 % 256) as u8,
                })
                .collect();
            let w = (0..k * k * c)
                .map(|i| match i % 5 {
                    0 => -128,
                    _ => (i * 31 % 255) as i16 - 127,
                })
                .collect();
            Self {
                g,
                taps,
                offsets,
                padded,
                w,
            }
        }

        fn sample(&self) -> DwSample<'_, u8, i16> {
            DwSample {
                padded: &self.padded,
                taps: &self.taps,
                offsets: &self.offsets,
                w: &self.w,
            }
        }
    }

    /// The VNNI depthwise requantized as it is computed equals the reference's accumulators
    /// through the scalar epilogue: channel counts with and without a partial last block,
    /// strides, 3x3, 5x5 and 1x1, clamps, and multipliers so small that the zero point
    /// cannot ride in the rounding term.
    #[test]
    fn vnni_depthwise_requantized_equals_the_reference() {
        use crate::frame::epilogue::{Epilogue, OutLayout};
        use crate::frame::requant::Requant;
        if !crate::CpuFeatures::get().vnni() {
            println!("vnni depthwise requant: AVX-512 VNNI not available on this CPU, not run");
            return;
        }
        for (case, (c, stride, k)) in INT8_CASES.into_iter().enumerate() {
            let l = Int8Layer::new(c, stride, k);
            let (g, x) = (&l.g, l.sample());
            let offset: Vec<i32> = (0..c).map(|j| (j as i32 * 997) % 20_000 - 10_000).collect();
            let scale = |j: usize| match case % 3 {
                2 => 1e-9 * (1.0 + j as f64 / 8.0),
                _ => 1e-4 * (1.0 + j as f64 / 4.0),
            };
            let requant: Vec<Requant> = (0..c).map(|j| Requant::new(scale(j))).collect();
            let Some(rq) = super::super::avx512::Requantizer::for_outputs(&offset, &requant, c)
            else {
                panic!("case {case}: no requantizer");
            };
            let n = g.pixels() * c;
            let mut acc = vec![0; n];
            depthwise_i32_scalar(x, c, &mut acc);
            for (zo, lo, hi) in [(3, 0, 255), (200, 200, 255), (128, 0, 215)] {
                let mut want = vec![0u8; n];
                let mut epi = Epilogue::Requant {
                    offset: &offset,
                    requant: &requant,
                    zo,
                    lo,
                    hi,
                    layout: OutLayout::RowMajor,
                    out: &mut want,
                };
                crate::KernelPath::Scalar
                    .ops()
                    .epilogue(&mut epi, 0, n / c, c, &acc, c);
                let mut got = vec![7u8; n];
                depthwise_requant_vnni(x, &rq, (zo, lo, hi), &mut got);
                assert_eq!(
                    got, want,
                    "c {c} stride {stride} {k}x{k} clamp {zo},{lo},{hi}"
                );
            }
        }
    }

    /// The integer forms (AVX2, and AVX-512 VNNI where the CPU has it) equal the reference
    /// bit for bit, extremes included.
    #[test]
    fn avx2_int8_depthwise_equals_the_reference() {
        if !crate::CpuFeatures::get().avx2 {
            println!("avx2 int8 depthwise: AVX2 not available on this CPU, not run");
            return;
        }
        for (c, stride, k) in INT8_CASES {
            let l = Int8Layer::new(c, stride, k);
            let (g, x) = (&l.g, l.sample());
            let n = g.pixels() * c;
            let (mut want, mut got) = (vec![0; n], vec![7; n]);
            depthwise_i32_scalar(x, c, &mut want);
            depthwise_i32_avx2(x, c, &mut got);
            assert_eq!(want, got, "c {c} stride {stride} {k}x{k}");
            if crate::CpuFeatures::get().vnni() {
                let mut got = vec![7; n];
                depthwise_i32_vnni(x, c, &mut got);
                assert_eq!(want, got, "vnni: c {c} stride {stride} {k}x{k}");
            } else {
                println!("vnni int8 depthwise: AVX-512 VNNI not available on this CPU, not run");
            }
        }
    }
}
