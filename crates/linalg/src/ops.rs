//! One table of operations per kernel path, filled once from the CPU's features: the engine
//! asks its path's [`Ops`] for every kernel and never names an instruction set. A path that
//! has no fast form of an operation says so (`None` from [`Ops::requantizer`]), and the
//! caller takes the general route, which every path has.

use std::sync::OnceLock;

use crate::cpu::CpuFeatures;
use crate::frame::activation::Activation;
use crate::frame::add::{QAdd, VectorAdd};
use crate::frame::depthwise::{self, DwSample};
use crate::frame::epilogue::Epilogue;
use crate::frame::geom::ConvGeom;
use crate::frame::pack::{Packed, Packed16};
use crate::frame::requant::Requant;
use crate::frame::rows::{PoolShape, Rows, gather};
use crate::frame::sgemm::{self, PackedF32};
use crate::frame::weights::{I8Layout, PackedI8, QWeights};
use crate::frame::{quantize, scalar};
use crate::path::KernelPath;

/// `(zero point, lower clamp, upper clamp)` of a requantized output.
pub type Clamp = (i32, i32, i32);

type QgemmFn = fn(usize, &[u8], usize, &PackedI8, &mut Epilogue);
type QgemmRowsFn = fn(&Rows<u8>, &PackedI8, &mut Epilogue);
type ConvPoolFn =
    fn(&Rows<u8>, &PackedI8, &Requantizer, Clamp, PoolShape, &mut Vec<i32>, &mut [u8]);
type SgemmFn = fn(&Rows<f32>, &PackedF32, Activation, &mut [f32]);
type SgemmPoolFn = fn(&Rows<f32>, &PackedF32, bool, PoolShape, &mut [f32]) -> bool;
type EpilogueFn = fn(&mut Epilogue, usize, usize, usize, &[i32], usize);
type AddFn = fn(&VectorAdd, &[u8], &mut [u8]);
type DwF32Fn = fn(DwSample<f32, f32>, &[f32], Activation, &mut [f32]);
type DwDirectFn = fn(&[f32], &ConvGeom, &[f32], &[f32], Activation, &mut [f32]) -> bool;
type DwI32Fn = fn(DwSample<u8, i16>, usize, &mut [i32]);

/// A path's GEMMs with the requantization done in registers, from constants prepared once.
#[derive(Clone, Copy)]
struct FusedOps {
    prepare: fn(&[i32], &[Requant], &PackedI8) -> Option<Requantizer>,
    /// A requantizer for `n` outputs without packed weights (depthwise layers).
    outputs: fn(&[i32], &[Requant], usize) -> Option<Requantizer>,
    depthwise: fn(DwSample<u8, i16>, &Requantizer, Clamp, &mut [u8]),
    gemm: fn(&Rows<u8>, &PackedI8, &Requantizer, Clamp, &mut [u8]),
    conv_pool: ConvPoolFn,
}

/// The kernels of one path.
pub struct Ops {
    path: KernelPath,
    f32_name: &'static str,
    layout: fn(&QWeights) -> I8Layout,
    qgemm: QgemmFn,
    /// The GEMM reading a convolution's rows where they lie (segments in whole groups of
    /// 4); `None` where the rows are gathered into a matrix first.
    qgemm_rows: Option<QgemmRowsFn>,
    fused: Option<FusedOps>,
    sgemm: SgemmFn,
    /// The float convolution with the max pool after it in registers, for the pools it
    /// takes (it says whether it ran).
    sgemm_pool: Option<SgemmPoolFn>,
    /// The epilogue over a block of accumulators computed outside the GEMMs (depthwise
    /// convolutions): vectorised where the path has a vector requantizer.
    epilogue: EpilogueFn,
    /// What a convolution's int8 segments (one kernel row each) are padded to a multiple
    /// of: 4 where the kernels take K in groups of 4 (VNNI's `vpdpbusd`, and the scalar
    /// path, kept as it was), 2 for AVX2's i16 pairs.
    seg_multiple: usize,
    /// The integer Add's vector kernel (`None`: the caller's table or the scalar rule).
    add: Option<AddFn>,
    /// The float depthwise over a padded sample.
    depthwise_f32: DwF32Fn,
    /// The float depthwise over an unpadded sample, where the path has one for the layer
    /// (it says whether it ran).
    depthwise_direct: DwDirectFn,
    /// The int8 depthwise into i32 accumulators.
    depthwise_i32: DwI32Fn,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("path", &self.path)
            .field("f32", &self.f32_name)
            .field("reads_rows_in_place", &self.qgemm_rows.is_some())
            .field("fused_requant", &self.fused.is_some())
            .finish()
    }
}

