//! Finding an experiment by name, or creating it, safely when several processes do it at once.
//!
//! MLflow's own `create_experiment` checks the name and then writes a random id: two
//! processes racing on one name get two experiments of that name. Here the id of a new
//! experiment is derived from its name (`ids::experiment_id_candidate`), so racing creators
//! of one name all aim at the same directory; `create_dir` plus a publish-if-absent of its
//! meta.yaml (`fsio::publish_new`) lets exactly one write it, and the others read it back and
//! use it. If a candidate directory belongs to another name (a hash collision) or to a
//! deleted experiment, every creator moves on to the next candidate in the same order.
//!
//! The rule, precisely: among processes using this crate, one name maps to at most one active
//! experiment. An experiment of that name made by MLflow itself (random id) is found and used
//! if it exists before the lookup; MLflow creating the same name *during* the lookup can still
//! produce a duplicate, as it can between two MLflow clients.

use std::fs;
use std::path::Path;

use crate::error::Error;
use crate::fsio::{self, Published};
use crate::ids::{ExperimentId, experiment_id_candidate};
use crate::meta::{ACTIVE, ExperimentMeta};
use crate::store::{Store, TRASH};
use crate::validate::check_experiment_name;

/// How many derived ids are tried before giving up (each is taken by another name only on a
/// 1-in-10^17 hash collision).
const CANDIDATES: u32 = 64;

impl Store {
    /// The id of the active experiment called `name`, creating it if there is none.
    ///
    /// Safe to call from many threads and processes at once: they all get the same id and the
    /// store ends up with one experiment of that name (see the module docs for the exact
    /// rule). If several active experiments already share the name (MLflow allows that to
    /// happen), the newest is used, as MLflow's `get_experiment_by_name` does. A name that
    /// exists only as a deleted experiment is an error, as in MLflow.
    pub fn experiment(&self, name: &str) -> Result<ExperimentId, Error> {
        check_experiment_name(name)?;
        if let Some(id) = self.find_experiment(name)? {
            return Ok(id);
        }
        self.create_experiment(name)
    }

    /// The id of the active experiment called `name`, if there is one.
    pub fn find_experiment(&self, name: &str) -> Result<Option<ExperimentId>, Error> {
        let mut active: Vec<ExperimentMeta> = Vec::new();
        for meta in self.scan(self.root())? {
            if meta.name == name && meta.lifecycle_stage == ACTIVE {
                active.push(meta);
            }
        }
        // MLflow: order by creation_time DESC, experiment_id ASC; take the first.
        active.sort_by(|a, b| {
            b.creation_time
                .cmp(&a.creation_time)
                .then_with(|| a.id.cmp(&b.id))
        });
        if let Some(meta) = active.into_iter().next() {
            return Ok(Some(meta.id));
        }
        let trash = self.root().join(TRASH);
        if let Some(meta) = self.scan(&trash)?.into_iter().find(|m| m.name == name) {
            return Err(Error::ExperimentDeleted {
                name: name.to_owned(),
                path: trash.join(meta.id.as_str()),
                id: meta.id.to_string(),
            });
        }
        Ok(None)
    }

    /// The experiments under `parent` (the root or `.trash`) whose meta.yaml can be read;
    /// others are skipped, as MLflow skips malformed experiments.
    fn scan(&self, parent: &Path) -> Result<Vec<ExperimentMeta>, Error> {
        let entries = match fs::read_dir(parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list directory", parent)(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("list directory", parent))?;
            let Ok(dir_name) = entry.file_name().into_string() else {
                continue;
            };
            // MLflow's model registry lives in `models`; `.trash` is not an experiment.
            if dir_name == "models" || dir_name == TRASH || !entry.path().is_dir() {
                continue;
            }
            let Some(id) = ExperimentId::parse(&dir_name) else {
                continue;
            };
            // MLflow ignores an experiment whose meta.yaml names another id.
            if let Ok(Some(meta)) = self.read_experiment_meta(&entry.path())
                && meta.id == id
            {
                found.push(meta);
            }
        }
        Ok(found)
    }

