//! Which names and values MLflow accepts, checked before anything is written.
//!
//! MLflow validates metric, param and tag keys not only when logging but also when *reading*
//! the file store (`_get_metric_from_file` calls `_validate_metric_name`), so one bad file name
//! makes the whole run unreadable in the UI and in `search_runs`. Keys are therefore
//! **rejected** with an error rather than sanitised: silently rewriting a key would make
//! `get_metric_history("my key")` miss, and two different keys could be rewritten into one.
//!
//! The rules (`mlflow/utils/validation.py`, POSIX branch):
//! - keys match `^[/\w.\- :]*$`; here `\w` is narrowed to ASCII letters, digits and `_`, so
//!   every accepted key is one that MLflow accepts on every platform's Python (Python's `\w`
//!   also takes non-ASCII letters, whose exact set differs from Rust's `char::is_alphanumeric`);
//! - keys must be their own `posixpath.normpath` and not start with `/` or `..` and not be
//!   `.` (so no empty key, no `a//b`, `a/`, `./a`, `a/../b`), because `/` makes directories;
//! - keys are at most 250 characters (`MAX_ENTITY_KEY_LENGTH`);
//! - param values are at most 6000 characters and tag values at most 8000; longer values are
//!   **truncated**, as MLflow itself does by default (`MLFLOW_TRUNCATE_LONG_VALUES=true`);
//! - experiment names are non-empty, at most 500 characters, and (a rule of this crate) have
//!   no `'`: MLflow's file store looks experiments up by name with the filter
//!   `name = '<name>'`, which a bare quote breaks, so `mlflow.search_runs(experiment_names=..)`
//!   and `get_experiment_by_name` fail for such a name.

use std::path::{Component, Path, PathBuf};

use crate::error::Error;

/// MLflow's `MAX_ENTITY_KEY_LENGTH`.
pub const MAX_KEY_LEN: usize = 250;
/// MLflow's `MAX_PARAM_VAL_LENGTH`.
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
/// MLflow's `MAX_TAG_VAL_LENGTH`.
pub const MAX_TAG_VALUE_LEN: usize = 8000;
/// MLflow's `MAX_EXPERIMENT_NAME_LENGTH`.
pub const MAX_EXPERIMENT_NAME_LEN: usize = 500;

