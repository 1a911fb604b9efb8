//! End-to-end against a real MLflow tracking server (`mlflow server`, SQLite backend, a
//! temporary artifact folder, a free port on 127.0.0.1) from the tests' Python
//! (`QUANTLAB_PYTHON`, the venv `.ci/run` makes): a quick bench sent to it and read back
//! with MLflow's own client (`scripts/check_mlflow_bench.py`: search_runs,
//! get_metric_history, list_artifacts, download_artifacts against bench.json), and a
//! server killed while the bench sends its runs, restarted, and completed by
//! `quantlab track push`, twice, without a duplicate.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a cold `mlflow server` may take to answer /health (19 s seen on a loaded
/// 2-core machine).
const STARTUP: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `mlflow server`; killed (with its workers) when dropped.
struct MlflowServer {
    child: Child,
    uri: String,
}

impl MlflowServer {
    /// Starts a server on `port` (0: a free one) storing into `dir`.
    fn start(py: &Path, dir: &Path, port: u16) -> MlflowServer {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let child = Command::new(py)
            .args([
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--workers",
                "2",
            ])
            .arg("--port")
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so that kill() takes the uvicorn workers too.
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let server = MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        while !server.healthy() {
            assert!(
                t.elapsed() < STARTUP,
                "mlflow server on port {port} did not come up; see {}",
                dir.join(format!("server-{port}.log")).display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        server
    }

    fn port(&self) -> u16 {
        self.uri.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port())) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
    }

    /// Kills the server and its workers and waits for them.
    fn kill(&mut self) {
        // SAFETY: kill(2) on the process group this test made; no memory is touched.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The quick bench on digits only, into `store` and the server at `uri`.
fn bench(tmp: &Path, store: &Path, uri: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quantlab"));
    c.args(["bench", "--quick", "--only", "digits", "--mlflow-uri", uri])
        .arg("--mlflow-dir")
        .arg(store)
        .arg("--results")
        .arg(tmp.join("results"))
        .env_remove("MLFLOW_TRACKING_URI")
        .current_dir(root());
    c
}

fn push(store: &Path, uri: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(["track", "push", "--uri", uri])
        .arg("--mlflow-dir")
        .arg(store)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// MLflow's client reads every bench.json figure back from the server (0 failed).
fn check(py: &Path, uri: &str, run: &Path) {
    let o = Command::new(py)
        .arg(root().join("scripts/check_mlflow_bench.py"))
        .arg(uri)
        .arg(run)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success() && t.contains(" 0 failed"), "{t}");
}

/// `N runs sent` from a push line.
fn sent(line: &str) -> usize {
    let at = line.find(" runs sent").unwrap_or_else(|| panic!("{line}"));
    line[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_quick_bench_is_read_back_from_a_live_server() {
    let Some(py) = quantlab_testkit::python_with("mlflow server", &["mlflow"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = MlflowServer::start(&py, tmp.path(), 0);
    let store = tmp.path().join("mlruns");
    let o = bench(tmp.path(), &store, &server.uri).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!("sent to {}", server.uri)) && !t.contains("warning"),
        "{t}"
    );
    check(&py, &server.uri, &tmp.path().join("results/latest"));
    // Everything is there: a push sends nothing more.
    let again = push(&store, &server.uri);
    assert_eq!(sent(&again), 0, "{again}");
    assert!(again.contains("already there"), "{again}");
}

#[test]
fn a_server_killed_mid_bench_loses_nothing() {
    let Some(py) = quantlab_testkit::python_with("mlflow server", &["mlflow"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = MlflowServer::start(&py, tmp.path(), 0);
    let uri = server.uri.clone();
    let store = tmp.path().join("mlruns");
    let mut child = bench(tmp.path(), &store, &uri)
        // One quick retry: the server stays down.
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server dies mid-bench, as the first pair's runs are being sent in the background
    // (its summary line comes just before they are queued).
    let mut out = String::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if !killed && line.starts_with("digits/") {
            server.kill();
            killed = true;
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let t = format!("{out}{err}");
    // The bench finished, its results are complete, and it said how to send the rest.
    assert!(status.success(), "{t}");
    assert!(
        t.contains("warning: MLflow server") && t.contains("quantlab track push"),
        "{t}"
    );
    let run = tmp.path().join("results/latest");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("bench.json")).unwrap()).unwrap();
    assert!(json["rows"].as_array().unwrap().len() >= 20, "{json}");

    // Restarted on the same database and port: one push restores every run, the second
    // sends nothing, and MLflow finds exactly one run per row.
    let restarted = MlflowServer::start(&py, tmp.path(), server.port());
    let first = push(&store, &restarted.uri);
    assert!(sent(&first) > 0, "{first}");
    check(&py, &restarted.uri, &run);
    let second = push(&store, &restarted.uri);
    assert_eq!(sent(&second), 0, "{second}");
    check(&py, &restarted.uri, &run);
}

#[test]
fn push_without_a_store_or_a_server_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(["track", "push", "--uri", "http://127.0.0.1:9"])
        .arg("--mlflow-dir")
        .arg(tmp.path().join("none"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("no MLflow file store at"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(["track", "push"])
        .arg("--mlflow-dir")
        .arg(tmp.path())
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("no tracking server"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args(["track", "push", "--uri", "ftp://x"])
        .arg("--mlflow-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("tracking URI"), "{}", text(&o));
}
