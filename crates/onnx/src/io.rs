//! Writing and reading `.onnx` files, with errors that name the path.
//!
//! [`write()`] never leaves a half-written model behind: it writes a temporary
//! file in the destination folder and renames it into place (a rename within
//! one folder is atomic on the same filesystem). [`read`] tells apart a
//! missing file, an empty one, bytes that are not a protobuf model (truncated
//! or corrupt), and a protobuf that holds no graph.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;

use crate::error::Error;
use crate::proto::ModelProto;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `model` to `path`.
///
/// Fails if the parent folder does not exist ([`Error::ParentMissing`]), or if
/// `path` exists and `overwrite` is false ([`Error::AlreadyExists`]). The
/// existence check and the final rename are two steps: a file created by
/// someone else in between is replaced.
pub fn write(path: impl AsRef<Path>, model: &ModelProto, overwrite: bool) -> Result<(), Error> {
    let path = path.as_ref();
    let file_name = path.file_name().ok_or_else(|| Error::NotAFilePath {
        path: path.to_owned(),
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::ParentMissing {
            path: path.to_owned(),
            parent,
        });
    }
    if !overwrite && path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let temp = parent.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(&temp, &model.encode_to_vec()).and_then(|()| {
        fs::rename(&temp, path).map_err(|source| Error::Io {
            action: "renaming the temporary file into",
            path: path.to_owned(),
            source,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_new(temp: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        action: "writing temporary file",
        path: temp.to_owned(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Reads and decodes the model at `path`, which must hold a graph.
pub fn read(path: impl AsRef<Path>) -> Result<ModelProto, Error> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: path.to_owned(),
        },
        _ => Error::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        },
    })?;
    decode(path, &bytes)
}

/// Decodes model bytes; `path` is only used to name the source in errors.
pub fn decode(path: impl AsRef<Path>, bytes: &[u8]) -> Result<ModelProto, Error> {
    let path = path.as_ref();
    if bytes.is_empty() {
        return Err(Error::EmptyFile {
            path: path.to_owned(),
        });
    }
    let model = ModelProto::decode(bytes).map_err(|source| Error::Decode {
        path: path.to_owned(),
        len: bytes.len(),
        source,
    })?;
    if model.graph.is_none() {
        return Err(Error::NoGraph {
            path: path.to_owned(),
        });
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Attr, GraphBuilder};

    /// A fresh, empty folder under the system temp folder, one per test.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("quantlab-onnx-io-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn model() -> ModelProto {
        let mut g = GraphBuilder::new("g");
        g.batched_input("x", &[4]).batched_output("y", &[4]);
        g.initializer("w", &[4], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        g.node("mul", "Mul", &["x", "w"], &["y"], &[]);
        g.node("r", "Relu", &["y"], &["z"], &[("unused", Attr::Int(0))]);
        g.finish(13, "test")
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = scratch("roundtrip");
        let p = dir.join("m.onnx");
        write(&p, &model(), false).unwrap();
        assert_eq!(read(&p).unwrap(), model());
        assert!(leftovers(&dir).is_empty());
    }

    #[test]
    fn refuses_to_overwrite_unless_asked() {
        let dir = scratch("overwrite");
        let p = dir.join("m.onnx");
        fs::write(&p, b"keep me").unwrap();
        let err = write(&p, &model(), false).unwrap_err();
        assert!(
            matches!(&err, Error::AlreadyExists { path } if path == &p),
            "{err}"
        );
        assert!(err.to_string().contains(&p.display().to_string()));
        assert_eq!(fs::read(&p).unwrap(), b"keep me");
        write(&p, &model(), true).unwrap();
        assert_eq!(read(&p).unwrap(), model());
        assert!(leftovers(&dir).is_empty());
    }

    #[test]
    fn missing_parent_folder_is_named() {
        let dir = scratch("parent");
        let parent = dir.join("no-such-folder");
        let p = parent.join("m.onnx");
        let err = write(&p, &model(), false).unwrap_err();
        assert!(
            matches!(&err, Error::ParentMissing { parent: got, .. } if got == &parent),
            "{err}"
        );
        assert!(err.to_string().contains(&parent.display().to_string()));
        assert!(!parent.exists());
    }

    #[test]
    fn missing_file_is_named() {
        let p = scratch("missing").join("absent.onnx");
        let err = read(&p).unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { path } if path == &p),
            "{err}"
        );
        assert!(err.to_string().contains("absent.onnx"));
    }

    #[test]
    fn empty_file_is_named() {
        let p = scratch("empty").join("empty.onnx");
        fs::write(&p, b"").unwrap();
        let err = read(&p).unwrap_err();
        assert!(
            matches!(&err, Error::EmptyFile { path } if path == &p),
            "{err}"
        );
    }

    #[test]
    fn truncated_file_gives_decode_error_naming_the_path() {
        let dir = scratch("truncated");
        let p = dir.join("m.onnx");
        write(&p, &model(), false).unwrap();
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = read(&p).unwrap_err();
        assert!(
            matches!(&err, Error::Decode { path, len, .. } if path == &p && *len == bytes.len() / 2),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("truncated"),
            "{msg}"
        );
    }

    #[test]
    fn garbage_bytes_give_decode_error_naming_the_path() {
        let p = scratch("garbage").join("junk.onnx");
        // 0xff bytes: a varint tag that does not end within 10 bytes.
        fs::write(&p, [0xffu8; 16]).unwrap();
        let err = read(&p).unwrap_err();
        assert!(
            matches!(&err, Error::Decode { path, .. } if path == &p),
            "{err}"
        );
        assert!(err.to_string().contains("junk.onnx"));
    }

    #[test]
    fn valid_protobuf_without_graph_is_not_a_model() {
        let p = scratch("nograph").join("nograph.onnx");
        // Field 1 (ir_version) = 7, and nothing else.
        fs::write(&p, [0x08u8, 0x07]).unwrap();
        let err = read(&p).unwrap_err();
        assert!(
            matches!(&err, Error::NoGraph { path } if path == &p),
            "{err}"
        );
    }
}
