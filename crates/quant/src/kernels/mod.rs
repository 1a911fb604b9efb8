//! Integer and float kernels.
//!
//! - [`scalar`]: the reference u8 x i8 -> i32 GEMM; [`avx512`] (VNNI) and [`avx2`] (exact
//!   widening) fast paths, bit-identical to it; [`weights`] / [`pack`]: weights prepared
//!   once at load time (column sums, packed panels); [`epilogue`]: bias, zero-point
//!   correction, requantize or dequantize, ReLU, fused after each row block.
//! - [`rows`]: a GEMM's left operand, a matrix or a padded channels-last map read tap by
//!   tap (direct convolution); [`nhwc`]: channels-last layout, padding, im2col, pooling.
//! - [`sgemm`]: the float engine's kernels (AVX-512, AVX2 + FMA, scalar), same structure;
//!   [`f32gemm`]: the `gemm` crate, kept as a second float baseline for the kernel bench;
//!   [`im2col`]: the NCHW im2col the reference tests compare against.
//! - [`KernelPath`]: which integer GEMM runs, picked at run time from the CPU's features or
//!   forced with `QUANTLAB_KERNEL`.

pub mod avx2;
pub mod avx512;
pub mod epilogue;
pub mod f32gemm;
pub mod im2col;
pub mod nhwc;
pub mod pack;
pub mod quantize;
pub mod rows;
pub mod scalar;
pub mod sgemm;
pub mod weights;

use serde::{Deserialize, Serialize};

pub use epilogue::{Epilogue, OutLayout};
pub use weights::QWeights;

use crate::error::{QuantError, Result};

/// Environment variable that forces a GEMM path.
pub const KERNEL_ENV: &str = "QUANTLAB_KERNEL";

/// An integer GEMM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelPath {
    /// Portable scalar reference.
    Scalar,
    /// AVX2, exact (`vpmaddwd` on widened values).
    Avx2,
    /// AVX-512 VNNI (`vpdpbusd`).
    Avx512Vnni,
}

impl KernelPath {
    /// Every path this build knows, fastest last.
    pub const ALL: [KernelPath; 3] = [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512Vnni];

    /// Name used by `QUANTLAB_KERNEL` and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512Vnni => "avx512vnni",
        }
    }

    /// The float kernels that run alongside this path (see [`sgemm::sgemm`]).
    pub fn f32_name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2-fma",
            KernelPath::Avx512Vnni => "avx512f",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            KernelPath::Scalar => true,
            KernelPath::Avx2 => avx2::available(),
            KernelPath::Avx512Vnni => avx512::available(),
        }
    }

    /// The fastest available path.
    pub fn detect() -> Self {
        KernelPath::ALL
            .into_iter()
            .rev()
            .find(|p| p.available())
            .unwrap_or(KernelPath::Scalar)
    }

    /// `QUANTLAB_KERNEL` if set (an error if unknown or unavailable here), else [`Self::detect`].
    pub fn from_env() -> Result<Self> {
        match std::env::var(KERNEL_ENV) {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(Self::detect()),
        }
    }
}

impl std::str::FromStr for KernelPath {
    type Err = QuantError;
    fn from_str(s: &str) -> Result<Self> {
        let p = KernelPath::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| QuantError::Invalid {
                key: "QUANTLAB_KERNEL",
                reason: format!(
                    "unknown kernel {s:?}; known: {}",
                    KernelPath::ALL.map(|p| p.as_str()).join(", ")
                ),
            })?;
        if !p.available() {
            return Err(QuantError::Invalid {
                key: "QUANTLAB_KERNEL",
                reason: format!("{s} is not supported by this CPU"),
            });
        }
        Ok(p)
    }
}