/// Checks a metric, param or tag key; `what` names the kind in the error ("metric key").
pub(crate) fn check_key(what: &'static str, key: &str) -> Result<(), Error> {
    let fail = |reason: &str| {
        Err(Error::InvalidName {
            what,
            name: key.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if let Some(c) = key
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_-./ :".contains(c)))
    {
        return fail(&format!(
            "character {c:?} not allowed; keys may only contain ASCII letters, digits, \
             underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)"
        ));
    }
    let norm = posix_normpath(key);
    if key != norm || norm == "." || norm.starts_with('/') || norm.starts_with("..") {
        return fail(&format!(
            "keys are file paths in the store and must not resolve to another name (this one \
             resolves to {:?})",
            posix_normpath(key)
        ));
    }
    let len = key.chars().count();
    if len > MAX_KEY_LEN {
        return fail(&format!(
            "{len} characters, more than MLflow's limit of {MAX_KEY_LEN}"
        ));
    }
    Ok(())
}

/// Checks an experiment name (see the module docs for the rules).
pub(crate) fn check_experiment_name(name: &str) -> Result<(), Error> {
    let fail = |reason: String| {
        Err(Error::InvalidName {
            what: "experiment name",
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("must not be empty".into());
    }
    let len = name.chars().count();
    if len > MAX_EXPERIMENT_NAME_LEN {
        return fail(format!(
            "{len} characters, more than MLflow's limit of {MAX_EXPERIMENT_NAME_LEN}"
        ));
    }
    if name.contains('\'') {
        return fail(
            "must not contain a single quote: MLflow's file store cannot look such a name up \
             (its filter `name = '...'` breaks)"
                .into(),
        );
    }
    Ok(())
}

/// Cuts `value` to at most `max` characters, as MLflow does for over-long param/tag values.
pub(crate) fn truncate_chars(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((byte, _)) => &value[..byte],
        None => value,
    }
}

/// Checks a relative artifact path (a file name or a sub-directory) and returns it as a path:
/// only plain components, so nothing can land outside the run's artifact directory.
pub(crate) fn artifact_rel_path(what: &'static str, s: &str) -> Result<PathBuf, Error> {
    let p = Path::new(s);
    let plain = !s.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !s.contains('\\');
    if plain {
        Ok(p.to_path_buf())
    } else {
        Err(Error::InvalidName {
            what,
            name: s.to_owned(),
            reason: "must be a relative path of plain names (no '..', '.', leading '/', \
                     backslash or empty path)"
                .into(),
        })
    }
}

/// Python's `posixpath.normpath`.
fn posix_normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    // POSIX allows exactly two leading slashes to mean something else; Python keeps them.
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if initial == 0 && (parts.is_empty() || parts.last() == Some(&"..")) {
                    parts.push("..");
                } else if !parts.is_empty() {
                    parts.pop();
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    let out = format!("{}{}", "/".repeat(initial), joined);
    if out.is_empty() { ".".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_matches_python() {
        // Values from Python 3.11's posixpath.normpath.
        let cases = [
            ("", "."),
            (".", "."),
            ("a", "a"),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/a/../..", "/"),
            ("//a", "//a"),
            ("///a", "/a"),
            ("a b/c:d", "a b/c:d"),
        ];
        for (input, want) in cases {
            assert_eq!(posix_normpath(input), want, "normpath({input:?})");
        }
    }

    #[test]
    fn keys_mlflow_accepts_are_accepted() {
        for key in [
            "loss",
            "val/loss",
            "train/acc top-1",
            "lr_0.5",
            "a:b",
            "x.y.z",
            "a..b",
            "a...",
            &"k".repeat(250),
        ] {
            check_key("metric key", key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        }
    }

    #[test]
    fn keys_mlflow_rejects_are_rejected_with_the_reason() {
        for (key, needle) in [
            ("", "resolve"),
            (".", "resolve"),
            ("a/", "resolve"),
            ("a//b", "resolve"),
            ("./a", "resolve"),
            ("a/../b", "resolve"),
            ("..", "resolve"),
            ("..a", "resolve"),
            ("...a", "resolve"),
            ("/abs", "resolve"),
            ("a\nb", "character '\\n'"),
            ("a,b", "character ','"),
            ("naïve", "character 'ï'"),
            ("a\\b", "character '\\\\'"),
        ] {
            let err = check_key("tag key", key).expect_err(key).to_string();
            assert!(err.starts_with("invalid tag key "), "{err}");
            assert!(err.contains(needle), "{key:?}: {err}");
        }
        let long = "k".repeat(251);
        let err = check_key("param key", &long).unwrap_err().to_string();
        assert!(err.contains("251 characters"), "{err}");
    }

    #[test]
    fn experiment_names() {
        check_experiment_name("mnist/mlp: run \"7\" é").unwrap();
        check_experiment_name(&"é".repeat(500)).unwrap();
        assert!(check_experiment_name("").is_err());
        assert!(check_experiment_name(&"x".repeat(501)).is_err());
        let err = check_experiment_name("bob's").unwrap_err().to_string();
        assert!(err.contains("single quote"), "{err}");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate_chars("abc", 5), "abc");
        assert_eq!(truncate_chars("abcdef", 3), "abc");
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("", 0), "");
    }

    #[test]
    fn artifact_paths_stay_inside() {
        assert_eq!(
            artifact_rel_path("artifact name", "a/b.json").unwrap(),
            PathBuf::from("a/b.json")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a\\b"] {
            assert!(artifact_rel_path("artifact name", bad).is_err(), "{bad:?}");
        }
    }
}
