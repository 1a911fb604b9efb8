//! The engine runs feature maps channels-last with permuted weights and direct
//! convolutions. These tests hold it to a plain NCHW reference written here (im2col in
//! PyTorch order, the scalar integer GEMM, NCHW pooling): int8 logits bit-identical on
//! every kernel path and thread count, f32 logits within float rounding. The network has a
//! 3-channel input, channel counts that are and are not multiples of 4, stride 2 and no
//! padding, so every layout change and both int8 convolution forms are exercised.

use quantlab_data::rng::Rng;
use quantlab_linalg::frame::im2col::im2col;
use quantlab_linalg::{ConvGeom, Epilogue, OutLayout, PoolGeom};
use quantlab_quant::qparams::quantize_into;
use quantlab_quant::{
    Dense, Engine, KernelPath, LayerImpl, MethodKind, Network, Node, QuantModel, QuantizeOptions,
    quantize,
};

fn conv(rng: &mut Rng, c: usize, hw: [usize; 2], n: usize, stride: usize, pad: usize) -> Dense {
    let k = c * 9;
    Dense {
        conv: ConvGeom::new(c, hw, [3, 3], [stride; 2], [pad; 2]),
        k,
        n,
        weight: (0..n * k).map(|_| rng.normal() as f32 * 0.3).collect(),
        bias: (0..n).map(|_| rng.normal() as f32 * 0.1).collect(),
        relu: true,
        cap: None,
        depthwise: false,
    }
}

fn linear(rng: &mut Rng, k: usize, n: usize, relu: bool) -> Dense {
    Dense {
        conv: None,
        k,
        n,
        weight: (0..n * k).map(|_| rng.normal() as f32 * 0.2).collect(),
        bias: (0..n).map(|_| rng.normal() as f32 * 0.1).collect(),
        relu,
        cap: None,
        depthwise: false,
    }
}

/// 3x11x10 -> conv 3->8 (pad 1) -> pool 2 -> conv 8->6 (stride 2, no pad) -> flatten -> 12 -> 5.
fn network() -> Network {
    let mut rng = Rng::new(7);
    let c1 = conv(&mut rng, 3, [11, 10], 8, 1, 1);
    let pool = PoolGeom {
        channels: 8,
        in_hw: [11, 10],
        kernel: [2, 2],
        stride: [2, 2],
        out_hw: [5, 5],
    };
    let c2 = conv(&mut rng, 8, [5, 5], 6, 2, 0);
    let flat = 6 * 2 * 2;
    let nodes = vec![
        Node::Dense(c1),
        Node::MaxPool(pool),
        Node::Dense(c2),
        Node::Flatten,
        Node::Dense(linear(&mut rng, flat, 12, true)),
        Node::Dense(linear(&mut rng, 12, 5, false)),
    ];
    Network::from_nodes(vec![3, 11, 10], nodes).unwrap()
}

fn inputs(n: usize) -> Vec<f32> {
    let mut rng = Rng::new(3);
    (0..n * 330).map(|_| rng.normal() as f32).collect()
}

fn pool_nchw<T: Copy + PartialOrd>(x: &[T], batch: usize, g: &PoolGeom) -> Vec<T> {
    let ([h, w], [oh, ow]) = (g.in_hw, g.out_hw);
    let mut y = Vec::new();
    for p in 0..batch * g.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = x[p * h * w + oy * 2 * w + ox * 2];
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let v = x[p * h * w + (oy * 2 + dy) * w + ox * 2 + dx];
                    if v > m {
                        m = v;
                    }
                }
                y.push(m);
            }
        }
    }
    y
}

/// Rows a layer's GEMM sees in PyTorch order: the im2col of each sample, or the input.
fn rows_nchw<T: Copy + Default>(d: &Dense, x: &[T], batch: usize, pad: T) -> Vec<T> {
    match &d.conv {
        None => x.to_vec(),
        Some(g) => {
            let p = g.pixels();
            let mut col = vec![T::default(); batch * p * d.k];
            for b in 0..batch {
                let xs = &x[b * d.in_len()..(b + 1) * d.in_len()];
                im2col(xs, g, pad, &mut col[b * p * d.k..], d.k);
            }
            col
        }
    }
}

