//! Runs a [`QuantModel`] on a batch: one code path for the float model and every quantized
//! variant, so f32 and int8 are timed and scored on equal terms.
//!
//! Activations travel as f32 or as u8 with their [`QParams`]. A static layer wants u8 at its
//! input point's parameters and produces u8 at its output point's (integer end to end); a
//! dynamic layer quantizes its f32 input per batch and produces f32; an f32 layer wants f32.
//! Conversions happen only where a model mixes them (mixed precision, network edges).

use rayon::prelude::*;

use crate::error::{QuantError, Result};
use crate::kernels::f32gemm;
use crate::kernels::im2col::im2col;
use crate::kernels::{Epilogue, KernelPath, OutLayout, qgemm};
use crate::model::{DynamicLayer, LayerImpl, QuantModel, StaticLayer};
use crate::network::{Dense, Node, PoolGeom};
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
                let mut out = vec![0u8; f.len()];
                quantize_into(&f, q, &mut out);
                out
            }
        }
    }
}

/// Largest reduction length for which a convolution takes the pixels-in-lanes VNNI kernel
/// (measured on the MNIST CNN: conv1, K = 9, 2.28 -> 1.13 ms; conv2, K = 144, 2.29 -> 4.20 ms,
/// so larger K stay on im2col + GEMM).
pub const PIXEL_LANES_MAX_K: usize = 32;

/// Smallest batch split across threads (smaller ones, batch 1 above all, stay on one).
pub const PARALLEL_MIN_BATCH: usize = 8;

/// Least multiply-accumulates (layer MACs x batch) worth splitting across threads: about
/// 25 us of VNNI work, well above what handing work to another thread costs.
pub const PARALLEL_MIN_MACS: usize = 4_000_000;

