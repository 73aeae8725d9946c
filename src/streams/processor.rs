//! [`StreamProcessor`]: consume → transform → produce, exactly once.
//!
//! The processor consumes its topics as the consumer group
//! `application.id`, reading `read_committed`, and hands each record to a
//! `Service<Record>` whose response names the records to emit
//! ([`IntoOutputs`]). A batch (up to [`max_batch`](StreamProcessorBuilder::max_batch)
//! records or [`max_batch_time`](StreamProcessorBuilder::max_batch_time)) is one
//! Kafka transaction: the outputs, the state stores' changelog writes and the
//! input offsets (sent with the consumer's group metadata, as KIP-447 has it)
//! commit together or not at all.
//!
//! - **A failed record** (the service returned an error) aborts the transaction:
//!   nothing of the batch becomes visible, the stores drop their pending
//!   writes, the processor rewinds to the last committed offsets and tries the
//!   batch again after a backoff. Put a
//!   [`DeadLetterLayer`](crate::layers::dead_letter::DeadLetterLayer) over
//!   [`StreamProcessor::sink`] in the chain and poison records go to the
//!   dead-letter topic **inside the same transaction** instead.
//! - **Rebalances** happen only between transactions: the processor polls only
//!   when no transaction is open, so a partition always leaves with its work
//!   committed. Records fetched for a partition that is revoked before they
//!   ran are dropped; its next owner reads them from the committed offset.
//! - **State**: a partition's stores are restored from their changelogs
//!   before its first record runs ([`ProcessorHealth::restoring`]).
//! - **Zombies**: an instance fenced by a newer one with the same
//!   `transactional.id`, or whose group generation is stale, cannot commit; a
//!   fenced processor stops with [`ProcessorErrorKind::Fenced`].
//! - **Context**: every output inherits the input's `X-Correlation-Id`,
//!   `X-Traceability-Id`, `authorization`, `traceparent` and `tracestate` (and
//!   the ids a propagate layer generated) unless it sets its own, so a trace
//!   continues from input to outputs.
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::streams::processor::StreamProcessor;
//! use light_kafka::streams::store::Stores;
//! use tower::service_fn;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! for topic in ["words", "lengths", "wc-counts-changelog"] {
//!     kafka.create_topic(topic, 1)?;
//! }
//! let processor = StreamProcessor::builder("wc")
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .topics(["words"])
//!     .store("counts")
//!     .build()
//!     .await?;
//! let handle = processor.handle();
//! let running = tokio::spawn(processor.run(service_fn(|word: Record| async move {
//!     let counts = Stores::of(&word)?.json::<u64>("counts")?;
//!     let n = counts.get("all")?.unwrap_or(0) + 1;
//!     counts.put("all", &n)?;
//!     let length = word.value().map_or(0, |v| v.len()).to_string();
//!     Ok::<_, light_kafka::BoxError>(vec![Record::builder("lengths").value(length).build()])
//! })));
//! # let producer = light_kafka::service::producer::Producer::builder()
//! #     .bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! # use tower::ServiceExt;
//! # producer.oneshot(Record::builder("words").value("hello").build()).await?;
//! # while handle.health().committed_records < 1 {
//! #     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! # }
//! handle.shutdown();
//! running.await??;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::outputs::IntoOutputs;
use super::restore::{RestoreProgress, restore};
use super::store::{MemoryStorage, Storage, StoreError};
use super::task::{Tasks, changelog_topic, step};
use crate::error::{BoxError, ErrorKind, Kinded};
use crate::record::Record;
use crate::service::BuildError;
use crate::service::client::{LogThrottle, check_bootstrap, log_to_tracing, trouble_key};
use crate::service::connect::{ConnectWatch, WatchContext};
use crate::service::producer::Producer;
use crate::service::transactional::{
    TransactionError, TransactionErrorKind, TransactionalProducer,
};

