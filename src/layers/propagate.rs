//! Correlation and traceability ids, identity and trace context, from hop to hop.
//!
//! One layer, two directions:
//!
//! - [`PropagateLayer::consume`] wraps a consumer handler. It reads
//!   `X-Correlation-Id` and `X-Traceability-Id` from the record, generates a
//!   correlation id when there is none (a UUID v7 by default), and makes the
//!   ids available to the handler (the current [`Propagation`], so records it
//!   produces carry them) and to outer layers (the [`RecordContext`]). It
//!   never changes the consumed record: its headers stay exactly as consumed
//!   (what the dead-letter topic receives is the record as it was).
//! - [`PropagateLayer::produce`] wraps a producer. It stamps every record with
//!   the current context: `X-Correlation-Id` (generated if there is none),
//!   `X-Traceability-Id`, `authorization`, `traceparent` and `tracestate`,
//!   unless the record already carries them, and `caller_id` set to this
//!   service's id (light-kafka's `injectCallerId`). A token source can supply
//!   a service token when there is no caller token (client-credentials style).
//!   If an outer layer (audit, metrics) put a [`RecordContext`] on the record,
//!   the ids are written into it.
//!
//! A missing header is never an error.
//!
//! ```
//! use light_kafka::context::{self, Propagation};
//! use light_kafka::layers::propagate::PropagateLayer;
//! use light_kafka::record::{names, Record};
//! use light_kafka::testkit::{self, RecordingProducer};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let sent = RecordingProducer::new();
//! let mut producer = ServiceBuilder::new()
//!     .layer(PropagateLayer::produce("order-service"))
//!     .service(sent.clone());
//!
//! // Inside a consumer handler (or an HTTP handler) the context is current:
//! let mut incoming = Propagation::new();
//! incoming.set_correlation_id("c-1");
//! incoming.set_authorization("Bearer abc");
//! context::scope(incoming, testkit::call(&mut producer, Record::builder("events").build()))
//!     .await
//!     .unwrap();
//!
//! let record = &sent.records()[0];
//! assert_eq!(record.header_str(names::CORRELATION_ID), Some("c-1"));
//! assert_eq!(record.header_str(names::AUTHORIZATION), Some("Bearer abc"));
//! assert_eq!(record.header_str(names::CALLER_ID), Some("order-service"));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{self, Propagation, RecordContext, Scoped};
use crate::record::{HeaderName, Record, names};

/// Makes correlation ids.
pub trait MakeCorrelationId: Send + Sync + 'static {
    /// A new, unique id.
    fn make(&self) -> String;

    /// A new, unique id as a shared string (what the per-record context
    /// keeps). The default converts [`make`](Self::make)'s `String`;
    /// [`UuidV7`] writes it directly, with one allocation.
    fn make_shared(&self) -> Arc<str> {
        Arc::from(self.make())
    }
}

impl<F> MakeCorrelationId for F
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn make(&self) -> String {
        self()
    }
}

/// UUID v7 correlation ids (time-ordered), the default.
///
/// Each thread keeps its own `uuid::ContextV7`, so ids made by one thread
/// are strictly ordered, also within a millisecond, and no lock is shared
/// between threads (`Uuid::now_v7` orders every id of the process through
/// one mutex, which costs twice as much per record even uncontended).
///
/// ```
/// use light_kafka::layers::propagate::{MakeCorrelationId, UuidV7};
///
/// let id = UuidV7.make();
/// assert_eq!(id.len(), 36);
/// assert_eq!(&id[14..15], "7"); // the version digit
/// assert_ne!(UuidV7.make_shared(), UuidV7.make_shared());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7;

impl UuidV7 {
    fn encode(buffer: &mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &str {
        thread_local! {
            static CONTEXT: uuid::ContextV7 = const { uuid::ContextV7::new() };
        }
        let id = CONTEXT.with(|context| uuid::Uuid::new_v7(uuid::Timestamp::now(context)));
        // Encoded straight into a buffer: no formatting machinery per record.
        id.hyphenated().encode_lower(buffer)
    }
}

impl MakeCorrelationId for UuidV7 {
    fn make(&self) -> String {
        UuidV7::encode(&mut [0; uuid::fmt::Hyphenated::LENGTH]).to_owned()
    }

    fn make_shared(&self) -> Arc<str> {
        Arc::from(UuidV7::encode(&mut [0; uuid::fmt::Hyphenated::LENGTH]))
    }
}

/// Supplies this service's own token, for records produced without a caller token.
pub trait TokenSource: Send + Sync + 'static {
    /// The bearer token (without the `Bearer ` prefix), if one is available.
    fn token(&self) -> Option<Arc<str>>;
}

/// A fixed token. `Debug` does not show it.
#[derive(Clone)]
pub struct StaticToken(Arc<str>);

