//! End-to-end: `quantlab bench --quick` on digits, synthetic and MNIST, then the saved JSON
//! is checked row by row (the contract of DESIGN.md), and the plots exist.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Largest accuracy drop tolerated for a calibrated static row in quick mode (pp).
const STATIC_DROP_PP: f64 = 3.0;
/// Least int8/f32 size ratio for the MNIST models.
const MNIST_MIN_RATIO: f64 = 3.0;

#[test]
fn quick_matrix_writes_complete_results_and_plots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root.join("configs/bench.toml")).unwrap();
    let cfg = tmp.path().join("bench.toml");
    std::fs::write(
        &cfg,
        shipped.replace(
            r#"datasets = ["mnist", "fashion-mnist", "digits", "synthetic"]"#,
            r#"datasets = ["digits", "synthetic", "mnist"]"#,
        ),
    )
    .unwrap();
    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args([
            "bench",
            "--quick",
            "--config",
            cfg.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
            "--mlflow-dir",
            tmp.path().join("mlruns").to_str().unwrap(),
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("synthetic/cnn: skipped"), "{text}");

    let run = results.join("latest");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("bench.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let cfg_methods: Vec<String> = json["meta"]["config"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let pairs = [
        ("digits", "logreg"),
        ("digits", "mlp"),
        ("digits", "cnn"),
        ("synthetic", "logreg"),
        ("synthetic", "mlp"),
        ("mnist", "logreg"),
        ("mnist", "mlp"),
        ("mnist", "cnn"),
    ];
    for (ds, model) in pairs {
        let of = |method: &str, backend: Option<&str>| {
            rows.iter()
                .find(|r| {
                    r["dataset"] == ds
                        && r["model"] == model
                        && r["method"] == method
                        && backend.is_none_or(|b| r["backend"] == b)
                })
                .unwrap_or_else(|| panic!("missing row {ds}/{model}/{method}"))
        };
        let float = of("f32", Some("quantlab"));
        of("f32", Some("burn-flex"));
        // burn's ndarray backend is opt-in: its rows exist exactly when it is built.
        let nd = rows
            .iter()
            .any(|r| r["dataset"] == ds && r["model"] == model && r["backend"] == "burn-ndarray");
        assert_eq!(
            nd,
            cfg!(feature = "ndarray"),
            "{ds}/{model}: burn-ndarray rows"
        );
        let f_acc = float["accuracy"].as_f64().unwrap();
        let qat_here = json["meta"]["config"]["qat_pairs"]
            .as_array()
            .is_none_or(|p| p.iter().any(|p| *p == format!("{ds}/{model}")));
        for m in &cfg_methods {
            if m.starts_with("qat-") && !qat_here {
                assert!(
                    !rows.iter().any(|r| r["dataset"] == ds
                        && r["model"] == model
                        && r["method"] == m.as_str()),
                    "{ds}/{model}: {m} outside qat_pairs"
                );
                continue;
            }
            let r = of(m, None);
            for key in [
                "accuracy",
                "loss",
                "latency_b1_us",
                "latency_b64_us",
                "throughput_sps",
            ] {
                let v = r[key].as_f64().unwrap_or(f64::NAN);
                assert!(v.is_finite() && v >= 0.0, "{ds}/{model}/{m}: {key} = {v}");
            }
            assert!((0.0..=1.0).contains(&r["accuracy"].as_f64().unwrap()));
            assert!(r["size_bytes"].as_u64().unwrap() > 0 && r["params"].as_u64().unwrap() > 0);
            assert!(
                r["latency_b64_p90_us"].as_f64().unwrap() >= r["latency_b64_us"].as_f64().unwrap()
            );
            // A server's batch is timed too, and takes longer than batch 64.
            let (b64, b256) = (
                r["latency_b64_us"].as_f64().unwrap(),
                r["latency_b256_us"].as_f64().unwrap_or(0.0),
            );
            assert!(
                b256 > 0.0 && r["throughput_b256_sps"].as_f64().unwrap_or(0.0) > 0.0,
                "{ds}/{model}/{m}: batch 256 not timed"
            );
            assert!(
                b256 > b64,
                "{ds}/{model}/{m}: b256 {b256} us <= b64 {b64} us"
            );
            for key in ["accuracy_drop_pp", "size_ratio", "speedup_b64"] {
                assert!(
                    r[key].as_f64().is_some_and(f64::is_finite),
                    "{ds}/{model}/{m}: {key} missing"
                );
            }
            // Timed in the quick config's rounds; the speed-up is the median of per-round
            // ratios, inside their min-max.
            let rounds = json["meta"]["config"]["rounds"].as_u64().unwrap() as usize;
            for key in ["latency_b1_rounds_us", "latency_b64_rounds_us"] {
                assert_eq!(
                    r[key].as_array().map_or(0, Vec::len),
                    rounds,
                    "{ds}/{model}/{m}: {key}"
                );
            }
            let (lo, x, hi) = (
                r["speedup_b64_min"].as_f64().unwrap(),
                r["speedup_b64"].as_f64().unwrap(),
                r["speedup_b64_max"].as_f64().unwrap(),
            );
            assert!(lo <= x && x <= hi, "{ds}/{model}/{m}: {lo} {x} {hi}");
            assert!(r["granularity"].is_string() && r["device"] == "cpu");
            // 8-bit static rows lose little; the low-bit ones may collapse (that is what
            // they are there to show), and QAT's must report layers like static's.
            let tag = m.rsplit('-').next().unwrap_or("");
            let low_bit = m.starts_with("qat-")
                || (m.starts_with("static-") && tag.starts_with('w') && tag.contains('a'));
            if low_bit {
                assert!(
                    !r["layers"].as_array().unwrap().is_empty(),
                    "{ds}/{model}/{m}: no per-layer report"
                );
            }
            if m.starts_with("static-") && !low_bit {
                let drop = r["accuracy_drop_pp"].as_f64().unwrap();
                assert!(
                    drop < STATIC_DROP_PP,
                    "{ds}/{model}/{m}: drop {drop} pp (float {f_acc})"
                );
                assert!(
                    !r["layers"].as_array().unwrap().is_empty(),
                    "{ds}/{model}/{m}: no per-layer report"
                );
                if ds == "mnist" {
                    let ratio = r["size_ratio"].as_f64().unwrap();
                    assert!(ratio > MNIST_MIN_RATIO, "{model}/{m}: size ratio {ratio}");
                }
            }
        }
    }
    // Every model file the bench wrote opens again with its data, the synthetic ones
    // included (their provenance carries the set's parameters): scored and timed.
    for (ds, model) in pairs {
        for method in ["f32", "static-minmax-per-channel"] {
            let file = run.join(format!("models/{ds}-{model}-{method}.safetensors"));
            let o = Command::new(env!("CARGO_BIN_EXE_quantlab"))
                .args(["eval", "--model", file.to_str().unwrap(), "--json"])
                .current_dir(&root)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "eval {}: {said}", file.display());
            let o = Command::new(env!("CARGO_BIN_EXE_quantlab"))
                .args([
                    "time",
                    file.to_str().unwrap(),
                    "--batch",
                    "4",
                    "--reps",
                    "2",
                ])
                .current_dir(&root)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "time {}: {said}", file.display());
        }
    }
    // Below 8 bits: at W2A2, QAT recovers what post-training quantization loses, and the
    // bit-width sweep has every observer at every width.
    let acc = |m: &str| {
        rows.iter()
            .find(|r| r["dataset"] == "mnist" && r["model"] == "mlp" && r["method"] == m)
            .and_then(|r| r["accuracy"].as_f64())
            .unwrap_or_else(|| panic!("mnist/mlp {m} row"))
    };
    let (ptq, qat) = (acc("static-minmax-per-channel-w2a2"), acc("qat-w2a2"));
    assert!(qat > ptq + 0.1, "mnist/mlp W2A2: PTQ {ptq}, QAT {qat}");
    let bits = json["bit_sweep"].as_array().unwrap();
    for w in [8, 6, 4, 3, 2] {
        assert_eq!(
            bits.iter()
                .filter(|p| p["dataset"] == "mnist" && p["model"] == "cnn" && p["bits"] == w)
                .count(),
            5,
            "mnist/cnn at {w} bits: one point per observer"
        );
    }
    assert!(json["meta"]["machine"]["kernel"].is_string());
    for f in [
        "bench.csv",
        "REPORT.md",
        "plots/accuracy_vs_size-mnist.png",
        "plots/latency_b64-mnist.svg",
        "plots/sqnr-mnist-cnn.png",
        "plots/training_curves.png",
        "plots/bits-mnist-mlp.png",
    ] {
        let len = std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{f}: {len} bytes");
    }
    let csv = std::fs::read_to_string(run.join("bench.csv")).unwrap();
    assert_eq!(csv.lines().count(), rows.len() + 1);

    // MLflow: one model run per trained model, one child per row, metrics equal to the JSON.
    assert!(
        text.contains("MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri"),
        "{text}"
    );
    let store = tmp.path().join("mlruns");
    let exp = std::fs::read_dir(&store)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|d| {
            std::fs::read_to_string(d.join("meta.yaml")).is_ok_and(|m| {
                m.lines().any(|l| {
                    l.strip_prefix("name:")
                        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
                        == Some("quantlab bench: bench (quick)")
                })
            })
        })
        .expect("bench experiment");
    let runs: Vec<std::path::PathBuf> = std::fs::read_dir(&exp)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join("meta.yaml").is_file() && d.join("metrics").is_dir())
        .collect();
    let curves = json["curves"].as_array().unwrap().len();
    assert_eq!(runs.len(), curves + rows.len(), "model runs + row runs");
    let children: Vec<&std::path::PathBuf> = runs
        .iter()
        .filter(|r| r.join("tags/mlflow.parentRunId").is_file())
        .collect();
    assert_eq!(children.len(), rows.len());
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    for row in rows.iter().filter(|r| r["supported"] == true) {
        let run = children
            .iter()
            .find(|c| {
                read(c.join("params/method")) == row["method"].as_str().unwrap()
                    && read(c.join("params/backend")) == row["backend"].as_str().unwrap()
                    && read(c.join("tags/dataset")) == row["dataset"].as_str().unwrap()
                    && read(c.join("tags/model")) == row["model"].as_str().unwrap()
                    && read(c.join("params/threads")).parse::<u64>().ok() == row["threads"].as_u64()
            })
            .unwrap_or_else(|| panic!("no MLflow run for {row}"));
        let acc = read(run.join("metrics/accuracy"));
        let v: f64 = acc.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(v, row["accuracy"].as_f64().unwrap(), "{run:?}");
        // A QAT row carries its fine-tune's curves, one point per epoch.
        if row["method"].as_str().unwrap().starts_with("qat-") && row["threads"] == 1 {
            let curve = read(run.join("metrics/val_accuracy"));
            assert!(!curve.is_empty(), "{run:?}: no QAT curve");
        }
    }

    // MLflow itself, where it is installed ($QUANTLAB_PYTHON or python3): every metric of
    // bench.json through mlflow.search_runs (scripts/check_mlflow_bench.py).
    if let Some(py) = quantlab_testkit::python_with("bench: MLflow check", &["mlflow"]) {
        let out = Command::new(&py)
            .arg(root.join("scripts/check_mlflow_bench.py"))
            .arg(&store)
            .arg(&run)
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{t}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(t.contains(" 0 failed"), "{t}");
    }

    // The calibration sweep: quick sizes x seeds x every observer, for each swept pair.
    let sweep = json["calib_sweep"].as_array().unwrap();
    let report = std::fs::read_to_string(run.join("REPORT.md")).unwrap();
    for (ds, model) in [("mnist", "mlp"), ("mnist", "cnn"), ("digits", "cnn")] {
        let pts: Vec<&Value> = sweep
            .iter()
            .filter(|p| p["dataset"] == ds && p["model"] == model)
            .collect();
        assert_eq!(pts.len(), 2 * 2 * 5, "{ds}/{model}: sweep points");
        for p in &pts {
            let acc = p["accuracy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc), "{p}");
            let sqnr = p["layer_sqnr_db"].as_array().unwrap();
            assert!(
                !sqnr.is_empty() && sqnr.iter().all(|v| v.as_f64().is_some()),
                "{p}"
            );
        }
        assert!(pts.iter().any(|p| p["size"] == 16) && pts.iter().any(|p| p["size"] == 128));
        assert!(
            report.contains(&format!("## Calibration sweep: {ds} / {model}")),
            "no sweep section for {ds}/{model}"
        );
        let plot = run.join(format!("plots/calib-sweep-{ds}-{model}.png"));
        assert!(
            std::fs::metadata(&plot).map(|m| m.len()).unwrap_or(0) > 1000,
            "{plot:?}"
        );
    }
}