/// Why a processor stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessorErrorKind {
    /// A newer instance with the same `transactional.id` took over: this one
    /// is a zombie and must not write.
    Fenced,
    /// The transactional producer failed fatally or cannot abort.
    Fatal,
    /// A state store could not be opened, restored or written.
    Store,
    /// The processor's consumer cannot reach the cluster with its
    /// configuration (a wrong password, an untrusted certificate, the wrong
    /// `security.protocol`); the source is the
    /// [`ConnectError`](crate::service::connect::ConnectError).
    Connect,
}

/// Why [`StreamProcessor::run`] returned an error.
#[derive(Debug)]
pub struct ProcessorError {
    kind: ProcessorErrorKind,
    source: BoxError,
}

impl ProcessorError {
    /// What went wrong.
    pub fn kind(&self) -> ProcessorErrorKind {
        self.kind
    }
}

impl fmt::Display for ProcessorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProcessorErrorKind::Fenced => write!(
                f,
                "the processor was fenced by a newer instance and stopped: {}",
                self.source
            ),
            ProcessorErrorKind::Fatal => write!(
                f,
                "the processor's producer failed for good: {}",
                self.source
            ),
            ProcessorErrorKind::Store => write!(f, "a state store failed: {}", self.source),
            ProcessorErrorKind::Connect => write!(f, "cannot connect to Kafka: {}", self.source),
        }
    }
}

impl std::error::Error for ProcessorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl Kinded for ProcessorError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// What a running processor has done, for health checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorHealth {
    /// Transactions committed.
    pub committed: u64,
    /// Input records whose transaction committed.
    pub committed_records: u64,
    /// Transactions aborted (a failed record, a failed commit).
    pub aborted: u64,
    /// The restore running now, if any.
    pub restoring: Option<RestoreProgress>,
    /// Changelog records read by finished restores.
    pub restored: u64,
    /// Partitions whose stores are open.
    pub partitions: Vec<i32>,
    /// The last failure, until the next commit.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    health: Mutex<ProcessorHealth>,
}

impl Shared {
    fn update<R>(&self, f: impl FnOnce(&mut ProcessorHealth) -> R) -> R {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Stops a processor and reads its health. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProcessorHandle {
    shutdown: CancellationToken,
    shared: Arc<Shared>,
}

impl ProcessorHandle {
    /// Asks the processor to stop once its current transaction ended.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A copy of the processor's health.
    pub fn health(&self) -> ProcessorHealth {
        self.shared.update(|h| h.clone())
    }
}

/// Configures a [`StreamProcessor`].
pub struct StreamProcessorBuilder {
    application_id: String,
    instance_id: Option<String>,
    topics: Vec<String>,
    common: ClientConfig,
    consumer: ClientConfig,
    producer: ClientConfig,
    stores: Vec<(Arc<str>, Arc<dyn Storage>)>,
    max_batch: usize,
    max_batch_time: Duration,
    backoff: (Duration, Duration),
    operation_timeout: Duration,
    group_commit: Option<bool>,
}

impl fmt::Debug for StreamProcessorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProcessorBuilder")
            .field("application_id", &self.application_id)
            .field("topics", &self.topics)
            .field(
                "stores",
                &self.stores.iter().map(|s| &s.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl StreamProcessorBuilder {
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// The topics to consume. Topics with stores must be co-partitioned: a
    /// partition's stores serve partition `n` of every input topic.
    pub fn topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Sets a librdkafka property on both the consumer and the producer
    /// (`bootstrap.servers`, security settings...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.common.set(key, value);
        self
    }

    /// Sets a librdkafka property of the consumer only.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer.set(key, value);
        self
    }

    /// Sets a librdkafka property of the producer only (for example
    /// `transaction.timeout.ms`, 10 s by default here as in Kafka Streams).
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer.set(key, value);
        self
    }

    /// This instance's stable name: its `transactional.id` is
    /// `<application.id>-<instance>`. A restarted instance with the same name
    /// fences its predecessor at once and aborts the transaction it left open.
    /// Default: a random name, so instances never fence each other, and a
    /// transaction left open by a crash holds its partitions until
    /// `transaction.timeout.ms`. Set it (a pod name, a host name) in production.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Adds an in-memory state store `name`, restored from its changelog.
    pub fn store(self, name: impl Into<String>) -> Self {
        self.store_with(name, MemoryStorage)
    }

    /// Adds a state store `name` kept by `storage` (for example
    /// [`RedbStorage`](super::persistent::RedbStorage)).
    pub fn store_with(mut self, name: impl Into<String>, storage: impl Storage) -> Self {
        self.stores.push((name.into().into(), Arc::new(storage)));
        self
    }

    /// Most input records per transaction. Default: 10,000 (so that under load
    /// a transaction usually ends by time, as in Kafka Streams; a failed record
    /// makes the whole batch run again).
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }

