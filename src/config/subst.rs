//! `${NAME}` / `${NAME:default}` resolved scalar by scalar, so that a value
//! keeps the type it stands for and never changes the file's structure.
//!
//! Each `${...}` is resolved within the YAML scalar that holds it:
//!
//! - a plain scalar that is exactly one `${NAME}` becomes the value itself:
//!   a value from the environment as a double-quoted (so string) scalar, a
//!   `values.yml` value as its YAML type (text quoted, numbers and flags
//!   plain, lists and maps in flow style), a default as written (an empty
//!   default is the empty string);
//! - a plain scalar with text around its `${...}` becomes one double-quoted
//!   scalar: the text with the values interpolated;
//! - inside a quoted scalar, values are escaped for its quotes.
//!
//! `007`, `yes`, `svc #1`, `0x1F` or `a: b, "y` from the environment thus
//! stay the text they are; fields that want a number or a flag parse the text
//! (see `files::lenient`) and say where when it does not parse.

use super::source::{ConfigError, ConfigErrorKind};
use std::path::Path;

/// What a `${NAME}` stands for.
#[derive(Clone, Debug)]
pub(crate) enum Resolved {
    /// A value from the environment: text.
    Env(String),
    /// A value of `values.yml`, with its YAML type.
    Value(serde_json::Value),
}

/// Where the text of one output line came from: for each rewritten piece,
/// the column (1-based) it starts at in the output, its length there, the
/// column it starts at in the file and its length there.
#[derive(Clone, Debug, Default)]
pub(crate) struct LineMap {
    pub(crate) spans: Vec<(u64, u64, u64, u64)>,
}

impl LineMap {
    /// The column in the file of output column `column`.
    pub(crate) fn original(&self, column: u64) -> u64 {
        let mut shift: i64 = 0;
        for &(out_start, out_len, in_start, in_len) in &self.spans {
            if column < out_start {
                break;
            }
            if column < out_start + out_len.max(1) {
                return in_start;
            }
            shift = in_start as i64 + in_len as i64 - (out_start as i64 + out_len as i64);
        }
        (column as i64 + shift).max(1) as u64
    }
}

/// A `${...}` that stands for a list or a map: where it landed in the output.
#[derive(Clone, Debug)]
pub(crate) struct NonScalar {
    pub(crate) line: u64,
    pub(crate) out_start: u64,
    pub(crate) out_end: u64,
    pub(crate) name: String,
}

/// One `${...}` of a line: byte range in the line, name, default.
struct Expr<'a> {
    start: usize,
    end: usize,
    name: &'a str,
    default: Option<&'a str>,
}

/// The `${...}` starting at byte `start` (braces inside a default nest).
fn expr_at(line: &str, start: usize) -> Option<Expr<'_>> {
    let mut depth = 0usize;
    for (i, c) in line[start + 1..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let end = start + 1 + i + 1;
                    let inner = &line[start + 2..end - 1];
                    let (name, default) = match inner.split_once(':') {
                        Some((n, d)) => (n.trim(), Some(d)),
                        None => (inner.trim(), None),
                    };
                    return Some(Expr {
                        start,
                        end,
                        name,
                        default,
                    });
                }
            }
            _ => {}
        }
    }
    None
}

fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

/// Where a line's comment starts (a `#` at the start or after a blank,
/// outside quotes and outside `${...}`).
fn comment_start(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (None, b'$') if bytes.get(i + 1) == Some(&b'{') => {
                if let Some(e) = expr_at(line, i) {
                    i = e.end;
                    continue;
                }
            }
            (None, b'"' | b'\'') if i == 0 || b" \t[{,:-".contains(&bytes[i - 1]) => {
                quote = Some(b)
            }
            (Some(b'"'), b'\\') => i += 1,
            (Some(q), b) if q == b => quote = None,
            (None, b'#') if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' => return i,
            _ => {}
        }
        i += 1;
    }
    line.len()
}

