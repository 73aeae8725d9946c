use std::fmt;
use std::sync::Arc;

use tower::ServiceExt;
use tower_service::Service;

use super::AuditEntry;
use crate::error::BoxError;
use crate::record::Record;

/// Where audit entries go. Writing must not block: sinks that do I/O hand the
/// entry to a task.
pub trait AuditSink: Send + Sync + 'static {
    /// Takes one entry.
    fn write(&self, entry: AuditEntry);

    /// Whether this sink reads entries at all. A sink that says `false`
    /// ([`NullSink`]) makes the audit layer step aside: no entry is built,
    /// and the record costs nothing to audit. Default: `true`.
    fn enabled(&self) -> bool {
        true
    }
}

impl<F> AuditSink for F
where
    F: Fn(AuditEntry) + Send + Sync + 'static,
{
    fn write(&self, entry: AuditEntry) {
        self(entry);
    }
}

/// Logs each entry as a `tracing` event on target `audit` at `INFO`, whose
/// message is the entry as one JSON object. When no subscriber takes events
/// of that target and level, no entry is built at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

impl AuditSink for LogSink {
    fn write(&self, entry: AuditEntry) {
        tracing::info!(target: "audit", "{}", entry.to_json());
    }

    fn enabled(&self) -> bool {
        tracing::enabled!(target: "audit", tracing::Level::INFO)
    }
}

/// Discards every entry (for benchmarks and tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl AuditSink for NullSink {
    fn write(&self, _entry: AuditEntry) {}

    fn enabled(&self) -> bool {
        false
    }
}

/// Produces each entry to an audit topic, keyed by correlation id (as
/// light-kafka does), through any producer service. Entries are sent from a
/// spawned task; a failed send is logged, it does not fail the record.
pub struct KafkaSink<P> {
    producer: P,
    topic: Arc<str>,
}

impl<P> KafkaSink<P> {
    /// Sends entries to `topic` with `producer` (call from a tokio runtime).
    pub fn new(producer: P, topic: impl Into<Arc<str>>) -> Self {
        KafkaSink {
            producer,
            topic: topic.into(),
        }
    }
}

impl<P> fmt::Debug for KafkaSink<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<P> AuditSink for KafkaSink<P>
where
    P: Service<Record> + Clone + Send + Sync + 'static,
    P::Future: Send,
    P::Error: Into<BoxError>,
{
    fn write(&self, entry: AuditEntry) {
        let mut record = Record::builder(self.topic.clone()).value(entry.to_json());
        if let Some(correlation) = &entry.correlation_id {
            record = record.key(correlation.to_string());
        }
        let record = record.build();
        let producer = self.producer.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = producer.oneshot(record).await {
                        let error: BoxError = error.into();
                        tracing::error!(%error, id = %entry.id, "cannot write an audit entry to Kafka");
                    }
                });
            }
            Err(_) => {
                tracing::error!(id = %entry.id, "no tokio runtime to write an audit entry to Kafka")
            }
        }
    }
}