    /// Longest a transaction waits for more input after its first record.
    /// Default: 100 ms.
    pub fn max_batch_time(mut self, time: Duration) -> Self {
        self.max_batch_time = time;
        self
    }

    /// The backoff after an aborted transaction: `first`, doubling up to
    /// `max`. Default: 100 ms to 5 s.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// How long one transaction operation (init, offsets, commit, abort) may
    /// block. Default: 30 s.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Also commits each transaction's input offsets through the consumer
    /// group once the transaction committed. Kafka needs nothing of the sort
    /// (the offsets commit inside the transaction) and it is off by default;
    /// it is on by default against an [`EmbeddedKafka`](crate::service::embedded::EmbeddedKafka)
    /// of this process, because librdkafka's mock cluster does not store
    /// offsets committed in a transaction. There a crash between the two
    /// commits reprocesses a batch: exactly-once holds on Kafka only.
    pub fn commit_offsets_to_group(mut self, on: bool) -> Self {
        self.group_commit = Some(on);
        self
    }

    /// Creates the consumer and the transactional producer (fencing an
    /// earlier instance of the same name), and makes sure every store's
    /// changelog topic exists, compacted, with a partition per input partition.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a setting is missing or wrong, a changelog topic
    /// is missing and cannot be created, or the producer cannot initialise
    /// its transactions.
    pub async fn build(self) -> Result<StreamProcessor, BuildError> {
        check_bootstrap(&self.common)?;
        if self.application_id.trim().is_empty() {
            return Err(BuildError::missing(
                "application.id",
                "the application id is empty",
            ));
        }
        if self.topics.is_empty() {
            return Err(BuildError::missing("topics", "no topic to consume"));
        }
        let mut consumer_config = self.common.clone();
        consumer_config
            .set("group.id", &self.application_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        for (k, v) in crate::service::client::properties(&self.consumer) {
            consumer_config.set(k, v);
        }
        consumer_config.set("enable.auto.commit", "false");

        if !self.stores.is_empty() {
            let partitions = input_partitions(&self.common, &self.topics).await?;
            let names: Vec<String> = self
                .stores
                .iter()
                .map(|(name, _)| changelog_topic(&self.application_id, name))
                .collect();
            ensure_changelogs(&self.common, names, partitions).await?;
        }

        let instance = self
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut producer =
            TransactionalProducer::builder(format!("{}-{instance}", self.application_id))
                .operation_timeout(self.operation_timeout)
                .set("transaction.timeout.ms", "10000");
        for (k, v) in crate::service::client::properties(&self.common)
            .chain(crate::service::client::properties(&self.producer))
        {
            producer = producer.set(k, v);
        }
        let producer = producer
            .build()
            .await
            .map_err(|e| BuildError::caused_by("the processor's transactional producer", e))?;

        let shared = Arc::new(Shared::default());
        let context = ProcessorContext::default();
        crate::service::client::raise_log_level(&mut consumer_config);
        let consumer: StreamConsumer<ProcessorContext> = consumer_config
            .create_with_context(context)
            .map_err(|e| BuildError::kafka("creating the processor's consumer", e))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| BuildError::kafka("subscribing", e))?;
        let group_commit = self.group_commit.unwrap_or_else(|| {
            self.common
                .get("bootstrap.servers")
                .is_some_and(crate::service::embedded::is_embedded)
        });
        Ok(StreamProcessor {
            group_commit,
            consumer,
            producer,
            tasks: Tasks::new(self.application_id.into(), self.stores),
            restore_config: self.common,
            handle: ProcessorHandle {
                shutdown: CancellationToken::new(),
                shared,
            },
            max_batch: self.max_batch,
            max_batch_time: self.max_batch_time,
            backoff: self.backoff,
            throttle: LogThrottle::default(),
        })
    }
}

