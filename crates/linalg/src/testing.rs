//! The self-test every kernel path runs against the scalar reference: `self_test!(module,
//! path)` (invoked at the end of this file, once per path) expands to a test module
//! checking, for that path, the raw int8 GEMM on random and odd shapes, the requantizing
//! epilogue, the extremes that would saturate a 16-bit intermediate, rows read in place
//! against the same rows gathered, the fused requantization and convolution + max pool
//! where the path has them, one-panel layers of small reductions, the float GEMM against an f64 reference and its fused
//! convolution + pool against its pooled map. On a CPU without
//! the path the tests say so on one line and check nothing else.

use quantlab_data::rng::Rng;

use crate::frame::activation::Activation;
use crate::frame::epilogue::{Epilogue, OutLayout};
use crate::frame::geom::{ConvGeom, PoolGeom};
use crate::frame::nhwc::{self, Taps};
use crate::frame::requant::Requant;
use crate::frame::rows::{PoolShape, RowMap, Rows};
use crate::frame::sgemm::PackedF32;
use crate::frame::weights::{PackedI8, QWeights};
use crate::{KernelPath, Ops};

/// Largest K the models use (the CNN's first linear layer: 32 * 7 * 7).
pub const LARGEST_K: usize = 1568;

/// Largest difference allowed between a float path and the f64 reference (FMA against
/// separate multiply and add, over at most 90 products of values below 0.5).
pub const F32_TOLERANCE: f32 = 1e-4;

/// The path's operations, or `None` (after saying so) where this CPU lacks it.
pub fn ops_or_skip(path: KernelPath, test: &str) -> Option<&'static Ops> {
    if path.available() {
        Some(path.ops())
    } else {
        println!(
            "{test}: skipped, this CPU cannot run the {} kernels",
            path.as_str()
        );
        None
    }
}

fn reference() -> &'static Ops {
    KernelPath::Scalar.ops()
}

fn random_weights(rng: &mut Rng, n: usize, k: usize) -> QWeights {
    QWeights::new(
        (0..n * k)
            .map(|_| (rng.below(255) as i32 - 127) as i8)
            .collect(),
        n,
        k,
    )
}

fn raw(ops: &Ops, m: usize, a: &[u8], lda: usize, w: &QWeights) -> Vec<i32> {
    let mut out = vec![0i32; m * w.n];
    ops.qgemm(
        m,
        a,
        lda,
        &ops.pack(w),
        &mut Epilogue::Raw { out: &mut out },
    );
    out
}

/// The raw GEMM on random and odd shapes equals the reference's.
pub fn raw_gemm(ops: &Ops) {
    let mut rng = Rng::new(21);
    let mut shapes = vec![
        (512, 64, 64),
        (64, 50, 784),
        (1, 10, 30),
        (3, 17, 5),
        (67, 67, 67),
    ];
    for _ in 0..60 {
        shapes.push((1 + rng.below(67), 1 + rng.below(67), 1 + rng.below(200)));
    }
    for (m, n, k) in shapes {
        let lda = k + rng.below(3);
        let a: Vec<u8> = (0..m * lda).map(|_| rng.below(256) as u8).collect();
        let qw = random_weights(&mut rng, n, k);
        let want = raw(reference(), m, &a, lda, &qw);
        assert_eq!(
            raw(ops, m, &a, lda, &qw),
            want,
            "{:?} m={m} n={n} k={k}",
            ops.path()
        );
    }
}

/// `count` requantization multipliers of case `case`: `10^(lo + span * u)` for uniform `u`,
/// as small as real layers' (every shift 33 or more: the vector epilogues' short form), but
/// in every fourth case from 0.01 to 3 (shifts 38 down to 30: the general form, alone or
/// beside the short one in a layer).
fn multipliers(rng: &mut Rng, count: usize, case: usize, (lo, span): (f64, f64)) -> Vec<Requant> {
    let (lo, span) = if case % 4 == 1 {
        (-2.0, 2.5)
    } else {
        (lo, span)
    };
    (0..count)
        .map(|_| Requant::new(10f64.powf(lo + span * rng.uniform())))
        .collect()
}

