//! A run being recorded: params, metrics, tags, artifacts, and its end.
//!
//! Each call writes straight to the store (no buffering), in the files MLflow's `FileStore`
//! reads: `params/<key>` and `tags/<key>` hold the value with no trailing newline,
//! `metrics/<key>` gets one `timestamp value step` line per value, artifacts are copied under
//! the run's artifact directory, and meta.yaml is rewritten when the run ends. A key with `/`
//! makes sub-directories, as in MLflow. All methods take `&self`, so a `Run` can be shared
//! between threads (e.g. in an `Arc`).

use std::fmt::Display;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::context;
use crate::error::Error;
use crate::fsio::{self, Published};
use crate::ids::{ExperimentId, RunId};
use crate::meta::{META, RunMeta};
use crate::metric_line::format_line;
use crate::status::Status;
use crate::tags;
use crate::validate::{
    MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN, artifact_rel_path, check_key, truncate_chars,
};

/// A run in progress. Get one from [`crate::Store::start_run`]; finish it with [`Run::end`].
///
/// A run dropped without `end` is recorded as FAILED (the usual cause is an early return with
/// `?`), so the UI never shows it running forever.
#[derive(Debug)]
pub struct Run {
    id: RunId,
    experiment_id: ExperimentId,
    start_time: i64,
    dir: PathBuf,
    artifact_dir: PathBuf,
    meta: Mutex<RunMeta>,
    ended: bool,
}

impl Run {
    pub(crate) fn new(meta: RunMeta, dir: PathBuf, artifact_dir: PathBuf) -> Run {
        Run {
            id: meta.run_id.clone(),
            experiment_id: meta.experiment_id.clone(),
            start_time: meta.start_time,
            dir,
            artifact_dir,
            meta: Mutex::new(meta),
            ended: false,
        }
    }

    /// The run id (32 hex digits).
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The experiment the run belongs to.
    pub fn experiment_id(&self) -> &ExperimentId {
        &self.experiment_id
    }

    /// The run's name (`run_name` in meta.yaml, tag `mlflow.runName`).
    pub fn name(&self) -> String {
        self.lock_meta().run_name.clone()
    }

    /// When the run started, in milliseconds since the Unix epoch.
    pub fn start_time_ms(&self) -> i64 {
        self.start_time
    }

    /// The run's directory in the store (`<root>/<experiment id>/<run id>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the run's artifacts go (normally `<run dir>/artifacts`).
    pub fn artifact_dir(&self) -> &Path {
        &self.artifact_dir
    }

    fn lock_meta(&self) -> MutexGuard<'_, RunMeta> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a param. Params cannot change in MLflow: logging the same key again with the
    /// same value is fine, with another value is [`Error::ParamChanged`]. The value is its
    /// `Display` text (as MLflow stores `str(value)`), cut to 6000 characters as MLflow does.
    pub fn log_param(&self, key: &str, value: impl Display) -> Result<(), Error> {
        check_key("param key", key)?;
        let value = value.to_string();
        let value = truncate_chars(&value, MAX_PARAM_VALUE_LEN);
        let path = self.dir.join("params").join(key);
        make_parent(&path)?;
        match fsio::publish_new(&self.dir, &path, value.as_bytes())? {
            Published::Created => Ok(()),
            Published::Existed => {
                let old = fsio::read_to_string(&path)?;
                if old == value {
                    Ok(())
                } else {
                    Err(Error::ParamChanged {
                        run_id: self.id.to_string(),
                        key: key.to_owned(),
                        old,
                        new: value.to_owned(),
                    })
                }
            }
        }
    }

    /// Records several params, stopping at the first error.
    pub fn log_params<K, V>(&self, params: impl IntoIterator<Item = (K, V)>) -> Result<(), Error>
    where
        K: AsRef<str>,
        V: Display,
    {
        params
            .into_iter()
            .try_for_each(|(k, v)| self.log_param(k.as_ref(), v))
    }

    /// Appends one value of a metric at `step`, timestamped now. NaN and infinities are
    /// allowed (written `nan`, `inf`, `-inf`, as MLflow does).
    pub fn log_metric(&self, key: &str, value: f64, step: i64) -> Result<(), Error> {
        self.log_metric_at(key, value, step, context::now_millis())
    }

    /// Like [`Run::log_metric`] with an explicit timestamp (milliseconds since the Unix epoch,
    /// not negative, as MLflow requires).
    pub fn log_metric_at(
        &self,
        key: &str,
        value: f64,
        step: i64,
        timestamp_ms: i64,
    ) -> Result<(), Error> {
        check_key("metric key", key)?;
        if timestamp_ms < 0 {
            return Err(Error::InvalidArgument(format!(
                "metric {key:?} timestamp {timestamp_ms} is negative"
            )));
        }
        let path = self.dir.join("metrics").join(key);
        make_parent(&path)?;
        fsio::append(&path, format_line(timestamp_ms, value, step).as_bytes())
    }