/// The largest partition count among `topics`.
async fn input_partitions(config: &ClientConfig, topics: &[String]) -> Result<i32, BuildError> {
    let (mut config, topics) = (config.clone(), topics.to_vec());
    crate::service::client::raise_log_level(&mut config);
    let context = WatchContext::default();
    let connect = context.connect.clone();
    let consumer: BaseConsumer<WatchContext> = config
        .create_with_context(context)
        .map_err(|e| BuildError::kafka("creating a metadata client", e))?;
    let failed = connect.failed_owned();
    let fetch = tokio::task::spawn_blocking(move || {
        let mut most = 0;
        for topic in &topics {
            match super::task::partition_count(&consumer, topic)? {
                0 => {
                    return Err(BuildError::invalid(
                        "topics",
                        format!("the input topic `{topic}` does not exist"),
                    ));
                }
                n => most = most.max(n),
            }
        }
        Ok(most)
    });
    // A connection that can never succeed ends the wait at once.
    let connect_error = || {
        connect
            .failure()
            .map(|failure| BuildError::caused_by("reading the input topics", failure.clone()))
    };
    tokio::select! {
        result = fetch => match result {
            Ok(Err(_)) if connect.failure().is_some() => Err(connect_error().unwrap_or_else(|| unreachable!())),
            Ok(result) => result,
            Err(e) => Err(BuildError::new(format!("metadata task failed: {e}"))),
        },
        () = failed => Err(connect_error().unwrap_or_else(|| unreachable!())),
    }
}

/// Creates the changelog topics that are missing (compacted, `partitions`
/// partitions) and checks those that exist have enough partitions.
async fn ensure_changelogs(
    config: &ClientConfig,
    topics: Vec<String>,
    partitions: i32,
) -> Result<(), BuildError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| BuildError::kafka("creating an admin client", e))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, partitions, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact")
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created =
        tokio::time::timeout(Duration::from_secs(10), admin.create_topics(&new, &options)).await;
    if let Ok(Ok(results)) = &created {
        for result in results {
            if let Err((topic, code)) = result
                && *code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
            {
                tracing::debug!(topic, ?code, "changelog topic not created");
            }
        }
    }
    // Whatever the admin call said (a cluster may not offer it), the topics
    // must now exist with enough partitions.
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| BuildError::kafka("creating a metadata client", e))?;
        for topic in &topics {
            let have = super::task::partition_count(&consumer, topic)?;
            if have < partitions {
                return Err(BuildError::invalid(
                    "stores",
                    format!(
                        "the changelog topic `{topic}` has {have} partitions and could not be created; \
                         create it compacted with {partitions} partitions (one per input partition)"
                    ),
                ));
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(BuildError::new(format!("metadata task failed: {e}"))))
}

/// Records the partitions librdkafka revokes, for the processor to drop
/// between transactions.
#[derive(Default)]
struct ProcessorContext {
    revoked: Mutex<Vec<i32>>,
    throttle: LogThrottle,
    connect: Arc<ConnectWatch>,
}

impl ClientContext for ProcessorContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.connect.report_log(fac, log_message);
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.throttle.report(&format!("{fac}{log_message}"), |_| {
                log_to_tracing(level, fac, log_message)
            });
        } else {
            log_to_tracing(level, fac, log_message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.connect.report(&error, reason).is_some() {
            return;
        }
        self.throttle.report(&trouble_key(&error), |suppressed| {
            tracing::warn!(%error, reason, suppressed, "stream processor client error")
        });
    }
}

impl ConsumerContext for ProcessorContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.connect.reached();
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            revoked.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

/// A consume-transform-produce loop with exactly-once semantics and state
/// stores. See the [module documentation](self).
pub struct StreamProcessor {
    group_commit: bool,
    consumer: StreamConsumer<ProcessorContext>,
    producer: TransactionalProducer,
    tasks: Tasks,
    restore_config: ClientConfig,
    handle: ProcessorHandle,
    max_batch: usize,
    max_batch_time: Duration,
    backoff: (Duration, Duration),
    throttle: LogThrottle,
}

