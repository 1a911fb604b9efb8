//! Where datasets live and whether the files are the ones we know. A data directory holds
//! one folder per dataset (`mnist/`, `fashion-mnist/`, `digits/`). Search order: the
//! explicit `--data-dir` (alone, when given), then `$QUANTLAB_DATA_DIR`, `./data`, the
//! project's shipped `data/`, and `/usr/share/datasets` (Debian's `dataset-fashion-mnist`).

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

/// Environment variable naming a data directory.
pub const DATA_DIR_ENV: &str = "QUANTLAB_DATA_DIR";

/// MD5 sums of the official files (the same as the shipped `data/MD5SUMS`).
pub const KNOWN_MD5: &[(&str, &str, &str)] = &[
    (
        "mnist",
        "train-images-idx3-ubyte.gz",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    (
        "mnist",
        "train-labels-idx1-ubyte.gz",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    (
        "mnist",
        "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    (
        "mnist",
        "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    (
        "fashion-mnist",
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    (
        "fashion-mnist",
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    (
        "fashion-mnist",
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
    ),
    (
        "fashion-mnist",
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    (
        "digits",
        "digits.csv.gz",
        "9b335364a7bfd63947c7480a5bd51f2d",
    ),
];

/// The candidate data directories, in search order.
pub fn search_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(env) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(env));
    }
    dirs.push(PathBuf::from("data"));
    dirs.push(shipped_data_dir());
    dirs.push(PathBuf::from("/usr/share/datasets"));
    dirs.dedup();
    dirs
}

/// The project's own `data/` folder (absolute, fixed at build time), so the binary finds the
/// shipped copies from any working directory of the clone.
pub fn shipped_data_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .join("data")
}

/// Finds `stem` (e.g. `train-images-idx3-ubyte`) in `dir`, gzip'd (`.gz`) or raw.
pub fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Compares `path` with the MD5 sum quantlab knows for it, if any. Returns a warning when it
/// differs (the file may be a user's own data; the structural checks decide), `None` when it
/// matches or no sum is known.
pub fn md5_warning(dataset: &str, path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (_, _, want) = KNOWN_MD5
        .iter()
        .find(|(d, f, _)| *d == dataset && *f == name)?;
    let bytes = std::fs::read(path).ok()?;
    let got = format!("{:x}", Md5::digest(&bytes));
    (got != *want).then(|| {
        format!(
            "{}: MD5 {got} differs from the official {want}; using it anyway after the format checks",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_match_their_md5() {
        for (ds, file, _) in KNOWN_MD5.iter().filter(|(d, _, _)| *d != "fashion-mnist") {
            let p = shipped_data_dir().join(ds).join(file);
            assert!(p.is_file(), "missing shipped file {}", p.display());
            assert_eq!(md5_warning(ds, &p), None, "{}", p.display());
        }
    }

    #[test]
    fn changed_file_gets_a_warning() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("digits.csv.gz");
        std::fs::write(&p, b"not the real file").unwrap();
        let w = md5_warning("digits", &p).unwrap();
        assert!(w.contains("digits.csv.gz") && w.contains("differs"), "{w}");
    }

    #[test]
    fn explicit_dir_is_the_only_candidate() {
        assert_eq!(
            search_dirs(Some(Path::new("/x"))),
            vec![PathBuf::from("/x")]
        );
        assert!(search_dirs(None).contains(&shipped_data_dir()));
    }
}
