//! The store: an MLflow file-store root directory (`./mlruns`) and starting runs in it.
//!
//! Layout (MLflow's `FileStore`): `<root>/<experiment id>/meta.yaml` for each experiment,
//! `<root>/<experiment id>/<run id>/` for each run, `<root>/.trash/` for deleted experiments,
//! `<root>/models/` for MLflow's model registry. MLflow treats every other sub-directory of the
//! root as an experiment and every sub-directory of an experiment (except `tags`, `datasets`,
//! `traces`, `models`) as a run, so this crate never makes directories of its own there;
//! its temporary files are plain files, which MLflow ignores.

use std::fs;
use std::path::{Path, PathBuf};

use crate::context;
use crate::error::Error;
use crate::fsio;
use crate::ids::{ExperimentId, RunId};
use crate::meta::{ACTIVE, ExperimentMeta, META, RunMeta};
use crate::run::Run;
use crate::status::Status;
use crate::tags;
use crate::uri;
use crate::validate::{MAX_TAG_VALUE_LEN, check_key, truncate_chars};

/// MLflow's name for the folder holding deleted experiments.
pub(crate) const TRASH: &str = ".trash";

/// An MLflow file store on the local disk.
///
/// Cheap to clone; holds only the (canonical) root path. Several `Store`s, in one process or
/// many, may write to the same root at once.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the directory, the default experiment `0`
    /// ("Default") and `.trash` if missing, as MLflow's `FileStore` does, and checks that the
    /// root is writable.
    ///
    /// Fails with an error naming the path if the root cannot be created or written (for
    /// example when it lies under a regular file, or on a read-only file system): callers that
    /// treat tracking as optional can print the error as a one-line warning and go on.
    pub fn open(root: &Path) -> Result<Store, Error> {
        fsio::create_dir_all(root)?;
        let canonical = fs::canonicalize(root).map_err(Error::io("resolve", root))?;
        if uri::path_to_file_uri(&canonical).is_none() {
            return Err(Error::InvalidArgument(format!(
                "store path {} is not valid UTF-8",
                canonical.display()
            )));
        }
        let store = Store { root: canonical };
        // Writable? (A read-only root would otherwise fail only at the first run.)
        fsio::check_writable(&store.root)?;

        let default = ExperimentId::default_experiment();
        let default_dir = store.experiment_dir(&default);
        let trash_default = store.root.join(TRASH).join(default.as_str());
        if !default_dir.join(META).exists() && !trash_default.exists() {
            fsio::create_dir_new(&default_dir)?;
            store.publish_experiment_meta(&default, "Default")?;
        }
        fsio::create_dir_all(&store.root.join(TRASH))?;
        Ok(store)
    }

    /// The absolute root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn experiment_dir(&self, id: &ExperimentId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// Writes `<root>/<id>/meta.yaml` for a new active experiment unless one is there;
    /// says whether this call wrote it.
    pub(crate) fn publish_experiment_meta(
        &self,
        id: &ExperimentId,
        name: &str,
    ) -> Result<fsio::Published, Error> {
        let dir = self.experiment_dir(id);
        let now = context::now_millis();
        let meta = ExperimentMeta {
            id: id.clone(),
            name: name.to_owned(),
            artifact_location: uri::path_to_file_uri(&dir).expect("root checked to be UTF-8"),
            lifecycle_stage: ACTIVE.to_owned(),
            creation_time: Some(now),
            last_update_time: Some(now),
        };
        fsio::publish_new(&dir, &dir.join(META), meta.to_yaml().as_bytes())
    }

    /// Reads an experiment's meta.yaml; `None` if it has none (yet).
    pub(crate) fn read_experiment_meta(&self, dir: &Path) -> Result<Option<ExperimentMeta>, Error> {
        let path = dir.join(META);
        match fs::read_to_string(&path) {
            Ok(text) => ExperimentMeta::from_yaml(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path)(e)),
        }
    }

    /// Starts a run in experiment `exp`: a new run directory with `metrics/`, `params/`,
    /// `tags/`, `artifacts/` and a meta.yaml saying RUNNING since now.
    ///
    /// Tags set: `mlflow.runName`, `mlflow.user`, `mlflow.source.name`, `mlflow.source.type`
    /// (`LOCAL`), `mlflow.parentRunId` when `parent` is given, then `tags` (which may override
    /// the defaults, e.g. `mlflow.user`, or add `mlflow.source.git.commit`). An empty
    /// `run_name` takes the `mlflow.runName` from `tags`, or else `run-<first 8 id digits>`.
    /// meta.yaml is written last, so MLflow readers see the run only once it is complete.
    pub fn start_run(
        &self,
        exp: &ExperimentId,
        run_name: &str,
        parent: Option<&RunId>,
        tags: &[(&str, &str)],
    ) -> Result<Run, Error> {
        let exp_dir = self.experiment_dir(exp);
        let meta = match self.read_experiment_meta(&exp_dir)? {
            Some(m) if m.lifecycle_stage == ACTIVE && &m.id == exp => m,
            _ => {
                return Err(Error::NoSuchExperiment {
                    id: exp.to_string(),
                    root: self.root.clone(),
                });
            }
        };
        let artifact_root =
            uri::local_path(&meta.artifact_location).ok_or_else(|| Error::NonLocalArtifacts {
                id: exp.to_string(),
                location: meta.artifact_location.clone(),
                path: exp_dir.join(META),
            })?;
        for (key, _) in tags {
            check_key("tag key", key)?;
        }
        let tag_name = tags
            .iter()
            .rev()
            .find(|(k, _)| *k == tags::RUN_NAME)
            .map(|(_, v)| *v);
        if let Some(t) = tag_name
            && !run_name.is_empty()
            && t != run_name
        {
            return Err(Error::InvalidArgument(format!(
                "run name {run_name:?} differs from tag {}={t:?}",
                tags::RUN_NAME
            )));
        }

        let (run_id, run_dir) = new_run_dir(&exp_dir)?;
        for sub in ["metrics", "params", "tags", "artifacts"] {
            fsio::create_dir_new(&run_dir.join(sub))?;
        }
        let artifact_dir = artifact_root.join(run_id.as_str()).join("artifacts");
        fsio::create_dir_all(&artifact_dir)?;

        let run_name = match (run_name, tag_name) {
            ("", Some(t)) if !t.is_empty() => t.to_owned(),
            ("", _) => format!("run-{}", &run_id.as_str()[..8]),
            (n, _) => n.to_owned(),
        };
        let mut all_tags: Vec<(String, String)> = vec![
            (tags::RUN_NAME.into(), run_name.clone()),
            (tags::USER.into(), context::current_user()),
            (tags::SOURCE_NAME.into(), context::source_name()),
            (tags::SOURCE_TYPE.into(), "LOCAL".into()),
        ];
        if let Some(p) = parent {
            all_tags.push((tags::PARENT_RUN_ID.into(), p.to_string()));
        }
        for (k, v) in tags {
            let v = truncate_chars(v, MAX_TAG_VALUE_LEN).to_owned();
            match all_tags.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v,
                None => all_tags.push(((*k).to_owned(), v)),
            }
        }
        for (k, v) in &all_tags {
            let path = run_dir.join("tags").join(k);
            if let Some(parent_dir) = path.parent() {
                fsio::create_dir_all(parent_dir)?;
            }
            fsio::write_atomic(&run_dir, &path, v.as_bytes())?;
        }
        let user_id = all_tags
            .iter()
            .find(|(k, _)| k == tags::USER)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "unknown".into());

        let run_meta = RunMeta {
            run_id: run_id.clone(),
            run_name,
            experiment_id: exp.clone(),
            artifact_uri: format!(
                "{}/{}/artifacts",
                meta.artifact_location.trim_end_matches('/'),
                run_id
            ),
            user_id,
            status: Status::Running,
            start_time: context::now_millis(),
            end_time: None,
            lifecycle_stage: ACTIVE.to_owned(),
        };
        fsio::write_atomic(&run_dir, &run_dir.join(META), run_meta.to_yaml().as_bytes())?;
        Ok(Run::new(run_meta, run_dir, artifact_dir))
    }
}

