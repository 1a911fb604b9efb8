//! The helper threads of a session's parallel batch: between calls each spins a short while
//! for the next before it parks, and the caller waits for them by spinning, so calls in
//! quick succession (a server's load, a benchmark) pay no thread wake-up.
//!
//! Why not rayon's pool, which the engine used until 2026-11-30: its idle workers sleep
//! after a few microseconds of yielding, and on a VM waking a sleeping thread costs tens of
//! microseconds (the hypervisor must run the halted vCPU again). Traced on the 2-vCPU Intel
//! Xeon, the MNIST CNN's int8 batch of 64 on two threads (about 250 us): the pool thread
//! started its first slice 27-70 us after the call in most calls, and the caller, when it
//! finished first, was woken as late again. ONNX Runtime's intra-op pool spins between
//! calls for the same reason (`session.intra_op.allow_spinning`).

use std::any::Any;
use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle helper spins for the next call before it parks, and how long the caller
/// spins for the helpers before it yields between checks. A fifth of a millisecond of a
/// core per burst of calls; a parked helper costs nothing.
const SPIN: Duration = Duration::from_micros(200);

/// Spins between clock reads.
const SPINS_PER_CHECK: u32 = 64;

/// The work of one call: `job(i)` for participant `i` (0 is the caller), its borrows
/// erased while it is shared (see [`Shared::job`]).
type Job = dyn Fn(usize) + Sync + 'static;

struct Shared {
    /// Bumped by the caller to publish a job (and by `Drop` to stop the helpers).
    epoch: AtomicU64,
    /// Whether the current call still takes helpers: closed once the caller's own share is
    /// done, so a helper that wakes late does not hold the call up (it finds nothing to do
    /// and is not waited for).
    open: AtomicBool,
    /// Helpers inside the current job (they joined while it was open).
    active: AtomicUsize,
    /// The current call's job, its lifetime erased: written before `open` is set, read only
    /// by a helper counted in `active` that found `open` set, and the caller does not return
    /// (ending the job's lifetime) before it has closed `open` and `active` is 0.
    job: UnsafeCell<Option<*const Job>>,
    /// A helper's panic, handed to the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
    /// Per helper: parked (or about to park), so the caller must unpark it.
    parked: Vec<AtomicBool>,
}

// SAFETY: `job` is written only by the one caller holding `Helpers::busy`, while `open` is
// clear and `active` is 0, so no helper reads it; a helper reads it only after counting
// itself in `active` and then seeing `open` set (SeqCst both sides), which the caller set
// after the write. Everything else is atomics and mutexes.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

/// A session's helper threads (`threads - 1` of them).
pub(super) struct Helpers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// One parallel call at a time; a concurrent caller runs its batch on its own thread.
    busy: Mutex<()>,
}

impl Helpers {
    /// Starts `n` helper threads; an error if the OS refuses one (those started are
    /// stopped again).
    pub(super) fn new(n: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            panic: Mutex::new(None),
            stop: AtomicBool::new(false),
            parked: (0..n).map(|_| AtomicBool::new(false)).collect(),
        });
        let mut helpers = Helpers {
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(n),
            busy: Mutex::new(()),
        };
        for i in 0..n {
            let s = Arc::clone(&shared);
            let t = thread::Builder::new()
                .name(format!("quantlab-engine-{}", i + 1))
                .spawn(move || helper(&s, i))?;
            helpers.threads.push(t);
        }
        Ok(helpers)
    }

    /// Participants of a call: the caller and the helpers.
    pub(super) fn participants(&self) -> usize {
        self.threads.len() + 1
    }

    /// The call's exclusive use of the helpers, or `None` while another call has them.
    pub(super) fn try_claim(&self) -> Option<MutexGuard<'_, ()>> {
        match self.busy.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Runs `job(0)` on the calling thread and `job(i)` on each helper `i` that joins before
    /// the caller's own share is done, and returns once every one that joined has returned;
    /// a panic in any is resumed here. The job must do all of the call's work whichever
    /// participants run it (the engine's take slices from a shared counter). `_claim` is
    /// [`Self::try_claim`]'s guard.
    pub(super) fn run(&self, _claim: &MutexGuard<'_, ()>, job: &(dyn Fn(usize) + Sync + '_)) {
        let s = &*self.shared;
        // SAFETY: erases the borrow's lifetime; see `Shared::job`: no helper reads the
        // pointer after this function returns.
        let erased: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(job) };
        // SAFETY: the caller holds `busy`; `open` is clear and `active` 0 (see `Shared`).
        unsafe { *s.job.get() = Some(erased) };
        s.open.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        for (t, parked) in self.threads.iter().zip(&s.parked) {
            if parked.load(Ordering::SeqCst) {
                t.thread().unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        s.open.store(false, Ordering::SeqCst);
        wait_for(|| s.active.load(Ordering::SeqCst) == 0, thread::yield_now);
        // SAFETY: `open` is clear and no helper is inside the job.
        unsafe { *s.job.get() = None };
        let theirs = s.panic.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(p) = theirs {
            resume_unwind(p);
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            // A helper never panics out of its loop (jobs run under catch_unwind).
            let _ = t.join();
        }
    }
}

/// Spins until `done()` for up to [`SPIN`], then calls `idle` between checks.
fn wait_for(mut done: impl FnMut() -> bool, mut idle: impl FnMut()) {
    let start = Instant::now();
    let mut spinning = true;
    loop {
        for _ in 0..SPINS_PER_CHECK {
            if done() {
                return;
            }
            if spinning {
                spin_loop();
            } else {
                idle();
            }
        }
        spinning = spinning && start.elapsed() < SPIN;
    }
}

