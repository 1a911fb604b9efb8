//! The ONNX reader (`decode` + `check`, what `quantlab inspect` runs) under mutation: every
//! truncation, seeded bit flips, byte runs, deletions and duplications of protobuf records.
//! Seeds: the file ONNX's own Python helper wrote (`src/fixture_onnx_helper.in`) and a static
//! int8 MLP exported by quantlab. No input may panic the reader or make it allocate more
//! than ten times the file plus a fixed bound.

use std::path::Path;

use quantlab_onnx::{OnnxTarget, check, decode, to_onnx};
use quantlab_quant::{
    Dense, Engine, KernelPath, MethodKind, Network, Node, QuantizeOptions, quantize,
};
use quantlab_testkit::check_reader;
use quantlab_testkit::mutate::cases;

#[global_allocator]
static ALLOC: quantlab_testkit::PeakAlloc = quantlab_testkit::PeakAlloc;

const RANDOM: usize = 4000;
const FIXED: usize = 16 << 20;

const ONNX_HELPER_FILE: &[u8] = &include!("../src/fixture_onnx_helper.in");

/// A 6-4-3 MLP with weights from a formula, quantized statically and exported as QDQ.
fn exported_mlp() -> Vec<u8> {
    let layer = |k: usize, n: usize, relu: bool| Dense {
        conv: None,
        k,
        n,
        weight: (0..n * k)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0)
            .collect(),
        bias: (0..n).map(|i| i as f32 / 10.0).collect(),
        relu,
        cap: None,
        depthwise: false,
    };
    let net = Network::from_nodes(
        vec![6],
        vec![
            Node::Dense(layer(6, 4, true)),
            Node::Dense(layer(4, 3, false)),
        ],
    )
    .unwrap();
    let calib: Vec<f32> = (0..16 * 6)
        .map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0)
        .collect();
    let engine = Engine {
        path: KernelPath::Scalar,
        threads: 1,
    };
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        ..Default::default()
    };
    let q = quantize(&net, &opts, &calib, &engine).unwrap();
    let e = to_onnx(&q, OnnxTarget::Qdq).unwrap();
    prost::Message::encode_to_vec(&e.model)
}

fn read(bytes: &[u8]) -> Result<(), quantlab_onnx::Error> {
    let m = decode(Path::new("model.onnx"), bytes)?;
    check(&m)
}

#[test]
fn onnx_files_never_panic_or_balloon() {
    for (name, seed, rng) in [
        ("onnx (onnx.helper file)", ONNX_HELPER_FILE.to_vec(), 21),
        ("onnx (quantlab QDQ export)", exported_mlp(), 22),
    ] {
        assert!(read(&seed).is_ok(), "{name}: the seed itself reads");
        let o = check_reader(name, &cases(&seed, &[], RANDOM, rng), FIXED, read);
        assert!(o.refused > o.cases / 4, "{o:?}");
    }
}
