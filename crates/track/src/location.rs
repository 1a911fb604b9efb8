//! Where the store is: `--mlflow-dir DIR`, else `QUANTLAB_MLFLOW_DIR`, else `./mlruns`.
//!
//! `./mlruns` is where MLflow itself looks by default (`mlflow ui` in the same directory finds
//! it), so the default needs no configuration; the variable lets CI or a shared machine point
//! every quantlab command at one store without repeating the flag.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::uri;

/// The environment variable naming the store directory.
pub const ENV_VAR: &str = "QUANTLAB_MLFLOW_DIR";

/// The store directory when neither the flag nor the variable is given (relative to the
/// current directory, like MLflow's default).
pub const DEFAULT_DIR: &str = "mlruns";

/// The store directory: `cli` (the `--mlflow-dir` value) if given, else `$QUANTLAB_MLFLOW_DIR`
/// if set and non-empty, else `mlruns`. A `file://` URI is accepted for either, as MLflow
/// tracking URIs are often written that way.
pub fn resolve_store_dir(cli: Option<PathBuf>) -> PathBuf {
    resolve_store_dir_from(cli, std::env::var_os(ENV_VAR))
}

/// [`resolve_store_dir`] with the environment value passed in.
pub fn resolve_store_dir_from(cli: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    cli.filter(|p| !p.as_os_str().is_empty())
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .map_or_else(|| PathBuf::from(DEFAULT_DIR), strip_file_scheme)
}

fn strip_file_scheme(p: PathBuf) -> PathBuf {
    match p.to_str() {
        Some(s) if s.starts_with("file:") => uri::local_path(s).unwrap_or(p),
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_env_beats_default() {
        let flag = Some(PathBuf::from("/flag"));
        let env = Some(OsString::from("/env"));
        assert_eq!(
            resolve_store_dir_from(flag.clone(), env.clone()),
            PathBuf::from("/flag")
        );
        assert_eq!(resolve_store_dir_from(None, env), PathBuf::from("/env"));
        assert_eq!(resolve_store_dir_from(None, None), PathBuf::from("mlruns"));
        assert_eq!(
            resolve_store_dir_from(None, Some(OsString::new())),
            PathBuf::from("mlruns"),
            "empty variable counts as unset"
        );
        assert_eq!(
            resolve_store_dir_from(Some(PathBuf::new()), Some("/env".into())),
            PathBuf::from("/env"),
            "empty flag counts as not given"
        );
        // The flag wins whatever the real environment holds.
        assert_eq!(resolve_store_dir(flag), PathBuf::from("/flag"));
    }

    #[test]
    fn file_uris_become_paths() {
        assert_eq!(
            resolve_store_dir_from(Some("file:///srv/ml%20runs".into()), None),
            PathBuf::from("/srv/ml runs")
        );
        assert_eq!(
            resolve_store_dir_from(None, Some("file:/x/mlruns".into())),
            PathBuf::from("/x/mlruns")
        );
        assert_eq!(
            resolve_store_dir_from(Some("rel/dir".into()), None),
            PathBuf::from("rel/dir")
        );
    }
}