impl fmt::Debug for StreamProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProcessor")
            .field("application_id", &self.tasks.application_id())
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

/// How a batch ended.
enum Ended {
    Committed,
    Aborted(BoxError),
}

impl StreamProcessor {
    /// Starts configuring a processor whose consumer group (and
    /// `transactional.id` prefix, and changelog topic prefix) is `application_id`.
    pub fn builder(application_id: impl Into<String>) -> StreamProcessorBuilder {
        StreamProcessorBuilder {
            application_id: application_id.into(),
            instance_id: None,
            topics: Vec::new(),
            common: ClientConfig::new(),
            consumer: ClientConfig::new(),
            producer: ClientConfig::new(),
            stores: Vec::new(),
            max_batch: 10_000,
            max_batch_time: Duration::from_millis(100),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            operation_timeout: Duration::from_secs(30),
            group_commit: None,
        }
    }

    /// A producer whose records join the open transaction: give it to a
    /// [`DeadLetterLayer`](crate::layers::dead_letter::DeadLetterLayer) in the
    /// chain, and dead letters commit (or abort) with the batch.
    pub fn sink(&self) -> Producer {
        self.producer.sink()
    }

    /// A handle to stop the processor and read its health.
    pub fn handle(&self) -> ProcessorHandle {
        self.handle.clone()
    }

    /// Runs `service` over the input until [`ProcessorHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// A [`ProcessorError`] when the processor was fenced, its producer failed
    /// for good, or a state store failed. A failing record is not an error
    /// here: its transaction aborts and is tried again.
    pub async fn run<S>(mut self, mut service: S) -> Result<(), ProcessorError>
    where
        S: Service<Record>,
        S::Response: IntoOutputs,
        S::Error: Into<BoxError>,
    {
        let mut delay = self.backoff.0;
        let shutdown = self.handle.shutdown.clone();
        let connect = self.consumer.context().connect.clone();
        while !shutdown.is_cancelled() {
            if let Some(failure) = connect.failure() {
                let failure = failure.clone();
                self.handle
                    .shared
                    .update(|h| h.last_error = Some(failure.to_string()));
                self.consumer.unsubscribe();
                return Err(ProcessorError {
                    kind: ProcessorErrorKind::Connect,
                    source: Box::new(failure),
                });
            }
            let batch = self.collect(&shutdown).await;
            if batch.is_empty() {
                continue;
            }
            self.prepare(&batch).await?;
            let firsts = first_offsets(&batch);
            match self.transaction(&mut service, batch).await? {
                Ended::Committed => {
                    self.throttle.recovered();
                    delay = self.backoff.0;
                }
                Ended::Aborted(error) => {
                    self.tasks.discard();
                    let message = crate::error::chain(error.as_ref());
                    self.throttle.report(&message, |suppressed| {
                        tracing::warn!(error = %message, suppressed, "stream processor transaction aborted; retrying the batch")
                    });
                    metrics::counter!("light_kafka.processor.transactions", "outcome" => "aborted")
                        .increment(1);
                    self.handle.shared.update(|h| {
                        h.aborted += 1;
                        h.last_error = Some(message);
                    });
                    self.rewind(&firsts);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    delay = (delay * 2).min(self.backoff.1);
                }
            }
        }
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Polls up to a batch, between transactions (so rebalances happen here).
    async fn collect(&mut self, shutdown: &CancellationToken) -> Vec<Record> {
        let mut batch: Vec<Record> = Vec::new();
        let mut deadline: Option<Instant> = None;
        while batch.len() < self.max_batch {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(200),
            };
            if wait.is_zero() {
                break;
            }
            let connect = self.consumer.context().connect.clone();
            let polled = tokio::select! {
                biased;
                _ = shutdown.cancelled() => { batch.clear(); break; }
                _ = connect.failed() => { batch.clear(); break; }
                polled = tokio::time::timeout(wait, self.consumer.recv()) => polled,
            };
            match polled {
                Ok(Ok(message)) => {
                    let record = Record::from_message(&message);
                    drop(message);
                    // A revocation reported by this very poll concerns the
                    // records fetched before it, not this one (fetched after
                    // any re-assignment): drop those first.
                    self.drop_revoked(&mut batch);
                    batch.push(record);
                    deadline.get_or_insert_with(|| Instant::now() + self.max_batch_time);
                }
                Ok(Err(error)) => {
                    self.throttle.report(&trouble_key(&error), |suppressed| {
                        tracing::warn!(%error, suppressed, "stream processor consumer error")
                    });
                }
                Err(_) if deadline.is_some() => break,
                Err(_) => {}
            }
            self.drop_revoked(&mut batch);
        }
        self.drop_revoked(&mut batch);
        batch
    }

