//! The two meta.yaml kinds: an experiment's and a run's, field for field as MLflow writes them.
//!
//! Field sets and encodings follow MLflow 3.17/3.18's `FileStore`:
//! - experiment (`_create_experiment_with_id`, `dict(Experiment)` minus `tags`):
//!   `artifact_location`, `creation_time`, `effective_trace_archival_retention: null`,
//!   `experiment_id` (a string), `last_update_time`, `lifecycle_stage`, `name`,
//!   `trace_location: null`, `workspace: default`. Older MLflow versions ignore the keys they do
//!   not know (`Experiment.from_dictionary` filters them).
//! - run (`_make_persisted_run_info_dict`): `artifact_uri`, `end_time` (ms or null),
//!   `entry_point_name: ''`, `experiment_id`, `lifecycle_stage`, `run_id`, `run_name`,
//!   `source_name: ''`, `source_type: 4` (LOCAL), `source_version: ''`, `start_time`,
//!   `status` as the protobuf *integer* (see `status.rs`), `tags: []` (tags live in files),
//!   `user_id`.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::ids::{ExperimentId, RunId};
use crate::status::Status;
use crate::yaml::{self, Int, Out, write_mapping};

/// The file name of both kinds: `<root>/<experiment id>/meta.yaml`,
/// `<root>/<experiment id>/<run id>/meta.yaml`.
pub(crate) const META: &str = "meta.yaml";

/// MLflow's `LifecycleStage.ACTIVE`.
pub(crate) const ACTIVE: &str = "active";

/// An experiment's meta.yaml.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExperimentMeta {
    pub id: ExperimentId,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
}

impl ExperimentMeta {
    pub(crate) fn to_yaml(&self) -> String {
        let time = |t: Option<i64>| t.map_or(Out::Null, Out::Int);
        write_mapping(&[
            ("artifact_location", Out::Str(&self.artifact_location)),
            ("creation_time", time(self.creation_time)),
            ("effective_trace_archival_retention", Out::Null),
            ("experiment_id", Out::Str(self.id.as_str())),
            ("last_update_time", time(self.last_update_time)),
            ("lifecycle_stage", Out::Str(&self.lifecycle_stage)),
            ("name", Out::Str(&self.name)),
            ("trace_location", Out::Null),
            ("workspace", Out::Str("default")),
        ])
    }

    /// Reads the fields this crate needs from an experiment meta.yaml at `path` (for errors).
    pub(crate) fn from_yaml(path: &Path, text: &str) -> Result<ExperimentMeta, Error> {
        /// The keys read; the others MLflow writes are ignored.
        #[derive(Deserialize)]
        struct Fields {
            experiment_id: Option<String>,
            name: Option<String>,
            artifact_location: Option<String>,
            lifecycle_stage: Option<String>,
            #[serde(default)]
            creation_time: Int,
            #[serde(default)]
            last_update_time: Int,
        }
        let f: Fields = read(path, text)?;
        let id = required(path, f.experiment_id, "experiment_id")?;
        Ok(ExperimentMeta {
            id: ExperimentId::parse(&id).ok_or_else(|| malformed(path, "invalid experiment_id"))?,
            name: required(path, f.name, "name")?,
            artifact_location: required(path, f.artifact_location, "artifact_location")?,
            // MLflow treats a missing lifecycle_stage as active.
            lifecycle_stage: f.lifecycle_stage.unwrap_or_else(|| ACTIVE.to_owned()),
            creation_time: f.creation_time.0,
            last_update_time: f.last_update_time.0,
        })
    }
}

/// Parses the bytes of an experiment meta.yaml (`path` names it in errors) as
/// [`crate::Store`] reads one from disk, returning the experiment's id and name: the reader
/// without the file system, for the fuzz target that runs it a million times.
pub fn experiment_meta_from_bytes(
    path: &Path,
    bytes: &[u8],
) -> Result<(ExperimentId, String), Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed(path, "not UTF-8"))?;
    ExperimentMeta::from_yaml(path, text).map(|m| (m.id, m.name))
}

/// A run's meta.yaml.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunMeta {
    pub run_id: RunId,
    pub run_name: String,
    pub experiment_id: ExperimentId,
    pub artifact_uri: String,
    pub user_id: String,
    pub status: Status,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub lifecycle_stage: String,
}

impl RunMeta {
    pub(crate) fn to_yaml(&self) -> String {
        write_mapping(&[
            ("artifact_uri", Out::Str(&self.artifact_uri)),
            ("end_time", self.end_time.map_or(Out::Null, Out::Int)),
            ("entry_point_name", Out::Str("")),
            ("experiment_id", Out::Str(self.experiment_id.as_str())),
            ("lifecycle_stage", Out::Str(&self.lifecycle_stage)),
            ("run_id", Out::Str(self.run_id.as_str())),
            ("run_name", Out::Str(&self.run_name)),
            ("source_name", Out::Str("")),
            ("source_type", Out::Int(4)),
            ("source_version", Out::Str("")),
            ("start_time", Out::Int(self.start_time)),
            ("status", Out::Int(self.status.code())),
            ("tags", Out::EmptyList),
            ("user_id", Out::Str(&self.user_id)),
        ])
    }

