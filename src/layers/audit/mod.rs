//! An audit trail: one entry per record, to the log, a Kafka topic, or your sink.
//!
//! [`AuditLayer`] writes an [`AuditEntry`] for every record that passes through
//! it (or, with [`AuditLayer::audit_on_error`], only for failures, as light-4j's
//! `auditOnError`): light-kafka's `AuditRecord` fields (id, service id, audit
//! type, topic, partition, offset, key, correlation and traceability ids,
//! status, error and stack trace, timestamp) plus client, user and caller ids
//! (from the per-record context, filled by the JWT and propagate layers) and
//! the latency.
//!
//! - **Sinks**: [`LogSink`] (a `tracing` event on target `audit` whose message
//!   is one JSON object), [`KafkaSink`] (an audit topic, keyed by correlation id
//!   as light-kafka does), [`NullSink`], or anything implementing [`AuditSink`]
//!   (closures included).
//! - **Masking**: configured fields (`key`, `userId`, ...) and audited headers
//!   are written as `***`. The `authorization` header is never audited, and
//!   no token reaches an entry.
//! - **Hash chain** ([`AuditLayer::hash_chain`], optional; light-kafka has
//!   none): each entry carries the hash of the previous one, and
//!   [`verify_chain`] detects a removed or altered entry.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use light_kafka::layers::audit::{verify_chain, AuditEntry, AuditLayer, AuditStatus};
//! use light_kafka::testkit::{self, Accept};
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let entries = Arc::new(Mutex::new(Vec::<AuditEntry>::new()));
//! let sink = { let e = entries.clone(); move |entry: AuditEntry| e.lock().unwrap().push(entry) };
//! let mut handler = AuditLayer::consumer("billing", sink).mask(["key"]).hash_chain().layer(Accept);
//! for i in 0..3 {
//!     testkit::call(&mut handler, testkit::record("orders").key("secret").offset(i).build()).await.unwrap();
//! }
//! let entries = entries.lock().unwrap();
//! assert_eq!(entries[2].status, AuditStatus::Success);
//! assert_eq!(entries[2].key.as_deref(), Some(&b"***"[..]));
//! assert!(verify_chain(&entries).is_ok());
//! # }
//! ```

mod entry;
mod sink;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

pub use entry::{AuditEntry, AuditStatus, AuditType, ChainError, verify_chain};
pub use sink::{AuditSink, KafkaSink, LogSink, NullSink};

use crate::context::RecordContext;
use crate::error::BoxError;
use crate::record::{Record, Timestamp, names};

const MASK: &str = "***";

/// What an audit layer is configured with.
#[derive(Clone)]
struct Settings {
    service_id: Arc<str>,
    audit_type: AuditType,
    sink: Arc<dyn AuditSink>,
    headers: Vec<String>,
    masked: HashSet<String>,
    on_error_only: bool,
}

impl Settings {
    fn masked(&self, field: &str) -> bool {
        self.masked.iter().any(|m| m.eq_ignore_ascii_case(field))
    }

    fn mask<T: From<&'static str>>(&self, field: &str, value: Option<T>) -> Option<T> {
        // (Bytes, Arc<str> and String all convert from a static string.)
        if value.is_some() && self.masked(field) {
            Some(T::from(MASK))
        } else {
            value
        }
    }
}

/// The settings of one layered service, with its chain state.
struct Config {
    settings: Settings,
    /// The last hash of the chain, when chaining.
    chain: Option<Mutex<String>>,
    /// Whether the sink reads entries ([`AuditSink::enabled`]), asked once.
    enabled: bool,
}

impl std::ops::Deref for Config {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// Layer that applies [`Audit`]. See the [module documentation](self).
#[derive(Clone)]
pub struct AuditLayer {
    settings: Settings,
    chain: bool,
}

impl AuditLayer {
    /// Audits a consumer chain of service `service_id` into `sink`.
    pub fn consumer(service_id: impl Into<Arc<str>>, sink: impl AuditSink) -> Self {
        AuditLayer::new(service_id.into(), AuditType::Consumer, Arc::new(sink))
    }

    /// Audits a producer chain.
    pub fn producer(service_id: impl Into<Arc<str>>, sink: impl AuditSink) -> Self {
        AuditLayer::new(service_id.into(), AuditType::Producer, Arc::new(sink))
    }

