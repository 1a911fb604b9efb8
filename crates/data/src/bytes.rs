//! Reading a file whole, transparently un-gzipping it: the datasets ship as `.gz` but a user
//! may hand us the raw files, and the decision is made from the gzip magic, not the name.

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most a gzip'd data file may decompress to (the largest shipped one, MNIST's training
/// images, is 47 MB): a bigger stream is refused before it is held in memory, so a small
/// "decompression bomb" cannot make a reader allocate gigabytes.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Reads `path`, decompressing it if it starts with the gzip magic. An empty file and a
/// cut-off gzip stream are errors that name the file.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_maybe_gz(raw, path)
}

/// [`read_maybe_gz`] on bytes already read; `path` names them in errors.
pub fn decode_maybe_gz(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if raw.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        // One byte past the limit tells "at the limit" from "over it".
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|source| DataError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(DataError::TooLarge {
                path: path.to_path_buf(),
                what: "decompressed size",
                limit: MAX_DECOMPRESSED_BYTES,
            });
        }
        if out.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}