enum Val {
    F(Vec<f32>),
    Q(Vec<u8>, quantlab_quant::QParams),
}

/// The NCHW reference forward pass (f32 and static int8 layers).
fn reference(model: &QuantModel, x: &[f32], batch: usize) -> Vec<f32> {
    let mut v = Val::F(x.to_vec());
    for (node, layer) in model.network.nodes.iter().zip(&model.layers) {
        v = match (node, layer, v) {
            (Node::Dense(d), Some(LayerImpl::F32), v) => {
                let x = match v {
                    Val::F(x) => x,
                    Val::Q(q, p) => q.iter().map(|&u| p.dequantize(u)).collect(),
                };
                let rows = rows_nchw(d, &x, batch, 0.0);
                let per = d.rows_per_sample();
                let mut y = vec![0f32; batch * d.out_len()];
                for r in 0..batch * per {
                    for j in 0..d.n {
                        let s: f32 = (0..d.k)
                            .map(|t| rows[r * d.k + t] * d.weight[j * d.k + t])
                            .sum::<f32>()
                            + d.bias[j];
                        let (b, p) = (r / per, r % per);
                        y[b * d.out_len() + j * per + p] = if d.relu { s.max(0.0) } else { s };
                    }
                }
                Val::F(y)
            }
            (Node::Dense(d), Some(LayerImpl::Static(l)), v) => {
                let input = match v {
                    Val::Q(q, p) if p == l.in_q => q,
                    Val::F(x) => {
                        let mut q = vec![0u8; x.len()];
                        quantize_into(&x, &l.in_q, &mut q);
                        q
                    }
                    Val::Q(..) => panic!("reference: requantization between layers"),
                };
                let zp = l.in_q.zero_point as u8;
                let rows = rows_nchw(d, &input, batch, zp);
                let mut out = vec![0u8; batch * d.out_len()];
                let layout = match &d.conv {
                    Some(g) => OutLayout::Nchw { pixels: g.pixels() },
                    None => OutLayout::RowMajor,
                };
                let lo = if d.relu {
                    l.out_q.zero_point.max(l.out_q.qmin)
                } else {
                    l.out_q.qmin
                };
                let mut epi = Epilogue::Requant {
                    offset: &l.offset,
                    requant: &l.requant,
                    zo: l.out_q.zero_point,
                    lo,
                    hi: l.out_q.qmax,
                    layout,
                    out: &mut out,
                };
                let m = batch * d.rows_per_sample();
                let scalar = KernelPath::Scalar.ops();
                scalar.qgemm(m, &rows, d.k, &scalar.pack(&l.w), &mut epi);
                Val::Q(out, l.out_q)
            }
            (Node::MaxPool(g), _, Val::F(x)) => Val::F(pool_nchw(&x, batch, g)),
            (Node::MaxPool(g), _, Val::Q(x, p)) => Val::Q(pool_nchw(&x, batch, g), p),
            (Node::Flatten, _, v) => v,
            (n, l, _) => panic!("reference: unsupported {n:?} / {l:?}"),
        };
    }
    match v {
        Val::F(x) => x,
        Val::Q(q, p) => q.iter().map(|&u| p.dequantize(u)).collect(),
    }
}

/// Float logits within float rounding of the reference's (FMA against separate multiply and
/// add, sums in another order).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: logits");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{what} logit {i}: {a} vs {b}"
        );
    }
}

fn paths() -> Vec<KernelPath> {
    KernelPath::ALL
        .into_iter()
        .filter(|p| p.available())
        .collect()
}

#[test]
fn float_engine_matches_the_nchw_reference_on_every_path() {
    let model = QuantModel::float(network());
    let x = inputs(9);
    let want = reference(&model, &x, 9);
    for path in paths() {
        for threads in [1, 3] {
            let got = Engine { path, threads }
                .prepare(&model)
                .unwrap()
                .run(&x, 9)
                .unwrap();
            assert_close(&got, &want, &format!("{path:?} x{threads}"));
        }
    }
}

