//! The static epilogue of the AVX2 GEMM in vectors: `clamp(zo + requant(acc + offset))`
//! for 8 outputs at a time, bit-identical to [`Requant::apply`] and the scalar epilogue.
//!
//! AVX2 multiplies signed 32-bit values into 64-bit lanes (`vpmuldq`) but has no 64-bit
//! arithmetic right shift. Flipping the sign bit maps `x` to `x + 2^63`, which is
//! non-negative as an unsigned value, and `floor(x / 2^s) = ((x + 2^63) >>> s) - 2^(63-s)`
//! exactly, so a logical variable shift (`vpsrlvq`) does the arithmetic one. The scalar rule
//! truncates the shifted value to i32 before a saturating add of the zero point and the
//! clamp; clamping the truncated value to `[lo - zo, hi - zo]` and then adding `zo` gives the
//! same byte without the saturating add AVX2 lacks.
//!
//! Used where every multiplier has a shift of at least 1 (a shift of 0, a multiplier of 2^31
//! or more, saturates in the scalar rule instead; the general epilogue keeps that case).

use std::arch::x86_64::*;

use crate::frame::requant::Requant;

/// Whether [`requant_rows`] computes these multipliers exactly as the scalar rule does.
pub fn supported(requant: &[Requant]) -> bool {
    requant.iter().all(|r| r.shift >= 1 || r.multiplier == 0)
}

