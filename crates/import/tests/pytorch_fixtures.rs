//! The import on models trained and exported by PyTorch (`scripts/onnx_fixtures.py`, files
//! in `tests/fixtures/`): the graph it builds, float logits equal to ONNX Runtime's on the
//! same file, and static int8 accuracy beside ONNX Runtime's own `quantize_static` on the
//! same calibration images (`scripts/ort_quantize_static.py`). ONNX Runtime runs where a
//! Python with onnxruntime is installed (the project's skip rule: one line, a failure
//! under CI).

use std::path::{Path, PathBuf};

use quantlab_data::{DataOptions, DatasetName, LabeledSet, load, npy};
use quantlab_import::import_onnx;
use quantlab_quant::{Engine, Network, Op, QuantModel, QuantizeOptions, quantize, score};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ql-import-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first `n` samples of `set`, renormalised from quantlab's statistics to the fixtures'
/// (MNIST's usual 0.1307 / 0.3081, `tests/fixtures/meta.json`).
fn as_trained(set: &LabeledSet, n: usize, from: (f32, f32)) -> LabeledSet {
    let mut s = set.take(n);
    for x in &mut s.features {
        *x = (*x * from.1 + from.0 - 0.1307) / 0.3081;
    }
    s
}

fn logits(model: &QuantModel, set: &LabeledSet) -> Vec<f32> {
    let e = Engine {
        threads: 2,
        ..Engine::default()
    };
    let d = set.dim();
    let mut out = Vec::new();
    for start in (0..set.len()).step_by(500) {
        let n = 500.min(set.len() - start);
        out.extend(
            e.run_once(model, &set.features[start * d..(start + n) * d], n)
                .unwrap(),
        );
    }
    out
}

fn softmax_rows(v: &[f32]) -> Vec<f32> {
    v.chunks(10)
        .flat_map(|r| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = r.iter().map(|&x| ((x - m) as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter()
                .map(move |x| (x / s) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn write_set(dir: &Path, tag: &str, set: &LabeledSet) -> (PathBuf, PathBuf) {
    let (x, y) = (
        dir.join(format!("{tag}_x.npy")),
        dir.join(format!("{tag}_y.npy")),
    );
    let mut shape = vec![set.len()];
    shape.extend(&set.sample_shape);
    npy::write(&x, &shape, &set.features).unwrap();
    let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
    npy::write(&y, &[set.len()], &labels).unwrap();
    (x, y)
}

/// Runs a script with the test Python; `None` (one SKIPPED line) where onnxruntime is not
/// installed.
fn run_python(test: &str, args: &[&Path]) -> Option<serde_json::Value> {
    let py = quantlab_testkit::python_with(test, &["onnxruntime", "numpy"])?;
    let out = std::process::Command::new(&py)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", py.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(text.lines().last().unwrap()).unwrap())
}

#[test]
fn pytorch_models_import_with_batch_norm_folded_and_the_users_names() {
    let m = import_onnx(&fixture("lenet_bn_opset13.onnx")).unwrap();
    let kinds: Vec<&str> = m.graph.ops.iter().map(Op::kind).collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "relu",
            "maxpool2d",
            "conv2d",
            "relu",
            "maxpool2d",
            "flatten",
            "linear",
            "relu",
            "linear",
            "relu",
            "linear"
        ]
    );
    assert_eq!(m.graph.input_shape, [1, 28, 28]);
    assert_eq!(m.opset, 13);
    // torch.onnx.export names nodes after the module path, e.g. `/0/Conv`.
    assert!(m.names[0].contains("Conv"), "{:?}", m.names);
    assert_eq!(
        m.notes
            .iter()
            .filter(|n| n.contains("BatchNormalization"))
            .count(),
        2,
        "{:?}",
        m.notes
    );
    let m = import_onnx(&fixture("mlp_bn_softmax_opset13.onnx")).unwrap();
    let kinds: Vec<&str> = m.graph.ops.iter().map(Op::kind).collect();
    assert_eq!(kinds, ["flatten", "linear", "relu", "linear"]);
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("Softmax") && n.contains("dropped"))
    );
    assert!(m.notes.iter().any(|n| n.contains("BatchNormalization")));
    // Two residual blocks: each Add reads the block's input, the ReLU before it.
    let m = import_onnx(&fixture("resnet_small_opset13.onnx")).unwrap();
    let kinds: Vec<&str> = m.graph.ops.iter().map(Op::kind).collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "relu",
            "conv2d",
            "relu",
            "conv2d",
            "add",
            "relu",
            "maxpool2d",
            "conv2d",
            "relu",
            "conv2d",
            "add",
            "relu",
            "avgpool2d",
            "flatten",
            "linear"
        ]
    );
    assert_eq!(m.graph.ops[5], Op::Add { from: 2 });
    assert_eq!(m.graph.ops[11], Op::Add { from: 8 });
    assert_eq!(
        m.graph.ops[13],
        Op::AvgPool2d {
            kernel: [14, 14],
            stride: [1, 1]
        }
    );
    assert!(m.names[5].contains("Add"), "{:?}", m.names);
    // MobileNet-like: depthwise convolutions (group = channels) and ReLU6 (Clip(0, 6)).
    let m = import_onnx(&fixture("mobilenet_small_opset13.onnx")).unwrap();
    let net = Network::from_graph(&m.graph).unwrap();
    let kinds: Vec<&str> = net.nodes.iter().map(quantlab_quant::Node::kind).collect();
    assert_eq!(
        kinds,
        [
            "conv2d+relu6",
            "dwconv2d+relu6",
            "conv2d+relu6",
            "dwconv2d+relu6",
            "conv2d+relu6",
            "avgpool2d",
            "flatten",
            "linear"
        ]
    );
}

