//! [`Producer`]: producing records as a `tower::Service<Record>`.
//!
//! The producer answers each record with a [`Delivery`] (topic, partition,
//! offset, timestamp) once the broker has acknowledged it. Idempotence is on by
//! default, so retries inside librdkafka never duplicate or reorder a partition.
//!
//! # Backpressure
//!
//! `poll_ready` reserves a place in librdkafka's local queue. When the queue
//! holds `queue.buffering.max.messages` records that are not yet acknowledged,
//! `poll_ready` returns `Pending` and wakes when a delivery report frees a place;
//! the record is delayed, never failed. (librdkafka itself is given twice that
//! limit, so its own "queue full" error is only reached through
//! `queue.buffering.max.kbytes`; the response future then waits and tries again.)
//!
//! # Errors
//!
//! Failures are [`ProduceError`]s with a [`ProduceErrorKind`]: message too large,
//! unknown topic or partition, delivery timeout, fenced, authorization, purged...
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::producer::Producer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("orders", 1)?;
//!
//! let producer = Producer::builder()
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .build()?;
//! let delivery = producer
//!     .oneshot(Record::builder("orders").key("k").value("v").build())
//!     .await?;
//! assert_eq!((delivery.topic(), delivery.partition(), delivery.offset()), ("orders", 0, 0));
//! # Ok(()) }
//! ```

mod core;
mod error;
mod future;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSemaphore;
use tower_service::Service;

pub(crate) use self::core::{Core, Pending};
pub use error::{ProduceError, ProduceErrorKind};
pub use future::ResponseFuture;

use crate::record::{Record, Timestamp};
use crate::service::client::BuildError;

/// Where and when a record was stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delivery {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
}

impl Delivery {
    /// A delivery report (for test doubles; the producer makes its own).
    pub fn new(topic: Arc<str>, partition: i32, offset: i64, timestamp: Timestamp) -> Self {
        Delivery {
            topic,
            partition,
            offset,
            timestamp,
        }
    }

    /// The topic the record was stored in.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition the record was stored in.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset in that partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp as stored.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
}

/// Configures a [`Producer`].
///
/// Every librdkafka producer property can be [`set`](ProducerBuilder::set);
/// the defaults differ from librdkafka's in one place: `enable.idempotence` is
/// `true` unless set.
#[derive(Clone, Default)]
pub struct ProducerBuilder {
    config: ClientConfig,
}

impl fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("config", &crate::service::client::Redacted(&self.config))
            .finish()
    }
}

impl ProducerBuilder {
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// Sets any librdkafka property.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// The librdkafka configuration so far.
    pub fn client_config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates the producer.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when librdkafka rejects a property.
    pub fn build(self) -> Result<Producer, BuildError> {
        Producer::from_config(&self.config)
    }
}

/// A Kafka producer as a `tower::Service<Record, Response = Delivery>`.
///
/// Clones share one librdkafka producer and its queue. See the
/// [module documentation](self) for backpressure and errors.
pub struct Producer {
    core: Arc<Core>,
    room: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
}

impl Producer {
    /// Starts configuring a producer.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Creates a producer from an rdkafka configuration (idempotence on unless set).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when librdkafka rejects a property.
    pub fn from_config(config: &ClientConfig) -> Result<Producer, BuildError> {
        Ok(Producer::from_core(Core::create(config)?))
    }

    pub(crate) fn from_core(core: Arc<Core>) -> Producer {
        Producer {
            room: PollSemaphore::new(core.room.clone()),
            core,
            permit: None,
        }
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> usize {
        self.core.in_flight()
    }

    /// The size of the local queue, `queue.buffering.max.messages`.
    pub fn capacity(&self) -> usize {
        self.core.capacity
    }

    /// Waits until every queued record is acknowledged or failed, up to `timeout`.
    ///
    /// # Errors
    ///
    /// A [`ProduceError`] of kind `Timeout` when records are still queued at the end.
    pub async fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.flush(timeout))
            .await
            .map_err(|_| ProduceError::new(ProduceErrorKind::Closed, None))?
            .map_err(|e| ProduceError::from_kafka(&e, None))
    }
}

impl Clone for Producer {
    fn clone(&self) -> Self {
        // A reserved place belongs to the original, not to the clone.
        Producer::from_core(self.core.clone())
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.core.capacity)
            .field("in_flight", &self.core.in_flight())
            .field("ready", &self.permit.is_some())
            .finish()
    }
}

impl Service<Record> for Producer {
    type Response = Delivery;
    type Error = ProduceError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProduceError>> {
        if let Some(error) = self.core.connect_failure(None) {
            return Poll::Ready(Err(error));
        }
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.room.poll_acquire(cx) {
            Poll::Ready(Some(permit)) => {
                self.permit = Some(permit);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(None) => {
                Poll::Ready(Err(ProduceError::new(ProduceErrorKind::Closed, None)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, record: Record) -> ResponseFuture {
        if let Some(error) = self.core.connect_failure(Some(record.topic_arc().clone())) {
            return ResponseFuture::failed(error);
        }
        let permit = match self.permit.take() {
            Some(permit) => permit,
            None => match self.core.room.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    return ResponseFuture::failed(ProduceError::new(
                        ProduceErrorKind::NotReady,
                        Some(record.topic_arc().clone()),
                    ));
                }
            },
        };
        let (pending, rx) = Pending::new(permit, record.topic_arc().clone());
        ResponseFuture::send(self.core.clone(), record, pending, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn producer_and_future_are_send() {
        assert_send_sync::<Producer>();
        assert_send::<ResponseFuture>();
        assert_send_sync::<Delivery>();
    }

    #[test]
    fn bad_queue_size_is_a_config_error() {
        let err = Producer::builder()
            .set("queue.buffering.max.messages", "lots")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("queue.buffering.max.messages"));
    }
}
