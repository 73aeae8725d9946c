//! The boundary that settles failed records by writing them to a dead-letter topic.
//!
//! When the inner service fails a record, [`DeadLetter`] classifies the error
//! ([`classify`]). **Poison** kinds ([`ErrorKind::is_poison`]: invalid,
//! deserialization, unauthorized, forbidden, rejected, handler, panic) are
//! written to `<topic>.dlq` (the suffix is configurable) and the record is
//! settled. **Outages** (timeout, overloaded, transient, produce, config: a
//! record failing that way may well pass later) are returned as errors: the
//! record is not settled, and the consumer runtime pauses the partition, backs
//! off and tries again, never committing past it and reporting it in its
//! health. [`DeadLetterLayer::route`] changes where any kind goes.
//!
//! # The dead letter
//!
//! The dead letter is the consumed record, faithful: the same key and value,
//! the same headers with their names exactly as consumed (Kafka header names
//! are case-sensitive), in the same order, null, empty and non-UTF-8 values
//! kept, and the consumed timestamp as its `CreateTime`. After them come:
//!
//! - `dlq.original.topic`, `dlq.original.partition`, `dlq.original.offset`,
//!   `dlq.original.timestamp` and `dlq.original.timestamp.type`;
//! - `dlq.error.kind` (e.g. `invalid`) and `dlq.error.message`;
//! - `StackTrace`: the error and its chain of causes (light-kafka's header);
//! - `X-Correlation-Id` and `X-Traceability-Id`, only when the consumed record
//!   had none and the per-record context knew them (a generated correlation id).
//!
//! The record's `authorization` header is kept by default: replaying a dead
//! letter puts the record back where it came from, and the JWT layer there
//! verifies it again; a dead letter without its token would be rejected as
//! unauthorized on replay. Treat the dead-letter topic like the topic it
//! mirrors (same ACLs, same retention), or drop the token with
//! [`DeadLetterLayer::drop_header`].
//!
//! A dead letter the broker refuses as too large (over `message.max.bytes`) is
//! written in a reduced form rather than never: the value left out (null),
//! with `dlq.value.omitted: too-large`, `dlq.original.value.size` and
//! `dlq.original.value.sha256`; if that is still too large, the consumed
//! headers are left out as well (`dlq.original.headers.omitted: <count>`).
//!
//! A panic in the inner service counts as a failure of kind `panic`. A
//! consumed record that could not be converted faithfully (a
//! [`ConversionError`] in its extensions: a header name that is not UTF-8) is
//! dead-lettered without calling the inner service.
//!
//! Once the dead-letter topic acknowledged the record, the layer returns
//! `Ok(`[`Outcome::DeadLettered`]`)`: the record is settled and the consumer
//! runtime commits past it. If producing to the dead-letter topic fails, the
//! layer returns a [`DeadLetterError`]: the record is **not** settled, and the
//! runtime tries it again later.
//!
//! ```
//! use light_kafka::error::ErrorKind;
//! use light_kafka::layers::dead_letter::{DeadLetterLayer, Outcome, Route};
//! use light_kafka::record::{names, Record};
//! use light_kafka::testkit::{self, RecordingProducer};
//! use light_kafka::Error;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dlq = RecordingProducer::new();
//! let mut chain = ServiceBuilder::new()
//!     .layer(DeadLetterLayer::new(dlq.clone()))
//!     .service(service_fn(|record: Record| async move {
//!         match record.value_str() {
//!             Ok("transient") => Err(Error::transient("try later")),
//!             Ok("bad") => Err(Error::new(ErrorKind::Invalid, "no such product")),
//!             _ => Ok(()),
//!         }
//!     }));
//!
//! let outcome = testkit::call(&mut chain, testkit::record("orders").value("bad").offset(7).build()).await.unwrap();
//! assert!(matches!(outcome, Outcome::DeadLettered(_)));
//! let dead = &dlq.records()[0];
//! assert_eq!(dead.topic(), "orders.dlq");
//! assert_eq!(dead.header_str(names::DLQ_ORIGINAL_OFFSET), Some("7"));
//! assert_eq!(dead.header_str(names::DLQ_ERROR_KIND), Some("invalid"));
//!
//! // An outage is not a poison record: not settled here, the runtime retries it.
//! assert!(testkit::call(&mut chain, testkit::record("orders").value("transient").build()).await.is_err());
//! assert_eq!(dlq.records().len(), 1);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RecordContext;
use crate::error::{BoxError, ErrorKind, Kinded, classify};
use crate::layers::catch_panic::PanicError;
use crate::record::{ConversionError, HeaderName, Record, Timestamp, names};

