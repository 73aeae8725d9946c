//! End-to-end producer throughput as a ratio against raw rdkafka on the same
//! broker in the same run.
//!
//! ```text
//! cargo bench --bench produce                 # the embedded broker
//! scripts/kafka bench produce                 # a real Apache Kafka broker
//! ```
//!
//! - `produce-vs-raw`: records/s of the [`Producer`] service driven with
//!   `tower::ServiceExt::call_all` (every delivery awaited), divided by
//!   records/s of a raw rdkafka `FutureProducer` sending the same records with
//!   up to as many deliveries in flight. Both use the same librdkafka settings
//!   (idempotence, `linger.ms`, batch size). Rounds alternate; the median of
//!   the per-round ratios is reported.
//! - `produce-oneshot-vs-raw`: the same, each record sent with
//!   `producer.clone().oneshot(record)` (up to as many in flight as the raw
//!   side), the way a handler producing one record at a time uses it.
//! - `produce-chain-vs-raw`: `call_all` through the producer chain (metrics,
//!   propagate, trace) around the `Producer`.
//!
//! With `LIGHT_KAFKA_BENCH_BOOTSTRAP` set the rows are named `…-real`.

use std::time::Instant;

use futures_util::stream::{self, FuturesUnordered, StreamExt};
use light_kafka::record::Record;
use light_kafka::service::producer::Producer;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tower::ServiceExt;

#[path = "support/broker.rs"]
#[allow(dead_code)]
mod broker;
use broker::{Broker, median};

const ROUNDS: usize = 5;
const N: usize = 200_000;
const IN_FLIGHT: usize = 50_000;
const SETTINGS: [(&str, &str); 4] = [
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "100000"),
];

fn value(i: usize) -> String {
    format!("{i:016}")
}

async fn raw(kafka: &Broker, topic: &str) -> f64 {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.bootstrap_servers());
    for (key, value) in SETTINGS {
        config.set(key, value);
    }
    let producer: FutureProducer = config.create().expect("producer");
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..N {
        let key = (i % 1000).to_string();
        let payload = value(i);
        let mut record = FutureRecord::to(topic)
            .partition((i % 4) as i32)
            .key(&key)
            .payload(&payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                // librdkafka's queue is full: wait for a delivery, try again.
                Err((_, back)) => {
                    record = back;
                    let done = pending.next().await.expect("a delivery to wait for");
                    done.expect("delivery").expect("delivered");
                }
            }
        }
        while pending.len() >= IN_FLIGHT {
            pending
                .next()
                .await
                .expect("pending")
                .expect("delivery")
                .expect("delivered");
        }
    }
    while let Some(result) = pending.next().await {
        result.expect("delivery").expect("delivered");
    }
    N as f64 / start.elapsed().as_secs_f64()
}

fn producer(kafka: &Broker) -> Producer {
    let mut builder = Producer::builder().bootstrap_servers(kafka.bootstrap_servers());
    for (key, value) in SETTINGS {
        builder = builder.set(key, value);
    }
    builder.build().expect("producer")
}

fn record(topic: &str, i: usize) -> Record {
    Record::builder(topic)
        .partition((i % 4) as i32)
        .key((i % 1000).to_string())
        .value(value(i))
        .build()
}

async fn oneshot(kafka: &Broker, topic: &str) -> f64 {
    let producer = producer(kafka);
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..N {
        pending.push(producer.clone().oneshot(record(topic, i)));
        while pending.len() >= IN_FLIGHT {
            pending.next().await.expect("pending").expect("delivery");
        }
    }
    while let Some(result) = pending.next().await {
        result.expect("delivery");
    }
    N as f64 / start.elapsed().as_secs_f64()
}

async fn chain(kafka: &Broker, topic: &str) -> f64 {
    use light_kafka::builder::ServiceBuilderExt;
    let chain = tower::ServiceBuilder::new()
        .metrics_produce("bench")
        .propagate_produce("bench")
        .trace_produce()
        .service(producer(kafka));
    let topic = topic.to_owned();
    let records = stream::iter(0..N).map(move |i| record(&topic, i));
    let start = Instant::now();
    let mut responses = chain.call_all(records);
    while let Some(result) = responses.next().await {
        result.expect("delivery");
    }
    N as f64 / start.elapsed().as_secs_f64()
}

async fn service(kafka: &Broker, topic: &str) -> f64 {
    let producer = producer(kafka);
    let topic = topic.to_owned();
    let records = stream::iter(0..N).map(move |i| record(&topic, i));
    let start = Instant::now();
    let mut responses = producer.call_all(records);
    while let Some(result) = responses.next().await {
        result.expect("delivery");
    }
    N as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    broker::main(|kafka, _only| async move {
        let topic = kafka.create_topic("produce-bench", 4).await;
        let _ = light_kafka::layers::metrics::prometheus::install_recorder(
            light_kafka::layers::metrics::prometheus::UPKEEP_INTERVAL,
        );
        let mut rows: [(&str, Vec<f64>); 3] = [
            ("produce-vs-raw", Vec::new()),
            ("produce-oneshot-vs-raw", Vec::new()),
            ("produce-chain-vs-raw", Vec::new()),
        ];
        let mut raws = Vec::new();
        for round in 0..ROUNDS {
            let raw = raw(&kafka, &topic).await;
            let figures = [
                service(&kafka, &topic).await,
                oneshot(&kafka, &topic).await,
                chain(&kafka, &topic).await,
            ];
            print!("round {round}: raw {raw:.0} rec/s");
            for ((name, ratios), figure) in rows.iter_mut().zip(figures) {
                print!(", {name} {:.3}", figure / raw);
                ratios.push(figure / raw);
            }
            println!();
            raws.push(raw);
        }
        println!(
            "produce-raw-rdkafka{}: median {:.0} rec/s",
            kafka.suffix(),
            median(&mut raws)
        );
        for (name, ratios) in &mut rows {
            println!(
                "| {name}{} | {:.3} | ratio | `{}` |",
                kafka.suffix(),
                median(ratios),
                kafka.command("produce")
            );
        }
    });
}
