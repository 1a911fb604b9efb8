//! File operations that stay correct when several processes share one store.
//!
//! MLflow readers (the UI, `search_runs`) and other writers may look at the store at any
//! moment, so:
//! - whole files (meta.yaml, tags, artifacts) are written to a temporary file in a directory
//!   MLflow does not list as data, then `rename`d into place: a reader sees the old file or
//!   the new one, never half of one;
//! - files that must be created at most once (an experiment's meta.yaml, a param) are
//!   published with `hard_link`, which fails if the name exists: exactly one writer wins, and
//!   what it published is already complete;
//! - metric values are appended with `O_APPEND`, one `write` per line, so concurrent appends
//!   land whole, one after another;
//! - directories whose existence means "taken" (run ids) are made with `create_dir`, which
//!   fails if the directory exists.
//!
//! Nothing is fsync'ed: the aim is that readers never see partial files, not durability
//! across power loss. Every error names the path it concerns.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::ids::RunId;

/// Creates `path` and its parents; fine if it exists.
pub(crate) fn create_dir_all(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(Error::io("create directory", path))
}

/// Creates `path` (its parent must exist). `Ok(true)`: created now; `Ok(false)`: it already
/// existed as a directory.
pub(crate) fn create_dir_new(path: &Path) -> Result<bool, Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(Error::io("create directory", path)(e)),
    }
}

/// A temporary file name in `dir` for eventually becoming `dest`; dotted, so it is hidden from
/// `ls`, and unique per call.
fn temp_path(dir: &Path, dest: &Path) -> PathBuf {
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base: String = base.chars().take(40).collect();
    dir.join(format!(".{base}.{}.tmp", &RunId::random().as_str()[..16]))
}

/// Writes a new temporary file in `temp_dir` with `fill`, removing it again on failure.
fn write_temp(
    temp_dir: &Path,
    dest: &Path,
    fill: impl FnOnce(&mut File, &Path) -> Result<(), Error>,
) -> Result<PathBuf, Error> {
    let tmp = temp_path(temp_dir, dest);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(Error::io("create file", &tmp))?;
    let filled = fill(&mut f, &tmp);
    drop(f);
    match filled {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn bytes_filler(bytes: &[u8]) -> impl FnOnce(&mut File, &Path) -> Result<(), Error> + '_ {
    move |f, tmp| f.write_all(bytes).map_err(Error::io("write file", tmp))
}

/// Replaces `dest` with `bytes` atomically; the temporary file is made in `temp_dir`, which
/// must be on the same file system as `dest`.
pub(crate) fn write_atomic(temp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_with(temp_dir, dest, bytes_filler(bytes))
}

/// Like [`write_atomic`], with the content written by `fill` (given the open temporary file
/// and its path, for errors).
pub(crate) fn write_atomic_with(
    temp_dir: &Path,
    dest: &Path,
    fill: impl FnOnce(&mut File, &Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let tmp = write_temp(temp_dir, dest, fill)?;
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("replace file", dest)(e)
    })
}

/// Whether [`publish_new`] created the file or found one there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// This call created `dest` with the given bytes.
    Created,
    /// `dest` already existed; it was left as it was.
    Existed,
}

/// Creates `dest` with `bytes` unless it exists, atomically: the complete file appears at
/// once, and of concurrent callers exactly one gets [`Published::Created`].
pub(crate) fn publish_new(temp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<Published, Error> {
    let tmp = write_temp(temp_dir, dest, bytes_filler(bytes))?;
    let linked = fs::hard_link(&tmp, dest);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Published::Created),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(Published::Existed),
        Err(e) => Err(Error::io("create file", dest)(e)),
    }
}

/// Checks that files can be created in `dir` by creating and removing a uniquely named empty
/// file (unique, so that concurrent checks do not trip over each other).
pub(crate) fn check_writable(dir: &Path) -> Result<(), Error> {
    let probe = write_temp(dir, Path::new("probe"), |_, _| Ok(()))?;
    fs::remove_file(&probe).map_err(Error::io("remove file", &probe))
}

/// Appends `line` to `path` (created if missing) with one `O_APPEND` write.
pub(crate) fn append(path: &Path, line: &[u8]) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(Error::io("open for appending", path))?;
    f.write_all(line).map_err(Error::io("append to", path))
}

/// Reads a UTF-8 text file.
pub(crate) fn read_to_string(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(Error::io("read", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn publish_new_has_exactly_one_winner_under_contention() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("meta.yaml");
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (dir, dest, barrier) = (dir.path().to_owned(), dest.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let r = publish_new(&dir, &dest, format!("writer {i}\n").as_bytes()).unwrap();
                    (i, r)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results
            .iter()
            .filter(|(_, r)| *r == Published::Created)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let content = fs::read_to_string(&dest).unwrap();
        assert_eq!(content, format!("writer {}\n", winners[0].0));
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["meta.yaml"]);
    }

    #[test]
    fn write_atomic_replaces_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        write_atomic(dir.path(), &dest, b"one").unwrap();
        write_atomic(dir.path(), &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_dir_new_tells_created_from_existing_and_names_failures() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("x");
        assert!(create_dir_new(&d).unwrap());
        assert!(!create_dir_new(&d).unwrap());
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = create_dir_new(&file).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
    }

    #[test]
    fn writability_checks_run_concurrently_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        check_writable(&dir).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("missing");
        let err = check_writable(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn append_adds_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        append(&p, b"1 0.5 0\n").unwrap();
        append(&p, b"2 0.25 1\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "1 0.5 0\n2 0.25 1\n");
    }
}
