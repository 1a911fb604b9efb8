//! im2col: one row per output pixel holding the `c_in * kh * kw` inputs it sees, so a
//! convolution becomes a GEMM. Out-of-image taps are filled with the value of real zero
//! (`0.0`, or the activation's zero point for quantized inputs), which keeps padding exact.

use crate::network::ConvGeom;

/// Writes the im2col rows of one sample (`x` is `[c, h, w]`) into `out` (`[pixels, lda]`).
pub fn im2col<T: Copy>(x: &[T], g: &ConvGeom, pad_value: T, out: &mut [T], lda: usize) {
    let [h, w] = g.in_hw;
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out_hw;
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut out[(oy * ow + ox) * lda..];
            let mut col = 0;
            for c in 0..g.in_channels {
                let plane = &x[c * h * w..(c + 1) * h * w];
                for ky in 0..kh {
                    let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                    for kx in 0..kw {
                        let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                        row[col] = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            plane[iy as usize * w + ix as usize]
                        } else {
                            pad_value
                        };
                        col += 1;
                    }
                }
            }
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