/// The byte range of the scalar holding byte `at` (before `limit`).
fn scalar_around(line: &str, at: usize, limit: usize) -> (usize, usize) {
    let bytes = line.as_bytes();
    // Flow context: an unclosed `[` or `{` before `at`, outside quotes.
    let mut depth = 0i32;
    let mut last_sep: Option<usize> = None;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < at {
        let b = bytes[i];
        match (quote, b) {
            (None, b'$') if bytes.get(i + 1) == Some(&b'{') => {
                if let Some(e) = expr_at(line, i) {
                    i = e.end;
                    continue;
                }
            }
            (None, b'"' | b'\'') if i == 0 || b" \t[{,".contains(&bytes[i - 1]) => quote = Some(b),
            (Some(b'"'), b'\\') => i += 1,
            (Some(q), b) if q == b => quote = None,
            (None, b'[' | b'{') => {
                depth += 1;
                last_sep = Some(i);
            }
            (None, b']' | b'}') => depth -= 1,
            (None, b',') if depth > 0 => last_sep = Some(i),
            (None, b':') if depth > 0 && bytes.get(i + 1) == Some(&b' ') => last_sep = Some(i),
            _ => {}
        }
        i += 1;
    }
    let skip_blank = |mut s: usize| {
        while s < at && (bytes[s] == b' ' || bytes[s] == b'\t') {
            s += 1;
        }
        s
    };
    if depth > 0 {
        let start = skip_blank(last_sep.map_or(0, |s| s + 1));
        let mut end = at;
        let mut j = at;
        while j < limit {
            if bytes[j] == b'$'
                && bytes.get(j + 1) == Some(&b'{')
                && let Some(e) = expr_at(line, j)
            {
                j = e.end;
                end = j;
                continue;
            }
            if b",]}".contains(&bytes[j]) {
                break;
            }
            j += 1;
            end = j;
        }
        return (start, line[..end].trim_end().len());
    }
    // Block context: after the indentation, list dashes and the key.
    let mut start = skip_blank(0);
    while line[start..].starts_with("- ") {
        start = skip_blank(start + 2);
    }
    if let Some(colon) = key_colon(&line[start..at]) {
        start = skip_blank(start + colon + 1);
    }
    (start, line[..limit].trim_end().len())
}