impl StaticToken {
    /// A source that always returns `token`.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        StaticToken(token.into())
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> Option<Arc<str>> {
        Some(self.0.clone())
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

#[derive(Clone)]
enum Direction {
    Consume,
    Produce {
        service_id: Bytes,
        token: Option<Arc<dyn TokenSource>>,
    },
}

/// Layer that applies [`Propagate`]. See the [module documentation](self).
#[derive(Clone)]
pub struct PropagateLayer {
    direction: Direction,
    ids: Arc<dyn MakeCorrelationId>,
}

impl PropagateLayer {
    /// For consumer chains.
    pub fn consume() -> Self {
        PropagateLayer {
            direction: Direction::Consume,
            ids: Arc::new(UuidV7),
        }
    }

    /// For producer chains of the service `service_id` (written as `caller_id`).
    pub fn produce(service_id: impl Into<String>) -> Self {
        PropagateLayer {
            direction: Direction::Produce {
                service_id: Bytes::from(service_id.into()),
                token: None,
            },
            ids: Arc::new(UuidV7),
        }
    }

    /// Generates correlation ids with `ids` instead of UUID v7.
    pub fn correlation_ids(mut self, ids: impl MakeCorrelationId) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// Produce side: when neither the record nor the current context carries
    /// a token, attach `Bearer <token>` from `source`.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        if let Direction::Produce { token, .. } = &mut self.direction {
            *token = Some(Arc::new(source));
        }
        self
    }
}

impl fmt::Debug for PropagateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = match &self.direction {
            Direction::Consume => "consume",
            Direction::Produce { .. } => "produce",
        };
        f.debug_struct("PropagateLayer")
            .field("direction", &direction)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate {
            inner,
            layer: self.clone(),
        }
    }
}

/// Reads (consume) or stamps (produce) the propagated headers of each record.
#[derive(Clone)]
pub struct Propagate<S> {
    inner: S,
    layer: PropagateLayer,
}

impl<S> Propagate<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Propagate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Propagate")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

const CORRELATION: HeaderName = HeaderName::from_static(names::CORRELATION_ID);
const CALLER: HeaderName = HeaderName::from_static(names::CALLER_ID);

fn text(value: &[u8]) -> Option<Arc<str>> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty())
        .map(Arc::from)
}

impl<S> Service<Record> for Propagate<S>
where
    S: Service<Record>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        match &self.layer.direction {
            Direction::Consume => {
                let mut correlation = record.header(names::CORRELATION_ID).and_then(text);
                let generated = correlation.is_none();
                if generated {
                    correlation = Some(self.layer.ids.make_shared());
                }
                let traceability = record.header(names::TRACEABILITY_ID).and_then(text);
                let caller = record.header(names::CALLER_ID).and_then(text);
                RecordContext::of(&mut record).update(|f| {
                    f.correlation_id = correlation.clone();
                    f.traceability_id = traceability;
                    f.caller_id = caller;
                });
                if let (true, Some(id)) = (generated, &correlation) {
                    // The handler's current context gets the new id.
                    let mut propagation = Propagation::from_headers(record.headers());
                    propagation.set_correlation_id(Bytes::copy_from_slice(id.as_bytes()));
                    let future =
                        context::sync_scope(propagation.clone(), || self.inner.call(record));
                    ResponseFuture::scoped(context::scope(propagation, future))
                } else {
                    ResponseFuture::plain(self.inner.call(record))
                }
            }
            Direction::Produce { service_id, token } => {
                let layer = &self.layer;
                context::with_current(|current| {
                    if let Some(current) = current {
                        for (name, value) in current.iter() {
                            if !record.headers().contains(name) {
                                record
                                    .headers_mut()
                                    .append(HeaderName::from_static(name), value.clone());
                            }
                        }
                    }
                });
                if !record.headers().contains(names::CORRELATION_ID) {
                    record.headers_mut().append(CORRELATION, layer.ids.make());
                }
                if !record.headers().contains(names::AUTHORIZATION)
                    && let Some(token) = token.as_ref().and_then(|t| t.token())
                {
                    record.headers_mut().append(
                        HeaderName::from_static(names::AUTHORIZATION),
                        format!("Bearer {token}"),
                    );
                }
                record.headers_mut().insert(CALLER, service_id.clone());
                // Outer layers that want to know asked for a context first.
                if let Some(context) = RecordContext::get(&record) {
                    let correlation = record.header(names::CORRELATION_ID).and_then(text);
                    let traceability = record.header(names::TRACEABILITY_ID).and_then(text);
                    let caller = std::str::from_utf8(service_id).ok().map(Arc::from);
                    context.update(|f| {
                        f.correlation_id = correlation;
                        f.traceability_id = traceability;
                        f.caller_id = caller;
                    });
                }
                ResponseFuture::plain(self.inner.call(record))
            }
        }
    }
}

pin_project! {
    /// Response future of [`Propagate`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Plain { #[pin] future: F },
        Scoped { #[pin] future: Scoped<F> },
    }
}

