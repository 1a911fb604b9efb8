//! The one skip rule (see the crate doc). Tests decide what counts as "missing" only from a
//! specific condition (no adapter, `find_spec` finds no module, no folder), never from any
//! error: a shader that fails to compile or a script that crashes is a failure, not a skip.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A resource a test needs and this machine lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is missing, as a user would install it ("wgpu adapter", "Python module onnxruntime").
    pub resource: String,
    /// How it was looked for, and what answered.
    pub detail: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} missing ({})", self.resource, self.detail)
    }
}

impl Missing {
    /// No wgpu adapter: `detail` is what wgpu (or the GPU crate) answered.
    pub fn gpu(detail: impl fmt::Display) -> Self {
        Missing {
            resource: "wgpu adapter".into(),
            detail: format!(
                "{detail}; Debian's mesa-vulkan-drivers gives a software one, .ci/run installs it"
            ),
        }
    }
}

/// True when running under CI (`CI` set to anything but empty, `0` or `false`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Applies the rule to `test` lacking `what`: prints `SKIPPED <test>: <what>` on one line,
/// or panics naming it under CI. Callers return right after.
pub fn missing(test: &str, what: &Missing) {
    assert!(
        !ci(),
        "{test}: {what}; CI must provide it (.ci/run installs it)"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` and shows it
    // only for failing tests, and a skip must be seen in a passing run.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what}");
}

/// The Python interpreter the tests use: `QUANTLAB_PYTHON` (what `.ci/run` exports), else
/// `python3`.
pub fn python() -> PathBuf {
    std::env::var_os("QUANTLAB_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// Exit status of the module probe when a module is not installed.
const NOT_INSTALLED: i32 = 3;

/// The interpreter when it can import every module of `modules`; otherwise the rule is
/// applied for `test` and `None` returned. Only "no interpreter" and "module not installed"
/// (`importlib.util.find_spec` finds nothing) count as missing; a probe that fails in any
/// other way panics.
pub fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    match probe_python(&python(), modules) {
        Ok(py) => Some(py),
        Err(m) => {
            missing(test, &m);
            None
        }
    }
}

/// [`python_with`] without the rule: `Err` says what is missing.
pub fn probe_python(py: &Path, modules: &[&str]) -> Result<PathBuf, Missing> {
    let script = format!(
        "import importlib.util, sys\n\
         gone = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n\
         print(' '.join(gone))\n\
         sys.exit({NOT_INSTALLED} if gone else 0)"
    );
    let out = match Command::new(py)
        .arg("-c")
        .arg(script)
        .args(modules)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Missing {
                resource: "Python interpreter".into(),
                detail: format!(
                    "{} not found; set QUANTLAB_PYTHON or run .ci/run, which makes a venv",
                    py.display()
                ),
            });
        }
        Err(e) => panic!("running {}: {e}", py.display()),
    };
    match out.status.code() {
        Some(0) => Ok(py.to_path_buf()),
        Some(NOT_INSTALLED) => {
            let gone = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Err(Missing {
                resource: format!("Python module {gone}"),
                detail: format!(
                    "not installed for {}; set QUANTLAB_PYTHON to a python that has it, or run .ci/run",
                    py.display()
                ),
            })
        }
        _ => panic!(
            "probing {} for {modules:?} failed: {}",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Where `../shared/data` would be beside the clone (the verified copies CI and developers
/// have); the one place a test names it. It may not exist: a fresh clone has none.
pub fn shared_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// [`shared_data_dir`] when it exists; otherwise the rule is applied for `test`.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    existing_dir(
        test,
        &[shared_data_dir()],
        "the shared data folder ../shared/data",
    )
}

/// The first folder of `candidates` that exists; otherwise the rule is applied for `test`
/// with `what` as the resource.
pub fn existing_dir(test: &str, candidates: &[PathBuf], what: &str) -> Option<PathBuf> {
    if let Some(d) = candidates.iter().find(|d| d.is_dir()) {
        return Some(d.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    missing(
        test,
        &Missing {
            resource: what.to_string(),
            detail: format!("looked in {}", looked.join(", ")),
        },
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_module_is_missing_and_names_itself() {
        let Ok(py) = probe_python(Path::new("python3"), &[]) else {
            // No python3 at all: what the other branch reports.
            let e = probe_python(Path::new("python3"), &[]).unwrap_err();
            assert_eq!(e.resource, "Python interpreter");
            return;
        };
        let e = probe_python(&py, &["sys", "quantlab_no_such_module_x"]).unwrap_err();
        assert_eq!(e.resource, "Python module quantlab_no_such_module_x");
        assert!(probe_python(&py, &["sys", "json"]).is_ok());
    }

    #[test]
    fn a_missing_interpreter_is_missing() {
        let e = probe_python(Path::new("/nonexistent/quantlab/python"), &["sys"]).unwrap_err();
        assert_eq!(e.resource, "Python interpreter");
        assert!(
            e.to_string().contains("/nonexistent/quantlab/python"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_folder_is_reported_with_where_it_was_looked_for() {
        if ci() {
            // Under CI the rule panics; that branch is what `missing` asserts.
            let r = std::panic::catch_unwind(|| {
                existing_dir(
                    "testkit self-test",
                    &[PathBuf::from("/nonexistent/q")],
                    "a folder",
                )
            });
            assert!(r.is_err());
        } else {
            assert_eq!(
                existing_dir(
                    "testkit self-test",
                    &[PathBuf::from("/nonexistent/q")],
                    "a folder"
                ),
                None
            );
        }
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            existing_dir("t", &[PathBuf::from("/nonexistent/q"), here.clone()], "x"),
            Some(here)
        );
    }
}
