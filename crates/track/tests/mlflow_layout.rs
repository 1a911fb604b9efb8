//! The store as MLflow's `FileStore` expects it on disk, checked file by file, plus
//! concurrent writers (threads and processes) and unwritable stores.
//!
//! The expected formats are what MLflow 3.17.2 itself wrote into a fresh store (see the
//! crate README); `scripts/check_mlflow.py` separately reads a store written by this crate
//! with MLflow.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use quantlab_track::{ExperimentId, Run, RunId, Status, Store, tags};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `key: value` lines of a meta.yaml, in file order.
fn meta_lines(path: &Path) -> Vec<(String, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("not `k: v`: {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn file_uri(p: &Path) -> String {
    // Test paths are plain ASCII without spaces, so no percent-encoding is involved here.
    let s = p.to_str().unwrap();
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b)),
        "{s}"
    );
    format!("file://{s}")
}

fn int_between(v: &str, lo: i64, hi: i64) -> i64 {
    let t: i64 = v.parse().unwrap_or_else(|_| panic!("not an int: {v}"));
    assert!((lo..=hi).contains(&t), "{t} not in {lo}..={hi}");
    t
}

fn dir_names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Active experiments in the store named `name` (any writer), by reading every meta.yaml.
fn experiments_named(root: &Path, name: &str) -> Vec<String> {
    let quoted = format!("name: \"{name}\"");
    dir_names(root)
        .into_iter()
        .filter(|d| d != ".trash")
        .filter(|d| {
            fs::read_to_string(root.join(d).join("meta.yaml"))
                .map(|t| t.lines().any(|l| l == quoted))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn experiment_meta_yaml_matches_mlflow_field_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let before = now_ms();
    let store = Store::open(&tmp.path().join("mlruns")).unwrap();
    let root = store.root().to_owned();
    let exp = store.experiment("quantlab: mnist \"mlp\" é").unwrap();
    let after = now_ms();

    // The tree MLflow's FileStore starts with, plus our experiment.
    let mut want = vec![".trash".to_owned(), "0".to_owned(), exp.to_string()];
    want.sort();
    assert_eq!(dir_names(&root), want);
    assert!(dir_names(&root.join(".trash")).is_empty());

    let lines = meta_lines(&root.join(exp.as_str()).join("meta.yaml"));
    let keys: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "artifact_location",
            "creation_time",
            "effective_trace_archival_retention",
            "experiment_id",
            "last_update_time",
            "lifecycle_stage",
            "name",
            "trace_location",
            "workspace"
        ]
    );
    let v: BTreeMap<&str, &str> = lines
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        v["artifact_location"],
        format!("\"{}\"", file_uri(&root.join(exp.as_str())))
    );
    let created = int_between(v["creation_time"], before, after);
    assert_eq!(v["last_update_time"], created.to_string());
    assert_eq!(v["effective_trace_archival_retention"], "null");
    assert_eq!(v["experiment_id"], format!("\"{exp}\""));
    assert_eq!(exp.as_str().len(), 18);
    assert_eq!(v["lifecycle_stage"], "\"active\"");
    assert_eq!(v["name"], r#""quantlab: mnist \"mlp\" é""#);
    assert_eq!(v["trace_location"], "null");
    assert_eq!(v["workspace"], "\"default\"");

    // The default experiment, as MLflow creates it.
    let d: BTreeMap<String, String> = meta_lines(&root.join("0/meta.yaml")).into_iter().collect();
    assert_eq!(d["name"], "\"Default\"");
    assert_eq!(d["experiment_id"], "\"0\"");
    assert_eq!(
        d["artifact_location"],
        format!("\"{}\"", file_uri(&root.join("0")))
    );
    assert_eq!(d["lifecycle_stage"], "\"active\"");
}

