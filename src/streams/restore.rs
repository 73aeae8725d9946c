//! Restoring a store of one partition from its changelog.
//!
//! The stream processor restores every store of a partition it is assigned
//! before the partition's first record runs; [`restore`] is that step, for
//! tools that rebuild a persistent store offline (or measure restore speed).
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::rdkafka::config::ClientConfig;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::producer::Producer;
//! use light_kafka::streams::restore::restore;
//! use light_kafka::streams::store::{Backend, MemoryBackend};
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("app-counts-changelog", 1)?;
//! let producer = Producer::builder().bootstrap_servers(kafka.bootstrap_servers()).build()?;
//! producer.clone().oneshot(Record::builder("app-counts-changelog").key("a").value("1").build()).await?;
//! producer.oneshot(Record::builder("app-counts-changelog").key("a").value("2").build()).await?;
//!
//! let mut config = ClientConfig::new();
//! config.set("bootstrap.servers", kafka.bootstrap_servers());
//! let mut store = MemoryBackend::default();
//! let read = tokio::task::spawn_blocking(move || {
//!     let read = restore(&config, "app-counts-changelog", 0, &mut store, |_, _| {});
//!     read.map(|n| (n, store))
//! })
//! .await??;
//! assert_eq!(read.0, 2);
//! assert_eq!(read.1.get(b"a")?, Some("2".into()));
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::store::{Backend, StoreError, StoreErrorKind};

/// Records applied to the backend per write while restoring.
const CHUNK: usize = 1000;
/// How long a restore may go without reading anything before it fails.
const STALL: Duration = Duration::from_secs(120);

/// Where a restore stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreProgress {
    /// The store.
    pub store: String,
    /// The partition.
    pub partition: i32,
    /// Changelog records read so far.
    pub restored: u64,
    /// Changelog records to read (an upper bound: transaction markers and
    /// aborted records count too).
    pub total: u64,
}

/// Reads `topic`'s `partition` from the backend's checkpoint (or the
/// beginning) to its end (the last stable offset: only committed writes) into
/// `backend`, calling `progress(read, total)` as it goes, and returns how many
/// records it read. `base` holds the client properties (`bootstrap.servers`,
/// security). Blocking: call it off the async runtime.
///
/// # Errors
///
/// A [`StoreError`] of kind `Restore` when the changelog cannot be read (or
/// nothing arrives for two minutes before its end), or the backend's error.
pub fn restore(
    base: &ClientConfig,
    topic: &str,
    partition: i32,
    backend: &mut dyn Backend,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, StoreError> {
    let fail = |what: &str, e: KafkaError| {
        StoreError::new(
            StoreErrorKind::Restore,
            format!("restoring `{topic}` [{partition}]: {what}"),
        )
        .caused_by(e)
    };
    let mut config = base.clone();
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    config.set("group.id", format!("{topic}-restore"));
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| fail("creating the consumer", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .map_err(|e| fail("reading its watermarks", e))?;
    let start = backend.checkpoint()?.unwrap_or(low).max(low);
    if start >= high {
        return Ok(0);
    }
    let total = (high - start) as u64;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| fail("assigning", e))?;
    consumer.assign(&tpl).map_err(|e| fail("assigning", e))?;
    let mut chunk: Vec<(Bytes, Option<Bytes>)> = Vec::with_capacity(CHUNK);
    let mut restored = 0;
    let mut next = start;
    let mut last_read = Instant::now();
    progress(0, total);
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_read = Instant::now();
                next = message.offset() + 1;
                if let Some(key) = message.key() {
                    chunk.push((
                        Bytes::copy_from_slice(key),
                        message.payload().map(Bytes::copy_from_slice),
                    ));
                }
                restored += 1;
                if chunk.len() >= CHUNK {
                    backend.write(&chunk, Some(next))?;
                    chunk.clear();
                    progress(restored, total);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) if last_read.elapsed() > STALL => return Err(fail("reading", e)),
            Some(Err(e)) => tracing::debug!(%e, topic, partition, "restore: retrying"),
            None if last_read.elapsed() > STALL => {
                return Err(StoreError::new(
                    StoreErrorKind::Restore,
                    format!(
                        "restoring `{topic}` [{partition}]: nothing read for {STALL:?} before the end"
                    ),
                ));
            }
            None => {}
        }
    }
    backend.write(&chunk, Some(next))?;
    progress(restored, total);
    Ok(restored)
}
