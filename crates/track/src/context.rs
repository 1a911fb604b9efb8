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

/// The login name, looked up as Python's `getpass.getuser()` does: the environment (`LOGNAME`,
/// `USER`, `LNAME`, `USERNAME`), then the password database entry of the process's user id
/// (read from `/proc/self/status` and `/etc/passwd`, so on Linux), else "unknown" (MLflow's
/// fallback user id).
pub(crate) fn current_user() -> String {
    user_from(
        |k| std::env::var(k).ok(),
        |path| std::fs::read_to_string(path).ok(),
    )
}

fn user_from(
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> Option<String>,
) -> String {
    ["LOGNAME", "USER", "LNAME", "USERNAME"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.is_empty()))
        .or_else(|| passwd_name(&read("/proc/self/status")?, &read("/etc/passwd")?))
        .unwrap_or_else(|| "unknown".into())
}

/// The name in `passwd` of the real uid in `status` (`Uid:\t<real>\t<effective>...`).
fn passwd_name(status: &str, passwd: &str) -> Option<String> {
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid && !name.is_empty()).then(|| name.to_owned())
    })
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
        let files = |status: &'static str, passwd: &'static str| {
            move |p: &str| match p {
                "/proc/self/status" => Some(status.to_owned()),
                "/etc/passwd" => Some(passwd.to_owned()),
                _ => None,
            }
        };
        let passwd = "root:x:0:0:root:/root:/bin/bash\nci:x:1001:1001::/home/ci:/bin/sh\n";
        let status = "Name:\tx\nUid:\t1001\t1001\t1001\t1001\nGid:\t0\n";
        let none = |_: &str| None;
        assert_eq!(
            user_from(env(&[("USER", "u"), ("LOGNAME", "l")]), none),
            "l"
        );
        assert_eq!(user_from(env(&[("USER", "u"), ("LOGNAME", "")]), none), "u");
        assert_eq!(
            user_from(env(&[("USERNAME", "w")]), files(status, passwd)),
            "w"
        );
        assert_eq!(user_from(env(&[]), files(status, passwd)), "ci");
        assert_eq!(
            user_from(env(&[]), files("Uid:\t7\t7\n", passwd)),
            "unknown"
        );
        assert_eq!(user_from(env(&[]), none), "unknown");
    }

    #[test]
    fn user_without_environment_matches_python_getpass_here() {
        // With no variables set, this machine's answer comes from /etc/passwd, as Python's.
        let name = user_from(|_| None, |p| std::fs::read_to_string(p).ok());
        if std::path::Path::new("/proc/self/status").exists() {
            assert_ne!(name, "unknown");
        }
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