/// Makes `<exp_dir>/<new run id>`, drawing again on the (practically impossible) collision.
fn new_run_dir(exp_dir: &Path) -> Result<(RunId, PathBuf), Error> {
    loop {
        let id = RunId::random();
        let dir = exp_dir.join(id.as_str());
        if fsio::create_dir_new(&dir)? {
            return Ok((id, dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_mlflow_skeleton_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/mlruns");
        let store = Store::open(&root).unwrap();
        assert!(store.root().is_absolute());
        let meta = store
            .read_experiment_meta(&store.root().join("0"))
            .unwrap()
            .unwrap();
        assert_eq!(meta.name, "Default");
        assert_eq!(meta.id.as_str(), "0");
        assert_eq!(
            meta.artifact_location,
            format!("file://{}/0", store.root().display())
        );
        assert!(store.root().join(TRASH).is_dir());
        let first = fs::read_to_string(store.root().join("0/meta.yaml")).unwrap();
        Store::open(&root).unwrap();
        let second = fs::read_to_string(store.root().join("0/meta.yaml")).unwrap();
        assert_eq!(
            first, second,
            "reopening must not rewrite the default experiment"
        );
        let mut names: Vec<_> = fs::read_dir(store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".trash", "0"], "no probe or temp files left");
    }

    #[test]
    fn start_run_refuses_unknown_experiments_and_conflicting_names() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let missing = ExperimentId::parse("12345").unwrap();
        let err = store.start_run(&missing, "r", None, &[]).unwrap_err();
        assert!(matches!(err, Error::NoSuchExperiment { .. }), "{err}");
        let exp = ExperimentId::default_experiment();
        let err = store
            .start_run(&exp, "a", None, &[(tags::RUN_NAME, "b")])
            .unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
        let err = store
            .start_run(&exp, "a", None, &[("bad,key", "v")])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
        // Nothing half-made is left behind by the refusals.
        assert_eq!(fs::read_dir(store.root().join("0")).unwrap().count(), 1);
    }

    #[test]
    fn run_names_fall_back_to_the_tag_then_the_id() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let exp = ExperimentId::default_experiment();
        let r = store
            .start_run(&exp, "", None, &[(tags::RUN_NAME, "from-tag")])
            .unwrap();
        assert_eq!(r.name(), "from-tag");
        let r = store.start_run(&exp, "", None, &[]).unwrap();
        assert_eq!(r.name(), format!("run-{}", &r.id().as_str()[..8]));
    }

    #[test]
    fn artifacts_follow_a_custom_local_artifact_location() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("mlruns")).unwrap();
        let elsewhere = tmp.path().join("art store");
        let id = ExperimentId::parse("77").unwrap();
        let dir = store.experiment_dir(&id);
        fs::create_dir(&dir).unwrap();
        let loc = uri::path_to_file_uri(&elsewhere).unwrap();
        fs::write(
            dir.join(META),
            format!(
                "artifact_location: {loc}\nexperiment_id: '77'\nlifecycle_stage: active\nname: x\n"
            ),
        )
        .unwrap();
        let run = store.start_run(&id, "r", None, &[]).unwrap();
        assert_eq!(
            run.artifact_dir(),
            elsewhere.join(run.id().as_str()).join("artifacts")
        );
        assert!(run.artifact_dir().is_dir());
        assert!(
            run.dir().join("artifacts").is_dir(),
            "MLflow requires it in the run dir"
        );
        let meta = fs::read_to_string(run.dir().join(META)).unwrap();
        assert!(
            meta.contains(&format!("artifact_uri: \"{loc}/{}/artifacts\"", run.id())),
            "{meta}"
        );
    }

    #[test]
    fn remote_artifact_locations_are_refused_naming_the_experiment() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let id = ExperimentId::parse("5").unwrap();
        let dir = store.experiment_dir(&id);
        fs::create_dir(&dir).unwrap();
        fs::write(
            dir.join(META),
            "artifact_location: mlflow-artifacts:/5\nexperiment_id: '5'\nname: remote\n",
        )
        .unwrap();
        let err = store
            .start_run(&id, "r", None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("experiment 5") && err.contains("mlflow-artifacts:/5"),
            "{err}"
        );
    }
}
