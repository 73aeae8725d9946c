//! Layers: one module per cross-cutting concern, each a `tower::Layer` over
//! `Service<Record>`, usable in consumer, producer and stream-processor chains.
//!
//! # The canonical order
//!
//! Outermost first, as every example and test composes them:
//!
//! ```text
//! catch-panic → metrics → propagate → trace → audit → dead-letter → retry → jwt → schema → handler
//! ```
//!
//! What each position means:
//!
//! - [`catch_panic`] outermost: a bug in any layer below becomes an error,
//!   never an unwound task. (The dead-letter layer also catches the panics of
//!   the handler, so those records are dead-lettered.)
//! - [`metrics`] next: it times everything below and, reading the
//!   [`RecordContext`](crate::context::RecordContext) after the inner call,
//!   labels by the client the JWT layer verified and sees whether the record
//!   was dead-lettered.
//! - [`propagate`] before trace and audit, so both see the correlation id,
//!   generated if the record had none.
//! - [`trace`] wraps audit and everything below in the record's span.
//! - [`audit`] records one entry per record, with what inner layers learned.
//! - [`dead_letter`] is the boundary: failures below it are classified; poison
//!   records are settled through `<topic>.dlq`, so layers above see success
//!   (and metrics an outcome of `dead_lettered`), while outages (timeouts,
//!   overload, transient, produce and config failures) go on up to the
//!   consumer runtime, which backs off and tries the record again without
//!   committing past it.
//! - [`retry`] inside the dead-letter layer: quick retries of transient
//!   failures first; what still fails after them goes back to the runtime.
//! - [`jwt`] then [`schema`]: reject records that have no business reaching the
//!   handler, cheapest check first.
//!
//! Reordering is allowed and sometimes wanted: put the retry layer outside the
//! dead-letter layer to retry dead-letter writes as well, or leave the
//! dead-letter layer out to let the consumer runtime retry or stop
//! ([`ErrorPolicy`](crate::service::consumer::ErrorPolicy)).
//!
//! The [`ServiceBuilderExt`](crate::builder::ServiceBuilderExt) trait has one
//! method per layer.

pub mod audit;
#[cfg(feature = "avro")]
pub mod avro;
pub mod catch_panic;
pub mod dead_letter;
#[cfg(any(
    feature = "avro",
    feature = "json-schema",
    feature = "jwt",
    feature = "protobuf"
))]
pub mod future;
#[cfg(any(
    feature = "avro",
    feature = "jwt",
    feature = "http-backend",
    feature = "json-schema",
    feature = "protobuf"
))]
pub mod http_client;
pub mod http_context;
#[cfg(feature = "json-schema")]
pub mod json_schema_registry;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod metrics;
pub mod propagate;
#[cfg(feature = "protobuf")]
pub mod protobuf;
#[cfg(any(feature = "avro", feature = "json-schema", feature = "protobuf"))]
pub mod registry;
pub mod retry;
#[cfg(feature = "json-schema")]
pub mod schema;
pub mod trace;
