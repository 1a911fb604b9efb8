//! What MLflow's default run context records about the process: time, user, source.
//!
//! MLflow's Python client fills these in for every run (`DefaultRunContext`): the tags
//! `mlflow.user` (`getpass.getuser()`), `mlflow.source.name` (the main script,
//! `sys.argv[0]`) and `mlflow.source.type` (`LOCAL`), and the run's `user_id` comes from the
//! `mlflow.user` tag. The UI shows them in the runs table, so runs written here set the same.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as MLflow's `get_current_time_millis`.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The login name, looked up as Python's `getpass.getuser()` does from the environment
/// (`LOGNAME`, `USER`, `LNAME`, `USERNAME`), else "unknown" (MLflow's fallback user id).
pub(crate) fn current_user() -> String {
    user_from(|k| std::env::var(k).ok())
}

fn user_from(get: impl Fn(&str) -> Option<String>) -> String {
    ["LOGNAME", "USER", "LNAME", "USERNAME"]
        .iter()
        .find_map(|k| get(k).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// The program as it was invoked (`argv[0]`), MLflow's `mlflow.source.name` for a script.
pub(crate) fn source_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_follows_getpass_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(user_from(env(&[("USER", "u"), ("LOGNAME", "l")])), "l");
        assert_eq!(user_from(env(&[("USER", "u"), ("LOGNAME", "")])), "u");
        assert_eq!(user_from(env(&[("USERNAME", "w")])), "w");
        assert_eq!(user_from(env(&[])), "unknown");
    }

    #[test]
    fn clock_is_in_milliseconds() {
        let t = now_millis();
        // After 2020-01-01 and before 2200-01-01, in ms.
        assert!(t > 1_577_836_800_000 && t < 7_258_118_400_000, "{t}");
    }

    #[test]
    fn source_name_is_the_test_binary() {
        assert!(
            source_name().contains("quantlab_track"),
            "{}",
            source_name()
        );
    }
}