/// The requantizing epilogue (both layouts, per-tensor and per-channel) equals the
/// reference's; so does the fused requantization where the path has one.
pub fn requant_epilogue(ops: &Ops) {
    let mut rng = Rng::new(33);
    for case in 0..40 {
        let (m, n, k) = (1 + rng.below(40), 1 + rng.below(70), 1 + rng.below(150));
        // Every fifth case one whole panel (rows written four at a time where fused).
        let n = if case % 5 == 0 { 16 } else { n };
        let a: Vec<u8> = (0..m * k).map(|_| rng.below(256) as u8).collect();
        let qw = random_weights(&mut rng, n, k);
        let offset: Vec<i32> = (0..n).map(|_| rng.below(20_001) as i32 - 10_000).collect();
        let per_channel = case % 2 == 0;
        let requant = multipliers(&mut rng, if per_channel { n } else { 1 }, case, (-6.0, 5.0));
        let pixels = [1, 3, 7][case % 3].min(m);
        let layout = if m % pixels == 0 && pixels > 1 {
            OutLayout::Nchw { pixels }
        } else {
            OutLayout::RowMajor
        };
        let clamp @ (zo, lo, hi) = (
            rng.below(256) as i32,
            if case % 3 == 0 { 17 } else { 0 },
            if case % 4 == 3 { 215 } else { 255 },
        );
        let run = |ops: &Ops, layout| {
            let mut out = vec![0u8; m * n];
            let mut epi = Epilogue::Requant {
                offset: &offset,
                requant: &requant,
                zo,
                lo,
                hi,
                layout,
                out: &mut out,
            };
            ops.qgemm(m, &a, k, &ops.pack(&qw), &mut epi);
            out
        };
        let want = run(reference(), layout);
        assert!(
            run(ops, layout) == want,
            "{:?} case {case}: m={m} n={n} k={k} {layout:?}",
            ops.path()
        );
        let packed = ops.pack(&qw);
        if let Some(rq) = ops.requantizer(&offset, &requant, &packed) {
            let row_major = run(reference(), OutLayout::RowMajor);
            let mut out = vec![0u8; m * n];
            ops.qgemm_requant(&Rows::matrix(&a, m, k, k), &packed, &rq, clamp, &mut out);
            assert!(
                out == row_major,
                "{:?} fused case {case}: m={m} n={n} k={k}",
                ops.path()
            );
        }
    }
}

/// All-255 activations against all -127 (and -128) weights at the largest K: an i16
/// intermediate would saturate; the exact sum is `255 * w * K`.
pub fn extremes(ops: &Ops) {
    for wv in [-128i8, -127, 127] {
        let (m, n, k) = (3, 19, LARGEST_K);
        let a = vec![255u8; m * k];
        let qw = QWeights::new(vec![wv; n * k], n, k);
        let want = vec![255 * wv as i32 * k as i32; m * n];
        assert_eq!(raw(ops, m, &a, k, &qw), want, "{:?} w={wv}", ops.path());
    }
}

/// Rows read where they lie (segments of whole groups of 4, as a convolution's) give the
/// same result as the same rows gathered into a matrix.
pub fn rows_in_place(ops: &Ops) {
    let mut rng = Rng::new(8);
    for _ in 0..20 {
        let (m, n, segs_n, seg_len) = (
            1 + rng.below(30),
            1 + rng.below(40),
            1 + rng.below(4),
            4 * (1 + rng.below(5)),
        );
        let stride = segs_n * seg_len + rng.below(9);
        let segs: Vec<usize> = (0..segs_n).map(|s| s * (seg_len + 3)).collect();
        let a: Vec<u8> = (0..m * stride + segs_n * (seg_len + 3) + 8)
            .map(|_| rng.below(256) as u8)
            .collect();
        let rows = Rows {
            a: &a,
            m,
            segs: &segs,
            seg_len,
            map: RowMap::Strided { lda: stride },
        };
        check_rows(ops, &mut rng, &rows, n);
    }
    // A convolution's rows: output pixels `[oh, ow]` at strides over a shared input, one
    // segment per kernel row, overlapping (each input value read by several rows).
    let mut overlapping = 0;
    for _ in 0..30 {
        let (oh, ow, n, segs_n, seg_len) = (
            1 + rng.below(6),
            1 + rng.below(9),
            1 + rng.below(40),
            1 + rng.below(5),
            4 * (1 + rng.below(4)),
        );
        let col_step = 1 + rng.below(seg_len + 2);
        let row_step = ow * col_step + rng.below(7);
        let segs: Vec<usize> = (0..segs_n).map(|s| s * row_step).collect();
        let len = (oh - 1) * row_step + (ow - 1) * col_step + segs[segs_n - 1] + seg_len;
        let a: Vec<u8> = (0..len + rng.below(3))
            .map(|_| rng.below(256) as u8)
            .collect();
        let rows = Rows {
            a: &a,
            m: oh * ow,
            segs: &segs,
            seg_len,
            map: RowMap::Conv {
                row_step,
                col_step,
                ow,
            },
        };
        overlapping += usize::from(a.len() < rows.m * rows.k());
        check_rows(ops, &mut rng, &rows, n);
    }
    assert!(overlapping >= 10, "only {overlapping} cases overlap");
}

