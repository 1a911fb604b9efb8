//! NumPy `.npy` files: how quantlab hands images, labels and logits to Python tools (ONNX
//! Runtime in `cargo xtask peers` and the tests) and takes a user's own calibration and
//! evaluation arrays back, without a dependency on either side.
//!
//! Written as format 1.0, little-endian, C order. Read: formats 1.0, 2.0 and 3.0, C order,
//! booleans, integers and floats of either byte order ([`Npy`]), converted to `f32` for
//! features and checked against the class count for labels. Nothing here panics on a bad
//! file: the header is parsed field by field, the element count is checked for overflow
//! and against [`MAX_NPY_BYTES`], and the body must hold exactly what the header announces.

use std::io::Write;
use std::path::Path;

use crate::error::{DataError, Result};
use crate::set::LabeledSet;

/// The most body bytes a `.npy` may announce (the limit of every other reader).
pub const MAX_NPY_BYTES: u64 = crate::bytes::MAX_DECOMPRESSED_BYTES;
/// The longest header accepted: NumPy writes under 200 bytes for any array quantlab uses;
/// format 2.0 would allow 4 GiB of Python literal.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

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

/// What a `.npy` element is, as the header's `descr` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `?`: NumPy booleans, one byte each.
    Bool,
    /// `i`: signed integers.
    Int,
    /// `u`: unsigned integers.
    UInt,
    /// `f`: IEEE floats (2, 4 or 8 bytes).
    Float,
}

/// An element type: kind, size in bytes and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtype {
    /// Kind of number.
    pub kind: Kind,
    /// Bytes per element.
    pub size: usize,
    /// Stored big-endian (`>`); `<`, `|` and `=` are read as little-endian.
    pub big_endian: bool,
}

impl Dtype {
    /// Parses a simple descriptor (`<f4`, `|u1`, `>i8`, `?`); `None` for anything else
    /// (structured, complex, strings, dates, objects).
    fn parse(descr: &str) -> Option<Self> {
        let (order, rest) = match descr.chars().next()? {
            c @ ('<' | '>' | '|' | '=') => (c, &descr[1..]),
            _ => ('=', descr),
        };
        let (kind, size) = match rest {
            "?" | "b1" => (Kind::Bool, 1),
            _ => {
                let kind = match rest.chars().next()? {
                    'i' => Kind::Int,
                    'u' => Kind::UInt,
                    'f' => Kind::Float,
                    _ => return None,
                };
                let size: usize = rest[1..].parse().ok()?;
                let ok = match kind {
                    Kind::Float => matches!(size, 2 | 4 | 8),
                    _ => matches!(size, 1 | 2 | 4 | 8),
                };
                if !ok {
                    return None;
                }
                (kind, size)
            }
        };
        Some(Self {
            kind,
            size,
            big_endian: order == '>' && size > 1,
        })
    }

    /// NumPy's descriptor for it.
    pub fn descr(&self) -> String {
        let order = if self.size == 1 {
            '|'
        } else if self.big_endian {
            '>'
        } else {
            '<'
        };
        let k = match self.kind {
            Kind::Bool => return "|b1".into(),
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Float => 'f',
        };
        format!("{order}{k}{}", self.size)
    }

    /// The element at the start of `b` (exactly `size` bytes) as f64: exact for every
    /// integer up to 2^53 and for every float.
    fn value(&self, b: &[u8]) -> f64 {
        let mut le = [0u8; 8];
        le[..self.size].copy_from_slice(b);
        if self.big_endian {
            le[..self.size].reverse();
        }
        let u = u64::from_le_bytes(le);
        match (self.kind, self.size) {
            (Kind::Bool, _) => (u != 0) as u8 as f64,
            (Kind::UInt, _) => u as f64,
            (Kind::Int, n) => {
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                ((u << shift) as i64 >> shift) as f64
            }
            (Kind::Float, 2) => f16_to_f64(u as u16),
            (Kind::Float, 4) => f32::from_bits(u as u32) as f64,
            (Kind::Float, _) => f64::from_bits(u),
        }
    }
}

/// IEEE half precision to f64 (NumPy's `<f2`).
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e as i32 - 15),
    }
}

/// A parsed `.npy`: its element type and shape, and the body (exactly the bytes the shape
/// announces).
#[derive(Debug, Clone)]
pub struct Npy {
    /// Element type.
    pub dtype: Dtype,
    /// Shape, C order (`[]` for a scalar).
    pub shape: Vec<usize>,
    body: Vec<u8>,
}

