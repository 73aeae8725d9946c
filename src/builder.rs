//! [`ServiceBuilderExt`]: one `ServiceBuilder` method per layer, as tower-http has.
//!
//! Its names never collide with tower-http's `ServiceBuilderExt`, so a module
//! can import both (`catch_record_panic` here, `catch_panic` there). Layers
//! that work one way on consumed and another on produced records have a
//! method per direction (`*_consume`, `*_produce`); layers that need settings
//! take the configured layer (`audit`, `jwt_verify`, `json_schema`...).
//!
//! A chain is a deeply nested type; [`boxed`] erases it to a
//! [`BoxRecordService`], so it can be returned from a function or stored.
//!
//! ```
//! use light_kafka::builder::ServiceBuilderExt;
//! use light_kafka::record::Record;
//! use light_kafka::testkit::{self, RecordingProducer};
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dlq = RecordingProducer::new();
//! let mut chain = ServiceBuilder::new()
//!     .catch_record_panic()
//!     .propagate_consume()
//!     .dead_letter(dlq.clone())
//!     .service(service_fn(|_: Record| async { Err::<(), _>(light_kafka::Error::handler("nope")) }));
//! let outcome = testkit::call(&mut chain, testkit::record("orders").build()).await.unwrap();
//! assert!(outcome.is_dead_lettered());
//! assert_eq!(dlq.records()[0].topic(), "orders.dlq");
//! # }
//! ```

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::layers::audit::AuditLayer;
use crate::layers::catch_panic::CatchPanicLayer;
use crate::layers::dead_letter::DeadLetterLayer;
use crate::layers::metrics::MetricsLayer;
use crate::layers::propagate::PropagateLayer;
use crate::layers::retry::{RetryPolicy, RetryRecordsLayer};
use crate::layers::trace::TraceLayer;

