//! [`KernelPath`]: which kernels run, picked once from the CPU's features (or forced with
//! `QUANTLAB_KERNEL`); `ops.rs` maps it to its table of operations (`KernelPath::ops`).

use crate::cpu::CpuFeatures;
use crate::error::LinalgError;

/// Environment variable that forces a GEMM path.
pub const KERNEL_ENV: &str = "QUANTLAB_KERNEL";

/// An integer GEMM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
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

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        let cpu = CpuFeatures::get();
        match self {
            KernelPath::Scalar => true,
            KernelPath::Avx2 => cfg!(target_arch = "x86_64") && cpu.avx2,
            KernelPath::Avx512Vnni => cfg!(target_arch = "x86_64") && cpu.vnni(),
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

    /// The nominal peak `(f32, int8)` multiply-accumulates per cycle and core of this path on
    /// this CPU (`amd`: an AMD core). Two vector FMA pipes everywhere; AMD's Zen 4 runs
    /// 512-bit instructions on 256-bit datapaths, so its f32 peak is 16 (Intel's AVX-512
    /// cores: 32). One 512-bit `vpdpbusd` per cycle is 64 int8 MACs; AVX2's exact path (i16
    /// `vpmaddwd`, two pipes) is 32. Ceilings assumed from the instruction set, not
    /// measurements: a core with boost clocks or a second 512-bit port exceeds them.
    pub fn nominal_macs_per_cycle(self, amd: bool) -> (f64, f64) {
        let cpu = CpuFeatures::get();
        let f32_peak = if cpu.avx512f && !amd {
            32.0
        } else if cpu.avx2 {
            16.0
        } else {
            4.0
        };
        let int8_peak = match self {
            KernelPath::Avx512Vnni => 64.0,
            KernelPath::Avx2 => 32.0,
            KernelPath::Scalar => 1.0,
        };
        (f32_peak, int8_peak)
    }

    /// `QUANTLAB_KERNEL` if set (an error if unknown or unavailable here), else [`Self::detect`].
    pub fn from_env() -> Result<Self, LinalgError> {
        match std::env::var(KERNEL_ENV) {
            Ok(v) if !v.is_empty() => v.parse().map_err(|e| LinalgError::Env(Box::new(e))),
            _ => Ok(Self::detect()),
        }
    }
}

impl std::str::FromStr for KernelPath {
    type Err = LinalgError;
    fn from_str(s: &str) -> Result<Self, LinalgError> {
        let p = KernelPath::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| LinalgError::UnknownPath {
                name: s.to_string(),
                known: KernelPath::ALL.map(|p| p.as_str()).join(", "),
            })?;
        if !p.available() {
            return Err(LinalgError::Unavailable { name: p.as_str() });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_parse_and_unknown_is_an_error() {
        assert_eq!("scalar".parse::<KernelPath>().unwrap(), KernelPath::Scalar);
        let err = "sse9".parse::<KernelPath>().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unknown kernel") && text.contains("avx512vnni"),
            "{text}"
        );
        // What `from_env` returns names the variable, as the CLI prints it.
        let env = LinalgError::Env(Box::new(err)).to_string();
        assert!(
            env.starts_with("invalid QUANTLAB_KERNEL: unknown kernel \"sse9\""),
            "{env}"
        );
        assert!(KernelPath::detect().available());
    }
}
