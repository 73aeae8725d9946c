//! The one owned record type that every service and layer works on.
//!
//! A [`Record`] is `'static`, `Send`, and cheap to clone: key and value are
//! [`Bytes`], the topic is shared, and headers keep Kafka's order, duplicates and
//! null values. Typed per-record data (verified claims, a decoded payload, the
//! per-record context) travels in its [`Extensions`].
//!
//! ```
//! use light_kafka::record::{names, Record, Timestamp};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Order { id: u32, total: f64 }
//!
//! let record = Record::builder("orders")
//!     .key("order-7")
//!     .json(&Order { id: 7, total: 12.5 })?
//!     .header(names::CORRELATION_ID, "c-1")
//!     .timestamp(Timestamp::CreateTime(1_700_000_000_000))
//!     .build();
//!
//! assert_eq!(record.topic(), "orders");
//! assert_eq!(record.key_str(), Some("order-7"));
//! assert_eq!(record.json::<Order>()?, Order { id: 7, total: 12.5 });
//! assert_eq!(record.header_str(names::CORRELATION_ID), Some("c-1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
pub mod codec;
pub mod envelope;
mod headers;
mod http_interop;
mod kafka;
pub mod names;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
pub use http::Extensions;
use serde::de::DeserializeOwned;

pub use builder::RecordBuilder;
pub use codec::{Codec, JsonCodec};
pub use envelope::{Command, Event, EventId, Message};
pub use headers::{Header, HeaderName, Headers};
pub use http_interop::{HeaderConversionError, HeaderConversionErrorReason};
pub use kafka::ConversionError;
pub(crate) use kafka::RecordBatcher;

use crate::error::{ErrorKind, Kinded};

/// When a record was created or appended to the log, in milliseconds since the
/// Unix epoch, with the type Kafka reports for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timestamp {
    /// No timestamp is known (a record that was never produced).
    #[default]
    NotAvailable,
    /// Set by the producer when the record was created.
    CreateTime(i64),
    /// Set by the broker when the record was appended to the log.
    LogAppendTime(i64),
}

impl Timestamp {
    /// The current time as a create time.
    pub fn now() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::CreateTime(millis)
    }

    /// Milliseconds since the epoch, or `None` when not available.
    ///
    /// ```
    /// # use light_kafka::record::Timestamp;
    /// assert_eq!(Timestamp::LogAppendTime(5).millis(), Some(5));
    /// assert_eq!(Timestamp::NotAvailable.millis(), None);
    /// ```
    pub fn millis(self) -> Option<i64> {
        match self {
            Timestamp::NotAvailable => None,
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) if t >= 0 => Some(t),
            _ => None,
        }
    }
}

impl From<rdkafka::Timestamp> for Timestamp {
    fn from(t: rdkafka::Timestamp) -> Self {
        match t {
            rdkafka::Timestamp::NotAvailable => Timestamp::NotAvailable,
            rdkafka::Timestamp::CreateTime(t) => Timestamp::CreateTime(t),
            rdkafka::Timestamp::LogAppendTime(t) => Timestamp::LogAppendTime(t),
        }
    }
}

impl From<Timestamp> for rdkafka::Timestamp {
    fn from(t: Timestamp) -> Self {
        match t {
            Timestamp::NotAvailable => rdkafka::Timestamp::NotAvailable,
            Timestamp::CreateTime(t) => rdkafka::Timestamp::CreateTime(t),
            Timestamp::LogAppendTime(t) => rdkafka::Timestamp::LogAppendTime(t),
        }
    }
}

/// A Kafka record, consumed or about to be produced.
///
/// See the [module documentation](self) for an example.
#[derive(Clone)]
pub struct Record {
    topic: Arc<str>,
    partition: Option<i32>,
    offset: Option<i64>,
    timestamp: Timestamp,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Headers,
    extensions: Extensions,
    /// The per-record context of the layers ([`crate::context::RecordContext`]),
    /// kept apart from the extensions: every chain uses it, and a field costs
    /// no map and no box.
    pub(crate) context: Option<crate::context::RecordContext>,
}

