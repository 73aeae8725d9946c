//! Reading one config file: `${VAR}` / `${VAR:default}` resolution that
//! keeps types and positions (see `subst`), YAML parsing, and errors that
//! name the file, the line and the column without ever echoing a value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::subst::{self, LineMap, NonScalar, Resolved};
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

/// One config file, its variables resolved (see `subst`). `Debug` shows
/// the path only: the text holds resolved values.
pub(crate) struct Source {
    path: PathBuf,
    text: String,
    lines: Vec<LineMap>,
    non_scalars: Vec<NonScalar>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Reads `path` and resolves its variables with `lookup`.
    pub(crate) fn read(
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<Resolved>,
    ) -> Result<Source, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                path,
                (0, 0),
                format!("cannot read the file: {}", e.kind()),
            )
        })?;
        Source::parse_text(path, &raw, lookup)
    }

    pub(crate) fn parse_text(
        path: &Path,
        raw: &str,
        lookup: &dyn Fn(&str) -> Option<Resolved>,
    ) -> Result<Source, ConfigError> {
        let mut text = String::with_capacity(raw.len());
        let mut lines = Vec::new();
        let mut non_scalars = Vec::new();
        for (index, line) in raw.split_inclusive('\n').enumerate() {
            let mut map = LineMap::default();
            if line.trim_start().starts_with('#') || !line.contains("${") {
                text.push_str(line);
            } else {
                subst::line(
                    path,
                    index as u64 + 1,
                    line,
                    lookup,
                    &mut text,
                    &mut map,
                    &mut non_scalars,
                )?;
            }
            lines.push(map);
        }
        Ok(Source {
            path: path.to_owned(),
            text,
            lines,
            non_scalars,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The resolved text at a parser span (byte offset and length).
    pub(crate) fn slice(&self, location: &serde_saphyr::Location) -> Option<&str> {
        let span = location.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }

    /// The position in the file of a (line, column) in the resolved text.
    pub(crate) fn position(&self, line: u64, column: u64) -> (u64, u64) {
        let map = line.checked_sub(1).and_then(|i| self.lines.get(i as usize));
        (line, map.map_or(column, |m| m.original(column)))
    }

    /// The position in the file of a parser location.
    pub(crate) fn at(&self, location: &serde_saphyr::Location) -> (u64, u64) {
        self.position(location.line(), location.column())
    }

    /// Parses the text as `T`.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        serde_saphyr::from_str_with_options::<T>(&self.text, options).map_err(|error| {
            let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
            let mut message = redact(strip_position(&error.to_string()));
            let kind = if message.starts_with("unknown field") {
                ConfigErrorKind::UnknownKey
            } else if message.starts_with("invalid")
                || message.starts_with("expected")
                || message.contains("invalid type")
                || message.starts_with("missing field")
                || message.starts_with("unknown variant")
                || message.starts_with("not ")
            {
                ConfigErrorKind::WrongType
            } else {
                ConfigErrorKind::Syntax
            };
            let mut kind = kind;
            if let Some(n) = self.non_scalars.iter().find(|n| {
                n.line == line && (n.out_start..n.out_end.max(n.out_start + 1)).contains(&column)
            }) {
                kind = ConfigErrorKind::WrongType;
                message = format!(
                    "`${{{}}}` is a list or a map in values.yml, where this key takes one value",
                    n.name
                );
            }
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
/// In serde's "unknown variant `v`" and "invalid type/value: ... `v`", the
/// first back-quoted text is the value: it is left out too (key names in
/// "unknown field `k`" stay).
fn redact(message: &str) -> String {
    let message = match message.split_once('`') {
        Some((head, rest))
            if message.starts_with("unknown variant") || message.starts_with("invalid") =>
        {
            match rest.split_once('`') {
                Some((_, tail)) => format!("{head}`<redacted>`{tail}"),
                None => message.to_owned(),
            }
        }
        _ => message.to_owned(),
    };
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

    fn env(name: &str) -> Option<Resolved> {
        match name {
            "HOST" => Some(Resolved::Env("broker-1.internal:9092".into())),
            "PASSWORD" => Some(Resolved::Env("hunter2".into())),
            _ => None,
        }
    }

    #[test]
    fn variables_are_substituted_with_defaults_and_positions_map_back() {
        let raw = "a: ${HOST}\nb: x-${MISSING:fallback}-y # c\n# ${NOT_SUBSTITUTED}\n";
        let source = Source::parse_text(Path::new("f.yml"), raw, &env).unwrap();
        assert_eq!(
            source.text,
            "a: \"broker-1.internal:9092\"\nb: \"x-fallback-y\" # c\n# ${NOT_SUBSTITUTED}\n"
        );
        // `#` is at column 19 after substitution, 28 in the file.
        assert_eq!(source.position(2, 19), (2, 28));
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
        assert_eq!(
            redact("unknown variant `hunter2`, expected `a` or `b`"),
            "unknown variant `<redacted>`, expected `a` or `b`"
        );
        assert_eq!(
            redact("invalid type: integer `1234`, expected a string"),
            "invalid type: integer `<redacted>`, expected a string"
        );
        assert_eq!(
            redact("unknown field `maskk`, expected `mask`"),
            "unknown field `maskk`, expected `mask`"
        );
    }
}
