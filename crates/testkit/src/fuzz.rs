//! Running a reader over many inputs: no input may panic it, and none may make it allocate
//! more than ten times the input plus a fixed bound. [`PeakAlloc`] counts what a thread
//! allocates; a test binary that installs it as its global allocator gets the memory
//! property checked, one that does not gets the panic property only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, counting the bytes each thread holds and the peak since the last
/// [`PeakAlloc::reset`]. Install with
/// `#[global_allocator] static A: quantlab_testkit::PeakAlloc = quantlab_testkit::PeakAlloc;`.
pub struct PeakAlloc;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

fn count(delta: isize) {
    let _ = HELD.try_with(|h| {
        let now = h.get() + delta;
        h.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting touches
// only const-initialised thread-locals without destructors and never allocates.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        count(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        count(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

impl PeakAlloc {
    /// Whether this binary counts allocations (it installed [`PeakAlloc`]).
    pub fn installed() -> bool {
        INSTALLED.load(Ordering::Relaxed)
    }

    /// Starts a new peak at what this thread holds now.
    pub fn reset() {
        let held = HELD.with(Cell::get);
        PEAK.with(|p| p.set(held));
    }

    /// The most this thread held above `base` since the last reset.
    pub fn peak_above(base: isize) -> usize {
        (PEAK.with(Cell::get) - base).max(0) as usize
    }

    /// What this thread holds now.
    pub fn held() -> isize {
        HELD.with(Cell::get)
    }
}

/// What a reader did with a set of inputs.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Inputs tried.
    pub cases: usize,
    /// Inputs the reader accepted.
    pub accepted: usize,
    /// Inputs it refused with an error.
    pub refused: usize,
    /// Largest peak allocation seen, in bytes (0 when not counted).
    pub peak_bytes: usize,
    /// Largest peak over (10 x input + fixed bound), as a fraction (0 when not counted).
    pub worst_share: f64,
}

/// Runs `read` on every case and fails (naming the first offending case) if one panics or
/// allocates more than `10 * input + fixed_bound` bytes. Errors must name something: an
/// empty error message is a failure too. Prints one summary line.
pub fn check_reader<T, E: Display>(
    name: &str,
    cases: &[Vec<u8>],
    fixed_bound: usize,
    read: impl Fn(&[u8]) -> Result<T, E>,
) -> Outcome {
    let mut o = Outcome::default();
    let counted = PeakAlloc::installed();
    for (i, case) in cases.iter().enumerate() {
        let base = PeakAlloc::held();
        PeakAlloc::reset();
        let r = catch_unwind(AssertUnwindSafe(|| {
            read(case).map(drop).map_err(|e| e.to_string())
        }));
        let peak = PeakAlloc::peak_above(base);
        o.cases += 1;
        match r {
            Ok(Ok(())) => o.accepted += 1,
            Ok(Err(msg)) => {
                assert!(
                    !msg.trim().is_empty(),
                    "{name}: case {i} refused with an empty error"
                );
                o.refused += 1;
            }
            Err(_) => panic!(
                "{name}: case {i} ({} bytes, starts {:02x?}) panicked the reader",
                case.len(),
                &case[..case.len().min(16)]
            ),
        }
        if counted {
            let bound = 10 * case.len() + fixed_bound;
            o.peak_bytes = o.peak_bytes.max(peak);
            o.worst_share = o.worst_share.max(peak as f64 / bound as f64);
            assert!(
                peak <= bound,
                "{name}: case {i} ({} bytes) allocated {peak} bytes at peak, over 10 x input + {fixed_bound}",
                case.len()
            );
        }
    }
    println!(
        "fuzz {name}: {} cases, {} accepted, {} refused, 0 panics{}",
        o.cases,
        o.accepted,
        o.refused,
        if counted {
            format!(
                ", peak allocation {} B (at most {:.0}% of 10 x input + {fixed_bound} B)",
                o.peak_bytes,
                o.worst_share * 100.0
            )
        } else {
            String::new()
        }
    );
    o
}
