//! End-to-end tests of the `quantlab` binary: the commands a user types, their outputs, and
//! their errors on bad input (one line, non-zero exit, never a panic).

use std::path::Path;
use std::process::{Command, Output};

fn quantlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(args)
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
    assert!(text(&o).contains("1438 samples"), "{}", text(&o));
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
    let line = String::from_utf8_lossy(&f32_json.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
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
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
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
