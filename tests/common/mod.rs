//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use light_kafka::record::Record;
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
