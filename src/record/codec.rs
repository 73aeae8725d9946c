//! Codecs turn typed values into record values and back.
//!
//! [`JsonCodec`] ships here; the Avro codec (feature `avro`) implements the same
//! [`Codec`] trait, so envelope code does not care which one it is given.
//!
//! ```
//! use light_kafka::record::{Codec, JsonCodec};
//!
//! let bytes = JsonCodec.encode(&vec!["a".to_owned(), "b".to_owned()])?;
//! let back: Vec<String> = JsonCodec.decode(&bytes)?;
//! assert_eq!(back, ["a", "b"]);
//! assert!(Codec::<Vec<String>>::decode(&JsonCodec, b"\xff").is_err());
//! # Ok::<(), light_kafka::record::codec::CodecError>(())
//! ```

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, ErrorKind, Kinded};

/// Encodes values of type `T` to bytes and decodes them back.
pub trait Codec<T> {
    /// The error for values that cannot be encoded or bytes that cannot be decoded.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be represented in this format.
    fn encode(&self, value: &T) -> Result<Bytes, Self::Error>;

    /// Decodes `bytes`.
    ///
    /// # Errors
    ///
    /// When `bytes` are not a valid encoding of a `T`.
    fn decode(&self, bytes: &[u8]) -> Result<T, Self::Error>;
}

/// JSON through serde.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for JsonCodec {
    type Error = CodecError;

    fn encode(&self, value: &T) -> Result<Bytes, CodecError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(CodecError::encode)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(CodecError::decode)
    }
}

/// Which way a codec failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecOp {
    /// A value could not be encoded: kind [`ErrorKind::Invalid`].
    Encode,
    /// Bytes could not be decoded: kind [`ErrorKind::Deserialization`].
    Decode,
}

/// A codec failure.
#[derive(Debug)]
pub struct CodecError {
    op: CodecOp,
    source: BoxError,
}

impl CodecError {
    /// An encoding failure caused by `source`.
    pub fn encode(source: impl Into<BoxError>) -> Self {
        CodecError {
            op: CodecOp::Encode,
            source: source.into(),
        }
    }

    /// A decoding failure caused by `source`.
    pub fn decode(source: impl Into<BoxError>) -> Self {
        CodecError {
            op: CodecOp::Decode,
            source: source.into(),
        }
    }

    /// Which way the codec failed.
    pub fn op(&self) -> CodecOp {
        self.op
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            CodecOp::Encode => write!(f, "cannot encode value: {}", self.source),
            CodecOp::Decode => write!(f, "cannot decode value: {}", self.source),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl Kinded for CodecError {
    fn kind(&self) -> ErrorKind {
        match self.op {
            CodecOp::Encode => ErrorKind::Invalid,
            CodecOp::Decode => ErrorKind::Deserialization,
        }
    }
}
