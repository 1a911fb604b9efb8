//! Experiment and run ids, and how new ones are made.
//!
//! MLflow's file store names each experiment directory after an id matching
//! `^[a-zA-Z0-9][\w\-]{0,63}$` (it makes random 18-digit integers) and each run directory after
//! a run id matching `^[a-zA-Z0-9][\w\-]{0,255}$` (it makes `uuid4().hex`, 32 lowercase hex
//! digits). Ids are newtypes so a run id is never passed where an experiment id is expected.
//!
//! New run ids are random uuid4s (the `uuid` crate, OS randomness). New experiment ids are
//! *derived from the experiment name* (18 digits, like MLflow's): every process that creates
//! the same name tries the same directories in the same order, so creating the directory and
//! publishing its meta.yaml decides the race without any lock (see `experiment.rs`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An MLflow experiment id (the name of its directory in the store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExperimentId(String);

/// An MLflow run id (32 lowercase hex digits for runs made here).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl ExperimentId {
    /// The default experiment every MLflow store has.
    pub fn default_experiment() -> ExperimentId {
        ExperimentId("0".to_owned())
    }

    /// Wraps an existing id, if MLflow would accept it (`^[a-zA-Z0-9][\w\-]{0,63}$`).
    pub fn parse(s: &str) -> Option<ExperimentId> {
        valid_id(s, 64).then(|| ExperimentId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RunId {
    /// Wraps an existing id, if MLflow would accept it (`^[a-zA-Z0-9][\w\-]{0,255}$`).
    pub fn parse(s: &str) -> Option<RunId> {
        valid_id(s, 256).then(|| RunId(s.to_owned()))
    }

    /// A fresh random id in `uuid.uuid4().hex` form. Not for cryptography: the run directory
    /// is created with `create_dir`, which fails on a (practically impossible) collision, and
    /// the caller then draws again.
    pub(crate) fn random() -> RunId {
        RunId(Uuid::new_v4().simple().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// MLflow's id regexes, ASCII form: first char alphanumeric, the rest `\w` or `-`.
/// (Python's `\w` also admits non-ASCII letters; ids made here never contain them.)
fn valid_id(s: &str, max_len: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max_len
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The `attempt`-th candidate id for a new experiment called `name`: 18 decimal digits with no
/// leading zero (the shape MLflow's `_generate_unique_integer_id` gives), a pure function of
/// `(name, attempt)` so that concurrent creators agree on it.
///
/// Why FNV-1a (servo's `fnv`, a fixed algorithm) and not `std`'s hasher: its values are pinned (test
/// `experiment_candidate_values_do_not_drift_between_versions`), because processes built from
/// different versions of this crate must aim at the same directories for one name, or two of
/// them racing would make two experiments. `std`'s hashers may change between Rust releases,
/// and switching to uuid5 would change every candidate.
pub(crate) fn experiment_id_candidate(name: &str, attempt: u32) -> ExperimentId {
    // FNV-1a over the bytes, then the splitmix64 finalizer to spread the bits.
    use std::hash::Hasher;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(b"quantlab-track\0");
    fnv.write(name.as_bytes());
    fnv.write(&attempt.to_le_bytes());
    let mut h = fnv.finish();
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    const LOW: u64 = 100_000_000_000_000_000; // 10^17: smallest 18-digit number
    ExperimentId((LOW + h % (9 * LOW)).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn random_run_ids_are_uuid4_hex_and_distinct() {
        let ids: HashSet<String> = (0..1000).map(|_| RunId::random().0).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
            assert_eq!(&id[12..13], "4", "version nibble in {id}");
            assert!(
                matches!(&id[16..17], "8" | "9" | "a" | "b"),
                "variant in {id}"
            );
            assert!(RunId::parse(id).is_some());
        }
    }

    #[test]
    fn experiment_candidates_are_18_digits_stable_and_distinct() {
        let a0 = experiment_id_candidate("mnist/mlp", 0);
        assert_eq!(a0, experiment_id_candidate("mnist/mlp", 0), "deterministic");
        assert_ne!(a0, experiment_id_candidate("mnist/mlp", 1));
        assert_ne!(a0, experiment_id_candidate("mnist/mlp ", 0));
        let seen: HashSet<_> = (0..200)
            .map(|i| experiment_id_candidate(&format!("e{i}"), 0))
            .collect();
        assert_eq!(seen.len(), 200);
        for id in seen {
            assert_eq!(id.as_str().len(), 18, "{id}");
            assert!(!id.as_str().starts_with('0'));
            assert!(ExperimentId::parse(id.as_str()).is_some());
        }
    }

    #[test]
    fn experiment_candidate_values_do_not_drift_between_versions() {
        // Processes built from different versions of this crate must agree on the ids, so the
        // derivation is pinned.
        assert_eq!(
            experiment_id_candidate("quantlab", 0).as_str(),
            "637927233541131954"
        );
        assert_eq!(
            experiment_id_candidate("quantlab", 1).as_str(),
            "867859831800470923"
        );
    }

    #[test]
    fn parse_follows_mlflow_id_regexes() {
        assert!(ExperimentId::parse("0").is_some());
        assert!(ExperimentId::parse("abc-1_2").is_some());
        assert!(ExperimentId::parse("").is_none());
        assert!(ExperimentId::parse("-1").is_none());
        assert!(ExperimentId::parse("_1").is_none());
        assert!(ExperimentId::parse("../x").is_none());
        assert!(ExperimentId::parse("a b").is_none());
        assert!(ExperimentId::parse(&"1".repeat(64)).is_some());
        assert!(ExperimentId::parse(&"1".repeat(65)).is_none());
        assert!(RunId::parse(&"a".repeat(256)).is_some());
        assert!(RunId::parse(&"a".repeat(257)).is_none());
        assert!(RunId::parse("a/b").is_none());
    }
}