/// Float models whose first layer reads the caller's input in place (no copy): a plain MLP
/// (flattened first) and a one-channel CNN with its pool fused, at 1 and 3 threads.
#[test]
fn float_first_layers_reading_the_input_in_place_match_the_reference() {
    let mut rng = Rng::new(11);
    let mlp = Network::from_nodes(
        vec![2, 3, 5],
        vec![
            Node::Flatten,
            Node::Dense(linear(&mut rng, 30, 9, true)),
            Node::Dense(linear(&mut rng, 9, 4, false)),
        ],
    )
    .unwrap();
    let pool = PoolGeom {
        channels: 4,
        in_hw: [7, 6],
        kernel: [2, 2],
        stride: [2, 2],
        out_hw: [3, 3],
    };
    let cnn = Network::from_nodes(
        vec![1, 7, 6],
        vec![
            Node::Dense(conv(&mut rng, 1, [7, 6], 4, 1, 1)),
            Node::MaxPool(pool),
            Node::Flatten,
            Node::Dense(linear(&mut rng, 36, 3, false)),
        ],
    )
    .unwrap();
    for net in [mlp, cnn] {
        let model = QuantModel::float(net);
        let d = model.network.in_len();
        let x: Vec<f32> = (0..7 * d).map(|_| rng.normal() as f32).collect();
        let want = reference(&model, &x, 7);
        for path in paths() {
            for threads in [1, 3] {
                let session = Engine { path, threads }.prepare(&model).unwrap();
                // Twice: the second call runs on the first one's recycled buffers.
                for _ in 0..2 {
                    let got = session.run(&x, 7).unwrap();
                    assert_close(&got, &want, &format!("{path:?} x{threads}"));
                }
            }
        }
    }
}

#[test]
fn static_int8_is_bit_identical_to_the_nchw_reference_on_every_path_and_thread_count() {
    let net = network();
    let calib = inputs(40);
    for granularity in [
        quantlab_quant::Granularity::PerChannel,
        quantlab_quant::Granularity::PerTensor,
    ] {
        let opts = QuantizeOptions {
            method: MethodKind::Static,
            granularity,
            calib: 40,
            ..QuantizeOptions::default()
        };
        let q = quantize(&net, &opts, &calib, &Engine::default()).unwrap();
        let x = inputs(13);
        let want = reference(&q, &x, 13);
        for path in paths() {
            for threads in [1, 2, 4] {
                let got = Engine { path, threads }
                    .prepare(&q)
                    .unwrap()
                    .run(&x, 13)
                    .unwrap();
                assert_eq!(got, want, "{path:?} x{threads} {granularity:?}");
            }
        }
    }
}

#[test]
fn a_session_keeps_its_model_and_a_changed_model_needs_its_own() {
    // A session owns a copy of the model it was prepared from: a model derived afterwards
    // (here: one layer back to f32) runs through its own session, and both match the reference.
    let net = network();
    let calib = inputs(20);
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        calib: 20,
        ..QuantizeOptions::default()
    };
    let e = Engine::default();
    let q = quantize(&net, &opts, &calib, &e).unwrap();
    let x = inputs(4);
    let session = e.prepare(&q).unwrap();
    let before = session.run(&x, 4).unwrap();
    let mixed = quantlab_quant::with_fallback(&q, &[0]);
    assert_ne!(mixed, q, "the fallback changed a layer");
    assert_eq!(
        e.prepare(&mixed).unwrap().run(&x, 4).unwrap(),
        reference(&mixed, &x, 4)
    );
    assert_eq!(session.run(&x, 4).unwrap(), before);
    assert_eq!(before, reference(&q, &x, 4));
}

