//! The peak a layer is compared with, measured on this core: the inner instructions of the
//! path's f32 and int8 kernels (FMA; `vpmaddwd` + `vpaddd` for AVX2 int8, `vpdpbusd` for
//! VNNI) in loops with enough independent chains to keep every pipe busy, best of several
//! short runs. A peak assumed from the CPU's name (its nominal clock times the pipes the
//! instruction set suggests) was exceeded by real layers on cores with boost clocks or a
//! second 512-bit port; a measured one is what this core does at the clock it runs now.
//!
//! The scalar path has no loop here (`None`, and the report falls back to the nominal
//! figure): its kernels are references, not a target.

use std::time::{Duration, Instant};

use crate::{CpuFeatures, KernelPath};

/// Timed runs of each loop; the fastest counts.
const ROUNDS: usize = 7;
/// Length of one timed run.
const RUN: Duration = Duration::from_millis(3);

/// Measured multiply-accumulate rates of one core, in GMAC/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// The f32 kernels' FMA loop (`None` where they are scalar).
    pub f32_gmacs: Option<f64>,
    /// The int8 kernels' inner step (`None` on the scalar path).
    pub int8_gmacs: Option<f64>,
}

/// The loops' rate on the calling thread (pin it for a per-core figure); about 50 ms.
pub fn measure(path: KernelPath) -> Peak {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86_64::peak as x;
        let cpu = CpuFeatures::get();
        // The same choice of float kernel as `ops.rs` (the scalar path's is scalar).
        let f32_gmacs = if path == KernelPath::Scalar {
            None
        } else if cpu.avx512f && path == KernelPath::Avx512Vnni {
            // SAFETY: AVX-512F checked on the line above.
            Some(best(|n| unsafe { x::fma512(n) }))
        } else if cpu.avx2_fma() {
            // SAFETY: AVX2 and FMA checked on the line above.
            Some(best(|n| unsafe { x::fma256(n) }))
        } else {
            None
        };
        let int8_gmacs = match path {
            // SAFETY: a path is only selectable where the CPU has its features.
            KernelPath::Avx512Vnni if path.available() => {
                Some(best(|n| unsafe { x::dpbusd512(n) }))
            }
            // SAFETY: as above.
            KernelPath::Avx2 if path.available() => Some(best(|n| unsafe { x::madd256(n) })),
            _ => None,
        };
        Peak {
            f32_gmacs,
            int8_gmacs,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = path;
        Peak {
            f32_gmacs: None,
            int8_gmacs: None,
        }
    }
}

/// The best rate of `f(iters) -> (value, MACs)` over [`ROUNDS`] runs of about [`RUN`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn best(mut f: impl FnMut(usize) -> (f64, u64)) -> f64 {
    let mut iters = 256;
    loop {
        let t = Instant::now();
        std::hint::black_box(f(iters));
        if t.elapsed() >= RUN || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let (v, macs) = f(iters);
            let s = t.elapsed().as_secs_f64();
            std::hint::black_box(v);
            macs as f64 / s / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path this CPU has gets a positive measured rate, and the int8 step (16 or 64
    /// MACs an instruction) outruns the f32 FMA (8 or 16): what the kernels rely on.
    #[test]
    fn the_paths_this_cpu_has_are_measured() {
        for path in KernelPath::ALL {
            if !path.available() {
                println!("peak: {} cannot run on this CPU", path.as_str());
                continue;
            }
            let p = measure(path);
            println!("peak on {}: {p:?}", path.as_str());
            match path {
                KernelPath::Scalar => assert_eq!(
                    p,
                    Peak {
                        f32_gmacs: None,
                        int8_gmacs: None
                    }
                ),
                _ => {
                    let (f, i) = (p.f32_gmacs.unwrap(), p.int8_gmacs.unwrap());
                    assert!(f > 0.5 && i > f, "{p:?}");
                }
            }
        }
    }
}