/// A convolution of test case `case` and the non-overlapping `window` pool after it with
/// `n` outputs: input channels cycling through 1, 3, 16 and 5, kernels through `kernels`,
/// maps of 3 to 13 pixels a side, strides of 1 or 2, padding below `pad_below`; `None`
/// where the kernel or the window does not fit.
fn conv_case(
    rng: &mut Rng,
    case: usize,
    kernels: &[[usize; 2]],
    pad_below: usize,
    window: [usize; 2],
    n: usize,
) -> Option<(ConvGeom, PoolGeom)> {
    let c = [1, 3, 16, 5][case % 4];
    let hw = [3 + rng.below(11), 3 + rng.below(11)];
    let kernel = kernels[case / 4 % kernels.len()];
    let stride = [1 + rng.below(2), 1 + rng.below(2)];
    let pad = [rng.below(pad_below), rng.below(pad_below)];
    let g = ConvGeom::new(c, hw, kernel, stride, pad)?;
    let pg = PoolGeom::new(n, g.out_hw, window, window)?;
    Some((g, pg))
}

/// `rows` through `ops`' requantizing epilogue into a row-major `[rows.m, n]` map.
fn requantized(
    ops: &Ops,
    rows: &Rows<u8>,
    w: &PackedI8,
    (offset, requant): (&[i32], &[Requant]),
    (zo, lo, hi): (i32, i32, i32),
) -> Vec<u8> {
    let mut out = vec![0u8; rows.m * w.n];
    let mut epi = Epilogue::Requant {
        offset,
        requant,
        zo,
        lo,
        hi,
        layout: OutLayout::RowMajor,
        out: &mut out,
    };
    ops.qgemm_rows(rows, w, &mut epi, &mut Vec::new());
    out
}

/// The reference's [`requantized`] of `rows`, gathered into a matrix first.
fn requantized_reference(
    rows: &Rows<u8>,
    qw: &QWeights,
    layer: (&[i32], &[Requant]),
    clamp: (i32, i32, i32),
) -> Vec<u8> {
    let mut flat = vec![0u8; rows.m * rows.k()];
    crate::frame::rows::gather(rows, &mut flat);
    let flat_rows = Rows::matrix(&flat, rows.m, rows.k(), rows.k());
    requantized(reference(), &flat_rows, &reference().pack(qw), layer, clamp)
}

