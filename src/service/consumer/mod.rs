//! [`Consumer`]: a Kafka consumer group driving a `tower::Service<Record>`.
//!
//! The runtime owns polling, dispatch and commits; the service owns exactly one
//! record per call. Any `Service<Record>` whose error converts into a
//! [`BoxError`] is accepted, including tower's own layers (`ConcurrencyLimit`,
//! `Timeout`, `Buffer`, `RateLimit`, `LoadShed`) around a handler. The response
//! is ignored: `Ok` means the record is *settled*.
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::service::consumer::Consumer;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::producer::Producer;
//! use tower::{service_fn, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("orders", 2)?;
//! let producer = Producer::builder().bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! producer.oneshot(Record::builder("orders").value("hello").build()).await?;
//!
//! let consumer = Consumer::builder()
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .group_id("billing")
//!     .topics(["orders"])
//!     .build()?;
//! let handle = consumer.handle();
//! let handler = service_fn(move |record: Record| {
//!     let handle = handle.clone();
//!     async move {
//!         println!("got {:?}", record.value_str());
//!         handle.shutdown(); // stop after the first record, for this example
//!         Ok::<_, light_kafka::BoxError>(())
//!     }
//! });
//! consumer.serve(handler).await?;
//! # Ok(()) }
//! ```
//!
//! # Delivery guarantees
//!
//! **At least once.** The offset committed for a partition is always the offset
//! after a *contiguous prefix of settled records*: a record is settled when the
//! service returned `Ok` for it (a dead-letter layer inside the service returns
//! `Ok` once the record is safely in the dead-letter topic). The commit never
//! passes a record that is still running, waiting for a retry, or failed.
//!
//! - **When offsets are committed:** asynchronously every
//!   [`commit_interval`](ConsumerBuilder::commit_interval) (default 1 s) and
//!   every [`commit_every`](ConsumerBuilder::commit_every) settled records
//!   (default 1,000); synchronously before partitions are given up in a
//!   rebalance and when the consumer stops.
//! - **What a crash means:** records settled after the last successful commit
//!   are delivered again to whoever owns the partition next. Nothing is skipped:
//!   at worst the handler sees a record twice.
//! - **Duplicates to expect:** after a crash, up to one commit interval's worth
//!   of records per partition; after a failed attempt, the same record again
//!   (that is the retry); after a rebalance, records that were in flight when
//!   the revocation timeout expired.
//! - **Exactly once** is out of reach for side effects outside Kafka; for
//!   Kafka-to-Kafka processing use the transactional producer with
//!   `send_batch_with_offsets`.
//!
//! # Ordering and concurrency
//!
//! - [`Ordering::Partition`] (default): the records of one partition run one at
//!   a time, in offset order; partitions run concurrently, up to
//!   [`max_in_flight`](ConsumerBuilder::max_in_flight) records at once.
//! - [`Ordering::Key`]: within a partition, records with different keys run
//!   concurrently and records with the same key run one at a time in offset
//!   order (as Karafka's virtual partitions or Confluent's parallel consumer).
//!   The commit still advances only over the contiguous settled prefix, so a
//!   slow key holds the partition's commit point (not its other keys).
//!
//! All records are polled in the task running `serve`: the service's futures
//! run concurrently, not in parallel. Wrap CPU-heavy handlers in
//! `tower::buffer` or spawn inside them.
//!
//! # Backpressure and memory
//!
//! The runtime calls `poll_ready` before every dispatch and dispatches nothing
//! while the service is not ready. Records keep arriving into bounded buffers:
//! a partition holds at most
//! [`max.poll.records`](ConsumerBuilder::max_poll_records) records (received and
//! not yet committable), and the runtime at most
//! [`max_buffered`](ConsumerBuilder::max_buffered), so memory stays bounded
//! whatever the size of the topic.
//!
//! A partition is *full* when two thirds of `max.poll.records` are received and
//! not yet committable; the records that arrive then wait outside its window
//! (up to the remaining third) until half of the window settled. When that
//! room is used up, the runtime takes no more messages for 20 ms, and if the
//! partition is still full it pauses the partition's fetching (counted in
//! [`Health::backpressure_pauses`]) so that the other partitions' records
//! flow again; it resumes once the window has room. A partition whose window
//! drains quickly — a handler that awaits a few milliseconds of I/O — is
//! never paused: pausing is costly in librdkafka, which discards the
//! partition's prefetched messages and resumes fetching only when its broker
//! thread next wakes (up to a second later). When the runtime holds
//! `max_buffered` records it takes no more messages until half of them
//! settled; librdkafka's own prefetch limits then stop its fetching.
//!
//! # Errors, without a dead-letter layer
//!
//! A failed record (an error or a panic; panics are caught per record) is never
//! skipped. [`ErrorPolicy::Retry`] (default) retries it with capped exponential
//! backoff while its partition stops fetching; [`ErrorPolicy::FailFast`] stops
//! the consumer, commits what was settled before the failed record, and returns
//! [`ConsumerError::Handler`] from `serve`.
//!
//! # Rebalances
//!
//! On revocation the runtime stops dispatching the revoked partitions, waits up
//! to [`revoke_timeout`](ConsumerBuilder::revoke_timeout) for their in-flight
//! records, commits their settled prefix, and drops the rest (the next owner
//! reads it again). On assignment, reading starts from the committed offset (or
//! `auto.offset.reset`, default `earliest`). Eager and cooperative assignment
//! strategies both work.
//!
//! # Context for the handler
//!
//! The handler receives the record itself. While it runs, the record's
//! propagated headers (correlation and traceability ids, authorization, W3C
//! trace context) are the current [`crate::context::Propagation`]: a task-local
//! that a producer chain with the propagate layer stamps onto every record the
//! handler produces, and that [`crate::context::current`] returns for outgoing
//! HTTP calls.

