//! meta.yaml as YAML: written here byte for byte, read with `serde_norway`.
//!
//! MLflow writes meta.yaml with PyYAML and reads it with `yaml.safe_load`. The files are a
//! single block mapping whose values are scalars (plus `tags: []`).
//! - **Writing** is done here rather than by a YAML library so that the bytes stay fixed:
//!   every string goes in double quotes with escapes, which is unambiguous YAML whatever the
//!   string holds (`null`, `123`, `: #`, quotes, newlines, control characters, U+0085/U+2028
//!   that YAML treats as line breaks); integers and `null` are written plain, keys sorted as
//!   PyYAML's `sort_keys=True` sorts them.
//! - **Reading** must understand whatever PyYAML writes for experiments MLflow created:
//!   plain, single-quoted and double-quoted scalars, folded over several lines when long.
//!   That takes a real YAML scanner, so it is `serde_norway`'s (libyaml, whose scanner
//!   PyYAML's mirrors), checked against PyYAML's own output in
//!   `tests/fixtures/pyyaml_meta.json`. A field read as `Option<String>` gets a plain
//!   scalar's text as written (`experiment_id: 0` gives "0" and a name PyYAML left plain,
//!   such as `1e3`, stays "1e3", as PyYAML reads it back), and `None` for `null`, `~` or
//!   nothing. Integer fields are read as [`Int`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A value to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Out<'a> {
    /// `null`
    Null,
    /// A plain integer.
    Int(i64),
    /// A string, written double-quoted.
    Str(&'a str),
    /// `[]`
    EmptyList,
}

/// Writes a flat mapping, one `key: value` per line. Keys must be plain identifiers and, to
/// match PyYAML's `sort_keys=True` output, given in sorted order.
pub(crate) fn write_mapping(entries: &[(&str, Out<'_>)]) -> String {
    debug_assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "keys not sorted"
    );
    let mut s = String::new();
    for (key, value) in entries {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        s.push_str(key);
        s.push_str(": ");
        match value {
            Out::Null => s.push_str("null"),
            Out::Int(i) => s.push_str(&i.to_string()),
            Out::Str(v) => push_double_quoted(&mut s, v),
            Out::EmptyList => s.push_str("[]"),
        }
        s.push('\n');
    }
    s
}

/// Appends `v` as a YAML double-quoted scalar.
fn push_double_quoted(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            '\0' => s.push_str("\\0"),
            // C0/C1 controls and DEL (U+0085 is a line break in YAML 1.1).
            c if (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32)) => {
                s.push_str(&format!("\\x{:02X}", c as u32));
            }
            // Line/paragraph separators (line breaks in YAML), BOM, non-characters.
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                s.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Reads a meta.yaml into the fields `T` names; other keys are ignored, as MLflow's readers
/// ignore keys they do not know. The error says where and why (`... at line 2 column 7`).
pub(crate) fn read<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_norway::from_str(text).map_err(|e| e.to_string())
}

