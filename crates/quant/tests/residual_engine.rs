//! Residual blocks and average pooling through the whole engine: a graph with two identity
//! shortcuts (one read from a fused conv+ReLU, one from a max pool's output), a global
//! average pool and a plain 2x2 one. The float engine is held to the graph's naive f64
//! interpreter; the static int8 model is checked node by node on a traced run (every Add
//! against the rounded real-number sum of its two traced inputs, either neighbour at a tie, every average pool against the
//! rounded mean), is bit-identical on every kernel path and thread count, and survives the
//! model file.

mod common;

use common::paths;
use quantlab_data::rng::Rng;
use quantlab_quant::engine::Act;
use quantlab_quant::{
    Engine, Graph, MethodKind, Network, Node, Op, QuantModel, QuantizeOptions, quantize,
};

fn conv(rng: &mut Rng, c: usize, n: usize) -> Op {
    Op::Conv2d {
        in_channels: c,
        out_channels: n,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        weight: (0..n * c * 9).map(|_| rng.normal() as f32 * 0.25).collect(),
        bias: (0..n).map(|_| rng.normal() as f32 * 0.1).collect(),
    }
}

/// 2x12x12 -> conv 2->6 + ReLU -> [conv + ReLU, conv, Add, ReLU] -> max pool 2 ->
/// [conv + ReLU, conv, Add, ReLU] -> avg pool 2 -> global avg pool -> flatten -> linear 6->4.
fn graph() -> Graph {
    let mut rng = Rng::new(21);
    let ops = vec![
        conv(&mut rng, 2, 6),
        Op::Relu, // point 2: the first block's input
        conv(&mut rng, 6, 6),
        Op::Relu,
        conv(&mut rng, 6, 6),
        Op::Add { from: 2 },
        Op::Relu,
        Op::MaxPool2d {
            kernel: [2, 2],
            stride: [2, 2],
        }, // point 8: the second block's input
        conv(&mut rng, 6, 6),
        Op::Relu,
        conv(&mut rng, 6, 6),
        Op::Add { from: 8 },
        Op::Relu,
        Op::AvgPool2d {
            kernel: [2, 2],
            stride: [2, 2],
        },
        Op::AvgPool2d {
            kernel: [3, 3],
            stride: [1, 1],
        },
        Op::Flatten,
        Op::Linear {
            in_features: 6,
            out_features: 4,
            weight: (0..24).map(|_| rng.normal() as f32 * 0.5).collect(),
            bias: vec![0.1, -0.1, 0.0, 0.2],
        },
    ];
    Graph {
        input_shape: vec![2, 12, 12],
        ops,
    }
}

fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * 288).map(|_| rng.normal() as f32).collect()
}

fn static_model(net: &Network) -> QuantModel {
    let calib = inputs(256, 5);
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        calib: 256,
        ..QuantizeOptions::default()
    };
    quantize(net, &opts, &calib, &Engine::default()).unwrap()
}

#[test]
fn the_graph_fuses_into_residual_nodes_and_round_trips() {
    let g = graph();
    let net = Network::from_graph(&g).unwrap();
    let kinds: Vec<&str> = net.nodes.iter().map(Node::kind).collect();
    assert_eq!(
        kinds,
        [
            "conv2d+relu",
            "conv2d+relu",
            "conv2d",
            "add+relu",
            "maxpool2d",
            "conv2d+relu",
            "conv2d",
            "add+relu",
            "avgpool2d",
            "avgpool2d",
            "flatten",
            "linear"
        ]
    );
    // Graph point 2 (after the first ReLU) is network point 1; point 8 is point 5.
    assert!(matches!(
        net.nodes[3],
        Node::Add {
            from: 1,
            relu: true
        }
    ));
    assert!(matches!(
        net.nodes[7],
        Node::Add {
            from: 5,
            relu: true
        }
    ));
    assert_eq!(net.to_graph(), g);
}

#[test]
fn float_engine_matches_the_reference_on_every_path() {
    common::float_matches_reference(&graph(), &inputs(9, 1), 9);
}

