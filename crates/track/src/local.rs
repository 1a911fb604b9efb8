//! Runs read back from the file store, whole: what `push` sends to a tracking server.
//!
//! The store is the record of truth (every command writes it first, server or not), so a
//! run that could not be sent when it was made is read back here, from the same files
//! MLflow's `FileStore` reads: meta.yaml, `params/<key>`, `tags/<key>`, the
//! `timestamp value step` lines of `metrics/<key>` (keys with `/` are sub-folders) and the
//! files under the run's artifact folder.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::ids::{ExperimentId, RunId};
use crate::meta::{ACTIVE, META, RunMeta};
use crate::status::Status;
use crate::store::{Store, TRASH};
use crate::uri;

/// One logged metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Metric key.
    pub key: String,
    /// Value (may be NaN or infinite, as MLflow allows).
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Step.
    pub step: i64,
}

/// A run as the store holds it.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// Its id in the file store.
    pub id: RunId,
    /// Name of its experiment.
    pub experiment: String,
    /// Run name.
    pub name: String,
    /// Status in meta.yaml.
    pub status: Status,
    /// Start, ms since the epoch.
    pub start_time: i64,
    /// End, when it ended.
    pub end_time: Option<i64>,
    /// The `mlflow.parentRunId` tag, when it is a child run.
    pub parent: Option<RunId>,
    /// `(key, value)`, sorted by key.
    pub params: Vec<(String, String)>,
    /// `(key, value)`, sorted by key.
    pub tags: Vec<(String, String)>,
    /// Every metric value, by key then in file order.
    pub metrics: Vec<MetricPoint>,
    /// `(path relative to the artifact root, with '/', file on disk)`, sorted.
    pub artifacts: Vec<(String, PathBuf)>,
}

impl Store {
    /// Every active run of the store's active experiments (of `experiment` only, when
    /// given), parents before their children. An unreadable run is an error naming it.
    pub fn local_runs(&self, experiment: Option<&str>) -> Result<Vec<LocalRun>, Error> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(self.root()).map_err(Error::io("list directory", self.root()))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != TRASH && n != "models"))
            .collect();
        dirs.sort();
        for dir in dirs {
            let Ok(Some(exp)) = self.read_experiment_meta(&dir) else {
                continue;
            };
            if exp.lifecycle_stage != ACTIVE || experiment.is_some_and(|e| e != exp.name) {
                continue;
            }
            let mut runs: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(Error::io("list directory", &dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(META).is_file())
                .collect();
            runs.sort();
            for run_dir in runs {
                let run = read_run(&run_dir, &exp.name)?;
                if run.1 == ACTIVE {
                    out.push(run.0);
                }
            }
        }
        // Parents first (a child's remote parent id must exist when the child is sent),
        // then by start time.
        out.sort_by_key(|r| (r.parent.is_some(), r.start_time));
        Ok(out)
    }
}

impl Store {
    /// The active runs `ids` of experiment `exp`, parents first: what a background push
    /// reads without scanning the whole store. An unreadable or missing run is an error
    /// naming it.
    pub fn local_runs_of(&self, exp: &ExperimentId, ids: &[RunId]) -> Result<Vec<LocalRun>, Error> {
        let dir = self.experiment_dir(exp);
        let name = self
            .read_experiment_meta(&dir)?
            .ok_or_else(|| Error::NoSuchExperiment {
                id: exp.as_str().to_owned(),
                root: self.root().to_path_buf(),
            })?
            .name;
        let mut out = Vec::new();
        for id in ids {
            let (run, stage) = read_run(&dir.join(id.as_str()), &name)?;
            if stage == ACTIVE {
                out.push(run);
            }
        }
        out.sort_by_key(|r| (r.parent.is_some(), r.start_time));
        Ok(out)
    }
}

/// The run in `dir` and its lifecycle stage.
fn read_run(dir: &Path, experiment: &str) -> Result<(LocalRun, String), Error> {
    let meta_path = dir.join(META);
    let text = fs::read_to_string(&meta_path).map_err(Error::io("read", &meta_path))?;
    let meta = RunMeta::from_yaml(&meta_path, &text)?;
    let params = read_values(&dir.join("params"))?;
    let tags = read_values(&dir.join("tags"))?;
    let parent = tags
        .iter()
        .find(|(k, _)| k == "mlflow.parentRunId")
        .and_then(|(_, v)| RunId::parse(v));
    let mut metrics = Vec::new();
    for (key, path) in files_under(&dir.join("metrics"))? {
        let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            metrics.push(
                parse_metric_line(&key, line).ok_or_else(|| Error::Malformed {
                    path: path.clone(),
                    reason: format!("line {}: not `timestamp value step`", i + 1),
                })?,
            );
        }
    }
    let artifacts = match uri::local_path(&meta.artifact_uri) {
        Some(root) => files_under(&root)?,
        None => Vec::new(),
    };
    let run = LocalRun {
        id: meta.run_id,
        experiment: experiment.to_owned(),
        name: meta.run_name,
        status: meta.status,
        start_time: meta.start_time,
        end_time: meta.end_time,
        parent,
        params,
        tags,
        metrics,
        artifacts,
    };
    Ok((run, meta.lifecycle_stage))
}

