//! Writes a small experiment the way quantlab would, for MLflow itself to read back.
//!
//! A parent "train" run (params, tags, per-epoch metrics at steps 0..4, a note) and two child
//! runs (metrics incl. NaN/inf, artifacts; one FINISHED, one FAILED), then a JSON file of
//! everything it logged, which `scripts/check_mlflow.py` compares with what MLflow reads.
//!
//! ```sh
//! cargo run --example mlflow_demo -- [--mlflow-dir DIR] [--out expected.json]
//! ```

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use quantlab_track::{Run, Status, Store, resolve_store_dir, tags};
use serde_json::{Map, Value, json};

/// Logs a metric with an explicit timestamp and remembers it for the JSON.
fn metric(run: &Run, logged: &mut Map<String, Value>, key: &str, value: f64, step: i64) {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    run.log_metric_at(key, value, step, ts).expect("log metric");
    let v = if value.is_finite() {
        json!(value)
    } else {
        json!(format!("{value}").to_lowercase()) // "nan", "inf", "-inf"
    };
    logged
        .entry(key)
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .push(json!({"step": step, "value": v, "timestamp": ts}));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut out) = (None, PathBuf::from("quantlab-track-demo.json"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mlflow-dir" => dir = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from).expect("--out PATH"),
            other => panic!("unknown argument {other:?}; use --mlflow-dir DIR --out PATH"),
        }
    }
    let store_dir = resolve_store_dir(dir);
    let store = match Store::open(&store_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: MLflow tracking disabled: {e}");
            std::process::exit(1);
        }
    };
    let exp_name = "quantlab-track demo: mnist \"mlp\" é";
    let exp = store.experiment(exp_name).expect("experiment");
    let mut runs = Vec::new();

    // Parent: training.
    let params = [
        ("model", "mlp"),
        ("lr", "0.001"),
        ("epochs", "5"),
        ("hidden", "128"),
        ("optimizer/name", "adam"),
        ("notes", "two lines\nand ünïcode: \"q\" 'x'"),
    ];
    let parent_tags = [("dataset", "mnist"), (tags::GIT_COMMIT, "0123abcd")];
    let parent = store
        .start_run(&exp, "train mlp", None, &parent_tags)
        .expect("start parent");
    parent.log_params(params).expect("params");
    parent.log_param("seed", 42).expect("param");
    parent.set_note("Trained by `mlflow_demo`.").expect("note");
    let mut pm = Map::new();
    for epoch in 0..5i64 {
        let e = epoch as f64;
        metric(&parent, &mut pm, "train/loss", 2.3 / (e + 1.0), epoch);
        metric(&parent, &mut pm, "val/accuracy", 0.9 + e * 0.01, epoch);
        metric(
            &parent,
            &mut pm,
            "lr",
            0.001 * 0.5f64.powi(epoch as i32),
            epoch,
        );
    }

    // Children: evaluation of the float and the int8 model.
    let scratch = std::env::temp_dir().join(format!("quantlab-track-demo-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let report = scratch.join("report.json");
    std::fs::write(&report, "{\"accuracy\": 0.9531, \"model\": \"f32\"}\n").expect("write report");
    let mut children = Vec::new();
    for (name, status) in [
        ("eval f32", Status::Finished),
        ("eval \"int8\"", Status::Failed),
    ] {
        let child = store
            .start_run(&exp, name, Some(parent.id()), &[("precision", &name[5..])])
            .expect("start child");
        let mut cm = Map::new();
        metric(
            &child,
            &mut cm,
            "accuracy",
            if status == Status::Finished {
                0.9531
            } else {
                0.9528
            },
            0,
        );
        for (step, ms) in [1.5, 1.25, 1.375].into_iter().enumerate() {
            metric(&child, &mut cm, "latency_ms", ms, step as i64);
        }
        let mut artifacts = Map::new();
        if status == Status::Finished {
            child
                .log_artifact(&report, Some("reports"))
                .expect("artifact");
            artifacts.insert(
                "reports/report.json".into(),
                json!(std::fs::read_to_string(&report).unwrap()),
            );
        } else {
            metric(&child, &mut cm, "kl_divergence", f64::NAN, 0);
            metric(&child, &mut cm, "max_error", f64::INFINITY, 0);
            metric(&child, &mut cm, "min_margin", f64::NEG_INFINITY, 0);
            let csv = "label,correct\n0,980\n1,1133\n";
            child
                .log_artifact_bytes("confusion/int8.csv", csv.as_bytes())
                .expect("artifact bytes");
            artifacts.insert("confusion/int8.csv".into(), json!(csv));
        }
        children.push((child, status, cm, artifacts, name));
    }
    std::fs::remove_dir_all(&scratch).ok();

    for (child, status, cm, artifacts, name) in children {
        runs.push(json!({
            "run_id": child.id(),
            "run_name": name,
            "parent_run_id": parent.id(),
            "status": status,
            "start_time": child.start_time_ms(),
            "params": {},
            "tags": {"precision": &name[5..], "mlflow.parentRunId": parent.id(), "mlflow.runName": name},
            "metrics": cm,
            "artifacts": artifacts,
        }));
        child.end(status).expect("end child");
    }
    let mut all_params: Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    all_params.insert("seed".into(), json!("42"));
    runs.insert(
        0,
        json!({
            "run_id": parent.id(),
            "run_name": "train mlp",
            "parent_run_id": null,
            "status": Status::Finished,
            "start_time": parent.start_time_ms(),
            "params": all_params,
            "tags": {
                "dataset": "mnist",
                "mlflow.source.git.commit": "0123abcd",
                "mlflow.note.content": "Trained by `mlflow_demo`.",
                "mlflow.runName": "train mlp",
                "mlflow.source.type": "LOCAL",
            },
            "metrics": pm,
            "artifacts": {},
        }),
    );
    parent.end(Status::Finished).expect("end parent");

    let expected = json!({
        "store": store.root(),
        "experiment": {"name": exp_name, "id": exp},
        "runs": runs,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&expected).unwrap()).expect("write json");
    println!(
        "wrote experiment {exp} ({} runs) to {}; expected values in {}",
        runs_len(&expected),
        store.root().display(),
        out.display()
    );
}

fn runs_len(v: &Value) -> usize {
    v["runs"].as_array().map_or(0, Vec::len)
}
