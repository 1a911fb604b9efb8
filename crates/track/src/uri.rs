//! `file://` URIs for artifact locations, encoded and decoded the way MLflow does.
//!
//! An experiment's meta.yaml holds `artifact_location` and a run's holds `artifact_uri`; MLflow
//! makes them with `pathlib.Path(abspath).as_uri()` (percent-encoding every byte except
//! ASCII letters, digits, `_.-~` and `/`) and turns them back into paths with `urlparse` +
//! `url2pathname`. MLflow also accepts a bare absolute path there, and other schemes
//! (`s3://`, `mlflow-artifacts:`) that this crate cannot write to. (POSIX paths only.)
//!
//! The escaping is `percent-encoding`'s; the `url` crate is not used because its file URLs
//! leave more characters unescaped than Python does (`Url::from_file_path("/a b(1)")` keeps
//! the parentheses) and it reads forms such as `file:relative` that MLflow does not take as a
//! local path.

use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What `urllib.parse.quote(path, safe="/")` leaves alone: ASCII letters and digits, `_.-~`
/// and `/`; every other byte is escaped (uppercase hex, as Python writes it).
const PATH_UNESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// `pathlib.PurePosixPath(path).as_uri()` for an absolute UTF-8 path.
pub(crate) fn path_to_file_uri(path: &Path) -> Option<String> {
    let s = path.to_str()?;
    if !s.starts_with('/') {
        return None;
    }
    Some(format!("file://{}", utf8_percent_encode(s, PATH_UNESCAPED)))
}

/// The local directory an artifact location names, or `None` when it is not local
/// (another scheme, a relative path, a query or fragment, or percent-escapes that are not
/// UTF-8).
pub(crate) fn local_path(location: &str) -> Option<PathBuf> {
    let path = if let Some(rest) = location.strip_prefix("file:") {
        // file:///abs, file://host/abs (host ignored on POSIX, as urlparse + url2pathname do),
        // file:/abs.
        let rest = match rest.strip_prefix("//") {
            Some(after) => &after[after.find('/')?..],
            None => rest,
        };
        if rest.contains(['?', '#']) {
            return None;
        }
        // `%` not followed by two hex digits stays as it is, as in `urllib.parse.unquote`.
        percent_decode_str(rest).decode_utf8().ok()?.into_owned()
    } else if location.starts_with('/') {
        location.to_owned()
    } else {
        return None;
    };
    path.starts_with('/').then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_pathlib_as_uri() {
        // Python 3.11: pathlib.PurePosixPath(p).as_uri()
        let cases = [
            ("/tmp/ref/mlruns/0", "file:///tmp/ref/mlruns/0"),
            ("/a b/c%d", "file:///a%20b/c%25d"),
            ("/x/é/日", "file:///x/%C3%A9/%E6%97%A5"),
            (
                "/q?#[]@!$&'()*+,;=:~_.-",
                "file:///q%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A~_.-",
            ),
        ];
        for (path, uri) in cases {
            assert_eq!(path_to_file_uri(Path::new(path)).as_deref(), Some(uri));
            assert_eq!(local_path(uri), Some(PathBuf::from(path)), "{uri}");
        }
        assert_eq!(path_to_file_uri(Path::new("relative/x")), None);
    }

    #[test]
    fn decodes_local_forms_mlflow_accepts() {
        assert_eq!(local_path("/abs/dir"), Some(PathBuf::from("/abs/dir")));
        assert_eq!(local_path("file:/abs/dir"), Some(PathBuf::from("/abs/dir")));
        assert_eq!(
            local_path("file://localhost/abs"),
            Some(PathBuf::from("/abs"))
        );
        assert_eq!(local_path("file:///a%2"), Some(PathBuf::from("/a%2")));
        assert_eq!(local_path("file:///a%zz%"), Some(PathBuf::from("/a%zz%")));
    }

    #[test]
    fn refuses_what_is_not_a_local_directory() {
        for loc in [
            "s3://bucket/x",
            "mlflow-artifacts:/1",
            "relative/dir",
            "file://host",
            "file:relative",
            "file:///a?x=1",
            "file:///%FF",
            "",
        ] {
            assert_eq!(local_path(loc), None, "{loc}");
        }
    }
}
