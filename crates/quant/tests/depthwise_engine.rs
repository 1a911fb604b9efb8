//! Depthwise convolutions and capped ReLUs (MobileNet's building blocks) through the
//! engine: float against the graph's f64 reference on every path, every static int8
//! depthwise layer against a plain integer loop written here (on the traced channels-last
//! input: `sum (q - zp) * w + bias`, requantized by the layer's multipliers, clamped at the
//! ReLU6 level), bit-identical logits on every path and thread count, and the model file.

mod common;

use common::paths;
use quantlab_data::rng::Rng;
use quantlab_quant::engine::Act;
use quantlab_quant::{
    Engine, Graph, LayerImpl, MethodKind, Network, Node, Op, QuantModel, QuantizeOptions, quantize,
};

fn weights(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * scale).collect()
}

fn dw(rng: &mut Rng, c: usize, stride: usize, pad: usize) -> Op {
    Op::DepthwiseConv2d {
        channels: c,
        kernel: [3, 3],
        stride: [stride; 2],
        padding: [pad; 2],
        weight: weights(rng, c * 9, 0.4),
        bias: weights(rng, c, 0.1),
    }
}

/// 2x13x13 -> conv 3x3 2->6 + ReLU -> dw 3x3/2 pad 1 + ReLU6 -> conv 1x1 6->8 + ReLU6 ->
/// dw 3x3 pad 0 -> global avg pool -> flatten -> linear 8->5.
fn graph() -> Graph {
    let mut rng = Rng::new(33);
    let ops = vec![
        Op::Conv2d {
            in_channels: 2,
            out_channels: 6,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            weight: weights(&mut rng, 6 * 18, 0.3),
            bias: weights(&mut rng, 6, 0.1),
        },
        Op::Relu,
        dw(&mut rng, 6, 2, 1),
        Op::Clip { min: 0.0, max: 6.0 },
        Op::Conv2d {
            in_channels: 6,
            out_channels: 8,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            weight: weights(&mut rng, 48, 0.5),
            bias: weights(&mut rng, 8, 0.1),
        },
        Op::Clip { min: 0.0, max: 6.0 },
        dw(&mut rng, 8, 1, 0),
        Op::AvgPool2d {
            kernel: [5, 5],
            stride: [1, 1],
        },
        Op::Flatten,
        Op::Linear {
            in_features: 8,
            out_features: 5,
            weight: weights(&mut rng, 40, 0.5),
            bias: weights(&mut rng, 5, 0.1),
        },
    ];
    Graph {
        input_shape: vec![2, 13, 13],
        ops,
    }
}

fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * 338).map(|_| rng.normal() as f32 * 2.0).collect()
}

#[test]
fn the_graph_becomes_depthwise_and_capped_nodes() {
    let net = Network::from_graph(&graph()).unwrap();
    let kinds: Vec<&str> = net.nodes.iter().map(Node::kind).collect();
    assert_eq!(
        kinds,
        [
            "conv2d+relu",
            "dwconv2d+relu6",
            "conv2d+relu6",
            "dwconv2d",
            "avgpool2d",
            "flatten",
            "linear"
        ]
    );
    assert_eq!(net.to_graph(), graph());
    // A Clip that is not a capped ReLU after a layer is refused.
    let mut g = graph();
    g.ops[3] = Op::Clip {
        min: -1.0,
        max: 6.0,
    };
    assert!(
        Network::from_graph(&g)
            .unwrap_err()
            .to_string()
            .contains("Clip")
    );
}

#[test]
fn float_depthwise_matches_the_reference_on_every_path() {
    common::float_matches_reference(&graph(), &inputs(7, 1), 7);
}

#[test]
fn int8_depthwise_layers_are_the_integer_loop_and_agree_across_paths() {
    let net = Network::from_graph(&graph()).unwrap();
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        calib: 200,
        ..QuantizeOptions::default()
    };
    let model = quantize(&net, &opts, &inputs(200, 5), &Engine::default()).unwrap();
    let x = inputs(9, 2);
    let session = Engine::default().prepare(&model).unwrap();
    let mut acts: Vec<Act> = Vec::new();
    let traced = session
        .run_traced(&x, 9, &mut |_, a| acts.push(a.clone()))
        .unwrap();
    let mut checked = 0;
    for (i, node) in net.nodes.iter().enumerate() {
        let Node::Dense(d) = node else { continue };
        if !d.depthwise {
            continue;
        }
        let Some(LayerImpl::Static(l)) = &model.layers[i] else {
            panic!("node {i} is static");
        };
        let (Act::U8(a, qa), Act::U8(y, _)) = (&acts[i], &acts[i + 1]) else {
            panic!("node {i} runs in int8");
        };
        assert_eq!(*qa, l.in_q);
        let g = d.conv.unwrap();
        let (c, [h, w], [oh, ow]) = (d.n, g.in_hw, g.out_hw);
        let (zo, lo, hi) = l.out_clamp(d.relu, d.cap);
        for s in 0..9 {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut acc = l.bias[ch] as i64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue; // real zero: (zp - zp) * w
                                }
                                let q = a[s * h * w * c + (iy as usize * w + ix as usize) * c + ch];
                                let wv = l.w.w[ch * 9 + ky * 3 + kx] as i64;
                                acc += (q as i64 - qa.zero_point as i64) * wv;
                            }
                        }
                        let rq = &l.requant[if l.requant.len() == 1 { 0 } else { ch }];
                        let want = (zo + rq.apply(acc as i32)).clamp(lo, hi);
                        let got = y[s * oh * ow * c + (oy * ow + ox) * c + ch];
                        assert_eq!(got as i32, want, "node {i} s{s} ({oy},{ox}) c{ch}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 0);
    for path in paths() {
        for threads in [1, 2] {
            let got = Engine { path, threads }.run_once(&model, &x, 9).unwrap();
            assert_eq!(got, traced, "{path:?} x{threads}");
        }
    }
    // The file keeps the depthwise layers and their caps.
    let bytes = quantlab_quant::export::to_bytes(&model, serde_json::json!({})).unwrap();
    let (back, _) =
        quantlab_quant::export::from_bytes(&bytes, std::path::Path::new("dw.safetensors")).unwrap();
    let kinds =
        |m: &QuantModel| -> Vec<&'static str> { m.network.nodes.iter().map(Node::kind).collect() };
    assert_eq!(kinds(&back), kinds(&model));
    assert_eq!(Engine::default().run_once(&back, &x, 9).unwrap(), traced);
    // Dynamic int8 runs the same layers with activations quantized per batch.
    let dynamic = QuantizeOptions {
        method: MethodKind::Dynamic,
        ..QuantizeOptions::default()
    };
    let model = quantize(&net, &dynamic, &[], &Engine::default()).unwrap();
    let float = Engine::default()
        .run_once(&QuantModel::float(net.clone()), &x, 9)
        .unwrap();
    let got = Engine::default().run_once(&model, &x, 9).unwrap();
    let scale = float.iter().map(|v| v.abs()).fold(0f32, f32::max);
    let worst = float
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.1 * scale, "dynamic {worst} vs scale {scale}");
}
