//! The 8x8 digits (UCI optical digits, as scikit-learn ships them): a gzip'd CSV, one row
//! per image, 64 pixel columns (0..16) then the label.

use std::path::Path;

use crate::bytes::read_maybe_gz;
use crate::error::{DataError, Result};
use crate::set::LabeledSet;

/// Pixels per image.
pub const PIXELS: usize = 64;
/// Largest pixel value.
pub const MAX_PIXEL: f32 = 16.0;

/// Reads the digits CSV (gzip'd or plain). Pixels are returned as raw values `0..=16`.
pub fn read_digits_csv(path: &Path) -> Result<LabeledSet> {
    digits_from_bytes(&read_maybe_gz(path)?, path)
}

/// The digits CSV's (decompressed) bytes as a set; `path` names them in errors.
pub fn digits_from_bytes(bytes: &[u8], path: &Path) -> Result<LabeledSet> {
    let text = std::str::from_utf8(bytes).map_err(|e| DataError::Csv {
        path: path.to_path_buf(),
        line: 0,
        problem: format!("not UTF-8 text ({e})"),
    })?;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| DataError::Csv {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        };
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() != PIXELS + 1 {
            return Err(bad(format!(
                "{} columns, expected {} (64 pixels and the label)",
                cols.len(),
                PIXELS + 1
            )));
        }
        for (j, c) in cols[..PIXELS].iter().enumerate() {
            let v: f32 = c
                .trim()
                .parse()
                .map_err(|_| bad(format!("column {}: {c:?} is not a number", j + 1)))?;
            if !(0.0..=MAX_PIXEL).contains(&v) || v.fract() != 0.0 {
                return Err(bad(format!(
                    "column {}: pixel {v} is not an integer in 0..=16",
                    j + 1
                )));
            }
            features.push(v);
        }
        let label: f64 = cols[PIXELS]
            .trim()
            .parse()
            .map_err(|_| bad(format!("label {:?} is not a number", cols[PIXELS])))?;
        if !(0.0..10.0).contains(&label) || label.fract() != 0.0 {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index: labels.len(),
                label: label as i64,
                num_classes: 10,
            });
        }
        labels.push(label as u8);
    }
    if labels.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(LabeledSet {
        features,
        labels,
        sample_shape: vec![1, 8, 8],
        num_classes: 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pixels: usize, label: &str) -> String {
        let mut r: Vec<String> = (0..pixels).map(|i| (i % 17).to_string()).collect();
        r.push(label.to_string());
        r.join(",")
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("digits.csv");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn parses_valid_rows() {
        let (_d, p) = write(&format!("{}\n{}\n", row(64, "3"), row(64, "9")));
        let s = read_digits_csv(&p).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.labels, vec![3, 9]);
        assert_eq!(s.sample(0)[16], 16.0);
    }

    #[test]
    fn row_with_63_columns_is_an_error_naming_the_line() {
        let (_d, p) = write(&format!("{}\n{}\n", row(64, "3"), row(62, "1")));
        let err = read_digits_csv(&p).unwrap_err();
        match &err {
            DataError::Csv { line, problem, .. } => {
                assert_eq!(*line, 2);
                assert!(problem.contains("63 columns"), "{problem}");
            }
            other => panic!("expected Csv error, got {other:?}"),
        }
        assert!(err.to_string().contains("digits.csv"));
    }

    #[test]
    fn bad_values_are_errors() {
        let (_d, p) = write(&row(64, "10"));
        assert!(matches!(
            read_digits_csv(&p),
            Err(DataError::BadLabel { label: 10, .. })
        ));
        let mut r = row(64, "1");
        r.replace_range(0..1, "17");
        let (_d, p) = write(&r);
        assert!(matches!(
            read_digits_csv(&p),
            Err(DataError::Csv { line: 1, .. })
        ));
        let (_d, p) = write("x\n");
        assert!(matches!(read_digits_csv(&p), Err(DataError::Csv { .. })));
    }
}
