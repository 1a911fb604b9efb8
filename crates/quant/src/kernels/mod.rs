//! Integer and float kernels.
//!
//! - [`scalar`]: the reference u8 x i8 -> i32 GEMM; [`weights`] / [`pack`]: weights prepared
//!   once at load time (column sums, packed panels); [`epilogue`]: bias, zero-point
//!   correction, requantize or dequantize, ReLU, fused after each row block.
//! - [`im2col`]: convolution as GEMM; [`f32gemm`]: the float engine's GEMM.
//! - [`KernelPath`]: which integer GEMM runs, picked at run time from the CPU's features or
//!   forced with `QUANTLAB_KERNEL`.

pub mod epilogue;
pub mod f32gemm;
pub mod im2col;
pub mod pack;
pub mod scalar;
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
}

impl KernelPath {
    /// Every path this build knows, fastest last.
    pub const ALL: [KernelPath; 1] = [KernelPath::Scalar];

    /// Name used by `QUANTLAB_KERNEL` and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            KernelPath::Scalar => true,
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
    }
}
