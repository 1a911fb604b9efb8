//! What the run ran on: CPU model, the SIMD features the kernels care about, and the date,
//! so a report can always be traced to its machine.

use quantlab_linalg::{CpuFeatures, KernelPath};
use serde::{Deserialize, Serialize};

/// Machine facts recorded with every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// The CPU features the kernels use that this CPU has (names from
    /// `quantlab_linalg::CpuFeatures::list`).
    pub cpu_features: Vec<String>,
    /// The int8 GEMM path quantlab's rows used.
    pub kernel: String,
    /// Clock from `/proc/cpuinfo` (GHz; 0 when unknown).
    #[serde(default)]
    pub clock_ghz: f64,
    /// Peak f32 multiply-accumulates per cycle and core, for the report's "% of peak".
    #[serde(default)]
    pub f32_macs_per_cycle: f64,
    /// Peak int8 multiply-accumulates per cycle and core on the int8 path in use.
    #[serde(default)]
    pub int8_macs_per_cycle: f64,
    /// Measured f32 GMAC/s of one core (the f32 kernels' FMA loop, pinned; 0 where not
    /// measured): what the report's "% of peak" divides by.
    #[serde(default)]
    pub f32_peak_gmacs: f64,
    /// Measured int8 GMAC/s of one core on the int8 path in use (0 where not measured).
    #[serde(default)]
    pub int8_peak_gmacs: f64,
}

impl Machine {
    /// Reads the machine's facts; `kernel` is the GEMM path in use.
    pub fn detect(kernel: KernelPath) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cpu_features = CpuFeatures::get()
            .list()
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| name.to_string())
            .collect();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let clock_ghz = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("cpu MHz"))
                    .and_then(|l| l.split(':').nth(1))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0.0, |mhz| mhz / 1000.0);
        let (f32_macs_per_cycle, int8_macs_per_cycle) =
            kernel.nominal_macs_per_cycle(cpu.contains("AMD"));
        let peak = crate::measure::pinned(|| quantlab_linalg::peak::measure(kernel));
        Self {
            cpu,
            cpus,
            cpu_features,
            kernel: kernel.as_str().to_string(),
            clock_ghz,
            f32_macs_per_cycle,
            int8_macs_per_cycle,
            f32_peak_gmacs: peak.f32_gmacs.unwrap_or(0.0),
            int8_peak_gmacs: peak.int8_gmacs.unwrap_or(0.0),
        }
    }

    /// The `(f32, int8)` GMAC/s a layer's rate is a share of: measured where it was, else
    /// the nominal clock times the nominal MACs per cycle (0 when unknown).
    pub fn peaks_gmacs(&self) -> (f64, f64) {
        let or_nominal = |measured: f64, per_cycle: f64| {
            if measured > 0.0 {
                measured
            } else {
                self.clock_ghz * per_cycle
            }
        };
        (
            or_nominal(self.f32_peak_gmacs, self.f32_macs_per_cycle),
            or_nominal(self.int8_peak_gmacs, self.int8_macs_per_cycle),
        )
    }
}

/// `(run folder name, ISO date)` for a Unix time: `20261123-071500`, `2026-11-23T07:15:00Z`.
pub fn stamp(unix_secs: u64) -> (String, String) {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{y:04}{mo:02}{d:02}-{h:02}{m:02}{s:02}"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_known_dates() {
        assert_eq!(stamp(0).1, "1970-01-01T00:00:00Z");
        assert_eq!(stamp(1_795_392_000).1, "2026-11-23T00:00:00Z");
        assert_eq!(stamp(951_782_400 + 3661).0, "20000229-010101");
    }
}
