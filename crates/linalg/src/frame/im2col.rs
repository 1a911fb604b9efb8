//! im2col: one row per output pixel holding the `c_in * kh * kw` inputs it sees, so a
//! convolution becomes a GEMM. Out-of-image taps are filled with the value of real zero
//! (`0.0`, or the activation's zero point for quantized inputs), which keeps padding exact.

use super::geom::ConvGeom;

/// Writes the im2col rows of one sample (`x` is `[c, h, w]`) into `out` (`[pixels, lda]`).
/// Kernel rows that lie inside the image are copied as contiguous runs (stride 1) rather
/// than tap by tap, which is what keeps this step cheap next to the GEMM.
pub fn im2col<T: Copy>(x: &[T], g: &ConvGeom, pad_value: T, out: &mut [T], lda: usize) {
    let [h, w] = g.in_hw;
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out_hw;
    let [sy, sx] = g.stride;
    let [py, px] = g.padding;
    for oy in 0..oh {
        let iy0 = (oy * sy) as isize - py as isize;
        let inside_y = iy0 >= 0 && iy0 as usize + kh <= h;
        for ox in 0..ow {
            let row =
                &mut out[(oy * ow + ox) * lda..(oy * ow + ox) * lda + g.in_channels * kh * kw];
            let ix0 = (ox * sx) as isize - px as isize;
            let inside_x = ix0 >= 0 && ix0 as usize + kw <= w;
            if inside_x && inside_y {
                // Interior pixel (most of them): every tap is in the image. One bounds check
                // per channel instead of one per kernel row; this loop is what im2col costs.
                let (iy0, ix0) = (iy0 as usize, ix0 as usize);
                if kh == 3 && kw == 3 {
                    interior::<T, 3, 3>(x, row, h, w, iy0, ix0);
                } else {
                    for (c, dst) in row.chunks_exact_mut(kh * kw).enumerate() {
                        let src = &x
                            [c * h * w + iy0 * w + ix0..c * h * w + (iy0 + kh - 1) * w + ix0 + kw];
                        for (ky, d) in dst.chunks_exact_mut(kw).enumerate() {
                            d.copy_from_slice(&src[ky * w..ky * w + kw]);
                        }
                    }
                }
                continue;
            }
            let mut col = 0;
            for c in 0..g.in_channels {
                let plane = &x[c * h * w..(c + 1) * h * w];
                for ky in 0..kh {
                    let iy = iy0 + ky as isize;
                    let dst = &mut row[col..col + kw];
                    if iy < 0 || iy as usize >= h {
                        dst.fill(pad_value);
                    } else if inside_x {
                        let start = iy as usize * w + ix0 as usize;
                        dst.copy_from_slice(&plane[start..start + kw]);
                    } else {
                        for (kx, d) in dst.iter_mut().enumerate() {
                            let ix = ix0 + kx as isize;
                            *d = if ix >= 0 && (ix as usize) < w {
                                plane[iy as usize * w + ix as usize]
                            } else {
                                pad_value
                            };
                        }
                    }
                    col += kw;
                }
            }
        }
    }
}

/// An interior pixel with a compile-time kernel size: fixed-size copies, no memcpy calls.
#[inline(always)]
fn interior<T: Copy, const KH: usize, const KW: usize>(
    x: &[T],
    row: &mut [T],
    h: usize,
    w: usize,
    iy0: usize,
    ix0: usize,
) {
    for (c, dst) in row.chunks_exact_mut(KH * KW).enumerate() {
        let base = c * h * w + iy0 * w + ix0;
        for ky in 0..KH {
            let s: &[T; KW] = x[base + ky * w..base + ky * w + KW]
                .try_into()
                .expect("KW values");
            let d: &mut [T; KW] = (&mut dst[ky * KW..(ky + 1) * KW])
                .try_into()
                .expect("KW values");
            *d = *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_3x3_on_2x2() {
        let g = ConvGeom {
            in_channels: 1,
            in_hw: [2, 2],
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            out_hw: [2, 2],
        };
        let x = [1, 2, 3, 4];
        let mut out = vec![0; 4 * 9];
        im2col(&x, &g, 9, &mut out, 9);
        // Top-left output pixel: row above and column left are padding.
        assert_eq!(&out[..9], &[9, 9, 9, 9, 1, 2, 9, 3, 4]);
        assert_eq!(&out[27..], &[1, 2, 9, 3, 4, 9, 9, 9, 9]);
    }
}
