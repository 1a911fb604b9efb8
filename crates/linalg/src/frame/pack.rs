//! Weight packings for the SIMD kernels. [`Packed`]: columns in panels of [`NR`] outputs,
//! and within a panel the reduction dimension in groups of 4, so one 64-byte load holds
//! `w[n0..n0+16][k..k+4]` (16 lanes, each a dot product of 4 u8 activations with 4 i8
//! weights). [`Packed16`]: panels of [`NR16`] outputs with `k` in pairs widened to i16, for
//! paths that multiply 16-bit pairs into i32 lanes. Missing outputs and the `k` tail are
//! zero-filled, so kernels never branch on them.

/// Outputs per panel (one 512-bit register of i32 lanes).
pub const NR: usize = 16;

/// Packed weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Panels, each `k4 * NR * 4` bytes.
    pub data: Vec<i8>,
    /// Number of 4-element groups along `k` (`ceil(k / 4)`).
    pub k4: usize,
    /// Number of panels (`ceil(n / NR)`).
    pub panels: usize,
}

impl Packed {
    /// Packs `[n, k]` weights.
    pub fn new(w: &[i8], n: usize, k: usize) -> Self {
        let k4 = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * k4 * NR * 4];
        for p in 0..panels {
            for g in 0..k4 {
                for j in 0..NR {
                    let col = p * NR + j;
                    if col >= n {
                        continue;
                    }
                    for t in 0..4 {
                        let kk = g * 4 + t;
                        if kk < k {
                            data[((p * k4 + g) * NR + j) * 4 + t] = w[col * k + kk];
                        }
                    }
                }
            }
        }
        Self { data, k4, panels }
    }

    /// The bytes of panel `p`.
    pub fn panel(&self, p: usize) -> &[i8] {
        let len = self.k4 * NR * 4;
        &self.data[p * len..(p + 1) * len]
    }
}

/// Outputs per i16 panel (one 256-bit register of i32 lanes).
pub const NR16: usize = 8;

/// Weights as i16 pairs: panels of 8 outputs, `k` in groups of 2 (`[panel][k2][8][2]`),
/// zero-filled, so one 32-byte load is `w[n0..n0+8][k..k+2]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed16 {
    /// The pairs.
    pub data: Vec<i16>,
    /// `ceil(k / 2)`.
    pub k2: usize,
    /// `ceil(n / 8)`.
    pub panels: usize,
}

impl Packed16 {
    /// Packs `[n, k]` weights.
    pub fn new(w: &[i8], n: usize, k: usize) -> Self {
        let (k2, panels) = (k.div_ceil(2), n.div_ceil(NR16));
        let mut data = vec![0i16; panels * k2 * NR16 * 2];
        for col in 0..n {
            let (p, j) = (col / NR16, col % NR16);
            for kk in 0..k {
                data[((p * k2 + kk / 2) * NR16 + j) * 2 + kk % 2] = w[col * k + kk] as i16;
            }
        }
        Self { data, k2, panels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_zero_fill() {
        // n = 17 (two panels), k = 5 (two groups, the second with one real element).
        let (n, k) = (17, 5);
        let w: Vec<i8> = (0..n * k).map(|i| (i % 100) as i8 + 1).collect();
        let p = Packed::new(&w, n, k);
        assert_eq!((p.k4, p.panels), (2, 2));
        // panel 0, group 1, column 3: k = 4 is real, 5..8 zero.
        let at =
            |pn: usize, g: usize, j: usize, t: usize| p.data[((pn * p.k4 + g) * NR + j) * 4 + t];
        assert_eq!(at(0, 1, 3, 0), w[3 * k + 4]);
        assert_eq!(at(0, 1, 3, 1), 0);
        assert_eq!(at(1, 0, 0, 2), w[16 * k + 2]);
        assert_eq!(at(1, 0, 1, 0), 0); // column 17 does not exist
    }
}
