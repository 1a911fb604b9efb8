//! What the run ran on: CPU model, the SIMD features the kernels care about, and the date,
//! so a report can always be traced to its machine.

use serde::{Deserialize, Serialize};

/// Machine facts recorded with every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Relevant CPU features present (`avx2`, `avx512f`, `avx512bw`, `avx512vnni`).
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
}

/// Peak MACs per cycle and core: `(f32, int8)` for a CPU vendor, its features and the int8
/// path. Two vector FMA pipes everywhere; AMD's Zen 4 runs 512-bit instructions on 256-bit
/// datapaths, so its f32 peak is 16 (Intel's AVX-512 cores: 32). One 512-bit `vpdpbusd` per
/// cycle is 64 int8 MACs; AVX2's exact path (i16 `vpmaddwd`, two pipes) is 32. These are
/// the ceilings the per-layer table divides by, not measurements.
pub fn peak_macs_per_cycle(cpu: &str, features: &[String], kernel: &str) -> (f64, f64) {
    let has = |f: &str| features.iter().any(|x| x == f);
    let f32_peak = if has("avx512f") && !cpu.contains("AMD") {
        32.0
    } else if has("avx2") {
        16.0
    } else {
        4.0
    };
    let int8_peak = match kernel {
        "avx512vnni" => 64.0,
        "avx2" => 32.0,
        _ => 1.0,
    };
    (f32_peak, int8_peak)
}

impl Machine {
    /// Reads the machine's facts; `kernel` is the GEMM path in use.
    pub fn detect(kernel: &str) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let mut cpu_features = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            for (name, on) in [
                ("avx2", is_x86_feature_detected!("avx2")),
                ("avx512f", is_x86_feature_detected!("avx512f")),
                ("avx512bw", is_x86_feature_detected!("avx512bw")),
                ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
            ] {
                if on {
                    cpu_features.push(name.to_string());
                }
            }
        }
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
            peak_macs_per_cycle(&cpu, &cpu_features, kernel);
        Self {
            cpu,
            cpus,
            cpu_features,
            kernel: kernel.to_string(),
            clock_ghz,
            f32_macs_per_cycle,
            int8_macs_per_cycle,
        }
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
