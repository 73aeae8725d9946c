//! The delivery machinery shared by [`super::Producer`] and the transactional producer.
//!
//! Every enqueued record carries a boxed [`Pending`] to librdkafka's delivery
//! callback: the sender half of its result channel and the permit that reserved
//! its place in the local queue. Dropping the permit in the callback is what wakes
//! a `poll_ready` waiting for room.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{Producer as _, ProducerContext, PurgeConfig, ThreadedProducer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Delivery, ProduceError};
use crate::record::Record;
use crate::service::client::{BuildError, log_to_tracing};
use crate::service::connect::ConnectWatch;

/// librdkafka's default for `queue.buffering.max.messages`.
const DEFAULT_QUEUE_MESSAGES: usize = 100_000;

pub(crate) type DeliveryReceiver = oneshot::Receiver<Result<Delivery, ProduceError>>;

/// What travels with a record through librdkafka to the delivery callback.
#[derive(Debug)]
pub(crate) struct Pending {
    tx: oneshot::Sender<Result<Delivery, ProduceError>>,
    _permit: OwnedSemaphorePermit,
    topic: Arc<str>,
}

impl Pending {
    pub(crate) fn new(
        permit: OwnedSemaphorePermit,
        topic: Arc<str>,
    ) -> (Box<Self>, DeliveryReceiver) {
        let (tx, rx) = oneshot::channel();
        (
            Box::new(Pending {
                tx,
                _permit: permit,
                topic,
            }),
            rx,
        )
    }
}

/// Routes delivery reports to their callers, librdkafka's logs to `tracing`,
/// and connection failures that cannot mend to the [`ConnectWatch`].
#[derive(Debug, Default)]
pub(crate) struct DeliveryContext {
    pub(crate) connect: Arc<ConnectWatch>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.connect.report_log(fac, log_message);
        log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.connect.report(&error, reason).is_some() {
            return;
        }
        tracing::warn!(target: "librdkafka", %error, reason, "producer client error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let Pending { tx, _permit, topic } = *pending;
        let failure = self.connect.failure();
        let outcome = match (result, failure) {
            (Ok(message), _) => {
                self.connect.reached();
                Ok(Delivery::new(
                    topic,
                    message.partition(),
                    message.offset(),
                    message.timestamp().into(),
                ))
            }
            // Purged because the producer cannot connect: say why.
            (Err(_), Some(failure)) => Err(ProduceError::connect(failure.clone(), Some(topic))),
            (Err((error, _)), None) => Err(ProduceError::from_kafka(error, Some(topic))),
        };
        // Room in the queue is released before the caller hears of it.
        drop(_permit);
        // The caller may have stopped waiting; the outcome is then dropped.
        let _ = tx.send(outcome);
    }
}

/// An rdkafka producer plus the semaphore that mirrors its local queue.
pub(crate) struct Core {
    pub(crate) producer: ThreadedProducer<DeliveryContext>,
    pub(crate) room: Arc<Semaphore>,
    pub(crate) capacity: usize,
    pub(crate) connect: Arc<ConnectWatch>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("capacity", &self.capacity)
            .field("available", &self.room.available_permits())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Creates the producer. Idempotence is on unless the config says otherwise;
    /// `queue.buffering.max.messages` becomes the semaphore's size and librdkafka
    /// gets twice that, so that a full queue is seen by `poll_ready` first.
    ///
    /// When a connection fails for good (see [`ConnectWatch`]), everything
    /// queued is purged, so its callers hear of the failure at once instead of
    /// after `message.timeout.ms`.
    pub(crate) fn create(config: &ClientConfig) -> Result<Arc<Core>, BuildError> {
        let mut config = config.clone();
        if config.get("enable.idempotence").is_none() {
            config.set("enable.idempotence", "true");
        }
        let capacity = match config.get("queue.buffering.max.messages") {
            None => DEFAULT_QUEUE_MESSAGES,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    BuildError::new(format!(
                        "queue.buffering.max.messages must be a positive integer, not {v:?}"
                    ))
                })?,
        };
        let librdkafka_limit = capacity.saturating_mul(2).min(i32::MAX as usize);
        config.set("queue.buffering.max.messages", librdkafka_limit.to_string());
        config
            .create_native_config()
            .map_err(|e| BuildError::kafka("invalid producer configuration", e))?;
        super::super::client::check_bootstrap(&config)?;
        crate::service::client::raise_log_level(&mut config);
        let connect = ConnectWatch::new();
        let producer = config
            .create_with_context(DeliveryContext {
                connect: connect.clone(),
            })
            .map_err(|e| BuildError::kafka("cannot create the Kafka producer", e))?;
        let core = Arc::new(Core {
            producer,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            connect: connect.clone(),
        });
        let weak = Arc::downgrade(&core);
        connect.on_failure(move || {
            // Not on librdkafka's thread, which runs this hook: purging waits
            // for it, and the last handle may be dropped here.
            let purge = move || {
                if let Some(core) = weak.upgrade() {
                    core.producer
                        .purge(PurgeConfig::default().queue().inflight());
                }
            };
            if let Err(error) = std::thread::Builder::new()
                .name("light-kafka-purge".into())
                .spawn(purge)
            {
                tracing::error!(%error, "cannot start the thread that purges the producer");
            }
        });
        Ok(core)
    }

    /// The failure that keeps this producer from the cluster, if any.
    pub(crate) fn connect_failure(&self, topic: Option<Arc<str>>) -> Option<ProduceError> {
        self.connect
            .failure()
            .map(|failure| ProduceError::connect(failure.clone(), topic))
    }

    /// Hands a record to librdkafka. On failure the pending box comes back, so a
    /// full queue can be retried without losing the caller's channel.
    #[allow(clippy::result_large_err)]
    pub(crate) fn enqueue(
        &self,
        record: &Record,
        pending: Box<Pending>,
    ) -> Result<(), (KafkaError, Box<Pending>)> {
        self.producer
            .send(record.to_base_record(pending))
            .map_err(|(error, base)| (error, base.delivery_opaque))
    }

    /// Records handed to librdkafka and not yet reported delivered or failed.
    pub(crate) fn in_flight(&self) -> usize {
        self.capacity - self.room.available_permits()
    }

    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

pub(crate) fn is_queue_full(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}
