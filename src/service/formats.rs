//! The file formats of the sync endpoints (`…/sync/push`, `…/sync/pull`,
//! `…/sync/diff`, which `coffer push`, `pull` and `diff` call): `.env`,
//! JSON and YAML, parsed and rendered here only, on the server.
//!
//! The `.env` dialect is the common one (dotenv, docker compose, dotenvy),
//! without interpolation:
//!
//! - `KEY=value`, optionally `export KEY=value`; spaces around `=` allowed;
//!   keys match `[A-Za-z_][A-Za-z0-9_]*` (the server's rule);
//! - blank lines and lines starting with `#` are skipped; in an unquoted
//!   value, `#` after whitespace starts a comment; trailing spaces dropped;
//! - `'single quotes'`: literal, may span lines;
//! - `"double quotes"`: `\n`, `\r`, `\t`, `\"`, `\\` (and `\$`) are escapes,
//!   any other backslash is kept; may span lines (literal newlines kept);
//! - `=` inside a value and any Unicode are plain characters.
//!
//! Parsing a `.env` file is all or nothing: the first bad line is reported
//! with its (1-based) number, and a key given twice is an error, so a push
//! never acts on a file it half understood. [`render`] writes the form
//! [`parse`] reads back to the same bytes.
//!
//! JSON and YAML files are one mapping of names to scalars (strings,
//! numbers, booleans, taken as their text); a name or a value that cannot
//! be a secret is reported per key by [`parse_file`], so a plan can name it.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

/// A line the parser refuses.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub(crate) struct ParseError {
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: String,
}

/// Longest key the server accepts.
const MAX_KEY: usize = 256;

/// Whether `key` is a valid variable name for the server.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
}

/// Parse a whole file into key → value, with the line each key is on.
pub(crate) fn parse(text: &str) -> Result<BTreeMap<String, (String, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut i = 0;
    let mut line = 1;
    let err = |line: usize, message: String| ParseError { line, message };
    while i < chars.len() {
        // One logical line starts here.
        let start_line = line;
        skip_blanks(&chars, &mut i);
        if i >= chars.len() {
            break;
        }
        match chars[i] {
            '\n' => {
                i += 1;
                line += 1;
                continue;
            }
            '\r' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
                continue;
            }
            '#' => {
                skip_to_eol(&chars, &mut i);
                continue;
            }
            _ => {}
        }
        let mut key = take_word(&chars, &mut i);
        if key == "export" && chars.get(i).is_some_and(|c| *c == ' ' || *c == '\t') {
            skip_blanks(&chars, &mut i);
            key = take_word(&chars, &mut i);
        }
        if key.is_empty() {
            return Err(err(start_line, "expected KEY=value".into()));
        }
        if !valid_key(&key) {
            return Err(err(
                start_line,
                format!("invalid key {key:?}: keys must match [A-Za-z_][A-Za-z0-9_]* (at most {MAX_KEY})"),
            ));
        }
        skip_blanks(&chars, &mut i);
        if chars.get(i) != Some(&'=') {
            return Err(err(start_line, format!("expected '=' after {key}")));
        }
        i += 1;
        skip_blanks(&chars, &mut i);
        let value = match chars.get(i) {
            Some(&q @ ('\'' | '"')) => {
                i += 1;
                let mut v = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(err(start_line, format!("unterminated {q}quoted{q} value of {key}")));
                    };
                    i += 1;
                    match c {
                        c if c == q => break,
                        '\\' if q == '"' => {
                            let next = chars.get(i).copied();
                            let esc = match next {
                                Some('n') => Some('\n'),
                                Some('r') => Some('\r'),
                                Some('t') => Some('\t'),
                                Some('"') => Some('"'),
                                Some('\\') => Some('\\'),
                                Some('$') => Some('$'),
                                _ => None,
                            };
                            match esc {
                                Some(e) => {
                                    v.push(e);
                                    i += 1;
                                }
                                None => v.push('\\'),
                            }
                        }
                        '\n' => {
                            line += 1;
                            v.push('\n');
                        }
                        c => v.push(c),
                    }
                }
                // Only blanks or a comment may follow the closing quote.
                skip_blanks(&chars, &mut i);
                match chars.get(i) {
                    None | Some('\n') => {}
                    Some('\r') if matches!(chars.get(i + 1), None | Some('\n')) => {}
                    Some('#') => skip_to_eol(&chars, &mut i),
                    Some(c) => {
                        return Err(err(line, format!("unexpected {c:?} after the quoted value of {key}")));
                    }
                }
                v
            }
            _ => {
                let mut v = String::new();
                // `#` after whitespace (also the blanks after `=`) starts a comment.
                let mut after_blank = i > 0 && matches!(chars[i - 1], ' ' | '\t');
                while let Some(&c) = chars.get(i) {
                    if c == '\n' || (c == '#' && after_blank) {
                        break;
                    }
                    after_blank = c == ' ' || c == '\t';
                    v.push(c);
                    i += 1;
                }
                skip_to_eol(&chars, &mut i);
                v.trim_end_matches([' ', '\t', '\r']).to_owned()
            }
        };
        if let Some((_, first)) = out.get(&key) {
            return Err(err(start_line, format!("{key} is given twice (first on line {first})")));
        }
        out.insert(key, (value, start_line));
    }
    Ok(out)
}