    /// Sets a tag (overwriting any earlier value), cut to 8000 characters as MLflow does.
    /// Setting `mlflow.runName` renames the run, in meta.yaml too, as in MLflow.
    pub fn set_tag(&self, key: &str, value: &str) -> Result<(), Error> {
        check_key("tag key", key)?;
        let value = truncate_chars(value, MAX_TAG_VALUE_LEN);
        let path = self.dir.join("tags").join(key);
        make_parent(&path)?;
        if key == tags::RUN_NAME {
            let mut meta = self.lock_meta();
            fsio::write_atomic(&self.dir, &path, value.as_bytes())?;
            meta.run_name = value.to_owned();
            return self.write_meta(&meta);
        }
        fsio::write_atomic(&self.dir, &path, value.as_bytes())
    }

    /// Sets the run's description (tag `mlflow.note.content`, markdown in the UI).
    pub fn set_note(&self, markdown: &str) -> Result<(), Error> {
        self.set_tag(tags::NOTE, markdown)
    }

    /// Copies the file `src` into the run's artifacts, under `subdir` if given (a relative
    /// path such as `"reports"` or `"plots/loss"`); returns where it was copied to. The copy
    /// appears complete or not at all.
    pub fn log_artifact(&self, src: &Path, subdir: Option<&str>) -> Result<PathBuf, Error> {
        let file_name = src.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "artifact source {} has no file name",
                src.display()
            ))
        })?;
        let meta = fs::metadata(src).map_err(Error::io("read", src))?;
        if !meta.is_file() {
            return Err(Error::InvalidArgument(format!(
                "artifact source {} is not a regular file",
                src.display()
            )));
        }
        let mut dest = self.artifact_dir.clone();
        if let Some(sub) = subdir {
            dest.push(artifact_rel_path("artifact directory", sub)?);
        }
        dest.push(file_name);
        make_parent(&dest)?;
        let mut input = File::open(src).map_err(Error::io("open", src))?;
        self.write_artifact(&dest, |out, tmp| {
            io::copy(&mut input, out)
                .map(drop)
                .map_err(Error::io("copy into", tmp))
        })?;
        Ok(dest)
    }

    /// Writes `bytes` as the artifact `name` (a relative path, e.g. `"report.json"` or
    /// `"eval/confusion.csv"`); returns its path. The file appears complete or not at all.
    pub fn log_artifact_bytes(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
        let dest = self
            .artifact_dir
            .join(artifact_rel_path("artifact name", name)?);
        make_parent(&dest)?;
        self.write_artifact(&dest, |out, tmp| {
            io::Write::write_all(out, bytes).map_err(Error::io("write file", tmp))
        })?;
        Ok(dest)
    }

    /// Writes an artifact through a temporary file, then renames it into place. The temporary
    /// file sits in the run directory when the artifacts are under it (MLflow does not list
    /// it there), else next to the destination.
    fn write_artifact(
        &self,
        dest: &Path,
        fill: impl FnOnce(&mut File, &Path) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let temp_dir = match dest.parent() {
            Some(parent) if !self.artifact_dir.starts_with(&self.dir) => parent,
            _ => &self.dir,
        };
        fsio::write_atomic_with(temp_dir, dest, fill)
    }

    /// Ends the run: meta.yaml gets `status` and `end_time` now. The status must be FINISHED,
    /// FAILED or KILLED; given RUNNING or SCHEDULED, this is an error and the dropped run is
    /// recorded FAILED.
    pub fn end(mut self, status: Status) -> Result<(), Error> {
        if !status.is_terminated() {
            return Err(Error::InvalidArgument(format!(
                "a run ends FINISHED, FAILED or KILLED, not {status}"
            )));
        }
        self.ended = true;
        self.finish(status)
    }

    fn finish(&self, status: Status) -> Result<(), Error> {
        let mut meta = self.lock_meta();
        meta.status = status;
        meta.end_time = Some(context::now_millis().max(meta.start_time));
        self.write_meta(&meta)
    }

    fn write_meta(&self, meta: &RunMeta) -> Result<(), Error> {
        fsio::write_atomic(&self.dir, &self.dir.join(META), meta.to_yaml().as_bytes())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.finish(Status::Failed);
        }
    }
}

