//! A switch that holds a background push off while its owner times something.
//!
//! A bench streams its runs to a tracking server while it still works, but a request being
//! sent (and, on a server sharing the machine, the server's work on it) would land inside
//! the bench's timing rounds as noise. So the push takes the gate around each run it sends,
//! and the bench [`Gate::hush`]es it for the length of its timing: the hush waits for the
//! run being sent to finish and no new one starts until the [`Hush`] is dropped.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// See the module's documentation. Shared between threads (behind an `Arc`).
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Hushes held.
    hushed: usize,
    /// Senders inside the gate.
    sending: usize,
}

/// Held while the owner wants quiet; dropping it lets the senders go on.
#[derive(Debug)]
#[must_use = "the quiet lasts as long as the Hush is held"]
pub struct Hush<'a>(&'a Gate);

/// Held by a sender while it sends.
pub(crate) struct Sending<'a>(&'a Gate);

impl Gate {
    /// An open gate.
    pub fn new() -> Gate {
        Gate::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops new sends and waits until none is under way.
    pub fn hush(&self) -> Hush<'_> {
        let mut s = self.lock();
        s.hushed += 1;
        while s.sending > 0 {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        Hush(self)
    }

    /// Waits while the gate is hushed, then counts one sender in.
    pub(crate) fn enter(&self) -> Sending<'_> {
        let mut s = self.lock();
        while s.hushed > 0 {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.sending += 1;
        Sending(self)
    }
}

impl Drop for Hush<'_> {
    fn drop(&mut self) {
        self.0.lock().hushed -= 1;
        self.0.changed.notify_all();
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.lock().sending -= 1;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn no_send_runs_while_hushed_and_a_hush_waits_for_the_send_under_way() {
        let gate = Arc::new(Gate::new());
        let quiet = Arc::new(AtomicBool::new(false));
        let sends_in_quiet = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..3)
            .map(|_| {
                let (gate, quiet, bad, stop) = (
                    gate.clone(),
                    quiet.clone(),
                    sends_in_quiet.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let _s = gate.enter();
                        for _ in 0..50 {
                            if quiet.load(Ordering::SeqCst) {
                                bad.fetch_add(1, Ordering::SeqCst);
                            }
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            let h = gate.hush();
            quiet.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
            quiet.store(false, Ordering::SeqCst);
            drop(h);
            std::thread::sleep(Duration::from_micros(100));
        }
        stop.store(true, Ordering::SeqCst);
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(sends_in_quiet.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn senders_go_on_once_the_hush_is_dropped() {
        let gate = Arc::new(Gate::new());
        let h = gate.hush();
        let g = gate.clone();
        let t = std::thread::spawn(move || {
            let _s = g.enter();
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "a sender got in while hushed");
        drop(h);
        t.join().unwrap();
    }
}
