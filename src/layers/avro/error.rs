use std::fmt;

use crate::error::{BoxError, ErrorKind, Kinded};

/// What went wrong with Avro.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AvroErrorKind {
    /// The value is not in Confluent's wire format (magic byte 0, a 4-byte
    /// schema id, then Avro binary).
    Framing,
    /// The bytes do not decode with the writer schema (or resolve to the
    /// reader schema).
    Decode,
    /// The value does not fit the schema it is to be written with.
    Encode,
    /// The registry does not know the schema id or subject version.
    UnknownSchema,
    /// The registry could not be reached or answered with an error.
    Registry,
    /// A schema text is not a valid Avro schema.
    Schema,
}

/// An Avro failure. Kinds: framing, decode and unknown schemas are
/// [`ErrorKind::Deserialization`]; encode is [`ErrorKind::Invalid`]; an
/// unreachable registry is [`ErrorKind::Transient`]; a bad schema is
/// [`ErrorKind::Config`].
#[derive(Debug)]
pub struct AvroError {
    kind: AvroErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl AvroError {
    pub(crate) fn new(kind: AvroErrorKind, message: impl Into<String>) -> Self {
        AvroError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: AvroErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        AvroError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn avro_kind(&self) -> AvroErrorKind {
        self.kind
    }
}

impl fmt::Display for AvroError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AvroError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for AvroError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            AvroErrorKind::Framing | AvroErrorKind::Decode | AvroErrorKind::UnknownSchema => {
                ErrorKind::Deserialization
            }
            AvroErrorKind::Encode => ErrorKind::Invalid,
            AvroErrorKind::Registry => ErrorKind::Transient,
            AvroErrorKind::Schema => ErrorKind::Config,
        }
    }
}