/// A conv + 2x2 max pool the engine fuses, on an odd-width map of more rows than one
/// epilogue call takes (11 x 13 = 143 rows: calls start mid-row, at odd and even columns,
/// and a window's two neighbours land in different calls), with an uncovered last row and
/// column, 16 outputs and 12 (pooled rows padded past `n`) and 6 (on the VNNI path, pixels
/// in the lanes): int8 bit-identical to the NCHW reference on every path.
#[test]
fn fused_conv_pools_on_odd_maps_are_bit_identical_on_every_path() {
    for (c, n) in [(1, 16), (3, 12), (1, 6)] {
        let mut rng = Rng::new(17 + n as u64);
        let hw = [11, 13];
        let pool = PoolGeom {
            channels: n,
            in_hw: hw,
            kernel: [2, 2],
            stride: [2, 2],
            out_hw: [5, 6],
        };
        let net = Network::from_nodes(
            vec![c, hw[0], hw[1]],
            vec![
                Node::Dense(conv(&mut rng, c, hw, n, 1, 1)),
                Node::MaxPool(pool),
                Node::Flatten,
                Node::Dense(linear(&mut rng, n * 30, 5, false)),
            ],
        )
        .unwrap();
        let d = net.in_len();
        let calib: Vec<f32> = (0..30 * d).map(|_| rng.normal() as f32).collect();
        let opts = QuantizeOptions {
            method: MethodKind::Static,
            calib: 30,
            ..QuantizeOptions::default()
        };
        let q = quantize(&net, &opts, &calib, &Engine::default()).unwrap();
        let x: Vec<f32> = (0..5 * d).map(|_| rng.normal() as f32).collect();
        let want = reference(&q, &x, 5);
        for path in paths() {
            let got = Engine { path, threads: 1 }
                .prepare(&q)
                .unwrap()
                .run(&x, 5)
                .unwrap();
            assert_eq!(got, want, "{path:?}, {c} -> {n} channels");
        }
    }
}

/// The report's layer times are the steps the engine runs: the convolution carries the max
/// pool fused after it (whose own entry is 0), every other dense layer its own step.
#[test]
fn layer_times_follow_the_fused_steps() {
    let net = network();
    let calib = inputs(40);
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        calib: 40,
        ..QuantizeOptions::default()
    };
    let q = quantize(&net, &opts, &calib, &Engine::default()).unwrap();
    for model in [QuantModel::float(net.clone()), q] {
        let t = quantlab_quant::report::node_times(&Engine::default(), &model, &calib).unwrap();
        assert_eq!(t.len(), model.network.nodes.len());
        assert!(matches!(model.network.nodes[1], Node::MaxPool(_)));
        assert_eq!(
            t[1], 0.0,
            "the fused pool's time is in its convolution's: {t:?}"
        );
        for i in model.network.dense_indices() {
            assert!(t[i] > 0.0, "node {i}: {t:?}");
        }
    }
}

/// A batch large enough to split runs in slices that the threads take as they come: the
/// logits are one thread's, in order, in float and int8, whatever the slice count (the
/// batch of 50 at 2 and 3 threads: slices of 7 and 5, a short last one).
#[test]
fn a_batch_split_into_slices_returns_one_threads_logits_in_order() {
    let mut rng = Rng::new(11);
    let net = Network::from_nodes(
        vec![784],
        vec![
            Node::Dense(linear(&mut rng, 784, 128, true)),
            Node::Dense(linear(&mut rng, 128, 10, false)),
        ],
    )
    .unwrap();
    let batch = 50;
    let x: Vec<f32> = (0..batch * 784).map(|_| rng.normal() as f32).collect();
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        calib: batch,
        ..QuantizeOptions::default()
    };
    let q = quantize(&net, &opts, &x, &Engine::default()).unwrap();
    for model in [QuantModel::float(net.clone()), q] {
        for path in paths() {
            let one = Engine { path, threads: 1 }.prepare(&model).unwrap();
            let want = one.run(&x, batch).unwrap();
            for threads in [2, 3] {
                let s = Engine { path, threads }.prepare(&model).unwrap();
                assert_eq!(s.threads_for(batch), threads, "the batch splits");
                assert_eq!(s.run(&x, batch).unwrap(), want, "{path:?} x{threads}");
            }
        }
    }
}