/// The LeNet-BN fixture with every `Relu` replaced by `Clip(0, 6)` (PyTorch's `ReLU6` as
/// `torch.onnx.export` writes it: the bounds as constant inputs), written into `dir`.
fn relu6_variant(dir: &Path) -> PathBuf {
    let mut m = quantlab_onnx::read(fixture("lenet_bn_opset13.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.initializer
        .push(quantlab_onnx::tensor("relu6_min", &[], &[0f32]).unwrap());
    g.initializer
        .push(quantlab_onnx::tensor("relu6_max", &[], &[6f32]).unwrap());
    let mut n = 0;
    for node in &mut g.node {
        if node.op_type.as_deref() == Some("Relu") {
            node.op_type = Some("Clip".into());
            node.input
                .extend(["relu6_min".to_string(), "relu6_max".to_string()]);
            n += 1;
        }
    }
    assert_eq!(n, 4, "LeNet-BN has four ReLUs");
    let p = dir.join("lenet_relu6_opset13.onnx");
    quantlab_onnx::write(&p, &m, true).unwrap();
    p
}

#[test]
fn clip_from_zero_imports_as_a_fused_relu6() {
    let dir = tmp("relu6");
    let m = import_onnx(&relu6_variant(&dir)).unwrap();
    let net = Network::from_graph(&m.graph).unwrap();
    let kinds: Vec<&str> = net.nodes.iter().map(quantlab_quant::Node::kind).collect();
    assert_eq!(
        kinds,
        [
            "conv2d+relu6",
            "maxpool2d",
            "conv2d+relu6",
            "maxpool2d",
            "flatten",
            "linear+relu6",
            "linear+relu6",
            "linear"
        ]
    );
    // The float engine clips: no activation above 6 after a capped layer.
    let float = QuantModel::float(net);
    let x: Vec<f32> = (0..784 * 4)
        .map(|i| ((i * 37 % 101) as f32 - 30.0) / 10.0)
        .collect();
    let s = Engine::default().prepare(&float).unwrap();
    s.run_traced(&x, 4, &mut |p, a| {
        if p > 0 && float.network.nodes[p - 1].kind().ends_with("relu6") {
            assert!(
                a.to_f32().iter().all(|&v| (0.0..=6.0).contains(&v)),
                "point {p}"
            );
        }
    })
    .unwrap();
    // The cap survives the int8 file (and the int8 engine clips at the cap's level).
    let int8 = quantize(
        &float.network,
        &QuantizeOptions::default(),
        &x,
        &Engine::default(),
    )
    .unwrap();
    let bytes = quantlab_quant::export::to_bytes(&int8, serde_json::json!({})).unwrap();
    let (back, _) = quantlab_quant::export::from_bytes(&bytes, &dir.join("m.safetensors")).unwrap();
    let kinds_back: Vec<&str> = back
        .network
        .nodes
        .iter()
        .map(quantlab_quant::Node::kind)
        .collect();
    assert_eq!(kinds_back, kinds);
    let e = Engine::default();
    assert_eq!(
        e.run_once(&back, &x, 4).unwrap(),
        e.run_once(&int8, &x, 4).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn float_logits_equal_onnx_runtime_and_static_int8_matches_its_quantize_static() {
    let splits = load(DatasetName::Mnist, &DataOptions::default()).unwrap();
    let from = (splits.normalization.mean[0], splits.normalization.std[0]);
    let test = as_trained(&splits.test, splits.test.len(), from);
    let calib = as_trained(&splits.train, 1000, from);
    let dir = tmp("ort");
    let (x, y) = write_set(&dir, "test", &test);
    let (cx, _) = write_set(&dir, "calib", &calib);
    let files = [
        "lenet_bn_opset13.onnx",
        "lenet_bn_opset17.onnx",
        "mlp_bn_softmax_opset13.onnx",
        "resnet_small_opset13.onnx",
        "resnet_small_opset17.onnx",
        "mobilenet_small_opset13.onnx",
    ]
    .map(fixture)
    .into_iter()
    .chain([relu6_variant(&dir)]);
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let name = name.as_str();
        let imported = import_onnx(&file).unwrap();
        let net = Network::from_graph(&imported.graph).unwrap();
        let float = QuantModel::float(net.clone());
        let mut reference = logits(&float, &test);
        if name.contains("softmax") {
            reference = softmax_rows(&reference);
        }
        let e = Engine::default();
        let f32_acc = score(&e, &float, &test).unwrap().accuracy;
        let int8 = quantize(&net, &QuantizeOptions::default(), &calib.features, &e).unwrap();
        let int8_acc = score(&e, &int8, &test).unwrap().accuracy;
        println!("{name}: quantlab f32 {f32_acc:.4}, static int8 {int8_acc:.4}");
        let r = dir.join(format!("{name}.ref.npy"));
        npy::write(&r, &[test.len(), 10], &reference).unwrap();
        let Some(v) = run_python(
            "import pytorch_fixtures: ONNX Runtime float",
            &[&script("ort_check.py"), &file, &x, &y, &r],
        ) else {
            return;
        };
        let (acc, agree, diff) = (
            v["accuracy"].as_f64().unwrap(),
            v["agreement"].as_f64().unwrap(),
            v["max_abs_diff"].as_f64().unwrap(),
        );
        println!("  ONNX Runtime f32 {acc:.4}, top-1 agreement {agree:.5}, max |diff| {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: logits differ by {diff}");
        assert!((acc - f32_acc).abs() < 1e-9, "{name}: {acc} vs {f32_acc}");
        let out = dir.join(name.replace(".onnx", ""));
        let v = run_python(
            "import pytorch_fixtures: ONNX Runtime quantize_static",
            &[&script("ort_quantize_static.py"), &file, &cx, &x, &y, &out],
        )
        .expect("probed above");
        // The scheme's own accuracy (QDQ as written), and what ONNX Runtime's int8 kernels
        // make of it (lower on x86 without VNNI, where its u8s8 kernels saturate).
        let ort_int8 = v["int8_accuracy_qdq_reference"].as_f64().unwrap();
        let ort_kernels = v["int8_accuracy"].as_f64().unwrap();
        println!(
            "  ONNX Runtime quantize_static int8 {ort_int8:.4} (its int8 kernels: {ort_kernels:.4})"
        );
        assert!(
            (int8_acc - ort_int8).abs() <= 0.001 + 1e-9,
            "{name}: quantlab int8 {int8_acc} vs ONNX Runtime {ort_int8}"
        );
        // quantlab's own int8 model exported (QDQ) runs in ONNX Runtime at its accuracy.
        let exported = dir.join(name.replace(".onnx", "_int8.onnx"));
        let onnx = quantlab_onnx::to_onnx(&int8, quantlab_onnx::OnnxTarget::Qdq).unwrap();
        quantlab_onnx::write(&exported, &onnx.model, true).unwrap();
        let q = dir.join(format!("{name}.int8.npy"));
        npy::write(&q, &[test.len(), 10], &logits(&int8, &test)).unwrap();
        let v = run_python(
            "import pytorch_fixtures: quantlab's int8 export in ONNX Runtime",
            &[
                &script("ort_check.py"),
                &exported,
                &x,
                &y,
                &q,
                Path::new("--as-written"),
            ],
        )
        .expect("probed above");
        let (acc, agree) = (
            v["accuracy"].as_f64().unwrap(),
            v["agreement"].as_f64().unwrap(),
        );
        println!("  quantlab's int8 export in ONNX Runtime {acc:.4} (top-1 agreement {agree:.5})");
        assert!(
            (acc - int8_acc).abs() <= 0.001 + 1e-9 && agree >= 0.997,
            "{name}: export {acc} (agreement {agree}) vs quantlab int8 {int8_acc}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
