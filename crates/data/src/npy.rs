//! NumPy `.npy` files (format 1.0, little-endian): how quantlab hands images, labels and
//! logits to Python tools (ONNX Runtime in `cargo xtask peers` and the tests) without a
//! dependency on either side.

use std::io::Write;
use std::path::Path;

use crate::error::{DataError, Result};

/// A type that NumPy reads from `.npy`.
pub trait NpyElement: Copy {
    /// NumPy's dtype descriptor (`<f4`, `|u1`, `<i8`).
    const DESCR: &'static str;
    /// Appends the value's little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    fn put(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The bytes of an `.npy` file holding `data` with `shape` (C order).
pub fn encode<T: NpyElement>(shape: &[usize], data: &[T]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {tuple}, }}",
        T::DESCR
    );
    // Magic (6) + version (2) + header length (2) + header, padded to 64 with a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &x in data {
        x.put(&mut out);
    }
    out
}

/// Writes `data` with `shape` to `path` as `.npy`.
pub fn write<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(DataError::Invalid {
            param: "npy shape",
            problem: format!(
                "{}: shape {shape:?} holds {expected} values, got {}",
                path.display(),
                data.len()
            ),
        });
    }
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&encode(shape, data)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let b = encode(&[2, 3], &[1f32, 2., 3., 4., 5., 6.]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains("'shape': (2, 3)") && header.ends_with('\n'),
            "{header}"
        );
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1f32.to_le_bytes());
        let one = encode(&[4], &[1u8, 2, 3, 4]);
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("(4,)"));
    }

    #[test]
    fn wrong_length_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.npy");
        assert!(
            write(&p, &[2, 2], &[1f32; 3])
                .unwrap_err()
                .to_string()
                .contains("x.npy")
        );
    }
}
