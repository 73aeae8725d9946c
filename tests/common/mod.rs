//! Helpers shared by the integration tests.
//!
//! [`Kafka::start`] is the one switch between brokers: the embedded broker
//! (librdkafka's mock cluster, in the process) by default, the real Apache
//! Kafka cluster named by `LIGHT_KAFKA_TEST_BOOTSTRAP` when it is set
//! (`scripts/kafka test` starts one and sets it).
#![allow(dead_code, unreachable_pub)]

mod broker;
pub mod eos;
pub mod raw;

#[allow(unused_imports)]
pub use broker::{Bootstrap, Kafka, broker_ctl, embedded_only, real_only};

use std::time::{Duration, Instant};

use light_kafka::record::Record;
use light_kafka::service::consumer::ConsumerBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// Reads `topic` (all `partitions`) from the beginning with a plain rdkafka
/// consumer until `expected` records arrived or `timeout` passed.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    isolation: &str,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", uuid_like()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("reader consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            out.push(Record::from(&message.expect("consume error")));
        }
    }
    out
}

/// Like [`read_topic`], then keeps reading for `quiet` to prove nothing more arrives.
pub fn read_topic_exactly(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<Record> {
    let mut records = read_topic(
        bootstrap,
        topic,
        partitions,
        usize::MAX,
        "read_committed",
        Duration::from_secs(3),
    );
    records.sort_by_key(|r| (r.partition(), r.offset()));
    assert_eq!(records.len(), expected, "records in {topic}");
    records
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Produces `n` records to `topic`, record `i` to partition `i % partitions`
/// with key and value from `make(i)`, and waits for every delivery.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    make: impl Fn(usize) -> (String, String),
) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use light_kafka::service::producer::Producer;
    use tower::{Service, ServiceExt};

    let mut producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("linger.ms", "5")
        .build()
        .expect("producer");
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        let (key, value) = make(i);
        let record = Record::builder(topic)
            .partition((i % partitions as usize) as i32)
            .key(key)
            .value(value)
            .build();
        pending.push(producer.ready().await.expect("ready").call(record));
        while pending.len() > 10_000 {
            pending.next().await.unwrap().expect("delivery");
        }
    }
    while let Some(result) = pending.next().await {
        result.expect("delivery");
    }
}

/// The test broker (see [`Kafka::start`]) with `topic` of `partitions`
/// partitions, already holding the `n` records of [`produce`].
pub async fn seeded(
    topic: &str,
    partitions: i32,
    n: usize,
    make: impl Fn(usize) -> (String, String),
) -> Kafka {
    let kafka = Kafka::start();
    kafka.create_topic(topic, partitions).expect("topic");
    produce(kafka.bootstrap_servers(), topic, partitions, n, make).await;
    kafka
}

/// [`seeded`] on an embedded broker, for a test that injects errors.
pub async fn seeded_embedded(
    topic: &str,
    partitions: i32,
    n: usize,
    make: impl Fn(usize) -> (String, String),
) -> light_kafka::service::embedded::EmbeddedKafka {
    let kafka = embedded_only();
    kafka.create_topic(topic, partitions).expect("topic");
    produce(kafka.bootstrap_servers(), topic, partitions, n, make).await;
    kafka
}

/// A consumer of `topic` in `group` that commits every 50 ms and retries a
/// failed record after 5 ms, backing off to 50 ms.
pub fn consumer(kafka: &impl Bootstrap, group: &str, topic: &str) -> ConsumerBuilder {
    use light_kafka::service::consumer::{Backoff, Consumer, ErrorPolicy};
    Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .group_id(group)
        .topics([topic])
        .set("fetch.wait.max.ms", "10")
        .commit_interval(Duration::from_millis(50))
        .error_policy(ErrorPolicy::Retry(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        )))
}

/// The offsets `group` has committed for `topic`'s partitions (-1 when none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// The high watermarks (end offsets) of `topic`'s partitions.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Prints a result line of a fault test and, under `scripts/kafka test`,
/// appends it to the report that the script prints at the end of the run.
pub fn report(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    println!("{line}");
    if let Ok(path) = std::env::var("LIGHT_KAFKA_TEST_REPORT")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// A server on loopback that accepts every connection and never answers (the
/// kind of endpoint a missing timeout hangs on forever). It stops when the
/// returned task is aborted or the test's runtime ends.
pub async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket); // kept open, never answered
        }
    });
    (address, accepting)
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// Serves `service` with `consumer` until the offsets committed over all
/// partitions add up to `records` (or 30 s pass), then shuts it down;
/// whether they did.
pub async fn serve_until_committed<S>(
    consumer: light_kafka::service::consumer::Consumer,
    service: S,
    records: i64,
) -> bool
where
    S: tower::Service<Record> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<light_kafka::BoxError>,
{
    let handle = consumer.handle();
    let serving = tokio::spawn(consumer.serve(service));
    let done = eventually(Duration::from_secs(30), || {
        handle
            .health()
            .partitions
            .iter()
            .filter_map(|p| p.committed)
            .sum::<i64>()
            >= records
    })
    .await;
    handle.shutdown();
    serving.await.expect("serving task").expect("serve");
    done
}
