//! One `tracing` span per record, following OpenTelemetry's messaging conventions.
//!
//! - [`TraceLayer::consume`] opens `process <topic>` (`otel.kind = consumer`)
//!   around the handler; [`TraceLayer::produce`] opens `send <topic>`
//!   (`otel.kind = producer`) around the producer.
//! - Fields: `messaging.system = kafka`, `messaging.operation.name`,
//!   `messaging.destination.name`, `messaging.consumer.group.name`,
//!   `messaging.destination.partition.id`, `messaging.kafka.offset`,
//!   `messaging.kafka.message.key` (when the key is UTF-8), `correlation_id`,
//!   `traceability_id`, and `error.type` (the [`ErrorKind`]) on failure. The
//!   span's name is `process` or `send`; `otel.name` carries the full name.
//! - With the `opentelemetry` feature and a `tracing-opentelemetry` layer
//!   installed, W3C trace context crosses Kafka: the consume side reads
//!   `traceparent`/`tracestate` from the record and makes it the span's parent;
//!   the produce side writes its span's context into the record. The produce
//!   span's parent is the current span, or else the current propagation's
//!   `traceparent` (a record produced inside an HTTP handler joins the trace
//!   of the request). An HTTP → produce → consume → produce chain is one trace.
//!
//! Spans are at `INFO`; with no subscriber interested, a record costs a few
//! nanoseconds here.
//!
//! ```
//! use light_kafka::layers::trace::TraceLayer;
//! use light_kafka::testkit::{self, Accept};
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut handler = TraceLayer::consume().group("billing").layer(Accept);
//! testkit::call(&mut handler, testkit::record("orders").key("k").build()).await.unwrap();
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use crate::context::RecordContext;
use crate::error::{BoxError, ErrorKind, classify};
use crate::record::{Record, names};

#[derive(Clone, Debug)]
enum Direction {
    Consume { group: Option<Arc<str>> },
    Produce,
}

/// Layer that applies [`Trace`]. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct TraceLayer {
    direction: Direction,
}

impl TraceLayer {
    /// `process <topic>` spans, for consumer chains.
    pub fn consume() -> Self {
        TraceLayer {
            direction: Direction::Consume { group: None },
        }
    }

    /// `send <topic>` spans, for producer chains.
    pub fn produce() -> Self {
        TraceLayer {
            direction: Direction::Produce,
        }
    }

    /// The consumer group, for `messaging.consumer.group.name`.
    pub fn group(mut self, group: impl Into<Arc<str>>) -> Self {
        if let Direction::Consume { group: g } = &mut self.direction {
            *g = Some(group.into());
        }
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            direction: self.direction.clone(),
        }
    }
}

/// Runs each record's work inside its span.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    direction: Direction,
}

impl<S> Trace<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn ids(record: &Record) -> (Option<Arc<str>>, Option<Arc<str>>) {
    if let Some(context) = RecordContext::get(record) {
        let f = context.fields();
        if f.correlation_id.is_some() {
            return (f.correlation_id, f.traceability_id);
        }
    }
    (
        record.header_str(names::CORRELATION_ID).map(Arc::from),
        record.header_str(names::TRACEABILITY_ID).map(Arc::from),
    )
}

fn span_for(record: &Record, direction: &Direction) -> Span {
    let topic = record.topic();
    let span = match direction {
        Direction::Consume { group } => tracing::info_span!(
            "process",
            "otel.name" = %format_args!("process {topic}"),
            "otel.kind" = "consumer",
            "messaging.system" = "kafka",
            "messaging.operation.name" = "process",
            "messaging.destination.name" = topic,
            "messaging.consumer.group.name" = group.as_deref(),
            "messaging.destination.partition.id" = record.partition(),
            "messaging.kafka.offset" = record.offset(),
            "messaging.kafka.message.key" = record.key_str(),
            correlation_id = Empty,
            traceability_id = Empty,
            "error.type" = Empty,
        ),
        Direction::Produce => tracing::info_span!(
            "send",
            "otel.name" = %format_args!("send {topic}"),
            "otel.kind" = "producer",
            "messaging.system" = "kafka",
            "messaging.operation.name" = "send",
            "messaging.destination.name" = topic,
            "messaging.destination.partition.id" = record.partition(),
            "messaging.kafka.message.key" = record.key_str(),
            correlation_id = Empty,
            traceability_id = Empty,
            "error.type" = Empty,
        ),
    };
    if !span.is_disabled() {
        let (correlation, traceability) = ids(record);
        span.record("correlation_id", correlation.as_deref());
        span.record("traceability_id", traceability.as_deref());
    }
    span
}

impl<S> Service<Record> for Trace<S>
where
    S: Service<Record>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[allow(unused_mut)]
    fn call(&mut self, mut record: Record) -> Self::Future {
        let span = span_for(&record, &self.direction);
        #[cfg(feature = "opentelemetry")]
        if !span.is_disabled() {
            match self.direction {
                Direction::Consume { .. } => w3c::adopt_parent(&span, &record),
                Direction::Produce => w3c::inject(&span, &mut record),
            }
        }
        let future = span.in_scope(|| self.inner.call(record));
        ResponseFuture { future, span }
    }
}

