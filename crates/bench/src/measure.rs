//! Measuring: latency (warm-up, then timed runs; median and p90), and peak heap memory
//! through a counting global allocator that the binary installs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Untimed runs first.
    pub warmup: usize,
    /// Fewest timed runs.
    pub min_reps: usize,
    /// Most timed runs.
    pub max_reps: usize,
    /// Stop after this many seconds once `min_reps` ran.
    pub budget_s: f64,
}

/// Median and p90 of one measurement (microseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub median_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// Timed runs.
    pub reps: usize,
}

/// Times `run` (which must finish its work, including any device sync, before returning).
pub fn latency<E>(t: &Timing, mut run: impl FnMut() -> Result<(), E>) -> Result<Latency, E> {
    for _ in 0..t.warmup {
        run()?;
    }
    let start = Instant::now();
    let mut v = Vec::with_capacity(t.max_reps);
    while v.len() < t.min_reps
        || (v.len() < t.max_reps && start.elapsed().as_secs_f64() < t.budget_s)
    {
        let s = Instant::now();
        run()?;
        v.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let (median_us, p90_us) = median_p90(&mut v);
    Ok(Latency {
        median_us,
        p90_us,
        reps: v.len(),
    })
}

/// Median and 90th percentile of samples (sorts them; nearest rank). Every latency quantlab
/// reports, in the bench and in `quantlab time`, goes through here.
pub fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

/// A global allocator that counts live heap bytes and their peak (install it with
/// `#[global_allocator]` in the binary; without it, [`peak_during`] reports `None`).
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

// SAFETY: delegates every call to the system allocator; only adds atomic bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Runs `f` with the calling thread pinned to one CPU (the first it may run on), then
/// restores its CPU set: single-thread latencies without migrations between cores, which
/// cost a cold L2 each time. Linux only; elsewhere `f` just runs.
pub fn pinned<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread (pid 0) with a set we own.
        unsafe {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut old) == 0
                && let Some(cpu) =
                    (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &old))
            {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                if libc::sched_setaffinity(0, size, &one) == 0 {
                    let out = f();
                    libc::sched_setaffinity(0, size, &old);
                    return out;
                }
            }
        }
    }
    f()
}

/// Peak heap bytes allocated on top of what was live when `run` started (all threads).
pub fn peak_during<T>(run: impl FnOnce() -> T) -> (T, Option<usize>) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = run();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (out, INSTALLED.load(Ordering::Relaxed).then_some(peak))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_orders_statistics_and_respects_rep_bounds() {
        let t = Timing {
            warmup: 1,
            min_reps: 7,
            max_reps: 7,
            budget_s: 10.0,
        };
        let mut i = 0u64;
        let l = latency::<()>(&t, || {
            i += 1;
            std::thread::sleep(std::time::Duration::from_micros(50 * (i % 3)));
            Ok(())
        })
        .unwrap();
        assert_eq!(l.reps, 7);
        assert!(l.p90_us >= l.median_us && l.median_us > 0.0);
        assert_eq!(i, 8);
    }
}