/// The `:` that ends a block key in `prefix` (outside quotes and `${}`).
fn key_colon(prefix: &str) -> Option<usize> {
    let bytes = prefix.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (None, b'$') if bytes.get(i + 1) == Some(&b'{') => return None,
            (None, b'"' | b'\'') if i == 0 => quote = Some(bytes[i]),
            (Some(q), b) if q == b => quote = None,
            (None, b':') if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) => {
                return Some(i);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Text for a double-quoted YAML scalar.
fn escape_double(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Rewrites one line. `line_no` is 1-based.
pub(crate) fn line(
    path: &Path,
    line_no: u64,
    line: &str,
    lookup: &dyn Fn(&str) -> Option<Resolved>,
    out: &mut String,
    map: &mut LineMap,
    non_scalars: &mut Vec<NonScalar>,
) -> Result<(), ConfigError> {
    let limit = comment_start(line);
    let mut copied = 0; // bytes of `line` already handled
    let mut out_col = 1u64; // next output column
    let mut search = 0;
    let resolve = |e: &Expr<'_>| -> Result<Option<Resolved>, ConfigError> {
        Ok(match lookup(e.name) {
            Some(value) => Some(value),
            None if e.default.is_some() => None,
            None => {
                return Err(ConfigError::new(
                    ConfigErrorKind::MissingVariable,
                    path,
                    (line_no, chars(&line[..e.start]) + 1),
                    format!(
                        "`${{{}}}` has no value (not in the environment, nor in values.yml) and no default",
                        e.name
                    ),
                ));
            }
        })
    };
    while let Some(found) = line[search..limit].find("${") {
        let at = search + found;
        let Some(first) = expr_at(line, at) else {
            return Err(ConfigError::new(
                ConfigErrorKind::Syntax,
                path,
                (line_no, chars(&line[..at]) + 1),
                "a `${` without its closing `}`",
            ));
        };
        let (start, end) = scalar_around(line, at, limit);
        // Never before what is already written, never short of the `}`.
        let start = start.max(copied).min(at);
        let end = end.max(first.end);
        // Everything before the scalar is copied as it is.
        let before = &line[copied..start];
        out.push_str(before);
        out_col += chars(before);
        let scalar = &line[start..end];
        let in_col = chars(&line[..start]) + 1;
        let out_start = out_col;
        let mut piece = String::new();
        let quote = scalar
            .as_bytes()
            .first()
            .copied()
            .filter(|q| *q == b'"' || *q == b'\'');
        // The `${...}` of this scalar.
        let mut exprs = Vec::new();
        let mut k = at;
        while k < end {
            match line[k..end].find("${") {
                Some(f) => {
                    let Some(e) = expr_at(line, k + f) else { break };
                    k = e.end;
                    exprs.push(e);
                }
                None => break,
            }
        }
        let whole =
            quote.is_none() && exprs.len() == 1 && exprs[0].start == start && exprs[0].end == end;
        if whole {
            let e = &exprs[0];
            match resolve(e)? {
                Some(Resolved::Env(text)) => {
                    piece.push('"');
                    escape_double(&text, &mut piece);
                    piece.push('"');
                }
                Some(Resolved::Value(value)) => {
                    if matches!(
                        value,
                        serde_json::Value::Array(_) | serde_json::Value::Object(_)
                    ) {
                        let text = value.to_string();
                        non_scalars.push(NonScalar {
                            line: line_no,
                            out_start,
                            out_end: out_start + chars(&text),
                            name: e.name.to_owned(),
                        });
                        piece.push_str(&text);
                    } else {
                        piece.push_str(&value.to_string());
                    }
                }
                None => {
                    let default = e.default.unwrap_or("");
                    if default.trim().is_empty() {
                        piece.push_str("\"\"");
                    } else {
                        piece.push_str(default);
                    }
                }
            }
            // Map only the `${...}` itself.
            let len = chars(&piece);
            map.spans.push((out_start, len, in_col, chars(scalar)));
        } else {
            let mut last = start;
            let inner_quote = quote.unwrap_or(b'"');
            if quote.is_none() {
                piece.push('"');
            }
            for e in &exprs {
                let literal = &line[last..e.start];
                if quote.is_none() {
                    escape_double(literal, &mut piece);
                } else {
                    piece.push_str(literal);
                }
                let text = match resolve(e)? {
                    Some(Resolved::Env(text)) => text,
                    Some(Resolved::Value(serde_json::Value::String(text))) => text,
                    Some(Resolved::Value(
                        serde_json::Value::Array(_) | serde_json::Value::Object(_),
                    )) => {
                        return Err(ConfigError::new(
                            ConfigErrorKind::WrongType,
                            path,
                            (line_no, chars(&line[..e.start]) + 1),
                            format!(
                                "`${{{}}}` is a list or a map in values.yml: it cannot be part of a text",
                                e.name
                            ),
                        ));
                    }
                    Some(Resolved::Value(other)) => other.to_string(),
                    None => e.default.unwrap_or("").to_owned(),
                };
                if inner_quote == b'\'' {
                    piece.push_str(&text.replace('\'', "''"));
                } else {
                    escape_double(&text, &mut piece);
                }
                last = e.end;
            }
            let rest = &line[last..end];
            if quote.is_none() {
                escape_double(rest, &mut piece);
                piece.push('"');
            } else {
                piece.push_str(rest);
            }
            map.spans
                .push((out_start, chars(&piece), in_col, chars(scalar)));
        }
        out.push_str(&piece);
        out_col += chars(&piece);
        copied = end;
        search = end;
        if search >= limit {
            break;
        }
    }
    out.push_str(&line[copied..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, env: &[(&str, &str)]) -> String {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| Resolved::Env((*v).to_owned()))
        };
        let mut out = String::new();
        for (i, l) in text.split_inclusive('\n').enumerate() {
            line(
                Path::new("f.yml"),
                i as u64 + 1,
                l,
                &lookup,
                &mut out,
                &mut LineMap::default(),
                &mut Vec::new(),
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn whole_scalars_from_the_environment_are_quoted_text() {
        assert_eq!(run("a: ${X}\n", &[("X", "007")]), "a: \"007\"\n");
        assert_eq!(
            run("a: ${X} # c ${Y}\n", &[("X", "svc #1")]),
            "a: \"svc #1\" # c ${Y}\n"
        );
        assert_eq!(
            run("- ${X}\n", &[("X", "a: b, \"y")]),
            "- \"a: b, \\\"y\"\n"
        );
        assert_eq!(run("a: [x, ${X}]\n", &[("X", "yes")]), "a: [x, \"yes\"]\n");
    }

    #[test]
    fn defaults_are_written_as_they_are_and_empty_ones_are_empty_text() {
        assert_eq!(run("a: ${X:false}\nb: ${Y:}\n", &[]), "a: false\nb: \"\"\n");
        assert_eq!(run("h: ${H:[\"a\", \"b\"]}\n", &[]), "h: [\"a\", \"b\"]\n");
        assert_eq!(
            run("k: ${K:{\"kid\":\"100\"}}\n", &[]),
            "k: {\"kid\":\"100\"}\n"
        );
    }

    #[test]
    fn text_around_a_variable_makes_one_quoted_scalar() {
        assert_eq!(
            run("u: ${A:user}:${B:pw}\n", &[("B", "p\"w")]),
            "u: \"user:p\\\"w\"\n"
        );
        assert_eq!(run("u: 'x-${A}'\n", &[("A", "it's")]), "u: 'x-it''s'\n");
        assert_eq!(
            run("u: \"x-${A}\"\n", &[("A", "a\"b")]),
            "u: \"x-a\\\"b\"\n"
        );
    }

    #[test]
    fn no_line_makes_it_panic() {
        let pieces = [
            "key: ",
            "- ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "\"",
            "'",
            " #",
            " ",
            "${X}",
            "${Y:d}",
            "${Z:{\"a\":1}}",
            "é",
            "${",
            ":",
            "\\",
        ];
        let lookup = |name: &str| match name {
            "X" => Some(Resolved::Env("a: b, \"y".into())),
            "Y" => Some(Resolved::Value(serde_json::json!([1, "x"]))),
            _ => None,
        };
        let n = pieces.len();
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    for d in 0..n {
                        let text = [pieces[a], pieces[b], pieces[c], pieces[d]].concat();
                        let _ = line(
                            Path::new("f.yml"),
                            1,
                            &text,
                            &lookup,
                            &mut String::new(),
                            &mut LineMap::default(),
                            &mut Vec::new(),
                        );
                    }
                }
            }
        }
    }
}