/// Runs models with a chosen integer kernel and thread count.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// Integer GEMM path.
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
    pub fn run(&self, model: &QuantModel, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.run_traced(model, x, batch, &mut |_, _| {})
    }

    /// Like [`Self::run`], calling `trace(point, activation)` for point 0 (the input) and
    /// after every node (`point = node + 1`).
    pub fn run_traced(
        &self,
        model: &QuantModel,
        x: &[f32],
        batch: usize,
        trace: &mut dyn FnMut(usize, &Act),
    ) -> Result<Vec<f32>> {
        let expected = batch * model.network.in_len();
        if x.len() != expected {
            return Err(QuantError::InputSize {
                expected,
                found: x.len(),
                batch,
            });
        }
        let mut act = Act::F32(x.to_vec());
        trace(0, &act);
        for (i, node) in model.network.nodes.iter().enumerate() {
            act = match (node, &model.layers[i]) {
                (Node::Dense(d), Some(LayerImpl::F32)) => {
                    Act::F32(self.dense_f32(d, act.into_f32(), batch))
                }
                (Node::Dense(d), Some(LayerImpl::Static(l))) => {
                    let input = act.into_u8(&l.in_q);
                    Act::U8(self.dense_static(d, l, &input, batch), l.out_q)
                }
                (Node::Dense(d), Some(LayerImpl::Dynamic(l))) => {
                    Act::F32(self.dense_dynamic(d, l, &act.into_f32(), batch))
                }
                (Node::Dense(_), None) => {
                    return Err(QuantError::Graph(format!("node {i} has no implementation")));
                }
                (Node::MaxPool(g), _) => match act {
                    Act::F32(v) => Act::F32(maxpool(&v, batch, g)),
                    Act::U8(v, q) => Act::U8(maxpool(&v, batch, g), q),
                },
                (Node::Relu, _) => match act {
                    Act::F32(v) => Act::F32(v.into_iter().map(|x| x.max(0.0)).collect()),
                    Act::U8(v, q) => Act::U8(
                        v.into_iter().map(|x| x.max(q.zero_point as u8)).collect(),
                        q,
                    ),
                },
                (Node::Flatten, _) => act,
            };
            trace(i + 1, &act);
        }
        Ok(act.into_f32())
    }

    fn dense_f32(&self, d: &Dense, x: Vec<f32>, batch: usize) -> Vec<f32> {
        let mut y = vec![0f32; batch * d.out_len()];
        match &d.conv {
            None => f32gemm::xwt(
                batch,
                d.n,
                d.k,
                &x,
                d.k,
                &d.weight,
                &mut y,
                self.threads_for(batch, d),
            ),
            Some(g) => {
                let p = g.pixels();
                self.by_samples(d, batch, &x, &mut y, |inp, o, n| {
                    let mut col = vec![0f32; p * d.k];
                    for b in 0..n {
                        im2col(
                            &inp[b * d.in_len()..(b + 1) * d.in_len()],
                            g,
                            0.0,
                            &mut col,
                            d.k,
                        );
                        f32gemm::w_colt(
                            d.n,
                            p,
                            d.k,
                            &d.weight,
                            &col,
                            &mut o[b * d.n * p..(b + 1) * d.n * p],
                            1,
                        );
                    }
                });
            }
        }
        // Bias and ReLU: rows of `n` (linear) or planes of `pixels` per channel (conv, NCHW).
        let floor = if d.relu { 0.0 } else { f32::NEG_INFINITY };
        let per_value = d.rows_per_sample();
        for chunk in y.chunks_mut(d.n * per_value) {
            for (c, plane) in chunk.chunks_mut(per_value).enumerate() {
                let b = d.bias[c];
                plane.iter_mut().for_each(|v| *v = (*v + b).max(floor));
            }
        }
        y
    }

    /// Quantized input rows for the GEMM: the input itself (linear) or its im2col (conv).
    fn gemm_rows<'a>(
        d: &Dense,
        input: &'a [u8],
        zp: u8,
        batch: usize,
        col: &'a mut Vec<u8>,
    ) -> (usize, &'a [u8], OutLayout) {
        match &d.conv {
            None => (batch, input, OutLayout::RowMajor),
            Some(g) => {
                let (p, in_len) = (g.pixels(), g.in_channels * g.in_hw[0] * g.in_hw[1]);
                col.resize(batch * p * d.k, 0);
                for b in 0..batch {
                    im2col(
                        &input[b * in_len..(b + 1) * in_len],
                        g,
                        zp,
                        &mut col[b * p * d.k..],
                        d.k,
                    );
                }
                (batch * p, &col[..], OutLayout::Nchw { pixels: p })
            }
        }
    }

    fn dense_static(&self, d: &Dense, l: &StaticLayer, input: &[u8], batch: usize) -> Vec<u8> {
        let mut out = vec![0u8; batch * d.out_len()];
        let lo = if d.relu {
            l.out_q.zero_point.max(l.out_q.qmin)
        } else {
            l.out_q.qmin
        };
        let zp = l.in_q.zero_point as u8;
        if let (Some(g), KernelPath::Avx512Vnni) = (&d.conv, self.path)
            && d.k <= PIXEL_LANES_MAX_K
            && crate::kernels::conv_vnni::usable(&l.requant)
        {
            // Pixels in the vector lanes: contiguous NCHW rows, no im2col matrix.
            self.by_samples(d, batch, input, &mut out, |inp, o, n| {
                let mut packed = Vec::new();
                for b in 0..n {
                    crate::kernels::conv_vnni::conv_sample(
                        &inp[b * d.in_len()..(b + 1) * d.in_len()],
                        g,
                        zp,
                        &l.w,
                        &l.offset,
                        &l.requant,
                        l.out_q.zero_point,
                        lo,
                        l.out_q.qmax,
                        &mut o[b * d.out_len()..(b + 1) * d.out_len()],
                        &mut packed,
                    );
                }
            });
            return out;
        }
        self.by_samples(d, batch, input, &mut out, |inp, o, n| {
            let mut col = Vec::new();
            let (m, a, layout) = Self::gemm_rows(d, inp, zp, n, &mut col);
            let mut epi = Epilogue::Requant {
                offset: &l.offset,
                requant: &l.requant,
                zo: l.out_q.zero_point,
                lo,
                hi: l.out_q.qmax,
                layout,
                out: o,
            };
            qgemm(self.path, m, a, d.k, &l.w, &mut epi);
        });
        out
    }

    /// Runs `f(input_samples, output_samples, n)` over the batch of layer `d`, split into
    /// `self.threads` chunks on rayon's pool for batches of [`PARALLEL_MIN_BATCH`] or more
    /// whose layer does at least [`PARALLEL_MIN_MACS`] (samples are independent, so the
    /// result is the same bits as one call). Smaller layers stay on the calling thread:
    /// spawning threads per layer made the MNIST MLP slower at 2 threads than at 1 (int8
    /// batch 64: 420 us against 66 us).
    fn by_samples<T: Sync, O: Send>(
        &self,
        d: &Dense,
        batch: usize,
        input: &[T],
        out: &mut [O],
        f: impl Fn(&[T], &mut [O], usize) + Sync,
    ) {
        let (in_len, out_len) = (d.in_len(), d.out_len());
        let threads = self.threads_for(batch, d).min(batch);
        if threads <= 1 || batch < PARALLEL_MIN_BATCH {
            return f(input, out, batch);
        }
        let per = batch.div_ceil(threads);
        input
            .par_chunks(per * in_len)
            .zip(out.par_chunks_mut(per * out_len))
            .for_each(|(inp, o)| f(inp, o, inp.len() / in_len));
    }

    fn dense_dynamic(&self, d: &Dense, l: &DynamicLayer, x: &[f32], batch: usize) -> Vec<f32> {
        let (lo, hi) = x
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let q = QParams::from_range(lo, hi, ActDtype::U8Affine);
        let mut input = vec![0u8; x.len()];
        quantize_into(x, &q, &mut input);
        let offset: Vec<i32> = l.w.col_sums.iter().map(|&c| -q.zero_point * c).collect();
        let scales: Vec<f32> = l.w_scales.iter().map(|&s| s * q.scale).collect();
        let mut out = vec![0f32; batch * d.out_len()];
        self.by_samples(d, batch, &input, &mut out, |inp, o, n| {
            let mut col = Vec::new();
            let (m, a, layout) = Self::gemm_rows(d, inp, q.zero_point as u8, n, &mut col);
            let mut epi = Epilogue::Dequant {
                offset: &offset,
                scales: &scales,
                bias: &d.bias,
                relu: d.relu,
                layout,
                out: o,
            };
            qgemm(self.path, m, a, d.k, &l.w, &mut epi);
        });
        out
    }

    /// Threads worth using for layer `d` at `batch`: one below [`PARALLEL_MIN_MACS`].
    fn threads_for(&self, batch: usize, d: &Dense) -> usize {
        if batch > 1 && d.macs() * batch >= PARALLEL_MIN_MACS {
            self.threads
        } else {
            1
        }
    }
}