/// Helper `i`'s loop: wait for a new epoch, join its call if still open, run the job as
/// participant `i + 1`, repeat.
fn helper(s: &Shared, i: usize) {
    let mut seen = 0;
    loop {
        let mut epoch = s.epoch.load(Ordering::SeqCst);
        if epoch == seen {
            wait_for(
                || {
                    epoch = s.epoch.load(Ordering::SeqCst);
                    epoch != seen
                },
                || {
                    // Dekker with the caller: it bumps the epoch then reads `parked`; this
                    // sets `parked` then reads the epoch, so one of the two sees the other.
                    s.parked[i].store(true, Ordering::SeqCst);
                    if s.epoch.load(Ordering::SeqCst) == seen {
                        thread::park();
                    }
                    s.parked[i].store(false, Ordering::SeqCst);
                },
            );
        }
        seen = epoch;
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // Dekker with the caller's close: it clears `open` then reads `active`; this counts
        // itself then reads `open`. Either it sees the call closed and leaves, or the
        // caller waits for it.
        s.active.fetch_add(1, Ordering::SeqCst);
        if s.open.load(Ordering::SeqCst) && s.epoch.load(Ordering::SeqCst) == seen {
            // SAFETY: counted in `active` with the call open: the job is this call's and
            // stays valid until `active` is decremented below.
            let job = unsafe { (*s.job.get()).expect("an open call's job") };
            // SAFETY: as above.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(i + 1) }));
            if let Err(p) = r {
                *s.panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
            }
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks participant 0 until `flag` is set (by a helper joining), at most a second.
    fn wait_until(flag: &AtomicBool) -> bool {
        let start = Instant::now();
        while !flag.load(Ordering::SeqCst) {
            if start.elapsed() > Duration::from_secs(1) {
                return false;
            }
            thread::yield_now();
        }
        true
    }

    #[test]
    fn work_taken_from_a_counter_is_done_once_and_joined_helpers_are_waited_for() {
        let h = Helpers::new(3).expect("threads");
        assert_eq!(h.participants(), 4);
        for call in 0..300 {
            let next = AtomicUsize::new(0);
            let done: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
            let (started, finished): (Vec<AtomicBool>, Vec<AtomicBool>) = (0..4)
                .map(|_| (AtomicBool::new(false), AtomicBool::new(false)))
                .unzip();
            let claim = h.try_claim().expect("free");
            h.run(&claim, &|p| {
                started[p].store(true, Ordering::SeqCst);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = done.get(i) else { break };
                    // A slow participant now and then: the others take its share, and
                    // whatever it took is still finished before `run` returns.
                    if call % 5 == 0 && p == call % 4 {
                        thread::sleep(Duration::from_micros(300));
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                }
                finished[p].store(true, Ordering::SeqCst);
            });
            assert!(
                done.iter().all(|d| d.load(Ordering::Relaxed) == 1),
                "call {call}"
            );
            for p in 0..4 {
                let (s, f) = (
                    started[p].load(Ordering::SeqCst),
                    finished[p].load(Ordering::SeqCst),
                );
                assert!(
                    !s || f,
                    "call {call}: participant {p} still running after `run`"
                );
            }
            assert!(started[0].load(Ordering::SeqCst));
        }
    }

    /// A call whose caller share waits (at most a second) for a helper to join it: whether
    /// one did.
    fn a_helper_joins(h: &Helpers, claim: &MutexGuard<'_, ()>) -> bool {
        let (joined, seen) = (AtomicBool::new(false), AtomicBool::new(false));
        h.run(claim, &|p| match p {
            0 => seen.store(wait_until(&joined), Ordering::SeqCst),
            _ => joined.store(true, Ordering::SeqCst),
        });
        seen.load(Ordering::SeqCst)
    }

    #[test]
    fn parked_helpers_wake_for_the_next_call() {
        let h = Helpers::new(1).expect("threads");
        let claim = h.try_claim().expect("free");
        for _ in 0..3 {
            // Long enough for the helper to stop spinning and park.
            thread::sleep(SPIN * 10);
            assert!(a_helper_joins(&h, &claim), "the parked helper did not join");
        }
    }

    #[test]
    fn a_helper_that_wakes_after_the_call_is_not_waited_for() {
        let h = Helpers::new(1).expect("threads");
        let claim = h.try_claim().expect("free");
        // Park the helper, then make a call whose own share is instant: the call must not
        // wait for the helper's wake-up, and the helper must not run a finished call.
        thread::sleep(SPIN * 10);
        let runs = AtomicUsize::new(0);
        h.run(&claim, &|p| {
            if p == 1 {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        let after_return = runs.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            after_return,
            "a helper ran a finished call"
        );
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_and_the_helpers_survive_it() {
        let h = Helpers::new(2).expect("threads");
        let claim = h.try_claim().expect("free");
        let r = catch_unwind(AssertUnwindSafe(|| {
            let joined = AtomicBool::new(false);
            h.run(&claim, &|p| match p {
                0 => assert!(wait_until(&joined)),
                _ => {
                    joined.store(true, Ordering::SeqCst);
                    panic!("a helper fails");
                }
            })
        }));
        let msg = r.expect_err("the panic is resumed");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"a helper fails"));
        assert!(
            a_helper_joins(&h, &claim),
            "no helper joined after the panic"
        );
    }

    #[test]
    fn a_second_caller_is_refused_while_one_holds_the_helpers() {
        let h = Helpers::new(1).expect("threads");
        let claim = h.try_claim().expect("free");
        assert!(h.try_claim().is_none());
        drop(claim);
        assert!(h.try_claim().is_some());
    }
}