/// Requantizes `rows` rows of `n` accumulators (`acc[r * stride..][..n]`) into
/// `out[r * n..][..n]` (row-major). `requant` holds one shared or `n` multipliers.
///
/// # Panics
/// When the buffers are shorter than the shapes say, or the CPU has no AVX2.
#[allow(clippy::too_many_arguments)] // the epilogue's fields, spelled out
pub fn requant_rows(
    acc: &[i32],
    rows: usize,
    n: usize,
    stride: usize,
    offset: &[i32],
    requant: &[Requant],
    (zo, lo, hi): (i32, i32, i32),
    out: &mut [u8],
) {
    assert!(
        crate::CpuFeatures::get().avx2,
        "AVX2 epilogue on a CPU without it"
    );
    assert!(rows == 0 || acc.len() >= (rows - 1) * stride + n);
    assert!(out.len() >= rows * n && offset.len() >= n);
    assert!(requant.len() == 1 || requant.len() >= n);
    debug_assert!(supported(requant));
    // SAFETY: AVX2 was checked; every load and store below is inside the asserted lengths.
    unsafe { rows_avx2(acc, rows, n, stride, offset, requant, (zo, lo, hi), out) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(
    acc: &[i32],
    rows: usize,
    n: usize,
    stride: usize,
    offset: &[i32],
    requant: &[Requant],
    (zo, lo, hi): (i32, i32, i32),
    out: &mut [u8],
) {
    let shared = requant.len() == 1;
    let sign = _mm256_set1_epi64x(i64::MIN);
    let (vlo, vhi, vzo) = (
        _mm256_set1_epi32(lo.saturating_sub(zo)),
        _mm256_set1_epi32(hi.saturating_sub(zo)),
        _mm256_set1_epi32(zo),
    );
    // Output `j`'s multiplier; a zero one past `n` (for the padded tail).
    let rq_at = |j: usize| match (shared, j < n) {
        (true, _) => requant[0],
        (false, true) => requant[j],
        (false, false) => Requant {
            multiplier: 0,
            shift: 0,
        },
    };
    let k = Consts {
        one: _mm256_set1_epi64x(1),
        sign,
        lows: _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0),
        vlo,
        vhi,
        vzo,
    };
    // Every multiplier with a shift of 33 or more: the short form (see `Group::High`).
    let high = requant.iter().all(|r| r.multiplier == 0 || r.shift >= 33);
    let full = n / 8 * 8;
    // Columns outermost: a group's constants are built once for all the block's rows.
    let mut j = 0;
    while j < full {
        let g = group(&k, high, std::array::from_fn(|i| rq_at(j + i)));
        // SAFETY: j + 8 <= n <= offset.len().
        let off = unsafe { _mm256_loadu_si256(offset[j..].as_ptr().cast()) };
        for r in 0..rows {
            // SAFETY: j + 8 <= n for the row of `acc`.
            let x = unsafe { _mm256_loadu_si256(acc[r * stride + j..].as_ptr().cast()) };
            // Safe to call: this function enables AVX2 too.
            let b = eight(&k, x, off, &g);
            out[r * n + j..r * n + j + 8].copy_from_slice(&b);
        }
        j += 8;
    }
    let tail = n - full;
    if tail == 0 {
        return;
    }
    // The last `tail` outputs: in vectors too where every row has 8 accumulators from
    // `full` (a GEMM tile's rows are padded to whole panels), zero multipliers and offsets
    // past `n`, and only `tail` bytes stored.
    if stride >= full + 8 && acc.len() >= (rows - 1) * stride + full + 8 {
        let g = group(&k, high, std::array::from_fn(|i| rq_at(full + i)));
        let mut pad = [0i32; 8];
        pad[..tail].copy_from_slice(&offset[full..n]);
        // SAFETY: a 32-byte load from a local array.
        let off = unsafe { _mm256_loadu_si256(pad.as_ptr().cast()) };
        for r in 0..rows {
            // SAFETY: full + 8 <= stride, and the last row's 8 values are inside `acc`
            // (checked above).
            let x = unsafe { _mm256_loadu_si256(acc[r * stride + full..].as_ptr().cast()) };
            // Safe to call: this function enables AVX2 too.
            let b = eight(&k, x, off, &g);
            out[r * n + full..(r + 1) * n].copy_from_slice(&b[..tail]);
        }
        return;
    }
    for r in 0..rows {
        for jj in full..n {
            out[r * n + jj] = zo
                .saturating_add(rq_at(jj).apply(acc[r * stride + jj].wrapping_add(offset[jj])))
                .clamp(lo, hi) as u8;
        }
    }
}

/// The constants [`eight`] and [`consts`] read.
struct Consts {
    one: __m256i,
    sign: __m256i,
    lows: __m256i,
    vlo: __m256i,
    vhi: __m256i,
    vzo: __m256i,
}

/// For 4 outputs: the (multiplier, shift) lanes, the shift, the rounding term and
/// `2^63 >> s` (a shift of 0 gives a rounding term of 0: `vpsllvq` by 2^64 - 1).
#[target_feature(enable = "avx2")]
#[inline]
fn consts(k: &Consts, r: [Requant; 4]) -> [__m256i; 4] {
    let p: [i64; 4] =
        std::array::from_fn(|i| (r[i].multiplier as u32 as i64) | ((r[i].shift as i64) << 32));
    // SAFETY: a 32-byte load from a local array.
    let rq = unsafe { _mm256_loadu_si256(p.as_ptr().cast()) };
    let s = _mm256_srli_epi64::<32>(rq);
    let round = _mm256_sllv_epi64(k.one, _mm256_sub_epi64(s, k.one));
    [rq, s, round, _mm256_srlv_epi64(k.sign, s)]
}

/// `floor((a * m + 2^(s-1)) / 2^s)` per 64-bit lane, for the low 32 bits of each lane of
/// `a` (its result in the low 32 bits of the lane).
#[target_feature(enable = "avx2")]
#[inline]
fn scale(k: &Consts, a: __m256i, [rq, s, round, bias]: [__m256i; 4]) -> __m256i {
    let prod = _mm256_mul_epi32(a, rq);
    let u = _mm256_xor_si256(_mm256_add_epi64(prod, round), k.sign);
    _mm256_sub_epi64(_mm256_srlv_epi64(u, s), bias)
}

/// The constants of 8 outputs.
#[derive(Clone, Copy)]
enum Group {
    /// Any shift of 1 or more: the even outputs' [`consts`], then the odd ones'.
    Wide([__m256i; 4], [__m256i; 4]),
    /// Every shift `s >= 33` (or a zero multiplier): with `x = acc * m` and `h` its high 32
    /// bits, `floor((x + 2^(s-1)) / 2^s) = (h + 2^(s-33)) >> (s - 32)` exactly (the rounding
    /// term is a multiple of 2^32, and the low word, below 2^32, cannot carry a whole step),
    /// so the 64-bit work stops at the multiply: 8-lane adds and `vpsravd` instead of
    /// 4-lane 64-bit adds, flips and shifts. `|h| <= 2^30` and the term `<= 2^29`: no
    /// overflow. A zero multiplier takes `s = 33`: `(0 + 1) >> 1 = 0`, as the scalar rule.
    High {
        /// Multipliers of the even, then the odd outputs, in the low half of 64-bit lanes.
        m: [__m256i; 2],
        /// `2^(s-33)` per output.
        round: __m256i,
        /// `s - 32` per output.
        shift: __m256i,
    },
}

/// The constants of outputs `r[0..8]` (`high`: every shift is at least 33, see
/// [`Group::High`]).
#[target_feature(enable = "avx2")]
#[inline]
fn group(k: &Consts, high: bool, r: [Requant; 8]) -> Group {
    if !high {
        return Group::Wide(
            consts(k, std::array::from_fn(|i| r[2 * i])),
            consts(k, std::array::from_fn(|i| r[2 * i + 1])),
        );
    }
    let m: [[i64; 4]; 2] =
        std::array::from_fn(|o| std::array::from_fn(|i| r[2 * i + o].multiplier as u32 as i64));
    let s: [i32; 8] = std::array::from_fn(|i| match r[i].multiplier {
        0 => 33,
        _ => r[i].shift as i32,
    });
    let round: [i32; 8] = std::array::from_fn(|i| 1 << (s[i] - 33));
    let shift: [i32; 8] = std::array::from_fn(|i| s[i] - 32);
    // SAFETY: 32-byte loads from local arrays.
    unsafe {
        Group::High {
            m: m.map(|v| _mm256_loadu_si256(v.as_ptr().cast())),
            round: _mm256_loadu_si256(round.as_ptr().cast()),
            shift: _mm256_loadu_si256(shift.as_ptr().cast()),
        }
    }
}

/// 8 outputs of one row as bytes: accumulators `x` plus offsets `off`, requantized with the
/// group's constants, clamped and shifted by the zero point. `vpmuldq` reads the even
/// 32-bit lanes, so the even outputs are multiplied where they lie and the odd ones after a
/// 32-bit shift, and one blend puts the results back in order (no cross-lane permutes).
#[target_feature(enable = "avx2")]
#[inline]
fn eight(k: &Consts, x: __m256i, off: __m256i, g: &Group) -> [u8; 8] {
    let x = _mm256_add_epi32(x, off);
    let y = match g {
        Group::Wide(c0, c1) => {
            let even = scale(k, x, *c0);
            let odd = scale(k, _mm256_srli_epi64::<32>(x), *c1);
            _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
        }
        Group::High { m, round, shift } => {
            let even = _mm256_mul_epi32(x, m[0]);
            let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), m[1]);
            // The high words: the even products' moved down, the odd ones' where they lie.
            let h = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd);
            _mm256_srav_epi32(_mm256_add_epi32(h, *round), *shift)
        }
    };
    let y = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(y, k.vlo), k.vhi), k.vzo);
    // 8 values in 0..=255 to bytes: packed within each 128-bit lane, then the two lanes'
    // first 4 bytes side by side.
    let w = _mm256_packus_epi32(y, y);
    let b = _mm256_packus_epi16(w, w);
    let joined = _mm256_permutevar8x32_epi32(b, k.lows);
    (_mm_cvtsi128_si64(_mm256_castsi256_si128(joined)) as u64).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantlab_data::rng::Rng;

    /// The scalar epilogue's rule.
    fn scalar(a: i32, off: i32, rq: &Requant, (zo, lo, hi): (i32, i32, i32)) -> u8 {
        zo.saturating_add(rq.apply(a.wrapping_add(off)))
            .clamp(lo, hi) as u8
    }

    #[test]
    fn vectors_equal_the_scalar_rule_on_every_shape_and_extreme() {
        if !crate::CpuFeatures::get().avx2 {
            println!("avx2 epilogue: AVX2 not available on this CPU, not run");
            return;
        }
        let mut rng = Rng::new(17);
        // `small`: every shift at least 33, the short form (`Group::High`).
        for (&(rows, n), small) in [(1, 1), (3, 6), (3, 7), (4, 8), (2, 16), (4, 21), (1, 64)]
            .iter()
            .flat_map(|s| [(s, false), (s, true)])
        {
            for shared in [false, true] {
                for _ in 0..50 {
                    // Strides from exactly `n` (the scalar tail) to a tile's padding.
                    let stride = n + (rng.next_u64() % 9) as usize;
                    let acc: Vec<i32> = (0..rows * stride)
                        .map(|i| match i % 11 {
                            0 => i32::MAX,
                            1 => i32::MIN,
                            _ => (rng.next_u64() % 2_000_001) as i32 - 1_000_000,
                        })
                        .collect();
                    let offset: Vec<i32> = (0..n)
                        .map(|_| (rng.next_u64() % 20_001) as i32 - 10_000)
                        .collect();
                    let requant: Vec<Requant> = (0..if shared { 1 } else { n })
                        .map(|_| match (rng.next_u64() % 7, small) {
                            (0, _) => Requant::new(0.0),
                            (1, false) => Requant::new(0.5),
                            (2, false) => Requant::new(1.0 - 1e-9),
                            (_, false) => Requant::new(10f64.powf(-6.0 + 6.0 * rng.uniform())),
                            // 2^-2 (shift 33) down to 1e-9 (shift 60).
                            (_, true) => Requant::new(10f64.powf(-9.0 + 8.39 * rng.uniform())),
                        })
                        .collect();
                    assert!(!small || requant.iter().all(|r| r.multiplier == 0 || r.shift >= 33));
                    assert!(supported(&requant));
                    let zo = (rng.next_u64() % 256) as i32;
                    let lo = if rng.next_u64().is_multiple_of(2) {
                        zo
                    } else {
                        0
                    };
                    let c = (zo, lo, 255);
                    let mut out = vec![0u8; rows * n];
                    requant_rows(&acc, rows, n, stride, &offset, &requant, c, &mut out);
                    for r in 0..rows {
                        for j in 0..n {
                            let rq = &requant[if shared { 0 } else { j }];
                            let want = scalar(acc[r * stride + j], offset[j], rq, c);
                            assert_eq!(out[r * n + j], want, "{rows}x{n} r{r} j{j} {rq:?}");
                        }
                    }
                }
            }
        }
        // A shift of 0 (a multiplier of 2^30 or more) saturates in the scalar rule: not
        // this path's.
        assert!(!supported(&[Requant {
            multiplier: 1 << 30,
            shift: 0
        }]));
    }
}
