//! Well-known header names, spelled as light-4j and light-kafka spell them on the wire.
//!
//! ```
//! use light_kafka::record::{names, Record};
//!
//! let record = Record::builder("orders")
//!     .header(names::CORRELATION_ID, "c-42")
//!     .build();
//! assert_eq!(record.header_str(names::CORRELATION_ID), Some("c-42"));
//! ```

/// Correlation id shared by every hop of one business transaction.
pub const CORRELATION_ID: &str = "X-Correlation-Id";
/// Traceability id supplied by the original caller.
pub const TRACEABILITY_ID: &str = "X-Traceability-Id";
/// Bearer token of the caller: `Bearer <jwt>`.
pub const AUTHORIZATION: &str = "authorization";
/// Service id of the service that produced the record (light-kafka's `injectCallerId`).
pub const CALLER_ID: &str = "caller_id";
/// Stack trace of the failure that sent a record to the dead-letter topic.
pub const STACK_TRACE: &str = "StackTrace";
/// W3C trace context: the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace context: vendor-specific state.
pub const TRACESTATE: &str = "tracestate";

/// Dead-letter header: the topic the record was consumed from.
pub const DLQ_ORIGINAL_TOPIC: &str = "dlq.original.topic";
/// Dead-letter header: the partition the record was consumed from.
pub const DLQ_ORIGINAL_PARTITION: &str = "dlq.original.partition";
/// Dead-letter header: the offset the record was consumed from.
pub const DLQ_ORIGINAL_OFFSET: &str = "dlq.original.offset";
/// Dead-letter header: the [`crate::ErrorKind`] of the failure.
pub const DLQ_ERROR_KIND: &str = "dlq.error.kind";
/// Dead-letter header: the failure's message.
pub const DLQ_ERROR_MESSAGE: &str = "dlq.error.message";

/// Dead-letter header: the consumed record's timestamp, in milliseconds.
pub const DLQ_ORIGINAL_TIMESTAMP: &str = "dlq.original.timestamp";
/// Dead-letter header: the consumed record's timestamp type, `CreateTime` or
/// `LogAppendTime`.
pub const DLQ_ORIGINAL_TIMESTAMP_TYPE: &str = "dlq.original.timestamp.type";
/// Dead-letter header of a reduced dead letter: why the value was left out
/// (`too-large`: the dead letter with it exceeded the broker's limit).
pub const DLQ_VALUE_OMITTED: &str = "dlq.value.omitted";
/// Dead-letter header of a reduced dead letter: the left-out value's size in bytes.
pub const DLQ_ORIGINAL_VALUE_SIZE: &str = "dlq.original.value.size";
/// Dead-letter header of a reduced dead letter: the left-out value's SHA-256, hex.
pub const DLQ_ORIGINAL_VALUE_SHA256: &str = "dlq.original.value.sha256";
/// Dead-letter header of a dead letter reduced twice: how many of the
/// consumed record's headers were left out too.
pub const DLQ_HEADERS_OMITTED: &str = "dlq.original.headers.omitted";

/// The headers the dead-letter layer adds (and DLQ replay removes).
pub const DLQ_HEADERS: [&str; 12] = [
    DLQ_ORIGINAL_TOPIC,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_ORIGINAL_TIMESTAMP_TYPE,
    DLQ_ERROR_KIND,
    DLQ_ERROR_MESSAGE,
    DLQ_VALUE_OMITTED,
    DLQ_ORIGINAL_VALUE_SIZE,
    DLQ_ORIGINAL_VALUE_SHA256,
    DLQ_HEADERS_OMITTED,
    STACK_TRACE,
];

/// The names [`crate::context::Propagation`] carries from hop to hop.
pub const PROPAGATED: [&str; 5] = [
    CORRELATION_ID,
    TRACEABILITY_ID,
    AUTHORIZATION,
    TRACEPARENT,
    TRACESTATE,
];

const WELL_KNOWN: [&str; 7] = [
    CORRELATION_ID,
    TRACEABILITY_ID,
    AUTHORIZATION,
    CALLER_ID,
    STACK_TRACE,
    TRACEPARENT,
    TRACESTATE,
];

/// The canonical spelling of a well-known name, matched ignoring ASCII case.
///
/// ```
/// # use light_kafka::record::names;
/// assert_eq!(names::well_known("x-correlation-id"), Some(names::CORRELATION_ID));
/// assert_eq!(names::well_known("x-custom"), None);
/// ```
pub fn well_known(name: &str) -> Option<&'static str> {
    WELL_KNOWN
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(name))
}

/// Whether the value of a header with this name must never be logged.
///
/// ```
/// # use light_kafka::record::names;
/// assert!(names::is_sensitive("Authorization"));
/// assert!(!names::is_sensitive("X-Correlation-Id"));
/// ```
pub fn is_sensitive(name: &str) -> bool {
    name.eq_ignore_ascii_case(AUTHORIZATION)
        || name.eq_ignore_ascii_case("proxy-authorization")
        || name.eq_ignore_ascii_case("cookie")
}