pin_project! {
    /// Response future of [`Trace`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        span: Span,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.future.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(response)) => Poll::Ready(Ok(response)),
            Poll::Ready(Err(error)) => {
                let error: BoxError = error.into();
                let kind: ErrorKind = classify(error.as_ref());
                this.span.record("error.type", kind.as_str());
                #[cfg(feature = "opentelemetry")]
                {
                    use tracing_opentelemetry::OpenTelemetrySpanExt;
                    this.span
                        .set_status(opentelemetry::trace::Status::error(kind.as_str()));
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

/// W3C trace context (`traceparent`, `tracestate`) in record headers.
#[cfg(feature = "opentelemetry")]
pub mod w3c {
    use std::str::FromStr;

    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::context;
    use crate::record::{HeaderName, Headers, Record, names};

    /// Parses a `traceparent` (and optional `tracestate`) into a remote span context.
    ///
    /// ```
    /// use light_kafka::layers::trace::w3c;
    /// let cx = w3c::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
    /// assert!(cx.is_sampled() && cx.is_remote());
    /// assert!(w3c::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
    /// assert!(w3c::parse("garbage", None).is_none());
    /// ```
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        let flags =
            TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
        let state = tracestate
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }

    /// The `traceparent` header value of a span context.
    pub fn format(span_context: &SpanContext) -> String {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    }

    /// The remote span context carried by `headers`, if any.
    pub fn extract(headers: &Headers) -> Option<SpanContext> {
        parse(
            headers.get_str(names::TRACEPARENT)?,
            headers.get_str(names::TRACESTATE),
        )
    }

    /// Writes `span_context` into `headers`, replacing any trace context.
    pub fn write(span_context: &SpanContext, headers: &mut Headers) {
        headers.insert(
            HeaderName::from_static(names::TRACEPARENT),
            format(span_context),
        );
        let state = span_context.trace_state().header();
        if state.is_empty() {
            headers.remove(names::TRACESTATE);
        } else {
            headers.insert(HeaderName::from_static(names::TRACESTATE), state);
        }
    }

    pub(super) fn adopt_parent(span: &Span, record: &Record) {
        if let Some(parent) = extract(record.headers()) {
            let _ = span.set_parent(Context::new().with_remote_span_context(parent));
        }
    }

    pub(super) fn inject(span: &Span, record: &mut Record) {
        let current = Span::current().context();
        if !current.span().span_context().is_valid()
            && let Some(parent) = context::with_current(|p| {
                p.and_then(|p| p.traceparent().and_then(|tp| parse(tp, p.tracestate())))
            })
        {
            let _ = span.set_parent(Context::new().with_remote_span_context(parent));
        }
        let own = span.context().span().span_context().clone();
        if own.is_valid() {
            write(&own, record.headers_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Accept};
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<TraceLayer>();
        assert_send_sync::<Trace<Accept>>();
        assert_send_sync::<ResponseFuture<std::future::Ready<Result<(), BoxError>>>>();
    }

    /// Captures the fields of new spans and their recorded values.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<Vec<(String, String, String)>>>);

    struct Visitor<'a>(&'a Fields, &'a str);
    impl tracing::field::Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0.0.lock().unwrap().push((
                self.1.to_owned(),
                field.name().to_owned(),
                format!("{value:?}"),
            ));
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.0.lock().unwrap().push((
                self.1.to_owned(),
                field.name().to_owned(),
                value.to_owned(),
            ));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Fields {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            attrs.record(&mut Visitor(self, attrs.metadata().name()));
        }
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(&mut Visitor(self, "record"));
        }
    }

    #[tokio::test]
    async fn span_fields_follow_the_conventions() {
        let fields = Fields::default();
        let subscriber = tracing_subscriber::registry().with(fields.clone());
        let _guard = tracing::subscriber::set_default(subscriber);

        let failing = tower::service_fn(|_: Record| async {
            Err::<(), _>(crate::Error::new(ErrorKind::Invalid, "bad"))
        });
        let mut svc = TraceLayer::consume().group("billing").layer(failing);
        let record = testkit::record("orders")
            .partition(2)
            .offset(17)
            .key("order-9")
            .header(names::CORRELATION_ID, "c-1")
            .build();
        assert!(testkit::call(&mut svc, record).await.is_err());

        let seen: std::collections::HashMap<String, String> = fields
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(seen["otel.name"], "process orders");
        assert_eq!(seen["otel.kind"], "consumer");
        assert_eq!(seen["messaging.system"], "kafka");
        assert_eq!(seen["messaging.destination.name"], "orders");
        assert_eq!(seen["messaging.consumer.group.name"], "billing");
        assert_eq!(seen["messaging.destination.partition.id"], "2");
        assert_eq!(seen["messaging.kafka.offset"], "17");
        assert_eq!(seen["messaging.kafka.message.key"], "order-9");
        assert_eq!(seen["correlation_id"], "c-1");
        assert_eq!(seen["error.type"], "invalid");

        fields.0.lock().unwrap().clear();
        let mut producer = TraceLayer::produce().layer(Accept);
        testkit::call(
            &mut producer,
            Record::builder("shipments").key(vec![0xff]).build(),
        )
        .await
        .unwrap();
        let seen: std::collections::HashMap<String, String> = fields
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(seen["otel.name"], "send shipments");
        assert_eq!(seen["otel.kind"], "producer");
        assert!(
            !seen.contains_key("messaging.kafka.message.key"),
            "a non-UTF-8 key is left out"
        );
        assert!(!seen.contains_key("error.type"));
    }
}