/// Most bytes of an error message kept in `dlq.error.message`.
const MESSAGE_LIMIT: usize = 1024;
/// Most bytes kept in `StackTrace`.
const TRACE_LIMIT: usize = 8 * 1024;

/// `kind: message`, without repeating a kind the message already starts with.
fn describe(kind: ErrorKind, message: &str) -> String {
    let prefix = kind.to_string();
    match message.strip_prefix(prefix.as_str()) {
        Some(rest) if rest.starts_with(':') => message.to_owned(),
        _ => format!("{prefix}: {message}"),
    }
}

/// Where failures of one kind go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Produce the record to the dead-letter topic and settle it.
    DeadLetter,
    /// Return the error: the record is not settled.
    Fail,
}

/// What happened to a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<R> {
    /// The inner service handled it.
    Handled(R),
    /// It failed and now sits in the dead-letter topic.
    DeadLettered(DeadLettered),
}

impl<R> Outcome<R> {
    /// Whether the record went to the dead-letter topic.
    pub fn is_dead_lettered(&self) -> bool {
        matches!(self, Outcome::DeadLettered(_))
    }
}

/// A record settled by the dead-letter layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLettered {
    /// The dead-letter topic it was written to.
    pub topic: String,
    /// The kind of the failure.
    pub kind: ErrorKind,
}

/// Producing to the dead-letter topic failed: kind [`ErrorKind::Produce`].
/// The record is not settled.
#[derive(Debug)]
pub struct DeadLetterError {
    failure: String,
    source: BoxError,
}

impl fmt::Display for DeadLetterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot dead-letter the record ({}): {}",
            self.failure, self.source
        )
    }
}

impl std::error::Error for DeadLetterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl Kinded for DeadLetterError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Produce
    }
}

#[derive(Clone)]
struct Config<P> {
    producer: P,
    suffix: String,
    routes: HashMap<ErrorKind, Route>,
    dropped_headers: Vec<String>,
}

impl<P> Config<P> {
    fn route(&self, kind: ErrorKind) -> Route {
        match self.routes.get(&kind) {
            Some(&route) => route,
            None if kind.is_poison() => Route::DeadLetter,
            None => Route::Fail,
        }
    }
}

/// Layer that applies [`DeadLetter`]. See the [module documentation](self).
pub struct DeadLetterLayer<P> {
    config: Arc<Config<P>>,
}

impl<P> Clone for DeadLetterLayer<P> {
    fn clone(&self) -> Self {
        DeadLetterLayer {
            config: self.config.clone(),
        }
    }
}

impl<P> DeadLetterLayer<P> {
    /// Dead-letters poison records through `producer` to `<topic>.dlq`.
    pub fn new(producer: P) -> Self {
        DeadLetterLayer {
            config: Arc::new(Config {
                producer,
                suffix: ".dlq".to_owned(),
                routes: HashMap::new(),
                dropped_headers: Vec::new(),
            }),
        }
    }
}

impl<P: Clone> DeadLetterLayer<P> {
    /// The configuration, copied first when the layer was already cloned
    /// (the clones keep theirs).
    fn config_mut(&mut self) -> &mut Config<P> {
        Arc::make_mut(&mut self.config)
    }

