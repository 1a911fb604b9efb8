//! Just enough YAML for MLflow's meta.yaml files: a flat mapping of scalars.
//!
//! MLflow writes meta.yaml with PyYAML and reads it with `yaml.safe_load`. The files are a
//! single block mapping whose values are scalars (plus `tags: []`), so a YAML library is not
//! needed to write them:
//! - **Writing** puts every string in double quotes with escapes, which is unambiguous YAML
//!   whatever the string holds (`null`, `123`, `: #`, quotes, newlines, control characters,
//!   U+0085/U+2028 that YAML treats as line breaks); integers and `null` are written plain.
//! - **Reading** must understand what PyYAML writes for experiments MLflow created: plain,
//!   single-quoted and double-quoted scalars, folded over several lines when long. The scanner
//!   below follows PyYAML's own scanner (`scan_flow_scalar*`, `scan_plain*`) for those cases
//!   and is tested against PyYAML output in `tests/fixtures/pyyaml_meta.json`.

/// A value read from a meta.yaml mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    /// `null`, `~` or nothing.
    Null,
    /// An unquoted scalar other than null, as text (`0`, `active`, `1795558091039`).
    Plain(String),
    /// A quoted scalar: always a string.
    Quoted(String),
    /// A flow or block collection (e.g. `tags: []`); its content is not needed.
    Collection,
}