/// A Python literal in a `.npy` header.
enum Lit {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// The header dictionary, parsed as the Python literal it is (`{'descr': '<f4',
/// 'fortran_order': False, 'shape': (2, 3), }`), without evaluating anything.
struct HeaderParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl HeaderParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.ws();
        let q = *self
            .s
            .get(self.i)
            .ok_or("header ends inside the dictionary")?;
        if q != b'\'' && q != b'"' {
            return Err(format!(
                "expected a quoted string at header byte {}",
                self.i
            ));
        }
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("unterminated string in the header")?;
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec())
            .map_err(|_| "the header is not UTF-8".to_string())
    }

    fn value(&mut self) -> std::result::Result<Lit, String> {
        self.ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            return Ok(Lit::Bool(true));
        }
        if rest.starts_with(b"False") {
            self.i += 5;
            return Ok(Lit::Bool(false));
        }
        match rest.first() {
            Some(b'\'' | b'"') => self.string().map(Lit::Str),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(b')') {
                        return Ok(Lit::Tuple(dims));
                    }
                    self.ws();
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                    let d = digits.parse::<usize>().map_err(|_| {
                        if digits.is_empty() {
                            format!("shape: expected a dimension at header byte {start}")
                        } else {
                            format!("shape: dimension {digits} does not fit in memory")
                        }
                    })?;
                    dims.push(d);
                    // Python 2 wrote longs as `3L`.
                    self.eat(b'L');
                    if !self.eat(b',') && !matches!(self.peek(), Some(b')')) {
                        return Err("shape: expected ',' or ')'".into());
                    }
                }
            }
            Some(b'[') => Err("structured dtypes (a list as descr) are not supported".into()),
            _ => Err(format!("unexpected value at header byte {}", self.i)),
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn dict(&mut self) -> std::result::Result<Vec<(String, Lit)>, String> {
        if !self.eat(b'{') {
            return Err("the header is not a dictionary".into());
        }
        let mut out = Vec::new();
        loop {
            if self.eat(b'}') {
                return Ok(out);
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return Err(format!("expected ':' after '{key}'"));
            }
            out.push((key, self.value()?));
            if !self.eat(b',') && self.peek() != Some(b'}') {
                return Err("expected ',' or '}' in the header".into());
            }
        }
    }
}

impl Npy {
    /// Reads and parses `path`; files larger than the limits are refused before reading.
    pub fn read(path: &Path) -> Result<Self> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_NPY_BYTES + MAX_HEADER_BYTES as u64 + 12 {
            return Err(DataError::TooLarge {
                path: path.to_path_buf(),
                what: "the .npy file",
                limit: MAX_NPY_BYTES,
            });
        }
        Self::from_bytes(std::fs::read(path).map_err(io)?, path)
    }

    /// Parses the bytes of a `.npy` file (`path` names it in errors).
    pub fn from_bytes(mut bytes: Vec<u8>, path: &Path) -> Result<Self> {
        let bad = |problem: String| DataError::Npy {
            path: path.to_path_buf(),
            problem,
        };
        if bytes.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        if !bytes.starts_with(b"\x93NUMPY") {
            return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
        }
        let (start, hlen) = match bytes.get(6..12) {
            Some([1, _, a, b, ..]) => (10, u16::from_le_bytes([*a, *b]) as usize),
            Some([2 | 3, _, a, b, c, d]) => (12, u32::from_le_bytes([*a, *b, *c, *d]) as usize),
            Some([v, ..]) => return Err(bad(format!("format version {v} is not 1, 2 or 3"))),
            _ => return Err(bad("header truncated".into())),
        };
        if hlen > MAX_HEADER_BYTES {
            return Err(DataError::TooLarge {
                path: path.to_path_buf(),
                what: "the .npy header",
                limit: MAX_HEADER_BYTES as u64,
            });
        }
        let header = bytes
            .get(start..start + hlen)
            .ok_or_else(|| bad(format!("header truncated: {hlen} bytes announced")))?;
        let fields = HeaderParser { s: header, i: 0 }.dict().map_err(bad)?;
        let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let dtype = match get("descr") {
            Some(Lit::Str(d)) => Dtype::parse(d).ok_or_else(|| {
                bad(format!(
                    "dtype {d:?} is not supported (booleans, integers and floats are)"
                ))
            })?,
            Some(_) => return Err(bad("'descr' is not a string".into())),
            None => return Err(bad("the header has no 'descr'".into())),
        };
        match get("fortran_order") {
            Some(Lit::Bool(false)) => {}
            Some(Lit::Bool(true)) => {
                return Err(bad("Fortran-ordered arrays are not supported; save with \
                     np.save(path, np.ascontiguousarray(x))"
                    .into()));
            }
            Some(_) => return Err(bad("'fortran_order' is not True or False".into())),
            None => return Err(bad("the header has no 'fortran_order'".into())),
        }
        let shape = match get("shape") {
            Some(Lit::Tuple(s)) => s.clone(),
            Some(_) => return Err(bad("'shape' is not a tuple".into())),
            None => return Err(bad("the header has no 'shape'".into())),
        };
        let body_len = shape
            .iter()
            .try_fold(dtype.size, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n as u64 <= MAX_NPY_BYTES)
            .ok_or_else(|| DataError::TooLarge {
                path: path.to_path_buf(),
                what: "the array the .npy header announces",
                limit: MAX_NPY_BYTES,
            })?;
        let found = bytes.len() - (start + hlen);
        if found != body_len {
            return Err(DataError::SizeMismatch {
                path: path.to_path_buf(),
                expected: body_len,
                found,
                what: if found < body_len {
                    "truncated"
                } else {
                    "trailing bytes"
                },
            });
        }
        bytes.drain(..start + hlen);
        Ok(Self {
            dtype,
            shape,
            body: bytes,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.body.len() / self.dtype.size
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.body
            .chunks_exact(self.dtype.size)
            .map(|b| self.dtype.value(b))
    }

    /// The elements as f32 features; a NaN or infinite value (or an f64 beyond f32's
    /// range) is an error naming its index.
    pub fn to_f32(&self, path: &Path) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        for (i, v) in self.values().enumerate() {
            let x = v as f32;
            if !x.is_finite() {
                return Err(DataError::Npy {
                    path: path.to_path_buf(),
                    problem: format!("element {i} is {v}, not a finite number"),
                });
            }
            out.push(x);
        }
        Ok(out)
    }

    /// The elements as class labels: an integer array of shape `[n]` or `[n, 1]`, every
    /// value in `0..num_classes`.
    pub fn to_labels(&self, path: &Path, num_classes: usize) -> Result<Vec<u8>> {
        if !matches!(self.dtype.kind, Kind::Int | Kind::UInt) {
            return Err(DataError::Npy {
                path: path.to_path_buf(),
                problem: format!(
                    "labels must be integers, the file holds {}",
                    self.dtype.descr()
                ),
            });
        }
        if !matches!(self.shape.as_slice(), [_] | [_, 1]) {
            return Err(DataError::BadDims {
                path: path.to_path_buf(),
                expected: "labels of shape (n,) or (n, 1)".into(),
                found: self.shape.clone(),
            });
        }
        let limit = num_classes.min(256);
        self.values()
            .enumerate()
            .map(|(index, v)| {
                if v >= 0.0 && (v as usize) < limit {
                    Ok(v as u8)
                } else {
                    Err(DataError::BadLabel {
                        path: path.to_path_buf(),
                        index,
                        label: v as i64,
                        num_classes,
                    })
                }
            })
            .collect()
    }
}