/// A field MLflow writes as a plain integer or `null` (`creation_time`, `status`, ...).
///
/// A plain integer that fits an `i64` reads as `Some`; anything else (null, a quoted string,
/// a float, a collection) reads as `None` instead of failing, so one odd value in a field
/// this crate only sorts by does not make a whole experiment unreadable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Int(pub(crate) Option<i64>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Int, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(Some(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        Ok(Int(i64::try_from(v).ok()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
        Ok(Int(i64::try_from(v).ok()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
        Ok(Int(i64::try_from(v).ok()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Int, E> {
        Ok(Int(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Int, E> {
        Ok(Int(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Int, E> {
        Ok(Int(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
        Ok(Int(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Int, E> {
        Ok(Int(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Int, D::Error> {
        Int::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Int, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Int(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Int, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Int(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_sorted_plain_ints_null_and_quoted_strings() {
        let text = write_mapping(&[
            ("a", Out::Str("x")),
            ("b", Out::Int(-3)),
            ("c", Out::Null),
            ("d", Out::EmptyList),
            ("e", Out::Str("0")),
        ]);
        assert_eq!(text, "a: \"x\"\nb: -3\nc: null\nd: []\ne: \"0\"\n");
    }

    #[test]
    fn escapes_everything_yaml_would_misread() {
        let mut s = String::new();
        push_double_quoted(
            &mut s,
            "q\"b\\n\nt\tr\rz\0c\x07d\x7fe\u{85}f\u{2028}g\u{feff}é😀",
        );
        assert_eq!(s, r#""q\"b\\n\nt\tr\rz\0c\x07d\x7Fe\x85f\u2028g\uFEFFé😀""#);
    }

    #[test]
    fn round_trips_awkward_strings() {
        #[derive(Deserialize)]
        struct Kn {
            k: Option<String>,
            n: Int,
        }
        let strings = [
            "",
            "null",
            "~",
            "123",
            "true",
            "a: b #c",
            "'quoted'",
            "\"dq\"",
            "back\\slash",
            "  lead and trail  ",
            "line1\nline2\n",
            "\r\n\t\0\x01\x1b\x7f\u{85}\u{a0}\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}",
            "é ü 日本 😀",
            &"long word ".repeat(100),
        ];
        for s in strings {
            let text = write_mapping(&[("k", Out::Str(s)), ("n", Out::Int(7))]);
            let m: Kn = read(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
            assert_eq!(m.k.as_deref(), Some(s), "{text}");
            assert_eq!(m.n, Int(Some(7)));
        }
    }

    #[test]
    fn reads_every_scalar_style_pyyaml_writes() {
        #[derive(serde::Deserialize)]
        struct Case {
            name: String,
            yaml: String,
        }
        #[derive(Deserialize)]
        struct Meta {
            name: Option<String>,
            experiment_id: Option<String>,
            creation_time: Int,
            trace_location: Option<String>,
            lifecycle_stage: Option<String>,
            workspace: Option<String>,
        }
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("../tests/fixtures/pyyaml_meta.json")).unwrap();
        assert!(cases.len() > 40);
        for case in cases {
            let m: Meta =
                read(&case.yaml).unwrap_or_else(|e| panic!("{:?}: {e}\n{}", case.name, case.yaml));
            assert_eq!(
                m.name.as_deref(),
                Some(case.name.as_str()),
                "\n{}",
                case.yaml
            );
            assert_eq!(m.experiment_id.as_deref(), Some("1"));
            assert_eq!(m.creation_time, Int(Some(1795558091039)));
            assert_eq!(m.trace_location, None);
            assert_eq!(m.lifecycle_stage.as_deref(), Some("active"));
            assert_eq!(m.workspace.as_deref(), Some("default"));
        }
    }

    #[test]
    fn reads_mlflow_run_meta_and_legacy_forms() {
        // A run meta.yaml as MLflow 3.17 writes it, plus an old-style int experiment_id,
        // a comment, a document marker and a block list.
        #[derive(Deserialize)]
        struct Meta {
            artifact_uri: Option<String>,
            end_time: Int,
            entry_point_name: Option<String>,
            experiment_id: Option<String>,
            status: Int,
            tags: Int,
            other: Int,
            user_id: Option<String>,
            missing: Option<String>,
        }
        let text = "---\nartifact_uri: file:///tmp/ref/mlruns/0/b8e1/artifacts\nend_time: null\n\
                    entry_point_name: ''\nexperiment_id: 0\n# comment\nlifecycle_stage: active\n\
                    run_id: b8e1\nsource_type: 4\nstatus: 3 # finished\ntags: []\nother:\n- a\n- b\n\
                    user_id: root\n";
        let m: Meta = read(text).unwrap();
        assert_eq!(
            m.artifact_uri.as_deref(),
            Some("file:///tmp/ref/mlruns/0/b8e1/artifacts")
        );
        assert_eq!(m.end_time, Int(None));
        assert_eq!(m.entry_point_name.as_deref(), Some(""));
        assert_eq!(m.experiment_id.as_deref(), Some("0"));
        assert_eq!(m.status, Int(Some(3)));
        assert_eq!(m.tags, Int(None), "a collection where an int is expected");
        assert_eq!(m.other, Int(None));
        assert_eq!(m.user_id.as_deref(), Some("root"));
        assert_eq!(m.missing, None);
    }

    #[test]
    fn int_fields_take_only_plain_integers() {
        #[derive(Deserialize)]
        struct T {
            t: Int,
        }
        for (text, want) in [
            ("t: 1795558091039", Some(1795558091039)),
            ("t: -3", Some(-3)),
            ("t: '12'", None),
            ("t: 1e3", None),
            ("t: 1.5", None),
            ("t: true", None),
            ("t: 99999999999999999999", None),
            ("t: ~", None),
            ("t:", None),
            ("t: {a: 1}", None),
        ] {
            let m: T = read(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.t, Int(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_read_with_a_line_number() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)] // read only to fail
        struct Ab {
            a: Option<String>,
            b: Option<String>,
        }
        for (text, needle) in [
            ("a: 'open\n", "scanning a quoted scalar at line 1"),
            ("a: \"bad \\q\"\n", "unknown escape character at line 1"),
            ("a: \"x\" y\n", "at line 1 column 8"),
            ("just text\n", "invalid type"),
            ("a: [1]\n", "a: invalid type: sequence"),
            ("a: 1\nb: \"\\u12\"\n", "line 2"),
            ("a: 1\na: 2\n", "duplicate field `a`"),
        ] {
            let err = read::<Ab>(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
