//! Runs a [`QuantModel`] on a batch: one code path for the float model and every quantized
//! variant, so f32 and int8 are timed and scored on equal terms.
//!
//! [`Engine`] is the choice of kernel path and threads; [`Engine::prepare`] turns a model
//! into a [`Session`], which owns a copy of the model, its [`Plan`] (weights packed for the
//! path, layouts, the steps with fusion decided) and its working memory. A session never
//! sees later edits of the model it was prepared from: prepare again after changing it.
//!
//! Activations travel as f32 or as u8 with their [`QParams`]. A static layer wants u8 at its
//! input point's parameters and produces u8 at its output point's (integer end to end); a
//! dynamic layer quantizes its f32 input per batch and produces f32; an f32 layer wants f32.
//! Conversions happen only where a model mixes them (mixed precision, network edges), so
//! a static model quantizes its input once.
//!
//! Feature maps run channels-last (see [`plan`]): a convolution reads a padded `[h, w, c]`
//! sample one kernel row at a time (in place where the path's int8 kernel can, otherwise
//! gathered into a channels-last im2col matrix; f32 always in place), writes its rows
//! straight into the next map, and max pooling takes the max of channel rows. Traced
//! activations ([`Session::run_traced`]) are in that layout; the logits are not affected.

mod buffers;
pub mod depthwise;
mod helpers;
pub mod plan;
pub mod residual;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use buffers::{Buffers, Pooled, Stash};
use helpers::Helpers;
use quantlab_linalg::Activation;
use quantlab_linalg::frame::nhwc::{self, Taps};
use quantlab_linalg::{
    ConvGeom, Epilogue, KernelPath, Ops, OutLayout, PackedF32, PackedI8, PoolGeom, PoolShape, Rows,
};
use residual::AddTable;

pub use plan::{Entry, Layout, Plan, Step, Weights};

use crate::error::{QuantError, Result};
use crate::model::{DynamicLayer, LayerImpl, QuantModel, StaticLayer};
use crate::network::{Dense, Node};
use crate::qparams::{ActDtype, QParams, quantize_into};

/// An activation between nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Float values.
    F32(Vec<f32>),
    /// Quantized values with their parameters.
    U8(Vec<u8>, QParams),
}

impl Act {
    /// The values as f32 (dequantizing if needed).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Act::F32(v) => v.clone(),
            Act::U8(v, q) => v.iter().map(|&x| q.dequantize(x)).collect(),
        }
    }

    fn into_f32(self) -> Vec<f32> {
        match self {
            Act::F32(v) => v,
            u => u.to_f32(),
        }
    }

    /// A copy in recycled buffers (a point an Add reads later).
    fn copy_in(&self, bufs: &mut Buffers) -> Act {
        match self {
            Act::F32(v) => {
                let mut c = bufs.take_overwritten(v.len());
                c.copy_from_slice(v);
                Act::F32(c)
            }
            Act::U8(v, q) => {
                let mut c = bufs.take_overwritten(v.len());
                c.copy_from_slice(v);
                Act::U8(c, *q)
            }
        }
    }

    /// Hands the values back to the buffers.
    fn give_to(self, bufs: &mut Buffers) {
        match self {
            Act::F32(v) => bufs.give(v),
            Act::U8(v, _) => bufs.give(v),
        }
    }

    fn into_u8(self, q: &QParams, bufs: &mut Buffers) -> Vec<u8> {
        match self {
            Act::U8(v, have) if have == *q => v,
            other => {
                let f = other.into_f32();
                let mut out = bufs.take(f.len());
                quantize_into(&f, q, &mut out);
                bufs.give(f);
                out
            }
        }
    }
}

/// CPUs this process may run on (its affinity and CPU quota), at least 1.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A slice of a parallel batch: its index and its logits.
type Slice = (usize, Vec<f32>);

/// Smallest batch split across threads (smaller ones, batch 1 above all, stay on one).
pub const PARALLEL_MIN_BATCH: usize = 8;

/// Slices of a parallel batch per thread (see [`Session::run`]).
const SLICES_PER_THREAD: usize = 4;

/// Fewest samples in a slice of a parallel batch: below this the per-call work of the
/// forward pass (buffers, the logits' copy) starts to show.
const PARALLEL_MIN_SLICE: usize = 4;

/// Bytes of activations one forward pass may hold by default (see [`Session::run`]): a
/// quarter of the Intel Xeons' 2 MiB L2 and half the AMD EPYCs' 1 MiB, room left for the
/// weights and a convolution's scratch. Measured on the Xeon (f32, batch 256, one thread,
/// us per sample): MobileNet-like 12.6 whole, 10.7 at 256 KiB, 10.7 at 512 KiB, 10.5 at
/// 1 MiB; residual CNN 108 whole, 88, 86, 84.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// Least multiply-accumulates (model MACs x batch) worth splitting across threads: about
/// 25 us of work on the fastest int8 path, well above what handing work to another thread
/// costs.
pub const PARALLEL_MIN_MACS: usize = 4_000_000;

/// The kernel path and thread count models are prepared for.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// Kernel path (integer GEMM; the float kernels take the matching SIMD level).
    pub path: KernelPath,
    /// Threads for large batches (1 = single-threaded). A batch is sliced for this many,
    /// but no more threads run it than the CPUs the process may run on.
    pub threads: usize,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            path: KernelPath::detect(),
            threads: 1,
        }
    }
}