/// The fused convolution + max pool (where the path has one) against the reference's
/// requantized convolution pooled afterwards: 2x2 windows (the in-register kernel) and
/// others (the general one), one to three panels of outputs, odd maps whose last row or
/// column no window covers, strides, padding, one to sixteen input channels.
pub fn conv_pool(ops: &Ops) {
    let mut rng = Rng::new(44);
    let mut fused = 0;
    for case in 0..48 {
        let kernels = [[3, 3], [1, 1], [2, 3], [3, 1]];
        let windows = [[2, 2], [2, 2], [3, 3], [1, 2], [2, 1], [3, 2]];
        let n = [16, 5, 32, 40, 17, 12][case / 2 % 6];
        let Some((g, pg)) = conv_case(&mut rng, case, &kernels, 2, windows[case % 6], n) else {
            continue;
        };
        let taps = Taps::new(&g);
        let x: Vec<u8> = (0..g.in_channels * g.in_hw[0] * g.in_hw[1])
            .map(|_| rng.below(256) as u8)
            .collect();
        let mut padded = Vec::new();
        nhwc::pad(&x, &g, rng.below(256) as u8, &mut padded);
        let rows = taps.rows(&padded, g.pixels(), taps.seg_len_to(ops.seg_multiple()));
        let qw = random_weights(&mut rng, n, rows.k());
        let packed = ops.pack(&qw);
        let offset: Vec<i32> = (0..n).map(|_| rng.below(40_001) as i32 - 20_000).collect();
        let requant = multipliers(&mut rng, n, case, (-5.5, 3.0));
        let Some(rq) = ops.requantizer(&offset, &requant, &packed) else {
            continue;
        };
        fused += 1;
        let zo = rng.below(256) as i32;
        let clamp = (zo, if case % 3 == 0 { zo } else { 0 }, 255);
        // The reference: every conv pixel requantized, then pooled.
        let conv = requantized_reference(&rows, &qw, (&offset, &requant), clamp);
        let pooled = pg.out_hw[0] * pg.out_hw[1];
        let mut want = vec![0u8; pooled * n];
        nhwc::maxpool(&conv, 1, &pg, &mut want);
        let shape = PoolShape::after(&g, &pg);
        let mut got = vec![0u8; pooled * n];
        ops.conv_pool(&rows, &packed, &rq, clamp, shape, &mut Vec::new(), &mut got);
        assert!(got == want, "{:?} case {case}: {g:?}, {pg:?}", ops.path());
    }
    if ops.path() == KernelPath::Avx512Vnni {
        assert!(fused >= 30, "only {fused} fused cases ran");
    }
}