#[test]
fn int8_adds_and_pools_compute_what_they_stand_for_and_agree_across_paths() {
    let net = Network::from_graph(&graph()).unwrap();
    let model = static_model(&net);
    assert!(model.points.iter().all(Option::is_some));
    let x = inputs(16, 2);
    // Node by node on a traced run (channels-last, same elementwise order at both ends).
    let session = Engine::default().prepare(&model).unwrap();
    let mut acts: Vec<Act> = Vec::new();
    session
        .run_traced(&x, 16, &mut |_, a| acts.push(a.clone()))
        .unwrap();
    let (mut adds, mut ties) = (0usize, 0usize);
    for (i, node) in net.nodes.iter().enumerate() {
        match node {
            Node::Add { from, relu } => {
                let (Act::U8(a, qa), Act::U8(b, qb), Act::U8(y, qo)) =
                    (&acts[*from], &acts[i], &acts[i + 1])
                else {
                    panic!("node {i}: a static model's Add runs in int8");
                };
                assert_eq!(Some(*qo), model.points[i + 1]);
                let deq = |v: u8, q: &quantlab_quant::QParams| {
                    q.scale as f64 * (v as i64 - q.zero_point as i64) as f64
                };
                for ((&a, &b), &y) in a.iter().zip(b).zip(y) {
                    let real = deq(a, qa) + deq(b, qb);
                    let real = if *relu { real.max(0.0) } else { real } / qo.scale as f64;
                    let tie = ((real - real.floor()) - 0.5).abs() < 1e-6;
                    let want = ((real + 0.5).floor() as i64 + qo.zero_point as i64)
                        .clamp(qo.qmin as i64, qo.qmax as i64);
                    let ok = y as i64 == want || (tie && (y as i64 - want).abs() == 1);
                    assert!(ok, "node {i}: {y} vs {want}");
                    ties += usize::from(tie);
                    adds += 1;
                }
            }
            Node::AvgPool(g) => {
                let (Act::U8(a, qa), Act::U8(y, qy)) = (&acts[i], &acts[i + 1]) else {
                    panic!("node {i}: a static model's pool runs in int8");
                };
                assert_eq!(qa, qy, "node {i}: an average pool keeps its grid");
                let c = g.channels;
                let n = (g.kernel[0] * g.kernel[1]) as f64;
                let (iw, [oh, ow]) = (g.in_hw[1], g.out_hw);
                let zp = qa.zero_point as f64;
                for s in 0..16 {
                    let xs = &a[s * c * g.in_hw[0] * iw..];
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ch in 0..c {
                                let mut sum = 0f64;
                                for ky in 0..g.kernel[0] {
                                    for kx in 0..g.kernel[1] {
                                        let (yy, xx) =
                                            (oy * g.stride[0] + ky, ox * g.stride[1] + kx);
                                        sum += xs[(yy * iw + xx) * c + ch] as f64;
                                    }
                                }
                                let want = (sum / n - zp).round_ties_even() + zp;
                                let got = y[s * c * oh * ow + (oy * ow + ox) * c + ch];
                                assert_eq!(got as f64, want, "node {i}");
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        adds > ties && ties * 100 <= adds,
        "{ties} ties in {adds} sums"
    );
    // The same bits on every path and thread count, untraced (fused) or traced.
    let traced_logits = session.run_traced(&x, 16, &mut |_, _| {}).unwrap();
    for path in paths() {
        for threads in [1, 2] {
            let got = Engine { path, threads }.run_once(&model, &x, 16).unwrap();
            assert_eq!(got, traced_logits, "{path:?} x{threads}");
        }
    }
    // Close to the float model (8-bit noise, not a wiring error).
    let float = Engine::default()
        .run_once(&QuantModel::float(net.clone()), &x, 16)
        .unwrap();
    let scale = float.iter().map(|v| v.abs()).fold(0f32, f32::max);
    let worst = float
        .iter()
        .zip(&traced_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.1 * scale, "int8 {worst} vs float scale {scale}");
}

#[test]
fn residual_models_survive_the_model_file() {
    let net = Network::from_graph(&graph()).unwrap();
    let model = static_model(&net);
    let bytes = quantlab_quant::export::to_bytes(&model, serde_json::json!({})).unwrap();
    let (back, _) =
        quantlab_quant::export::from_bytes(&bytes, std::path::Path::new("mem.safetensors"))
            .unwrap();
    // The file keeps the integer weights, not the float ones: compare the structure.
    let shape = |n: &Network| -> Vec<String> {
        n.nodes
            .iter()
            .map(|node| match node {
                Node::Add { from, relu } => format!("add {from} {relu}"),
                Node::AvgPool(g) => format!("avgpool {g:?}"),
                other => other.kind().to_string(),
            })
            .collect()
    };
    assert_eq!(shape(&back.network), shape(&model.network));
    let x = inputs(4, 3);
    let e = Engine::default();
    assert_eq!(
        e.run_once(&back, &x, 4).unwrap(),
        e.run_once(&model, &x, 4).unwrap()
    );
}

#[test]
fn adds_of_points_that_do_not_fit_are_refused_and_a_pre_relu_point_is_kept() {
    let mut g = graph();
    // Point 1 is the first conv's output before its ReLU: read by an Add, it is not fused.
    g.ops[5] = Op::Add { from: 1 };
    let net = Network::from_graph(&g).unwrap();
    assert_eq!(net.nodes[0].kind(), "conv2d");
    assert!(matches!(net.nodes[1], Node::Relu));
    let x = inputs(3, 4);
    let got = Engine::default()
        .run_once(&QuantModel::float(net), &x, 3)
        .unwrap();
    let want = g.forward_reference(&x, 3).unwrap();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
    // A later point, and a point of another shape.
    g.ops[5] = Op::Add { from: 9 };
    assert!(g.shapes().is_err());
    g.ops[5] = Op::Add { from: 0 };
    assert!(
        g.shapes()
            .unwrap_err()
            .to_string()
            .contains("earlier point")
    );
    // A file whose Add reads a later point.
    let net = Network::from_graph(&graph()).unwrap();
    let mut nodes = net.nodes.clone();
    nodes[3] = Node::Add {
        from: 7,
        relu: true,
    };
    assert!(Network::from_nodes(net.input_shape.clone(), nodes).is_err());
}
