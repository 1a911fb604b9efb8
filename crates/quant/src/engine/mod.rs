//! Runs a [`QuantModel`] on a batch: one code path for the float model and every quantized
//! variant, so f32 and int8 are timed and scored on equal terms.
//!
//! Activations travel as f32 or as u8 with their [`QParams`]. A static layer wants u8 at its
//! input point's parameters and produces u8 at its output point's (integer end to end); a
//! dynamic layer quantizes its f32 input per batch and produces f32; an f32 layer wants f32.
//! Conversions happen only where a model mixes them (mixed precision, network edges), so
//! a static model quantizes its input once.
//!
//! Feature maps run channels-last (see [`crate::plan`]): convolutions read a zero-point
//! padded `[h, w, c]` sample tap by tap (f32 on every path; int8 on the VNNI path when `c`
//! is a multiple of 4, otherwise through a channels-last im2col), write their rows straight
//! into the next map, and max pooling takes the max of channel rows. Traced activations
//! (`run_traced`) are in that layout; the logits are not affected.

mod buffers;

pub use buffers::release_buffers;
use buffers::{WORKSPACE, Workspace, give, take};

use crate::error::{QuantError, Result};
use crate::kernels::nhwc::{self, Taps};
use crate::kernels::rows::{PoolShape, RowMap, Rows, gather};
use crate::kernels::sgemm::{self, PackedF32};
use crate::kernels::{Epilogue, KernelPath, OutLayout, QWeights, avx512, qgemm};
use crate::model::{DynamicLayer, LayerImpl, QuantModel, StaticLayer};
use crate::network::{ConvGeom, Dense, Node, PoolGeom};
use crate::plan::{Layout, Prepared};
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

    fn into_u8(self, q: &QParams) -> Vec<u8> {
        match self {
            Act::U8(v, have) if have == *q => v,
            other => {
                let f = other.into_f32();
                let mut out = take(f.len());
                quantize_into(&f, q, &mut out);
                give(f);
                out
            }
        }
    }
}

/// Smallest batch split across threads (smaller ones, batch 1 above all, stay on one).
pub const PARALLEL_MIN_BATCH: usize = 8;

/// Least multiply-accumulates (model MACs x batch) worth splitting across threads: about
/// 25 us of VNNI work, well above what handing work to another thread costs.
pub const PARALLEL_MIN_MACS: usize = 4_000_000;