/// `--device all` on a wgpu device (lavapipe in CI): burn's float forward on wgpu, quantlab's
/// static int8 on the GPU with the CPU engine's accuracy (its logits are bit-identical), the
/// speed-ups against both, and the GPU section of REPORT.md.
#[test]
fn gpu_rows_beside_the_cpu_rows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root.join("configs/bench.toml")).unwrap();
    let methods_start = shipped.find("methods = [").unwrap();
    let methods_end = methods_start + shipped[methods_start..].find(']').unwrap() + 1;
    let cfg = tmp.path().join("bench.toml");
    let text = format!(
        "{}methods = [\"static-minmax-per-channel\"]{}",
        &shipped[..methods_start],
        &shipped[methods_end..]
    )
    .replace(
        "[calib_sweep]\npairs = [\"mnist/mlp\", \"mnist/cnn\", \"digits/cnn\"]",
        "[calib_sweep]\npairs = []",
    );
    std::fs::write(&cfg, text).unwrap();
    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args([
            "bench",
            "--quick",
            "--only",
            "digits",
            "--device",
            "all",
            "--no-mlflow",
        ])
        .args(["--config", cfg.to_str().unwrap()])
        .args(["--results", results.to_str().unwrap()])
        .current_dir(&root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && text.contains("no wgpu device") {
        let why = quantlab_testkit::Missing::gpu("quantlab bench --device gpu: no wgpu device");
        return quantlab_testkit::missing("bench --device gpu", &why);
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("GPU int8 dot product:"), "{text}");
    let run = results.join("latest");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("bench.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let emulated = text.contains("CPU emulator");
    for model in ["logreg", "mlp", "cnn"] {
        let row = |method: &str, backend: &str| {
            rows.iter()
                .find(|r| {
                    r["model"] == model
                        && r["method"] == method
                        && r["backend"] == backend
                        && (r["threads"] == 1 || backend != "quantlab")
                })
                .unwrap_or_else(|| panic!("missing {model} {method} {backend}: {text}"))
        };
        let f32_gpu = row("f32", "burn-wgpu");
        let cpu = row("static-minmax-per-channel", "quantlab");
        let gpu = row("static-minmax-per-channel", "quantlab-gpu");
        assert_eq!(f32_gpu["device"], "gpu");
        assert_eq!(gpu["device"], "gpu");
        assert_eq!(gpu["supported"], true, "{gpu}");
        assert_eq!(
            gpu["accuracy"], cpu["accuracy"],
            "{model}: same logits, same accuracy"
        );
        for k in [
            "latency_b1_us",
            "latency_b64_us",
            "speedup_b64",
            "speedup_b1",
        ] {
            assert!(gpu[k].as_f64().unwrap() > 0.0, "{model} {k}: {gpu}");
        }
        // Batch 4096 is timed on a real GPU only.
        assert_eq!(gpu["latency_b4096_us"].is_null(), emulated, "{gpu}");
        assert_eq!(f32_gpu["latency_b4096_us"].is_null(), emulated, "{f32_gpu}");
    }
    let report = std::fs::read_to_string(run.join("REPORT.md")).unwrap();
    assert!(
        report.contains("On the GPU (host transfers included"),
        "{report}"
    );
    assert!(
        report.contains("| static-minmax-per-channel | quantlab-gpu |"),
        "{report}"
    );
    assert!(
        report.contains("int8 dot product (WGSL dot4I8Packed)"),
        "{report}"
    );
    let csv = std::fs::read_to_string(run.join("bench.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert!(header.contains(&"latency_b4096_us"), "{header:?}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').count() >= header.len()),
        "{csv}"
    );
}
