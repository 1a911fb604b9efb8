//! End-to-end: a float ONNX file from PyTorch (`crates/import/tests/fixtures`) through the
//! binary: `quantize --checkpoint FILE.onnx --dataset mnist` writes an int8 file that `eval`
//! scores to the same accuracy, `eval` runs the ONNX file itself in float, and bad
//! invocations fail with one line naming the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../import/tests/fixtures")
        .join(name)
}

fn quantlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(args)
        .args(
            ["--no-mlflow"]
                .iter()
                .filter(|_| matches!(args[0], "quantize")),
        )
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The failure's stderr: exactly one line.
fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

fn json_accuracy(text: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    v["accuracy"].as_f64().unwrap()
}

#[test]
fn an_onnx_model_quantizes_and_scores_like_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = fixture("lenet_bn_opset17.onnx");
    let out = tmp.path().join("lenet_int8.safetensors");
    let text = stdout(&quantlab(&[
        "quantize",
        "--checkpoint",
        onnx.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(text.contains("folded into '/0/Conv'"), "{text}");
    assert!(
        text.contains("ONNX node") && text.contains("/9/Gemm"),
        "{text}"
    );
    // The int8 file reloads with the normalisation it was quantized with.
    let int8 = json_accuracy(&stdout(&quantlab(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--json",
    ])));
    let line = text.lines().find(|l| l.contains("test accuracy")).unwrap();
    assert!(
        line.contains(&format!("-> {:.2}%", int8 * 100.0)),
        "{line} vs eval {int8}"
    );
    assert!(int8 > 0.975, "{int8}");
    // `time --layers`: every step of the int8 file as the engine runs it, in order, the
    // conv + pool pairs as one step each, the dense ones with a rate; the ONNX file's lines
    // carry the user's node names.
    let layers = stdout(&quantlab(&[
        "time",
        out.to_str().unwrap(),
        "--batch",
        "4",
        "--reps",
        "2",
        "--layers",
    ]));
    let table = |t: &str| -> Vec<String> {
        t.lines()
            .skip_while(|l| !l.trim_start().starts_with("nodes "))
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    let rows = table(&layers);
    let mut next = 0;
    for r in &rows {
        let first = r.split_whitespace().next().unwrap();
        if first == "-" {
            assert!(r.contains("input"), "{layers}");
            continue;
        }
        let (a, b) = first.split_once('-').unwrap_or((first, first));
        assert_eq!(a.parse::<usize>().unwrap(), next, "{layers}");
        next = b.parse::<usize>().unwrap() + 1;
    }
    assert!(next >= 8, "{layers}");
    assert!(
        rows.iter().any(|r| r.contains("conv2d")
            && r.contains("+ maxpool")
            && r.contains("int8-static")
            && r.ends_with('%')),
        "{layers}"
    );
    let float_layers = stdout(&quantlab(&[
        "time",
        onnx.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--batch",
        "4",
        "--reps",
        "2",
        "--layers",
    ]));
    assert!(
        float_layers.contains("ONNX nodes")
            && table(&float_layers)
                .iter()
                .any(|r| r.contains("f32") && r.ends_with("/9/Gemm")),
        "{float_layers}"
    );
    let float = json_accuracy(&stdout(&quantlab(&[
        "eval",
        "--model",
        onnx.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--json",
    ])));
    assert!(
        line.contains(&format!("f32 {:.2}%", float * 100.0)),
        "{line}"
    );
    // Raw pixels instead of the normalisation the model was trained with cost accuracy:
    // the flag is applied, not ignored.
    let raw = json_accuracy(&stdout(&quantlab(&[
        "eval",
        "--model",
        onnx.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--normalize",
        "none",
        "--json",
    ])));
    assert!(raw < float - 0.01, "none {raw} vs dataset {float}");
}

#[test]
fn npy_data_calibrates_and_scores_an_onnx_model_without_a_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    // quantlab's own .npy writer: MNIST normalised as quantlab trains (mean 0.1307, std
    // 0.3081), which is how the fixture was trained.
    stdout(&quantlab(&[
        "data",
        "--dataset",
        "mnist",
        "--npy-out",
        d,
        "--npy-train",
        "300",
    ]));
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let out = p("int8.safetensors");
    let onnx = fixture("lenet_bn_opset13.onnx");
    let text = stdout(&quantlab(&[
        "quantize",
        "--checkpoint",
        onnx.to_str().unwrap(),
        "--calib-npy",
        &p("mnist-train-x.npy"),
        "--eval-npy",
        &p("mnist-test-x.npy"),
        "--labels",
        &p("mnist-test-y.npy"),
        "--out",
        &out,
    ]));
    assert!(text.contains("calibration: 300 inputs"), "{text}");
    assert!(text.contains("no validation split"), "{text}");
    let int8 = json_accuracy(&stdout(&quantlab(&[
        "eval",
        "--model",
        &out,
        "--eval-npy",
        &p("mnist-test-x.npy"),
        "--labels",
        &p("mnist-test-y.npy"),
        "--json",
    ])));
    let line = text.lines().find(|l| l.contains("test accuracy")).unwrap();
    assert!(
        line.contains(&format!("-> {:.2}%", int8 * 100.0)),
        "{line} vs {int8}"
    );
    assert!(int8 > 0.975, "{int8}");
    // Labels that do not match the inputs, and inputs of the wrong shape.
    let e = one_line_error(&quantlab(&[
        "eval",
        "--model",
        onnx.to_str().unwrap(),
        "--eval-npy",
        &p("mnist-test-x.npy"),
        "--labels",
        &p("mnist-train-y.npy"),
    ]));
    assert!(
        e.contains("mnist-train-y.npy") && e.contains("10000 labels"),
        "{e}"
    );
    let e = one_line_error(&quantlab(&[
        "eval",
        "--model",
        onnx.to_str().unwrap(),
        "--eval-npy",
        &p("mnist-test-y.npy"),
        "--labels",
        &p("mnist-test-y.npy"),
    ]));
    assert!(
        e.contains("mnist-test-y.npy") && e.contains("(n, [1, 28, 28])"),
        "{e}"
    );
    let e = one_line_error(&quantlab(&[
        "quantize",
        "--checkpoint",
        onnx.to_str().unwrap(),
        "--eval-npy",
        &p("mnist-test-x.npy"),
        "--out",
        &out,
    ]));
    assert!(e.contains("--labels"), "{e}");
}

#[test]
fn bad_onnx_invocations_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.safetensors");
    let out = out.to_str().unwrap();
    let lenet = fixture("lenet_bn_opset13.onnx");
    let lenet = lenet.to_str().unwrap();
    let e = one_line_error(&quantlab(&[
        "quantize",
        "--checkpoint",
        lenet,
        "--out",
        out,
    ]));
    assert!(e.contains("--dataset"), "{e}");
    let e = one_line_error(&quantlab(&[
        "quantize",
        "--checkpoint",
        lenet,
        "--dataset",
        "digits",
        "--out",
        out,
    ]));
    assert!(e.contains("[1, 8, 8]") && e.contains("[1, 28, 28]"), "{e}");
    // A bad flag value is clap's usage error: its first line names it.
    let o = quantlab(&[
        "quantize",
        "--checkpoint",
        lenet,
        "--dataset",
        "mnist",
        "--normalize",
        "0.1",
        "--out",
        out,
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.lines().next().unwrap().contains("MEAN,STD"), "{e}");
    let missing = tmp.path().join("missing.onnx");
    let e = one_line_error(&quantlab(&[
        "eval",
        "--model",
        missing.to_str().unwrap(),
        "--dataset",
        "mnist",
    ]));
    assert!(
        e.contains("missing.onnx") && e.contains("no such file"),
        "{e}"
    );
    assert!(!Path::new(out).exists(), "no half-written output");
}

#[test]
fn the_bench_runs_its_matrix_on_an_imported_model() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let lenet = fixture("lenet_bn_opset13.onnx");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/bench.toml");
    // A quick bench of LeNet-BN on `dataset`, with `extra` arguments.
    let run_bench = |dataset: &str, extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--config",
            config.to_str().unwrap(),
            "--quick",
            "--onnx",
            lenet.to_str().unwrap(),
            "--dataset",
            dataset,
            "--no-mlflow",
            "--results",
            results.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        quantlab(&args)
    };
    let out = stdout(&run_bench("mnist", &["--normalize", "0.1307,0.3081"]));
    assert!(out.contains("mnist/lenet_bn_opset13"), "{out}");
    let run = std::fs::read_link(results.join("latest"))
        .map(|p| if p.is_absolute() { p } else { results.join(p) })
        .unwrap();
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("bench.json")).unwrap()).unwrap();
    let rows = bench["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["model"] == "lenet_bn_opset13"));
    // quantlab's rows only (no burn model to run), static int8 close to float.
    assert!(rows.iter().all(|r| r["backend"] == "quantlab"), "{rows:?}");
    let acc = |method: &str| {
        rows.iter()
            .find(|r| r["method"] == method && r["threads"] == 1)
            .map(|r| r["accuracy"].as_f64().unwrap())
            .unwrap_or_else(|| panic!("no {method} row"))
    };
    let (f32_acc, int8_acc) = (acc("f32"), acc("static-minmax-per-channel"));
    assert!(
        f32_acc > 0.9 && (f32_acc - int8_acc).abs() < 0.02,
        "{f32_acc} {int8_acc}"
    );
    let report = std::fs::read_to_string(run.join("REPORT.md")).unwrap();
    assert!(report.contains("imported from"), "{report}");
    // The model's input must match the dataset's.
    let e = one_line_error(&run_bench("digits", &[]));
    assert!(e.contains("[1, 28, 28]") && e.contains("digits"), "{e}");
}
