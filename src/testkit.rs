//! Unit-testing handlers and layers without a broker.
//!
//! - [`record`] and [`records`] make mock records with consumer-like defaults
//!   (partition 0, increasing offsets, a create timestamp);
//! - [`RecordingProducer`] is a producer that captures what would have been sent;
//! - [`call`] and [`call_all`] drive a service the way the runtime does
//!   (`poll_ready`, then `call`).
//!
//! ```
//! use light_kafka::testkit::{self, RecordingProducer};
//! use tower::{service_fn, Service};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A handler that forwards every record to "audit".
//! let producer = RecordingProducer::new();
//! let mut handler = {
//!     let producer = producer.clone();
//!     service_fn(move |record: light_kafka::record::Record| {
//!         let mut producer = producer.clone();
//!         async move { producer.call(record.forward_to("audit")).await.map(|_| ()) }
//!     })
//! };
//!
//! let results = testkit::call_all(&mut handler, testkit::records("orders", 3, |i| format!("#{i}"))).await;
//! assert!(results.iter().all(Result::is_ok));
//! let sent = producer.records();
//! assert_eq!(sent.len(), 3);
//! assert_eq!(sent[2].topic(), "audit");
//! assert_eq!(sent[2].value_str().unwrap(), "#2");
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tower::{Service, ServiceExt};

use crate::record::{Record, RecordBuilder, Timestamp};
use crate::service::producer::{Delivery, ProduceError, ProduceErrorKind};

/// Every record of `topic` now, read from the beginning of each partition
/// to its end with a plain consumer (no group commits), or what arrived
/// within `timeout`. Blocking: for tests and examples against a broker.
///
/// ```
/// use light_kafka::record::Record;
/// use light_kafka::service::embedded::EmbeddedKafka;
/// use light_kafka::service::producer::Producer;
/// use std::time::Duration;
/// use tower::ServiceExt;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = EmbeddedKafka::start()?;
/// kafka.create_topic("t", 2)?;
/// let producer = Producer::builder().bootstrap_servers(kafka.bootstrap_servers()).build()?;
/// producer.oneshot(Record::builder("t").value("v").build()).await?;
/// let records = light_kafka::testkit::read_topic(kafka.bootstrap_servers(), "t", Duration::from_secs(5))?;
/// assert_eq!(records.len(), 1);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// A [`KafkaError`](rdkafka::error::KafkaError) when the consumer cannot be
/// created or the topic's metadata read.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<Vec<Record>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "light-kafka-testkit-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    let (mut records, mut ends) = (Vec::new(), 0);
    while ends < partitions && std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(message)) => records.push(Record::from_message(&message)),
            Some(Err(KafkaError::PartitionEOF(_))) => ends += 1,
            _ => {}
        }
    }
    Ok(records)
}

/// A mock consumed record for `topic`: partition 0, offset 0, created now.
///
/// ```
/// let record = light_kafka::testkit::record("orders").value("{}").build();
/// assert_eq!((record.partition(), record.offset()), (Some(0), Some(0)));
/// ```
pub fn record(topic: &str) -> RecordBuilder {
    Record::builder(topic)
        .partition(0)
        .offset(0)
        .timestamp(Timestamp::now())
}

/// `n` mock records for `topic` on partition 0 with offsets `0..n`, keys
/// `"0".."n-1"` and values from `value(i)`.
///
/// ```
/// let batch = light_kafka::testkit::records("t", 2, |i| vec![i as u8]);
/// assert_eq!(batch[1].offset(), Some(1));
/// assert_eq!(batch[1].key_str(), Some("1"));
/// ```
pub fn records<V: Into<Bytes>>(
    topic: &str,
    n: usize,
    mut value: impl FnMut(usize) -> V,
) -> Vec<Record> {
    (0..n)
        .map(|i| {
            record(topic)
                .offset(i as i64)
                .key(i.to_string())
                .value(value(i))
                .build()
        })
        .collect()
}

/// Waits for `service` to be ready, then calls it with `record`, inside the
/// record's propagation context exactly as the consumer runtime does: records
/// the service produces carry the input's correlation id, token and
/// `traceparent`, as in production. (When the test already runs inside a
/// context of its own, `context::scope`, that one stays current.)
///
/// ```
/// use light_kafka::builder::ServiceBuilderExt;
/// use light_kafka::record::{names, Record};
/// use light_kafka::testkit::{self, RecordingProducer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sent = RecordingProducer::new();
/// let producer = ServiceBuilder::new().propagate_produce("shipping").service(sent.clone());
/// let mut handler = tower::service_fn(move |order: Record| {
///     let producer = producer.clone();
///     async move { producer.oneshot(Record::builder("shipments").value(order.value().cloned().unwrap()).build()).await }
/// });
/// let order = testkit::record("orders").value("o-1").header(names::CORRELATION_ID, "c-42").build();
/// testkit::call(&mut handler, order).await.unwrap();
/// assert_eq!(sent.records()[0].header_str(names::CORRELATION_ID), Some("c-42"));
/// # }
/// ```
///
/// # Errors
///
/// The service's error, from `poll_ready` or from the call.
pub async fn call<S>(service: &mut S, record: Record) -> Result<S::Response, S::Error>
where
    S: Service<Record>,
{
    let service = service.ready().await?;
    if crate::context::with_current(|current| current.is_some()) {
        // The test set a context of its own (as an HTTP handler would have
        // one): keep it.
        return service.call(record).await;
    }
    // As the consumer runtime does: the record's propagation (correlation id,
    // token, trace context) is current while the service runs, so records it
    // produces carry them.
    let propagation = crate::context::Propagation::from_headers(record.headers());
    let future = crate::context::sync_scope(propagation.clone(), || service.call(record));
    crate::context::scope(propagation, future).await
}

