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

mod builder;
mod context;
mod error;
mod health;
mod sink;

pub use builder::StreamProcessorBuilder;
pub use error::{ProcessorError, ProcessorErrorKind};
pub use health::{ProcessorHandle, ProcessorHealth, Recovery, StalledPartition};
pub use sink::ProcessorSink;

use context::ProcessorContext;
use health::Shared;
use sink::Slot;

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
