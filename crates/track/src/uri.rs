//! `file://` URIs for artifact locations, encoded and decoded the way MLflow does.
//!
//! An experiment's meta.yaml holds `artifact_location` and a run's holds `artifact_uri`; MLflow
//! makes them with `pathlib.Path(abspath).as_uri()` (percent-encoding every byte except
//! ASCII letters, digits, `_.-~` and `/`) and turns them back into paths with `urlparse` +
//! `url2pathname`. MLflow also accepts a bare absolute path there, and other schemes
//! (`s3://`, `mlflow-artifacts:`) that this crate cannot write to. (POSIX paths only.)

use std::path::{Path, PathBuf};

/// `pathlib.PurePosixPath(path).as_uri()` for an absolute UTF-8 path.
pub(crate) fn path_to_file_uri(path: &Path) -> Option<String> {
    let s = path.to_str()?;
    if !s.starts_with('/') {
        return None;
    }
    let mut uri = String::from("file://");
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    Some(uri)
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
        percent_decode(rest)?
    } else if location.starts_with('/') {
        location.to_owned()
    } else {
        return None;
    };
    path.starts_with('/').then(|| PathBuf::from(path))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
