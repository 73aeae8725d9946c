//! DLQ replay: re-publish dead letters to their original topic (or another).
//!
//! [`Replay`] reads `<topic>.dlq` from the beginning (or an offset range) up to
//! where it ended when the replay started, strips the headers the dead-letter
//! layer added (`dlq.*`, `StackTrace`), keeps every other header (correlation
//! id, token, trace context...), and produces each record to the topic named in
//! its `dlq.original.topic` header, or to the topic given with
//! [`Replay::to_topic`]. It is what kafka-sidecar's replay endpoint does; the
//! `dlq_replay` example is a command-line front end.
//!
//! ```
//! use light_kafka::layers::dead_letter::dead_letter_record;
//! use light_kafka::record::{names, Record};
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::producer::Producer;
//! use light_kafka::service::replay::Replay;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("orders", 1)?;
//! kafka.create_topic("orders.dlq", 1)?;
//! let producer = Producer::builder().bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! let failed = Record::builder("orders").value("v").header(names::CORRELATION_ID, "c-1").offset(3).build();
//! let error = light_kafka::Error::transient("database down");
//! producer.clone().oneshot(dead_letter_record(&failed, &error, ".dlq")).await?;
//!
//! let report = Replay::new(kafka.bootstrap_servers(), "orders.dlq").run().await?;
//! assert_eq!(report.replayed, 1);
//! # Ok(()) }
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};

use super::client::BuildError;
use super::producer::{ProduceError, Producer};
use crate::error::{ErrorKind, Kinded};
use crate::record::{Record, names};

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records produced to their target topic.
    pub replayed: u64,
    /// Records not replayed: without an original topic (and no target topic
    /// given), or reduced dead letters whose value was left out.
    pub skipped: u64,
}

/// A replay that could not finish: kind [`ErrorKind::Produce`] (or `Config`).
#[derive(Debug)]
pub enum ReplayError {
    /// A client could not be created.
    Build(BuildError),
    /// Reading the dead-letter topic failed.
    Kafka(KafkaError),
    /// A record could not be re-published; records before it may have been.
    Produce(ProduceError),
    /// The dead-letter topic does not exist (nothing was replayed, and
    /// nothing could have been: this is not "replayed 0").
    UnknownTopic(String),
    /// The cluster did not answer within the replay's timeout.
    Unreachable {
        /// The timeout that ran out ([`Replay::timeout`]).
        timeout: Duration,
        /// What librdkafka reported.
        source: KafkaError,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Build(e) => write!(f, "replay: {e}"),
            ReplayError::Kafka(e) => write!(f, "replay: reading the dead-letter topic failed: {e}"),
            ReplayError::Produce(e) => write!(f, "replay: re-publishing failed: {e}"),
            ReplayError::UnknownTopic(topic) => {
                write!(f, "replay: the dead-letter topic {topic:?} does not exist")
            }
            ReplayError::Unreachable { timeout, source } => write!(
                f,
                "replay: the cluster did not answer within {timeout:?}: {source}"
            ),
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Build(e) => Some(e),
            ReplayError::Kafka(e) => Some(e),
            ReplayError::Produce(e) => Some(e),
            ReplayError::UnknownTopic(_) => None,
            ReplayError::Unreachable { source, .. } => Some(source),
        }
    }
}

impl Kinded for ReplayError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReplayError::Build(_) | ReplayError::UnknownTopic(_) => ErrorKind::Config,
            _ => ErrorKind::Produce,
        }
    }
}

/// A replay of a dead-letter topic. See the [module documentation](self).
#[derive(Clone)]
pub struct Replay {
    config: ClientConfig,
    dlq_topic: String,
    target: Option<String>,
    offsets: Option<Range<i64>>,
    timeout: Duration,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("config", &crate::service::client::Redacted(&self.config))
            .field("dlq_topic", &self.dlq_topic)
            .field("target", &self.target)
            .field("offsets", &self.offsets)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Replay {
    /// Replays `dlq_topic` of the cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str, dlq_topic: impl Into<String>) -> Self {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap_servers);
        Replay {
            config,
            dlq_topic: dlq_topic.into(),
            target: None,
            offsets: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Sets a librdkafka property for both the reader and the producer.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.config.set(key, value);
        self
    }

    /// Re-publishes to `topic` instead of each record's original topic.
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.target = Some(topic.into());
        self
    }

    /// Replays only the offsets in `range` (of every partition).
    pub fn offsets(mut self, range: Range<i64>) -> Self {
        self.offsets = Some(range);
        self
    }

