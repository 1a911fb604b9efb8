//! The three burn backends quantlab runs on, as one runtime switch. The binary picks one
//! (`--device cpu|ndarray|gpu`) and passes the resulting `Device` down.

use burn::tensor::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

/// A burn backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    /// burn's flex CPU backend (0.22's recommended CPU backend).
    Cpu,
    /// burn's ndarray CPU backend (deprecated upstream, kept as a benchmark row).
    Ndarray,
    /// wgpu (a real GPU, or a software Vulkan device such as lavapipe).
    Gpu,
}

impl Backend {
    /// Name used in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Ndarray => "ndarray",
            Backend::Gpu => "gpu",
        }
    }

    /// burn's name for the backend.
    pub fn burn_name(self) -> &'static str {
        match self {
            Backend::Cpu => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Gpu => "wgpu",
        }
    }

    /// The (inference) device. Created explicitly: `Device::default()` would prefer wgpu.
    pub fn device(self) -> Device {
        match self {
            Backend::Cpu => Device::flex(),
            #[allow(deprecated)] // ndarray is deprecated upstream; it stays a comparison row.
            Backend::Ndarray => Device::ndarray(),
            Backend::Gpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
