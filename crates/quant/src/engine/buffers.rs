//! A session's working memory: activation buffers recycled across layers and calls, and the
//! scratch a convolution needs. Each run borrows one set (a parallel run, one per slice) and
//! gives it back, so nothing is allocated per call in steady state, and dropping the
//! session frees it all.

use std::sync::Mutex;

use quantlab_linalg::frame::nhwc::Padded;

/// Activation buffers a set keeps: a network's live activations at once, with room to spare.
const POOL_KEEP: usize = 8;

/// One run's buffers.
#[derive(Default)]
pub(super) struct Buffers {
    /// A padded f32 sample.
    pub(super) padded_f32: Padded<f32>,
    /// A padded u8 sample.
    pub(super) padded_u8: Padded<u8>,
    /// Gathered int8 rows (paths that do not read rows in place).
    pub(super) rows: Vec<u8>,
    /// Pooled i32 accumulators (fused conv + pool).
    pub(super) acc: Vec<i32>,
    /// One sample's unpooled f32 map.
    pub(super) map: Vec<f32>,
    /// Free activation buffers. Fresh allocations of feature maps (hundreds of KB) are
    /// page-faulted in on every call, which also serialises threads on the kernel's memory
    /// map lock: it cost 30% of the int8 CNN's 2-thread scaling.
    free_u8: Vec<Vec<u8>>,
    free_f32: Vec<Vec<f32>>,
}

/// Element types activations are stored in.
pub(super) trait Pooled: Copy + Default + 'static {
    fn free(b: &mut Buffers) -> &mut Vec<Vec<Self>>;
}

impl Pooled for u8 {
    fn free(b: &mut Buffers) -> &mut Vec<Vec<u8>> {
        &mut b.free_u8
    }
}

impl Pooled for f32 {
    fn free(b: &mut Buffers) -> &mut Vec<Vec<f32>> {
        &mut b.free_f32
    }
}

impl Buffers {
    /// A buffer of `len` default values, recycled when one is free.
    pub(super) fn take<T: Pooled>(&mut self, len: usize) -> Vec<T> {
        let mut v = T::free(self).pop().unwrap_or_default();
        v.clear();
        v.resize(len, T::default());
        v
    }

    /// A buffer of `len` values for a caller that writes every one of them: a recycled
    /// buffer keeps what it held (only growth is filled), so a batch's input is not zeroed
    /// before it is overwritten (50 KB of memset per call for 64 MNIST images).
    pub(super) fn take_overwritten<T: Pooled>(&mut self, len: usize) -> Vec<T> {
        let mut v = T::free(self).pop().unwrap_or_default();
        v.resize(len, T::default());
        v
    }

    /// Returns a buffer for reuse.
    pub(super) fn give<T: Pooled>(&mut self, v: Vec<T>) {
        let free = T::free(self);
        if free.len() < POOL_KEEP {
            free.push(v);
        }
    }
}

/// The sets of buffers of one session, lent to runs.
#[derive(Default)]
pub(super) struct Stash(Mutex<Vec<Buffers>>);

impl Stash {
    /// A free set, or a new one.
    pub(super) fn lend(&self) -> Buffers {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Takes a set back.
    pub(super) fn restore(&self, b: Buffers) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(b);
    }

    /// Frees every set.
    pub(super) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