impl Engine {
    /// A session running `model` on this engine's path: the model copied, its weights
    /// packed, its steps planned. An error if a dense node has no implementation or the
    /// path cannot run on this CPU.
    pub fn prepare(&self, model: &QuantModel) -> Result<Session> {
        if !self.path.available() {
            return Err(QuantError::Kernel(
                quantlab_linalg::LinalgError::Unavailable {
                    name: self.path.as_str(),
                },
            ));
        }
        let nodes = &model.network.nodes;
        if model.layers.len() != nodes.len() {
            return Err(QuantError::Graph(format!(
                "{} layer entries for {} nodes",
                model.layers.len(),
                nodes.len()
            )));
        }
        if let Some(i) = (0..nodes.len())
            .find(|&i| matches!(nodes[i], Node::Dense(_)) && model.layers[i].is_none())
        {
            return Err(QuantError::Graph(format!(
                "node {i} has no runnable implementation"
            )));
        }
        let ops = self.path.ops();
        Ok(Session {
            plan: Plan::new(model, ops),
            model: model.clone(),
            ops,
            threads: self.threads.max(1),
            chunk_bytes: CHUNK_BYTES,
            stash: Stash::default(),
            add_tables: (0..nodes.len()).map(|_| OnceLock::new()).collect(),
            // No more participants than CPUs this process may use: a helper beyond them only
            // takes turns with the others, and spinning ones delay the call they wait on
            // (four threads on two cores: p90 515-743 us against 300 with a sleeping pool).
            helpers: match self.threads.min(available_cpus()) {
                0 | 1 => None,
                t => Helpers::new(t - 1).ok(),
            },
        })
    }
}

impl Engine {
    /// Logits of one call: prepares a session, runs it once and drops it. For anything run
    /// more than once, [`Self::prepare`] once and call [`Session::run`].
    pub fn run_once(&self, model: &QuantModel, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.prepare(model)?.run(x, batch)
    }
}

/// A model prepared for one engine: run it as often as needed.
pub struct Session {
    model: QuantModel,
    plan: Plan,
    ops: &'static Ops,
    threads: usize,
    /// Bytes of activations one forward pass may hold (see [`Session::run`]).
    chunk_bytes: usize,
    stash: Stash,
    /// Per node: the integer Add's table, built on its first run (see [`AddTable`]).
    add_tables: Vec<OnceLock<AddTable>>,
    /// The `threads - 1` helper threads of a parallel batch (`None` on one thread, or if the
    /// OS would not start them: batches then run on one thread). Started here, not on the
    /// first parallel batch: they take the CPU set of the thread that starts them, and the
    /// first batch may come from a thread pinned to one core.
    helpers: Option<Helpers>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("path", &self.ops.path())
            .field("threads", &self.threads)
            .field("steps", &self.plan.steps)
            .finish()
    }
}

impl Session {
    /// The model this session runs.
    pub fn model(&self) -> &QuantModel {
        &self.model
    }

    /// The plan (prepared weights, layouts, steps).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Sets how many bytes of activations one forward pass may hold (by default
    /// [`CHUNK_BYTES`]; a test sets a small budget to cut small batches, `usize::MAX` runs
    /// every batch whole).
    pub fn set_chunk_bytes(&mut self, bytes: usize) {
        self.chunk_bytes = bytes.max(1);
    }

    /// The kernel path.
    pub fn path(&self) -> KernelPath {
        self.ops.path()
    }

    /// The thread count.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Frees the working memory kept between calls. The next call allocates its working
    /// set afresh, so a heap measurement around it sees the whole of it (the bench's
    /// peak-memory column).
    pub fn release_buffers(&self) {
        self.stash.clear();
    }

