//! AVX-512 VNNI convolution with output pixels in the vector lanes, for static layers.
//!
//! The im2col + GEMM path puts pixels in rows and channels in lanes; for a first layer such
//! as MNIST's (1 input channel, K = 9, 16 outputs) that leaves per-row overhead and a
//! scattered NCHW epilogue dominating the time. Here activations are packed per sample as
//! `[k/4][pixel][4]` u8 (zero-point padded), each output channel's 4 weights are broadcast,
//! and one `vpdpbusd` produces 16 pixels of one channel, which the epilogue requantizes and
//! stores contiguously into the NCHW output. The arithmetic is the reference's: the same
//! i32 sums and the same `Requant::apply`, so results are bit-identical.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::weights::QWeights;
use crate::network::ConvGeom;
use crate::qparams::Requant;

/// Pixels per vector.
const LANES: usize = 16;
/// Output channels per register block.
const NB: usize = 8;

/// Whether the path can run: VNNI present, and every multiplier uses a right shift (the
/// saturating `shift == 0` case stays on the general path).
pub fn usable(requant: &[Requant]) -> bool {
    super::avx512::available() && requant.iter().all(|r| r.shift > 0 || r.multiplier == 0)
}

/// Static conv of one sample: `x` `[c, h, w]` u8 -> `out` `[n, oh*ow]` u8.
#[allow(clippy::too_many_arguments)]
pub fn conv_sample(
    x: &[u8],
    g: &ConvGeom,
    zp_in: u8,
    w: &QWeights,
    offset: &[i32],
    requant: &[Requant],
    zo: i32,
    lo: i32,
    hi: i32,
    out: &mut [u8],
    packed: &mut Vec<u8>,
) {
    let p = g.pixels();
    let k4 = w.k.div_ceil(4);
    let pp = p.div_ceil(LANES) * LANES;
    pack(x, g, zp_in, k4, pp, packed);
    assert!(usable(requant) && out.len() >= w.n * p);
    // SAFETY: features checked by `usable`; loads stay in `packed` (k4 * pp * 4 bytes).
    unsafe {
        kernel(
            packed, &w.quads, k4, pp, p, w.n, offset, requant, zo, lo, hi, out,
        )
    };
}

/// `packed[g][pixel][t]` = im2col value of `(pixel, k = 4g + t)`; pixels padded to `pp`.
fn pack(x: &[u8], g: &ConvGeom, zp: u8, k4: usize, pp: usize, packed: &mut Vec<u8>) {
    let [h, w] = g.in_hw;
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out_hw;
    packed.clear();
    packed.resize(k4 * pp * 4, zp);
    let k = g.in_channels * kh * kw;
    for kk in 0..k {
        let (c, ky, kx) = (kk / (kh * kw), kk / kw % kh, kk % kw);
        let (gi, t) = (kk / 4, kk % 4);
        let dst = &mut packed[gi * pp * 4..(gi + 1) * pp * 4];
        for oy in 0..oh {
            let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
            if iy < 0 || iy as usize >= h {
                continue; // stays zp
            }
            let src = &x[c * h * w + iy as usize * w..c * h * w + (iy as usize + 1) * w];
            for ox in 0..ow {
                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                if ix >= 0 && (ix as usize) < w {
                    dst[(oy * ow + ox) * 4 + t] = src[ix as usize];
                }
            }
        }
    }
    // Group slots past k multiply zero weights; their value does not matter.
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512dq")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    packed: &[u8],
    wq: &[i32],
    k4: usize,
    pp: usize,
    p: usize,
    n: usize,
    offset: &[i32],
    requant: &[Requant],
    zo: i32,
    lo: i32,
    hi: i32,
    out: &mut [u8],
) {
    let (vzo, vlo, vhi) = (
        _mm512_set1_epi32(zo),
        _mm512_set1_epi32(lo),
        _mm512_set1_epi32(hi),
    );
    let shared = requant.len() == 1;
    for p0 in (0..pp).step_by(LANES) {
        let valid = (p - p0.min(p)).min(LANES);
        if valid == 0 {
            break;
        }
        for n0 in (0..n).step_by(NB) {
            let nb = NB.min(n - n0);
            let mut acc = [_mm512_setzero_si512(); NB];
            for gi in 0..k4 {
                // SAFETY: 64 bytes at (gi, p0) inside packed (k4 * pp * 4).
                let a = unsafe { _mm512_loadu_si512(packed[(gi * pp + p0) * 4..].as_ptr().cast()) };
                for j in 0..nb {
                    acc[j] =
                        _mm512_dpbusd_epi32(acc[j], a, _mm512_set1_epi32(wq[(n0 + j) * k4 + gi]));
                }
            }
            for (j, sum) in acc.iter().enumerate().take(nb) {
                let c = n0 + j;
                let rq = requant[if shared { 0 } else { c }];
                let x = _mm512_add_epi32(*sum, _mm512_set1_epi32(offset[c]));
                let m = _mm512_set1_epi32(rq.multiplier);
                let (rd, sh) = (
                    _mm512_set1_epi64(if rq.shift == 0 {
                        0
                    } else {
                        1i64 << (rq.shift - 1)
                    }),
                    _mm512_set1_epi64(rq.shift.max(1) as i64),
                );
                let even = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), rd), sh);
                let odd = _mm512_srav_epi64(
                    _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(x), m), rd),
                    sh,
                );
                let q = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
                let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, vzo), vlo), vhi);
                let mask = if valid == LANES {
                    u16::MAX
                } else {
                    (1u16 << valid) - 1
                };
                // SAFETY: writes `valid` bytes at c * p + p0, inside the channel's plane.
                unsafe {
                    _mm_mask_storeu_epi8(
                        out[c * p + p0..].as_mut_ptr().cast(),
                        mask,
                        _mm512_cvtepi32_epi8(q),
                    )
                };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    _: &[u8],
    _: &[i32],
    _: usize,
    _: usize,
    _: usize,
    _: usize,
    _: &[i32],
    _: &[Requant],
    _: i32,
    _: i32,
    _: i32,
    _: &mut [u8],
) {
    unreachable!("checked by usable()")
}