/// Adds light-kafka's layers to a `tower::ServiceBuilder`.
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Turns panics of the inner service into errors ([`CatchPanicLayer`]).
    /// (Not `catch_panic`: that is tower-http's, for HTTP services.)
    fn catch_record_panic(self) -> ServiceBuilder<Stack<CatchPanicLayer, L>>;

    /// Reads or generates correlation ids of consumed records ([`PropagateLayer::consume`]).
    fn propagate_consume(self) -> ServiceBuilder<Stack<PropagateLayer, L>>;

    /// Stamps produced records with the current context and `caller_id`
    /// ([`PropagateLayer::produce`]).
    fn propagate_produce(
        self,
        service_id: impl Into<String>,
    ) -> ServiceBuilder<Stack<PropagateLayer, L>>;

    /// Settles failed records through a dead-letter topic ([`DeadLetterLayer::new`]).
    fn dead_letter<P>(self, producer: P) -> ServiceBuilder<Stack<DeadLetterLayer<P>, L>>;

    /// Records metrics of consumed records ([`MetricsLayer::consume`]).
    fn metrics_consume(
        self,
        service_id: impl Into<std::sync::Arc<str>>,
    ) -> ServiceBuilder<Stack<MetricsLayer, L>>;

    /// Records metrics of produced records ([`MetricsLayer::produce`]).
    fn metrics_produce(
        self,
        service_id: impl Into<std::sync::Arc<str>>,
    ) -> ServiceBuilder<Stack<MetricsLayer, L>>;

    /// A `process <topic>` span per consumed record ([`TraceLayer::consume`]).
    fn trace_consume(self) -> ServiceBuilder<Stack<TraceLayer, L>>;

    /// A `send <topic>` span per produced record ([`TraceLayer::produce`]).
    fn trace_produce(self) -> ServiceBuilder<Stack<TraceLayer, L>>;

    /// An audit entry per record ([`AuditLayer`]).
    fn audit(self, layer: AuditLayer) -> ServiceBuilder<Stack<AuditLayer, L>>;

    /// Retries transient failures with backoff ([`RetryPolicy::layer`]),
    /// below any service whose error converts into a `BoxError`.
    fn retry_records(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryRecordsLayer, L>>;

    /// Verifies each record's JWT ([`crate::layers::jwt::JwtVerifyLayer`]).
    #[cfg(feature = "jwt")]
    fn jwt_verify(
        self,
        layer: crate::layers::jwt::JwtVerifyLayer,
    ) -> ServiceBuilder<Stack<crate::layers::jwt::JwtVerifyLayer, L>>;

    /// Validates record values against per-topic JSON schemas
    /// ([`crate::layers::schema::JsonSchemaLayer`]).
    #[cfg(feature = "json-schema")]
    fn json_schema(
        self,
        layer: crate::layers::schema::JsonSchemaLayer,
    ) -> ServiceBuilder<Stack<crate::layers::schema::JsonSchemaLayer, L>>;

    /// Decodes Avro record values ([`crate::layers::avro::AvroDecodeLayer`]).
    #[cfg(feature = "avro")]
    fn avro_decode(
        self,
        layer: crate::layers::avro::AvroDecodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::avro::AvroDecodeLayer, L>>;

    /// Encodes record values as Avro ([`crate::layers::avro::AvroEncodeLayer`]).
    #[cfg(feature = "avro")]
    fn avro_encode(
        self,
        layer: crate::layers::avro::AvroEncodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::avro::AvroEncodeLayer, L>>;
    /// Decodes and validates JSON Schema values in the Confluent wire format ([`crate::layers::json_schema_registry::JsonSchemaRegistryLayer`]).
    #[cfg(feature = "json-schema")]
    fn json_schema_registry(
        self,
        layer: crate::layers::json_schema_registry::JsonSchemaRegistryLayer,
    ) -> ServiceBuilder<Stack<crate::layers::json_schema_registry::JsonSchemaRegistryLayer, L>>;

    /// Validates JSON values and frames them in the Confluent wire format ([`crate::layers::json_schema_registry::JsonSchemaRegistryEncodeLayer`]).
    #[cfg(feature = "json-schema")]
    fn json_schema_registry_encode(
        self,
        layer: crate::layers::json_schema_registry::JsonSchemaRegistryEncodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::json_schema_registry::JsonSchemaRegistryEncodeLayer, L>>;

    /// Decodes Protobuf values in the Confluent wire format ([`crate::layers::protobuf::ProtobufDecodeLayer`]).
    #[cfg(feature = "protobuf")]
    fn protobuf_decode(
        self,
        layer: crate::layers::protobuf::ProtobufDecodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::protobuf::ProtobufDecodeLayer, L>>;

    /// Encodes record values as Protobuf in the Confluent wire format ([`crate::layers::protobuf::ProtobufEncodeLayer`]).
    #[cfg(feature = "protobuf")]
    fn protobuf_encode(
        self,
        layer: crate::layers::protobuf::ProtobufEncodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::protobuf::ProtobufEncodeLayer, L>>;
}

/// A record service with its type erased: cloneable, `Send + Sync`, with
/// [`BoxError`](crate::BoxError) errors. The response of a consumer chain is
/// `()` for a bare handler, or [`Outcome<R>`](crate::layers::dead_letter::Outcome)
/// when the chain has a dead-letter layer (a record either handled with `R`,
/// or dead-lettered).
pub type BoxRecordService<R = ()> =
    tower::util::BoxCloneSyncService<crate::record::Record, R, crate::BoxError>;

/// Erases a chain's type (see [`BoxRecordService`]), for returning a chain
/// from a function or keeping chains of different shapes in one place.
///
/// ```
/// use light_kafka::builder::{boxed, BoxRecordService, ServiceBuilderExt};
/// use light_kafka::layers::dead_letter::Outcome;
/// use light_kafka::record::Record;
/// use light_kafka::testkit::{self, RecordingProducer};
/// use tower::{service_fn, ServiceBuilder};
///
/// fn orders_chain(dlq: RecordingProducer) -> BoxRecordService<Outcome<()>> {
///     boxed(
///         ServiceBuilder::new()
///             .catch_record_panic()
///             .dead_letter(dlq)
///             .service(service_fn(|_: Record| async { Ok::<_, light_kafka::BoxError>(()) })),
///     )
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut chain = orders_chain(RecordingProducer::new());
/// let outcome = testkit::call(&mut chain, testkit::record("orders").build()).await.unwrap();
/// assert!(!outcome.is_dead_lettered());
/// # }
/// ```
pub fn boxed<S>(service: S) -> BoxRecordService<S::Response>
where
    S: tower::Service<crate::record::Record> + Clone + Send + Sync + 'static,
    S::Error: Into<crate::BoxError>,
    S::Future: Send + 'static,
{
    use tower::ServiceExt as _;
    BoxRecordService::new(service.map_err(Into::into))
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn catch_record_panic(self) -> ServiceBuilder<Stack<CatchPanicLayer, L>> {
        self.layer(CatchPanicLayer::new())
    }

    fn propagate_consume(self) -> ServiceBuilder<Stack<PropagateLayer, L>> {
        self.layer(PropagateLayer::consume())
    }

    fn propagate_produce(
        self,
        service_id: impl Into<String>,
    ) -> ServiceBuilder<Stack<PropagateLayer, L>> {
        self.layer(PropagateLayer::produce(service_id))
    }

    fn dead_letter<P>(self, producer: P) -> ServiceBuilder<Stack<DeadLetterLayer<P>, L>> {
        self.layer(DeadLetterLayer::new(producer))
    }

    fn retry_records(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryRecordsLayer, L>> {
        self.layer(policy.layer())
    }

    fn metrics_consume(
        self,
        service_id: impl Into<std::sync::Arc<str>>,
    ) -> ServiceBuilder<Stack<MetricsLayer, L>> {
        self.layer(MetricsLayer::consume(service_id))
    }

    fn metrics_produce(
        self,
        service_id: impl Into<std::sync::Arc<str>>,
    ) -> ServiceBuilder<Stack<MetricsLayer, L>> {
        self.layer(MetricsLayer::produce(service_id))
    }

    fn trace_consume(self) -> ServiceBuilder<Stack<TraceLayer, L>> {
        self.layer(TraceLayer::consume())
    }

    fn trace_produce(self) -> ServiceBuilder<Stack<TraceLayer, L>> {
        self.layer(TraceLayer::produce())
    }

    fn audit(self, layer: AuditLayer) -> ServiceBuilder<Stack<AuditLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "jwt")]
    fn jwt_verify(
        self,
        layer: crate::layers::jwt::JwtVerifyLayer,
    ) -> ServiceBuilder<Stack<crate::layers::jwt::JwtVerifyLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "json-schema")]
    fn json_schema(
        self,
        layer: crate::layers::schema::JsonSchemaLayer,
    ) -> ServiceBuilder<Stack<crate::layers::schema::JsonSchemaLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "avro")]
    fn avro_decode(
        self,
        layer: crate::layers::avro::AvroDecodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::avro::AvroDecodeLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "avro")]
    fn avro_encode(
        self,
        layer: crate::layers::avro::AvroEncodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::avro::AvroEncodeLayer, L>> {
        self.layer(layer)
    }
    #[cfg(feature = "json-schema")]
    fn json_schema_registry(
        self,
        layer: crate::layers::json_schema_registry::JsonSchemaRegistryLayer,
    ) -> ServiceBuilder<Stack<crate::layers::json_schema_registry::JsonSchemaRegistryLayer, L>>
    {
        self.layer(layer)
    }

    #[cfg(feature = "json-schema")]
    fn json_schema_registry_encode(
        self,
        layer: crate::layers::json_schema_registry::JsonSchemaRegistryEncodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::json_schema_registry::JsonSchemaRegistryEncodeLayer, L>>
    {
        self.layer(layer)
    }

    #[cfg(feature = "protobuf")]
    fn protobuf_decode(
        self,
        layer: crate::layers::protobuf::ProtobufDecodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::protobuf::ProtobufDecodeLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "protobuf")]
    fn protobuf_encode(
        self,
        layer: crate::layers::protobuf::ProtobufEncodeLayer,
    ) -> ServiceBuilder<Stack<crate::layers::protobuf::ProtobufEncodeLayer, L>> {
        self.layer(layer)
    }
}