/// A batch whose activations exceed the session's budget runs in chunks of samples, each
/// through the whole network: the logits are the whole batch's, in order, for a float and a
/// static model (chunks of 3, 3, 3 and 1, on one and two threads, and the steps' trace sees
/// every chunk); a dynamic model, whose activation range is the batch's, runs whole.
#[test]
fn a_batch_run_in_chunks_returns_the_whole_batchs_logits() {
    let net = network();
    let calib = inputs(40);
    let quantized = |method| {
        let opts = QuantizeOptions {
            method,
            calib: 40,
            ..QuantizeOptions::default()
        };
        quantize(&net, &opts, &calib, &Engine::default()).unwrap()
    };
    let batch = 10;
    let x = inputs(batch);
    for model in [
        QuantModel::float(net.clone()),
        quantized(MethodKind::Static),
        quantized(MethodKind::Dynamic),
    ] {
        let dynamic = (model.layers.iter()).any(|l| matches!(l, Some(LayerImpl::Dynamic(_))));
        for path in paths() {
            for threads in [1, 2] {
                let mut whole = Engine { path, threads }.prepare(&model).unwrap();
                whole.set_chunk_bytes(usize::MAX);
                let want = whole.run(&x, batch).unwrap();
                let mut s = Engine { path, threads }.prepare(&model).unwrap();
                let per_sample = s.plan().sample_bytes;
                s.set_chunk_bytes(3 * per_sample);
                assert_eq!(s.run(&x, batch).unwrap(), want, "{path:?} x{threads}");
                let mut inputs_seen = 0;
                let traced = s
                    .run_steps(&x, batch, &mut |p, _| inputs_seen += usize::from(p == 0))
                    .unwrap();
                assert_eq!(traced, want, "{path:?} traced");
                let chunks = if dynamic { 1 } else { 4 };
                assert_eq!(inputs_seen, chunks, "{path:?}: chunks traced");
            }
        }
    }
    // The footprint the chunks are cut by: the fused conv + pool step's f32 input (3x11x10)
    // and pooled output (8x5x5), the widest step of the float model.
    let s = Engine::default().prepare(&QuantModel::float(net)).unwrap();
    assert_eq!(s.plan().sample_bytes, (330 + 200) * 4);
}

/// Pointwise (1x1, stride 1, unpadded) convolutions read the channels-last batch in place
/// as one `[batch * pixels, c]` matrix: over 16, 8 and 6 channels (6 is not a whole unit
/// of the VNNI path's 4, which then takes the per-sample form), f32 within float rounding
/// of the NCHW reference and static int8 bit-identical to it, on every path and at 1 and 2
/// threads.
#[test]
fn pointwise_convs_read_the_batch_in_place_and_match_the_reference() {
    let mut rng = Rng::new(23);
    let hw = [6, 5];
    let pointwise = |rng: &mut Rng, c: usize, n: usize| Dense {
        conv: ConvGeom::new(c, hw, [1, 1], [1, 1], [0, 0]),
        k: c,
        n,
        weight: (0..n * c).map(|_| rng.normal() as f32 * 0.3).collect(),
        bias: (0..n).map(|_| rng.normal() as f32 * 0.1).collect(),
        relu: true,
        cap: None,
        depthwise: false,
    };
    let net = Network::from_nodes(
        vec![3, hw[0], hw[1]],
        vec![
            Node::Dense(conv(&mut rng, 3, hw, 16, 1, 1)),
            Node::Dense(pointwise(&mut rng, 16, 8)),
            Node::Dense(pointwise(&mut rng, 8, 6)),
            Node::Dense(pointwise(&mut rng, 6, 4)),
            Node::Flatten,
            Node::Dense(linear(&mut rng, 4 * 30, 5, false)),
        ],
    )
    .unwrap();
    let d = net.in_len();
    let x: Vec<f32> = (0..7 * d).map(|_| rng.normal() as f32).collect();
    let float = QuantModel::float(net.clone());
    let want = reference(&float, &x, 7);
    let calib: Vec<f32> = (0..40 * d).map(|_| rng.normal() as f32).collect();
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        calib: 40,
        ..QuantizeOptions::default()
    };
    let q = quantize(&net, &opts, &calib, &Engine::default()).unwrap();
    let want_int8 = reference(&q, &x, 7);
    for path in paths() {
        for threads in [1, 2] {
            let got = Engine { path, threads }
                .prepare(&float)
                .unwrap()
                .run(&x, 7)
                .unwrap();
            assert_close(&got, &want, &format!("{path:?} x{threads} f32"));
            let got = Engine { path, threads }
                .prepare(&q)
                .unwrap()
                .run(&x, 7)
                .unwrap();
            assert_eq!(got, want_int8, "{path:?} x{threads} int8");
        }
    }
}