    /// Reads a run meta.yaml at `path` (for errors), as MLflow's `_read_persisted_run_info_dict`.
    pub(crate) fn from_yaml(path: &Path, text: &str) -> Result<RunMeta, Error> {
        #[derive(Deserialize)]
        struct Fields {
            run_id: Option<String>,
            run_name: Option<String>,
            experiment_id: Option<String>,
            artifact_uri: Option<String>,
            user_id: Option<String>,
            status: Option<Int>,
            #[serde(default)]
            start_time: Int,
            #[serde(default)]
            end_time: Int,
            lifecycle_stage: Option<String>,
        }
        let f: Fields = read(path, text)?;
        let status = match f.status {
            None => Status::Running,
            Some(Int(code)) => code
                .and_then(Status::from_code)
                .ok_or_else(|| malformed(path, "invalid status"))?,
        };
        Ok(RunMeta {
            run_id: RunId::parse(&required(path, f.run_id, "run_id")?)
                .ok_or_else(|| malformed(path, "invalid run_id"))?,
            run_name: f.run_name.unwrap_or_default(),
            experiment_id: ExperimentId::parse(&required(path, f.experiment_id, "experiment_id")?)
                .ok_or_else(|| malformed(path, "invalid experiment_id"))?,
            artifact_uri: required(path, f.artifact_uri, "artifact_uri")?,
            user_id: required(path, f.user_id, "user_id")?,
            status,
            start_time: f
                .start_time
                .0
                .ok_or_else(|| malformed(path, "missing start_time"))?,
            end_time: f.end_time.0,
            lifecycle_stage: f.lifecycle_stage.unwrap_or_else(|| ACTIVE.to_owned()),
        })
    }
}

fn malformed(path: &Path, reason: &str) -> Error {
    Error::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The fields `T` names from the meta.yaml `text` read from `path`.
fn read<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, Error> {
    yaml::read(text).map_err(|reason| Error::Malformed {
        path: path.to_owned(),
        reason,
    })
}

fn required(path: &Path, value: Option<String>, key: &str) -> Result<String, Error> {
    value.ok_or_else(|| malformed(path, &format!("missing {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(yaml: &str) -> Vec<&str> {
        yaml.lines()
            .map(|l| l.split_once(": ").unwrap().0)
            .collect()
    }

    #[test]
    fn experiment_meta_has_mlflow_keys_and_round_trips() {
        let meta = ExperimentMeta {
            id: ExperimentId::parse("944815924143380914").unwrap(),
            name: "ref exp: #x \"d\" é".into(),
            artifact_location: "file:///tmp/ref/mlruns/944815924143380914".into(),
            lifecycle_stage: ACTIVE.into(),
            creation_time: Some(1795558091039),
            last_update_time: Some(1795558091039),
        };
        let yaml = meta.to_yaml();
        // The key set of `dict(Experiment)` minus tags, MLflow 3.17.2 (sorted, as PyYAML).
        assert_eq!(
            keys(&yaml),
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
        assert!(
            yaml.contains("experiment_id: \"944815924143380914\"\n"),
            "{yaml}"
        );
        assert!(yaml.contains("creation_time: 1795558091039\n"));
        assert!(yaml.contains("lifecycle_stage: \"active\"\n"));
        assert_eq!(
            ExperimentMeta::from_yaml(Path::new("m"), &yaml).unwrap(),
            meta
        );
    }

    #[test]
    fn reads_experiment_meta_written_by_mlflow() {
        // Verbatim from a store MLflow 3.17.2 created.
        let text = "artifact_location: file:///tmp/ref/mlruns/944815924143380914\n\
                    creation_time: 1795558091039\neffective_trace_archival_retention: null\n\
                    experiment_id: '944815924143380914'\nlast_update_time: 1795558091039\n\
                    lifecycle_stage: active\nname: 'ref exp: #x \"d\" é'\ntrace_location: null\n\
                    workspace: default\n";
        let m = ExperimentMeta::from_yaml(Path::new("m"), text).unwrap();
        assert_eq!(m.id.as_str(), "944815924143380914");
        assert_eq!(m.name, "ref exp: #x \"d\" é");
        assert_eq!(m.lifecycle_stage, "active");
        assert_eq!(m.creation_time, Some(1795558091039));
        // MLflow 1.x wrote ints and no lifecycle_stage.
        let old = "artifact_location: /tmp/mlruns/3\nexperiment_id: 3\nname: old\n";
        let m = ExperimentMeta::from_yaml(Path::new("m"), old).unwrap();
        assert_eq!((m.id.as_str(), m.lifecycle_stage.as_str()), ("3", "active"));
        let err = ExperimentMeta::from_yaml(Path::new("/s/7/meta.yaml"), "name: x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed /s/7/meta.yaml: missing experiment_id"
        );
    }

    #[test]
    fn run_meta_has_mlflow_keys_and_round_trips() {
        let meta = RunMeta {
            run_id: RunId::parse("2c4dce0a77bf47858ebfb5a29e2c2f44").unwrap(),
            run_name: "parent".into(),
            experiment_id: ExperimentId::default_experiment(),
            artifact_uri: "file:///tmp/ref/mlruns/0/2c4dce0a77bf47858ebfb5a29e2c2f44/artifacts"
                .into(),
            user_id: "root".into(),
            status: Status::Running,
            start_time: 1795558091109,
            end_time: None,
            lifecycle_stage: ACTIVE.into(),
        };
        let yaml = meta.to_yaml();
        // The key set of `_make_persisted_run_info_dict`, MLflow 3.17.2.
        assert_eq!(
            keys(&yaml),
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
        assert!(yaml.contains("end_time: null\n"));
        assert!(yaml.contains("status: 1\n"));
        assert!(yaml.contains("source_type: 4\n"));
        assert!(yaml.contains("tags: []\n"));
        assert_eq!(RunMeta::from_yaml(Path::new("m"), &yaml).unwrap(), meta);
        let ended = RunMeta {
            status: Status::Failed,
            end_time: Some(1795558091138),
            ..meta
        };
        let yaml = ended.to_yaml();
        assert!(yaml.contains("status: 4\n") && yaml.contains("end_time: 1795558091138\n"));
        assert_eq!(RunMeta::from_yaml(Path::new("m"), &yaml).unwrap(), ended);
    }
}