    /// Logits `[batch, classes]` for `x` (`[batch, in_len]`, normalised inputs).
    ///
    /// With `threads > 1` a large enough batch is cut into slices of samples that the
    /// threads take from a shared counter, each running the whole network on its slices
    /// (one fork per call, not one per layer). Samples are independent, so the logits are
    /// the same bits as one thread's, except for models with dynamic layers, whose
    /// activation range is per batch: those run on one thread.
    ///
    /// A batch (or a thread's slice) whose activations would not stay in a core's cache runs
    /// in chunks of samples, each through the whole network: layer by layer over a batch of
    /// 64 or 256, a float MobileNet-like model's maps (38 KB a sample at its widest step)
    /// went out to L3 between layers and cost 9-26% more per sample than at batch 8. Same
    /// logits, for the same reason, and the same exception.
    pub fn run(&self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.check_input(x, batch)?;
        let threads = self.threads_for(batch);
        let helpers = self.helpers.as_ref().filter(|_| threads > 1);
        // One parallel call at a time per session: a concurrent one runs on its own thread.
        let Some((helpers, claim)) = helpers.and_then(|h| Some((h, h.try_claim()?))) else {
            return Ok(self.forward_chunked(x, batch, &mut |_, _| {}));
        };
        let d = self.model.network.in_len();
        // More slices than threads: on a shared machine a thread can start late (a parked
        // helper's wake-up after an idle spell) or run slow (a neighbour's load on its
        // core), and with one slice per thread the whole call waits for it (on 2 vCPUs of a
        // VM, a 200 us batch gained 1.0-1.5x from a second thread). With several, the
        // others take its share, and a helper that joins after the last slice is taken is
        // not waited for (see `helpers`).
        let per = batch
            .div_ceil(threads * SLICES_PER_THREAD)
            .max(PARALLEL_MIN_SLICE);
        let slices: Vec<&[f32]> = x.chunks(per * d).collect();
        let next = AtomicUsize::new(0);
        // Each participant's (slice, logits), in a slot of its own.
        let done: Vec<Mutex<Vec<Slice>>> = (0..helpers.participants())
            .map(|_| Mutex::new(Vec::new()))
            .collect();
        helpers.run(&claim, &|p| {
            let mut mine = done[p].lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(xs) = slices.get(i) else { break };
                mine.push((i, self.forward_chunked(xs, xs.len() / d, &mut |_, _| {})));
            }
        });
        drop(claim);
        let mut parts: Vec<Slice> = done
            .into_iter()
            .flat_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
        parts.sort_unstable_by_key(|(i, _)| *i);
        assert_eq!(parts.len(), slices.len(), "every slice ran once");
        let mut logits = Vec::with_capacity(batch * self.model.network.out_len());
        for (_, p) in parts {
            logits.extend(p);
        }
        Ok(logits)
    }

    /// Like [`Self::run`] on one thread with nothing fused, calling `trace(point,
    /// activation)` for point 0 (the input) and after every node (`point = node + 1`).
    /// Feature maps are channels-last.
    pub fn run_traced(
        &self,
        x: &[f32],
        batch: usize,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Result<Vec<f32>> {
        self.check_input(x, batch)?;
        Ok(self.forward(x, batch, true, trace))
    }

    /// Like [`Self::run`] on one thread, with the steps this session runs (a convolution
    /// fused with its pool is one step), calling `trace(point, activation)` once the input
    /// is prepared (point 0) and after every step (`point` = its last node + 1), for each
    /// chunk of the batch in turn (the activations are the chunk's). A float first layer
    /// that reads the caller's input in place reports only after its step.
    pub fn run_steps(
        &self,
        x: &[f32],
        batch: usize,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Result<Vec<f32>> {
        self.check_input(x, batch)?;
        Ok(self.forward_chunked(x, batch, trace))
    }

    /// Threads worth using at `batch`.
    pub fn threads_for(&self, batch: usize) -> usize {
        let model = &self.model;
        let macs: usize = model
            .network
            .nodes
            .iter()
            .map(|n| match n {
                Node::Dense(d) => d.macs(),
                _ => 0,
            })
            .sum();
        if self.threads > 1
            && batch >= PARALLEL_MIN_BATCH
            && macs * batch >= PARALLEL_MIN_MACS
            && !self.dynamic()
        {
            self.threads.min(batch)
        } else {
            1
        }
    }

    /// Whether a layer quantizes its input per batch (so a batch must run whole).
    fn dynamic(&self) -> bool {
        (self.model.layers.iter()).any(|l| matches!(l, Some(LayerImpl::Dynamic(_))))
    }

    fn check_input(&self, x: &[f32], batch: usize) -> Result<()> {
        let expected = batch * self.model.network.in_len();
        if x.len() != expected {
            return Err(QuantError::InputSize {
                expected,
                found: x.len(),
                batch,
            });
        }
        Ok(())
    }

    /// Samples per forward pass for a batch of `batch`: as many as keep a pass's activations
    /// within the session's budget ([`Self::set_chunk_bytes`]), in chunks of equal size;
    /// the whole batch for a model with dynamic layers (their activation range is per batch)
    /// or one that fits.
    fn chunk(&self, batch: usize) -> usize {
        let most = (self.chunk_bytes / self.plan.sample_bytes.max(1)).max(1);
        if self.dynamic() || batch <= most {
            return batch;
        }
        batch.div_ceil(batch.div_ceil(most))
    }

    /// The untraced forward pass over `batch` samples, in chunks of [`Self::chunk`] samples,
    /// each traced as [`Self::run_steps`] says.
    fn forward_chunked(
        &self,
        x: &[f32],
        batch: usize,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Vec<f32> {
        let per = self.chunk(batch);
        if per >= batch {
            return self.forward(x, batch, false, trace);
        }
        let d = self.model.network.in_len();
        let mut logits = Vec::with_capacity(batch * self.model.network.out_len());
        for xs in x.chunks(per * d) {
            logits.extend(self.forward(xs, xs.len() / d, false, trace));
        }
        logits
    }

    /// The forward pass over the plan's steps (the traced ones when `traced`).
    fn forward(
        &self,
        x: &[f32],
        batch: usize,
        traced: bool,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Vec<f32> {
        let mut bufs = self.stash.lend();
        let (entry, steps) = if traced {
            (self.plan.traced.0, &self.plan.traced.1)
        } else {
            (self.plan.entry, &self.plan.steps)
        };
        // A float first layer reads the caller's input where it lies: copying it in first
        // (a batch of 64 MNIST images is 200 KB) cost a float MLP as much as its GEMM.
        let borrowed = match entry {
            Entry::Copy if !traced => self.first_layer_in_place(steps, x, batch, &mut bufs),
            _ => None,
        };
        let (mut act, done) = match (borrowed, entry) {
            (Some(started), _) => started,
            (None, Entry::ToNhwc(chw)) => (Act::F32(per_sample(x, batch, chw, nhwc::to_nhwc)), 0),
            (None, Entry::Quantize(q)) => {
                let mut v = bufs.take_overwritten(x.len());
                quantize_into(x, &q, &mut v);
                (Act::U8(v, q), 0)
            }
            (None, Entry::Copy) => {
                let mut v = bufs.take_overwritten(x.len());
                v.copy_from_slice(x);
                (Act::F32(v), 0)
            }
        };
        match done {
            0 => trace(0, &act),
            // A float first layer read the input in place: its step is done.
            d => trace(steps[d - 1].last_node() + 1, &act),
        }
        let keep = &self.plan.keep;
        // No allocation for a model without residual Adds (nothing is kept).
        let mut kept: Vec<Option<Act>> = match keep.contains(&true) {
            true => keep.iter().map(|_| None).collect(),
            false => Vec::new(),
        };
        // A kept point's activation moves into `kept` (`at_kept`): the step after it reads
        // it there when it only reads its input (a static layer: no copy of an 800 KB map
        // per call), and works on a copy otherwise.
        let mut at_kept = None;
        if keep[0] {
            kept[0] = Some(std::mem::replace(&mut act, Act::F32(Vec::new())));
            at_kept = Some(0);
        }
        for step in &steps[done..] {
            act = match at_kept.take() {
                Some(p) => {
                    let input = kept[p].as_ref().expect("a kept point is kept");
                    match self.step_reading(*step, input, batch, &mut bufs) {
                        Some(y) => y,
                        None => {
                            let copy = input.copy_in(&mut bufs);
                            self.step(*step, copy, batch, &kept, &mut bufs)
                        }
                    }
                }
                None => self.step(*step, act, batch, &kept, &mut bufs),
            };
            let point = step.last_node() + 1;
            trace(point, &act);
            if keep[point] {
                kept[point] = Some(std::mem::replace(&mut act, Act::F32(Vec::new())));
                at_kept = Some(point);
            }
        }
        if let Some(p) = at_kept {
            // The last point kept (a model ending at an Add's input): its copy is the output.
            act = kept[p]
                .as_ref()
                .expect("a kept point is kept")
                .copy_in(&mut bufs);
        }
        kept.into_iter()
            .flatten()
            .for_each(|a| a.give_to(&mut bufs));
        let out = act.into_f32();
        // A right-sized copy leaves: the pooled buffer stays for the next call.
        let logits = match self.plan.layouts.last() {
            Some(Layout::Map(chw)) if chw[0] > 1 && chw[1] * chw[2] > 1 => {
                per_sample(&out, batch, *chw, nhwc::to_nchw)
            }
            _ => out.clone(),
        };
        bufs.give(out);
        self.stash.restore(bufs);
        logits
    }

    /// `step` on an input it only reads (a kept point's activation, left where it is), or
    /// `None` where the step needs its input as its own: a static layer whose input is
    /// already in its input's quantization reads it in place.
    fn step_reading(
        &self,
        step: Step,
        input: &Act,
        batch: usize,
        bufs: &mut Buffers,
    ) -> Option<Act> {
        let (Step::DenseStatic { node, pool }, Act::U8(x, q)) = (step, input) else {
            return None;
        };
        let Some((d, LayerImpl::Static(l))) = self.model.dense(node) else {
            return None;
        };
        if *q != l.in_q {
            return None;
        }
        let y = self.dense_static(node, d, l, self.pool_of(pool), x, batch, bufs);
        Some(Act::U8(y, l.out_q))
    }

    /// The geometry of a step's fused max pool (node `p`), if it has one.
    fn pool_of(&self, p: Option<usize>) -> Option<&PoolGeom> {
        match p.map(|p| &self.model.network.nodes[p]) {
            Some(Node::MaxPool(g)) => Some(g),
            _ => None,
        }
    }

    fn step(
        &self,
        step: Step,
        act: Act,
        batch: usize,
        kept: &[Option<Act>],
        bufs: &mut Buffers,
    ) -> Act {
        let nodes = &self.model.network.nodes;
        match step {
            Step::DenseF32 { node, .. } if self.dense(node).depthwise => {
                let d = self.dense(node);
                let x = act.into_f32();
                let mut y = bufs.take(batch * d.out_len());
                let w = self.depthwise_weights(node);
                depthwise::run_f32(self.ops, d, w, &x, batch, &mut bufs.padded_f32, &mut y);
                bufs.give(x);
                Act::F32(y)
            }
            Step::DenseF32 { node, pool } => {
                let (d, w) = (self.dense(node), self.f32_weights(node));
                let x = act.into_f32();
                let y = self.dense_f32(
                    d,
                    w,
                    self.plan.taps[node].as_ref(),
                    self.pool_of(pool),
                    &x,
                    batch,
                    bufs,
                );
                bufs.give(x);
                Act::F32(y)
            }
            Step::DenseStatic { node, pool } => {
                let (d, l) = match self.model.dense(node) {
                    Some((d, LayerImpl::Static(l))) => (d, l),
                    _ => unreachable!("the plan made a static step of a static layer"),
                };
                let input = act.into_u8(&l.in_q, bufs);
                let y = self.dense_static(node, d, l, self.pool_of(pool), &input, batch, bufs);
                bufs.give(input);
                Act::U8(y, l.out_q)
            }
            Step::DenseDynamic { node } => {
                let (d, l) = match self.model.dense(node) {
                    Some((d, LayerImpl::Dynamic(l))) => (d, l),
                    _ => unreachable!("the plan made a dynamic step of a dynamic layer"),
                };
                let x = act.into_f32();
                let y = if d.depthwise {
                    self.depthwise_dynamic(node, d, l, &x, batch, bufs)
                } else {
                    let (w, _) = self.int8_weights(node);
                    self.dense_dynamic(d, l, w, self.plan.taps[node].as_ref(), &x, batch, bufs)
                };
                bufs.give(x);
                Act::F32(y)
            }
            Step::MaxPool { node } => {
                let Node::MaxPool(g) = &nodes[node] else {
                    unreachable!("the plan made a pool step of a pool node")
                };
                match act {
                    Act::F32(v) => {
                        let y = maxpool(&v, batch, g, bufs);
                        bufs.give(v);
                        Act::F32(y)
                    }
                    Act::U8(v, q) => {
                        let y = maxpool(&v, batch, g, bufs);
                        bufs.give(v);
                        Act::U8(y, q)
                    }
                }
            }
            Step::AvgPool { node } => {
                let Node::AvgPool(g) = &nodes[node] else {
                    unreachable!("the plan made a pool step of a pool node")
                };
                let len = batch * g.channels * g.out_hw[0] * g.out_hw[1];
                match act {
                    Act::F32(v) => {
                        let mut y = bufs.take(len);
                        nhwc::avgpool_f32(&v, batch, g, &mut y);
                        bufs.give(v);
                        Act::F32(y)
                    }
                    Act::U8(v, q) => {
                        let mut y = bufs.take(len);
                        nhwc::avgpool_u8(&v, batch, g, q.zero_point as u8, &mut y);
                        bufs.give(v);
                        Act::U8(y, q)
                    }
                }
            }
            Step::Add { node } => {
                let Node::Add { from, relu } = nodes[node] else {
                    unreachable!("the plan made an add step of an add node")
                };
                let other = kept[from]
                    .as_ref()
                    .expect("the plan keeps every point an Add reads");
                // Integer when both inputs are and the point after is calibrated; in f32
                // otherwise (a float model, or a mixed one where a side fell back).
                match (other, act, self.model.points[node + 1]) {
                    (Act::U8(a, qa), Act::U8(mut b, qb), Some(qo)) => {
                        let add = residual::qadd(qa, &qb, &qo, relu);
                        let table = || self.add_tables[node].get_or_init(|| AddTable::new(add));
                        residual::run_add(self.ops, &add, table, a, &mut b);
                        Act::U8(b, qo)
                    }
                    (other, act, _) => {
                        let mut b = act.into_f32();
                        // A float side is read where it is kept: a copy of it (3 MB for a
                        // batch of 64 residual CNN maps) cost more than the Add.
                        match other {
                            Act::F32(a) => residual::add_f32(a, &mut b, relu),
                            u8_side => residual::add_f32(&u8_side.to_f32(), &mut b, relu),
                        }
                        Act::F32(b)
                    }
                }
            }
            Step::Relu { .. } => match act {
                Act::F32(mut v) => {
                    v.iter_mut().for_each(|x| *x = x.max(0.0));
                    Act::F32(v)
                }
                Act::U8(mut v, q) => {
                    v.iter_mut().for_each(|x| *x = (*x).max(q.zero_point as u8));
                    Act::U8(v, q)
                }
            },
            Step::Flatten { .. } => act,
        }
    }

    /// Runs the leading flattens and a first float dense step straight on the caller's
    /// input; the activation and the steps done, or `None` where that step is not a float
    /// GEMM layer or a point it passes is kept for an Add (those need the input copied in).
    fn first_layer_in_place(
        &self,
        steps: &[Step],
        x: &[f32],
        batch: usize,
        bufs: &mut Buffers,
    ) -> Option<(Act, usize)> {
        let flattens = steps
            .iter()
            .take_while(|s| matches!(s, Step::Flatten { .. }))
            .count();
        let step = *steps.get(flattens)?;
        let Step::DenseF32 { node, pool } = step else {
            return None;
        };
        let d = self.dense(node);
        if d.depthwise || self.plan.keep[..=step.last_node() + 1].contains(&true) {
            return None;
        }
        let pool = pool.and_then(|p| match &self.model.network.nodes[p] {
            Node::MaxPool(g) => Some(g),
            _ => None,
        });
        let w = self.f32_weights(node);
        let y = self.dense_f32(d, w, self.plan.taps[node].as_ref(), pool, x, batch, bufs);
        Some((Act::F32(y), flattens + 1))
    }

    fn dense(&self, node: usize) -> &Dense {
        match &self.model.network.nodes[node] {
            Node::Dense(d) => d,
            _ => unreachable!("the plan made a dense step of a dense node"),
        }
    }

    fn f32_weights(&self, node: usize) -> &PackedF32 {
        match &self.plan.weights[node] {
            Some(Weights::F32(w)) => w,
            _ => unreachable!("an f32 step has f32 weights"),
        }
    }

    fn depthwise_weights(&self, node: usize) -> &depthwise::DwWeights {
        match &self.plan.weights[node] {
            Some(Weights::Depthwise(w)) => w,
            _ => unreachable!("a depthwise step has depthwise weights"),
        }
    }

    /// A depthwise layer with int8 weights and its input quantized per batch (f32 out).
    fn depthwise_dynamic(
        &self,
        node: usize,
        d: &Dense,
        l: &DynamicLayer,
        x: &[f32],
        batch: usize,
        bufs: &mut Buffers,
    ) -> Vec<f32> {
        let dq = DynamicInput::new(x, &l.w.col_sums, &l.w_scales, bufs);
        let mut out = bufs.take(batch * d.out_len());
        let w = self.depthwise_weights(node);
        let (mut padded, mut acc) = (
            std::mem::take(&mut bufs.padded_u8),
            std::mem::take(&mut bufs.acc),
        );
        let zp = dq.q.zero_point as u8;
        let scratch = (&mut padded, &mut acc);
        let epi = &mut dq.epilogue(d, &mut out);
        depthwise::run_int8(self.ops, d, w, &dq.input, batch, zp, scratch, epi);
        (bufs.padded_u8, bufs.acc) = (padded, acc);
        bufs.give(dq.input);
        cap(d, &mut out);
        out
    }

    fn int8_weights(&self, node: usize) -> (&PackedI8, Option<&quantlab_linalg::Requantizer>) {
        match &self.plan.weights[node] {
            Some(Weights::Int8 { w, rq }) => (w, rq.as_ref()),
            _ => unreachable!("an int8 step has int8 weights"),
        }
    }

    /// A float layer. A convolution with `pool` (the non-overlapping max pool after it) is
    /// pooled sample by sample from a scratch map that stays in cache, so the whole batch's
    /// unpooled map never goes to memory.
    #[allow(clippy::too_many_arguments)] // a layer, its weights, its input and buffers
    fn dense_f32(
        &self,
        d: &Dense,
        w: &PackedF32,
        taps: Option<&Taps>,
        pool: Option<&PoolGeom>,
        x: &[f32],
        batch: usize,
        bufs: &mut Buffers,
    ) -> Vec<f32> {
        let (Some(g), Some(taps)) = (&d.conv, taps) else {
            let mut y = bufs.take(batch * d.out_len());
            let rows = Rows::matrix(x, batch, d.k, d.k);
            self.ops.sgemm(&rows, w, activation(d), &mut y);
            return y;
        };
        if pool.is_none() && pointwise(g, d, 1) {
            // Every output is written (so the buffer is not zeroed first).
            let mut y = bufs.take_overwritten(batch * d.out_len());
            let rows = Rows::matrix(x, batch * g.pixels(), d.k, d.k);
            self.ops.sgemm(&rows, w, activation(d), &mut y);
            return y;
        }
        let out_len = pool.map_or(d.out_len(), |pg| d.n * pg.out_hw[0] * pg.out_hw[1]);
        let mut y = bufs.take(batch * out_len);
        let Buffers {
            padded_f32: padded,
            map,
            ..
        } = bufs;
        for (i, (xs, ys)) in x
            .chunks_exact(d.in_len())
            .zip(y.chunks_exact_mut(out_len))
            .enumerate()
        {
            pad_sample(i, xs, g, 0.0, padded);
            let rows = taps.rows(padded.values(), g.pixels(), taps.seg_len);
            match pool {
                Some(pg) => {
                    let shape = PoolShape::after(g, pg);
                    if !self.ops.sgemm_pool(&rows, w, d.relu, shape, ys) {
                        map.resize(d.out_len(), 0.0);
                        self.ops.sgemm(&rows, w, activation(d), map);
                        nhwc::maxpool(map, 1, pg, ys);
                    }
                    // The fused pool's kernel applies the ReLU only: the cap after the pool
                    // is the same (it commutes with max), sample by sample while in cache.
                    cap(d, ys);
                }
                None => self.ops.sgemm(&rows, w, activation(d), ys),
            }
        }
        y
    }

    /// A static layer: requantized in registers where the plan has a requantizer, through
    /// the general epilogue otherwise; with `pool`, the conv and the max pool after it in
    /// one pass (the plan fuses only where a requantizer exists).
    #[allow(clippy::too_many_arguments)] // a layer, its input, the pool and buffers
    fn dense_static(
        &self,
        node: usize,
        d: &Dense,
        l: &StaticLayer,
        pool: Option<&PoolGeom>,
        input: &[u8],
        batch: usize,
        bufs: &mut Buffers,
    ) -> Vec<u8> {
        if d.depthwise {
            let w = self.depthwise_weights(node);
            let zp = l.in_q.zero_point as u8;
            if let Some(rq) = w.requantizer() {
                // Every value is written (so the buffer is not zeroed first).
                let mut out = bufs.take_overwritten(batch * d.out_len());
                let mut padded = std::mem::take(&mut bufs.padded_u8);
                let constants = (rq, l.out_clamp(d.relu, d.cap));
                depthwise::run_static(
                    self.ops,
                    d,
                    w,
                    constants,
                    input,
                    batch,
                    zp,
                    &mut padded,
                    &mut out,
                );
                bufs.padded_u8 = padded;
                return out;
            }
            let mut out = bufs.take(batch * d.out_len());
            let mut epi = requant_rows(l, l.out_clamp(d.relu, d.cap), &mut out);
            let (mut padded, mut acc) = (
                std::mem::take(&mut bufs.padded_u8),
                std::mem::take(&mut bufs.acc),
            );
            depthwise::run_int8(
                self.ops,
                d,
                w,
                input,
                batch,
                zp,
                (&mut padded, &mut acc),
                &mut epi,
            );
            (bufs.padded_u8, bufs.acc) = (padded, acc);
            return out;
        }
        let (w, rq) = self.int8_weights(node);
        let taps = self.plan.taps[node].as_ref();
        let c = l.out_clamp(d.relu, d.cap);
        let zp = l.in_q.zero_point as u8;
        let ops = self.ops;
        if let (Some(pg), Some(g), Some(taps), Some(rq)) = (pool, &d.conv, taps, rq) {
            let pooled_len = d.n * pg.out_hw[0] * pg.out_hw[1];
            let shape = PoolShape::after(g, pg);
            // Every pooled pixel is written (so the buffer is not zeroed first).
            let mut out = bufs.take_overwritten(batch * pooled_len);
            conv_samples(
                d,
                g,
                (taps, self.ops.seg_multiple()),
                input,
                zp,
                &mut out,
                pooled_len,
                bufs,
                |rows, b, os| ops.conv_pool(rows, w, rq, c, shape, &mut b.acc, os),
            );
            return out;
        }
        if let (Some(pg), Some(g), Some(taps), None) = (pool, &d.conv, taps, rq) {
            return self.conv_pool_unfused(d, (g, pg, taps), l, w, input, batch, bufs);
        }
        // The fused requantizing GEMM writes every output (a 64-row conv map of 800 KB was
        // zeroed first, 4% of the residual CNN); the other epilogues get a zeroed buffer.
        let mut out = if rq.is_some() {
            bufs.take_overwritten(batch * d.out_len())
        } else {
            bufs.take(batch * d.out_len())
        };
        let epilogue = |out| requant_rows(l, c, out);
        match (&d.conv, taps, rq) {
            (None, _, Some(rq)) => {
                ops.qgemm_requant(&Rows::matrix(input, batch, d.k, d.k), w, rq, c, &mut out)
            }
            (Some(g), _, Some(rq)) if pointwise(g, d, ops.seg_multiple()) => {
                let rows = Rows::matrix(input, batch * g.pixels(), d.k, d.k);
                ops.qgemm_requant(&rows, w, rq, c, &mut out)
            }
            (Some(g), Some(taps), Some(rq)) => {
                let out_len = d.out_len();
                conv_samples(
                    d,
                    g,
                    (taps, self.ops.seg_multiple()),
                    input,
                    zp,
                    &mut out,
                    out_len,
                    bufs,
                    |rows, _, os| ops.qgemm_requant(rows, w, rq, c, os),
                )
            }
            (Some(g), Some(taps), None) => {
                self.conv_int8(d, g, taps, w, input, zp, &mut out, epilogue, bufs);
            }
            _ => ops.qgemm(batch, input, d.k, w, &mut epilogue(&mut out)),
        }
        out
    }

    /// A static convolution and the max pool after it on a path without a fused
    /// requantizer (AVX2, scalar): each sample's accumulators max-reduced into the pooled
    /// pixels as the GEMM hands them over ([`Epilogue::PoolMax`]), then only the pooled
    /// pixels requantized (a quarter of them under a 2x2 pool). The same bytes as
    /// requantizing every pixel and pooling after: requantization is monotonic (`acc +
    /// offset`, a positive multiplier, a clamp), so it commutes with max.
    #[allow(clippy::too_many_arguments)] // a layer, its geometry, weights, input and buffers
    fn conv_pool_unfused(
        &self,
        d: &Dense,
        (g, pg, taps): (&ConvGeom, &PoolGeom, &Taps),
        l: &StaticLayer,
        w: &PackedI8,
        input: &[u8],
        batch: usize,
        bufs: &mut Buffers,
    ) -> Vec<u8> {
        let ops = self.ops;
        let c = l.out_clamp(d.relu, d.cap);
        let pooled = pg.out_hw[0] * pg.out_hw[1];
        let pool = PoolShape::after(g, pg);
        let n = d.n;
        // Pooled rows padded to whole 8-lane vectors (the AVX2 epilogue's unit).
        let os = n.next_multiple_of(8);
        let mut out = bufs.take(batch * pooled * n);
        let mut acc = std::mem::take(&mut bufs.acc);
        let zp = l.in_q.zero_point as u8;
        conv_samples(
            d,
            g,
            (taps, self.ops.seg_multiple()),
            input,
            zp,
            &mut out,
            pooled * n,
            bufs,
            |rows, b, out_s| {
                acc.clear();
                acc.resize(pooled * os, i32::MIN);
                let mut epi = Epilogue::PoolMax {
                    pool,
                    stride: os,
                    out: &mut acc,
                };
                ops.qgemm_rows(rows, w, &mut epi, &mut b.rows);
                ops.epilogue(&mut requant_rows(l, c, out_s), 0, pooled, n, &acc, os);
            },
        );
        bufs.acc = acc;
        out
    }

    #[allow(clippy::too_many_arguments)] // a layer, its weights, its input and buffers
    fn dense_dynamic(
        &self,
        d: &Dense,
        l: &DynamicLayer,
        w: &PackedI8,
        taps: Option<&Taps>,
        x: &[f32],
        batch: usize,
        bufs: &mut Buffers,
    ) -> Vec<f32> {
        let dq = DynamicInput::new(x, &w.col_sums, &l.w_scales, bufs);
        let mut out = bufs.take(batch * d.out_len());
        let epilogue = |out| dq.epilogue(d, out);
        match (&d.conv, taps) {
            (Some(g), Some(taps)) => {
                let zp = dq.q.zero_point as u8;
                self.conv_int8(d, g, taps, w, &dq.input, zp, &mut out, epilogue, bufs);
            }
            _ => self
                .ops
                .qgemm(batch, &dq.input, d.k, w, &mut epilogue(&mut out)),
        }
        bufs.give(dq.input);
        cap(d, &mut out);
        out
    }

    /// An int8 convolution through the general epilogue, sample by sample over the
    /// zero-point padded input (read in place or gathered, as the path does).
    #[allow(clippy::too_many_arguments)] // a layer, its weights, its input and epilogue
    fn conv_int8<'o, O>(
        &self,
        d: &Dense,
        g: &ConvGeom,
        taps: &Taps,
        w: &PackedI8,
        input: &[u8],
        zp: u8,
        out: &'o mut [O],
        epilogue: impl Fn(&'o mut [O]) -> Epilogue<'o>,
        bufs: &mut Buffers,
    ) {
        let ops = self.ops;
        let out_len = d.out_len();
        conv_samples(
            d,
            g,
            (taps, ops.seg_multiple()),
            input,
            zp,
            out,
            out_len,
            bufs,
            |rows, b, os| ops.qgemm_rows(rows, w, &mut epilogue(os), &mut b.rows),
        )
    }
}

/// A dynamic layer's input quantized for this batch (u8 over the batch's min and max, with
/// 0 inside the range), and the epilogue constants that go with it.
struct DynamicInput {
    input: Vec<u8>,
    q: QParams,
    /// `-zp * col_sums[n]`.
    offset: Vec<i32>,
    /// `s_in * s_w[n]`.
    scales: Vec<f32>,
}

impl DynamicInput {
    fn new(x: &[f32], col_sums: &[i32], w_scales: &[f32], bufs: &mut Buffers) -> Self {
        let (lo, hi) = x
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let q = QParams::from_range(lo, hi, ActDtype::U8Affine);
        let mut input = bufs.take_overwritten(x.len());
        quantize_into(x, &q, &mut input);
        Self {
            input,
            q,
            offset: col_sums.iter().map(|&c| -q.zero_point * c).collect(),
            scales: w_scales.iter().map(|&s| s * q.scale).collect(),
        }
    }

    /// The dequantizing epilogue of layer `d` into `out`, row-major.
    fn epilogue<'a>(&'a self, d: &'a Dense, out: &'a mut [f32]) -> Epilogue<'a> {
        Epilogue::Dequant {
            offset: &self.offset,
            scales: &self.scales,
            bias: &d.bias,
            relu: d.relu,
            layout: OutLayout::RowMajor,
            out,
        }
    }
}

/// The activation a float kernel applies as it stores layer `d`'s outputs: the ReLU, and
/// a ReLU6's cap (a pass over the output after the GEMM had cost the MobileNet-like model's
/// float convolutions a fifth of their time).
fn activation(d: &Dense) -> Activation {
    Activation {
        relu: d.relu,
        cap: d.cap.filter(|_| d.relu),
    }
}

/// The fused ReLU's upper bound (ReLU6), where the layer has one, as a pass: for the
/// outputs of a dynamic layer and of the fused float conv + pool kernel, which apply only
/// the ReLU. After the ReLU no value is NaN (`f32::max(NaN, 0) = 0`), so a plain comparison
/// does what `f32::min` does, without its NaN handling.
fn cap(d: &Dense, y: &mut [f32]) {
    if let (true, Some(c)) = (d.relu, d.cap) {
        y.iter_mut().for_each(|v| *v = if *v > c { c } else { *v });
    }
}

/// Whether conv `g` of layer `d` is pointwise (1x1, stride 1, no padding) over whole units
/// of `seg_multiple` channels: then a batch of channels-last samples is already its GEMM's
/// `[batch * pixels, c]` matrix, read in place in one call (no padded copy per sample; the
/// MobileNet-like model's pointwise convs paid one per sample).
fn pointwise(g: &ConvGeom, d: &Dense, seg_multiple: usize) -> bool {
    g.kernel == [1, 1]
        && g.stride == [1, 1]
        && g.padding == [0, 0]
        && d.k == g.in_channels
        && g.in_channels.is_multiple_of(seg_multiple.max(1))
}

/// Max pooling into a fresh buffer.
fn maxpool<T: Pooled + PartialOrd>(
    v: &[T],
    batch: usize,
    g: &PoolGeom,
    bufs: &mut Buffers,
) -> Vec<T>
where
    Vec<T>: Sized,
{
    let mut y = bufs.take(batch * g.channels * g.out_hw[0] * g.out_hw[1]);
    nhwc::maxpool(v, batch, g, &mut y);
    y
}

/// Runs `f(rows, buffers, output sample)` for every sample of an int8 convolution: the
/// sample padded with the zero point `zp`, read as one segment per kernel row rounded up to
/// the path's `seg_multiple` (`out_len` outputs per sample; the padded sample is not in the
/// buffers `f` gets).
#[allow(clippy::too_many_arguments)] // a layer, its input, its output and what runs
fn conv_samples<'o, O>(
    d: &Dense,
    g: &ConvGeom,
    (taps, seg_multiple): (&Taps, usize),
    input: &[u8],
    zp: u8,
    out: &'o mut [O],
    out_len: usize,
    bufs: &mut Buffers,
    mut f: impl FnMut(&Rows<u8>, &mut Buffers, &'o mut [O]),
) {
    let mut padded = std::mem::take(&mut bufs.padded_u8);
    let samples = input
        .chunks_exact(d.in_len())
        .zip(out.chunks_exact_mut(out_len));
    for (i, (xs, os)) in samples.enumerate() {
        pad_sample(i, xs, g, zp, &mut padded);
        f(
            &taps.rows(padded.values(), g.pixels(), taps.seg_len_to(seg_multiple)),
            bufs,
            os,
        );
    }
    bufs.padded_u8 = padded;
}

/// Sample `i` of a layer's loop padded into `padded`: the whole buffer for the first, the
/// rows only after it (the border stays the same value).
pub(crate) fn pad_sample<T: Copy>(
    i: usize,
    x: &[T],
    g: &ConvGeom,
    pad: T,
    padded: &mut nhwc::Padded<T>,
) {
    if i == 0 {
        padded.pad(x, g, pad);
    } else {
        padded.pad_interior(x, g);
    }
}

/// The static epilogue of layer `l` into row-major `out`, clamped to `(zo, lo, hi)`.
fn requant_rows<'a>(
    l: &'a StaticLayer,
    (zo, lo, hi): (i32, i32, i32),
    out: &'a mut [u8],
) -> Epilogue<'a> {
    Epilogue::Requant {
        offset: &l.offset,
        requant: &l.requant,
        zo,
        lo,
        hi,
        layout: OutLayout::RowMajor,
        out,
    }
}

/// Applies a per-sample layout change to a batch.
fn per_sample<T: Copy + Default>(
    x: &[T],
    batch: usize,
    chw: [usize; 3],
    f: fn(&[T], [usize; 3], &mut [T]),
) -> Vec<T> {
    let len = chw.iter().product::<usize>();
    let mut out = vec![T::default(); batch * len];
    for (xs, os) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        f(xs, chw, os);
    }
    out
}
