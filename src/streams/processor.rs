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
//! - **A failed record** (the service returned an error) aborts the
//!   transaction: nothing of it becomes visible, the stores drop their
//!   pending writes. Its partition is then **held back** from that record on:
//!   the other partitions' records run again at once, without it, and commit;
//!   the failing record is retried alone, in a transaction of its own, after a
//!   backoff that doubles ([`backoff`](StreamProcessorBuilder::backoff)),
//!   until it passes. Nothing of its partition from that record on is emitted
//!   or committed meanwhile (its committed offset stays at the record), and
//!   [`ProcessorHealth::stalled`] names it: topic, partition, offset, attempts
//!   and last error. One poison record stalls its own partition only.
//! - **Dead letters inside the transaction**: a record that will never pass
//!   should not hold its partition back for ever. Put a
//!   [`DeadLetterLayer`](crate::layers::dead_letter::DeadLetterLayer) over
//!   [`StreamProcessor::sink`] in the chain: the poison record goes to
//!   `<topic>.dlq` **inside the same transaction**, so the dead letter and
//!   the input's offset commit together (or not at all), and the partition
//!   goes on (see the second example below).
//! - **Outages**: when the cluster is away longer than
//!   `transaction.timeout.ms`, the transaction coordinator aborts the open
//!   transaction and bumps the producer's epoch, which librdkafka reports as
//!   a fence; a commit or an abort may also fail without saying whether it
//!   took effect. The processor does not stop: it re-creates its producer
//!   with the same `transactional.id` (whose `init_transactions` ends what
//!   the old one left open), drops its stores' state (restored from the
//!   changelogs before their next record), rewinds every partition to its
//!   committed offset and goes on, retrying with backoff while the cluster
//!   is away. [`ProcessorHealth::recovering`] says so, since when and why,
//!   until a transaction commits again.
//! - **Rebalances** happen only between transactions: the processor polls only
//!   when no transaction is open, so a partition always leaves with its work
//!   committed. Records fetched for a partition that is revoked before they
//!   ran are dropped; its next owner reads them from the committed offset.
//! - **State**: a partition's stores are restored from their changelogs
//!   before its first record runs ([`ProcessorHealth::restoring`]).
//! - **Zombies**: an instance fenced by a newer one with the same
//!   `transactional.id`, or whose group generation is stale, cannot commit; a
//!   fenced processor stops with [`ProcessorErrorKind::Fenced`]. A fence is
//!   told from an outage by the age of the transaction it ended: younger than
//!   `transaction.timeout.ms`, only a newer instance can have fenced it. An
//!   instance stalled longer than that while its successor started cannot
//!   tell the two apart from the fence alone: with
//!   [`static_membership`](StreamProcessorBuilder::static_membership) its
//!   consumer was fenced by the successor's meanwhile (heartbeats go on
//!   while a handler stalls), and it stops with `Fenced` before touching its
//!   producer; without it, it re-creates its producer, fencing the
//!   successor's in turn (exactly-once holds either way, as every producer
//!   is fenced by the next).
//! - **Static membership**: with
//!   [`static_membership`](StreamProcessorBuilder::static_membership) and an
//!   [`instance_id`](StreamProcessorBuilder::instance_id), a restarted
//!   instance takes its partitions back without a rebalance and without
//!   waiting for `session.timeout.ms`.
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
//!
//! Poison records dead-lettered inside the transaction, so that their
//! partition goes on:
//!
//! ```
//! use light_kafka::layers::dead_letter::DeadLetterLayer;
//! use light_kafka::record::Record;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::streams::processor::StreamProcessor;
//! use light_kafka::{BoxError, Error, ErrorKind};
//! use tower::{ServiceBuilder, service_fn};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! for topic in ["orders", "orders.dlq", "accepted"] {
//!     kafka.create_topic(topic, 1)?;
//! }
//! let processor = StreamProcessor::builder("accept")
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .topics(["orders"])
//!     .build()
//!     .await?;
//! let handle = processor.handle();
//! let chain = ServiceBuilder::new()
//!     // Dead letters join the open transaction.
//!     .layer(DeadLetterLayer::new(processor.sink()))
//!     .service(service_fn(|order: Record| async move {
//!         if order.value_str()? == "garbage" {
//!             return Err(Error::new(ErrorKind::Invalid, "not an order").into());
//!         }
//!         Ok::<_, BoxError>(Some(order.forward_to("accepted")))
//!     }));
//! let running = tokio::spawn(processor.run(chain));
//! # let producer = light_kafka::service::producer::Producer::builder()
//! #     .bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! # use tower::ServiceExt;
//! # for value in ["a", "garbage", "b"] {
//! #     producer.clone().oneshot(Record::builder("orders").value(value).build()).await?;
//! # }
//! # while handle.health().committed_records < 3 {
//! #     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! # }
//! // The garbage went to `orders.dlq` with the batch; nothing is held back.
//! assert!(handle.health().stalled.is_empty());
//! handle.shutdown();
//! running.await??;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
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
use crate::service::producer::{Delivery, ProduceError, Producer};
use crate::service::transactional::{
    TransactionError, TransactionErrorKind, TransactionalProducer, TransactionalProducerBuilder,
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
    /// The input partitions assigned to this instance now (sorted; a
    /// partition number of several co-partitioned topics appears once).
    pub partitions: Vec<i32>,
    /// The last failure, until the next commit.
    pub last_error: Option<String>,
    /// Set while the processor is held up by an outage: its consumer found
    /// every broker down, or its producer failed in a way only a new
    /// producer mends (the cluster was unreachable longer than
    /// `transaction.timeout.ms`, a commit or an abort could not finish) and
    /// is being re-created. Cleared when a transaction commits again (or,
    /// when no producer had to be re-created, when input arrives again).
    pub recovering: Option<Recovery>,
    /// How many times the transactional producer was re-created.
    pub recoveries: u64,
    /// Partitions held back by a record that keeps failing (no dead-letter
    /// layer took it): the other partitions go on, this one is retried on its
    /// own with backoff and commits nothing past the record.
    pub stalled: Vec<StalledPartition>,
}