/// A layer's requantization constants laid out for one path's fused epilogue, built once
/// per prepared model (see [`Ops::requantizer`]).
#[derive(Debug, Clone)]
pub struct Requantizer {
    path: KernelPath,
    #[allow(dead_code)] // read by the x86-64 kernels only
    inner: RequantImpl,
}

#[derive(Debug, Clone)]
enum RequantImpl {
    #[cfg(target_arch = "x86_64")]
    Vnni(crate::x86_64::avx512::Requantizer),
}

impl Ops {
    /// The path these kernels belong to.
    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// Name of the float kernels (`avx512f`, `avx2-fma`, `scalar`).
    pub fn f32_name(&self) -> &'static str {
        self.f32_name
    }

    /// What a convolution's int8 segments (`kw * c` values each) are rounded up to a
    /// multiple of for this path's GEMM: the zero-weighted values read past a kernel row
    /// are work, so each path pads only as far as its kernels need (a 5x5 kernel over one
    /// channel: 8 per row for VNNI's groups of 4, 6 for AVX2's pairs).
    pub fn seg_multiple(&self) -> usize {
        self.seg_multiple
    }

    /// `w` in the layout this path's kernels read.
    pub fn pack(&self, w: &QWeights) -> PackedI8 {
        PackedI8::new(w, (self.layout)(w))
    }

    /// `u8 [m, k] x i8 [n, k]^T -> i32` over a matrix (row stride `lda >= k`), fed to `epi`
    /// in row blocks. Each kernel checks the buffer itself (the SIMD ones before their
    /// `unsafe` body, the scalar one by slice bounds), so this does not check it again.
    pub fn qgemm(&self, m: usize, a: &[u8], lda: usize, w: &PackedI8, epi: &mut Epilogue) {
        (self.qgemm)(m, a, lda, w, epi)
    }

    /// Applies `epi` to `rows` rows of `n` accumulators (`acc[r * stride..][..n]`, rows
    /// `row0..`) computed outside this table's GEMMs, the same bits on every path.
    pub fn epilogue(
        &self,
        epi: &mut Epilogue,
        row0: usize,
        rows: usize,
        n: usize,
        acc: &[i32],
        stride: usize,
    ) {
        (self.epilogue)(epi, row0, rows, n, acc, stride)
    }

    /// The GEMM over any [`Rows`] (a convolution read tap by tap, segments in whole groups
    /// of 4): in place where the path can, otherwise gathered into `scratch` first.
    pub fn qgemm_rows(
        &self,
        rows: &Rows<u8>,
        w: &PackedI8,
        epi: &mut Epilogue,
        scratch: &mut Vec<u8>,
    ) {
        match self.qgemm_rows {
            Some(f) => f(rows, w, epi),
            None => {
                scratch.resize(rows.m * w.k, 0);
                gather(rows, scratch);
                self.qgemm(rows.m, scratch, w.k, w, epi);
            }
        }
    }

    /// Constants for [`Self::qgemm_requant`] and [`Self::conv_pool`]; `None` where this path
    /// has no fused epilogue or a multiplier needs the general one (the saturating case).
    pub fn requantizer(
        &self,
        offset: &[i32],
        requant: &[Requant],
        w: &PackedI8,
    ) -> Option<Requantizer> {
        (self.fused?.prepare)(offset, requant, w)
    }

    /// Constants for [`Self::depthwise_requant`]: a depthwise layer's `n` channels.
    pub fn depthwise_requantizer(
        &self,
        offset: &[i32],
        requant: &[Requant],
        n: usize,
    ) -> Option<Requantizer> {
        (self.fused?.outputs)(offset, requant, n)
    }

    /// A static depthwise layer on one padded sample, requantized as it is computed:
    /// `out` is `[pixels, c]` bytes, `rq` from [`Self::depthwise_requantizer`].
    pub fn depthwise_requant(
        &self,
        x: DwSample<u8, i16>,
        rq: &Requantizer,
        c: Clamp,
        out: &mut [u8],
    ) {
        (self.fused(rq).depthwise)(x, rq, c, out)
    }

    fn fused(&self, rq: &Requantizer) -> FusedOps {
        assert_eq!(rq.path, self.path, "requantizer built for another path");
        self.fused
            .expect("a requantizer exists only for a path with fused kernels")
    }

    /// The static GEMM requantized in registers, `out` row-major `[rows, n]`.
    pub fn qgemm_requant(
        &self,
        rows: &Rows<u8>,
        w: &PackedI8,
        rq: &Requantizer,
        c: Clamp,
        out: &mut [u8],
    ) {
        (self.fused(rq).gemm)(rows, w, rq, c, out)
    }

    /// A static convolution and the non-overlapping max pool after it in one pass: the i32
    /// accumulators are max-reduced per pooled pixel and only the pooled pixels are
    /// requantized. Exact: requantization (`acc + offset`, a positive multiplier, the ReLU
    /// clamp) is monotonic, so it commutes with max. `out` is `[pooled pixels, n]`.
    #[allow(clippy::too_many_arguments)] // a GEMM, its requantization, the pool and buffers
    pub fn conv_pool(
        &self,
        rows: &Rows<u8>,
        w: &PackedI8,
        rq: &Requantizer,
        c: Clamp,
        pool: PoolShape,
        buf: &mut Vec<i32>,
        out: &mut [u8],
    ) {
        (self.fused(rq).conv_pool)(rows, w, rq, c, pool, buf, out)
    }

    /// A float convolution and the non-overlapping max pool after it in one pass (`out` is
    /// `[pooled pixels, n]`, bias and ReLU applied), where this path's float kernels have
    /// that form for `pool`; `false`, with nothing written, where not: the caller then runs
    /// [`Self::sgemm`] into a map and pools it, which gives the same values.
    pub fn sgemm_pool(
        &self,
        rows: &Rows<f32>,
        w: &PackedF32,
        relu: bool,
        pool: PoolShape,
        out: &mut [f32],
    ) -> bool {
        self.sgemm_pool.is_some_and(|f| f(rows, w, relu, pool, out))
    }

    /// `b[i] = a[i] (+) b[i]`, the integer Add of a residual block, on this path's vector
    /// kernel (bit-identical to [`QAdd::apply`]). Returns `false`, with nothing written,
    /// where this Add has no vector form (a scale ratio of 4 or more) or the path no kernel:
    /// the caller then takes its own route (a table, or [`QAdd::run_scalar`]).
    pub fn add_u8(&self, add: &QAdd, a: &[u8], b: &mut [u8]) -> bool {
        assert_eq!(a.len(), b.len(), "the two sides of an Add differ in length");
        match (self.add, add.vector()) {
            (Some(f), Some(v)) => {
                f(&v, a, b);
                true
            }
            _ => false,
        }
    }

    /// [`crate::frame::depthwise::depthwise_f32`] on this path's kernel.
    pub fn depthwise_f32(
        &self,
        x: DwSample<f32, f32>,
        bias: &[f32],
        act: Activation,
        out: &mut [f32],
    ) {
        (self.depthwise_f32)(x, bias, act, out)
    }

    /// [`crate::frame::depthwise::depthwise_f32_direct`] where this path has the kernel
    /// (`false`, with nothing written, elsewhere).
    pub fn depthwise_f32_direct(
        &self,
        x: &[f32],
        g: &ConvGeom,
        w: &[f32],
        bias: &[f32],
        act: Activation,
        out: &mut [f32],
    ) -> bool {
        (self.depthwise_direct)(x, g, w, bias, act, out)
    }

    /// [`crate::frame::depthwise::depthwise_i32`] on this path's kernel.
    pub fn depthwise_i32(&self, x: DwSample<u8, i16>, c: usize, acc: &mut [i32]) {
        (self.depthwise_i32)(x, c, acc)
    }

    /// The float layer `out = act(bias + rows x w^T)`, row-major, the activation (ReLU,
    /// and a ReLU6's cap) applied as each output is stored.
    pub fn sgemm(&self, rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
        (self.sgemm)(rows, w, act, out)
    }
}