/// MLflow's `_get_metric_from_line`: `timestamp value [step]` (a missing step is 0).
fn parse_metric_line(key: &str, line: &str) -> Option<MetricPoint> {
    let f: Vec<&str> = line.split(' ').collect();
    let (ts, value, step) = match f.as_slice() {
        [ts, v] => (ts, v, &"0"),
        [ts, v, step] | [ts, v, step, _, _] => (ts, v, step),
        _ => return None,
    };
    Some(MetricPoint {
        key: key.to_owned(),
        timestamp: ts.parse().ok()?,
        value: value.parse().ok()?,
        step: step.parse().ok()?,
    })
}

/// `(key, file content)` for every file under `dir` (none if it does not exist).
fn read_values(dir: &Path) -> Result<Vec<(String, String)>, Error> {
    files_under(dir)?
        .into_iter()
        .map(|(k, p)| {
            let v = fs::read_to_string(&p).map_err(Error::io("read", &p))?;
            Ok((k, v))
        })
        .collect()
}

/// Every regular file under `dir`, as `(relative path with '/', path)`, sorted; none if
/// `dir` does not exist. Temporary files of an interrupted write (`.tmp-*`) are left out.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, d)) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list directory", &d)(e)),
        };
        for e in entries {
            let e = e.map_err(Error::io("list directory", &d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp") {
                continue;
            }
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let ty = e.file_type().map_err(Error::io("stat", e.path()))?;
            if ty.is_dir() {
                stack.push((rel, e.path()));
            } else if ty.is_file() {
                out.push((rel, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_back_as_it_was_logged() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("mlruns")).unwrap();
        let exp = store.experiment("e").unwrap();
        let parent = store.start_run(&exp, "p", None, &[("a", "1")]).unwrap();
        let child = store.start_run(&exp, "c", Some(parent.id()), &[]).unwrap();
        parent
            .log_params([("lr", "0.1"), ("opt/kind", "sgd")])
            .unwrap();
        parent.log_metric("loss", 0.5, 0).unwrap();
        parent.log_metric("loss", f64::NAN, 1).unwrap();
        parent.log_metric("sub/m", 1e-7, 3).unwrap();
        child.log_artifact_bytes("d/r.txt", b"hi").unwrap();
        let (pid, cid) = (parent.id().clone(), child.id().clone());
        child.end(Status::Failed).unwrap();
        parent.end(Status::Finished).unwrap();
        let other = store.experiment("other").unwrap();
        store
            .start_run(&other, "x", None, &[])
            .unwrap()
            .end(Status::Finished)
            .unwrap();

        let runs = store.local_runs(Some("e")).unwrap();
        assert_eq!(runs.len(), 2);
        let (p, c) = (&runs[0], &runs[1]);
        assert_eq!((&p.id, &c.id), (&pid, &cid));
        assert_eq!(c.parent.as_ref(), Some(&pid));
        assert_eq!((p.status, c.status), (Status::Finished, Status::Failed));
        assert!(p.end_time.is_some() && p.experiment == "e" && p.name == "p");
        assert_eq!(
            p.params,
            vec![
                ("lr".into(), "0.1".into()),
                ("opt/kind".into(), "sgd".into())
            ]
        );
        assert!(p.tags.contains(&("a".into(), "1".into())));
        let loss: Vec<_> = p.metrics.iter().filter(|m| m.key == "loss").collect();
        assert_eq!(loss.len(), 2);
        assert_eq!((loss[0].value, loss[0].step), (0.5, 0));
        assert!(loss[1].value.is_nan() && loss[1].step == 1);
        assert!(
            p.metrics
                .iter()
                .any(|m| m.key == "sub/m" && m.value == 1e-7)
        );
        assert_eq!(c.artifacts.len(), 1);
        assert_eq!(c.artifacts[0].0, "d/r.txt");
        assert_eq!(store.local_runs(None).unwrap().len(), 3);
    }

    #[test]
    fn a_damaged_metric_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("mlruns")).unwrap();
        let exp = store.experiment("e").unwrap();
        let run = store.start_run(&exp, "p", None, &[]).unwrap();
        run.log_metric("loss", 0.5, 0).unwrap();
        fs::write(run.dir().join("metrics/loss"), "12 x 0\n").unwrap();
        run.end(Status::Finished).unwrap();
        let err = store.local_runs(None).unwrap_err().to_string();
        assert!(err.contains("metrics") && err.contains("line 1"), "{err}");
    }
}
