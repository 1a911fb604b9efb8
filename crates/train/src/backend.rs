//! The three burn backends quantlab runs on, as one runtime switch. The binary picks one
//! (`--device cpu|ndarray|gpu`) and passes the resulting `Device` down.

use std::sync::OnceLock;

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuBackend;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::error::TrainError;
use crate::int8_dot::{Int8Dot, int8_dot};

/// A burn backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    /// burn's flex CPU backend (0.22's recommended CPU backend).
    Cpu,
    /// burn's ndarray CPU backend (deprecated upstream, kept as a benchmark row; built only
    /// with the `ndarray` feature).
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

    /// Whether this build has the backend: ndarray only with the `ndarray` feature.
    pub fn built(self) -> bool {
        self != Backend::Ndarray || cfg!(feature = "ndarray")
    }

    /// The (inference) device. Created explicitly: `Device::default()` would prefer wgpu.
    /// ndarray in a build without it is an error that says how to get it.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // ndarray is deprecated upstream; it stays a comparison row.
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::Ndarray => Err(TrainError::Invalid {
                key: "device",
                value: "ndarray".into(),
                reason: "this build has no burn ndarray backend (it is opt-in): build with \
                         `cargo build -p quantlab --features ndarray`, or run \
                         `cargo xtask bench --features ndarray`"
                    .into(),
            }),
            // No adapter is an error here, not a lazily created device: that one would
            // bring wgpu up on its automatic API choice, the one that hangs without Vulkan.
            Backend::Gpu => gpu()
                .map(|(device, _)| device.clone())
                .map_err(TrainError::Backend),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wgpu adapter burn's GPU device runs on, as wgpu reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuAdapter {
    /// Adapter name (e.g. `NVIDIA H100 80GB HBM3`, `llvmpipe (LLVM 19.1.7, 256 bits)`).
    pub name: String,
    /// Graphics API (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub backend: String,
    /// Driver name.
    pub driver: String,
    /// Driver version string.
    pub driver_info: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// What the GPU int8 kernels' packed dot product compiles to on this device.
    #[serde(default)]
    pub int8_dot: Int8Dot,
}

impl GpuAdapter {
    /// Whether the "GPU" is a CPU emulator (Mesa's lavapipe / llvmpipe, SwiftShader, WARP):
    /// its timings say nothing about a GPU.
    pub fn is_emulated(&self) -> bool {
        let n = format!("{} {}", self.name, self.driver).to_lowercase();
        self.device_type == "Cpu"
            || ["llvmpipe", "lavapipe", "swiftshader", "warp"]
                .iter()
                .any(|e| n.contains(e))
    }

    /// One line for logs and reports.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}, {} {}, {})",
            self.name, self.backend, self.driver, self.driver_info, self.device_type
        )
    }

    /// What the commands that use the GPU print first: the adapter and CubeCL's autotune
    /// level, what the int8 kernels' dot product becomes here, and the emulator warning.
    pub fn report_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "wgpu adapter: {}; CubeCL autotune level {}",
                self.summary(),
                autotune_level()
            ),
            format!("GPU int8 dot product: {}", self.int8_dot.describe()),
        ];
        lines.extend(self.warning());
        lines
    }

    /// The warning to print when the adapter is an emulator.
    pub fn warning(&self) -> Option<String> {
        self.is_emulated().then(|| {
            format!(
                "warning: the wgpu device is a CPU emulator ({}), not a GPU: its timings are not GPU figures",
                self.name
            )
        })
    }
}

/// CubeCL's autotune level in effect (`minimal`, `balanced`, `extensive`, `full`): from
/// `CUBECL_AUTOTUNE_LEVEL`, else the nearest `cubecl.toml` (the clone ships one), else
/// CubeCL's default.
pub fn autotune_level() -> String {
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    format!("{:?}", CubeClRuntimeConfig::get().autotune.level).to_lowercase()
}

