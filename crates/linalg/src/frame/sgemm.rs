//! The float engine's GEMM and direct convolution: `out[r][n] = act(bias[n] + sum_k
//! rows[r][k] * w[n][k])`, row-major (a linear layer's output, or a channels-last map).
//!
//! Same structure as the int8 kernels: weights packed once at load into panels of [`NR`]
//! outputs (`[panel][k][16]`, zero-filled), a register block of up to `MR` rows x 2 panels
//! of accumulators, the activation broadcast from where it lies ([`Rows`], so a convolution
//! reads its padded input tap by tap with no im2col matrix), and bias + ReLU applied to the
//! registers before the one store. Each path's kernels (see `crate::Ops::sgemm`) follow
//! this frame; the scalar loop here is the reference. Paths differ only in float rounding (FMA against
//! multiply-add), which the tests bound.

use super::activation::Activation;
use super::rows::Rows;

/// Outputs per panel (one 512-bit register of f32).
pub const NR: usize = 16;

/// Float weights `[n, k]` packed in panels, with their bias padded to whole panels.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedF32 {
    /// `[panel][k][NR]`.
    pub data: Vec<f32>,
    /// Bias, `panels * NR` (zero past `n`).
    pub bias: Vec<f32>,
    /// Outputs.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `ceil(n / NR)`.
    pub panels: usize,
}

impl PackedF32 {
    /// Packs `w` (`[n, k]`, row-major) and `bias` (`[n]`).
    pub fn new(w: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert!(
            w.len() == n * k && bias.len() == n,
            "weights must be [n, k], bias [n]"
        );
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for j in 0..n {
            let (p, lane) = (j / NR, j % NR);
            for kk in 0..k {
                data[(p * k + kk) * NR + lane] = w[j * k + kk];
            }
        }
        let mut b = vec![0f32; panels * NR];
        b[..n].copy_from_slice(bias);
        Self {
            data,
            bias: b,
            n,
            k,
            panels,
        }
    }
}

/// What every float kernel checks before it runs: the rows fit the weights, the output
/// fits the rows, every row read stays inside the activation buffer.
pub fn check(rows: &Rows<f32>, w: &PackedF32, out: &[f32]) {
    assert_eq!(rows.k(), w.k, "row length must match the weights");
    assert!(out.len() >= rows.m * w.n, "output buffer too short");
    rows.check();
}

/// The reference: plain loops over the packed weights.
pub fn scalar(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    for r in 0..rows.m {
        let base = rows.base(r);
        let o = &mut out[r * w.n..(r + 1) * w.n];
        for (j, v) in o.iter_mut().enumerate() {
            let (p, lane) = (j / NR, j % NR);
            let panel = &w.data[p * w.k * NR..];
            let mut acc = 0f32;
            let mut g = 0;
            for &s in rows.segs {
                for x in &rows.a[base + s..base + s + rows.seg_len] {
                    acc += x * panel[g * NR + lane];
                    g += 1;
                }
            }
            *v = act.apply(acc + w.bias[j]);
        }
    }
}
