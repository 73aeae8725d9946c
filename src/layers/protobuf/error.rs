use std::fmt;

use crate::error::{BoxError, ErrorKind, Kinded};
use crate::layers::registry::{RegistryError, RegistryErrorKind};

/// What went wrong with Protobuf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtobufErrorKind {
    /// The value is not in Confluent's wire format (magic byte 0, a 4-byte
    /// schema id, the message-index array, then Protobuf binary).
    Framing,
    /// The message-index array names no message of the schema.
    UnknownMessage,
    /// The bytes do not decode as the message.
    Decode,
    /// The registry does not know the schema id or subject version.
    UnknownSchema,
    /// The schema id names a schema of another type (Avro, JSON Schema).
    WrongType,
    /// The registry could not be reached or answered with an error.
    Registry,
    /// A schema's `.proto` text does not compile.
    Schema,
    /// A value to produce does not fit the message type.
    Encode,
}

/// A Protobuf failure. Kinds: framing, unknown messages, decode, unknown
/// schemas and wrong types are [`ErrorKind::Deserialization`]; encode is
/// [`ErrorKind::Invalid`]; an unreachable registry is
/// [`ErrorKind::Transient`]; a schema that does not compile is
/// [`ErrorKind::Config`].
#[derive(Debug)]
pub struct ProtobufError {
    kind: ProtobufErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl ProtobufError {
    pub(crate) fn new(kind: ProtobufErrorKind, message: impl Into<String>) -> Self {
        ProtobufError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: ProtobufErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        ProtobufError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn protobuf_kind(&self) -> ProtobufErrorKind {
        self.kind
    }
}

impl From<RegistryError> for ProtobufError {
    fn from(error: RegistryError) -> Self {
        let (kind, message, source) = error.into_parts();
        ProtobufError {
            kind: match kind {
                RegistryErrorKind::UnknownSchema => ProtobufErrorKind::UnknownSchema,
                _ => ProtobufErrorKind::Registry,
            },
            message,
            source,
        }
    }
}

impl fmt::Display for ProtobufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProtobufError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for ProtobufError {
    fn kind(&self) -> ErrorKind {
        use ProtobufErrorKind as K;
        match self.kind {
            K::Framing | K::UnknownMessage | K::Decode | K::UnknownSchema | K::WrongType => {
                ErrorKind::Deserialization
            }
            K::Encode => ErrorKind::Invalid,
            K::Registry => ErrorKind::Transient,
            K::Schema => ErrorKind::Config,
        }
    }
}
