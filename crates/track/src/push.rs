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
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsio;
use crate::ids::RunId;
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
                    while !self.failed.load(Ordering::Relaxed) {
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
        };
        let (parents, children): (Vec<LocalRun>, Vec<LocalRun>) = self
            .local_runs(experiment)?
            .into_iter()
            .partition(|r| r.parent.is_none());
        shared.push_all(&parents)?;
        shared.push_all(&children)?;
        Ok(shared
            .report
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner))
    }
}