/// `out[i] = clamp(round_half_even(x[i] / scale) + zp, lo, hi)` given `inv = 1 / scale`, on
/// the fastest quantizer this CPU has (all bit-identical to the scalar rule).
pub fn quantize_u8(x: &[f32], inv: f32, zp: i32, lo: i32, hi: i32, out: &mut [u8]) {
    assert_eq!(
        x.len(),
        out.len(),
        "quantize: input and output lengths differ"
    );
    #[cfg(target_arch = "x86_64")]
    if CpuFeatures::get().avx512_f32() {
        return crate::x86_64::quantize::quantize_avx512(x, inv, zp, lo, hi, out);
    }
    #[cfg(target_arch = "x86_64")]
    if CpuFeatures::get().avx2 {
        return crate::x86_64::quantize::quantize_avx2(x, inv, zp, lo, hi, out);
    }
    quantize::quantize_slice(x, inv, zp, lo, hi, out)
}

/// `b[i] = a[i] (+) b[i]`, the integer Add of a residual block, on the fastest path's
/// vector kernel ([`Ops::add_u8`] of [`KernelPath::detect`]).
pub fn add_u8(add: &QAdd, a: &[u8], b: &mut [u8]) -> bool {
    KernelPath::detect().ops().add_u8(add, a, b)
}