    /// The dead-letter topic's suffix (default `.dlq`).
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.config_mut().suffix = suffix.into();
        self
    }

    /// Sends failures of `kind` to `route`. Default: [`Route::DeadLetter`]
    /// for poison kinds ([`ErrorKind::is_poison`]), [`Route::Fail`] for the
    /// others (outages, which the runtime retries).
    ///
    /// ```
    /// use light_kafka::error::ErrorKind;
    /// use light_kafka::layers::dead_letter::{DeadLetterLayer, Route};
    /// use light_kafka::testkit::RecordingProducer;
    ///
    /// // Give up on records that time out, instead of retrying them.
    /// let layer = DeadLetterLayer::new(RecordingProducer::new())
    ///     .route(ErrorKind::Timeout, Route::DeadLetter);
    /// # let _ = layer;
    /// ```
    pub fn route(mut self, kind: ErrorKind, route: Route) -> Self {
        self.config_mut().routes.insert(kind, route);
        self
    }

    /// Leaves the consumed record's headers named `name` (matched ignoring
    /// ASCII case) out of its dead letter, for example `authorization` (see the
    /// [module documentation](self) for why the token is kept by default).
    ///
    /// ```
    /// use light_kafka::layers::dead_letter::DeadLetterLayer;
    /// use light_kafka::testkit::RecordingProducer;
    ///
    /// let layer = DeadLetterLayer::new(RecordingProducer::new()).drop_header("authorization");
    /// # let _ = layer;
    /// ```
    pub fn drop_header(mut self, name: impl Into<String>) -> Self {
        self.config_mut().dropped_headers.push(name.into());
        self
    }
}

impl<P> fmt::Debug for DeadLetterLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterLayer")
            .field("suffix", &self.config.suffix)
            .field("routes", &self.config.routes)
            .field("dropped_headers", &self.config.dropped_headers)
            .finish_non_exhaustive()
    }
}

impl<S, P> Layer<S> for DeadLetterLayer<P> {
    type Service = DeadLetter<S, P>;

