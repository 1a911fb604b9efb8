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
/// Fails with an [`ErrorKind::Io`](crate::ErrorKind::Io) error naming `path` if the parent folder
/// does not exist, or if `path` exists and `overwrite` is false. The
/// existence check and the final rename are two steps: a file created by
/// someone else in between is replaced.
pub fn write(path: impl AsRef<Path>, model: &ModelProto, overwrite: bool) -> Result<(), Error> {
    let path = path.as_ref();
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::io(path, "does not name a file"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::io(
            path,
            format!(
                "cannot write it: folder {} does not exist",
                parent.display()
            ),
        ));
    }
    if !overwrite && path.exists() {
        return Err(Error::io(
            path,
            "already exists; refusing to overwrite it (pass overwrite = true)",
        ));
    }
    let temp = parent.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(path, &temp, &model.encode_to_vec()).and_then(|()| {
        fs::rename(&temp, path).map_err(|e| {
            Error::io(
                path,
                format!(
                    "cannot rename the temporary file {} onto it: {e}",
                    temp.display()
                ),
            )
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Writes `bytes` to the new file `temp`, on the way to `path`.
fn write_new(path: &Path, temp: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |e: std::io::Error| {
        Error::io(
            path,
            format!("cannot write the temporary file {}: {e}", temp.display()),
        )
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
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::io(path, "ONNX model file does not exist"),
        _ => Error::io(path, format!("cannot read it: {e}")),
    })?;
    decode(path, &bytes)
}

/// Decodes model bytes; `path` is only used to name the source in errors.
pub fn decode(path: impl AsRef<Path>, bytes: &[u8]) -> Result<ModelProto, Error> {
    let path = path.as_ref();
    if bytes.is_empty() {
        return Err(Error::decode(path, "ONNX model file is empty (0 bytes)"));
    }
    let model = ModelProto::decode(bytes).map_err(|e| {
        Error::decode(
            path,
            format!(
                "{} bytes do not decode as an ONNX model, it is truncated or corrupt: {e}",
                bytes.len()
            ),
        )
    })?;
    if model.graph.is_none() {
        return Err(Error::decode(
            path,
            "decodes as protobuf but holds no graph, so it is not an ONNX model",
        ));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Attr, GraphBuilder};
    use crate::error::ErrorKind;

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
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.context(), p.display().to_string());
        assert!(err.message().contains("already exists"), "{err}");
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
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.context(), p.display().to_string());
        assert!(
            err.message()
                .contains(&format!("folder {} does not exist", parent.display())),
            "{err}"
        );
        assert!(!parent.exists());
    }

    #[test]
    fn path_without_a_file_name_is_refused() {
        let p = scratch("nofile").join("..");
        let err = write(&p, &model(), false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.context(), p.display().to_string());
        assert!(err.message().contains("does not name a file"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let p = scratch("missing").join("absent.onnx");
        let err = read(&p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.context(), p.display().to_string());
        assert!(err.message().contains("does not exist"), "{err}");
        assert!(err.to_string().contains("absent.onnx"));
    }

    #[test]
    fn empty_file_is_named() {
        let p = scratch("empty").join("empty.onnx");
        fs::write(&p, b"").unwrap();
        let err = read(&p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.context(), p.display().to_string());
        assert!(err.message().contains("is empty (0 bytes)"), "{err}");
    }

    #[test]
    fn truncated_file_gives_decode_error_naming_the_path() {
        let dir = scratch("truncated");
        let p = dir.join("m.onnx");
        write(&p, &model(), false).unwrap();
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = read(&p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.context(), p.display().to_string());
        let msg = err.message();
        assert!(
            msg.starts_with(&format!("{} bytes do not decode", bytes.len() / 2))
                && msg.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn garbage_bytes_give_decode_error_naming_the_path() {
        let p = scratch("garbage").join("junk.onnx");
        // 0xff bytes: a varint tag that does not end within 10 bytes.
        fs::write(&p, [0xffu8; 16]).unwrap();
        let err = read(&p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.context(), p.display().to_string());
        assert!(err.message().contains("16 bytes do not decode"), "{err}");
        assert!(err.to_string().contains("junk.onnx"));
    }

    #[test]
    fn valid_protobuf_without_graph_is_not_a_model() {
        let p = scratch("nograph").join("nograph.onnx");
        // Field 1 (ir_version) = 7, and nothing else.
        fs::write(&p, [0x08u8, 0x07]).unwrap();
        let err = read(&p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.context(), p.display().to_string());
        assert!(err.message().contains("holds no graph"), "{err}");
    }
}