fn scalar_sgemm(rows: &Rows<f32>, w: &PackedF32, act: Activation, out: &mut [f32]) {
    sgemm::check(rows, w, out);
    sgemm::scalar(rows, w, act, out)
}

/// The table for `path` (built on first use; the caller has checked availability).
fn table(path: KernelPath) -> &'static Ops {
    static TABLE: OnceLock<[Ops; 3]> = OnceLock::new();
    let t = TABLE.get_or_init(|| KernelPath::ALL.map(build));
    &t[KernelPath::ALL
        .iter()
        .position(|p| *p == path)
        .expect("every path has a table")]
}

fn build(path: KernelPath) -> Ops {
    let scalar_ops = Ops {
        path,
        f32_name: "scalar",
        layout: |w| I8Layout::RowMajor(w.w.clone()),
        qgemm: scalar::qgemm,
        qgemm_rows: None,
        fused: None,
        sgemm: scalar_sgemm,
        sgemm_pool: None,
        epilogue: |epi, row0, rows, n, acc, stride| epi.apply_block(row0, rows, n, acc, stride),
        seg_multiple: 4,
        add: None,
        depthwise_f32: |x, bias, act, out| {
            x.check(bias.len(), out.len());
            depthwise::depthwise_scalar(x, bias, act, out)
        },
        depthwise_direct: |_, _, _, _, _, _| false,
        depthwise_i32: |x, c, acc| {
            x.check(c, acc.len());
            depthwise::depthwise_i32_scalar(x, c, acc)
        },
    };
    match path {
        KernelPath::Scalar => scalar_ops,
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512Vnni => x86_64_ops(path, scalar_ops),
        #[cfg(not(target_arch = "x86_64"))]
        _ => scalar_ops,
    }
}

