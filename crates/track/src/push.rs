//! Sending the file store's runs to a tracking server, idempotently.
//!
//! Every command records its runs in the local file store first, server or not; `push`
//! then replays each run the server does not have yet (params, tags, every metric value,
//! artifacts, status and times) through [`Server`]. What was sent is remembered in
//! `<store>/quantlab-push.jsonl` (a plain file, which MLflow ignores), one line per step:
//! the server's run id as soon as the run exists there, and "done" with a fingerprint of
//! the local run once everything arrived. So a push cut off by a dead server resumes into
//! the same remote run, a second push sends nothing, and a run that changed since (a
//! RUNNING run that went on) is sent again into its remote run: the server drops the
//! metric values it already has and accepts equal params.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsio;
use crate::gate::Gate;
use crate::ids::{ExperimentId, RunId};
use crate::local::LocalRun;
use crate::server::Server;
use crate::status::Status;
use crate::store::Store;

/// The push record's file name, in the store's root.
pub const PUSH_RECORD: &str = "quantlab-push.jsonl";

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Runs sent (created or completed on the server).
    pub sent: usize,
    /// Runs the server already had, unchanged since.
    pub already: usize,
    /// Metric values sent.
    pub metrics: usize,
    /// Artifact files sent.
    pub artifacts: usize,
    /// Runs sent that were still RUNNING locally (sent again by the next push).
    pub running: usize,
}

/// One line of the push record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    uri: String,
    run: String,
    remote: String,
    artifact_uri: String,
    /// Fingerprint of the local run when everything was sent; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    done: Option<String>,
}

/// What the local run looked like when sent: a run that changes afterwards is sent again.
fn fingerprint(r: &LocalRun) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}",
        r.status.as_str(),
        r.end_time.unwrap_or(0),
        r.params.len(),
        r.tags.len(),
        r.metrics.len(),
        r.artifacts.len()
    )
}

fn record_path(store: &Store) -> PathBuf {
    store.root().join(PUSH_RECORD)
}

/// The latest entry per local run for `uri`. Lines that do not parse (a line cut off by a
/// crash) are skipped: at worst a run is sent again, into a new remote run.
fn load(path: &Path, uri: &str) -> Result<HashMap<String, Entry>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::io("read", path)(e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| e.uri == uri)
        .map(|e| (e.run.clone(), e))
        .collect())
}

fn append(path: &Path, e: &Entry) -> Result<(), Error> {
    let mut line = serde_json::to_string(e).expect("an Entry serializes");
    line.push('\n');
    fsio::append(path, line.as_bytes())
}

/// Runs sent at once by default: a remote server answers several requests at once (its
/// artifact uploads are file writes), and network latency adds up one request at a time.
/// `QUANTLAB_MLFLOW_WORKERS` overrides it (1 to 64).
const WORKERS: usize = 4;

fn workers() -> usize {
    std::env::var("QUANTLAB_MLFLOW_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(WORKERS, |n| n.clamp(1, 64))
}

/// What the workers share.
struct Shared<'a> {
    server: &'a Server,
    path: PathBuf,
    known: HashMap<String, Entry>,
    /// Experiment name -> server id.
    experiments: Mutex<HashMap<String, String>>,
    /// Local run id -> remote run id, for children's `mlflow.parentRunId`.
    remote_of: Mutex<HashMap<RunId, String>>,
    report: Mutex<PushReport>,
    failed: AtomicBool,
    /// Taken around each run sent, when a caller wants quiet at times.
    gate: Option<&'a Gate>,
    /// Set when the caller no longer needs the rest (a background push being finished).
    cancel: Option<&'a AtomicBool>,
}