    /// Audits a stream processor chain.
    pub fn streams(service_id: impl Into<Arc<str>>, sink: impl AuditSink) -> Self {
        AuditLayer::new(service_id.into(), AuditType::Streams, Arc::new(sink))
    }

    fn new(service_id: Arc<str>, audit_type: AuditType, sink: Arc<dyn AuditSink>) -> Self {
        AuditLayer {
            settings: Settings {
                service_id,
                audit_type,
                sink,
                headers: Vec::new(),
                masked: HashSet::new(),
                on_error_only: false,
            },
            chain: false,
        }
    }

    /// Also records these headers (`authorization` is never recorded).
    pub fn headers<I: IntoIterator<Item = T>, T: Into<String>>(mut self, headers: I) -> Self {
        self.settings.headers = headers
            .into_iter()
            .map(Into::into)
            .filter(|h| !names::is_sensitive(h))
            .collect();
        self
    }

    /// Writes these fields (by their JSON names: `key`, `userId`, `clientId`,
    /// `callerId`, `correlationId`, `traceabilityId`, `error`, `stackTrace`)
    /// and audited headers as `***`.
    pub fn mask<I: IntoIterator<Item = T>, T: Into<String>>(mut self, fields: I) -> Self {
        self.settings.masked = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Writes entries for failures only (light-4j's `auditOnError`).
    pub fn audit_on_error(mut self, only_errors: bool) -> Self {
        self.settings.on_error_only = only_errors;
        self
    }

    /// Chains the entries: each carries the hash of the previous one.
    pub fn hash_chain(mut self) -> Self {
        self.chain = true;
        self
    }
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("service_id", &self.settings.service_id)
            .field("audit_type", &self.settings.audit_type)
            .field("headers", &self.settings.headers)
            .field("masked", &self.settings.masked)
            .field("on_error_only", &self.settings.on_error_only)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Audit<S> {
        Audit {
            inner,
            config: Arc::new(Config {
                enabled: self.settings.sink.enabled(),
                settings: self.settings.clone(),
                chain: self.chain.then(|| Mutex::new("0".repeat(64))),
            }),
        }
    }
}

/// Writes an audit entry for each record.
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Audit<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What the audit layer keeps of a record while it is processed.
struct Seen {
    topic: Arc<str>,
    partition: Option<i32>,
    offset: Option<i64>,
    key: Option<Bytes>,
    headers: BTreeMap<String, String>,
    context: RecordContext,
}

impl<S> Service<Record> for Audit<S>
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

    fn call(&mut self, mut record: Record) -> Self::Future {
        if !self.config.enabled {
            return ResponseFuture {
                future: self.inner.call(record),
                seen: None,
                start: None,
                config: self.config.clone(),
            };
        }
        let headers = self
            .config
            .headers
            .iter()
            .filter_map(|name| {
                let value = record.header(name)?;
                let value = if self.config.masked(name) {
                    MASK.to_owned()
                } else {
                    String::from_utf8_lossy(value).into_owned()
                };
                Some((name.clone(), value))
            })
            .collect();
        let seen = Seen {
            topic: record.topic_arc().clone(),
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().cloned(),
            headers,
            context: RecordContext::of(&mut record),
        };
        ResponseFuture {
            future: self.inner.call(record),
            seen: Some(seen),
            start: Some(Instant::now()),
            config: self.config.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Audit`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        seen: Option<Seen>,
        start: Option<Instant>,
        config: Arc<Config>,
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
        let result = ready!(this.future.poll(cx)).map_err(Into::into);
        let config = &**this.config;
        let Some(seen) = this.seen.take() else {
            // The sink reads nothing: nothing to build.
            return Poll::Ready(result);
        };
        let fields = seen.context.fields();
        // A record the dead-letter layer settled is a failure for the audit
        // trail, though the chain as a whole returned `Ok`.
        let (status, error, stack_trace) = match (&result, &fields.dead_letter_reason) {
            (Err(e), _) => (
                AuditStatus::Failure,
                Some(e.to_string()),
                Some(crate::error::chain(e.as_ref())),
            ),
            (Ok(_), Some(reason)) => (
                AuditStatus::Failure,
                Some(format!("dead-lettered: {reason}")),
                None,
            ),
            (Ok(_), None) => (AuditStatus::Success, None, None),
        };
        if config.on_error_only && status == AuditStatus::Success {
            return Poll::Ready(result);
        }
        let mut entry = AuditEntry {
            id: uuid::Uuid::now_v7(),
            service_id: config.service_id.clone(),
            audit_type: config.audit_type,
            topic: seen.topic,
            partition: seen.partition,
            offset: seen.offset,
            key: config.mask("key", seen.key),
            correlation_id: config.mask("correlationId", fields.correlation_id),
            traceability_id: config.mask("traceabilityId", fields.traceability_id),
            client_id: config.mask("clientId", fields.client_id),
            user_id: config.mask("userId", fields.user_id),
            caller_id: config.mask("callerId", fields.caller_id),
            status,
            error: config.mask("error", error),
            stack_trace: config.mask("stackTrace", stack_trace),
            timestamp: Timestamp::now().millis().unwrap_or_default(),
            latency_ms: this
                .start
                .map_or(0.0, |start| start.elapsed().as_secs_f64() * 1000.0),
            headers: seen.headers,
            prev_hash: None,
            hash: None,
        };
        if let Some(chain) = &config.chain {
            let mut last = chain.lock().unwrap_or_else(|p| p.into_inner());
            entry.prev_hash = Some(last.clone());
            let hash = entry.digest();
            last.clone_from(&hash);
            entry.hash = Some(hash);
            // Written under the lock, so the sink sees the chain's order.
            config.sink.write(entry);
        } else {
            config.sink.write(entry);
        }
        Poll::Ready(result)
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
    use crate::testkit::{self, Accept};

    fn collect() -> (Arc<Mutex<Vec<AuditEntry>>>, impl AuditSink) {
        let entries = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let entries = entries.clone();
            move |entry: AuditEntry| entries.lock().unwrap().push(entry)
        };
        (entries, sink)
    }

    #[test]
    fn types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<AuditLayer>();
        check::<Audit<Accept>>();
    }

    #[tokio::test]
    async fn success_and_failure_entries() {
        let (entries, sink) = collect();
        let failing = tower::service_fn(|r: Record| async move {
            if r.offset() == Some(1) {
                Err(crate::Error::with_source(
                    crate::ErrorKind::Handler,
                    "ledger rejected",
                    std::io::Error::other("disk full"),
                ))
            } else {
                Ok(())
            }
        });
        let mut svc = AuditLayer::producer("svc", sink)
            .headers(["tenant", "authorization"])
            .layer(failing);
        let mut ok = testkit::record("t")
            .offset(0)
            .key("k")
            .header("tenant", "acme")
            .header(names::AUTHORIZATION, "Bearer t0k3n")
            .build();
        RecordContext::of(&mut ok).update(|f| f.client_id = Some("portal".into()));
        testkit::call(&mut svc, ok).await.unwrap();
        testkit::call(&mut svc, testkit::record("t").offset(1).build())
            .await
            .unwrap_err();

        let entries = entries.lock().unwrap();
        let (a, b) = (&entries[0], &entries[1]);
        assert_eq!(
            (a.status, a.audit_type, a.offset),
            (AuditStatus::Success, AuditType::Producer, Some(0))
        );
        assert_eq!(a.client_id.as_deref(), Some("portal"));
        assert_eq!(a.headers.get("tenant").map(String::as_str), Some("acme"));
        assert!(
            !a.to_json().contains("t0k3n"),
            "authorization is never audited"
        );
        assert_eq!(b.status, AuditStatus::Failure);
        assert_eq!(b.error.as_deref(), Some("handler: ledger rejected"));
        assert!(
            b.stack_trace
                .as_deref()
                .unwrap()
                .contains("caused by: disk full")
        );
        assert!(a.latency_ms >= 0.0 && a.timestamp > 0);
        assert!(a.hash.is_none(), "no chain unless asked");
    }

    #[tokio::test]
    async fn a_dead_lettered_record_is_audited_as_a_failure() {
        use crate::layers::dead_letter::DeadLetterLayer;
        use crate::testkit::RecordingProducer;
        let (entries, sink) = collect();
        let dlq = RecordingProducer::new();
        let mut svc = tower::ServiceBuilder::new()
            .layer(AuditLayer::consumer("svc", sink).audit_on_error(true))
            .layer(DeadLetterLayer::new(dlq.clone()))
            .service(tower::service_fn(|r: Record| async move {
                match r.key_str() {
                    Some("bad") => Err(crate::Error::new(crate::ErrorKind::Invalid, "no amount")),
                    _ => Ok(()),
                }
            }));
        testkit::call(&mut svc, testkit::record("t").key("good").build())
            .await
            .unwrap();
        testkit::call(&mut svc, testkit::record("t").key("bad").build())
            .await
            .expect("settled by the dead-letter layer");
        assert_eq!(dlq.records().len(), 1);
        let entries = entries.lock().unwrap();
        assert_eq!(
            entries.len(),
            1,
            "audit_on_error keeps dead-lettered records"
        );
        assert_eq!(entries[0].status, AuditStatus::Failure);
        assert_eq!(entries[0].status_text(), "FAILURE");
        assert_eq!(
            entries[0].error.as_deref(),
            Some("dead-lettered: invalid: no amount")
        );
    }

    #[tokio::test]
    async fn masking_and_audit_on_error() {
        let (entries, sink) = collect();
        let mut svc = AuditLayer::consumer("svc", sink)
            .headers(["x-email"])
            .mask(["key", "x-email", "userId"])
            .audit_on_error(true)
            .layer(tower::service_fn(|r: Record| async move {
                if r.key_str() == Some("bad") {
                    Err(crate::Error::handler("x"))
                } else {
                    Ok(())
                }
            }));
        testkit::call(&mut svc, testkit::record("t").key("good").build())
            .await
            .unwrap();
        let mut bad = testkit::record("t")
            .key("bad")
            .header("x-email", "a@b.c")
            .build();
        RecordContext::of(&mut bad).update(|f| f.user_id = Some("alice".into()));
        testkit::call(&mut svc, bad).await.unwrap_err();
        let entries = entries.lock().unwrap();
        assert_eq!(entries.len(), 1, "only the failure is audited");
        let json = entries[0].to_json();
        assert!(
            !json.contains("a@b.c") && !json.contains("alice") && !json.contains("\"bad\""),
            "{json}"
        );
        assert_eq!(entries[0].key.as_deref(), Some(&b"***"[..]));
    }

    #[tokio::test]
    async fn a_sink_that_reads_nothing_gets_nothing_built() {
        struct Off(Arc<Mutex<usize>>);
        impl AuditSink for Off {
            fn write(&self, _: AuditEntry) {
                *self.0.lock().unwrap() += 1;
            }
            fn enabled(&self) -> bool {
                false
            }
        }
        let written = Arc::new(Mutex::new(0));
        let mut svc = AuditLayer::consumer("svc", Off(written.clone())).layer(Accept);
        testkit::call(&mut svc, testkit::record("t").build())
            .await
            .unwrap();
        assert_eq!(*written.lock().unwrap(), 0, "no entry for a disabled sink");
        assert!(!NullSink.enabled());
        let (entries, sink) = collect();
        assert!(sink.enabled(), "closures read what they get");
        let mut svc = AuditLayer::consumer("svc", sink).layer(Accept);
        testkit::call(&mut svc, testkit::record("t").build())
            .await
            .unwrap();
        assert_eq!(entries.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_hash_chain_detects_removal_and_alteration() {
        let (entries, sink) = collect();
        let mut svc = AuditLayer::consumer("svc", sink).hash_chain().layer(Accept);
        for i in 0..5 {
            testkit::call(&mut svc, testkit::record("t").offset(i).build())
                .await
                .unwrap();
        }
        let entries = entries.lock().unwrap().clone();
        assert_eq!(verify_chain(&entries), Ok(()));

        let mut removed = entries.clone();
        removed.remove(2);
        assert_eq!(verify_chain(&removed), Err(ChainError::Broken { index: 2 }));

        let mut altered = entries.clone();
        altered[3].offset = Some(99);
        assert_eq!(
            verify_chain(&altered),
            Err(ChainError::Altered { index: 3 })
        );

        // Round-tripped through JSON (as read back from a log or a topic), it still verifies.
        let reread: Vec<AuditEntry> = entries
            .iter()
            .map(|e| serde_json::from_str(&e.to_json()).unwrap())
            .collect();
        assert_eq!(verify_chain(&reread), Ok(()));
    }
}