fn make_parent(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(parent) => fsio::create_dir_all(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn read_meta(run_dir: &Path) -> RunMeta {
        let path = run_dir.join(META);
        RunMeta::from_yaml(&path, &fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn new_run(tmp: &Path) -> Run {
        let store = Store::open(tmp).unwrap();
        store
            .start_run(&ExperimentId::default_experiment(), "r", None, &[])
            .unwrap()
    }

    #[test]
    fn params_are_immutable_like_mlflow() {
        let tmp = tempfile::tempdir().unwrap();
        let run = new_run(tmp.path());
        run.log_param("lr", 0.01).unwrap();
        run.log_param("lr", "0.01").unwrap();
        let err = run.log_param("lr", 0.02).unwrap_err();
        assert!(matches!(err, Error::ParamChanged { .. }), "{err}");
        assert!(err.to_string().contains("\"0.01\""), "{err}");
        assert_eq!(
            fs::read_to_string(run.dir().join("params/lr")).unwrap(),
            "0.01"
        );
        run.log_params([("model/hidden", 128), ("epochs", 5)])
            .unwrap();
        assert_eq!(
            fs::read_to_string(run.dir().join("params/model/hidden")).unwrap(),
            "128"
        );
        // Temporary files never land in params/ (MLflow would read them as params).
        let mut names: Vec<_> = fs::read_dir(run.dir().join("params"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["epochs", "lr", "model"]);
    }

    #[test]
    fn long_values_are_cut_to_mlflow_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let run = new_run(tmp.path());
        run.log_param("p", "é".repeat(7000)).unwrap();
        run.set_tag("t", &"x".repeat(9000)).unwrap();
        let p = fs::read_to_string(run.dir().join("params/p")).unwrap();
        assert_eq!(p.chars().count(), 6000);
        let t = fs::read_to_string(run.dir().join("tags/t")).unwrap();
        assert_eq!(t.len(), 8000);
    }

    #[test]
    fn renaming_through_the_tag_updates_meta_yaml() {
        let tmp = tempfile::tempdir().unwrap();
        let run = new_run(tmp.path());
        run.set_tag(tags::RUN_NAME, "renamed").unwrap();
        assert_eq!(run.name(), "renamed");
        assert_eq!(read_meta(run.dir()).run_name, "renamed");
        assert_eq!(
            fs::read_to_string(run.dir().join("tags/mlflow.runName")).unwrap(),
            "renamed"
        );
    }

    #[test]
    fn end_writes_status_and_end_time_and_drop_marks_failed() {
        let tmp = tempfile::tempdir().unwrap();
        let run = new_run(tmp.path());
        let dir = run.dir().to_owned();
        assert_eq!(read_meta(&dir).status, Status::Running);
        assert_eq!(read_meta(&dir).end_time, None);
        run.end(Status::Finished).unwrap();
        let meta = read_meta(&dir);
        assert_eq!(meta.status, Status::Finished);
        assert!(meta.end_time.unwrap() >= meta.start_time);

        let run = new_run(tmp.path());
        let dir = run.dir().to_owned();
        drop(run);
        assert_eq!(read_meta(&dir).status, Status::Failed);

        let run = new_run(tmp.path());
        let dir = run.dir().to_owned();
        assert!(run.end(Status::Running).is_err());
        assert_eq!(
            read_meta(&dir).status,
            Status::Failed,
            "a refused end is a failed run"
        );

        let run = new_run(tmp.path());
        let dir = run.dir().to_owned();
        run.end(Status::Killed).unwrap();
        assert_eq!(read_meta(&dir).status, Status::Killed);
    }

    #[test]
    fn artifacts_refuse_escaping_paths_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let run = new_run(&tmp.path().join("s"));
        assert!(run.log_artifact_bytes("../escape", b"x").is_err());
        assert!(run.log_artifact_bytes("/abs", b"x").is_err());
        assert!(
            run.log_artifact(tmp.path(), None).is_err(),
            "a directory is not a file"
        );
        let src = tmp.path().join("f.txt");
        fs::write(&src, "hi").unwrap();
        assert!(run.log_artifact(&src, Some("../up")).is_err());
        let err = run
            .log_artifact(&tmp.path().join("missing"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        let dest = run.log_artifact_bytes("a/b.json", b"{}").unwrap();
        assert_eq!(dest, run.artifact_dir().join("a/b.json"));
        assert_eq!(fs::read(&dest).unwrap(), b"{}");
        // Only the run's own entries in its directory: no temporary files left.
        let mut names: Vec<_> = fs::read_dir(run.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["artifacts", "meta.yaml", "metrics", "params", "tags"]
        );
    }

    #[test]
    fn metric_keys_and_timestamps_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let run = new_run(tmp.path());
        assert!(run.log_metric("bad key!", 1.0, 0).is_err());
        assert!(run.log_metric_at("ok", 1.0, 0, -1).is_err());
        run.log_metric_at("val/loss", 0.25, 3, 1000).unwrap();
        assert_eq!(
            fs::read_to_string(run.dir().join("metrics/val/loss")).unwrap(),
            "1000 0.25 3\n"
        );
    }
}