/// Small layers, requantized, and pooled 2x2 where the path fuses it, against the
/// reference. Reductions of one to four groups of four into one to four panels of 16 (the
/// first convolution of an image model, pointwise ones over 8 or 16 channels; on the VNNI
/// path, the kernel that keeps a panel's weights in registers; 32 channels: the GEMM) and convolutions of one to
/// nine outputs (one to eight: pixels in the lanes), up to 5x5 over one to 32 channels: maps whose blocks of pixels cross output rows
/// and end part-way, strides, padding, clamps at the zero point and below 255, multipliers
/// so small in every fourth case that the zero point cannot ride in the rounding term (the
/// general kernels then); and matrices of K = 4 to 16, three of 32 outputs over odd row counts.
pub fn small_reductions(ops: &Ops) {
    let mut rng = Rng::new(46);
    let shapes = [
        (1, [3, 3]),
        (1, [2, 3]),
        (1, [4, 4]),
        (1, [3, 1]),
        (2, [2, 2]),
        (4, [1, 1]),
        (1, [5, 5]),
        (3, [3, 3]),
        (2, [5, 5]),
        (16, [1, 1]),
        (32, [1, 1]),
        (8, [1, 1]),
    ];
    let outputs = [16, 6, 16, 12, 1, 8, 5, 16, 3, 9, 2, 7, 4, 32, 40, 64, 17];
    let mut cases: Vec<(Vec<u8>, Option<ConvGeom>, usize, usize)> = Vec::new();
    for case in 0..96 {
        let (c, kernel) = shapes[case % shapes.len()];
        let hw = [kernel[0] + rng.below(20), kernel[1] + rng.below(40)];
        let stride = [1 + rng.below(2), 1 + rng.below(2)];
        let pad = [rng.below(2), rng.below(2)];
        let g = ConvGeom::new(c, hw, kernel, stride, pad).expect("the kernel fits");
        let x: Vec<u8> = (0..c * hw[0] * hw[1])
            .map(|_| rng.below(256) as u8)
            .collect();
        let mut padded = Vec::new();
        nhwc::pad(&x, &g, rng.below(256) as u8, &mut padded);
        cases.push((padded, Some(g), case, 0));
    }
    for case in 96..108 {
        let (m, k) = (1 + rng.below(40), 4 * (1 + case % 4));
        let a: Vec<u8> = (0..m * k).map(|_| rng.below(256) as u8).collect();
        cases.push((a, None, case, m));
    }
    // 32 outputs (two panels) over row counts that are not multiples of 4, with multipliers
    // that fold the zero point: the VNNI kernel's two rows at once, then its last rows.
    for (case, m, k) in [(132, 7, 16), (149, 13, 8), (166, 5, 12)] {
        assert_eq!(
            outputs[case % outputs.len()],
            32,
            "case {case} has 32 outputs"
        );
        let a: Vec<u8> = (0..m * k).map(|_| rng.below(256) as u8).collect();
        cases.push((a, None, case, m));
    }
    for (a, g, case, m) in &cases {
        let taps = g.as_ref().map(Taps::new);
        let rows = match (g, &taps) {
            (Some(g), Some(t)) => t.rows(a, g.pixels(), t.seg_len_to(ops.seg_multiple())),
            _ => Rows::matrix(a, *m, a.len() / m, a.len() / m),
        };
        let n = outputs[case % outputs.len()];
        let qw = random_weights(&mut rng, n, rows.k());
        let packed = ops.pack(&qw);
        let offset: Vec<i32> = (0..n).map(|_| rng.below(40_001) as i32 - 20_000).collect();
        let requant = if case % 4 == 3 {
            (0..n)
                .map(|_| Requant::new(10f64.powf(-9.0 + 0.5 * rng.uniform())))
                .collect()
        } else {
            multipliers(&mut rng, n, *case, (-5.5, 3.0))
        };
        let zo = rng.below(256) as i32;
        let hi = if case % 5 == 1 { 215 } else { 255 };
        let clamp = (zo, if case % 3 == 0 { zo.min(hi) } else { 0 }, hi);
        let layer = (offset.as_slice(), requant.as_slice());
        let want = requantized_reference(&rows, &qw, layer, clamp);
        let what = format!(
            "{:?} case {case}: {g:?} m={} k={}",
            ops.path(),
            rows.m,
            rows.k()
        );
        assert!(
            requantized(ops, &rows, &packed, layer, clamp) == want,
            "{what}"
        );
        let Some(rq) = ops.requantizer(&offset, &requant, &packed) else {
            continue;
        };
        let mut got = vec![0u8; rows.m * n];
        ops.qgemm_requant(&rows, &packed, &rq, clamp, &mut got);
        assert!(got == want, "{what}, prepared");
        let pg = g
            .as_ref()
            .and_then(|g| PoolGeom::new(n, g.out_hw, [2, 2], [2, 2]));
        if let (Some(g), Some(pg)) = (g, pg) {
            let pooled = pg.out_hw[0] * pg.out_hw[1];
            let (mut want_pooled, mut got) = (vec![0u8; pooled * n], vec![0u8; pooled * n]);
            nhwc::maxpool(&want, 1, &pg, &mut want_pooled);
            let shape = PoolShape::after(g, &pg);
            ops.conv_pool(&rows, &packed, &rq, clamp, shape, &mut Vec::new(), &mut got);
            assert!(got == want_pooled, "{what}, pooled");
        }
    }
}

/// The float convolution + max pool in one pass (where the path has it) against the same
/// path's GEMM into a map pooled afterwards: the same bits (bias and ReLU commute with max),
/// on 2x2 windows over one to three panels, odd maps, strides and padding; other windows
/// are declined with nothing written.
pub fn float_conv_pool(ops: &Ops) {
    let mut rng = Rng::new(45);
    let mut ran = 0;
    for case in 0..40 {
        let kernels = [[3, 3], [1, 1], [2, 3], [5, 5]];
        let window = if case % 5 == 4 { [3, 3] } else { [2, 2] };
        let n = [16, 5, 32, 40, 17][case / 2 % 5];
        let Some((g, pg)) = conv_case(&mut rng, case, &kernels, 3, window, n) else {
            continue;
        };
        let taps = Taps::new(&g);
        let x: Vec<f32> = (0..g.in_channels * g.in_hw[0] * g.in_hw[1])
            .map(|_| rng.normal() as f32)
            .collect();
        let mut padded = Vec::new();
        nhwc::pad(&x, &g, 0.0, &mut padded);
        let rows = taps.rows(&padded, g.pixels(), taps.seg_len);
        let k = rows.k();
        let wv: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32 * 0.3).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let w = PackedF32::new(&wv, &bias, n, k);
        let relu = case % 3 != 0;
        let mut map = vec![0f32; rows.m * n];
        ops.sgemm(&rows, &w, Activation::relu(relu), &mut map);
        let pooled = pg.out_hw[0] * pg.out_hw[1] * n;
        let mut want = vec![0f32; pooled];
        nhwc::maxpool(&map, 1, &pg, &mut want);
        let mut got = vec![f32::NAN; pooled];
        if ops.sgemm_pool(&rows, &w, relu, PoolShape::after(&g, &pg), &mut got) {
            ran += 1;
            assert!(
                got == want,
                "{:?} case {case}: {g:?}, {pg:?}, relu {relu}",
                ops.path()
            );
        } else {
            assert!(got.iter().all(|v| v.is_nan()), "declined but wrote");
        }
    }
    if ops.path() == KernelPath::Avx512Vnni && crate::CpuFeatures::get().avx512f {
        assert!(ran >= 20, "only {ran} cases ran the fused float kernel");
    }
}

