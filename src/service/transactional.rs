//! [`TransactionalProducer`]: all-or-nothing batches, one Kafka transaction each.
//!
//! The producer is created and its transactions initialised **once**
//! (`init_transactions`), then reused for every transaction; light-kafka's Java
//! producer rebuilt itself per transaction. One transaction runs at a time; the
//! next caller waits for the current one to end.
//!
//! A batch either commits as a whole or is aborted as a whole. After an abort a
//! `read_committed` consumer of a real cluster sees none of the batch.
//! (librdkafka's mock cluster, used by [`super::embedded::EmbeddedKafka`], does not
//! implement that isolation: it shows aborted records to every consumer.)
//!
//! ```
//! use light_kafka::record::Record;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::transactional::TransactionalProducer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("ledger", 1)?;
//!
//! let producer = TransactionalProducer::builder("ledger-writer")
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .build()
//!     .await?;
//! let batch = vec![
//!     Record::builder("ledger").key("acct-1").value("-10").build(),
//!     Record::builder("ledger").key("acct-2").value("+10").build(),
//! ];
//! let deliveries = producer.send_batch(batch).await?;
//! assert_eq!(deliveries.len(), 2);
//!
//! // Or step by step, with the choice to abort:
//! let mut tx = producer.begin().await?;
//! tx.send(Record::builder("ledger").value("oops").build()).await?;
//! tx.abort().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use tokio::sync::OwnedMutexGuard;
use tower::ServiceExt;

use super::producer::{Core, Delivery, ProduceError, Producer, ResponseFuture};
use crate::error::{ErrorKind, Kinded};
use crate::record::Record;

/// How a transaction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionErrorKind {
    /// The producer could not be created or its transactions initialised.
    Init,
    /// The transaction was aborted (and the abort succeeded); none of its
    /// records will be visible to `read_committed` consumers. The producer
    /// remains usable.
    Aborted,
    /// Another producer with the same `transactional.id` took over. This
    /// producer cannot be used any more.
    Fenced,
    /// librdkafka raised a fatal error. This producer cannot be used any more.
    Fatal,
    /// A transaction operation did not finish within the configured timeout.
    Timeout,
    /// The cluster does not support what transactions need (an API version,
    /// a feature): a configuration error, not a transient one. The
    /// producer cannot be used any more.
    Unsupported,
    /// A transaction could be neither committed nor aborted, so the producer
    /// is stuck with it: it cannot be used any more (create a new one).
    Unusable,
    /// The producer cannot reach the cluster with its configuration (a wrong
    /// password, an untrusted certificate, the wrong `security.protocol`);
    /// the [`ConnectError`](crate::service::connect::ConnectError) is the
    /// source. A configuration error.
    Connect,
}

/// A failed transaction: kind [`ErrorKind::Config`] when the cluster lacks
/// what transactions need, else [`ErrorKind::Produce`].
/// [`TransactionError::is_recoverable`] says whether the producer can go on.
#[derive(Clone, Debug)]
pub struct TransactionError {
    kind: TransactionErrorKind,
    detail: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl TransactionError {
    fn new(kind: TransactionErrorKind, detail: impl Into<String>) -> Self {
        TransactionError {
            kind,
            detail: detail.into(),
            cause: None,
        }
    }

    fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    fn from_kafka(operation: &str, error: KafkaError) -> Self {
        use super::producer::ProduceErrorKind as P;
        use rdkafka::error::RDKafkaErrorCode as C;
        // The producer's classification of the code, shared with `ProduceError`.
        let produce = ProduceError::from_kafka(&error, None).kind();
        let kind = match &error {
            _ if produce == P::Unsupported
                || error.rdkafka_error_code() == Some(C::InvalidTransactionTimeout) =>
            {
                TransactionErrorKind::Unsupported
            }
            _ if produce == P::Fenced => TransactionErrorKind::Fenced,
            KafkaError::Transaction(e) if e.is_fatal() => TransactionErrorKind::Fatal,
            _ if produce == P::Fatal => TransactionErrorKind::Fatal,
            KafkaError::Transaction(e) if e.code() == C::OperationTimedOut => {
                TransactionErrorKind::Timeout
            }
            _ => TransactionErrorKind::Aborted,
        };
        TransactionError::new(kind, format!("{operation} failed")).caused_by(error)
    }

    /// How the transaction failed.
    pub fn kind(&self) -> TransactionErrorKind {
        self.kind
    }

    /// Whether the producer can run further transactions.
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self.kind,
            TransactionErrorKind::Aborted | TransactionErrorKind::Timeout
        )
    }
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TransactionErrorKind::Init => "transactional producer initialisation failed",
            TransactionErrorKind::Aborted => "transaction aborted",
            TransactionErrorKind::Fenced => "transactional producer fenced",
            TransactionErrorKind::Fatal => "transactional producer failed fatally",
            TransactionErrorKind::Timeout => "transaction timed out",
            TransactionErrorKind::Unsupported => "transactions not supported by the cluster",
            TransactionErrorKind::Unusable => "transactional producer unusable",
            TransactionErrorKind::Connect => "cannot connect to Kafka",
        };
        write!(f, "{what}: {}", self.detail)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TransactionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for TransactionError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            TransactionErrorKind::Unsupported | TransactionErrorKind::Connect => ErrorKind::Config,
            _ => ErrorKind::Produce,
        }
    }
}