impl Record {
    /// A record for `topic` with no key, a null value and no headers.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        Record {
            topic: topic.into(),
            partition: None,
            offset: None,
            timestamp: Timestamp::NotAvailable,
            key: None,
            value: None,
            headers: Headers::new(),
            extensions: Extensions::new(),
            context: None,
        }
    }

    /// Starts building a record for `topic`.
    pub fn builder(topic: impl Into<Arc<str>>) -> RecordBuilder {
        RecordBuilder::new(topic)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic as a shared string, cheap to clone.
    pub fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The partition: known for consumed records, optional when producing
    /// (`None` lets the partitioner choose).
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// The offset, known for consumed records.
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }

    /// The timestamp and its type.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The key, or `None` for a null key.
    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// The key as UTF-8, or `None` when it is null or not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value, or `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    /// Whether the value is null, which on a compacted topic deletes the key.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The value as UTF-8.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] when the value is null or not valid UTF-8.
    pub fn value_str(&self) -> Result<&str, DecodeError> {
        let value = self.value.as_deref().ok_or(DecodeError::null_value())?;
        std::str::from_utf8(value).map_err(|e| DecodeError::new(DecodeErrorReason::NotUtf8, e))
    }

    /// Deserializes the value as JSON.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] when the value is null, not UTF-8, or not JSON of type `T`.
    ///
    /// ```
    /// # use light_kafka::record::Record;
    /// let ok = Record::builder("t").value(r#"{"n":1}"#).build();
    /// assert_eq!(ok.json::<serde_json::Value>()?["n"], 1);
    ///
    /// let bad = Record::builder("t").value("{not json").build();
    /// assert!(bad.json::<serde_json::Value>().is_err());
    /// # Ok::<(), light_kafka::record::DecodeError>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let text = self.value_str()?;
        serde_json::from_str(text).map_err(|e| DecodeError::new(DecodeErrorReason::NotJson, e))
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, mutably.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The value of the last header named `name` (ASCII-case-insensitive), or
    /// `None` when absent or null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The value of the last header named `name` as UTF-8, or `None` when absent,
    /// null, or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// Typed per-record data.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Typed per-record data, mutably.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Sets the topic, e.g. to route a record elsewhere.
    pub fn set_topic(&mut self, topic: impl Into<Arc<str>>) {
        self.topic = topic.into();
    }

    /// Sets or clears the partition.
    pub fn set_partition(&mut self, partition: Option<i32>) {
        self.partition = partition;
    }

    /// Sets or clears the offset.
    pub fn set_offset(&mut self, offset: Option<i64>) {
        self.offset = offset;
    }

    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, timestamp: Timestamp) {
        self.timestamp = timestamp;
    }

    /// Sets or clears the key.
    pub fn set_key(&mut self, key: Option<Bytes>) {
        self.key = key;
    }

    /// Sets or clears the value.
    pub fn set_value(&mut self, value: Option<Bytes>) {
        self.value = value;
    }

    /// The same key, value and headers, addressed to `topic` with no partition,
    /// offset or extensions: what a service produces when it forwards a record.
    ///
    /// ```
    /// # use light_kafka::record::Record;
    /// let consumed = Record::builder("in").key("k").value("v").header("h", "1").offset(9).build();
    /// let out = consumed.forward_to("out");
    /// assert_eq!(out.topic(), "out");
    /// assert_eq!(out.offset(), None);
    /// assert_eq!(out.key_str(), Some("k"));
    /// assert_eq!(out.header_str("h"), Some("1"));
    /// ```
    pub fn forward_to(&self, topic: impl Into<Arc<str>>) -> Record {
        Record {
            topic: topic.into(),
            partition: None,
            offset: None,
            timestamp: Timestamp::NotAvailable,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
            extensions: Extensions::new(),
            context: None,
        }
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Payload<'a>(&'a Option<Bytes>);
        impl fmt::Debug for Payload<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    None => f.write_str("null"),
                    Some(b) => write!(f, "{} bytes", b.len()),
                }
            }
        }
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &Payload(&self.key))
            .field("value", &Payload(&self.value))
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Why a value could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorReason {
    /// The value was null.
    NullValue,
    /// The value was not valid UTF-8.
    NotUtf8,
    /// The value was not JSON, or not JSON of the expected shape.
    NotJson,
    /// The value could not be decoded by a codec.
    Codec,
}

/// A value that could not be decoded: kind [`ErrorKind::Deserialization`].
#[derive(Debug)]
pub struct DecodeError {
    reason: DecodeErrorReason,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DecodeError {
    /// A decode failure for `reason`, caused by `source`.
    pub fn new(
        reason: DecodeErrorReason,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        DecodeError {
            reason,
            source: Some(source.into()),
        }
    }

    fn null_value() -> Self {
        DecodeError {
            reason: DecodeErrorReason::NullValue,
            source: None,
        }
    }

    /// Why decoding failed.
    pub fn reason(&self) -> DecodeErrorReason {
        self.reason
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            DecodeErrorReason::NullValue => "value is null",
            DecodeErrorReason::NotUtf8 => "value is not UTF-8",
            DecodeErrorReason::NotJson => "value is not valid JSON",
            DecodeErrorReason::Codec => "value could not be decoded",
        };
        match &self.source {
            Some(source) => write!(f, "{what}: {source}"),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for DecodeError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Deserialization
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn record_is_send_sync_static() {
        assert_send_sync_static::<Record>();
        assert_send_sync_static::<DecodeError>();
    }

    #[test]
    fn non_utf8_value_is_a_typed_error() {
        let record = Record::builder("t").value(vec![0xff, 0x00]).build();
        let err = record.json::<serde_json::Value>().unwrap_err();
        assert_eq!(err.reason(), DecodeErrorReason::NotUtf8);
        assert_eq!(err.kind(), ErrorKind::Deserialization);
    }

    #[test]
    fn tombstone_is_a_typed_error() {
        let record = Record::new("t");
        assert!(record.is_tombstone());
        let err = record.value_str().unwrap_err();
        assert_eq!(err.reason(), DecodeErrorReason::NullValue);
    }

    #[test]
    fn debug_hides_payloads() {
        let record = Record::builder("t")
            .key("secret-key")
            .value("secret-value")
            .build();
        let shown = format!("{record:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("12 bytes"));
    }

    #[test]
    fn clones_share_payload_memory() {
        let record = Record::builder("t").value(vec![7u8; 1024]).build();
        let copy = record.clone();
        assert_eq!(
            record.value().unwrap().as_ptr(),
            copy.value().unwrap().as_ptr()
        );
    }
}