mod config;
mod context;
mod driver;
mod error;
mod health;
mod partition;
mod tracker;
mod work;

use std::future::{Future, pending};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::future::poll_fn;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use tower_service::Service;

pub use config::{Backoff, ErrorPolicy, Ordering};
pub use error::ConsumerError;
pub use health::{ConsumerHandle, Health, PartitionHealth, Stalled};

use self::config::RuntimeConfig;
use self::context::RuntimeContext;
use self::driver::Driver;
use self::health::Shared;
use crate::error::BoxError;
use crate::record::Record;
use crate::service::client::{BuildError, Redacted};

/// librdkafka properties whose defaults the runtime changes (unless set):
///
/// - `statistics.interval.ms=1000`: feeds the lag in [`Health`];
/// - `fetch.wait.max.ms=100` (librdkafka: 500): a paused partition that
///   resumes waits for the fetch request in flight; this bounds that wait;
/// - `fetch.queue.backoff.ms=50` (librdkafka: 1000): how long librdkafka stops
///   fetching when its local queue is full; a second is long enough to leave a
///   busy consumer idle.
pub const RUNTIME_DEFAULTS: [(&str, &str); 3] = [
    ("statistics.interval.ms", "1000"),
    ("fetch.wait.max.ms", "100"),
    ("fetch.queue.backoff.ms", "50"),
];

/// Configures a [`Consumer`].
///
/// Properties of light-kafka's `kafka-consumer.yml` are honoured where they
/// apply: `group.id`; `auto.offset.reset` (default `earliest`);
/// `enable.auto.commit` (forced to `false`: the runtime commits);
/// `max.poll.records` (the per-partition buffer bound, default 500). Every other
/// property goes to librdkafka unchanged; see [`RUNTIME_DEFAULTS`] for the few
/// whose defaults differ from librdkafka's.
#[derive(Clone, Default)]
pub struct ConsumerBuilder {
    config: ClientConfig,
    runtime: RuntimeConfig,
    topics: Vec<String>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("config", &Redacted(&self.config))
            .field("runtime", &self.runtime)
            .field("topics", &self.topics)
            .finish()
    }
}

impl ConsumerBuilder {
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// Sets `group.id`.
    pub fn group_id(self, group: impl Into<String>) -> Self {
        self.set("group.id", group)
    }