/// Max pooling of `batch` samples of `g.channels` planes, no padding. The common 2x2 / stride 2 case
/// walks row pairs with fixed-size windows so it vectorises; other shapes take the general loop.
fn maxpool<T: Copy + PartialOrd>(x: &[T], batch: usize, g: &PoolGeom) -> Vec<T> {
    let planes = batch * g.channels;
    let ([h, w], [oh, ow], k, s) = (g.in_hw, g.out_hw, g.kernel, g.stride);
    let max = |a: T, b: T| if b > a { b } else { a };
    let mut y = Vec::with_capacity(planes * oh * ow);
    if k == [2, 2] && s == [2, 2] {
        for p in 0..planes {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                let (r0, r1) = (
                    &plane[2 * oy * w..2 * oy * w + 2 * ow],
                    &plane[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow],
                );
                y.extend(
                    r0.chunks_exact(2)
                        .zip(r1.chunks_exact(2))
                        .map(|(a, b)| max(max(a[0], a[1]), max(b[0], b[1]))),
                );
            }
        }
        return y;
    }
    for p in 0..planes {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = plane[oy * s[0] * w + ox * s[1]];
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        m = max(m, plane[(oy * s[0] + ky) * w + ox * s[1] + kx]);
                    }
                }
                y.push(m);
            }
        }
    }
    y
}