#[test]
fn run_layout_matches_mlflow_field_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("mlruns")).unwrap();
    let root = store.root().to_owned();
    let exp = store.experiment("layout").unwrap();
    let before = now_ms();
    let parent = store
        .start_run(
            &exp,
            "train",
            None,
            &[("dataset", "mnist"), (tags::GIT_COMMIT, "abc123")],
        )
        .unwrap();
    let child = store
        .start_run(
            &exp,
            "int8 eval",
            Some(parent.id()),
            &[(tags::USER, "ci-bot")],
        )
        .unwrap();
    let after = now_ms();

    // Run directory: <root>/<exp>/<32 hex run id>/{meta.yaml,metrics,params,tags,artifacts}.
    let run_dir = root.join(exp.as_str()).join(parent.id().as_str());
    assert_eq!(parent.dir(), run_dir);
    assert_eq!(parent.artifact_dir(), run_dir.join("artifacts"));
    assert_eq!(parent.id().as_str().len(), 32);
    assert!(
        parent
            .id()
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        dir_names(&run_dir),
        ["artifacts", "meta.yaml", "metrics", "params", "tags"]
    );
    let mut runs = vec![
        parent.id().to_string(),
        child.id().to_string(),
        "meta.yaml".into(),
    ];
    runs.sort();
    assert_eq!(dir_names(&root.join(exp.as_str())), runs);

    // meta.yaml while running.
    let lines = meta_lines(&run_dir.join("meta.yaml"));
    let keys: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "artifact_uri",
            "end_time",
            "entry_point_name",
            "experiment_id",
            "lifecycle_stage",
            "run_id",
            "run_name",
            "source_name",
            "source_type",
            "source_version",
            "start_time",
            "status",
            "tags",
            "user_id"
        ]
    );
    let v: BTreeMap<&str, &str> = lines
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        v["artifact_uri"],
        format!("\"{}\"", file_uri(&run_dir.join("artifacts")))
    );
    assert_eq!(v["end_time"], "null");
    assert_eq!(v["entry_point_name"], "\"\"");
    assert_eq!(v["experiment_id"], format!("\"{exp}\""));
    assert_eq!(v["lifecycle_stage"], "\"active\"");
    assert_eq!(v["run_id"], format!("\"{}\"", parent.id()));
    assert_eq!(v["run_name"], "\"train\"");
    assert_eq!(v["source_name"], "\"\"");
    assert_eq!(v["source_type"], "4");
    assert_eq!(v["source_version"], "\"\"");
    let start = int_between(v["start_time"], before, after);
    assert_eq!(start, parent.start_time_ms());
    assert_eq!(v["status"], "1", "RUNNING is 1 in meta.yaml");
    assert_eq!(v["tags"], "[]");
    let user = fs::read_to_string(run_dir.join("tags/mlflow.user")).unwrap();
    assert_eq!(v["user_id"], format!("\"{user}\""));

    // Tags: one file per tag, the value with no trailing newline.
    let tag = |run: &Run, k: &str| fs::read_to_string(run.dir().join("tags").join(k)).unwrap();
    assert_eq!(
        dir_names(&run_dir.join("tags")),
        [
            "dataset",
            "mlflow.runName",
            "mlflow.source.git.commit",
            "mlflow.source.name",
            "mlflow.source.type",
            "mlflow.user"
        ]
    );
    assert_eq!(tag(&parent, "mlflow.runName"), "train");
    assert_eq!(tag(&parent, "mlflow.source.type"), "LOCAL");
    assert!(tag(&parent, "mlflow.source.name").contains("mlflow_layout"));
    assert_eq!(tag(&parent, "dataset"), "mnist");
    assert_eq!(tag(&parent, "mlflow.source.git.commit"), "abc123");
    // The child: parent tag, overridden user (also its user_id), name with a space.
    assert_eq!(tag(&child, "mlflow.parentRunId"), parent.id().as_str());
    assert_eq!(tag(&child, "mlflow.user"), "ci-bot");
    assert_eq!(tag(&child, "mlflow.runName"), "int8 eval");
    let c: BTreeMap<String, String> = meta_lines(&child.dir().join("meta.yaml"))
        .into_iter()
        .collect();
    assert_eq!(c["user_id"], "\"ci-bot\"");
    assert_eq!(c["run_name"], "\"int8 eval\"");
    assert!(!parent.dir().join("tags/mlflow.parentRunId").exists());

    // Params: one file per param, `str(value)`, no trailing newline.
    parent
        .log_params([("lr", "0.001"), ("epochs", "5")])
        .unwrap();
    parent.log_param("hidden", 128).unwrap();
    parent.log_param("note", "two\nlines").unwrap();
    assert_eq!(
        dir_names(&run_dir.join("params")),
        ["epochs", "hidden", "lr", "note"]
    );
    assert_eq!(
        fs::read_to_string(run_dir.join("params/lr")).unwrap(),
        "0.001"
    );
    assert_eq!(
        fs::read_to_string(run_dir.join("params/hidden")).unwrap(),
        "128"
    );
    assert_eq!(
        fs::read_to_string(run_dir.join("params/note")).unwrap(),
        "two\nlines"
    );

    // Metrics: `timestamp value step` per line, appended in call order.
    let t0 = now_ms();
    for step in 0..5 {
        parent
            .log_metric("loss", 1.0 / (step + 1) as f64, step)
            .unwrap();
    }
    parent.log_metric("weird", f64::NAN, 0).unwrap();
    parent.log_metric("weird", f64::INFINITY, 1).unwrap();
    parent.log_metric("weird", f64::NEG_INFINITY, 2).unwrap();
    parent.log_metric("weird", 1e-20, 3).unwrap();
    parent.log_metric_at("val/acc", 0.5, -1, 42).unwrap();
    let t1 = now_ms();
    let loss = fs::read_to_string(run_dir.join("metrics/loss")).unwrap();
    let mut parsed = Vec::new();
    for line in loss.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "{line:?}");
        let ts = int_between(f[0], t0, t1);
        parsed.push((
            f[2].parse::<i64>().unwrap(),
            f[1].parse::<f64>().unwrap(),
            ts,
        ));
    }
    assert!(loss.ends_with('\n'));
    let steps: Vec<i64> = parsed.iter().map(|p| p.0).collect();
    assert_eq!(steps, [0, 1, 2, 3, 4]);
    let values: Vec<f64> = parsed.iter().map(|p| p.1).collect();
    assert_eq!(values, [1.0, 0.5, 1.0 / 3.0, 0.25, 0.2]);
    let weird: Vec<String> = fs::read_to_string(run_dir.join("metrics/weird"))
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect();
    assert_eq!(weird, ["nan 0", "inf 1", "-inf 2", "1e-20 3"]);
    assert_eq!(
        fs::read_to_string(run_dir.join("metrics/val/acc")).unwrap(),
        "42 0.5 -1\n"
    );

    // Artifacts: copied under artifacts/, in a sub-directory when asked.
    let src = tmp.path().join("report.json");
    fs::write(&src, br#"{"acc": 0.98}"#).unwrap();
    let copied = child.log_artifact(&src, Some("reports/int8")).unwrap();
    assert_eq!(
        copied,
        child.artifact_dir().join("reports/int8/report.json")
    );
    assert_eq!(fs::read(&copied).unwrap(), br#"{"acc": 0.98}"#);
    child.log_artifact(&src, None).unwrap();
    assert_eq!(
        fs::read(child.artifact_dir().join("report.json")).unwrap(),
        fs::read(&src).unwrap()
    );
    child
        .log_artifact_bytes("weights.bin", &[0, 1, 2, 255])
        .unwrap();
    assert_eq!(
        fs::read(child.artifact_dir().join("weights.bin")).unwrap(),
        [0, 1, 2, 255]
    );
    assert_eq!(
        dir_names(child.artifact_dir()),
        ["report.json", "reports", "weights.bin"]
    );

    // End: status and end_time rewritten, the rest unchanged.
    let child_dir = child.dir().to_owned();
    child.end(Status::Failed).unwrap();
    parent.end(Status::Finished).unwrap();
    let done = now_ms();
    let ended = meta_lines(&run_dir.join("meta.yaml"));
    for ((k0, v0), (k1, v1)) in lines.iter().zip(&ended) {
        assert_eq!(k0, k1);
        match k0.as_str() {
            "status" => assert_eq!(v1, "3", "FINISHED is 3"),
            "end_time" => {
                int_between(v1, start, done);
            }
            _ => assert_eq!(v0, v1, "{k0} changed"),
        }
    }
    let c: BTreeMap<String, String> = meta_lines(&child_dir.join("meta.yaml"))
        .into_iter()
        .collect();
    assert_eq!(c["status"], "4", "FAILED is 4");
}

#[test]
fn concurrent_writers_make_one_experiment_and_complete_metric_files() {
    const THREADS: usize = 8;
    const VALUES: i64 = 100;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mlruns");
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (root, barrier) = (root.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Each thread opens its own Store, as separate processes would.
                let store = Store::open(&root).unwrap();
                let exp = store.experiment("shared").unwrap();
                let run = store
                    .start_run(&exp, &format!("worker {t}"), None, &[])
                    .unwrap();
                for step in 0..VALUES {
                    run.log_metric("loss", t as f64 + step as f64 / 1000.0, step)
                        .unwrap();
                }
                let id = run.id().clone();
                run.end(Status::Finished).unwrap();
                (exp, id)
            })
        })
        .collect();
    let results: Vec<(ExperimentId, RunId)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let store = Store::open(&root).unwrap();

    // More rounds of the get-or-create race alone, one fresh name per round.
    for round in 0..20 {
        let name = format!("race {round}");
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (root, barrier, name) = (root.clone(), barrier.clone(), name.clone());
                std::thread::spawn(move || {
                    // Wait first: a panic after the barrier cannot leave others waiting.
                    barrier.wait();
                    let store = Store::open(&root).unwrap();
                    store.experiment(&name).unwrap()
                })
            })
            .collect();
        let ids: HashSet<ExperimentId> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ids.len(), 1, "{name}: {ids:?}");
        assert_eq!(experiments_named(store.root(), &name).len(), 1, "{name}");
    }
    let exp = &results[0].0;
    assert!(results.iter().all(|(e, _)| e == exp), "{results:?}");
    assert_eq!(experiments_named(store.root(), "shared"), [exp.to_string()]);
    let runs: HashSet<&RunId> = results.iter().map(|(_, r)| r).collect();
    assert_eq!(runs.len(), THREADS);
    for (t, (_, run)) in results.iter().enumerate() {
        let text = fs::read_to_string(
            store
                .root()
                .join(exp.as_str())
                .join(run.as_str())
                .join("metrics/loss"),
        )
        .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), VALUES as usize);
        for (step, line) in lines.iter().enumerate() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f[2], step.to_string());
            assert_eq!(
                f[1].parse::<f64>().unwrap(),
                t as f64 + step as f64 / 1000.0
            );
        }
    }

    // Many threads appending to one metric of one shared run: every line whole, none lost.
    let run = Arc::new(store.start_run(exp, "shared run", None, &[]).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (run, barrier) = (run.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..VALUES {
                    // value encodes the writer, step the index: each pair must appear once.
                    run.log_metric("shared", t as f64, i).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let text = fs::read_to_string(run.dir().join("metrics/shared")).unwrap();
    let mut seen = HashSet::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "torn line {line:?}");
        assert!(
            seen.insert((f[1].to_owned(), f[2].to_owned())),
            "duplicate {line:?}"
        );
    }
    assert_eq!(seen.len(), THREADS * VALUES as usize);
}