    /// The topics to subscribe to (names, or regular expressions starting with `^`).
    pub fn topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Sets a property: light-kafka's own keys are interpreted, the rest go to
    /// librdkafka.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match key.as_str() {
            "max.poll.records" => match value.trim().parse::<usize>() {
                Ok(n) if n > 0 => self.runtime.partition_buffer = n,
                _ => {
                    // Reported by `build`.
                    self.config
                        .set("light-kafka.invalid.max.poll.records", value);
                }
            },
            "enable.auto.commit" => {
                if value.trim() != "false" {
                    tracing::warn!("enable.auto.commit is forced to false: the runtime commits");
                }
            }
            _ => {
                self.config.set(key, value);
            }
        }
        self
    }

    /// Sets every property of `properties`, as [`ConsumerBuilder::set`] does
    /// (e.g. the entries of a parsed `kafka-consumer.yml`).
    pub fn properties<I, K, V>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (key, value) in properties {
            self = self.set(key, value);
        }
        self
    }

    /// How records of one partition may overlap. Default: [`Ordering::Partition`].
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.runtime.ordering = ordering;
        self
    }

    /// Most records running in the service at once, over all partitions. Default 256.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.runtime.max_in_flight = n.max(1);
        self
    }

    /// Most records held per partition (received and not yet committable):
    /// `max.poll.records`. Default 500. Handlers that await I/O want more:
    /// over 4 partitions a handler awaiting 5 ms runs at about 48,000
    /// records/s with 500 and 376,000 with 25,000 (`BENCHMARKS.md`). A rising
    /// [`Health::backpressure_pauses`] says the handler takes longer than the
    /// window lasts (see the module docs).
    pub fn max_poll_records(mut self, n: usize) -> Self {
        self.runtime.partition_buffer = n.max(1);
        self
    }

    /// Most records held by the runtime over all partitions before every
    /// partition pauses. Default 5,000.
    pub fn max_buffered(mut self, n: usize) -> Self {
        self.runtime.max_buffered = n.max(1);
        self
    }

    /// Commit at least this often while records settle. Default 1 s.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.runtime.commit_interval = interval;
        self
    }

    /// Commit after this many settled records. Default 1,000.
    pub fn commit_every(mut self, records: usize) -> Self {
        self.runtime.commit_every = records.max(1);
        self
    }

    /// What to do when the service fails a record. Default: retry with backoff.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.runtime.error_policy = policy;
        self
    }

    /// How long a revocation waits for in-flight records. Default 10 s.
    pub fn revoke_timeout(mut self, timeout: Duration) -> Self {
        self.runtime.revoke_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for in-flight records. Default 30 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.runtime.shutdown_timeout = timeout;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when `group.id` or the topics are missing, a light-kafka
    /// key has a bad value, or librdkafka rejects a property.
    pub fn build(self) -> Result<Consumer, BuildError> {
        let mut config = self.config;
        if let Some(bad) = config.get("light-kafka.invalid.max.poll.records") {
            return Err(BuildError::new(format!(
                "max.poll.records must be a positive integer, not {bad:?}"
            )));
        }
        let Some(group) = config
            .get("group.id")
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
        else {
            return Err(BuildError::missing(
                "group.id",
                "group.id is required and not empty",
            ));
        };
        let mut runtime = self.runtime;
        runtime.group = group;
        if self.topics.is_empty() {
            return Err(BuildError::new("at least one topic is required"));
        }
        config.set("enable.auto.commit", "false");
        if config.get("auto.offset.reset").is_none() {
            config.set("auto.offset.reset", "earliest");
        }
        for (key, value) in RUNTIME_DEFAULTS {
            if config.get(key).is_none() {
                config.set(key, value);
            }
        }
        config
            .create_native_config()
            .map_err(|e| BuildError::kafka("invalid consumer configuration", e))?;
        crate::service::client::check_bootstrap(&config)?;
        Ok(Consumer {
            config,
            runtime,
            topics: self.topics,
            shared: Arc::new(Shared::default()),
        })
    }
}

