//! The consumer's health, readable from anywhere through a [`ConsumerHandle`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// One assigned partition, as last published by the runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The last offset committed for the group (the next record to read), if any.
    pub committed: Option<i64>,
    /// Records between the committed offset and the partition's high watermark,
    /// when librdkafka has reported the watermark.
    pub lag: Option<i64>,
    /// Records of this partition the service is working on.
    pub in_flight: usize,
    /// Records of this partition received and not yet committable.
    pub buffered: usize,
    /// Whether fetching is paused (backpressure, a retry, or a revocation).
    pub paused: bool,
    /// A record of this partition that keeps failing: the partition cannot
    /// commit past it until it settles.
    pub stalled: Option<Stalled>,
}

/// A record that has failed and is being tried again, holding its partition's
/// commits back (see [`PartitionHealth::stalled`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stalled {
    /// The record's offset.
    pub offset: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub reason: String,
}

/// A snapshot of the consumer's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether `serve` is running.
    pub running: bool,
    /// Assigned partitions, sorted by topic and partition.
    pub partitions: Vec<PartitionHealth>,
    /// Records the service is working on.
    pub in_flight: usize,
    /// Records received and not yet committable (waiting, in flight, or
    /// settled behind an unsettled one).
    pub buffered: usize,
    /// The highest `buffered` seen since the runtime started.
    pub peak_buffered: usize,
    /// Records settled by the service.
    pub processed: u64,
    /// Times a full partition's fetching was paused because it stayed full
    /// for 20 ms. Each pause makes librdkafka discard what it prefetched for
    /// the partition and fetch it again; a count that keeps rising while
    /// records flow means the handler takes longer than the window lasts:
    /// raise `max.poll.records`.
    pub backpressure_pauses: u64,
    /// Failed attempts (errors and panics) that were retried or stopped the consumer.
    pub failures: u64,
    /// The last error seen (a failed attempt, a commit or a client error).
    pub last_error: Option<String>,
    /// Why the consumer cannot reach the cluster at all (a wrong password, an
    /// untrusted certificate, the wrong `security.protocol`); `serve` returns
    /// it as [`ConsumerError::Connect`](super::ConsumerError::Connect).
    pub connect_error: Option<crate::service::connect::ConnectError>,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) running: AtomicBool,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) buffered: AtomicUsize,
    pub(crate) peak_buffered: AtomicUsize,
    pub(crate) processed: AtomicU64,
    pub(crate) backpressure_pauses: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) partitions: Mutex<BTreeMap<(String, i32), PartitionHealth>>,
    /// High watermarks reported by librdkafka's statistics.
    pub(crate) high_watermarks: Mutex<BTreeMap<(String, i32), i64>>,
    pub(crate) shutdown: CancellationToken,
    /// Client errors and librdkafka warnings, logged once per change of state.
    pub(crate) throttle: crate::service::client::LogThrottle,
    /// Connection failures that cannot mend (credentials, certificates).
    pub(crate) connect: Arc<crate::service::connect::ConnectWatch>,
}

impl Shared {
    pub(crate) fn set_error(&self, error: impl std::fmt::Display) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    pub(crate) fn set_buffered(&self, buffered: usize) {
        self.buffered.store(buffered, Relaxed);
        self.peak_buffered.fetch_max(buffered, Relaxed);
    }

    /// Publishes the partitions' health, and their lag as the
    /// `messaging.kafka.consumer.lag` gauge.
    pub(crate) fn publish_partitions(
        &self,
        group: &str,
        partitions: impl IntoIterator<Item = PartitionHealth>,
    ) {
        let watermarks = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut map = BTreeMap::new();
        for mut p in partitions {
            let key = (p.topic.clone(), p.partition);
            if let (Some(high), Some(committed)) = (watermarks.get(&key), p.committed) {
                let lag = (high - committed).max(0);
                p.lag = Some(lag);
                metrics::gauge!(
                    crate::layers::metrics::CONSUMER_LAG,
                    "messaging.system" => "kafka",
                    "messaging.destination.name" => p.topic.clone(),
                    "messaging.destination.partition.id" => p.partition.to_string(),
                    "messaging.consumer.group.name" => group.to_owned(),
                )
                .set(lag as f64);
            }
            map.insert(key, p);
        }
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

/// A cloneable handle on a running (or finished) consumer: health and shutdown.
///
/// ```
/// use light_kafka::service::consumer::Consumer;
///
/// let consumer = Consumer::builder()
///     .bootstrap_servers("127.0.0.1:9092")
///     .group_id("billing")
///     .topics(["orders"])
///     .build()?;
/// let handle = consumer.handle();
/// assert!(!handle.health().running);
/// handle.shutdown(); // a later `serve` returns at once
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ConsumerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ConsumerHandle {
    /// A snapshot of the consumer's health.
    pub fn health(&self) -> Health {
        let s = &self.shared;
        Health {
            running: s.running.load(Relaxed),
            partitions: s
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect(),
            in_flight: s.in_flight.load(Relaxed),
            buffered: s.buffered.load(Relaxed),
            peak_buffered: s.peak_buffered.load(Relaxed),
            processed: s.processed.load(Relaxed),
            backpressure_pauses: s.backpressure_pauses.load(Relaxed),
            failures: s.failures.load(Relaxed),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            connect_error: s.connect.failure().cloned(),
        }
    }

    /// Whether `serve` is running.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Relaxed)
    }

    /// Asks the consumer to stop gracefully: in-flight records finish (within
    /// the shutdown timeout), settled offsets are committed, the group is left.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