/// Configures a [`TransactionalProducer`].
#[derive(Clone)]
pub struct TransactionalProducerBuilder {
    config: ClientConfig,
    timeout: Duration,
}

impl fmt::Debug for TransactionalProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionalProducerBuilder")
            .field("config", &crate::service::client::Redacted(&self.config))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TransactionalProducerBuilder {
    /// Sets `bootstrap.servers`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// Sets any librdkafka property.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// How long a transaction operation (init, offsets, commit, abort) may
    /// block. Default: 30 seconds.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates the producer and initialises its transactions.
    ///
    /// # Errors
    ///
    /// A [`TransactionError`] of kind `Init` when librdkafka rejects the
    /// configuration or the transaction coordinator cannot be reached.
    pub async fn build(self) -> Result<TransactionalProducer, TransactionError> {
        let core = Core::create(&self.config).map_err(|e| {
            TransactionError::new(TransactionErrorKind::Init, "creating the producer").caused_by(e)
        })?;
        let timeout = self.timeout;
        let init = core.clone();
        let connect_failed = core.connect.failed_owned();
        // A connection that can never succeed ends the wait at once; the
        // blocked call ends by itself within `timeout`.
        tokio::select! {
            result = blocking(move || init.producer.init_transactions(timeout)) => {
                result.map_err(|e| match core.connect.failure() {
                    Some(failure) => TransactionError::new(TransactionErrorKind::Connect, "init_transactions failed")
                        .caused_by(failure.clone()),
                    None => TransactionError::new(TransactionErrorKind::Init, "init_transactions failed")
                        .caused_by(e),
                })?;
            }
            () = connect_failed => {
                let failure = core.connect.failure().cloned();
                let error = TransactionError::new(TransactionErrorKind::Connect, "init_transactions failed");
                return Err(match failure {
                    Some(failure) => error.caused_by(failure),
                    None => error,
                });
            }
        }
        Ok(TransactionalProducer {
            inner: Arc::new(Inner {
                core,
                lock: Arc::new(tokio::sync::Mutex::new(())),
                timeout,
                broken: Mutex::new(None),
            }),
        })
    }
}

struct Inner {
    core: Arc<Core>,
    lock: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
    /// Set once the producer is fenced or failed fatally.
    broken: Mutex<Option<TransactionError>>,
}

impl Inner {
    fn check(&self) -> Result<(), TransactionError> {
        match &*self.broken.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn record(&self, error: TransactionError) -> TransactionError {
        if !error.is_recoverable() {
            *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        }
        error
    }
}

/// A producer whose batches are Kafka transactions. Cheap to clone; clones
/// share the producer and take turns.
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct TransactionalProducer {
    inner: Arc<Inner>,
}

impl TransactionalProducer {
    /// Starts configuring a producer with `transactional.id` set to `id`.
    pub fn builder(transactional_id: impl Into<String>) -> TransactionalProducerBuilder {
        let mut config = ClientConfig::new();
        config.set("transactional.id", transactional_id);
        TransactionalProducerBuilder {
            config,
            timeout: Duration::from_secs(30),
        }
    }