/// An x86-64 table: the scalar one with what the path has replaced. The float kernels are
/// the widest this CPU runs (AVX-512F on the VNNI path, else AVX2 + FMA, else scalar).
#[cfg(target_arch = "x86_64")]
fn x86_64_ops(path: KernelPath, base: Ops) -> Ops {
    use crate::x86_64::{add, avx2, avx512, depthwise as dw, sgemm as x86_sgemm, sgemm_pool};
    let cpu = CpuFeatures::get();
    // The float depthwise of the path's float kernels (AVX-512 for 3x3 on the VNNI path).
    let depthwise_f32: DwF32Fn = if cpu.avx512_f32() && path == KernelPath::Avx512Vnni {
        |x, bias, act, out| {
            if x.offsets.len() == 9 {
                dw::depthwise_avx512(x, bias, act, out)
            } else {
                dw::depthwise_avx2(x, bias, act, out)
            }
        }
    } else if cpu.avx2_fma() {
        dw::depthwise_avx2
    } else {
        base.depthwise_f32
    };
    let (f32_name, sgemm, sgemm_pool): (&'static str, SgemmFn, Option<SgemmPoolFn>) =
        if cpu.avx512f && path == KernelPath::Avx512Vnni {
            (
                "avx512f",
                x86_sgemm::sgemm_avx512,
                Some(sgemm_pool::sgemm_pool2_avx512),
            )
        } else if cpu.avx2_fma() {
            ("avx2-fma", x86_sgemm::sgemm_avx2_fma, None)
        } else {
            ("scalar", scalar_sgemm, None)
        };
    match path {
        KernelPath::Avx512Vnni => Ops {
            f32_name,
            sgemm,
            sgemm_pool,
            layout: |w| I8Layout::Quads(Packed::new(&w.w, w.n, w.k)),
            qgemm: avx512::qgemm,
            qgemm_rows: Some(avx512::qgemm_rows),
            epilogue: avx2::epilogue,
            fused: Some(FusedOps {
                prepare: |offset, requant, w| {
                    avx512::Requantizer::new(offset, requant, w).map(|r| Requantizer {
                        path: KernelPath::Avx512Vnni,
                        inner: RequantImpl::Vnni(r),
                    })
                },
                gemm: |rows, w, rq, c, out| {
                    let RequantImpl::Vnni(r) = &rq.inner;
                    avx512::qgemm_requant(rows, w, r, c, out)
                },
                conv_pool: |rows, w, rq, c, pool, buf, out| {
                    let RequantImpl::Vnni(r) = &rq.inner;
                    avx512::conv_pool_rows(rows, w, r, c, pool, buf, out)
                },
                outputs: |offset, requant, n| {
                    avx512::Requantizer::for_outputs(offset, requant, n).map(|r| Requantizer {
                        path: KernelPath::Avx512Vnni,
                        inner: RequantImpl::Vnni(r),
                    })
                },
                depthwise: |x, rq, c, out| {
                    let RequantImpl::Vnni(r) = &rq.inner;
                    crate::x86_64::depthwise::depthwise_requant_vnni(x, r, c, out)
                },
            }),
            add: Some(add::add_vnni),
            depthwise_f32,
            depthwise_direct: depthwise::depthwise_f32_direct,
            depthwise_i32: dw::depthwise_i32_vnni,
            ..base
        },
        _ => Ops {
            f32_name,
            sgemm,
            sgemm_pool,
            layout: |w| I8Layout::Pairs(Packed16::new(&w.w, w.n, w.k)),
            qgemm: avx2::qgemm,
            qgemm_rows: Some(avx2::qgemm_rows),
            epilogue: avx2::epilogue,
            seg_multiple: 2,
            add: Some(add::add_avx2),
            depthwise_f32,
            depthwise_i32: dw::depthwise_i32_avx2,
            ..base
        },
    }
}

impl KernelPath {
    /// This path's operations. Panics if the CPU cannot run it (check
    /// [`KernelPath::available`], or get the path from [`KernelPath::detect`] or parsing,
    /// which do).
    pub fn ops(self) -> &'static Ops {
        assert!(
            self.available(),
            "{} kernels called on a CPU without them",
            self.as_str()
        );
        table(self)
    }

    /// The float kernels that run alongside this path on this CPU (see [`Ops::sgemm`]).
    pub fn f32_name(self) -> &'static str {
        self.ops().f32_name()
    }
}