/// An outage the processor is recovering from ([`ProcessorHealth::recovering`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// When the outage was first seen.
    pub since: SystemTime,
    /// Attempts to re-create the producer and rewind so far (0 while the
    /// processor only waits for the cluster).
    pub attempts: u32,
    /// What failed last: the producer's error, then each failed attempt's.
    pub last_error: String,
}

/// A partition held back by a failing record ([`ProcessorHealth::stalled`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StalledPartition {
    /// The input topic of the record.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset: the partition's committed offset stays at or before it.
    pub offset: i64,
    /// How many times the record failed.
    pub attempts: u32,
    /// The record's last error.
    pub last_error: String,
    /// When it failed first.
    pub since: SystemTime,
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
    static_membership: bool,
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

    /// Joins the consumer group as a static member (KIP-345): the consumer's
    /// `group.instance.id` is `<application.id>-<instance>`, the name set with
    /// [`instance_id`](Self::instance_id), which is then required. A static
    /// member does not leave the group when it stops, so an instance that
    /// restarts (a new pod with the same name, a process killed and started
    /// again) gets its partitions back at once: no rebalance, and no wait for
    /// `session.timeout.ms` to expire the member it replaces. An instance that
    /// stays away longer than `session.timeout.ms` is expired and its
    /// partitions move to the others, so set that timeout to the longest
    /// restart you want to ride out. Two instances running with the same name
    /// fence each other: the older one stops with
    /// [`ProcessorErrorKind::Fenced`]. Default: off (dynamic membership).
    pub fn static_membership(mut self, on: bool) -> Self {
        self.static_membership = on;
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
    /// A [`BuildError`] when a setting is missing or wrong (static membership
    /// without an instance id), a changelog topic is missing and cannot be
    /// created, or the producer cannot initialise its transactions.
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
        if self.static_membership && self.instance_id.is_none() {
            return Err(BuildError::missing(
                "instance_id",
                "static membership needs the instance's stable name (instance_id)",
            ));
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
        if let (true, Some(instance)) = (self.static_membership, &self.instance_id) {
            consumer_config.set(
                "group.instance.id",
                format!("{}-{instance}", self.application_id),
            );
        }

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
        let transaction_timeout = self
            .producer
            .get("transaction.timeout.ms")
            .or_else(|| self.common.get("transaction.timeout.ms"))
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis);
        let rebuild = producer.clone();
        let producer = producer
            .build()
            .await
            .map_err(|e| BuildError::caused_by("the processor's transactional producer", e))?;

        let shared = Arc::new(Shared::default());
        let context = ProcessorContext {
            shared: shared.clone(),
            ..ProcessorContext::default()
        };
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
            consumer: Arc::new(consumer),
            slot: Arc::new(Slot {
                generation: AtomicU64::new(0),
                producer: Mutex::new(producer.clone()),
            }),
            producer,
            rebuild,
            transaction_timeout,
            stalls: HashMap::new(),
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
    shared: Arc<Shared>,
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
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // The cluster is away: health says so until it is back.
            let message = format!("{error}: {reason}");
            self.shared.update(|h| {
                h.recovering
                    .get_or_insert_with(|| Recovery {
                        since: SystemTime::now(),
                        attempts: 0,
                        last_error: String::new(),
                    })
                    .last_error = message;
            });
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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        // The whole assignment after the change (cooperative rebalances
        // report only what moved).
        let mut partitions: Vec<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        partitions.sort_unstable();
        partitions.dedup();
        self.shared.update(|h| h.partitions = partitions);
    }
}

