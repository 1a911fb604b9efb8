//! Run status, as MLflow stores it.
//!
//! MLflow's `RunInfo.status` is a string ("FINISHED") everywhere in its API, but the file
//! store writes the protobuf enum's integer into meta.yaml (`status: 3`) and converts back
//! when reading (`_make_persisted_run_info_dict` / `_read_persisted_run_info_dict` in
//! `mlflow/store/tracking/file_store.py`). Both forms live here so neither is guessed at.

use serde::{Deserialize, Serialize};

/// The state of a run (MLflow's `RunStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Started and not yet ended.
    Running,
    /// Queued but not started (MLflow Projects use it; listed for completeness).
    Scheduled,
    /// Ended normally.
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped from outside.
    Killed,
}

impl Status {
    /// The integer written to meta.yaml (`mlflow.protos.service_pb2.RunStatus`).
    pub fn code(self) -> i64 {
        match self {
            Status::Running => 1,
            Status::Scheduled => 2,
            Status::Finished => 3,
            Status::Failed => 4,
            Status::Killed => 5,
        }
    }

    /// The status for a meta.yaml integer, if it is one MLflow defines.
    pub fn from_code(code: i64) -> Option<Status> {
        Some(match code {
            1 => Status::Running,
            2 => Status::Scheduled,
            3 => Status::Finished,
            4 => Status::Failed,
            5 => Status::Killed,
            _ => return None,
        })
    }

    /// The string MLflow's API and UI use ("RUNNING", "FINISHED", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Scheduled => "SCHEDULED",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Killed => "KILLED",
        }
    }

    /// Whether the run has ended (FINISHED, FAILED or KILLED).
    pub fn is_terminated(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Killed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 5] = [
        Status::Running,
        Status::Scheduled,
        Status::Finished,
        Status::Failed,
        Status::Killed,
    ];

    #[test]
    fn codes_match_mlflow_protobuf_enum() {
        // service.proto: RUNNING = 1; SCHEDULED = 2; FINISHED = 3; FAILED = 4; KILLED = 5;
        let codes: Vec<i64> = ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5]);
        for s in ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(Status::from_code(0), None);
        assert_eq!(Status::from_code(6), None);
    }

    #[test]
    fn strings_and_serde_match_mlflow_names() {
        for s in ALL {
            let json = format!("\"{}\"", s.as_str());
            assert_eq!(serde_json::to_string(&s).unwrap(), json);
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        }
        assert!(Status::Failed.is_terminated());
        assert!(!Status::Running.is_terminated());
    }
}
