use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::{Codec, HeaderName, Headers, Record, Timestamp};

/// Builds a [`Record`].
///
/// ```
/// use light_kafka::record::Record;
///
/// let record = Record::builder("orders")
///     .key("k")
///     .value("v")
///     .header("x", "y")
///     .null_header("z")
///     .partition(3)
///     .build();
/// assert_eq!(record.partition(), Some(3));
/// assert_eq!(record.headers().len(), 2);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RecordBuilder {
    record: Record,
}

impl RecordBuilder {
    pub(super) fn new(topic: impl Into<Arc<str>>) -> Self {
        RecordBuilder {
            record: Record::new(topic),
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.record.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.record.value = Some(value.into());
        self
    }

    /// Sets the value to `value` serialized as JSON.
    ///
    /// # Errors
    ///
    /// The serializer's error when `value` cannot be represented as JSON (a map
    /// with non-string keys, for instance).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, serde_json::Error> {
        self.record.value = Some(Bytes::from(serde_json::to_vec(value)?));
        Ok(self)
    }

    /// Sets the value to `value` encoded by `codec`.
    ///
    /// # Errors
    ///
    /// The codec's error when `value` cannot be encoded.
    ///
    /// ```
    /// use light_kafka::record::{JsonCodec, Record};
    /// let record = Record::builder("t").encode(&JsonCodec, &vec![1, 2])?.build();
    /// assert_eq!(record.value_str()?, "[1,2]");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode<T, C: Codec<T>>(mut self, codec: &C, value: &T) -> Result<Self, C::Error> {
        self.record.value = Some(codec.encode(value)?);
        Ok(self)
    }

    /// Appends a header; earlier headers with the same name are kept.
    pub fn header(mut self, name: impl Into<HeaderName>, value: impl Into<Bytes>) -> Self {
        self.record.headers.append(name, value);
        self
    }

    /// Appends a header with a null value.
    pub fn null_header(mut self, name: impl Into<HeaderName>) -> Self {
        self.record.headers.append_null(name);
        self
    }

    /// Replaces all headers.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.record.headers = headers;
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.record.partition = Some(partition);
        self
    }

    /// Sets the offset (useful for mock records in tests).
    pub fn offset(mut self, offset: i64) -> Self {
        self.record.offset = Some(offset);
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, timestamp: Timestamp) -> Self {
        self.record.timestamp = timestamp;
        self
    }

    /// Inserts typed data into the extensions.
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.record.extensions.insert(value);
        self
    }

    /// Finishes the record.
    pub fn build(self) -> Record {
        self.record
    }
}
