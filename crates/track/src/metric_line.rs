//! One line of a metric file: `timestamp value step`.
//!
//! MLflow's file store appends `f"{metric.timestamp} {metric.value} {metric.step}\n"` to
//! `metrics/<key>` for every logged value and splits each line on spaces when reading
//! (`_get_metric_from_line`: 2, 3 or 5 fields; `int(ts)`, `float(value)`, `int(step)`). The
//! value is Python's `repr` of a float, so `nan`, `inf` and `-inf` for non-finite values and
//! `1e-05` / `1.2345678901234568e+17` outside `1e-4 <= |v| < 1e16`. This module writes exactly
//! that, so files written here are byte-for-byte what MLflow would write.

/// The metric file line for one value, with its trailing newline.
pub(crate) fn format_line(timestamp_ms: i64, value: f64, step: i64) -> String {
    format!("{timestamp_ms} {} {step}\n", python_float_repr(value))
}

/// Python's `repr(float)`: the shortest string that reads back to the same value.
pub(crate) fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits, as `d.ddde<exp>`.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if v < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        // Fixed notation, at least one digit after the point.
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if n > exp + 1 {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        } else {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        };
        format!("{sign}{body}")
    } else {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_repr() {
        // (value, repr(value)) from Python 3.11.
        let cases: [(f64, &str); 25] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (1e-20, "1e-20"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (0.0001234, "0.0001234"),
            (1.2345678901234568e+17, "1.2345678901234568e+17"),
            (1e+16, "1e+16"),
            (1000000000000000.0, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1.5e+300, "1.5e+300"),
            (5e-324, "5e-324"),
            (1.7976931348623157e+308, "1.7976931348623157e+308"),
            (2.5, "2.5"),
            (100.0, "100.0"),
            (0.30000000000000004, "0.30000000000000004"),
            (-2.5e-07, "-2.5e-07"),
            (123.456, "123.456"),
            (1e+22, "1e+22"),
            (1.2345678901234567e+19, "1.2345678901234567e+19"),
            (0.001, "0.001"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float_repr(v), want, "{v:e}");
            assert_eq!(want.parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn non_finite_values_are_written_as_mlflow_writes_them() {
        assert_eq!(python_float_repr(f64::NAN), "nan");
        assert_eq!(python_float_repr(f64::INFINITY), "inf");
        assert_eq!(python_float_repr(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn line_is_timestamp_value_step() {
        assert_eq!(format_line(1795558091120, 0.5, 0), "1795558091120 0.5 0\n");
        assert_eq!(format_line(1, f64::NAN, -3), "1 nan -3\n");
        assert_eq!(format_line(2, 1.0f32 as f64, 4), "2 1.0 4\n");
    }

    #[test]
    fn every_value_reads_back_exactly() {
        // A spread of magnitudes and bit patterns: the text must parse to the same bits.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let s = python_float_repr(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
    }
}