    /// Gives up reading after this long without reaching the end (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the replay.
    ///
    /// # Errors
    ///
    /// A [`ReplayError`] when the topic cannot be read or a record cannot be
    /// re-published.
    pub async fn run(self) -> Result<ReplayReport, ReplayError> {
        let producer = Producer::from_config(&self.config).map_err(ReplayError::Build)?;
        let (tx, mut rx) = mpsc::channel::<Record>(1024);
        let reader = {
            let replay = self.clone();
            tokio::task::spawn_blocking(move || replay.read(&tx))
        };
        let mut report = ReplayReport::default();
        let mut deliveries = FuturesUnordered::new();
        let mut producer = producer;
        while let Some(record) = rx.recv().await {
            let target = self.target.clone().or_else(|| {
                record
                    .header_str(names::DLQ_ORIGINAL_TOPIC)
                    .map(str::to_owned)
            });
            let Some(target) = target else {
                report.skipped += 1;
                continue;
            };
            if record.headers().contains(names::DLQ_VALUE_OMITTED) {
                // A reduced dead letter lacks its value: replaying it would
                // publish something the original never was.
                tracing::warn!(
                    offset = record.offset(),
                    "not replaying a reduced dead letter (its value was left out)"
                );
                report.skipped += 1;
                continue;
            }
            let mut replayed = record.forward_to(target);
            for name in names::DLQ_HEADERS {
                replayed.headers_mut().remove(name);
            }
            let ready = producer.ready().await.map_err(ReplayError::Produce)?;
            deliveries.push(ready.call(replayed));
            while deliveries.len() > 1024 {
                deliveries
                    .next()
                    .await
                    .expect("pending")
                    .map_err(ReplayError::Produce)?;
                report.replayed += 1;
            }
        }
        while let Some(delivery) = deliveries.next().await {
            delivery.map_err(ReplayError::Produce)?;
            report.replayed += 1;
        }
        reader
            .await
            .map_err(|_| ReplayError::Kafka(KafkaError::Canceled))??;
        Ok(report)
    }

    /// Reads the dead-letter topic up to its end at the start, sending each record.
    fn read(&self, tx: &mpsc::Sender<Record>) -> Result<(), ReplayError> {
        let mut config = self.config.clone();
        config
            .set("group.id", "light-kafka-dlq-replay")
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().map_err(|e| {
            ReplayError::Build(BuildError::kafka("cannot create the replay reader", e))
        })?;
        let metadata = consumer
            .fetch_metadata(Some(&self.dlq_topic), self.timeout)
            .map_err(|source| ReplayError::Unreachable {
                timeout: self.timeout,
                source,
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.dlq_topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ReplayError::UnknownTopic(self.dlq_topic.clone()));
        }
        let mut assignment = TopicPartitionList::new();
        let mut ends = Vec::new();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.dlq_topic, partition, self.timeout)
                .map_err(ReplayError::Kafka)?;
            let (start, end) = match &self.offsets {
                Some(range) => (range.start.max(low), range.end.min(high)),
                None => (low, high),
            };
            if start < end {
                assignment
                    .add_partition_offset(&self.dlq_topic, partition, Offset::Offset(start))
                    .map_err(ReplayError::Kafka)?;
                ends.push((partition, end));
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        consumer.assign(&assignment).map_err(ReplayError::Kafka)?;
        let topic: Arc<str> = Arc::from(self.dlq_topic.as_str());
        let deadline = Instant::now() + self.timeout;
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err(ReplayError::Kafka(KafkaError::MessageConsumption(
                    rdkafka::error::RDKafkaErrorCode::OperationTimedOut,
                )));
            }
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                // Markers and compaction leave gaps: the position tells when a
                // partition is done even if its last offset holds no record.
                if let Ok(positions) = consumer.position() {
                    ends.retain(|(partition, end)| {
                        !matches!(
                            positions.find_partition(&self.dlq_topic, *partition).map(|e| e.offset()),
                            Some(Offset::Offset(next)) if next >= *end
                        )
                    });
                }
                continue;
            };
            let record =
                Record::from_message_in(&message.map_err(ReplayError::Kafka)?, topic.clone());
            let (partition, offset) = (
                record.partition().unwrap_or_default(),
                record.offset().unwrap_or_default(),
            );
            let Some(position) = ends.iter().position(|(p, _)| *p == partition) else {
                continue;
            };
            let end = ends[position].1;
            if offset >= end {
                ends.swap_remove(position);
                continue;
            }
            if offset + 1 >= end {
                ends.swap_remove(position);
            }
            if tx.blocking_send(record).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}
