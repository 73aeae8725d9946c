//! [`BatchingProducer`]: light-kafka's queued producer, done properly.
//!
//! Callers produce one record at a time through a `tower::Service`; a worker
//! task gathers up to `max_records` records, or whatever arrived within
//! `max_wait` of the first one, sends them in **one transaction**, and answers
//! each caller with its own [`Delivery`] (or with the reason the batch was
//! aborted). The queue in front of the worker is bounded by `max_records`, so
//! `poll_ready` applies backpressure instead of buffering without limit.
//!
//! ```
//! use std::time::Duration;
//! use light_kafka::record::Record;
//! use light_kafka::service::batching::BatchingProducer;
//! use light_kafka::service::embedded::EmbeddedKafka;
//! use light_kafka::service::transactional::TransactionalProducer;
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = EmbeddedKafka::start()?;
//! kafka.create_topic("events", 1)?;
//! let producer = TransactionalProducer::builder("events-writer")
//!     .bootstrap_servers(kafka.bootstrap_servers())
//!     .build()
//!     .await?;
//!
//! let mut batcher = BatchingProducer::new(producer, 100, Duration::from_millis(20));
//! let a = batcher.ready().await?.call(Record::builder("events").value("a").build());
//! let b = batcher.ready().await?.call(Record::builder("events").value("b").build());
//! let (a, b) = (a.await?, b.await?);
//! assert_eq!((a.offset(), b.offset()), (0, 1));
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;
use tower_service::Service;

use super::producer::Delivery;
use super::transactional::{TransactionError, TransactionalProducer};
use crate::error::{ErrorKind, Kinded};
use crate::record::Record;

type Reply = oneshot::Sender<Result<Delivery, BatchError>>;

/// A record that was not produced because its batch failed, or because the
/// batching worker has stopped: kind [`ErrorKind::Produce`].
#[derive(Clone, Debug)]
pub struct BatchError {
    cause: Option<TransactionError>,
}

impl BatchError {
    /// The transaction failure that took the batch down, if that is what happened.
    pub fn transaction_error(&self) -> Option<&TransactionError> {
        self.cause.as_ref()
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "batch not committed: {cause}"),
            None => f.write_str("the batching producer has stopped"),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for BatchError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Produce
    }
}

/// A `Service<Record, Response = Delivery>` that sends records in transactional
/// batches. Clones share the worker.
pub struct BatchingProducer {
    queue: PollSender<(Record, Reply)>,
}

impl BatchingProducer {
    /// Starts the batching worker on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime, or with `max_records == 0`.
    pub fn new(producer: TransactionalProducer, max_records: usize, max_wait: Duration) -> Self {
        assert!(max_records > 0, "a batch holds at least one record");
        let (tx, rx) = mpsc::channel(max_records);
        tokio::spawn(run(producer, rx, max_records, max_wait));
        BatchingProducer {
            queue: PollSender::new(tx),
        }
    }
}

impl Clone for BatchingProducer {
    fn clone(&self) -> Self {
        BatchingProducer {
            queue: self.queue.clone(),
        }
    }
}

impl fmt::Debug for BatchingProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchingProducer").finish_non_exhaustive()
    }
}

impl Service<Record> for BatchingProducer {
    type Response = Delivery;
    type Error = BatchError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BatchError>> {
        self.queue
            .poll_reserve(cx)
            .map_err(|_| BatchError { cause: None })
    }

    fn call(&mut self, record: Record) -> ResponseFuture {
        let (reply, rx) = oneshot::channel();
        // Without a reservation the send fails and the reply is dropped, which
        // the future reports as a stopped producer rather than a panic.
        let _ = self.queue.send_item((record, reply));
        ResponseFuture { rx }
    }
}

/// Response future of [`BatchingProducer`].
#[derive(Debug)]
pub struct ResponseFuture {
    rx: oneshot::Receiver<Result<Delivery, BatchError>>,
}

impl Future for ResponseFuture {
    type Output = Result<Delivery, BatchError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.rx).poll(cx)) {
            Ok(outcome) => outcome,
            Err(_) => Err(BatchError { cause: None }),
        })
    }
}

async fn run(
    producer: TransactionalProducer,
    mut rx: mpsc::Receiver<(Record, Reply)>,
    max_records: usize,
    max_wait: Duration,
) {
    let mut records = Vec::with_capacity(max_records);
    let mut replies = Vec::with_capacity(max_records);
    while let Some((record, reply)) = rx.recv().await {
        records.push(record);
        replies.push(reply);
        let deadline = tokio::time::Instant::now() + max_wait;
        while records.len() < max_records {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((record, reply))) => {
                    records.push(record);
                    replies.push(reply);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let outcome = producer.send_batch(std::mem::take(&mut records)).await;
        match outcome {
            Ok(deliveries) => {
                for (reply, delivery) in replies.drain(..).zip(deliveries) {
                    let _ = reply.send(Ok(delivery));
                }
            }
            Err(error) => {
                let error = BatchError { cause: Some(error) };
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<BatchingProducer>();
        check::<ResponseFuture>();
        check::<BatchError>();
    }
}
