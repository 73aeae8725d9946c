//! Conversions between [`Record`] and rdkafka's messages.
//!
//! Consuming copies each key and value exactly once, from librdkafka's buffer
//! into a [`Bytes`]; producing lends the record's bytes to librdkafka, which makes
//! its own copy when it enqueues the message. rdkafka's borrowed messages are
//! never kept past the conversion.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rdkafka::message::{
    BorrowedMessage, Header as KafkaHeader, Headers as _, OwnedHeaders, OwnedMessage,
};
use rdkafka::producer::{BaseRecord, FutureRecord};
use rdkafka::util::IntoOpaque;

use super::{Header, HeaderName, Headers, Record};
use crate::error::{ErrorKind, Kinded};

/// A consumed record the crate could not convert faithfully: kind
/// [`ErrorKind::Deserialization`], a poison record.
///
/// Kafka header names are bytes, and nothing stops another client from
/// writing names that are not UTF-8; rdkafka panics on such a name when it
/// reads it. The conversion reads every header it can (the others are left
/// out, counted here) and puts this error in the record's extensions. The
/// dead-letter layer then writes the record (its raw key and value and the
/// headers that could be read) to the dead-letter topic without calling the
/// inner service; without a dead-letter layer, the consumer runtime treats
/// the record as failed with this error under its error policy, even when the
/// service returned `Ok`. The runtime never panics on a record.
///
/// ```
/// use light_kafka::record::{ConversionError, Record};
/// use light_kafka::error::{classify, ErrorKind};
///
/// let error = ConversionError::new("header 2: name is not UTF-8");
/// let mut record = Record::new("orders");
/// record.extensions_mut().insert(error.clone());
/// assert!(ConversionError::of(&record).is_some());
/// assert_eq!(classify(&error), ErrorKind::Deserialization);
/// ```
#[derive(Clone, Debug)]
pub struct ConversionError {
    detail: Arc<str>,
    dead_lettered: Arc<AtomicBool>,
}

impl ConversionError {
    /// A conversion failure described by `detail`.
    pub fn new(detail: impl Into<Arc<str>>) -> Self {
        ConversionError {
            detail: detail.into(),
            dead_lettered: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The conversion error a consumed record carries, if any.
    pub fn of(record: &Record) -> Option<&ConversionError> {
        record.extensions().get::<ConversionError>()
    }

    /// What could not be converted.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Marks the record as settled on the dead-letter topic.
    pub fn mark_dead_lettered(&self) {
        self.dead_lettered.store(true, Ordering::Release);
    }

    /// Whether the record was settled on the dead-letter topic.
    pub fn is_dead_lettered(&self) -> bool {
        self.dead_lettered.load(Ordering::Acquire)
    }
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot convert the consumed record: {}", self.detail)
    }
}

impl std::error::Error for ConversionError {}

impl Kinded for ConversionError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Deserialization
    }
}

/// Reads every header rdkafka can give, calling `each(name, value)`, and
/// describes the ones it cannot (a name that is not UTF-8 makes rdkafka 0.39
/// panic inside `Headers::try_get`; the panic is caught here, so the default
/// panic hook still prints it once per such header).
fn read_headers<H: rdkafka::message::Headers + ?Sized>(
    headers: &H,
    mut each: impl FnMut(&str, Option<&[u8]>),
) -> Option<String> {
    let mut unreadable = Vec::new();
    for index in 0..headers.count() {
        match catch_unwind(AssertUnwindSafe(|| headers.try_get(index))) {
            Ok(Some(header)) => each(header.key, header.value),
            Ok(None) => break,
            Err(_) => unreadable.push(index.to_string()),
        }
    }
    (!unreadable.is_empty()).then(|| {
        format!(
            "header name not UTF-8 (header {} of {}); the other headers are kept",
            unreadable.join(", "),
            headers.count()
        )
    })
}

impl Record {
    /// Copies a consumed rdkafka message (borrowed or owned) into a record.
    ///
    /// ```
    /// use light_kafka::record::Record;
    /// use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    /// use rdkafka::Timestamp;
    ///
    /// let headers = OwnedHeaders::new().insert(Header { key: "h", value: Some("v") });
    /// let message = OwnedMessage::new(
    ///     Some(b"value".to_vec()), Some(b"key".to_vec()), "orders".into(),
    ///     Timestamp::CreateTime(1), 2, 40, Some(headers),
    /// );
    /// let record = Record::from_message(&message);
    /// assert_eq!((record.topic(), record.partition(), record.offset()), ("orders", Some(2), Some(40)));
    /// assert_eq!(record.header_str("h"), Some("v"));
    /// ```
    pub fn from_message<M: rdkafka::Message>(message: &M) -> Self {
        Record::from_message_in(message, Arc::from(message.topic()))
    }