/// Model inputs from a `.npy` file: shape `[n, ...sample_shape]` (or `[n, prod]` for the
/// same values flattened), any numeric dtype, every value finite; the flat values and `n`.
pub fn inputs(path: &Path, sample_shape: &[usize]) -> Result<(usize, Vec<f32>)> {
    let a = Npy::read(path)?;
    let per: usize = sample_shape.iter().product();
    let n = a.shape.first().copied().unwrap_or(0);
    let fits =
        n > 0 && (a.shape[1..] == *sample_shape || a.shape[1..] == [per]) && a.len() == n * per;
    if !fits {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            expected: format!(
                "inputs of shape (n, {sample_shape:?}) with n >= 1, as the model takes"
            ),
            found: a.shape.clone(),
        });
    }
    Ok((n, a.to_f32(path)?))
}

/// A labelled set from `.npy` inputs and labels (see [`inputs`] and [`Npy::to_labels`]),
/// the two counts checked against each other.
pub fn labeled_set(
    x: &Path,
    y: &Path,
    sample_shape: &[usize],
    num_classes: usize,
) -> Result<LabeledSet> {
    let (n, features) = inputs(x, sample_shape)?;
    let labels = Npy::read(y)?.to_labels(y, num_classes)?;
    if labels.len() != n {
        return Err(DataError::BadDims {
            path: y.to_path_buf(),
            expected: format!("{n} labels, one per input of {}", x.display()),
            found: vec![labels.len()],
        });
    }
    Ok(LabeledSet {
        features,
        labels,
        sample_shape: sample_shape.to_vec(),
        num_classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: Vec<u8>) -> Result<Npy> {
        Npy::from_bytes(b, Path::new("x.npy"))
    }

    #[test]
    fn what_encode_writes_reads_back() {
        let x = [1.5f32, -2.0, 0.25, 3.0, 4.0, 5.0];
        let n = parse(encode(&[2, 3], &x)).unwrap();
        assert_eq!(n.shape, vec![2, 3]);
        assert_eq!(n.dtype.descr(), "<f4");
        assert_eq!(n.to_f32(Path::new("x.npy")).unwrap(), x);
        let l = parse(encode(&[4], &[0i64, 9, 3, 1])).unwrap();
        assert_eq!(
            l.to_labels(Path::new("y.npy"), 10).unwrap(),
            vec![0, 9, 3, 1]
        );
        let u = parse(encode(&[2, 1], &[7u8, 2])).unwrap();
        assert_eq!(u.to_labels(Path::new("y.npy"), 10).unwrap(), vec![7, 2]);
        assert_eq!(u.to_f32(Path::new("y.npy")).unwrap(), vec![7.0, 2.0]);
    }

    /// Headers as NumPy writes them for other dtypes, byte orders and versions.
    fn raw(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY".to_vec();
        b.extend_from_slice(&[version, 0]);
        if version == 1 {
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn other_dtypes_byte_orders_and_versions() {
        let p = Path::new("x.npy");
        let be = raw(
            2,
            "{'descr': '>i2', 'fortran_order': False, 'shape': (3L,), }\n",
            &[0xff, 0xfe, 0x00, 0x05, 0x00, 0x00],
        );
        assert_eq!(parse(be).unwrap().to_f32(p).unwrap(), vec![-2.0, 5.0, 0.0]);
        let f64s: Vec<u8> = [0.5f64, -1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let d = raw(
            3,
            "{\"descr\": \"<f8\", \"shape\": (1, 2), \"fortran_order\": False}",
            &f64s,
        );
        assert_eq!(parse(d).unwrap().to_f32(p).unwrap(), vec![0.5, -1.0]);
        // 1.0 and -2.0 in half precision.
        let h = raw(
            1,
            "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }",
            &[0x00, 0x3c, 0x00, 0xc0],
        );
        assert_eq!(parse(h).unwrap().to_f32(p).unwrap(), vec![1.0, -2.0]);
        let s = raw(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (), }",
            &[4],
        );
        assert_eq!(parse(s).unwrap().len(), 1);
    }

    #[test]
    fn bad_files_are_errors_that_name_the_problem() {
        let hdr = |h: &str, body: &[u8]| parse(raw(1, h, body)).unwrap_err().to_string();
        let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        for (err, want) in [
            (parse(Vec::new()).unwrap_err().to_string(), "empty"),
            (
                parse(b"PK\x03\x04 zip".to_vec()).unwrap_err().to_string(),
                "magic",
            ),
            (
                parse(raw(1, ok, &[0; 4])).unwrap_err().to_string(),
                "truncated",
            ),
            (
                parse(raw(1, ok, &[0; 12])).unwrap_err().to_string(),
                "trailing",
            ),
            (
                parse(raw(1, ok, &[])[..20].to_vec())
                    .unwrap_err()
                    .to_string(),
                "header truncated",
            ),
            (
                parse(raw(4, ok, &[0; 8])).unwrap_err().to_string(),
                "version 4",
            ),
            (
                hdr(
                    "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                    &[0; 8],
                ),
                "<c8",
            ),
            (
                hdr(
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                    &[0; 4],
                ),
                "structured",
            ),
            (
                hdr(
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
                    &[0; 4],
                ),
                "Fortran",
            ),
            (
                hdr("{'descr': '<f4', 'shape': (1,), }", &[0; 4]),
                "fortran_order",
            ),
            (
                hdr(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
                    &[],
                ),
                "limit",
            ),
            (
                hdr(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1, x), }",
                    &[0; 4],
                ),
                "dimension",
            ),
            (
                hdr(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
                    &[0; 4],
                ),
                "','",
            ),
        ] {
            assert!(err.contains("x.npy") && err.contains(want), "{want}: {err}");
        }
        let p = Path::new("x.npy");
        let nan = parse(encode(&[2], &[1.0f32, f32::NAN])).unwrap();
        assert!(nan.to_f32(p).unwrap_err().to_string().contains("element 1"));
        let floats = parse(encode(&[2], &[1.0f32, 2.0])).unwrap();
        assert!(
            floats
                .to_labels(p, 10)
                .unwrap_err()
                .to_string()
                .contains("integers")
        );
        let big = parse(encode(&[2], &[1i64, 10])).unwrap();
        assert!(
            big.to_labels(p, 10)
                .unwrap_err()
                .to_string()
                .contains("label 10")
        );
        let neg = parse(encode(&[1], &[-1i64])).unwrap();
        assert!(
            neg.to_labels(p, 10)
                .unwrap_err()
                .to_string()
                .contains("label -1")
        );
        let two_d = parse(encode(&[2, 2], &[1i64; 4])).unwrap();
        assert!(
            two_d
                .to_labels(p, 10)
                .unwrap_err()
                .to_string()
                .contains("(n,)")
        );
    }

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