    fn create_experiment(&self, name: &str) -> Result<ExperimentId, Error> {
        for attempt in 0..CANDIDATES {
            let id = experiment_id_candidate(name, attempt);
            if self.root().join(TRASH).join(id.as_str()).exists() {
                continue;
            }
            let dir = self.experiment_dir(&id);
            fsio::create_dir_new(&dir)?;
            match self.publish_experiment_meta(&id, name)? {
                Published::Created => return Ok(id),
                Published::Existed => {
                    // Another process won this id: ours if it has our name.
                    if let Ok(Some(meta)) = self.read_experiment_meta(&dir)
                        && meta.name == name
                        && meta.lifecycle_stage == ACTIVE
                        && meta.id == id
                    {
                        return Ok(id);
                    }
                }
            }
        }
        Err(Error::Malformed {
            path: self.root().to_path_buf(),
            reason: format!(
                "all {CANDIDATES} candidate ids for experiment {name:?} are taken by other \
                 experiments"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn get_or_create_returns_the_same_id() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let a = store.experiment("mnist/mlp").unwrap();
        let b = store.experiment("mnist/mlp").unwrap();
        let c = store.experiment("digits/mlp").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, experiment_id_candidate("mnist/mlp", 0));
        assert_eq!(store.find_experiment("nope").unwrap(), None);
        assert_eq!(store.experiment("Default").unwrap().as_str(), "0");
    }

    #[test]
    fn racing_creators_that_all_missed_the_lookup_agree_on_one_experiment() {
        // The worst interleaving: every process scanned, found nothing, and creates.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        Store::open(&root).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (root, barrier) = (root.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let store = Store {
                        root: fs::canonicalize(&root).unwrap(),
                    };
                    barrier.wait();
                    store.create_experiment("race").unwrap()
                })
            })
            .collect();
        let ids: Vec<ExperimentId> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        let store = Store::open(&root).unwrap();
        assert_eq!(names_in(&store), [".trash", "0", ids[0].as_str()]);
        assert_eq!(store.find_experiment("race").unwrap(), Some(ids[0].clone()));
    }

    #[test]
    fn uses_an_experiment_mlflow_created_with_a_random_id() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let dir = tmp.path().join("944815924143380914");
        fs::create_dir(&dir).unwrap();
        fs::write(
            dir.join("meta.yaml"),
            "artifact_location: file:///x/944815924143380914\ncreation_time: 1\n\
             experiment_id: '944815924143380914'\nlifecycle_stage: active\nname: 'sp ace: #x'\n",
        )
        .unwrap();
        assert_eq!(
            store.experiment("sp ace: #x").unwrap().as_str(),
            "944815924143380914"
        );
    }

    #[test]
    fn newest_of_duplicate_names_wins_like_mlflow() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        for (id, time) in [("11", 5), ("22", 9), ("33", 9)] {
            let dir = tmp.path().join(id);
            fs::create_dir(&dir).unwrap();
            fs::write(
                dir.join("meta.yaml"),
                format!("artifact_location: /x\ncreation_time: {time}\nexperiment_id: '{id}'\nname: dup\n"),
            )
            .unwrap();
        }
        assert_eq!(store.experiment("dup").unwrap().as_str(), "22");
    }

    #[test]
    fn a_deleted_experiment_of_that_name_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let dir = tmp.path().join(".trash/42");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("meta.yaml"),
            "artifact_location: /x\nexperiment_id: '42'\nlifecycle_stage: deleted\nname: gone\n",
        )
        .unwrap();
        let err = store.experiment("gone").unwrap_err().to_string();
        assert!(
            err.contains("deleted") && err.contains(".trash/42"),
            "{err}"
        );
    }

    #[test]
    fn candidates_taken_by_other_names_or_the_trash_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let name = "collide";
        // Candidate 0: another experiment's directory. Candidate 1: in .trash.
        let c0 = experiment_id_candidate(name, 0);
        let c1 = experiment_id_candidate(name, 1);
        fs::create_dir(store.experiment_dir(&c0)).unwrap();
        store.publish_experiment_meta(&c0, "someone else").unwrap();
        fs::create_dir_all(tmp.path().join(".trash").join(c1.as_str())).unwrap();
        let id = store.experiment(name).unwrap();
        assert_eq!(id, experiment_id_candidate(name, 2));
        assert_eq!(store.experiment("someone else").unwrap(), c0);
        assert_eq!(store.experiment(name).unwrap(), id);
    }

    #[test]
    fn a_directory_left_by_a_crashed_creator_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let c0 = experiment_id_candidate("half", 0);
        fs::create_dir(store.experiment_dir(&c0)).unwrap(); // no meta.yaml: a creator died here
        assert_eq!(store.experiment("half").unwrap(), c0);
        assert!(store.experiment_dir(&c0).join("meta.yaml").is_file());
    }

    #[test]
    fn bad_names_are_refused_before_touching_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert!(store.experiment("").is_err());
        assert!(store.experiment("it's").is_err());
        assert_eq!(names_in(&store), [".trash", "0"]);
    }

    #[test]
    fn malformed_experiments_are_skipped_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::create_dir(tmp.path().join("9")).unwrap();
        fs::write(tmp.path().join("9/meta.yaml"), "name: 'unterminated\n").unwrap();
        fs::create_dir(tmp.path().join("models")).unwrap();
        fs::write(tmp.path().join("stray-file"), "x").unwrap();
        let id = store.experiment("fine").unwrap();
        assert_eq!(store.find_experiment("fine").unwrap(), Some(id));
    }
}