/// A consume-transform-produce loop with exactly-once semantics and state
/// stores. See the [module documentation](self).
pub struct StreamProcessor {
    group_commit: bool,
    consumer: Arc<StreamConsumer<ProcessorContext>>,
    producer: TransactionalProducer,
    /// Where [`ProcessorSink`]s find the current producer.
    slot: Arc<Slot>,
    /// Builds the producer again, with the same `transactional.id`.
    rebuild: TransactionalProducerBuilder,
    transaction_timeout: Duration,
    stalls: HashMap<(Arc<str>, i32), Stall>,
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

/// The processor's current transactional producer, replaced when an outage
/// made it unusable.
struct Slot {
    generation: AtomicU64,
    producer: Mutex<TransactionalProducer>,
}

impl Slot {
    fn sink(&self) -> (u64, Producer) {
        let producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        (self.generation.load(Ordering::Acquire), producer.sink())
    }

    fn replace(&self, new: TransactionalProducer) -> TransactionalProducer {
        let mut producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *producer, new);
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }
}

/// A producer whose records join the processor's open transaction, from
/// [`StreamProcessor::sink`]: give it to a
/// [`DeadLetterLayer`](crate::layers::dead_letter::DeadLetterLayer) in the
/// chain. It follows the processor when the processor re-creates its
/// producer after an outage. Cheap to clone.
pub struct ProcessorSink {
    slot: Arc<Slot>,
    generation: u64,
    producer: Producer,
}

impl ProcessorSink {
    fn new(slot: Arc<Slot>) -> Self {
        let (generation, producer) = slot.sink();
        ProcessorSink {
            slot,
            generation,
            producer,
        }
    }
}

impl Clone for ProcessorSink {
    fn clone(&self) -> Self {
        ProcessorSink::new(self.slot.clone())
    }
}

impl fmt::Debug for ProcessorSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorSink")
            .field("generation", &self.generation)
            .field("producer", &self.producer)
            .finish()
    }
}

impl Service<Record> for ProcessorSink {
    type Response = Delivery;
    type Error = ProduceError;
    type Future = crate::service::producer::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProduceError>> {
        if self.slot.generation.load(Ordering::Acquire) != self.generation {
            // The processor re-created its producer between two transactions.
            let (generation, producer) = self.slot.sink();
            self.generation = generation;
            self.producer = producer;
        }
        self.producer.poll_ready(cx)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        self.producer.call(record)
    }
}

/// A partition held back by its failing record.
struct Stall {
    record: Record,
    attempts: u32,
    last_error: String,
    since: SystemTime,
    due: Instant,
    delay: Duration,
    /// Records of the partition before the failing one are not committed
    /// yet: the retry waits for them.
    waiting: bool,
    /// The partition is paused (a record at or past the failing one came in).
    paused: bool,
}

/// How a transaction ended.
enum Ended {
    /// Committed, with the next offset of each input partition in it.
    Committed(HashMap<(Arc<str>, i32), i64>),
    /// The service failed on `record`; the transaction was aborted.
    Failed { record: Record, error: BoxError },
    /// Aborted for another reason (a record not delivered, a failed commit,
    /// no group metadata); the producer goes on.
    Aborted(BoxError),
    /// The producer can go on no more: its error, and when the transaction began.
    Broken {
        error: TransactionError,
        began: Instant,
    },
}

