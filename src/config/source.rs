//! Reading one config file: `${VAR}` / `${VAR:default}` substitution that
//! keeps track of positions, YAML parsing, and errors that name the file,
//! the line and the column without ever echoing a value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, Kinded};

/// What is wrong with a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A file could not be read.
    Io,
    /// A file is not valid YAML.
    Syntax,
    /// A key no file of that name has.
    UnknownKey,
    /// A value of the wrong type (a list for a flag, text for a number...).
    WrongType,
    /// A `${VAR}` with no value and no default.
    MissingVariable,
    /// A handler or chain name nothing defines.
    UnknownHandler,
    /// A chain with nothing in it.
    EmptyChain,
    /// An execution list that does not end with a handler, or has one
    /// before its end.
    Dangling,
    /// An order that breaks a documented invariant (see the [module documentation](super)).
    Order,
    /// A value that parses but cannot work (a bad pattern, a missing file it names...).
    Invalid,
}

/// A configuration error: where (file, line, column) and what. Values are
/// never part of the message: a misplaced secret stays secret.
#[derive(Clone, Debug)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    file: PathBuf,
    line: u64,
    column: u64,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        file: &Path,
        (line, column): (u64, u64),
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            kind,
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The file at fault.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The line (1-based; 0 when the error concerns the whole file).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The column (1-based; 0 when the error concerns the whole file).
    pub fn column(&self) -> u64 {
        self.column
    }

    /// The message, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

impl Kinded for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// Where the text of one line came from: for each substitution, the column
/// (1-based) it starts at in the output, its length there, the column of its
/// `${` in the file and the length of the `${...}` expression.
#[derive(Clone, Debug, Default)]
struct LineMap {
    spans: Vec<(u64, u64, u64, u64)>,
}

impl LineMap {
    /// The column in the file of output column `column`.
    fn original(&self, column: u64) -> u64 {
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

/// One config file, its variables substituted.
#[derive(Debug)]
pub(crate) struct Source {
    path: PathBuf,
    text: String,
    lines: Vec<LineMap>,
}

impl Source {
    /// Reads `path` and substitutes its variables with `lookup`.
    pub(crate) fn read(
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Source, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                path,
                (0, 0),
                format!("cannot read the file: {e}"),
            )
        })?;
        Source::parse_text(path, &raw, lookup)
    }

    pub(crate) fn parse_text(
        path: &Path,
        raw: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Source, ConfigError> {
        let mut text = String::with_capacity(raw.len());
        let mut lines = Vec::new();
        for (index, line) in raw.split_inclusive('\n').enumerate() {
            let mut map = LineMap::default();
            let mut rest = line;
            let mut column: u64 = 1; // in the file
            let mut out_column: u64 = 1;
            let comment = line.trim_start().starts_with('#');
            while let Some(start) = rest.find("${").filter(|_| !comment) {
                let before = &rest[..start];
                text.push_str(before);
                column += before.chars().count() as u64;
                out_column += before.chars().count() as u64;
                let Some(end) = rest[start..].find('}') else {
                    return Err(ConfigError::new(
                        ConfigErrorKind::Syntax,
                        path,
                        (index as u64 + 1, column),
                        "a `${` without its closing `}`",
                    ));
                };
                let expression = &rest[start + 2..start + end];
                let (name, default) = match expression.split_once(':') {
                    Some((name, default)) => (name.trim(), Some(default)),
                    None => (expression.trim(), None),
                };
                let value = lookup(name).or_else(|| default.map(str::to_owned)).ok_or_else(|| {
                    ConfigError::new(
                        ConfigErrorKind::MissingVariable,
                        path,
                        (index as u64 + 1, column),
                        format!("`${{{name}}}` has no value (not in the environment, nor in values.yml) and no default"),
                    )
                })?;
                let in_len = (end + 1) as u64;
                let out_len = value.chars().count() as u64;
                map.spans.push((out_column, out_len, column, in_len));
                text.push_str(&value);
                column += rest[start..start + end + 1].chars().count() as u64;
                out_column += out_len;
                rest = &rest[start + end + 1..];
            }
            text.push_str(rest);
            lines.push(map);
        }
        Ok(Source {
            path: path.to_owned(),
            text,
            lines,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The position in the file of a (line, column) in the substituted text.
    pub(crate) fn position(&self, line: u64, column: u64) -> (u64, u64) {
        let map = line.checked_sub(1).and_then(|i| self.lines.get(i as usize));
        (line, map.map_or(column, |m| m.original(column)))
    }

    /// Parses the text as `T`.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        serde_saphyr::from_str_with_options::<T>(&self.text, options).map_err(|error| {
            let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = redact(strip_position(&error.to_string()));
            let kind = if message.starts_with("unknown field") {
                ConfigErrorKind::UnknownKey
            } else if message.starts_with("invalid")
                || message.starts_with("expected")
                || message.contains("invalid type")
                || message.starts_with("missing field")
            {
                ConfigErrorKind::WrongType
            } else {
                ConfigErrorKind::Syntax
            };
            ConfigError::new(kind, &self.path, self.position(line, column), message)
        })
    }
}

/// The message without the parser's own ` at line L, column C`.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// Quoted text in a parser message may be a value: it is left out.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"<redacted>");
            }
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("broker-1.internal:9092".into()),
            "PASSWORD" => Some("hunter2".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_substituted_with_defaults_and_positions_map_back() {
        let raw = "a: ${HOST}\nb: ${MISSING:fallback} x: 1\n# ${NOT_SUBSTITUTED}\n";
        let source = Source::parse_text(Path::new("f.yml"), raw, &env).unwrap();
        assert_eq!(
            source.text,
            "a: broker-1.internal:9092\nb: fallback x: 1\n# ${NOT_SUBSTITUTED}\n"
        );
        // `x` is at column 13 after substitution, 22 in the file.
        assert_eq!(source.position(2, 13), (2, 24));
        // Inside a substituted value: the `${`.
        assert_eq!(source.position(1, 10), (1, 4));
        assert_eq!(source.position(1, 2), (1, 2));
    }

    #[test]
    fn a_variable_without_value_or_default_is_an_error_at_its_position() {
        let error =
            Source::parse_text(Path::new("f.yml"), "a: 1\nb:  ${NOPE}\n", &env).unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::MissingVariable);
        assert_eq!((error.line(), error.column()), (2, 5));
        assert!(error.to_string().starts_with("f.yml:2:5: `${NOPE}`"));
    }

    #[test]
    fn parse_errors_never_echo_a_substituted_secret() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Flag {
            enabled: bool,
        }
        let source =
            Source::parse_text(Path::new("f.yml"), "enabled: ${PASSWORD}\n", &env).unwrap();
        let error = source.parse::<Flag>().unwrap_err();
        assert_eq!(error.kind(), ConfigErrorKind::WrongType);
        assert_eq!((error.line(), error.column()), (1, 10));
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert_eq!(redact(r#"bad "hunter2" here"#), r#"bad "<redacted>" here"#);
    }
}
