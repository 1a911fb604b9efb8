//! Files the import must refuse with one clear line naming the file (and the node and
//! operator where one is at fault), never a panic: unsupported operators and graphs, wrong
//! input ranks, weights of the wrong length, empty, truncated and corrupted files.

use std::path::{Path, PathBuf};

use quantlab_import::{import_onnx, import_onnx_bytes};
use quantlab_onnx::{DataType, Dim, GraphBuilder, ModelProto, write};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ql-import-bad-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 784 -> 10 classifier with `op` between the Gemm and the output.
fn model_with(op: &str, input_dims: &[Dim]) -> ModelProto {
    let mut g = GraphBuilder::new("bad");
    g.input("x", DataType::Float, input_dims)
        .batched_output("y", &[10]);
    g.initializer("w", &[10, 784], &vec![0.01f32; 7840])
        .unwrap();
    g.initializer("b", &[10], &[0.0f32; 10]).unwrap();
    g.node(
        "fc",
        "Gemm",
        &["x", "w", "b"],
        &["h"],
        &[("transB", quantlab_onnx::Attr::Int(1))],
    );
    g.node("act", op, &["h"], &["y"], &[]);
    g.finish(13, "quantlab-test")
}

/// Writes `model` and imports it: the error's text.
fn refused(dir: &Path, name: &str, model: &ModelProto) -> String {
    let p = dir.join(name);
    write(&p, model, true).unwrap();
    let e = import_onnx(&p).expect_err(name).to_string();
    assert!(e.contains(name), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn unsupported_operators_and_graphs_are_named() {
    let dir = tmp("ops");
    let flat = [Dim::batch(), Dim::Fixed(784)];
    let e = refused(&dir, "custom.onnx", &model_with("FooBar", &flat));
    assert!(
        e.contains("FooBar") && e.contains("'act'") && e.contains("supported"),
        "{e}"
    );
    let e = refused(&dir, "tanh.onnx", &model_with("Tanh", &flat));
    assert!(e.contains("Tanh") && e.contains("supported"), "{e}");
    // An Add of two values of different shapes, and a projection shortcut (a branch with
    // a layer of its own).
    let mut g = GraphBuilder::new("bad");
    g.input("x", DataType::Float, &flat)
        .batched_output("y", &[10]);
    g.initializer("w", &[10, 784], &vec![0.01f32; 7840])
        .unwrap();
    g.initializer("b", &[10], &[0.0f32; 10]).unwrap();
    let gemm = [("transB", quantlab_onnx::Attr::Int(1))];
    g.node("fc", "Gemm", &["x", "w", "b"], &["h"], &gemm);
    g.node("skip", "Add", &["h", "x"], &["y"], &[]);
    let e = refused(&dir, "add_shapes.onnx", &g.finish(13, "quantlab-test"));
    assert!(
        e.contains("'skip' (Add)") && e.contains("[784]") && e.contains("[10]"),
        "{e}"
    );
    let mut g = GraphBuilder::new("bad");
    g.input("x", DataType::Float, &flat)
        .batched_output("y", &[10]);
    g.initializer("w", &[10, 784], &vec![0.01f32; 7840])
        .unwrap();
    g.initializer("b", &[10], &[0.0f32; 10]).unwrap();
    g.node("fc", "Gemm", &["x", "w", "b"], &["h"], &gemm);
    g.node("proj", "Gemm", &["x", "w", "b"], &["p"], &gemm);
    g.node("join", "Add", &["h", "p"], &["y"], &[]);
    let e = refused(&dir, "projection.onnx", &g.finish(13, "quantlab-test"));
    assert!(e.contains("'proj'") && e.contains("projection"), "{e}");
    // A grouped convolution that is not depthwise (2 groups of 2 channels).
    let mut g = GraphBuilder::new("bad");
    let img = [Dim::batch(), Dim::Fixed(4), Dim::Fixed(6), Dim::Fixed(6)];
    g.input("x", DataType::Float, &img)
        .batched_output("y", &[10]);
    g.initializer("cw", &[4, 2, 3, 3], &[0.1f32; 72]).unwrap();
    g.initializer("w", &[10, 64], &[0.01f32; 640]).unwrap();
    g.initializer("b", &[10], &[0.0f32; 10]).unwrap();
    g.node(
        "grouped",
        "Conv",
        &["x", "cw"],
        &["c"],
        &[
            ("kernel_shape", quantlab_onnx::Attr::Ints(vec![3, 3])),
            ("group", quantlab_onnx::Attr::Int(2)),
        ],
    );
    g.node("flat", "Flatten", &["c"], &["f"], &[]);
    g.node(
        "fc",
        "Gemm",
        &["f", "w", "b"],
        &["y"],
        &[("transB", quantlab_onnx::Attr::Int(1))],
    );
    let e = refused(&dir, "grouped.onnx", &g.finish(13, "quantlab-test"));
    assert!(
        e.contains("'grouped' (Conv)") && e.contains("2 groups"),
        "{e}"
    );
    // A Clip without bounds is not a capped ReLU.
    let e = refused(&dir, "clip.onnx", &model_with("Clip", &flat));
    assert!(e.contains("'act' (Clip)") && e.contains("ReLU6"), "{e}");
    // Relu is supported: the same file with it imports.
    let p = dir.join("relu.onnx");
    write(&p, &model_with("Relu", &flat), true).unwrap();
    import_onnx(&p).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wrong_input_rank_and_wrong_weight_length_are_refused() {
    let dir = tmp("shape");
    let rank3 = [Dim::batch(), Dim::Fixed(28), Dim::Fixed(28)];
    let e = refused(&dir, "rank3.onnx", &model_with("Relu", &rank3));
    assert!(e.contains("rank 3"), "{e}");
    // The weight's data holds fewer values than its dims say.
    let mut m = model_with("Relu", &[Dim::batch(), Dim::Fixed(784)]);
    let w = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some("w"))
        .unwrap();
    w.raw_data.as_mut().unwrap().truncate(4 * 700);
    let e = refused(&dir, "short_weight.onnx", &m);
    assert!(
        e.contains('w') && (e.contains("bytes") || e.contains("values")),
        "{e}"
    );
    // The Gemm's weight does not fit its input (784 features in, 500 expected).
    let mut m = model_with("Relu", &[Dim::batch(), Dim::Fixed(500)]);
    m.graph.as_mut().unwrap().input[0].name = Some("x".into());
    let e = refused(&dir, "mismatch.onnx", &m);
    assert!(e.contains("784") && e.contains("500"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_empty_truncated_and_corrupt_files_never_panic() {
    let e = import_onnx(Path::new("/no/such/model.onnx"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/no/such/model.onnx") && e.contains("no such file"),
        "{e}"
    );
    let label = Path::new("lenet.onnx");
    let e = import_onnx_bytes(label, &[]).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let seed = std::fs::read(fixture("lenet_bn_opset13.onnx")).unwrap();
    let cases = quantlab_testkit::mutate::cases(&seed, &[], 200, 20);
    let o = quantlab_testkit::check_reader("import_onnx", &cases, 64 << 20, |b| {
        import_onnx_bytes(label, b)
    });
    assert!(o.refused > 0, "{o:?}");
}