fn skip_blanks(chars: &[char], i: &mut usize) {
    while chars.get(*i).is_some_and(|c| *c == ' ' || *c == '\t') {
        *i += 1;
    }
}

/// Move to the line's `\n` (not past it).
fn skip_to_eol(chars: &[char], i: &mut usize) {
    while chars.get(*i).is_some_and(|c| *c != '\n') {
        *i += 1;
    }
}

/// A run of key characters (validated by the caller).
fn take_word(chars: &[char], i: &mut usize) -> String {
    let mut w = String::new();
    while let Some(&c) = chars.get(*i) {
        if c == '=' || c.is_whitespace() || c == '#' {
            break;
        }
        w.push(c);
        *i += 1;
    }
    w
}

/// A file format of the sync endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `KEY="value"` lines (the dialect above)
    #[default]
    Env,
    /// one JSON object
    Json,
    /// one YAML mapping
    Yaml,
}

/// One key of a parsed file: its value, or what is wrong with it, and its
/// line (`.env` only; 0 otherwise). Its Debug never shows the value.
pub struct Entry {
    /// the value, or why the key cannot be written
    pub value: Result<Zeroizing<String>, String>,
    /// 1-based line of a `.env` key; 0 for JSON and YAML
    pub line: usize,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("line", &self.line)
            .finish()
    }
}

/// A whole file, by key. A `.env` file that does not parse, or a JSON or
/// YAML document that is not one mapping, is refused as a whole (the
/// message names the line or the position, never a value); a bad key or
/// value inside a mapping is an [`Entry`] error.
pub fn parse_file(format: Format, text: &str) -> Result<BTreeMap<String, Entry>, String> {
    let map: BTreeMap<String, serde_json::Value> = match format {
        Format::Env => {
            let parsed = parse(text).map_err(|e| e.to_string())?;
            return Ok(parsed
                .into_iter()
                .map(|(k, (v, line))| {
                    let entry = Entry {
                        value: Ok(Zeroizing::new(v)),
                        line,
                    };
                    (k, entry)
                })
                .collect());
        }
        Format::Json => serde_json::from_str(text).map_err(|e| {
            format!(
                "not one JSON object of names to values ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?,
        // The library's default budget bounds depth, size and aliases.
        Format::Yaml if text.trim().is_empty() => BTreeMap::new(),
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| {
            // The library's message may quote the document: only where.
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            format!("not one YAML mapping of names to values{at}")
        })?,
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let value = if !valid_key(&k) {
                Err(format!(
                    "invalid key: keys must match [A-Za-z_][A-Za-z0-9_]* (at most {MAX_KEY} characters)"
                ))
            } else {
                scalar(v)
            };
            (k, Entry { value, line: 0 })
        })
        .collect())
}