    fn layer(&self, inner: S) -> DeadLetter<S, P> {
        DeadLetter {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Settles failed records by producing them to a dead-letter topic.
///
/// Its response is [`Outcome<S::Response>`](Outcome): `Handled(response)`
/// when the inner service succeeded, `DeadLettered(..)` when the record now
/// sits in the dead-letter topic. So a consumer chain ending in a handler
/// returning `()` has the response type `Outcome<()>` (name it so when the
/// chain is boxed: `BoxRecordService<Outcome<()>>`).
pub struct DeadLetter<S, P> {
    inner: S,
    config: Arc<Config<P>>,
}

impl<S: Clone, P> Clone for DeadLetter<S, P> {
    fn clone(&self) -> Self {
        DeadLetter {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for DeadLetter<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("inner", &self.inner)
            .field("suffix", &self.config.suffix)
            .finish_non_exhaustive()
    }
}

impl<S, P> DeadLetter<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn truncated(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let end = crate::text::prefix(&text, limit).len();
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The record to write to the dead-letter topic for `original` failing with
/// `error`: the consumed record, faithful, then the `dlq.*` headers (see the
/// [module documentation](self)).
pub fn dead_letter_record(
    original: &Record,
    error: &(dyn std::error::Error + 'static),
    suffix: &str,
) -> Record {
    let mut record = original.forward_to(format!("{}{suffix}", original.topic()));
    if let Some(millis) = original.timestamp().millis() {
        record.set_timestamp(Timestamp::CreateTime(millis));
    }
    let headers = record.headers_mut();
    let mut add = |name: &'static str, value: String| {
        headers.append(HeaderName::from_static(name), value);
    };
    add(names::DLQ_ORIGINAL_TOPIC, original.topic().to_owned());
    if let Some(partition) = original.partition() {
        add(names::DLQ_ORIGINAL_PARTITION, partition.to_string());
    }
    if let Some(offset) = original.offset() {
        add(names::DLQ_ORIGINAL_OFFSET, offset.to_string());
    }
    let timestamp_type = match original.timestamp() {
        Timestamp::CreateTime(_) => Some("CreateTime"),
        Timestamp::LogAppendTime(_) => Some("LogAppendTime"),
        Timestamp::NotAvailable => None,
    };
    if let (Some(millis), Some(kind)) = (original.timestamp().millis(), timestamp_type) {
        add(names::DLQ_ORIGINAL_TIMESTAMP, millis.to_string());
        add(names::DLQ_ORIGINAL_TIMESTAMP_TYPE, kind.to_owned());
    }
    add(names::DLQ_ERROR_KIND, classify(error).as_str().to_owned());
    add(
        names::DLQ_ERROR_MESSAGE,
        truncated(error.to_string(), MESSAGE_LIMIT),
    );
    add(
        names::STACK_TRACE,
        truncated(crate::error::chain(error), TRACE_LIMIT),
    );
    if let Some(context) = RecordContext::get(original) {
        let fields = context.fields();
        for (name, value) in [
            (names::CORRELATION_ID, fields.correlation_id),
            (names::TRACEABILITY_ID, fields.traceability_id),
        ] {
            if let Some(value) = value
                && !original.headers().contains(name)
            {
                record
                    .headers_mut()
                    .append(HeaderName::from_static(name), value.to_string());
            }
        }
    }
    record
}

/// The reduced forms of a dead letter the broker refused as too large: first
/// without the value, then without the consumed headers too. `consumed` is
/// how many of the consumed headers `dead` still holds (they come first).
fn reduced(dead: &Record, original: &Record, consumed: usize, step: usize) -> Record {
    let mut reduced = dead.clone();
    reduced.set_value(None);
    let headers = reduced.headers_mut();
    let value = original.value().map_or(&[][..], |v| v.as_ref());
    headers.append(
        HeaderName::from_static(names::DLQ_VALUE_OMITTED),
        "too-large",
    );
    headers.append(
        HeaderName::from_static(names::DLQ_ORIGINAL_VALUE_SIZE),
        value.len().to_string(),
    );
    headers.append(
        HeaderName::from_static(names::DLQ_ORIGINAL_VALUE_SHA256),
        crate::text::sha256_hex(value),
    );
    if step > 0 {
        let kept: crate::record::Headers =
            reduced.headers().iter().skip(consumed).cloned().collect();
        *reduced.headers_mut() = kept;
        reduced.headers_mut().append(
            HeaderName::from_static(names::DLQ_HEADERS_OMITTED),
            consumed.to_string(),
        );
    }
    reduced
}

impl<S, P> Service<Record> for DeadLetter<S, P>
where
    S: Service<Record>,
    S::Error: Into<BoxError>,
    P: Service<Record> + Clone + Send + Sync + 'static,
    P::Future: Send + 'static,
    P::Error: Into<BoxError>,
{
    type Response = Outcome<S::Response>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        let original = Some(record.clone());
        let config = self.config.clone();
        if let Some(defect) = ConversionError::of(&record) {
            // A poison record before any handler could look at it.
            return ResponseFuture {
                state: State::Failed {
                    error: Some(Box::new(defect.clone())),
                    original,
                    config,
                },
            };
        }
        let state = match catch_unwind(AssertUnwindSafe(|| self.inner.call(record))) {
            Ok(future) => State::Inner {
                future,
                original,
                config,
            },
            Err(payload) => State::Failed {
                error: Some(PanicError::from_payload(payload.as_ref()).into()),
                original,
                config,
            },
        };
        ResponseFuture { state }
    }
}

type Producing = Pin<Box<dyn Future<Output = Result<DeadLettered, BoxError>> + Send>>;

pin_project! {
    /// Response future of [`DeadLetter`].
    pub struct ResponseFuture<F, P> {
        #[pin]
        state: State<F, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, P> {
        Inner {
            #[pin]
            future: F,
            original: Option<Record>,
            config: Arc<Config<P>>,
        },
        Failed {
            error: Option<BoxError>,
            original: Option<Record>,
            config: Arc<Config<P>>,
        },
        Producing { future: Producing },
    }
}

impl<F, T, E, P> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    P: Service<Record> + Clone + Send + Sync + 'static,
    P::Future: Send + 'static,
    P::Error: Into<BoxError>,
{
    type Output = Result<Outcome<T>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Inner {
                    future,
                    original,
                    config,
                } => {
                    let error: BoxError = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Ok(response))) => {
                            return Poll::Ready(Ok(Outcome::Handled(response)));
                        }
                        Ok(Poll::Ready(Err(error))) => error.into(),
                        Err(payload) => PanicError::from_payload(payload.as_ref()).into(),
                    };
                    let next = State::Failed {
                        error: Some(error),
                        original: original.take(),
                        config: config.clone(),
                    };
                    state.set(next);
                }
                StateProj::Failed {
                    error,
                    original,
                    config,
                } => {
                    let error = error.take().expect("polled after completion");
                    let kind = classify(error.as_ref());
                    if config.route(kind) == Route::Fail {
                        return Poll::Ready(Err(error));
                    }
                    let original = original.take().expect("polled after completion");
                    // The consumed record as its dead letter carries it.
                    let mut kept = original.clone();
                    for name in &config.dropped_headers {
                        kept.headers_mut().remove(name);
                    }
                    let consumed = kept.headers().len();
                    let dead = dead_letter_record(&kept, error.as_ref(), &config.suffix);
                    let topic = dead.topic().to_owned();
                    let producer = config.producer.clone();
                    let failure = describe(kind, &error.to_string());
                    let future: Producing = Box::pin(async move {
                        let mut attempt = dead.clone();
                        let mut reductions = 0;
                        let written = loop {
                            let result: Result<(), BoxError> = producer
                                .clone()
                                .oneshot(attempt)
                                .await
                                .map(drop)
                                .map_err(Into::into);
                            match result {
                                Err(cause)
                                    if reductions < 2
                                        && classify(cause.as_ref()) == ErrorKind::Rejected =>
                                {
                                    tracing::warn!(
                                        topic = %original.topic(), offset = original.offset(),
                                        error = %cause, "dead letter refused; writing a reduced one"
                                    );
                                    attempt = reduced(&dead, &original, consumed, reductions);
                                    reductions += 1;
                                }
                                result => break result,
                            }
                        };
                        match written {
                            Ok(_) => {
                                if let Some(defect) = ConversionError::of(&original) {
                                    defect.mark_dead_lettered();
                                }
                                if let Some(context) = RecordContext::get(&original) {
                                    let reason: Arc<str> = Arc::from(failure.as_str());
                                    context.update(|f| {
                                        f.dead_lettered = true;
                                        f.dead_letter_reason = Some(reason);
                                    });
                                }
                                tracing::warn!(
                                    topic = %original.topic(), partition = original.partition(),
                                    offset = original.offset(), dead_letter_topic = %topic, %failure,
                                    "record dead-lettered"
                                );
                                Ok(DeadLettered { topic, kind })
                            }
                            Err(cause) => Err(DeadLetterError {
                                failure,
                                source: cause,
                            }
                            .into()),
                        }
                    });
                    state.set(State::Producing { future });
                }
                StateProj::Producing { future } => {
                    return Poll::Ready(
                        ready!(future.as_mut().poll(cx)).map(Outcome::DeadLettered),
                    );
                }
            }
        }
    }
}

