//! Quickstart: produce a few records to the embedded broker through the
//! `Producer` service, read them back, and print them.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Nothing needs to be installed: the Kafka cluster runs inside this process.
//! Point `bootstrap.servers` at a real cluster and the same code runs there.

use std::time::{Duration, Instant};

use light_kafka::record::{Record, names};
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::service::producer::Producer;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tower::{Service, ServiceExt};

#[derive(Serialize)]
struct Order {
    id: u32,
    item: &'static str,
    quantity: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic("orders", 1)?;
    println!("embedded Kafka listening on {}", kafka.bootstrap_servers());

    let mut producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()?;

    let orders = [
        Order {
            id: 1,
            item: "coffee",
            quantity: 2,
        },
        Order {
            id: 2,
            item: "tea",
            quantity: 1,
        },
        Order {
            id: 3,
            item: "cake",
            quantity: 4,
        },
    ];
    for order in &orders {
        let record = Record::builder("orders")
            .key(format!("order-{}", order.id))
            .json(order)?
            .header(names::CORRELATION_ID, format!("quickstart-{}", order.id))
            .build();
        let delivery = producer.ready().await?.call(record).await?;
        println!(
            "produced order {} to {}[{}] at offset {}",
            order.id,
            delivery.topic(),
            delivery.partition(),
            delivery.offset()
        );
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "quickstart")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("orders", 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = 0;
    while read < orders.len() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let record = Record::from(&message?);
        println!(
            "consumed {}[{}]@{} key={} correlation={} value={}",
            record.topic(),
            record.partition().unwrap_or_default(),
            record.offset().unwrap_or_default(),
            record.key_str().unwrap_or("-"),
            record.header_str(names::CORRELATION_ID).unwrap_or("-"),
            record.value_str()?,
        );
        read += 1;
    }
    if read != orders.len() {
        return Err(format!("read {read} of {} records back", orders.len()).into());
    }
    println!("done: {read} records round-tripped");
    Ok(())
}