/// A configured consumer group member, ready to [`serve`](Consumer::serve) a service.
pub struct Consumer {
    config: ClientConfig,
    runtime: RuntimeConfig,
    topics: Vec<String>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &Redacted(&self.config))
            .field("runtime", &self.runtime)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Starts configuring a consumer.
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// A handle for health and shutdown, valid before, during and after `serve`.
    pub fn handle(&self) -> ConsumerHandle {
        ConsumerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Joins the group and feeds every record to `service` until
    /// [`ConsumerHandle::shutdown`] is called or the service fails fatally.
    ///
    /// # Errors
    ///
    /// See [`ConsumerError`].
    pub async fn serve<S>(self, service: S) -> Result<(), ConsumerError>
    where
        S: Service<Record> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(service, pending()).await
    }

    /// Like [`Consumer::serve`], also stopping gracefully when `signal` completes.
    ///
    /// # Errors
    ///
    /// See [`ConsumerError`].
    pub async fn serve_with_shutdown<S, F>(self, service: S, signal: F) -> Result<(), ConsumerError>
    where
        S: Service<Record> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        F: Future<Output = ()> + Send + 'static,
    {
        let context = RuntimeContext::new(self.shared.clone());
        let mut config = self.config;
        crate::service::client::raise_log_level(&mut config);
        let consumer: StreamConsumer<RuntimeContext> = config
            .create_with_context(context)
            .map_err(|e| BuildError::kafka("cannot create the Kafka consumer", e))?;
        let consumer = Arc::new(consumer);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(ConsumerError::Kafka)?;
        self.shared.running.store(true, Relaxed);

        let shutdown = self.shared.shutdown.clone();
        let connect_failed = self.shared.connect.failed_owned();
        let stop = async move {
            tokio::select! {
                () = signal => {}
                () = shutdown.cancelled() => {}
                () = connect_failed => {}
            }
        };
        let result = {
            let mut stream = consumer.stream();
            let mut driver = Driver::new(
                service,
                consumer.clone(),
                self.runtime,
                self.shared.clone(),
                Box::pin(stop),
            );
            poll_fn(|cx| driver.poll_run(cx, &mut stream)).await
        };

        // Leave the group off the async threads: closing blocks until done.
        let closing = consumer;
        let _ = tokio::task::spawn_blocking(move || drop(closing)).await;
        self.shared.running.store(false, Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        use crate::service::client::BuildErrorKind;
        let local = || Consumer::builder().bootstrap_servers("127.0.0.1:9092");
        assert!(local().topics(["t"]).build().is_err());
        assert!(local().group_id("g").build().is_err());
        let err = local().group_id("  ").topics(["t"]).build().unwrap_err();
        assert_eq!(
            (err.kind(), err.setting()),
            (BuildErrorKind::Missing, Some("group.id"))
        );
        let err = Consumer::builder()
            .group_id("g")
            .topics(["t"])
            .build()
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.setting()),
            (BuildErrorKind::Missing, Some("bootstrap.servers"))
        );
        for bad in [
            "kafka",
            "kafka:",
            ":9092",
            "kafka:0",
            "kafka:65536",
            "a:1,b",
            "ka fka:1",
        ] {
            let err = local()
                .bootstrap_servers(bad)
                .group_id("g")
                .topics(["t"])
                .build()
                .unwrap_err();
            assert_eq!(err.kind(), BuildErrorKind::Invalid, "{bad}");
        }
        for good in ["kafka:9092", "a:1, b:2", "PLAINTEXT://k:9092", "[::1]:9092"] {
            local()
                .bootstrap_servers(good)
                .group_id("g")
                .topics(["t"])
                .build()
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let err = local()
            .group_id("g")
            .topics(["t"])
            .set("max.poll.records", "many")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("max.poll.records"));
        let consumer = local()
            .group_id("g")
            .topics(["t"])
            .set("max.poll.records", "42")
            .set("enable.auto.commit", "true")
            .build()
            .unwrap();
        assert_eq!(consumer.runtime.partition_buffer, 42);
        assert_eq!(consumer.config.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.config.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn serve_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let consumer = Consumer::builder()
            .bootstrap_servers("127.0.0.1:9092")
            .group_id("g")
            .topics(["t"])
            .build()
            .unwrap();
        let fut = consumer.serve(crate::testkit::Accept);
        assert_send(&fut);
    }
}
