//! The IDX format of MNIST and Fashion-MNIST: a big-endian magic (0x0803 for u8 images with
//! three dimensions, 0x0801 for u8 labels with one), the dimensions, then the bytes. Nothing
//! in the header is trusted: the byte count must match it exactly.

use std::path::Path;

use crate::bytes::read_maybe_gz;
use crate::error::{DataError, Result};

/// Magic number of a u8 tensor with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of a u8 tensor with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images read from an IDX file: `count` images of `rows x cols` u8 pixels, row-major.
#[derive(Debug, Clone)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixels.
    pub pixels: Vec<u8>,
}

/// Parses an IDX header with `ndims` dimensions and checks the body length.
fn parse(path: &Path, bytes: &[u8], magic: u32, ndims: usize) -> Result<(Vec<usize>, usize)> {
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(DataError::ShortHeader {
            path: path.to_path_buf(),
            expected: header,
            found: bytes.len(),
        });
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found,
        });
    }
    if bytes.len() < header {
        return Err(DataError::ShortHeader {
            path: path.to_path_buf(),
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::BadDims {
            path: path.to_path_buf(),
            expected: "dimensions whose product fits in memory".into(),
            found: dims.clone(),
        })?;
    let body = bytes.len() - header;
    if body != expected {
        return Err(DataError::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            found: body,
            what: if body < expected {
                "truncated"
            } else {
                "trailing bytes"
            },
        });
    }
    Ok((dims, header))
}

/// Reads an IDX image file (gzip'd or raw).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    images_from_bytes(read_maybe_gz(path)?, path)
}

/// An IDX image file's (decompressed) bytes as images; `path` names them in errors.
pub fn images_from_bytes(bytes: Vec<u8>, path: &Path) -> Result<IdxImages> {
    let (dims, header) = parse(path, &bytes, IMAGES_MAGIC, 3)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            expected: "non-zero image rows and columns".into(),
            found: dims,
        });
    }
    let mut pixels = bytes;
    pixels.drain(..header);
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX label file (gzip'd or raw) and checks every label is below `num_classes`.
pub fn read_labels(path: &Path, num_classes: usize) -> Result<Vec<u8>> {
    labels_from_bytes(read_maybe_gz(path)?, path, num_classes)
}

/// An IDX label file's (decompressed) bytes as labels below `num_classes`.
pub fn labels_from_bytes(bytes: Vec<u8>, path: &Path, num_classes: usize) -> Result<Vec<u8>> {
    let (_, header) = parse(path, &bytes, LABELS_MAGIC, 1)?;
    let mut labels = bytes;
    labels.drain(..header);
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= num_classes)
    {
        return Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            label: label as i64,
            num_classes,
        });
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a raw IDX image file of `n` images of `r x c`.
    pub(crate) fn images_bytes(n: u32, r: u32, c: u32) -> Vec<u8> {
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, r, c] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..n * r * c).map(|i| (i % 256) as u8));
        b
    }

    fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut b = LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend((labels.len() as u32).to_be_bytes());
        b.extend(labels);
        b
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_raw_and_gzip_alike() {
        let dir = tempfile::tempdir().unwrap();
        let raw = images_bytes(3, 4, 5);
        let a = read_images(&write(&dir, "a", &raw)).unwrap();
        let b = read_images(&write(&dir, "b.gz", &gzip(&raw))).unwrap();
        assert_eq!((a.count, a.rows, a.cols), (3, 4, 5));
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.pixels.len(), 60);
    }

    #[test]
    fn truncated_image_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let raw = images_bytes(3, 4, 5);
        let p = write(&dir, "t", &raw[..raw.len() - 7]);
        match read_images(&p) {
            Err(DataError::SizeMismatch {
                expected,
                found,
                what,
                ..
            }) => {
                assert_eq!((expected, found, what), (60, 53, "truncated"));
            }
            other => panic!("expected SizeMismatch, got {other:?}"),
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = images_bytes(2, 2, 2);
        raw.push(0);
        let err = read_images(&write(&dir, "t", &raw)).unwrap_err();
        assert!(matches!(
            err,
            DataError::SizeMismatch {
                what: "trailing bytes",
                ..
            }
        ));
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let raw = labels_bytes(&[1, 2, 3]);
        let p = write(&dir, "labels-as-images", &raw);
        let err = read_images(&p).unwrap_err();
        assert!(matches!(
            err,
            DataError::BadMagic {
                expected: IMAGES_MAGIC,
                found: LABELS_MAGIC,
                ..
            }
        ));
        assert!(err.to_string().contains("labels-as-images"), "{err}");
    }

    #[test]
    fn label_ten_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "l", &labels_bytes(&[0, 9, 10, 3]));
        let err = read_labels(&p, 10).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadLabel {
                    index: 2,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cut_off_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let gz = gzip(&images_bytes(10, 8, 8));
        let p = write(&dir, "cut.gz", &gz[..gz.len() / 2]);
        let err = read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("cut.gz"));
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "empty", &[]);
        assert!(matches!(read_images(&p), Err(DataError::Empty { .. })));
        assert!(matches!(read_labels(&p, 10), Err(DataError::Empty { .. })));
    }

    #[test]
    fn short_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let raw = images_bytes(1, 1, 1);
        let p = write(&dir, "h", &raw[..9]);
        assert!(matches!(
            read_images(&p),
            Err(DataError::ShortHeader {
                expected: 16,
                found: 9,
                ..
            })
        ));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = read_images(Path::new("/nonexistent/quantlab/x.gz")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/quantlab/x.gz"));
    }
}