    /// Begins a transaction, waiting for the previous one to end.
    ///
    /// # Errors
    ///
    /// A [`TransactionError`] when the producer is fenced or broken, or librdkafka
    /// refuses to begin.
    pub async fn begin(&self) -> Result<Transaction, TransactionError> {
        let guard = self.inner.lock.clone().lock_owned().await;
        self.inner.check()?;
        self.inner.core.producer.begin_transaction().map_err(|e| {
            self.inner
                .record(TransactionError::from_kafka("begin_transaction", e))
        })?;
        Ok(Transaction {
            inner: self.inner.clone(),
            producer: Producer::from_core(self.inner.core.clone()),
            deliveries: Vec::new(),
            delivered: Vec::new(),
            guard: Some(guard),
        })
    }

    /// A [`Producer`] over this producer's client: what it sends joins the
    /// transaction open at the time (and fails when none is). The stream
    /// processor gives it to a dead-letter layer, so that dead letters commit
    /// or abort with the batch they belong to.
    pub fn sink(&self) -> Producer {
        Producer::from_core(self.inner.core.clone())
    }

    /// Sends `records` in one transaction and returns their deliveries, in order.
    ///
    /// # Errors
    ///
    /// A [`TransactionError`]: of kind `Aborted` when any record failed (the
    /// whole batch is then rolled back), `Fenced` or `Fatal` when the producer
    /// can no longer be used.
    pub async fn send_batch(
        &self,
        records: Vec<Record>,
    ) -> Result<Vec<Delivery>, TransactionError> {
        let mut tx = self.begin().await?;
        for record in records {
            tx.send(record).await?;
        }
        tx.commit().await
    }

    /// Sends `records` and commits the consumer `offsets` of `group` in the
    /// same transaction: the exactly-once step of a consume-transform-produce loop.
    ///
    /// # Errors
    ///
    /// As [`TransactionalProducer::send_batch`].
    pub async fn send_batch_with_offsets(
        &self,
        records: Vec<Record>,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<Vec<Delivery>, TransactionError> {
        let mut tx = self.begin().await?;
        for record in records {
            tx.send(record).await?;
        }
        tx.send_offsets(offsets, group).await?;
        tx.commit().await
    }
}

impl fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("core", &self.inner.core)
            .finish_non_exhaustive()
    }
}

/// One open transaction. End it with [`Transaction::commit`] or
/// [`Transaction::abort`]; dropping it aborts it in the background.
pub struct Transaction {
    inner: Arc<Inner>,
    producer: Producer,
    deliveries: Vec<ResponseFuture>,
    delivered: Vec<Delivery>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Transaction {
    /// Enqueues `record` in the transaction, waiting for room in the local
    /// queue. Its delivery is reported by [`Transaction::commit`].
    ///
    /// # Errors
    ///
    /// When the producer has been closed; the transaction is then aborted.
    pub async fn send(&mut self, record: Record) -> Result<(), TransactionError> {
        let producer = match self.producer.ready().await {
            Ok(producer) => producer,
            Err(e) => {
                let error = TransactionError::new(TransactionErrorKind::Aborted, "producer closed")
                    .caused_by(e);
                return Err(self.abort_with(error).await);
            }
        };
        let delivery = tower_service::Service::call(producer, record);
        self.deliveries.push(delivery);
        Ok(())
    }

    /// Waits until every record sent so far is acknowledged by the broker
    /// (still uncommitted), and returns their deliveries in order.
    ///
    /// # Errors
    ///
    /// When a record was not delivered; the transaction is then aborted.
    pub async fn flush(&mut self) -> Result<Vec<Delivery>, TransactionError> {
        let mut deliveries = Vec::with_capacity(self.deliveries.len());
        for delivery in std::mem::take(&mut self.deliveries) {
            match delivery.await {
                Ok(d) => deliveries.push(d),
                Err(e) => {
                    let error = TransactionError::new(
                        TransactionErrorKind::Aborted,
                        "a record was not delivered",
                    )
                    .caused_by(e);
                    return Err(self.abort_with(error).await);
                }
            }
        }
        self.delivered.extend(deliveries.iter().cloned());
        Ok(deliveries)
    }

    /// Adds consumer offsets to the transaction, committed only if it commits.
    ///
    /// # Errors
    ///
    /// When librdkafka refuses the offsets; the transaction is then aborted.
    pub async fn send_offsets(
        &mut self,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<(), TransactionError> {
        let core = self.inner.core.clone();
        let timeout = self.inner.timeout;
        let result = blocking(move || {
            core.producer
                .send_offsets_to_transaction(&offsets, &group, timeout)
        })
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = TransactionError::from_kafka("send_offsets_to_transaction", e);
                Err(self.abort_with(error).await)
            }
        }
    }