impl Ended {
    fn from_error(error: TransactionError, began: Instant) -> Ended {
        if error.is_recoverable() {
            Ended::Aborted(error.into())
        } else {
            Ended::Broken { error, began }
        }
    }
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
            static_membership: false,
        }
    }

    /// A producer whose records join the open transaction: give it to a
    /// [`DeadLetterLayer`](crate::layers::dead_letter::DeadLetterLayer) in the
    /// chain, and dead letters commit (or abort) with the batch.
    pub fn sink(&self) -> ProcessorSink {
        ProcessorSink::new(self.slot.clone())
    }

    /// A handle to stop the processor and read its health.
    pub fn handle(&self) -> ProcessorHandle {
        self.handle.clone()
    }

    /// Runs `service` over the input until [`ProcessorHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// A [`ProcessorError`] when the processor was fenced by a newer instance
    /// ([`ProcessorErrorKind::Fenced`]), its producer or consumer failed in a
    /// way no new producer mends, it cannot connect with its configuration, or
    /// a state store failed. A failing record is not an error here (its
    /// partition is retried on its own), nor is an outage of the cluster (the
    /// processor re-creates its producer and resumes from the committed
    /// offsets).
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
            self.check_consumer()?;
            if let Some(key) = self.due_stall() {
                // The failing record of a held-back partition, alone in a
                // transaction of its own.
                let record = self.stalls[&key].record.clone();
                self.prepare(std::slice::from_ref(&record)).await?;
                let ended = self.transaction(&mut service, vec![record]).await;
                if matches!(ended, Ended::Committed(_)) {
                    self.unstall(&key);
                }
                self.settle(ended, &HashMap::new(), &shutdown, &mut delay)
                    .await?;
                continue;
            }
            let batch = self.collect(&shutdown).await;
            if batch.is_empty() {
                continue;
            }
            self.prepare(&batch).await?;
            let firsts = first_offsets(&batch);
            let ended = self.transaction(&mut service, batch).await;
            self.settle(ended, &firsts, &shutdown, &mut delay).await?;
        }
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Acts on how a transaction of `firsts` (the first offset of each of its
    /// partitions) ended.
    async fn settle(
        &mut self,
        ended: Ended,
        firsts: &HashMap<(Arc<str>, i32), i64>,
        shutdown: &CancellationToken,
        delay: &mut Duration,
    ) -> Result<(), ProcessorError> {
        match ended {
            Ended::Committed(next) => {
                self.throttle.recovered();
                *delay = self.backoff.0;
                for (key, offset) in next {
                    if let Some(stall) = self.stalls.get_mut(&key)
                        && stall.record.offset().is_some_and(|o| offset >= o)
                    {
                        stall.waiting = false;
                    }
                }
            }
            Ended::Failed { record, error } => {
                self.tasks.discard();
                let message = crate::error::chain(error.as_ref());
                self.throttle.report(&message, |suppressed| {
                    tracing::warn!(
                        error = %message,
                        topic = record.topic(),
                        partition = record.partition(),
                        offset = record.offset(),
                        suppressed,
                        "stream processor transaction aborted by a failing record; its partition is held back and retried alone"
                    )
                });
                metrics::counter!("light_kafka.processor.transactions", "outcome" => "aborted")
                    .increment(1);
                self.handle.shared.update(|h| {
                    h.aborted += 1;
                    h.last_error = Some(message.clone());
                });
                self.stall(record, message, firsts);
                self.rewind(firsts);
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
                self.rewind(firsts);
                tokio::select! {
                    _ = tokio::time::sleep(*delay) => {}
                    _ = shutdown.cancelled() => {}
                }
                *delay = (*delay * 2).min(self.backoff.1);
            }
            Ended::Broken { error, began } => {
                self.tasks.discard();
                // A static member whose successor joined the group is a
                // zombie whatever the age of its transaction.
                self.check_consumer()?;
                if let Some(stop) = self.stops(error.clone(), began) {
                    self.handle
                        .shared
                        .update(|h| h.last_error = Some(stop.to_string()));
                    return Err(stop);
                }
                self.recover(error, shutdown).await?;
            }
        }
        Ok(())
    }

    /// The error that stops the processor, if `error` (of a transaction begun
    /// at `began`) is not one a new producer mends.
    ///
    /// A fence is a zombie's when the transaction was younger than
    /// `transaction.timeout.ms`: only a newer instance initialising the same
    /// `transactional.id` can have bumped the epoch then. An older one may
    /// have been aborted by the coordinator for its age (which bumps the epoch
    /// too, and reads as a fence to librdkafka): the processor's own producer
    /// is then re-created.
    fn stops(&self, error: TransactionError, began: Instant) -> Option<ProcessorError> {
        let kind = stop_kind(error.kind(), began.elapsed(), self.transaction_timeout)?;
        Some(ProcessorError {
            kind,
            source: error.into(),
        })
    }

    /// A fatal error of the consumer: fenced by another static member with
    /// the same `group.instance.id`, or broken for good.
    fn check_consumer(&self) -> Result<(), ProcessorError> {
        let Some((code, reason)) = self.consumer.client().fatal_error() else {
            return Ok(());
        };
        let error = if code == RDKafkaErrorCode::Fenced {
            ProcessorError {
                kind: ProcessorErrorKind::Fenced,
                source: format!(
                    "another instance joined the consumer group with the same group.instance.id: {reason}"
                )
                .into(),
            }
        } else {
            ProcessorError {
                kind: ProcessorErrorKind::Fatal,
                source: format!("the processor's consumer failed for good ({code:?}): {reason}")
                    .into(),
            }
        };
        self.handle
            .shared
            .update(|h| h.last_error = Some(error.to_string()));
        Err(error)
    }

    /// Re-creates the producer after `error` made it unusable, and resumes
    /// from what Kafka committed: the stores are dropped (restored from their
    /// changelogs before their next record), the held-back partitions
    /// released, and every assigned partition rewound to its committed
    /// offset. Tried with backoff while the cluster is away.
    async fn recover(
        &mut self,
        error: TransactionError,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        let message = crate::error::chain(&error);
        tracing::warn!(error = %message, "the stream processor's producer failed; re-creating it and resuming from the committed offsets");
        metrics::counter!("light_kafka.processor.transactions", "outcome" => "aborted")
            .increment(1);
        // The outcome of the last transaction may be unknown here (a commit
        // that timed out may have committed): local state is rebuilt from
        // what Kafka has.
        let owned: Vec<i32> = self.tasks.owned().collect();
        for partition in owned {
            self.tasks.remove(partition);
        }
        for key in self.stalls.keys().cloned().collect::<Vec<_>>() {
            self.resume(&key);
        }
        self.stalls.clear();
        self.report_stalls();
        self.handle.shared.update(|h| {
            h.aborted += 1;
            h.last_error = Some(message.clone());
            let recovery = h.recovering.get_or_insert_with(|| Recovery {
                since: SystemTime::now(),
                attempts: 0,
                last_error: String::new(),
            });
            recovery.last_error = message;
        });
        let mut delay = self.backoff.0;
        let mut rebuilt = false;
        while !shutdown.is_cancelled() {
            let attempt: Result<(), BoxError> = if rebuilt {
                self.rewind_to_committed().await
            } else {
                match self.rebuild_producer().await {
                    Ok(()) => {
                        rebuilt = true;
                        self.rewind_to_committed().await
                    }
                    Err(e) => match e.kind() {
                        TransactionErrorKind::Connect => {
                            return Err(ProcessorError {
                                kind: ProcessorErrorKind::Connect,
                                source: e.into(),
                            });
                        }
                        TransactionErrorKind::Unsupported => {
                            return Err(ProcessorError {
                                kind: ProcessorErrorKind::Fatal,
                                source: e.into(),
                            });
                        }
                        _ => Err(e.into()),
                    },
                }
            };
            let failure = attempt.err().map(|e| crate::error::chain(e.as_ref()));
            self.handle.shared.update(|h| {
                if let Some(recovery) = &mut h.recovering {
                    recovery.attempts += 1;
                    if let Some(failure) = &failure {
                        recovery.last_error = failure.clone();
                    }
                }
            });
            let Some(failure) = failure else {
                return Ok(());
            };
            self.throttle.report(&failure, |suppressed| {
                tracing::warn!(error = %failure, suppressed, "stream processor still recovering")
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => {}
            }
            delay = (delay * 2).min(self.backoff.1);
        }
        Ok(())
    }

    /// A new producer with the same `transactional.id`: its
    /// `init_transactions` fences the old one's epoch and ends the
    /// transaction it left open.
    async fn rebuild_producer(&mut self) -> Result<(), TransactionError> {
        let producer = self.rebuild.clone().build().await?;
        let old = self.slot.replace(producer.clone());
        let old_too = std::mem::replace(&mut self.producer, producer);
        // Closing a producer may wait for its librdkafka threads.
        drop(tokio::task::spawn_blocking(move || drop((old, old_too))));
        metrics::counter!("light_kafka.processor.recoveries").increment(1);
        self.handle.shared.update(|h| h.recoveries += 1);
        Ok(())
    }

    /// Seeks every assigned partition to its committed offset (its beginning
    /// when none is).
    async fn rewind_to_committed(&mut self) -> Result<(), BoxError> {
        let consumer = self.consumer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let assignment = consumer.assignment()?;
            if assignment.count() == 0 {
                return Ok(assignment);
            }
            consumer.committed_offsets(assignment, Duration::from_secs(10))
        })
        .await
        .map_err(|e| format!("reading the committed offsets: {e}"))?
        .map_err(|e| format!("reading the committed offsets: {e}"))?;
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => Offset::Beginning,
            };
            if let Err(error) = self.consumer.seek(
                element.topic(),
                element.partition(),
                offset,
                Duration::from_secs(10),
            ) {
                // Revoked meanwhile: its next owner starts from the commit.
                tracing::debug!(%error, topic = element.topic(), partition = element.partition(), "rewind");
            }
        }
        Ok(())
    }

    /// Holds `record`'s partition back from `record` on, or counts one more
    /// failure of the record it is held back by.
    fn stall(&mut self, record: Record, error: String, firsts: &HashMap<(Arc<str>, i32), i64>) {
        let (Some(partition), Some(offset)) = (record.partition(), record.offset()) else {
            return;
        };
        let key = (record.topic_arc().clone(), partition);
        let now = Instant::now();
        match self.stalls.get_mut(&key) {
            Some(stall) if stall.record.offset() == Some(offset) => {
                stall.attempts += 1;
                stall.last_error = error;
                stall.due = now + stall.delay;
                stall.delay = (stall.delay * 2).min(self.backoff.1);
            }
            previous => {
                // A record before the one it was held back by failed: hold
                // it back from there instead (the batch is rewound to its
                // first records, which must come in).
                if previous.is_some_and(|p| p.paused) {
                    self.resume(&key);
                }
                let waiting = firsts.get(&key).is_some_and(|first| *first < offset);
                self.stalls.insert(
                    key,
                    Stall {
                        record,
                        attempts: 1,
                        last_error: error,
                        since: SystemTime::now(),
                        due: now + self.backoff.0,
                        delay: (self.backoff.0 * 2).min(self.backoff.1),
                        waiting,
                        paused: false,
                    },
                );
            }
        }
        self.report_stalls();
    }

    /// The held-back record passed: its partition goes on after it.
    fn unstall(&mut self, key: &(Arc<str>, i32)) {
        let Some(stall) = self.stalls.remove(key) else {
            return;
        };
        self.resume(key);
        if let Some(offset) = stall.record.offset()
            && let Err(error) = self.consumer.seek(
                &key.0,
                key.1,
                Offset::Offset(offset + 1),
                Duration::from_secs(10),
            )
        {
            tracing::debug!(%error, topic = &*key.0, partition = key.1, "seek past a passed record");
        }
        tracing::info!(
            topic = &*key.0,
            partition = key.1,
            offset = stall.record.offset(),
            attempts = stall.attempts + 1,
            "a held-back record passed; its partition goes on"
        );
        self.report_stalls();
    }

    fn resume(&self, key: &(Arc<str>, i32)) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&key.0, key.1);
        if let Err(error) = self.consumer.resume(&tpl) {
            tracing::debug!(%error, topic = &*key.0, partition = key.1, "resume");
        }
    }

    /// Whether `record` is at or past the failing record of its partition
    /// (which is then paused: nothing more of it is read for now).
    fn held_back(&mut self, record: &Record) -> bool {
        let (Some(partition), Some(offset)) = (record.partition(), record.offset()) else {
            return false;
        };
        let key = (record.topic_arc().clone(), partition);
        let Some(stall) = self.stalls.get_mut(&key) else {
            return false;
        };
        if stall.record.offset().is_none_or(|o| offset < o) {
            return false;
        }
        if !stall.paused {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            match self.consumer.pause(&tpl) {
                Ok(()) => stall.paused = true,
                Err(error) => tracing::debug!(%error, topic = &*key.0, partition, "pause"),
            }
        }
        true
    }

    /// The held-back partition whose record is due for another try.
    fn due_stall(&self) -> Option<(Arc<str>, i32)> {
        let now = Instant::now();
        self.stalls
            .iter()
            .filter(|(_, s)| !s.waiting && s.due <= now)
            .min_by_key(|(_, s)| s.due)
            .map(|(key, _)| key.clone())
    }

    fn report_stalls(&self) {
        let mut stalled: Vec<StalledPartition> = self
            .stalls
            .iter()
            .map(|((topic, partition), s)| StalledPartition {
                topic: topic.to_string(),
                partition: *partition,
                offset: s.record.offset().unwrap_or(-1),
                attempts: s.attempts,
                last_error: s.last_error.clone(),
                since: s.since,
            })
            .collect();
        stalled.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.handle.shared.update(|h| h.stalled = stalled);
    }

    /// Polls up to a batch, between transactions (so rebalances happen here).
    /// Returns early, maybe empty, when a held-back record is due.
    async fn collect(&mut self, shutdown: &CancellationToken) -> Vec<Record> {
        let mut batch: Vec<Record> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let retry = self
            .stalls
            .values()
            .filter(|s| !s.waiting)
            .map(|s| s.due)
            .min();
        while batch.len() < self.max_batch {
            let now = Instant::now();
            let wait = match (deadline, retry) {
                (Some(d), _) => d.saturating_duration_since(now),
                (None, Some(r)) => r
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(200)),
                (None, None) => Duration::from_millis(200),
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
                    // Input arrives: the cluster is back. An outage that
                    // broke the producer is over only once a transaction
                    // commits again.
                    if batch.is_empty() {
                        self.handle.shared.update(|h| {
                            if h.recovering.as_ref().is_some_and(|r| r.attempts == 0) {
                                h.recovering = None;
                            }
                        });
                    }
                    // A revocation reported by this very poll concerns the
                    // records fetched before it, not this one (fetched after
                    // any re-assignment): drop those first.
                    self.drop_revoked(&mut batch);
                    if self.held_back(&record) {
                        continue;
                    }
                    batch.push(record);
                    deadline.get_or_insert_with(|| Instant::now() + self.max_batch_time);
                }
                Ok(Err(error)) => {
                    self.throttle.report(&trouble_key(&error), |suppressed| {
                        tracing::warn!(%error, suppressed, "stream processor consumer error")
                    });
                    if self.consumer.client().fatal_error().is_some() {
                        batch.clear();
                        break;
                    }
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
        for partition in &revoked {
            self.tasks.remove(*partition);
        }
        let gone: Vec<(Arc<str>, i32)> = self
            .stalls
            .keys()
            .filter(|(_, p)| revoked.contains(p))
            .cloned()
            .collect();
        if !gone.is_empty() {
            for key in &gone {
                self.resume(key);
                self.stalls.remove(key);
            }
            self.report_stalls();
        }
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
        }
        Ok(())
    }

    /// Runs `batch` in one transaction.
    async fn transaction<S>(&mut self, service: &mut S, batch: Vec<Record>) -> Ended
    where
        S: Service<Record>,
        S::Response: IntoOutputs,
        S::Error: Into<BoxError>,
    {
        let began = Instant::now();
        // Operations that block for half the transaction timeout show in
        // health while they last.
        let watch = Watch {
            shared: self.handle.shared.clone(),
            after: self.transaction_timeout / 2,
        };
        let mut tx = match self.producer.begin().await {
            Ok(tx) => tx,
            Err(e) => return Ended::from_error(e, began),
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
            // Kept to retry it alone should it fail (a clone shares the bytes).
            let kept = record.clone();
            match step(service, record, stores).await {
                Ok(outputs) => {
                    for output in outputs {
                        if let Err(e) = tx.send(output).await {
                            return Ended::from_error(e, began);
                        }
                        sent += 1;
                    }
                }
                Err(error) => {
                    return match watch.on("abort_transaction", tx.abort()).await {
                        Ok(()) => Ended::Failed {
                            record: kept,
                            error,
                        },
                        Err(e) => Ended::from_error(e, began),
                    };
                }
            }
        }
        let staged = self.tasks.stage();
        let mut last_index = Vec::with_capacity(staged.len());
        for staged in &staged {
            for record in staged.changelog(self.tasks.application_id()) {
                if let Err(e) = tx.send(record).await {
                    return Ended::from_error(e, began);
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
            return match watch.on("abort_transaction", tx.abort()).await {
                Ok(()) => Ended::Aborted("the consumer has no group metadata yet".into()),
                Err(e) => Ended::from_error(e, began),
            };
        };
        let mirror = self.group_commit.then(|| offsets.clone());
        if let Err(e) = watch
            .on(
                "send_offsets_to_transaction",
                tx.send_offsets(offsets, group),
            )
            .await
        {
            return Ended::from_error(e, began);
        }
        let deliveries = match watch.on("commit_transaction", tx.commit()).await {
            Ok(deliveries) => deliveries,
            Err(e) => return Ended::from_error(e, began),
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
            h.recovering = None;
        });
        Ended::Committed(next)
    }

    /// Seeks every partition of the aborted batch back to its first record.
    /// A held-back partition rewound before its failing record is resumed:
    /// the records before that one must come in again.
    fn rewind(&mut self, firsts: &HashMap<(Arc<str>, i32), i64>) {
        for ((topic, partition), offset) in firsts {
            let key = (topic.clone(), *partition);
            if let Some(stall) = self.stalls.get_mut(&key)
                && stall.record.offset().is_some_and(|o| *offset < o)
            {
                stall.waiting = true;
                if stall.paused {
                    stall.paused = false;
                    self.resume(&key);
                }
            }
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

/// Reports in health a transaction operation blocked longer than `after`:
/// the cluster does not answer (an outage shows here while it lasts, before
/// the operation fails).
struct Watch {
    shared: Arc<Shared>,
    after: Duration,
}

impl Watch {
    async fn on<F: std::future::Future>(&self, operation: &str, work: F) -> F::Output {
        let began = Instant::now();
        let sleep = tokio::time::sleep(self.after);
        tokio::pin!(work, sleep);
        tokio::select! {
            output = &mut work => return output,
            () = &mut sleep => {}
        }
        let message = format!(
            "{operation} has not finished after {:.1} s: the cluster does not answer",
            self.after.as_secs_f64()
        );
        tracing::warn!(operation, "{message}");
        let since = SystemTime::now()
            .checked_sub(began.elapsed())
            .unwrap_or_else(SystemTime::now);
        self.shared.update(|h| {
            h.recovering
                .get_or_insert_with(|| Recovery {
                    since,
                    attempts: 0,
                    last_error: String::new(),
                })
                .last_error = message;
        });
        work.await
    }
}

/// Why a producer error of kind `kind`, in a transaction `age` old, stops the
/// processor; `None` when a new producer mends it. See [`StreamProcessor::stops`].
fn stop_kind(
    kind: TransactionErrorKind,
    age: Duration,
    transaction_timeout: Duration,
) -> Option<ProcessorErrorKind> {
    match kind {
        TransactionErrorKind::Fenced if age < transaction_timeout => {
            Some(ProcessorErrorKind::Fenced)
        }
        TransactionErrorKind::Unsupported => Some(ProcessorErrorKind::Fatal),
        TransactionErrorKind::Connect => Some(ProcessorErrorKind::Connect),
        _ => None,
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
        assert_send_sync::<ProcessorSink>();
        assert_send::<<ProcessorSink as Service<Record>>::Future>();
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
        let err = StreamProcessor::builder("app")
            .bootstrap_servers("127.0.0.1:9")
            .topics(["t"])
            .static_membership(true)
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.setting(), Some("instance_id"));
    }

    #[test]
    fn only_a_young_fence_stops_the_processor() {
        use TransactionErrorKind as T;
        let timeout = Duration::from_secs(10);
        let young = Duration::from_secs(2);
        let old = Duration::from_secs(12);
        // A newer instance initialised the same transactional.id.
        assert_eq!(
            stop_kind(T::Fenced, young, timeout),
            Some(ProcessorErrorKind::Fenced)
        );
        // The coordinator aborted the transaction for its age: ours to mend.
        assert_eq!(stop_kind(T::Fenced, old, timeout), None);
        // Commits or aborts that could not finish, fatal librdkafka states.
        for kind in [T::Unusable, T::Fatal, T::Timeout, T::Aborted] {
            assert_eq!(stop_kind(kind, young, timeout), None, "{kind:?}");
        }
        // What no new producer mends.
        assert_eq!(
            stop_kind(T::Unsupported, old, timeout),
            Some(ProcessorErrorKind::Fatal)
        );
        assert_eq!(
            stop_kind(T::Connect, young, timeout),
            Some(ProcessorErrorKind::Connect)
        );
    }
}