/// The graphics API quantlab's wgpu device runs on. On Linux it is pinned to Vulkan: wgpu's
/// automatic choice falls back to OpenGL/EGL where there is no Vulkan driver, and there its
/// background poll panics ("Could not lock adapter context") while the caller waits forever,
/// so a machine without Vulkan hung instead of reporting "no wgpu device". Elsewhere wgpu
/// chooses (Metal on macOS, Vulkan or DirectX 12 on Windows). `quantlab_gpu` brings its
/// kernels up on the same API, so both share one runtime (a test in the CLI checks it).
pub const WGPU_API: WgpuBackend = if cfg!(target_os = "linux") {
    WgpuBackend::Vulkan
} else {
    WgpuBackend::Auto
};

/// The GPU device and its adapter, initialised once per process (burn's wgpu runtime can
/// only be set up once, so this is the one place that does it).
pub fn gpu() -> std::result::Result<&'static (Device, GpuAdapter), String> {
    static GPU: OnceLock<std::result::Result<(Device, GpuAdapter), String>> = OnceLock::new();
    GPU.get_or_init(|| {
        // Without Vulkan, wgpu may fall back to OpenGL/EGL and panic while probing for an
        // adapter ("Could not lock adapter context"): that too means no usable device.
        let (device, setup) = std::panic::catch_unwind(|| {
            Device::wgpu_options()
                .graphics_api(WGPU_API)
                .init_with_setup()
        })
        .map_err(|p| {
            let why = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("a panic while probing for an adapter");
            format!("no wgpu device: {why}")
        })?
        .map_err(|e| format!("no wgpu device: {e}"))?;
        let info = setup.adapter.get_info();
        let adapter = GpuAdapter {
            name: info.name,
            backend: format!("{:?}", info.backend),
            driver: info.driver,
            driver_info: info.driver_info,
            device_type: format!("{:?}", info.device_type),
            int8_dot: int8_dot(&setup.adapter),
        };
        Ok((device, adapter))
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulators_are_recognised() {
        let a = |name: &str, ty: &str| GpuAdapter {
            name: name.into(),
            backend: "Vulkan".into(),
            driver: if ty == "Cpu" { "llvmpipe" } else { "NVIDIA" }.into(),
            driver_info: "1".into(),
            device_type: ty.into(),
            int8_dot: Int8Dot::Unknown,
        };
        assert!(a("llvmpipe (LLVM 19.1.7, 256 bits)", "Cpu").is_emulated());
        assert!(
            a("llvmpipe (LLVM 19.1.7, 256 bits)", "Cpu")
                .warning()
                .is_some()
        );
        assert!(!a("NVIDIA H100 80GB HBM3", "DiscreteGpu").is_emulated());
        assert!(
            a("NVIDIA H100 80GB HBM3", "DiscreteGpu")
                .summary()
                .contains("DiscreteGpu")
        );
    }

    /// A Vulkan device always answers the feature query, so the path is known there: on
    /// lavapipe (Vulkan 1.3) it is `OpSDot`. Without any wgpu device there is nothing to read.
    #[test]
    fn the_int8_dot_path_is_read_on_vulkan() {
        let (_, adapter) = match gpu() {
            Ok(g) => g,
            Err(e) => {
                let test = "the_int8_dot_path_is_read_on_vulkan";
                return quantlab_testkit::missing(test, &quantlab_testkit::Missing::gpu(e));
            }
        };
        eprintln!("{}: {}", adapter.summary(), adapter.int8_dot.describe());
        if adapter.backend == "Vulkan" {
            assert_ne!(adapter.int8_dot, Int8Dot::Unknown);
        }
    }

    /// The clone's cubecl.toml sets the level (tests run from the crate, below it).
    #[test]
    fn the_shipped_cubecl_toml_sets_the_autotune_level() {
        if std::env::var_os("CUBECL_AUTOTUNE_LEVEL").is_none() {
            assert_eq!(autotune_level(), "minimal");
        }
    }
}