impl<F> ResponseFuture<F> {
    fn plain(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Plain { future },
        }
    }

    fn scoped(future: Scoped<F>) -> Self {
        ResponseFuture {
            kind: Kind::Scoped { future },
        }
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project().kind.project() {
            KindProj::Plain { future } => future.poll(cx),
            KindProj::Scoped { future } => future.poll(cx),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_hyphenated_uuid_v7() {
        let a = UuidV7.make();
        let b = UuidV7.make();
        assert_eq!(a.len(), 36);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.hyphenated().to_string(), a, "lower case, hyphenated");
        assert!(a < b, "time-ordered");
    }
    use crate::testkit::{self, RecordingProducer};
    use std::convert::Infallible;
    use tower::{ServiceBuilder, service_fn};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<PropagateLayer>();
        assert_send_sync::<Propagate<RecordingProducer>>();
        assert_send_sync::<ResponseFuture<std::future::Ready<()>>>();
    }

    #[tokio::test]
    async fn consume_generates_a_missing_correlation_id_and_shares_it() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let handler = {
            let seen = seen.clone();
            service_fn(move |record: Record| {
                let seen = seen.clone();
                async move {
                    let current = context::current().unwrap();
                    *seen.lock().unwrap() = Some((
                        record.header_str(names::CORRELATION_ID).map(str::to_owned),
                        current.correlation_id().map(str::to_owned),
                        RecordContext::get(&record).unwrap().fields().correlation_id,
                    ));
                    Ok::<_, Infallible>(())
                }
            })
        };
        let mut svc = ServiceBuilder::new()
            .layer(PropagateLayer::consume().correlation_ids(|| "generated-1".to_owned()))
            .service(handler);
        testkit::call(&mut svc, testkit::record("t").build())
            .await
            .unwrap();
        let (header, current, context) = seen.lock().unwrap().take().unwrap();
        assert_eq!(header, None, "the consumed record stays as consumed");
        assert_eq!(current.as_deref(), Some("generated-1"));
        assert_eq!(context.as_deref(), Some("generated-1"));
    }

    #[tokio::test]
    async fn consume_keeps_ids_and_never_fails_on_missing_headers() {
        let mut svc = ServiceBuilder::new()
            .layer(PropagateLayer::consume())
            .service(service_fn(|record: Record| async move {
                let f = RecordContext::get(&record).unwrap().fields();
                Ok::<_, Infallible>((f.correlation_id, f.traceability_id, f.caller_id))
            }));
        let record = testkit::record("t")
            .header(names::CORRELATION_ID, "c-9")
            .header(names::TRACEABILITY_ID, "t-9")
            .header(names::CALLER_ID, "billing")
            .build();
        let (c, t, caller) = testkit::call(&mut svc, record).await.unwrap();
        assert_eq!(
            (c.as_deref(), t.as_deref(), caller.as_deref()),
            (Some("c-9"), Some("t-9"), Some("billing"))
        );

        let bare = testkit::record("t")
            .header(names::CORRELATION_ID, vec![0xff])
            .build();
        let (c, t, caller) = testkit::call(&mut svc, bare).await.unwrap();
        assert!(
            c.is_some(),
            "a non-UTF-8 correlation id is replaced by a generated one"
        );
        assert_eq!((t, caller), (None, None));
    }

    #[tokio::test]
    async fn produce_stamps_from_the_context_without_overriding_the_record() {
        let sent = RecordingProducer::new();
        let mut producer = ServiceBuilder::new()
            .layer(PropagateLayer::produce("svc-a").token_source(StaticToken::new("service-token")))
            .service(sent.clone());

        // No context at all: a correlation id is generated, the service token used.
        testkit::call(&mut producer, Record::builder("t").build())
            .await
            .unwrap();
        // A context with a caller token: the caller's token wins, the record's own id too.
        let mut current = Propagation::new();
        current.set_correlation_id("from-context");
        current.set_traceability_id("trace-1");
        current.set_authorization("Bearer caller-token");
        current.set_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let explicit = Record::builder("t")
            .header(names::CORRELATION_ID, "explicit")
            .header(names::CALLER_ID, "someone-else")
            .build();
        context::scope(current, testkit::call(&mut producer, explicit))
            .await
            .unwrap();

        let records = sent.records();
        let first = &records[0];
        assert!(
            first
                .header_str(names::CORRELATION_ID)
                .is_some_and(|c| !c.is_empty())
        );
        assert_eq!(
            first.header_str(names::AUTHORIZATION),
            Some("Bearer service-token")
        );
        assert_eq!(first.header_str(names::TRACEABILITY_ID), None);
        assert_eq!(first.header_str(names::CALLER_ID), Some("svc-a"));

        let second = &records[1];
        assert_eq!(second.header_str(names::CORRELATION_ID), Some("explicit"));
        assert_eq!(second.header_str(names::TRACEABILITY_ID), Some("trace-1"));
        assert_eq!(
            second.header_str(names::AUTHORIZATION),
            Some("Bearer caller-token")
        );
        assert!(second.header_str(names::TRACEPARENT).is_some());
        assert_eq!(second.headers().get_all(names::CALLER_ID).count(), 1);
        assert_eq!(second.header_str(names::CALLER_ID), Some("svc-a"));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let layer = PropagateLayer::produce("svc").token_source(StaticToken::new("s3cr3t"));
        assert!(!format!("{layer:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", StaticToken::new("s3cr3t")).contains("s3cr3t"));
    }
}