/// Runs models with a chosen kernel path and thread count.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// Kernel path (integer GEMM; the float kernels take the matching SIMD level).
    pub path: KernelPath,
    /// Threads for large batches (1 = single-threaded).
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
    /// Logits `[batch, classes]` for `x` (`[batch, in_len]`, normalised inputs).
    ///
    /// With `threads > 1` a large enough batch is split into `threads` slices that run the
    /// whole network in parallel (one fork per call, not one per layer). Samples are
    /// independent, so the logits are the same bits as one thread's, except for models
    /// with dynamic layers, whose activation range is per batch: those run on one thread.
    pub fn run(&self, model: &QuantModel, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        check_input(model, x, batch)?;
        let threads = self.threads_for(model, batch);
        if threads <= 1 {
            return self.forward(model, x, batch, false, &mut |_, _| {});
        }
        let d = model.network.in_len();
        let per = batch.div_ceil(threads);
        let chunks: Vec<&[f32]> = x.chunks(per * d).collect();
        let mut parts: Vec<Option<Result<Vec<f32>>>> = (0..chunks.len()).map(|_| None).collect();
        let run = |xs: &[f32]| Some(self.forward(model, xs, xs.len() / d, false, &mut |_, _| {}));
        // The calling thread runs the first slice itself while pool threads take the others:
        // a sleeping worker's wake-up then overlaps useful work instead of preceding all of it
        // (par_chunks handed every slice to the pool: int8 CNN batch 64 scaled 1.50x, not 1.7x).
        let (first, rest) = parts.split_first_mut().expect("batch >= 1");
        rayon::in_place_scope(|s| {
            for (slot, xs) in rest.iter_mut().zip(&chunks[1..]) {
                s.spawn(move |_| *slot = run(xs));
            }
            *first = run(chunks[0]);
        });
        let mut logits = Vec::with_capacity(batch * model.network.out_len());
        for p in parts {
            logits.extend(p.expect("every slice ran")?);
        }
        Ok(logits)
    }

    /// Like [`Self::run`] on one thread, calling `trace(point, activation)` for point 0
    /// (the input) and after every node (`point = node + 1`). Feature maps are channels-last.
    pub fn run_traced(
        &self,
        model: &QuantModel,
        x: &[f32],
        batch: usize,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Result<Vec<f32>> {
        check_input(model, x, batch)?;
        self.forward(model, x, batch, true, trace)
    }

    /// Threads worth using for `model` at `batch`.
    pub fn threads_for(&self, model: &QuantModel, batch: usize) -> usize {
        let macs: usize = model
            .network
            .nodes
            .iter()
            .map(|n| match n {
                Node::Dense(d) => d.macs(),
                _ => 0,
            })
            .sum();
        let dynamic = model
            .layers
            .iter()
            .any(|l| matches!(l, Some(LayerImpl::Dynamic(_))));
        if self.threads > 1
            && batch >= PARALLEL_MIN_BATCH
            && macs * batch >= PARALLEL_MIN_MACS
            && !dynamic
        {
            self.threads.min(batch)
        } else {
            1
        }
    }

    /// The forward pass; `traced` when `trace` wants to see the input as given (point 0).
    fn forward(
        &self,
        model: &QuantModel,
        x: &[f32],
        batch: usize,
        traced: bool,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Result<Vec<f32>> {
        let plan = model.plan.get(model);
        // The first dense layer, if only shape changes come before it.
        let first = model
            .network
            .nodes
            .iter()
            .position(|n| !matches!(n, Node::Flatten))
            .and_then(|i| model.layers[i].as_ref());
        let mut act = match (plan.layouts[0], first) {
            (Layout::Map(chw), _) if chw[0] > 1 => {
                Act::F32(per_sample(x, batch, chw, nhwc::to_nhwc))
            }
            // A static first layer: quantize the input once, straight from the caller's slice.
            (_, Some(LayerImpl::Static(l))) if !traced => {
                let mut q = take(x.len());
                quantize_into(x, &l.in_q, &mut q);
                Act::U8(q, l.in_q)
            }
            _ => {
                let mut v = take(x.len());
                v.copy_from_slice(x);
                Act::F32(v)
            }
        };
        trace(0, &act);
        let nodes = &model.network.nodes;
        // Set when a convolution also ran the max pool after it (next node skipped).
        let mut pooled = false;
        for (i, node) in nodes.iter().enumerate() {
            if std::mem::take(&mut pooled) {
                continue;
            }
            let taps = plan.taps[i].as_ref();
            // A non-overlapping max pool right after a conv fuses into its int8 epilogue
            // (untraced runs only: a trace wants the conv's own output).
            let pool_next = match nodes.get(i + 1) {
                Some(Node::MaxPool(g)) if !traced && g.kernel == g.stride => Some(g),
                _ => None,
            };
            act = match (node, &model.layers[i], &plan.nodes[i]) {
                (Node::Dense(d), Some(LayerImpl::F32), Prepared::F32(w)) => {
                    let x = act.into_f32();
                    let (y, fused) = self.dense_f32(d, w, taps, pool_next, &x, batch);
                    pooled = fused;
                    give(x);
                    Act::F32(y)
                }
                (Node::Dense(d), Some(LayerImpl::Static(l)), Prepared::Int8(w)) => {
                    let input = act.into_u8(&l.in_q);
                    let rq = plan.requant[i]
                        .as_ref()
                        .filter(|_| self.path == KernelPath::Avx512Vnni);
                    let fused = pool_next.and_then(|pg| {
                        self.conv_pool_static(d, l, w, taps?, rq?, &input, batch, pg)
                    });
                    pooled = fused.is_some();
                    let y = fused
                        .unwrap_or_else(|| self.dense_static(d, l, w, taps, rq, &input, batch));
                    give(input);
                    Act::U8(y, l.out_q)
                }
                (Node::Dense(d), Some(LayerImpl::Dynamic(l)), Prepared::Int8(w)) => {
                    let x = act.into_f32();
                    let y = self.dense_dynamic(d, l, w, taps, &x, batch);
                    give(x);
                    Act::F32(y)
                }
                (Node::Dense(_), _, _) => {
                    return Err(QuantError::Graph(format!(
                        "node {i} has no runnable implementation"
                    )));
                }
                (Node::MaxPool(g), _, _) => {
                    let len = batch * g.channels * g.out_hw[0] * g.out_hw[1];
                    match act {
                        Act::F32(v) => {
                            let mut y = take(len);
                            nhwc::maxpool(&v, batch, g, &mut y);
                            give(v);
                            Act::F32(y)
                        }
                        Act::U8(v, q) => {
                            let mut y = take(len);
                            nhwc::maxpool(&v, batch, g, &mut y);
                            give(v);
                            Act::U8(y, q)
                        }
                    }
                }
                (Node::Relu, _, _) => match act {
                    Act::F32(mut v) => {
                        v.iter_mut().for_each(|x| *x = x.max(0.0));
                        Act::F32(v)
                    }
                    Act::U8(mut v, q) => {
                        v.iter_mut().for_each(|x| *x = (*x).max(q.zero_point as u8));
                        Act::U8(v, q)
                    }
                },
                (Node::Flatten, _, _) => act,
            };
            if !pooled {
                trace(i + 1, &act);
            }
        }
        let out = act.into_f32();
        // A right-sized copy leaves: the pooled buffer stays for the next call.
        let logits = match plan.layouts.last() {
            Some(Layout::Map(chw)) if chw[0] > 1 && chw[1] * chw[2] > 1 => {
                per_sample(&out, batch, *chw, nhwc::to_nchw)
            }
            _ => out.clone(),
        };
        give(out);
        Ok(logits)
    }

    /// A float layer. A convolution with `pool` (the non-overlapping max pool after it) is
    /// pooled sample by sample from a scratch map that stays in cache, so the whole batch's
    /// unpooled map never goes to memory; returns whether the pool was applied.
    fn dense_f32(
        &self,
        d: &Dense,
        w: &PackedF32,
        taps: Option<&Taps>,
        pool: Option<&PoolGeom>,
        x: &[f32],
        batch: usize,
    ) -> (Vec<f32>, bool) {
        let (Some(g), Some(taps)) = (&d.conv, taps) else {
            let mut y = take(batch * d.out_len());
            let rows = Rows::matrix(x, batch, d.k, d.k);
            sgemm::sgemm(self.path, &rows, w, d.relu, &mut y);
            return (y, false);
        };
        let pool = pool.filter(|pg| pg.channels == d.n && pg.in_hw == g.out_hw);
        let out_len = pool.map_or(d.out_len(), |pg| d.n * pg.out_hw[0] * pg.out_hw[1]);
        let mut y = take(batch * out_len);
        WORKSPACE.with_borrow_mut(|ws| {
            let Workspace {
                f32: padded, map, ..
            } = ws;
            for (xs, ys) in x.chunks_exact(d.in_len()).zip(y.chunks_exact_mut(out_len)) {
                nhwc::pad(xs, g, 0.0, padded);
                let rows = conv_rows(padded, g, taps, taps.seg_len);
                match pool {
                    Some(pg) => {
                        map.resize(d.out_len(), 0.0);
                        sgemm::sgemm(self.path, &rows, w, d.relu, map);
                        nhwc::maxpool(map, 1, pg, ys);
                    }
                    None => sgemm::sgemm(self.path, &rows, w, d.relu, ys),
                }
            }
        });
        (y, pool.is_some())
    }

    #[allow(clippy::too_many_arguments)] // a layer, its prepared weights and its input
    fn dense_static(
        &self,
        d: &Dense,
        l: &StaticLayer,
        w: &QWeights,
        taps: Option<&Taps>,
        rq: Option<&avx512::Requantizer>,
        input: &[u8],
        batch: usize,
    ) -> Vec<u8> {
        let mut out = take(batch * d.out_len());
        let c @ (zo, lo, hi) = l.out_clamp(d.relu);
        let zp = l.in_q.zero_point as u8;
        let epilogue = |out| Epilogue::Requant {
            offset: &l.offset,
            requant: &l.requant,
            zo,
            lo,
            hi,
            layout: OutLayout::RowMajor,
            out,
        };
        match (&d.conv, taps, rq) {
            (None, _, Some(rq)) => {
                avx512::qgemm_requant(&Rows::matrix(input, batch, d.k, d.k), w, rq, c, &mut out)
            }
            (Some(g), Some(taps), Some(rq)) => conv_samples(
                d,
                g,
                taps,
                input,
                zp,
                &mut out,
                d.out_len(),
                |rows, _, os| avx512::qgemm_requant(rows, w, rq, c, os),
            ),
            (Some(g), Some(taps), None) => {
                self.conv_int8(d, g, taps, w, input, zp, &mut out, epilogue);
            }
            _ => qgemm(self.path, batch, input, d.k, w, &mut epilogue(&mut out)),
        }
        out
    }

    fn dense_dynamic(
        &self,
        d: &Dense,
        l: &DynamicLayer,
        w: &QWeights,
        taps: Option<&Taps>,
        x: &[f32],
        batch: usize,
    ) -> Vec<f32> {
        let (lo, hi) = x
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let q = QParams::from_range(lo, hi, ActDtype::U8Affine);
        let mut input = take(x.len());
        quantize_into(x, &q, &mut input);
        let offset: Vec<i32> = w.col_sums.iter().map(|&c| -q.zero_point * c).collect();
        let scales: Vec<f32> = l.w_scales.iter().map(|&s| s * q.scale).collect();
        let mut out = take(batch * d.out_len());
        let epilogue = |out| Epilogue::Dequant {
            offset: &offset,
            scales: &scales,
            bias: &d.bias,
            relu: d.relu,
            layout: OutLayout::RowMajor,
            out,
        };
        match (&d.conv, taps) {
            (Some(g), Some(taps)) => {
                let zp = q.zero_point as u8;
                self.conv_int8(d, g, taps, w, &input, zp, &mut out, epilogue);
            }
            _ => qgemm(self.path, batch, &input, d.k, w, &mut epilogue(&mut out)),
        }
        give(input);
        out
    }

    /// A static conv and the max pool after it in one pass (VNNI only; see
    /// [`avx512::conv_pool_rows`]): `None` where that path does not apply.
    #[allow(clippy::too_many_arguments)] // a layer, its weights, its input and the pool
    fn conv_pool_static(
        &self,
        d: &Dense,
        l: &StaticLayer,
        w: &QWeights,
        taps: &Taps,
        rq: &avx512::Requantizer,
        input: &[u8],
        batch: usize,
        pg: &PoolGeom,
    ) -> Option<Vec<u8>> {
        let g = d.conv.as_ref()?;
        if self.path != KernelPath::Avx512Vnni || pg.channels != d.n || pg.in_hw != g.out_hw {
            return None;
        }
        let pooled_len = d.n * pg.out_hw[0] * pg.out_hw[1];
        let shape = PoolShape {
            ow: g.out_hw[1],
            out_hw: pg.out_hw,
            window: pg.stride,
        };
        let zp = l.in_q.zero_point as u8;
        let c = l.out_clamp(d.relu);
        let mut out = take(batch * pooled_len);
        conv_samples(
            d,
            g,
            taps,
            input,
            zp,
            &mut out,
            pooled_len,
            |rows, scratch, os| avx512::conv_pool_rows(rows, w, rq, c, shape, &mut scratch.acc, os),
        );
        Some(out)
    }

    /// An int8 convolution, sample by sample, over the zero-point padded input: read in
    /// place by the VNNI kernel (no im2col matrix), gathered into a matrix for the others.
    #[allow(clippy::too_many_arguments)] // a layer, its weights, its input and epilogue
    fn conv_int8<'o, O>(
        &self,
        d: &Dense,
        g: &ConvGeom,
        taps: &Taps,
        w: &QWeights,
        input: &[u8],
        zp: u8,
        out: &'o mut [O],
        epilogue: impl Fn(&'o mut [O]) -> Epilogue<'o>,
    ) {
        conv_samples(
            d,
            g,
            taps,
            input,
            zp,
            out,
            d.out_len(),
            |rows, scratch, os| {
                if self.path == KernelPath::Avx512Vnni {
                    avx512::qgemm_rows(rows, w, &mut epilogue(os));
                } else {
                    let gathered = &mut scratch.rows;
                    gathered.resize(rows.m * w.k, 0);
                    gather(rows, gathered);
                    qgemm(self.path, rows.m, gathered, w.k, w, &mut epilogue(os));
                }
            },
        )
    }
}

/// Runs `f(rows, scratch, output sample)` for every sample of an int8 convolution: the
/// sample padded with the zero point `zp`, read as one segment per kernel row (`out_len`
/// outputs per sample; `scratch` is the workspace the padded sample is not in).
#[allow(clippy::too_many_arguments)] // a layer, its input, its output and what runs
fn conv_samples<'o, O>(
    d: &Dense,
    g: &ConvGeom,
    taps: &Taps,
    input: &[u8],
    zp: u8,
    out: &'o mut [O],
    out_len: usize,
    mut f: impl FnMut(&Rows<u8>, &mut Workspace, &'o mut [O]),
) {
    WORKSPACE.with_borrow_mut(|ws| {
        let mut padded = std::mem::take(&mut ws.u8);
        let samples = input
            .chunks_exact(d.in_len())
            .zip(out.chunks_exact_mut(out_len));
        for (xs, os) in samples {
            nhwc::pad(xs, g, zp, &mut padded);
            f(&conv_rows(&padded, g, taps, taps.seg_len4()), ws, os);
        }
        ws.u8 = padded;
    })
}

fn check_input(model: &QuantModel, x: &[f32], batch: usize) -> Result<()> {
    let expected = batch * model.network.in_len();
    if x.len() != expected {
        return Err(QuantError::InputSize {
            expected,
            found: x.len(),
            batch,
        });
    }
    Ok(())
}

/// A convolution's rows over a padded channels-last sample: one segment per kernel row,
/// `seg_len` values long (`kw * c`, or that rounded up to 4 for int8).
fn conv_rows<'a, T>(padded: &'a [T], g: &ConvGeom, taps: &'a Taps, seg_len: usize) -> Rows<'a, T> {
    Rows {
        a: padded,
        m: g.pixels(),
        segs: &taps.offsets,
        seg_len,
        map: RowMap::Conv {
            row_step: taps.row_step,
            col_step: taps.col_step,
            ow: taps.ow,
        },
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