    fn drop_revoked(&mut self, batch: &mut Vec<Record>) {
        let revoked = std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if revoked.is_empty() {
            return;
        }
        batch.retain(|r| !revoked.contains(&r.partition().unwrap_or(-1)));
        for partition in revoked {
            self.tasks.remove(partition);
        }
        let partitions: Vec<i32> = self.tasks.owned().collect();
        self.handle.shared.update(|h| h.partitions = partitions);
    }

    /// Opens and restores the stores of every partition of `batch` not owned yet.
    async fn prepare(&mut self, batch: &[Record]) -> Result<(), ProcessorError> {
        let mut partitions: Vec<i32> = batch.iter().filter_map(Record::partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            if self.tasks.get(partition).is_some() {
                continue;
            }
            let store_error = |e: StoreError| ProcessorError {
                kind: ProcessorErrorKind::Store,
                source: e.into(),
            };
            let mut backends = self.tasks.open(partition).map_err(store_error)?;
            let application_id = self.tasks.application_id().to_owned();
            let config = self.restore_config.clone();
            let shared = self.handle.shared.clone();
            backends = tokio::task::spawn_blocking(move || {
                for (name, backend) in &mut backends {
                    let topic = changelog_topic(&application_id, name);
                    let restored = restore(&config, &topic, partition, backend.as_mut(), |restored, total| {
                        shared.update(|h| {
                            h.restoring = Some(RestoreProgress {
                                store: name.to_string(),
                                partition,
                                restored,
                                total,
                            })
                        })
                    })?;
                    metrics::counter!("light_kafka.store.restored.records", "store" => name.to_string())
                        .increment(restored);
                    shared.update(|h| {
                        h.restoring = None;
                        h.restored += restored;
                    });
                }
                Ok(backends)
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::backend("the restore task failed", e)))
            .map_err(store_error)?;
            self.tasks.insert(partition, backends);
            let partitions: Vec<i32> = self.tasks.owned().collect();
            self.handle.shared.update(|h| h.partitions = partitions);
        }
        Ok(())
    }