    /// Like [`Record::from_message`], reusing an already shared topic name.
    ///
    /// A record whose headers cannot all be read carries a
    /// [`ConversionError`] in its extensions.
    pub fn from_message_in<M: rdkafka::Message>(message: &M, topic: Arc<str>) -> Self {
        let mut defect = None;
        let headers = match message.headers() {
            None => Headers::new(),
            Some(h) => {
                let mut headers = Headers::with_capacity(h.count());
                defect = read_headers(h, |key, value| {
                    let name = HeaderName::intern(key);
                    headers.push(match value {
                        Some(v) => Header::new(name, Bytes::copy_from_slice(v)),
                        None => Header::null(name),
                    });
                });
                headers
            }
        };
        let mut record = Record::new(topic);
        if let Some(detail) = defect {
            record.extensions_mut().insert(ConversionError::new(detail));
        }
        record.partition = Some(message.partition());
        record.offset = Some(message.offset());
        record.timestamp = message.timestamp().into();
        record.key = message.key().map(Bytes::copy_from_slice);
        record.value = message.payload().map(Bytes::copy_from_slice);
        record.headers = headers;
        record
    }

    /// The headers as rdkafka headers, or `None` when there are none.
    pub fn to_kafka_headers(&self) -> Option<OwnedHeaders> {
        if self.headers.is_empty() {
            return None;
        }
        let mut out = OwnedHeaders::new_with_capacity(self.headers.len());
        for header in self.headers.iter() {
            out = out.insert(KafkaHeader {
                key: header.name(),
                value: header.value().map(|v| &v[..]),
            });
        }
        Some(out)
    }

    /// A producer record that borrows this record's key and value, carrying
    /// `opaque` to the delivery callback.
    pub fn to_base_record<D: IntoOpaque>(&self, opaque: D) -> BaseRecord<'_, [u8], [u8], D> {
        let mut base = BaseRecord::with_opaque_to(self.topic(), opaque);
        if let Some(key) = &self.key {
            base = base.key(&key[..]);
        }
        if let Some(value) = &self.value {
            base = base.payload(&value[..]);
        }
        if let Some(partition) = self.partition {
            base = base.partition(partition);
        }
        if let super::Timestamp::CreateTime(t) = self.timestamp {
            base = base.timestamp(t);
        }
        if let Some(headers) = self.to_kafka_headers() {
            base = base.headers(headers);
        }
        base
    }

    /// A producer record for rdkafka's `FutureProducer`, borrowing this record's
    /// key and value.
    pub fn to_future_record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut future = FutureRecord::to(self.topic());
        if let Some(key) = &self.key {
            future = future.key(&key[..]);
        }
        if let Some(value) = &self.value {
            future = future.payload(&value[..]);
        }
        if let Some(partition) = self.partition {
            future = future.partition(partition);
        }
        if let super::Timestamp::CreateTime(t) = self.timestamp {
            future = future.timestamp(t);
        }
        if let Some(headers) = self.to_kafka_headers() {
            future = future.headers(headers);
        }
        future
    }
}

/// Payloads up to this size share their batch's buffer.
const SHARED_PAYLOAD_MAX: usize = 1024;

/// Where the bytes of a drafted key, value or header value are.
enum Span {
    Shared(std::ops::Range<usize>),
    Own(Bytes),
}

struct Draft {
    record: Record,
    key: Option<Span>,
    value: Option<Span>,
    headers: std::ops::Range<usize>,
    defect: Option<String>,
}

/// Copies consumed messages into records in batches: the small keys, values
/// and header values of a batch are copied into one buffer (one allocation
/// per batch instead of one per payload) and the records hold slices of it.
///
/// A batch's buffer is freed when the last record holding a slice of it is
/// dropped; payloads larger than 1 KiB get buffers of their own, so a retained
/// record never pins more than a batch of small payloads.
#[derive(Default)]
pub(crate) struct RecordBatcher {
    buffer: Vec<u8>,
    drafts: Vec<Draft>,
    headers: Vec<(HeaderName, Option<Span>)>,
}

impl RecordBatcher {
    fn span(&mut self, bytes: &[u8]) -> Span {
        if bytes.len() > SHARED_PAYLOAD_MAX {
            Span::Own(Bytes::copy_from_slice(bytes))
        } else {
            let start = self.buffer.len();
            self.buffer.extend_from_slice(bytes);
            Span::Shared(start..self.buffer.len())
        }
    }

    /// Copies `message` into the batch.
    pub(crate) fn push<M: rdkafka::Message>(&mut self, message: &M, topic: Arc<str>) {
        let first_header = self.headers.len();
        let mut defect = None;
        if let Some(h) = message.headers() {
            defect = read_headers(h, |key, value| {
                let value = value.map(|v| self.span(v));
                self.headers.push((HeaderName::intern(key), value));
            });
        }
        let key = message.key().map(|k| self.span(k));
        let value = message.payload().map(|v| self.span(v));
        let mut record = Record::new(topic);
        record.partition = Some(message.partition());
        record.offset = Some(message.offset());
        record.timestamp = message.timestamp().into();
        self.drafts.push(Draft {
            record,
            key,
            value,
            headers: first_header..self.headers.len(),
            defect,
        });
    }