/// `rows` through `ops` against the same rows gathered into a matrix, by the reference.
fn check_rows(ops: &Ops, rng: &mut Rng, rows: &Rows<u8>, n: usize) {
    let (m, k) = (rows.m, rows.k());
    let qw = random_weights(rng, n, k);
    let mut flat = vec![0u8; m * k];
    crate::frame::rows::gather(rows, &mut flat);
    let want = raw(reference(), m, &flat, k, &qw);
    let mut got = vec![0i32; m * n];
    ops.qgemm_rows(
        rows,
        &ops.pack(&qw),
        &mut Epilogue::Raw { out: &mut got },
        &mut Vec::new(),
    );
    assert_eq!(
        got,
        want,
        "{:?} m={m} n={n} segs={}x{} map={:?}",
        ops.path(),
        rows.segs.len(),
        rows.seg_len,
        rows.map
    );
}

fn f64_reference(x: &[f32], m: usize, k: usize, w: &[f32], b: &[f32], act: Activation) -> Vec<f32> {
    let n = b.len();
    let mut y = vec![0f32; m * n];
    for r in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|t| x[r * k + t] as f64 * w[j * k + t] as f64)
                .sum();
            let v = s as f32 + b[j];
            y[r * n + j] = act.apply(v);
        }
    }
    y
}

/// The float GEMM on odd shapes, plain and segmented rows, within [`F32_TOLERANCE`] of f64.
pub fn float_gemm(ops: &Ops) {
    let mut rng = Rng::new(5);
    for case in 0..40 {
        let (m, n, k) = (1 + rng.below(30), 1 + rng.below(70), 1 + rng.below(90));
        let x: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32 - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.uniform() as f32 - 0.5).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
        // None, ReLU, and ReLU6's cap (at 0.1 the cap clips about half the outputs).
        let act = match case % 3 {
            0 => Activation::NONE,
            1 => Activation::relu(true),
            _ => Activation {
                relu: true,
                cap: Some(0.1),
            },
        };
        let want = f64_reference(&x, m, k, &w, &b, act);
        let p = PackedF32::new(&w, &b, n, k);
        let mut y = vec![f32::NAN; m * n];
        ops.sgemm(&Rows::matrix(&x, m, k, k), &p, act, &mut y);
        for (i, (a, e)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - e).abs() < F32_TOLERANCE,
                "{:?} m={m} n={n} k={k} at {i}: {a} vs {e}",
                ops.path()
            );
        }
    }
    // Every short reduction (K <= 16, the one-panel kernel that keeps its weights in
    // registers on AVX-512) at one and at a part panel, and row counts around its block.
    for (k, n, m) in (1..=16).flat_map(|k| [(k, 16, 19), (k, 6, 8), (k, 1, 1), (k, 16, 7)]) {
        let x: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32 - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.uniform() as f32 - 0.5).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 - 0.5).collect();
        let act = Activation {
            relu: k % 2 == 0,
            cap: Some(0.2).filter(|_| k % 4 == 0),
        };
        let want = f64_reference(&x, m, k, &w, &b, act);
        let mut y = vec![f32::NAN; m * n];
        ops.sgemm(
            &Rows::matrix(&x, m, k, k),
            &PackedF32::new(&w, &b, n, k),
            act,
            &mut y,
        );
        for (i, (a, e)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - e).abs() < F32_TOLERANCE,
                "{:?} short m={m} n={n} k={k} at {i}: {a} vs {e}",
                ops.path()
            );
        }
    }
    // Two segments of 3 values, rows 4 apart: the same as the explicit [5, 6] matrix.
    let a: Vec<f32> = (0..40).map(|v| v as f32 * 0.25).collect();
    let segs = [0, 10];
    let rows = Rows {
        a: &a,
        m: 5,
        segs: &segs,
        seg_len: 3,
        map: RowMap::Strided { lda: 4 },
    };
    let flat: Vec<f32> = (0..5)
        .flat_map(|r| [0, 1, 2, 10, 11, 12].map(|o| a[r * 4 + o]))
        .collect();
    let w: Vec<f32> = (0..7 * 6).map(|v| (v % 5) as f32 - 2.0).collect();
    let p = PackedF32::new(&w, &[0.5; 7], 7, 6);
    let want = f64_reference(&flat, 5, 6, &w, &[0.5; 7], Activation::NONE);
    let mut y = vec![0f32; 35];
    ops.sgemm(&rows, &p, Activation::NONE, &mut y);
    assert!(
        y.iter()
            .zip(&want)
            .all(|(a, e)| (a - e).abs() < F32_TOLERANCE),
        "{:?} segmented",
        ops.path()
    );
}