    /// Runs `batch` in one transaction.
    async fn transaction<S>(
        &mut self,
        service: &mut S,
        batch: Vec<Record>,
    ) -> Result<Ended, ProcessorError>
    where
        S: Service<Record>,
        S::Response: IntoOutputs,
        S::Error: Into<BoxError>,
    {
        let mut tx = match self.producer.begin().await {
            Ok(tx) => tx,
            Err(e) => return fatal_or(e),
        };
        let mut next: HashMap<(Arc<str>, i32), i64> = HashMap::new();
        let mut sent = 0usize;
        let inputs = batch.len() as u64;
        for record in batch {
            let (Some(partition), Some(offset)) = (record.partition(), record.offset()) else {
                continue;
            };
            next.insert((record.topic_arc().clone(), partition), offset + 1);
            let stores = self.tasks.get(partition).cloned().expect("prepared");
            match step(service, record, stores).await {
                Ok(outputs) => {
                    for output in outputs {
                        if let Err(e) = tx.send(output).await {
                            return fatal_or(e);
                        }
                        sent += 1;
                    }
                }
                Err(error) => {
                    return match tx.abort().await {
                        Ok(()) => Ok(Ended::Aborted(error)),
                        Err(e) => fatal_or(e),
                    };
                }
            }
        }
        let staged = self.tasks.stage();
        let mut last_index = Vec::with_capacity(staged.len());
        for staged in &staged {
            for record in staged.changelog(self.tasks.application_id()) {
                if let Err(e) = tx.send(record).await {
                    return fatal_or(e);
                }
                sent += 1;
            }
            last_index.push(sent - 1);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .expect("a valid offset");
        }
        let Some(group) = self.consumer.group_metadata() else {
            return match tx.abort().await {
                Ok(()) => Ok(Ended::Aborted(
                    "the consumer has no group metadata yet".into(),
                )),
                Err(e) => fatal_or(e),
            };
        };
        let mirror = self.group_commit.then(|| offsets.clone());
        if let Err(e) = tx.send_offsets(offsets, group).await {
            return fatal_or(e);
        }
        let deliveries = match tx.commit().await {
            Ok(deliveries) => deliveries,
            Err(e) => return fatal_or(e),
        };
        if let Some(offsets) = mirror
            && let Err(error) = self
                .consumer
                .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        {
            tracing::debug!(%error, "committing the offsets to the group as well");
        }
        for (staged, index) in staged.into_iter().zip(last_index) {
            let partition = staged.partition;
            let checkpoint = deliveries.get(index).map(|d| d.offset() + 1);
            if let Err(error) = staged.apply(checkpoint) {
                // Kafka has the writes; this copy does not. Restore it again
                // from the changelog before its next record.
                tracing::error!(%error, partition, "a committed store write failed locally; the store will be restored");
                self.tasks.remove(partition);
            }
        }
        metrics::counter!("light_kafka.processor.transactions", "outcome" => "committed")
            .increment(1);
        self.handle.shared.update(|h| {
            h.committed += 1;
            h.committed_records += inputs;
            h.last_error = None;
        });
        Ok(Ended::Committed)
    }

    /// Seeks every partition of the aborted batch back to its first record.
    fn rewind(&self, firsts: &HashMap<(Arc<str>, i32), i64>) {
        for ((topic, partition), offset) in firsts {
            if let Err(error) = self.consumer.seek(
                topic,
                *partition,
                Offset::Offset(*offset),
                Duration::from_secs(10),
            ) {
                // Revoked meanwhile: its next owner starts from the commit.
                tracing::debug!(%error, topic = &**topic, partition, "rewind");
            }
        }
    }
}

fn first_offsets(batch: &[Record]) -> HashMap<(Arc<str>, i32), i64> {
    let mut firsts = HashMap::new();
    for record in batch {
        if let (Some(partition), Some(offset)) = (record.partition(), record.offset()) {
            firsts
                .entry((record.topic_arc().clone(), partition))
                .or_insert(offset);
        }
    }
    firsts
}

/// An aborted transaction is retried; a fenced or broken producer stops the
/// processor.
fn fatal_or(error: TransactionError) -> Result<Ended, ProcessorError> {
    let kind = match error.kind() {
        TransactionErrorKind::Fenced => ProcessorErrorKind::Fenced,
        TransactionErrorKind::Fatal
        | TransactionErrorKind::Unusable
        | TransactionErrorKind::Unsupported
        | TransactionErrorKind::Init => ProcessorErrorKind::Fatal,
        _ => return Ok(Ended::Aborted(error.into())),
    };
    Err(ProcessorError {
        kind,
        source: error.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send() {
        fn assert_send<T: Send>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send::<StreamProcessor>();
        assert_send_sync::<ProcessorHandle>();
        assert_send_sync::<ProcessorError>();
    }

    #[tokio::test]
    async fn settings_are_checked_before_connecting() {
        let err = StreamProcessor::builder("app")
            .topics(["t"])
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.setting(), Some("bootstrap.servers"));
        let err = StreamProcessor::builder(" ")
            .bootstrap_servers("127.0.0.1:9")
            .topics(["t"])
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.setting(), Some("application.id"));
        let err = StreamProcessor::builder("app")
            .bootstrap_servers("127.0.0.1:9")
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.setting(), Some("topics"));
    }
}