impl Shared<'_> {
    fn experiment_id(&self, name: &str) -> Result<String, Error> {
        // Held across the call, so two workers never create the same experiment.
        let mut map = lock(&self.experiments);
        if let Some(id) = map.get(name) {
            return Ok(id.clone());
        }
        let id = self.server.experiment_id(name)?;
        map.insert(name.to_owned(), id.clone());
        Ok(id)
    }

    /// Sends one run (or counts it as already there).
    fn push_one(&self, run: &LocalRun) -> Result<(), Error> {
        let _sending = self.gate.map(Gate::enter);
        let server = self.server;
        let fp = fingerprint(run);
        let prior = self.known.get(run.id.as_str()).cloned();
        if prior.as_ref().and_then(|e| e.done.as_deref()) == Some(fp.as_str()) {
            lock(&self.report).already += 1;
            return Ok(());
        }
        let entry = match prior {
            Some(e) if server.has_run(&e.remote)? => e,
            _ => {
                let exp_id = self.experiment_id(&run.experiment)?;
                let (remote, artifact_uri) =
                    server.create_run(&exp_id, &run.name, run.start_time)?;
                let e = Entry {
                    uri: server.uri().to_owned(),
                    run: run.id.as_str().to_owned(),
                    remote,
                    artifact_uri,
                    done: None,
                };
                append(&self.path, &e)?;
                e
            }
        };
        lock(&self.remote_of).insert(run.id.clone(), entry.remote.clone());
        let tags: Vec<(String, String)> = {
            let remote_of = lock(&self.remote_of);
            run.tags
                .iter()
                .filter_map(|(k, v)| {
                    if k != "mlflow.parentRunId" {
                        return Some((k.clone(), v.clone()));
                    }
                    // A parent the server does not have leaves the child top-level.
                    Some((k.clone(), remote_of.get(&RunId::parse(v)?)?.clone()))
                })
                .collect()
        };
        server.log_batch(&entry.remote, &run.params, &tags, &run.metrics)?;
        for (rel, file) in &run.artifacts {
            let bytes = std::fs::read(file).map_err(Error::io("read", file))?;
            server.upload_artifact(&entry.artifact_uri, rel, bytes)?;
        }
        let running = run.status == Status::Running;
        if !running {
            server.update_run(&entry.remote, run.status, run.end_time)?;
            append(
                &self.path,
                &Entry {
                    done: Some(fp),
                    ..entry
                },
            )?;
        }
        let mut r = lock(&self.report);
        r.sent += 1;
        r.metrics += run.metrics.len();
        r.artifacts += run.artifacts.len();
        r.running += usize::from(running);
        Ok(())
    }

    /// `runs` on [`workers`] threads; the first error stops them all.
    fn push_all(&self, runs: &[LocalRun]) -> Result<(), Error> {
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers().min(runs.len()) {
                s.spawn(|| {
                    while !self.failed.load(Ordering::Relaxed)
                        && !self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
                    {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(run) = runs.get(i) else { break };
                        if let Err(e) = self.push_one(run) {
                            self.failed.store(true, Ordering::Relaxed);
                            lock(&first_error).get_or_insert(e);
                        }
                    }
                });
            }
        });
        match first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Sends to `server` every run of this store (of `experiment` only, when given) that it
    /// does not have yet, top-level runs first, then their children (a child names its
    /// parent's remote id). Stops at the first error, which names the server; what was sent
    /// before it is recorded, so the next push goes on from there.
    pub fn push(&self, server: &Server, experiment: Option<&str>) -> Result<PushReport, Error> {
        self.push_runs(server, self.local_runs(experiment)?, None, None)
    }

    /// [`Store::push`] of `runs` (parents are sent before children), each run sent inside
    /// `gate`, stopping between runs once `cancel` is set.
    fn push_runs(
        &self,
        server: &Server,
        runs: Vec<LocalRun>,
        gate: Option<&Gate>,
        cancel: Option<&AtomicBool>,
    ) -> Result<PushReport, Error> {
        let path = record_path(self);
        let known = load(&path, server.uri())?;
        let remote_of = known
            .iter()
            .filter_map(|(k, e)| Some((RunId::parse(k)?, e.remote.clone())))
            .collect();
        let shared = Shared {
            server,
            path,
            known,
            experiments: Mutex::new(HashMap::new()),
            remote_of: Mutex::new(remote_of),
            report: Mutex::new(PushReport::default()),
            failed: AtomicBool::new(false),
            gate,
            cancel,
        };
        let (parents, children): (Vec<LocalRun>, Vec<LocalRun>) =
            runs.into_iter().partition(|r| r.parent.is_none());
        shared.push_all(&parents)?;
        shared.push_all(&children)?;
        Ok(shared
            .report
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts sending runs of experiment `exp` to `server` on a thread of its own, as the
    /// caller names them ([`Background::send`]), each run inside `gate`: a long command
    /// streams its runs while it still works, and what is left for the end is small.
    pub fn push_in_background(
        &self,
        server: Server,
        exp: ExperimentId,
        gate: Arc<Gate>,
    ) -> Background {
        let (tx, rx) = channel();
        let uri = server.uri().to_owned();
        let cancel = Arc::new(AtomicBool::new(false));
        let store = self.clone();
        let stop = cancel.clone();
        let handle = std::thread::Builder::new()
            .name("mlflow-push".into())
            .spawn(move || store.background(&server, &exp, &gate, &stop, rx))
            .expect("spawning a thread");
        Background {
            tx,
            cancel,
            handle,
            uri,
        }
    }

    fn background(
        &self,
        server: &Server,
        exp: &ExperimentId,
        gate: &Gate,
        cancel: &AtomicBool,
        rx: Receiver<Vec<RunId>>,
    ) -> (PushReport, Option<Error>) {
        let mut total = PushReport::default();
        for ids in rx {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let pushed = self
                .local_runs_of(exp, &ids)
                .and_then(|runs| self.push_runs(server, runs, Some(gate), Some(cancel)));
            match pushed {
                Ok(r) => {
                    total.sent += r.sent;
                    total.already += r.already;
                    total.metrics += r.metrics;
                    total.artifacts += r.artifacts;
                    total.running += r.running;
                }
                // The rest waits for the final push (or `quantlab track push`).
                Err(e) => return (total, Some(e)),
            }
        }
        (total, None)
    }
}

/// A push running beside its caller (see [`Store::push_in_background`]).
#[derive(Debug)]
pub struct Background {
    tx: Sender<Vec<RunId>>,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<(PushReport, Option<Error>)>,
    uri: String,
}

impl Background {
    /// Queues runs to send (parents before or with their children).
    pub fn send(&self, runs: Vec<RunId>) {
        // A send to a finished thread only happens after an error, which `finish` reports.
        let _ = self.tx.send(runs);
    }

    /// Stops after the run being sent (the caller's final [`Store::push`] sends the rest),
    /// and says what went: runs sent while RUNNING locally are counted in `running`, and
    /// the first error, after which the thread sent nothing more.
    pub fn finish(self) -> (PushReport, Option<Error>) {
        self.cancel.store(true, Ordering::Relaxed);
        drop(self.tx);
        self.handle.join().unwrap_or_else(|_| {
            (
                PushReport::default(),
                Some(Error::Unreachable {
                    uri: self.uri,
                    reason: "the background push stopped unexpectedly".into(),
                }),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::run::Run;

    /// A stand-in for MLflow's REST API, enough for a push: every request's first line is
    /// kept; experiments exist, runs are created with fresh ids, everything else is `{}`.
    fn fake_mlflow() -> (String, Arc<Mutex<Vec<String>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let runs = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let (log, runs) = (log.clone(), runs.clone());
                std::thread::spawn(move || {
                    let mut stream = stream.unwrap();
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut request = String::new();
                        if r.read_line(&mut request).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut len = 0;
                        let mut line = String::new();
                        while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap();
                            }
                            line.clear();
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let body = if request.contains("experiments/get-by-name") {
                            r#"{"experiment":{"experiment_id":"7","lifecycle_stage":"active"}}"#
                                .to_owned()
                        } else if request.contains("runs/create") {
                            let n = runs.fetch_add(1, Ordering::SeqCst);
                            format!(
                                r#"{{"run":{{"info":{{"run_id":"remote{n}","artifact_uri":"mlflow-artifacts:/7/remote{n}/artifacts"}}}}}}"#
                            )
                        } else {
                            "{}".to_owned()
                        };
                        lock(&log).push(request.trim().to_owned());
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        stream.write_all(head.as_bytes()).unwrap();
                        stream.write_all(body.as_bytes()).unwrap();
                    }
                });
            }
        });
        (uri, seen)
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_background_push_waits_out_the_hush_then_sends_and_the_final_push_completes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let exp = store.experiment("bench").unwrap();
        let parent = store.start_run(&exp, "model", None, &[]).unwrap();
        parent.log_metric("accuracy", 0.9, 0).unwrap();
        let mut ids = vec![parent.id().clone()];
        for name in ["f32", "int8"] {
            let child: Run = store.start_run(&exp, name, Some(parent.id()), &[]).unwrap();
            child.log_metric("latency_us", 10.0, 0).unwrap();
            child.log_artifact_bytes("model.bin", b"weights").unwrap();
            ids.push(child.id().clone());
            child.end(Status::Finished).unwrap();
        }
        let (uri, seen) = fake_mlflow();
        let server = Server::new(&uri).unwrap();
        let gate = Arc::new(Gate::new());

        let hush = gate.hush();
        let bg = store.push_in_background(server.clone(), exp.clone(), gate.clone());
        bg.send(ids);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            lock(&seen).is_empty(),
            "sent while hushed: {:?}",
            lock(&seen)
        );
        drop(hush);
        wait_for("the three runs", || {
            lock(&seen)
                .iter()
                .filter(|r| r.contains("runs/update"))
                .count()
                == 2
        });
        let (early, error) = bg.finish();
        assert!(error.is_none(), "{error:?}");
        // The parent was still RUNNING: sent, and counted as to be sent again.
        assert_eq!((early.sent, early.running, early.artifacts), (3, 1, 2));
        let sent: Vec<String> = lock(&seen).clone();
        assert_eq!(sent.iter().filter(|r| r.contains("runs/create")).count(), 3);
        assert_eq!(sent.iter().filter(|r| r.starts_with("PUT")).count(), 2);

        // The final push sends only the parent, now ended, into its remote run.
        parent.end(Status::Finished).unwrap();
        let last = store.push(&server, Some("bench")).unwrap();
        assert_eq!((last.sent, last.already, last.running), (1, 2, 0));
        let after: Vec<String> = lock(&seen)[sent.len()..].to_vec();
        assert!(
            !after.iter().any(|r| r.contains("runs/create")),
            "{after:?}"
        );
        assert_eq!(
            after.iter().filter(|r| r.contains("runs/update")).count(),
            1
        );
    }
}