/// `u8 [m, k] x i8 [n, k]^T -> i32`, fed to `epi` in row blocks, on `path`.
pub fn qgemm(path: KernelPath, m: usize, a: &[u8], lda: usize, w: &QWeights, epi: &mut Epilogue) {
    match path {
        KernelPath::Scalar => scalar::qgemm(m, a, lda, w, epi),
        KernelPath::Avx2 => avx2::qgemm(m, a, lda, w, epi),
        KernelPath::Avx512Vnni => avx512::qgemm(m, a, lda, w, epi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantlab_data::rng::Rng;

    /// Largest K the models use (the CNN's first linear layer: 32 * 7 * 7).
    const LARGEST_K: usize = 1568;

    fn raw(path: KernelPath, m: usize, a: &[u8], lda: usize, w: &QWeights) -> Vec<i32> {
        let mut out = vec![0i32; m * w.n];
        qgemm(path, m, a, lda, w, &mut Epilogue::Raw { out: &mut out });
        out
    }

    fn fast_paths() -> Vec<KernelPath> {
        KernelPath::ALL
            .into_iter()
            .filter(|p| *p != KernelPath::Scalar && p.available())
            .collect()
    }

    #[test]
    fn every_path_matches_the_reference_on_random_and_odd_shapes() {
        let mut rng = Rng::new(21);
        let mut shapes = vec![
            (512, 64, 64),
            (64, 50, 784),
            (1, 10, 30),
            (3, 17, 5),
            (67, 67, 67),
        ];
        for _ in 0..60 {
            shapes.push((1 + rng.below(67), 1 + rng.below(67), 1 + rng.below(200)));
        }
        for (m, n, k) in shapes {
            let lda = k + rng.below(3);
            let a: Vec<u8> = (0..m * lda).map(|_| rng.below(256) as u8).collect();
            let w: Vec<i8> = (0..n * k)
                .map(|_| (rng.below(255) as i32 - 127) as i8)
                .collect();
            let qw = QWeights::new(w, n, k);
            let want = raw(KernelPath::Scalar, m, &a, lda, &qw);
            for path in fast_paths() {
                assert_eq!(
                    raw(path, m, &a, lda, &qw),
                    want,
                    "{path:?} m={m} n={n} k={k}"
                );
            }
        }
    }

    #[test]
    fn fused_requant_epilogue_matches_the_reference() {
        use crate::qparams::Requant;
        let mut rng = Rng::new(33);
        for case in 0..40 {
            let (m, n, k) = (1 + rng.below(40), 1 + rng.below(70), 1 + rng.below(150));
            let a: Vec<u8> = (0..m * k).map(|_| rng.below(256) as u8).collect();
            let qw = QWeights::new(
                (0..n * k)
                    .map(|_| (rng.below(255) as i32 - 127) as i8)
                    .collect(),
                n,
                k,
            );
            let offset: Vec<i32> = (0..n).map(|_| rng.below(20_001) as i32 - 10_000).collect();
            let per_channel = case % 2 == 0;
            let requant: Vec<Requant> = (0..if per_channel { n } else { 1 })
                .map(|_| Requant::new(10f64.powf(-6.0 + 5.0 * rng.uniform())))
                .collect();
            let pixels = [1, 3, 7][case % 3].min(m);
            let layout = if m % pixels == 0 && pixels > 1 {
                OutLayout::Nchw { pixels }
            } else {
                OutLayout::RowMajor
            };
            let (zo, lo, hi) = (
                rng.below(256) as i32,
                if case % 3 == 0 { 17 } else { 0 },
                255,
            );
            let run = |path| {
                let mut out = vec![0u8; m * n];
                let mut epi = Epilogue::Requant {
                    offset: &offset,
                    requant: &requant,
                    zo,
                    lo,
                    hi,
                    layout,
                    out: &mut out,
                };
                qgemm(path, m, &a, k, &qw, &mut epi);
                out
            };
            let want = run(KernelPath::Scalar);
            for path in fast_paths() {
                assert!(
                    run(path) == want,
                    "{path:?} case {case}: m={m} n={n} k={k} {layout:?}"
                );
            }
        }
    }

    #[test]
    fn extremes_do_not_saturate() {
        // All-255 activations against all -127 (and -128) weights at the largest K: an i16
        // intermediate would saturate; the exact sum is 255 * w * K.
        for wv in [-128i8, -127, 127] {
            let (m, n, k) = (3, 19, LARGEST_K);
            let a = vec![255u8; m * k];
            let qw = QWeights::new(vec![wv; n * k], n, k);
            let want = vec![255 * wv as i32 * k as i32; m * n];
            assert_eq!(raw(KernelPath::Scalar, m, &a, k, &qw), want);
            for path in fast_paths() {
                assert_eq!(raw(path, m, &a, k, &qw), want, "{path:?} w={wv}");
            }
        }
    }

    #[test]
    fn kernel_names_parse_and_unknown_is_an_error() {
        assert_eq!("scalar".parse::<KernelPath>().unwrap(), KernelPath::Scalar);
        let err = "sse9".parse::<KernelPath>().unwrap_err().to_string();
        assert!(
            err.contains("unknown kernel") && err.contains("avx512vnni"),
            "{err}"
        );
        assert!(KernelPath::detect().available());
    }
}