    /// Hands the batch's records to `each`, in the order pushed; the batcher
    /// is empty again.
    pub(crate) fn finish(&mut self, mut each: impl FnMut(Record)) {
        let shared = Bytes::from(std::mem::take(&mut self.buffer));
        let resolve = |span: Span| match span {
            Span::Shared(range) => shared.slice(range),
            Span::Own(bytes) => bytes,
        };
        let mut headers = self.headers.drain(..);
        for draft in self.drafts.drain(..) {
            let mut record = draft.record;
            record.key = draft.key.map(resolve);
            record.value = draft.value.map(resolve);
            if !draft.headers.is_empty() {
                record.headers = headers
                    .by_ref()
                    .take(draft.headers.len())
                    .map(|(name, value)| match value {
                        Some(span) => Header::new(name, resolve(span)),
                        None => Header::null(name),
                    })
                    .collect();
            }
            if let Some(detail) = draft.defect {
                record.extensions_mut().insert(ConversionError::new(detail));
            }
            each(record);
        }
    }
}

impl From<&BorrowedMessage<'_>> for Record {
    fn from(message: &BorrowedMessage<'_>) -> Self {
        Record::from_message(message)
    }
}

impl From<&OwnedMessage> for Record {
    fn from(message: &OwnedMessage) -> Self {
        Record::from_message(message)
    }
}

impl From<OwnedMessage> for Record {
    fn from(message: OwnedMessage) -> Self {
        Record::from_message(&message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Timestamp;
    use rdkafka::Message as _;

    fn owned(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            None,
            Some(b"k".to_vec()),
            "t".into(),
            rdkafka::Timestamp::LogAppendTime(77),
            1,
            5,
            headers,
        )
    }

    #[test]
    fn null_value_and_log_append_time_survive() {
        let record = Record::from(owned(None));
        assert!(record.is_tombstone());
        assert_eq!(record.timestamp(), Timestamp::LogAppendTime(77));
        assert!(record.headers().is_empty());
    }

    #[test]
    fn headers_keep_order_duplicates_and_nulls_both_ways() {
        let headers = OwnedHeaders::new()
            .insert(KafkaHeader {
                key: "a",
                value: Some("1"),
            })
            .insert(KafkaHeader::<&str> {
                key: "n",
                value: None,
            })
            .insert(KafkaHeader {
                key: "a",
                value: Some("2"),
            });
        let record = Record::from(&owned(Some(headers)));
        let back = record.to_kafka_headers().unwrap();
        let pairs: Vec<_> = back
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a".to_owned(), Some(b"1".to_vec())),
                ("n".to_owned(), None),
                ("a".to_owned(), Some(b"2".to_vec())),
            ]
        );
    }

    #[test]
    fn batcher_matches_one_by_one_conversion() {
        let big = vec![7u8; 5000];
        let messages = vec![
            owned(Some(
                OwnedHeaders::new()
                    .insert(KafkaHeader {
                        key: "a",
                        value: Some("1"),
                    })
                    .insert(KafkaHeader::<&str> {
                        key: "n",
                        value: None,
                    }),
            )),
            owned(None).set_payload(Some(big.clone())),
            owned(Some(OwnedHeaders::new().insert(KafkaHeader {
                key: "b",
                value: Some("2"),
            })))
            .set_key(None),
        ];
        let mut batcher = RecordBatcher::default();
        let topic: Arc<str> = Arc::from("t");
        for m in &messages {
            batcher.push(m, topic.clone());
        }
        let mut batch = Vec::new();
        batcher.finish(|r| batch.push(r));
        assert_eq!(batch.len(), 3);
        let mut again = 0;
        batcher.finish(|_| again += 1);
        assert_eq!(again, 0);
        for (record, message) in batch.iter().zip(&messages) {
            let single = Record::from(message);
            assert_eq!(record.key(), single.key());
            assert_eq!(record.value(), single.value());
            assert_eq!(record.headers(), single.headers());
            assert_eq!(record.offset(), single.offset());
            assert_eq!(record.timestamp(), single.timestamp());
        }
        assert_eq!(batch[1].value().unwrap().len(), 5000);
    }

    #[test]
    fn base_record_borrows_the_payload() {
        let record = Record::builder("t")
            .key("k")
            .value("v")
            .partition(2)
            .timestamp(Timestamp::CreateTime(9))
            .build();
        let base = record.to_base_record(());
        assert_eq!(
            base.payload.map(|p| p.as_ptr()),
            record.value().map(|v| v.as_ptr())
        );
        assert_eq!(base.partition, Some(2));
        assert_eq!(base.timestamp, Some(9));
        let future = record.to_future_record();
        assert_eq!(
            future.key.map(|k| k.as_ptr()),
            record.key().map(|k| k.as_ptr())
        );
        let msg = owned(None);
        assert_eq!(msg.offset(), 5);
    }
}