/// Tests of one path against the scalar reference (see the module doc).
macro_rules! self_test {
    ($module:ident, $path:expr) => {
        mod $module {
            use crate::testing as t;

            fn run(test: &str, f: fn(&crate::Ops)) {
                if let Some(ops) = t::ops_or_skip($path, test) {
                    f(ops);
                }
            }

            #[test]
            fn raw_gemm_matches_the_reference() {
                run("raw_gemm_matches_the_reference", t::raw_gemm);
            }

            #[test]
            fn requantizing_epilogues_match_the_reference() {
                run(
                    "requantizing_epilogues_match_the_reference",
                    t::requant_epilogue,
                );
            }

            #[test]
            fn extremes_do_not_saturate() {
                run("extremes_do_not_saturate", t::extremes);
            }

            #[test]
            fn rows_read_in_place_match_gathered_rows() {
                run("rows_read_in_place_match_gathered_rows", t::rows_in_place);
            }

            #[test]
            fn fused_conv_pools_match_the_reference() {
                run("fused_conv_pools_match_the_reference", t::conv_pool);
            }

            #[test]
            fn small_reductions_match_the_reference() {
                run("small_reductions_match_the_reference", t::small_reductions);
            }

            #[test]
            fn float_conv_pools_match_the_pooled_map() {
                run("float_conv_pools_match_the_pooled_map", t::float_conv_pool);
            }

            #[test]
            fn float_gemm_matches_the_f64_reference() {
                run("float_gemm_matches_the_f64_reference", t::float_gemm);
            }
        }
    };
}

/// Self-tests for every path, and one test that every path has them: it names the paths
/// this CPU compared and the ones it cannot run, and fails when a path of
/// [`KernelPath::ALL`] has no line here (a new path must be compared before it ships).
macro_rules! self_tests {
    ($($module:ident => $path:ident),+ $(,)?) => {
        $(self_test!($module, crate::KernelPath::$path);)+

        #[test]
        fn every_kernel_path_is_self_tested() {
            let tested = [$(crate::KernelPath::$path),+];
            for p in KernelPath::ALL {
                assert!(tested.contains(&p), "no self_tests! line for the {} path", p.as_str());
            }
            let (here, not_here): (Vec<KernelPath>, Vec<KernelPath>) =
                tested.iter().partition(|p| p.available());
            let names = |v: &[KernelPath]| v.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
            println!(
                "kernel self-tests: compared {} against the scalar reference; this CPU cannot run: {}",
                names(&here),
                if not_here.is_empty() { "-".to_string() } else { names(&not_here) }
            );
        }
    };
}

self_tests!(scalar => Scalar, avx2 => Avx2, avx512vnni => Avx512Vnni);
