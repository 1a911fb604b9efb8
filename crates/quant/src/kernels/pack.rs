//! Weight packing for the SIMD kernels: columns in panels of [`NR`] outputs, and within a
//! panel the reduction dimension in groups of 4, so one 64-byte load holds
//! `w[n0..n0+16][k..k+4]`, the operand layout of `vpdpbusd` (16 lanes, each a dot product
//! of 4 u8 activations with 4 i8 weights). Missing outputs and the `k` tail are zero-filled,
//! so kernels never branch on them.

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