/// A JSON or YAML value as a secret's text.
fn scalar(v: serde_json::Value) -> Result<Zeroizing<String>, String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Ok(Zeroizing::new(s)),
        Value::Bool(b) => Ok(Zeroizing::new(b.to_string())),
        Value::Number(n) => Ok(Zeroizing::new(n.to_string())),
        Value::Null => Err("the value is null: only strings, numbers and booleans can be values".into()),
        Value::Array(_) => Err("the value is a list: only strings, numbers and booleans can be values".into()),
        Value::Object(_) => Err("the value is a mapping: only strings, numbers and booleans can be values".into()),
    }
}

/// Render values in `format`, sorted by key; [`parse_file`] reads the
/// result back to exactly the same values.
pub fn render_as(format: Format, values: &BTreeMap<String, Zeroizing<String>>) -> Result<Zeroizing<String>, String> {
    let plain = |v: &Zeroizing<String>| v.as_str().to_owned();
    let text = match format {
        Format::Env => render(&values.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        Format::Json => {
            let map: BTreeMap<&str, &str> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut s = serde_json::to_string_pretty(&map).map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
        Format::Yaml if values.is_empty() => "{}\n".to_owned(),
        Format::Yaml => {
            let mut out = String::new();
            for (k, v) in values {
                yaml_quote(&mut out, k);
                out.push_str(": ");
                yaml_quote(&mut out, v);
                out.push('\n');
            }
            out
        }
    };
    Ok(Zeroizing::new(text))
}

/// Append `s` as a YAML double-quoted scalar: `\\` and `"` escaped, and
/// every character YAML does not take as it is written as an escape — C0
/// and C1 controls, DEL, U+FFFE/U+FFFF (outside YAML's printable set, a
/// parser refuses them), U+0085, U+2028/U+2029 (line breaks to YAML 1.1
/// readers) and U+FEFF (a byte order mark). A JSON string is not enough:
/// JSON leaves DEL and the C1 controls as they are (found by fuzzing,
/// `fuzz/corpus/env_file/yaml-del-c1`).
fn yaml_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c < ' '
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') =>
            {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Render values as `KEY="value"` lines, sorted by key, that [`parse`]
/// reads back to exactly the same values.
pub(crate) fn render(values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in values {
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push_str("\"\n");
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn values(text: &str) -> BTreeMap<String, String> {
        parse(text).unwrap().into_iter().map(|(k, (v, _))| (k, v)).collect()
    }

    #[test]
    fn common_dialect() {
        let text = "# comment\n\
                    \n\
                    PLAIN=hello world  # trailing comment\n\
                    export EXPORTED=yes\n\
                    SPACED = value \n\
                    EQ=a=b==c\n\
                    HASH=a#b\n\
                    NOVAL= # only a comment\n\
                    SINGLE='lit \\n $x \"q\"' # c\n\
                    DOUBLE=\"tab\\tnl\\nq\\\"bs\\\\ \\x\"\n\
                    MULTI=\"line1\n\
                    line2 'x'\n\
                    \"\n\
                    SMULTI='a\n\
                    b'\n\
                    EMPTY=\n\
                    EMPTYQ=\"\"\n\
                    UNI=héllo ✓ ключ\n\
                    CRLF=v\r\n";
        let v = values(text);
        assert_eq!(v["PLAIN"], "hello world");
        assert_eq!(v["EXPORTED"], "yes");
        assert_eq!(v["SPACED"], "value");
        assert_eq!(v["EQ"], "a=b==c");
        assert_eq!(v["HASH"], "a#b");
        assert_eq!(v["NOVAL"], "");
        assert_eq!(v["SINGLE"], "lit \\n $x \"q\"");
        assert_eq!(v["DOUBLE"], "tab\tnl\nq\"bs\\ \\x");
        assert_eq!(v["MULTI"], "line1\nline2 'x'\n");
        assert_eq!(v["SMULTI"], "a\nb");
        assert_eq!(v["EMPTY"], "");
        assert_eq!(v["EMPTYQ"], "");
        assert_eq!(v["UNI"], "héllo ✓ ключ");
        assert_eq!(v["CRLF"], "v");
        // Line numbers count the lines of multi-line values.
        let parsed = parse(text).unwrap();
        assert_eq!(parsed["SMULTI"].1, 14);
        assert_eq!(parsed["EMPTY"].1, 16);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let cases = [
            ("A=1\nnot a pair\n", 2),
            ("A=1\n\nB\n", 3),
            ("A=1\n1A=x\n", 2),
            ("A=1\nDB-URL=x\n", 2),
            ("A=\"open\nB=2\n", 1),
            ("A='x' tail\n", 1),
            ("A=1\nA=2\n", 2),
            ("A=\"a\nb\" junk\n", 2),
        ];
        for (text, line) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn render_round_trips() {
        let v: BTreeMap<String, String> = [
            ("A", "plain"),
            ("B", "quotes ' \" and \\ backslash"),
            ("C", "multi\nline\r\n\ttab"),
            ("D", "x=y=z # not a comment"),
            ("E", "ünïcødé ✓"),
            ("F", ""),
            ("G", "$HOME ${X}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(values(&render(&v)), v);
    }

    #[test]
    fn every_format_round_trips_and_names_bad_keys() {
        let v: BTreeMap<String, Zeroizing<String>> = [
            ("A", "plain"),
            ("B", "quotes ' \" and \\ backslash: # x"),
            ("C", "multi\nline\r\n\ttab"),
            ("D", "true"),
            ("E", "ünïcødé ✓"),
            ("F", ""),
            ("G", "${X} 0012"),
            // outside YAML's printable set or line breaks to some readers
            (
                "H",
                "del \u{7f} c1 \u{80}\u{85}\u{9f} nul \0 esc \u{1b} ls \u{2028}\u{2029} bom \u{feff} \u{fffe}\u{ffff}",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Zeroizing::new(v.to_owned())))
        .collect();
        for f in [Format::Env, Format::Json, Format::Yaml] {
            let text = render_as(f, &v).unwrap();
            let back = parse_file(f, &text).unwrap();
            let back: BTreeMap<String, Zeroizing<String>> =
                back.into_iter().map(|(k, e)| (k, e.value.unwrap())).collect();
            assert_eq!(back, v, "{f:?}: {}", text.as_str());
            let empty = render_as(f, &BTreeMap::new()).unwrap();
            assert!(parse_file(f, &empty).unwrap().is_empty(), "{f:?}");
        }
        let json = parse_file(
            Format::Json,
            r#"{"PORT": 8080, "ON": true, "1X": "a", "L": [1], "N": null}"#,
        )
        .unwrap();
        assert_eq!(json["PORT"].value.as_deref().map(String::as_str), Ok("8080"));
        assert_eq!(json["ON"].value.as_deref().map(String::as_str), Ok("true"));
        assert!(json["1X"].value.as_ref().is_err_and(|e| e.contains("invalid key")));
        assert!(json["L"].value.as_ref().is_err_and(|e| e.contains("list")));
        assert!(json["N"].value.as_ref().is_err_and(|e| e.contains("null")));
        let yaml = parse_file(Format::Yaml, "PORT: 8080\nNAME: app\nNESTED:\n  a: 1\n").unwrap();
        assert_eq!(yaml["NAME"].value.as_deref().map(String::as_str), Ok("app"));
        assert!(yaml["NESTED"].value.as_ref().is_err_and(|e| e.contains("mapping")));
        for (f, text) in [
            (Format::Json, "[1,2]"),
            (Format::Yaml, "- s3cret\n"),
            (Format::Json, "{\"A\": \"s3cret"),
        ] {
            let e = parse_file(f, text).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