impl<F, P> fmt::Debug for ResponseFuture<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::producer::ProduceErrorKind;
    use crate::testkit::{self, RecordingProducer};
    use tower::{ServiceBuilder, service_fn};

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn types_are_send_sync() {
        assert_send_sync::<DeadLetterLayer<RecordingProducer>>();
        assert_send_sync::<DeadLetter<testkit::Accept, RecordingProducer>>();
        assert_send::<ResponseFuture<std::future::Ready<Result<(), BoxError>>, RecordingProducer>>(
        );
    }

    #[tokio::test]
    async fn a_dead_letter_too_large_even_without_its_value_drops_the_consumed_headers() {
        use crate::service::producer::ProduceError;
        let written = Arc::new(std::sync::Mutex::new(Vec::<Record>::new()));
        // A broker that takes nothing with a part over 1,000 bytes.
        let producer = {
            let written = written.clone();
            service_fn(move |record: Record| {
                let written = written.clone();
                async move {
                    let too_large = record.value().is_some_and(|v| v.len() > 1000)
                        || record
                            .headers()
                            .iter()
                            .any(|h| h.value().is_some_and(|v| v.len() > 1000));
                    if too_large {
                        return Err(ProduceError::new(ProduceErrorKind::MessageTooLarge, None));
                    }
                    written.lock().unwrap().push(record);
                    Ok(())
                }
            })
        };
        let mut chain = DeadLetterLayer::new(producer)
            .drop_header("authorization")
            .layer(service_fn(|_: Record| async {
                Err::<(), _>(crate::Error::new(ErrorKind::Invalid, "bad"))
            }));
        let record = testkit::record("orders")
            .offset(9)
            .header("authorization", "Bearer t")
            .header("blob", vec![b'b'; 5000])
            .header("x", "1")
            .value(vec![b'v'; 5000])
            .build();
        let outcome = testkit::call(&mut chain, record).await.unwrap();
        assert!(outcome.is_dead_lettered());
        let dead = written.lock().unwrap()[0].clone();
        assert_eq!(dead.value(), None);
        assert!(!dead.headers().contains("blob") && !dead.headers().contains("x"));
        assert_eq!(dead.header_str(names::DLQ_HEADERS_OMITTED), Some("2"));
        assert_eq!(dead.header_str(names::DLQ_ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(dead.header_str(names::DLQ_ORIGINAL_OFFSET), Some("9"));
        assert_eq!(dead.header_str(names::DLQ_ERROR_KIND), Some("invalid"));
        assert_eq!(
            dead.header_str(names::DLQ_ORIGINAL_VALUE_SIZE),
            Some("5000")
        );
    }

    #[tokio::test]
    async fn the_token_is_kept_by_default_and_dropped_on_request() {
        let failing = || {
            service_fn(|_: Record| async {
                Err::<(), _>(crate::Error::new(ErrorKind::Invalid, "bad"))
            })
        };
        let record = || {
            testkit::record("orders")
                .header("Authorization", "Bearer t0k3n")
                .header("x-kept", "1")
                .build()
        };
        let kept = RecordingProducer::new();
        let mut chain = DeadLetterLayer::new(kept.clone()).layer(failing());
        testkit::call(&mut chain, record()).await.unwrap();
        assert_eq!(
            kept.records()[0].header_str("Authorization"),
            Some("Bearer t0k3n"),
            "kept by default, for replay"
        );

        let dropped = RecordingProducer::new();
        let mut chain = DeadLetterLayer::new(dropped.clone())
            .drop_header("authorization")
            .layer(failing());
        testkit::call(&mut chain, record()).await.unwrap();
        let dead = &dropped.records()[0];
        assert!(!dead.headers().contains("authorization"));
        assert_eq!(dead.header_str("x-kept"), Some("1"));
    }

    #[tokio::test]
    async fn a_panic_is_dead_lettered_with_headers_and_context() {
        let dlq = RecordingProducer::new();
        let mut chain = ServiceBuilder::new()
            .layer(DeadLetterLayer::new(dlq.clone()).suffix("-dead"))
            .service(service_fn(|_: Record| async move {
                if true {
                    panic!("boom at the handler");
                }
                Ok::<_, BoxError>(())
            }));
        let mut record = testkit::record("orders")
            .key("k")
            .value("v")
            .partition(3)
            .offset(42)
            .header("app", "1")
            .build();
        let context = RecordContext::of(&mut record);
        context.update(|f| f.correlation_id = Some("generated".into()));
        let outcome = testkit::call(&mut chain, record).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::DeadLettered(DeadLettered {
                topic: "orders-dead".into(),
                kind: ErrorKind::Panic
            })
        );
        assert!(context.fields().dead_lettered);

        let dead = &dlq.records()[0];
        assert_eq!(
            (dead.topic(), dead.key_str(), dead.value_str().unwrap()),
            ("orders-dead", Some("k"), "v")
        );
        assert_eq!(dead.header_str("app"), Some("1"));
        assert_eq!(dead.header_str(names::DLQ_ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(dead.header_str(names::DLQ_ORIGINAL_PARTITION), Some("3"));
        assert_eq!(dead.header_str(names::DLQ_ORIGINAL_OFFSET), Some("42"));
        assert_eq!(dead.header_str(names::DLQ_ERROR_KIND), Some("panic"));
        assert!(
            dead.header_str(names::STACK_TRACE)
                .unwrap()
                .contains("boom at the handler")
        );
        assert_eq!(dead.header_str(names::CORRELATION_ID), Some("generated"));
    }

    #[tokio::test]
    async fn a_failed_dead_letter_leaves_the_record_unsettled() {
        let dlq = RecordingProducer::new();
        dlq.fail_with(ProduceErrorKind::Transport);
        let mut chain = DeadLetterLayer::new(dlq.clone()).layer(service_fn(|_: Record| async {
            Err::<(), _>(crate::Error::handler("nope"))
        }));
        let err = testkit::call(&mut chain, testkit::record("t").build())
            .await
            .unwrap_err();
        assert_eq!(classify(err.as_ref()), ErrorKind::Produce);
        assert!(err.to_string().contains("nope"));
        dlq.succeed();
        assert!(
            testkit::call(&mut chain, testkit::record("t").build())
                .await
                .unwrap()
                .is_dead_lettered()
        );
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let t = truncated(long, 1023);
        assert!(t.len() <= 1023 + '…'.len_utf8());
    }
}
