//! End-to-end tests of the `quantlab` binary: the commands a user types, their outputs, and
//! their errors on bad input (one line, non-zero exit, never a panic).

use std::path::Path;
use std::process::{Command, Output};

/// A store for the runs these tests record, so they never write `./mlruns` in the clone.
fn test_store() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn quantlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(args)
        .env("QUANTLAB_MLFLOW_DIR", test_store().join("mlruns"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("the quantlab binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The last line of stdout, as the line it is and parsed as JSON (`--json` prints one).
fn last_json(o: &Output) -> (String, serde_json::Value) {
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    (line, v)
}

fn fails_cleanly(o: &Output, needle: &str) {
    let t = text(o);
    assert!(!o.status.success(), "expected failure: {t}");
    assert!(t.contains(needle), "expected {needle:?} in: {t}");
    assert!(!t.contains("panicked"), "panic: {t}");
}

#[test]
fn data_lists_shipped_sets_and_rejects_bad_input() {
    let o = quantlab(&["data", "--dataset", "digits"]);
    assert!(o.status.success(), "{}", text(&o));
    // 1,797 digits: 359 test, 145 validation (10% of the 1,438 training ones), 1,293 train.
    for n in ["1293 samples", "145 samples", "359 samples"] {
        assert!(text(&o).contains(n), "{n}: {}", text(&o));
    }
    let empty = tempfile::tempdir().unwrap();
    fails_cleanly(
        &quantlab(&[
            "data",
            "--dataset",
            "mnist",
            "--data-dir",
            empty.path().to_str().unwrap(),
        ]),
        "not found",
    );
    fails_cleanly(&quantlab(&["data", "--dataset", "cifar"]), "invalid value");
    // A truncated MNIST file is a one-line error naming it.
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("mnist");
    std::fs::create_dir(&m).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    for f in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let img = std::fs::read(src.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(m.join("train-images-idx3-ubyte.gz"), &img[..img.len() / 3]).unwrap();
    let o = quantlab(&[
        "data",
        "--dataset",
        "mnist",
        "--data-dir",
        d.path().to_str().unwrap(),
    ]);
    fails_cleanly(&o, "train-images-idx3-ubyte.gz");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim().lines().count(),
        1,
        "{}",
        text(&o)
    );
}

#[test]
fn train_quantize_eval_inspect_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("ck");
    let ck_s = ck.to_str().unwrap();
    let o = quantlab(&[
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "3",
        "--lr",
        "0.01",
        "--out",
        ck_s,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // A second run reuses the checkpoint and says so.
    let o = quantlab(&[
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "3",
        "--lr",
        "0.01",
        "--out",
        ck_s,
    ]);
    assert!(text(&o).contains("not retraining"), "{}", text(&o));
    let f32_json = quantlab(&["eval", "--model", ck_s, "--json"]);
    assert!(f32_json.status.success(), "{}", text(&f32_json));
    let (line, v) = last_json(&f32_json);
    let f32_acc = v["accuracy"].as_f64().unwrap();
    assert!(f32_acc > 0.8 && v["loss"].as_f64().unwrap() > 0.0, "{line}");

    let file = d.path().join("m.safetensors");
    let o = quantlab(&[
        "quantize",
        "--checkpoint",
        ck_s,
        "--method",
        "static",
        "--observer",
        "percentile",
        "--out",
        file.to_str().unwrap(),
        "--max-drop",
        "1.0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("SQNR"), "{}", text(&o));
    let o = quantlab(&["eval", "--model", file.to_str().unwrap(), "--json"]);
    let (line, v) = last_json(&o);
    assert_eq!(v["method"], "static-percentile-per-channel");
    assert!(
        (f32_acc - v["accuracy"].as_f64().unwrap()).abs() < 0.03,
        "{line}"
    );
    let o = quantlab(&["inspect", file.to_str().unwrap()]);
    assert!(
        o.status.success() && text(&o).contains("weight i8[50, 64]"),
        "{}",
        text(&o)
    );

    let bw = d.path().join("bw");
    let o = quantlab(&[
        "quantize",
        "--checkpoint",
        ck_s,
        "--method",
        "burn-weights",
        "--out",
        bw.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quantlab(&["eval", "--model", bw.to_str().unwrap(), "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"burn-weights\""),
        "{}",
        text(&o)
    );

    // Bad inputs: corrupt int8 file, missing checkpoint, bad config key, unknown option.
    std::fs::write(&file, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    fails_cleanly(
        &quantlab(&["eval", "--model", file.to_str().unwrap()]),
        "m.safetensors",
    );
    fails_cleanly(
        &quantlab(&[
            "quantize",
            "--checkpoint",
            "/nonexistent/ck",
            "--out",
            "/tmp/x.safetensors",
        ]),
        "not a quantlab checkpoint",
    );
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "dataset = \"digits\"\nepoch = 2\n").unwrap();
    fails_cleanly(
        &quantlab(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            d.path().join("x").to_str().unwrap(),
        ]),
        "epoch",
    );
    fails_cleanly(
        &quantlab(&[
            "quantize",
            "--checkpoint",
            ck_s,
            "--method",
            "magic",
            "--out",
            "x",
        ]),
        "invalid value",
    );
    std::fs::write(ck.join("model.bpk"), b"truncated").unwrap();
    fails_cleanly(&quantlab(&["eval", "--model", ck_s]), "model.bpk");
}

/// The value of `key: value` in a meta.yaml line, quotes removed.
fn yaml_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let v = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(v.trim_matches(|c| c == '"' || c == '\''))
}

/// The run folders of the experiment named `name` in an MLflow file store.
fn mlflow_runs(store: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let exp = std::fs::read_dir(store)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|d| {
            std::fs::read_to_string(d.join("meta.yaml"))
                .is_ok_and(|m| m.lines().any(|l| yaml_value(l, "name") == Some(name)))
        })
        .unwrap_or_else(|| panic!("no experiment {name:?} in {}", store.display()));
    std::fs::read_dir(&exp)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join("meta.yaml").is_file() && d.join("metrics").is_dir())
        .collect()
}

/// The values of a metric file (`timestamp value step` lines) as (step, value).
fn metric(run: &Path, key: &str) -> Vec<(i64, f64)> {
    std::fs::read_to_string(run.join("metrics").join(key))
        .unwrap_or_else(|_| panic!("no metric {key} in {}", run.display()))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "metric line {l:?}");
            assert!(
                f[0].parse::<i64>().unwrap() > 1_600_000_000_000,
                "timestamp in ms: {l}"
            );
            (f[2].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect()
}

#[test]
fn export_time_and_mlflow_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("mlruns");
    let (ck, int8) = (d.path().join("ck"), d.path().join("m.safetensors"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = quantlab(&[
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "3",
        "--out",
        &s(&ck),
        "--mlflow-dir",
        &s(&store),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("defaults from"), "{}", text(&o));
    let runs = mlflow_runs(&store, "quantlab train");
    assert_eq!(runs.len(), 1);
    let loss = metric(&runs[0], "train_loss");
    assert_eq!(loss.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        std::fs::read_to_string(runs[0].join("params/epochs")).unwrap(),
        "3"
    );
    assert_eq!(
        std::fs::read_to_string(runs[0].join("tags/mlflow.runName")).unwrap(),
        "digits/mlp"
    );
    assert!(runs[0].join("artifacts/train.toml").is_file());
    let meta = std::fs::read_to_string(runs[0].join("meta.yaml")).unwrap();
    let field = |k: &str| {
        meta.lines()
            .find_map(|l| yaml_value(l, k))
            .unwrap_or_default()
    };
    assert_eq!(
        (field("status"), field("lifecycle_stage")),
        ("3", "active"),
        "{meta}"
    );

    let o = quantlab(&[
        "quantize",
        "--checkpoint",
        &s(&ck),
        "--out",
        &s(&int8),
        "--mlflow-dir",
        &s(&store),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = mlflow_runs(&store, "quantlab quantize");
    assert_eq!(runs.len(), 1);
    let sqnr = metric(&runs[0], "layer_sqnr_db");
    assert_eq!(sqnr.len(), 4, "one SQNR per dense layer: {sqnr:?}");
    assert!(sqnr.iter().all(|(_, v)| *v > 10.0), "{sqnr:?}");
    assert!(runs[0].join("artifacts/model/m.safetensors").is_file());

    // ONNX export: written, inspected, never overwritten silently.
    let onnx = d.path().join("m.onnx");
    let o = quantlab(&["export", &s(&int8), "--out", &s(&onnx)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("TensorRT"), "u8 note: {}", text(&o));
    let o = quantlab(&["inspect", &s(&onnx)]);
    assert!(
        o.status.success() && text(&o).contains("QuantizeLinear"),
        "{}",
        text(&o)
    );
    fails_cleanly(
        &quantlab(&["export", &s(&int8), "--out", &s(&onnx)]),
        "--force",
    );
    assert!(
        quantlab(&["export", &s(&int8), "--out", &s(&onnx), "--force"])
            .status
            .success()
    );
    let nowhere = d.path().join("no/such/dir/m.onnx");
    fails_cleanly(
        &quantlab(&["export", &s(&int8), "--out", &s(&nowhere)]),
        "no/such/dir",
    );
    fails_cleanly(
        &quantlab(&[
            "export",
            &s(&int8),
            "--out",
            &s(&d.path().join("t.onnx")),
            "--target",
            "tensorrt",
        ]),
        "i8-symmetric",
    );
    // Corrupt and truncated .onnx files are errors naming the file.
    let bytes = std::fs::read(&onnx).unwrap();
    let cut = d.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails_cleanly(&quantlab(&["inspect", &s(&cut)]), "cut.onnx");
    let junk = d.path().join("junk.onnx");
    std::fs::write(&junk, b"\xff\xfe not a protobuf at all").unwrap();
    fails_cleanly(&quantlab(&["inspect", &s(&junk)]), "junk.onnx");
    let fixed = d.path().join("fixed.safetensors");
    assert!(
        quantlab(&[
            "quantize",
            "--checkpoint",
            &s(&ck),
            "--method",
            "naive-fixed",
            "--out",
            &s(&fixed),
            "--no-mlflow"
        ])
        .status
        .success()
    );
    fails_cleanly(
        &quantlab(&["export", &s(&fixed), "--out", &s(&d.path().join("f.onnx"))]),
        "naive-fixed",
    );

    // quantlab time: JSON with every sample.
    let o = quantlab(&["time", &s(&int8), "--batch", "1,8", "--reps", "3", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, v) = last_json(&o);
    let res = v["results"].as_array().unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[1]["batch"], 8);
    assert_eq!(res[1]["samples_us"].as_array().unwrap().len(), 3);
    assert!(v["layers"].is_null(), "per-node times only with --layers");
    // --layers: one entry per node with its multiply-accumulates and time.
    let o = quantlab(&[
        "time",
        &s(&int8),
        "--batch",
        "8",
        "--reps",
        "2",
        "--threads",
        "1,2",
        "--layers",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (line, v) = last_json(&o);
    // Asked at two thread counts, the steps are timed once per batch, on one thread, and
    // cover the nodes in order (the input's preparation first, as an empty range).
    assert_eq!(v["results"].as_array().unwrap().len(), 2, "{line}");
    assert_eq!(v["layers"].as_array().unwrap().len(), 1, "{line}");
    assert_eq!(v["layers"][0]["threads"], 1, "{line}");
    let layers = v["layers"][0]["steps"].as_array().unwrap();
    assert!(layers.len() >= 2, "{line}");
    let mut next = 0;
    for l in layers {
        let (a, b) = (
            l["nodes"][0].as_u64().unwrap(),
            l["nodes"][1].as_u64().unwrap(),
        );
        assert_eq!(a, next, "{line}");
        next = b;
    }
    let dense: Vec<_> = layers
        .iter()
        .filter(|l| l["macs_per_sample"].as_u64().unwrap() > 0)
        .collect();
    assert!(!dense.is_empty(), "{line}");
    for l in &dense {
        assert!(l["median_us"].as_f64().unwrap() > 0.0, "{line}");
        assert!(
            l["precision"].as_str().unwrap().starts_with("int8"),
            "{line}"
        );
    }
    fails_cleanly(
        &quantlab(&["time", &s(&int8), "--gpu", "--layers"]),
        "--layers",
    );
    fails_cleanly(&quantlab(&["time", &s(&int8), "--batch", "0"]), "--batch");
    // --gpu: the static model on quantlab's GPU int8 path; a model without one is refused.
    let o = quantlab(&[
        "time",
        &s(&int8),
        "--gpu",
        "--batch",
        "1,8",
        "--reps",
        "2",
        "--json",
    ]);
    if !o.status.success() && text(&o).contains("no wgpu device") {
        let why = quantlab_testkit::Missing::gpu("quantlab time --gpu: no wgpu device");
        quantlab_testkit::missing("time --gpu", &why);
    } else {
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("int8 dot product:"), "{}", text(&o));
        let (_, v) = last_json(&o);
        assert_eq!(v["kernel"], "gpu wgsl");
        assert_eq!(v["results"].as_array().unwrap().len(), 2);
        let dynamic = d.path().join("dynamic.safetensors");
        let o = quantlab(&[
            "quantize",
            "--checkpoint",
            &s(&ck),
            "--method",
            "dynamic",
            "--out",
            &s(&dynamic),
            "--no-mlflow",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        fails_cleanly(&quantlab(&["time", &s(&dynamic), "--gpu"]), "static int8");
        fails_cleanly(
            &quantlab(&["time", &s(&int8), "--gpu", "--threads", "2"]),
            "--threads",
        );
    }

    // An unwritable store is one warning; the run's own output is still written.
    let file = d.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out2 = d.path().join("m2.safetensors");
    let o = quantlab(&[
        "quantize",
        "--checkpoint",
        &s(&ck),
        "--out",
        &s(&out2),
        "--mlflow-dir",
        &s(&file.join("mlruns")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning: MLflow tracking skipped"),
        "{}",
        text(&o)
    );
    assert!(out2.is_file());
}

/// burn's ndarray backend is opt-in: without it, asking for it says how to build it.
#[cfg(not(feature = "ndarray"))]
#[test]
fn ndarray_without_the_feature_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    fails_cleanly(
        &quantlab(&[
            "train",
            "--dataset",
            "digits",
            "--device",
            "ndarray",
            "--no-mlflow",
            "--out",
            out.to_str().unwrap(),
        ]),
        "--features ndarray",
    );
    assert!(!out.join("checkpoint.json").exists());
}