/// Runs `records` through `service` one after another, as the runtime does for
/// one partition, and returns every outcome in order.
pub async fn call_all<S>(
    service: &mut S,
    records: impl IntoIterator<Item = Record>,
) -> Vec<Result<S::Response, S::Error>>
where
    S: Service<Record>,
{
    let mut outcomes = Vec::new();
    for record in records {
        outcomes.push(call(service, record).await);
    }
    outcomes
}

#[derive(Default)]
struct Recorded {
    records: Vec<Record>,
    offsets: HashMap<(Arc<str>, i32), i64>,
    failure: Option<ProduceErrorKind>,
}

/// A producer double: a `Service<Record, Response = Delivery>` that keeps every
/// record it is given and reports it delivered with increasing offsets per
/// topic and partition. Clones share what was recorded.
///
/// [`RecordingProducer::fail_with`] makes it fail instead, to test failure paths.
#[derive(Clone, Default)]
pub struct RecordingProducer {
    state: Arc<Mutex<Recorded>>,
}

impl RecordingProducer {
    /// An empty recorder.
    pub fn new() -> Self {
        RecordingProducer::default()
    }

    /// Everything sent so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Everything sent so far, removing it from the recorder.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut self.lock().records)
    }

    /// How many records were sent.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    /// Makes every following call fail with `kind` (and record nothing).
    ///
    /// ```
    /// use light_kafka::service::producer::ProduceErrorKind;
    /// use light_kafka::testkit::{self, RecordingProducer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut producer = RecordingProducer::new();
    /// producer.fail_with(ProduceErrorKind::Timeout);
    /// let err = testkit::call(&mut producer, testkit::record("t").build()).await.unwrap_err();
    /// assert_eq!(err.kind(), ProduceErrorKind::Timeout);
    /// assert!(producer.is_empty());
    /// # }
    /// ```
    pub fn fail_with(&self, kind: ProduceErrorKind) {
        self.lock().failure = Some(kind);
    }

    /// Makes following calls succeed again.
    pub fn succeed(&self) {
        self.lock().failure = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for RecordingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingProducer")
            .field("records", &self.len())
            .finish()
    }
}

impl Service<Record> for RecordingProducer {
    type Response = Delivery;
    type Error = ProduceError;
    type Future = Ready<Result<Delivery, ProduceError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProduceError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, record: Record) -> Self::Future {
        let mut state = self.lock();
        if let Some(kind) = state.failure {
            return ready(Err(ProduceError::new(
                kind,
                Some(record.topic_arc().clone()),
            )));
        }
        let partition = record.partition().unwrap_or(0);
        let next = state
            .offsets
            .entry((record.topic_arc().clone(), partition))
            .or_insert(0);
        let offset = *next;
        *next += 1;
        let timestamp = match record.timestamp() {
            Timestamp::NotAvailable => Timestamp::now(),
            t => t,
        };
        let delivery = Delivery::new(record.topic_arc().clone(), partition, offset, timestamp);
        state.records.push(record);
        ready(Ok(delivery))
    }
}

/// A handler that accepts every record: `Service<Record, Response = ()>`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut sink = light_kafka::testkit::Accept;
/// assert!(light_kafka::testkit::call(&mut sink, light_kafka::testkit::record("t").build()).await.is_ok());
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Accept;

impl Service<Record> for Accept {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _record: Record) -> Self::Future {
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offsets_increase_per_topic_and_partition() {
        let mut producer = RecordingProducer::new();
        let a = call(&mut producer, Record::builder("a").build())
            .await
            .unwrap();
        let b = call(&mut producer, Record::builder("a").build())
            .await
            .unwrap();
        let c = call(&mut producer, Record::builder("a").partition(1).build())
            .await
            .unwrap();
        let d = call(&mut producer, Record::builder("b").build())
            .await
            .unwrap();
        assert_eq!(
            [a.offset(), b.offset(), c.offset(), d.offset()],
            [0, 1, 0, 0]
        );
        producer.succeed();
        assert_eq!(producer.take().len(), 4);
        assert!(producer.is_empty());
    }
}