/// Run as a separate process by `concurrent_processes_make_one_experiment`.
#[test]
#[ignore = "helper: run in child processes by concurrent_processes_make_one_experiment"]
fn child_process_writer() {
    let root = PathBuf::from(std::env::var("TRACK_CHILD_ROOT").expect("run by the parent test"));
    let store = Store::open(&root).unwrap();
    let exp = store.experiment("from processes").unwrap();
    let run = store.start_run(&exp, "child", None, &[]).unwrap();
    for step in 0..50 {
        run.log_metric("m", step as f64, step).unwrap();
    }
    run.end(Status::Finished).unwrap();
}

#[test]
fn concurrent_processes_make_one_experiment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mlruns");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--ignored", "--exact", "child_process_writer", "--quiet"])
                .env("TRACK_CHILD_ROOT", &root)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let root = fs::canonicalize(&root).unwrap();
    let exps = experiments_named(&root, "from processes");
    assert_eq!(exps.len(), 1, "{exps:?}");
    let runs: Vec<String> = dir_names(&root.join(&exps[0]))
        .into_iter()
        .filter(|n| n != "meta.yaml")
        .collect();
    assert_eq!(runs.len(), 4);
    for r in runs {
        let m = fs::read_to_string(root.join(&exps[0]).join(&r).join("metrics/m")).unwrap();
        assert_eq!(m.lines().count(), 50);
        let meta = fs::read_to_string(root.join(&exps[0]).join(&r).join("meta.yaml")).unwrap();
        assert!(meta.contains("\nstatus: 3\n"), "{meta}");
    }
}

#[test]
fn an_unwritable_store_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    fs::write(&file, "not a directory").unwrap();
    let root = file.join("mlruns");
    let err = Store::open(&root).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&root.display().to_string()), "{msg}");
    assert!(msg.starts_with("cannot create directory "), "{msg}");
    assert_eq!(
        msg.lines().count(),
        1,
        "usable as a one-line warning: {msg}"
    );
    assert!(matches!(err, quantlab_track::Error::Io { .. }));

    // A failure inside a run names the file too: metric `a` blocks `a/b`.
    let store = Store::open(&tmp.path().join("ok")).unwrap();
    let run = store
        .start_run(&ExperimentId::default_experiment(), "r", None, &[])
        .unwrap();
    run.log_metric("a", 1.0, 0).unwrap();
    let msg = run.log_metric("a/b", 1.0, 0).unwrap_err().to_string();
    assert!(
        msg.contains(&run.dir().join("metrics/a").display().to_string()),
        "{msg}"
    );
}
