//! Per-thread memory of the engine: activation buffers recycled across layers and calls,
//! and the scratch a convolution needs. Nothing is allocated per call in steady state.

use std::cell::RefCell;

/// Scratch buffers reused across calls on each thread: the padded input of a convolution
/// and the im2col rows of the paths that need them.
#[derive(Default)]
pub(super) struct Workspace {
    /// A padded f32 sample.
    pub(super) f32: Vec<f32>,
    /// A padded u8 sample.
    pub(super) u8: Vec<u8>,
    /// Gathered int8 rows (non-VNNI paths).
    pub(super) rows: Vec<u8>,
    /// Pooled i32 accumulators (fused conv + pool).
    pub(super) acc: Vec<i32>,
    /// One sample's unpooled f32 map.
    pub(super) map: Vec<f32>,
}

thread_local! {
    pub(super) static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
    static POOL: RefCell<Pool> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Free u8 and f32 activation buffers of one thread.
type Pool = (Vec<Vec<u8>>, Vec<Vec<f32>>);

/// Activation buffers recycled across layers and calls on each thread. Fresh allocations of
/// feature maps (hundreds of KB) are page-faulted in on every call, which also serialises
/// threads on the kernel's memory map lock: it cost 30% of the int8 CNN's 2-thread scaling.
pub(super) trait Pooled: Copy + Default + 'static {
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
}

impl Pooled for u8 {
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<u8>>) -> R) -> R {
        POOL.with_borrow_mut(|p| f(&mut p.0))
    }
}

impl Pooled for f32 {
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<f32>>) -> R) -> R {
        POOL.with_borrow_mut(|p| f(&mut p.1))
    }
}

/// Frees this thread's recycled buffers and scratch space. The next call allocates its
/// working set afresh, so a heap measurement around it sees the whole of it (the bench's
/// peak-memory column).
pub fn release_buffers() {
    POOL.with_borrow_mut(|p| *p = (Vec::new(), Vec::new()));
    WORKSPACE.with_borrow_mut(|w| *w = Workspace::default());
}

/// Buffers a thread keeps: a network's live activations at once, with room to spare.
const POOL_KEEP: usize = 8;

/// A buffer of `len` default values, recycled when one is free.
pub(super) fn take<T: Pooled>(len: usize) -> Vec<T> {
    let mut v = T::with_pool(|p| p.pop()).unwrap_or_default();
    v.clear();
    v.resize(len, T::default());
    v
}

/// Returns a buffer for reuse.
pub(super) fn give<T: Pooled>(v: Vec<T>) {
    T::with_pool(|p| {
        if p.len() < POOL_KEEP {
            p.push(v);
        }
    });
}