    /// Waits for every record to be acknowledged, then commits.
    ///
    /// # Errors
    ///
    /// A [`TransactionError`] of kind `Aborted` when a record failed or the
    /// commit needed an abort (the transaction is then rolled back); `Fenced` or
    /// `Fatal` when the producer can no longer be used.
    pub async fn commit(mut self) -> Result<Vec<Delivery>, TransactionError> {
        self.flush().await?;
        let deliveries = std::mem::take(&mut self.delivered);
        let core = self.inner.core.clone();
        let timeout = self.inner.timeout;
        let mut attempts = 0;
        loop {
            let commit = core.clone();
            match blocking(move || commit.producer.commit_transaction(timeout)).await {
                Ok(()) => {
                    self.guard.take();
                    return Ok(deliveries);
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 3 => {
                    attempts += 1
                }
                Err(e) => {
                    let error = TransactionError::from_kafka("commit_transaction", e);
                    if matches!(
                        error.kind,
                        TransactionErrorKind::Fenced | TransactionErrorKind::Fatal
                    ) {
                        // Nothing more this producer can do, not even abort.
                        self.guard.take();
                        return Err(self.inner.record(error));
                    }
                    // The commit failed for good: abort, so that the next
                    // transaction can begin (or say that none can).
                    let error = match error.kind {
                        TransactionErrorKind::Unsupported => error,
                        _ => TransactionError {
                            kind: TransactionErrorKind::Aborted,
                            ..error
                        },
                    };
                    return Err(self.abort_with(error).await);
                }
            }
        }
    }

    /// Aborts the transaction: none of its records become visible to
    /// `read_committed` consumers.
    ///
    /// # Errors
    ///
    /// A [`TransactionError`] when the abort itself fails: the producer is
    /// then unusable (kind `Unusable`, `Unsupported`, `Fenced` or `Fatal`),
    /// and says so in every later call.
    pub async fn abort(mut self) -> Result<(), TransactionError> {
        self.deliveries.clear();
        let result = self.abort_now().await;
        self.guard.take();
        result.map_err(|e| self.inner.record(e))
    }

    /// Aborts after `error`, and returns `error`, or, when the abort fails
    /// too, the error that makes the producer unusable.
    async fn abort_with(&mut self, error: TransactionError) -> TransactionError {
        self.deliveries.clear();
        let result = self.abort_now().await;
        self.guard.take();
        match result {
            Ok(()) => self.inner.record(error),
            Err(abort) => {
                tracing::error!(%error, %abort, "a failed transaction could not be aborted");
                self.inner.record(abort)
            }
        }
    }

    /// `abort_transaction`, retried while librdkafka says it may be; a
    /// failure is never recoverable (the transaction stays open).
    async fn abort_now(&self) -> Result<(), TransactionError> {
        let core = self.inner.core.clone();
        let timeout = self.inner.timeout;
        let mut attempts = 0;
        loop {
            let abort = core.clone();
            match blocking(move || abort.producer.abort_transaction(timeout)).await {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 3 => {
                    attempts += 1
                }
                Err(e) => {
                    let error = TransactionError::from_kafka("abort_transaction", e);
                    return Err(if error.is_recoverable() {
                        TransactionError {
                            kind: TransactionErrorKind::Unusable,
                            ..error
                        }
                    } else {
                        error
                    });
                }
            }
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        // Still open: abort it without blocking the caller, holding the turn
        // until the abort is done.
        let core = self.inner.core.clone();
        let timeout = self.inner.timeout;
        let abort = move || {
            if let Err(error) = core.producer.abort_transaction(timeout) {
                tracing::error!(%error, "aborting a dropped transaction failed");
            }
            drop(guard);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(abort);
            }
            Err(_) => abort(),
        }
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("records", &(self.deliveries.len() + self.delivered.len()))
            .field("open", &self.guard.is_some())
            .finish()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send() {
        fn assert_send<T: Send>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TransactionalProducer>();
        assert_send::<Transaction>();
        assert_send_sync::<TransactionError>();
    }

    #[tokio::test]
    async fn unreachable_coordinator_is_an_init_error() {
        let err = TransactionalProducer::builder("t")
            .bootstrap_servers("127.0.0.1:1")
            .operation_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), TransactionErrorKind::Init);
    }
}