impl Scalar {
    /// The text of a string-like value: quoted strings and plain scalars (MLflow reads legacy
    /// `experiment_id: 0` as an int and converts it to "0", which this gives too).
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Scalar::Plain(s) | Scalar::Quoted(s) => Some(s),
            Scalar::Null | Scalar::Collection => None,
        }
    }

    /// A plain decimal integer.
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Scalar::Plain(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// The top-level mapping of a meta.yaml, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapping(Vec<(String, Scalar)>);

impl Mapping {
    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&Scalar> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

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

/// Parses a meta.yaml: a block mapping of scalars at column 0. The error says where and why.
pub(crate) fn parse_mapping(text: &str) -> Result<Mapping, String> {
    let mut sc = Scanner {
        c: text.chars().collect(),
        i: 0,
    };
    if sc.peek(0) == '\u{feff}' {
        sc.i += 1;
    }
    let mut entries = Vec::new();
    loop {
        sc.skip_blank_and_comment_lines();
        if sc.at_document_marker("---") {
            sc.skip_line();
            continue;
        }
        if sc.peek(0) == '\0' || sc.at_document_marker("...") {
            break;
        }
        if matches!(sc.peek(0), ' ' | '\t') {
            return Err(sc.error("unexpected indentation (only a flat mapping is supported)"));
        }
        let key = sc.key()?;
        while matches!(sc.peek(0), ' ' | '\t') {
            sc.i += 1;
        }
        let value = match sc.peek(0) {
            '"' => Scalar::Quoted(sc.quoted(true)?),
            '\'' => Scalar::Quoted(sc.quoted(false)?),
            '[' | '{' => {
                sc.skip_line();
                sc.skip_indented_lines();
                Scalar::Collection
            }
            c if c == '\0' || c == '#' || is_break(c) => {
                sc.skip_line();
                if sc.skip_indented_lines() {
                    Scalar::Collection
                } else {
                    Scalar::Null
                }
            }
            _ => match sc.plain() {
                s if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL") => Scalar::Null,
                s => Scalar::Plain(s),
            },
        };
        sc.end_of_value()?;
        entries.push((key, value));
    }
    Ok(Mapping(entries))
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

struct Scanner {
    c: Vec<char>,
    i: usize,
}

impl Scanner {
    fn peek(&self, k: usize) -> char {
        self.c.get(self.i + k).copied().unwrap_or('\0')
    }

    fn line_number(&self) -> usize {
        1 + self.c[..self.i.min(self.c.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count()
    }

    fn error(&self, what: &str) -> String {
        format!("line {}: {what}", self.line_number())
    }

    fn column(&self) -> usize {
        self.c[..self.i]
            .iter()
            .rev()
            .take_while(|&&c| !is_break(c))
            .count()
    }

    fn at_document_marker(&self, marker: &str) -> bool {
        self.column() == 0
            && marker.chars().enumerate().all(|(k, m)| self.peek(k) == m)
            && (matches!(self.peek(3), '\0' | ' ' | '\t') || is_break(self.peek(3)))
    }

    /// Consumes the rest of the current line including its line break.
    fn skip_line(&mut self) {
        while self.peek(0) != '\0' && !is_break(self.peek(0)) {
            self.i += 1;
        }
        self.line_break();
    }

    fn skip_blank_and_comment_lines(&mut self) {
        loop {
            let mut k = 0;
            while matches!(self.peek(k), ' ' | '\t') {
                k += 1;
            }
            let c = self.peek(k);
            if c == '\0' {
                self.i += k;
                return;
            }
            if c == '#' || is_break(c) {
                self.i += k;
                self.skip_line();
            } else {
                return;
            }
        }
    }

    /// Skips the lines of a nested collection (indented, or `- ` items at column 0, or blank);
    /// says whether there were any.
    fn skip_indented_lines(&mut self) -> bool {
        let mut any = false;
        loop {
            let c = self.peek(0);
            let item =
                c == '-' && (matches!(self.peek(1), '\0' | ' ' | '\t') || is_break(self.peek(1)));
            if matches!(c, ' ' | '\t') || item || (is_break(c) && c != '\0') {
                any |= !is_break(c);
                self.skip_line();
            } else {
                return any;
            }
        }
    }

    /// PyYAML's `scan_line_break`: CR LF, CR, LF and NEL become `\n`; LS and PS stay.
    fn line_break(&mut self) -> Option<char> {
        match self.peek(0) {
            '\r' if self.peek(1) == '\n' => {
                self.i += 2;
                Some('\n')
            }
            '\r' | '\n' | '\u{85}' => {
                self.i += 1;
                Some('\n')
            }
            c @ ('\u{2028}' | '\u{2029}') => {
                self.i += 1;
                Some(c)
            }
            _ => None,
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.i;
        while self.peek(0) != '\0'
            && !is_break(self.peek(0))
            && !(self.peek(0) == ':' && matches!(self.peek(1), '\0' | ' ' | '\t' | '\r' | '\n'))
        {
            self.i += 1;
        }
        let key: String = self.c[start..self.i].iter().collect();
        let key = key.trim_end().to_owned();
        if self.peek(0) != ':' || key.is_empty() {
            return Err(self.error("expected `key: value`"));
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(self.error(&format!("unsupported key {key:?}")));
        }
        self.i += 1;
        Ok(key)
    }

    /// After a value: optional spaces and comment, then a line break or the end.
    fn end_of_value(&mut self) -> Result<(), String> {
        while matches!(self.peek(0), ' ' | '\t') {
            self.i += 1;
        }
        if self.peek(0) == '#' {
            self.skip_line();
            return Ok(());
        }
        if self.peek(0) == '\0' || self.line_break().is_some() {
            return Ok(());
        }
        // A plain scalar that stopped at column 0 of the next line has consumed the break.
        if self.column() == 0 {
            return Ok(());
        }
        Err(self.error(&format!("unexpected {:?} after the value", self.peek(0))))
    }

    /// PyYAML's `scan_flow_scalar_breaks`.
    fn flow_breaks(&mut self) -> Vec<char> {
        let mut breaks = Vec::new();
        loop {
            while matches!(self.peek(0), ' ' | '\t') {
                self.i += 1;
            }
            match self.line_break() {
                Some(b) => breaks.push(b),
                None => return breaks,
            }
        }
    }

    /// A single- or double-quoted scalar (PyYAML's `scan_flow_scalar`).
    fn quoted(&mut self, double: bool) -> Result<String, String> {
        let quote = self.peek(0);
        self.i += 1;
        let mut out = String::new();
        loop {
            // Non-space runs, quotes and escapes.
            loop {
                let c = self.peek(0);
                if !double && c == '\'' && self.peek(1) == '\'' {
                    out.push('\'');
                    self.i += 2;
                } else if (double && c == '\'') || (!double && (c == '"' || c == '\\')) {
                    out.push(c);
                    self.i += 1;
                } else if double && c == '\\' {
                    self.escape(&mut out)?;
                } else if c != '\0'
                    && c != quote
                    && c != '\\'
                    && !matches!(c, ' ' | '\t')
                    && !is_break(c)
                {
                    out.push(c);
                    self.i += 1;
                } else {
                    break;
                }
            }
            if self.peek(0) == quote {
                self.i += 1;
                return Ok(out);
            }
            // Spaces and line folding (PyYAML's `scan_flow_scalar_spaces`).
            let start = self.i;
            while matches!(self.peek(0), ' ' | '\t') {
                self.i += 1;
            }
            let c = self.peek(0);
            if c == '\0' {
                return Err(self.error("unterminated quoted scalar"));
            }
            if is_break(c) {
                let first = self.line_break().unwrap_or('\n');
                let breaks = self.flow_breaks();
                if first != '\n' {
                    out.push(first);
                } else if breaks.is_empty() {
                    out.push(' ');
                }
                out.extend(breaks);
            } else {
                out.extend(&self.c[start..self.i]);
            }
        }
    }

    /// One backslash escape in a double-quoted scalar.
    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let e = self.peek(1);
        let simple = match e {
            '0' => Some('\0'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            't' | '\t' => Some('\t'),
            'n' => Some('\n'),
            'v' => Some('\x0b'),
            'f' => Some('\x0c'),
            'r' => Some('\r'),
            'e' => Some('\x1b'),
            ' ' => Some(' '),
            '"' => Some('"'),
            '/' => Some('/'),
            '\\' => Some('\\'),
            'N' => Some('\u{85}'),
            '_' => Some('\u{a0}'),
            'L' => Some('\u{2028}'),
            'P' => Some('\u{2029}'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            self.i += 2;
            return Ok(());
        }
        let digits = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            c if is_break(c) => {
                // Escaped line break: nothing, then any further (empty-line) breaks.
                self.i += 1;
                self.line_break();
                out.extend(self.flow_breaks());
                return Ok(());
            }
            c => return Err(self.error(&format!("unknown escape \\{c}"))),
        };
        let hex: String = (0..digits).map(|k| self.peek(2 + k)).collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == digits && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .and_then(char::from_u32)
            .ok_or_else(|| self.error(&format!("bad escape \\{e}{hex}")))?;
        out.push(code);
        self.i += 2 + digits;
        Ok(())
    }

    /// A plain scalar in block context at mapping indent 0 (PyYAML's `scan_plain`): it goes on
    /// over lines indented by at least one space.
    fn plain(&mut self) -> String {
        let mut out = String::new();
        let mut spaces: Vec<char> = Vec::new();
        loop {
            if self.peek(0) == '#' {
                break;
            }
            let start = self.i;
            loop {
                let c = self.peek(0);
                let ends = c == '\0'
                    || matches!(c, ' ' | '\t')
                    || is_break(c)
                    || (c == ':' && {
                        let n = self.peek(1);
                        matches!(n, '\0' | ' ' | '\t') || is_break(n)
                    });
                if ends {
                    break;
                }
                self.i += 1;
            }
            if self.i == start {
                break;
            }
            out.extend(spaces.drain(..));
            out.extend(&self.c[start..self.i]);
            spaces = self.plain_spaces();
            if spaces.is_empty() || self.peek(0) == '#' || self.column() < 1 {
                break;
            }
        }
        out
    }

    /// PyYAML's `scan_plain_spaces`.
    fn plain_spaces(&mut self) -> Vec<char> {
        let start = self.i;
        while self.peek(0) == ' ' {
            self.i += 1;
        }
        let whitespace: Vec<char> = self.c[start..self.i].to_vec();
        if !is_break(self.peek(0)) || self.peek(0) == '\0' {
            return whitespace;
        }
        let first = self.line_break().unwrap_or('\n');
        let mut breaks = Vec::new();
        loop {
            match self.peek(0) {
                ' ' => self.i += 1,
                c if is_break(c) => breaks.extend(self.line_break()),
                _ => break,
            }
        }
        let mut chunks = Vec::new();
        if first != '\n' {
            chunks.push(first);
        } else if breaks.is_empty() {
            chunks.push(' ');
        }
        chunks.extend(breaks);
        chunks
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
            let m = parse_mapping(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
            assert_eq!(m.get("k"), Some(&Scalar::Quoted(s.to_owned())), "{text}");
            assert_eq!(m.get("n").and_then(Scalar::int), Some(7));
        }
    }

    #[test]
    fn reads_every_scalar_style_pyyaml_writes() {
        #[derive(serde::Deserialize)]
        struct Case {
            name: String,
            yaml: String,
        }
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("../tests/fixtures/pyyaml_meta.json")).unwrap();
        assert!(cases.len() > 40);
        for case in cases {
            let m = parse_mapping(&case.yaml)
                .unwrap_or_else(|e| panic!("{:?}: {e}\n{}", case.name, case.yaml));
            assert_eq!(
                m.get("name").and_then(Scalar::text),
                Some(case.name.as_str()),
                "\n{}",
                case.yaml
            );
            assert_eq!(m.get("experiment_id").and_then(Scalar::text), Some("1"));
            assert_eq!(
                m.get("creation_time").and_then(Scalar::int),
                Some(1795558091039)
            );
            assert_eq!(m.get("trace_location"), Some(&Scalar::Null));
            assert_eq!(
                m.get("lifecycle_stage").and_then(Scalar::text),
                Some("active")
            );
            assert_eq!(m.get("workspace").and_then(Scalar::text), Some("default"));
        }
    }

    #[test]
    fn reads_mlflow_run_meta_and_legacy_forms() {
        // A run meta.yaml as MLflow 3.17 writes it, plus an old-style int experiment_id,
        // a comment, a document marker and a block list.
        let text = "---\nartifact_uri: file:///tmp/ref/mlruns/0/b8e1/artifacts\nend_time: null\n\
                    entry_point_name: ''\nexperiment_id: 0\n# comment\nlifecycle_stage: active\n\
                    run_id: b8e1\nsource_type: 4\nstatus: 3 # finished\ntags: []\nother:\n- a\n- b\n\
                    user_id: root\n";
        let m = parse_mapping(text).unwrap();
        assert_eq!(
            m.get("artifact_uri").and_then(Scalar::text),
            Some("file:///tmp/ref/mlruns/0/b8e1/artifacts")
        );
        assert_eq!(m.get("end_time"), Some(&Scalar::Null));
        assert_eq!(
            m.get("entry_point_name"),
            Some(&Scalar::Quoted(String::new()))
        );
        assert_eq!(m.get("experiment_id").and_then(Scalar::text), Some("0"));
        assert_eq!(m.get("status").and_then(Scalar::int), Some(3));
        assert_eq!(m.get("tags"), Some(&Scalar::Collection));
        assert_eq!(m.get("other"), Some(&Scalar::Collection));
        assert_eq!(m.get("user_id").and_then(Scalar::text), Some("root"));
        assert_eq!(m.get("missing"), None);
    }

    #[test]
    fn rejects_what_it_cannot_read_with_a_line_number() {
        for (text, needle) in [
            ("a: 'open\n", "unterminated"),
            ("a: \"bad \\q\"\n", "unknown escape"),
            ("a: \"x\" y\n", "after the value"),
            ("  a: 1\n", "indentation"),
            ("just text\n", "expected `key: value`"),
            ("a: 1\nb: \"\\u12\"\n", "line 2"),
        ] {
            let err = parse_mapping(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
