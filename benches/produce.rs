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
mod broker;
use broker::Broker;

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

async fn service(kafka: &Broker, topic: &str) -> f64 {
    let mut builder = Producer::builder().bootstrap_servers(kafka.bootstrap_servers());
    for (key, value) in SETTINGS {
        builder = builder.set(key, value);
    }
    let producer = builder.build().expect("producer");
    let topic = topic.to_owned();
    let records = stream::iter(0..N).map(move |i| {
        Record::builder(topic.as_str())
            .partition((i % 4) as i32)
            .key((i % 1000).to_string())
            .value(value(i))
            .build()
    });
    let start = Instant::now();
    let mut responses = producer.call_all(records);
    while let Some(result) = responses.next().await {
        result.expect("delivery");
    }
    N as f64 / start.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let kafka = Broker::start();
        let topic = kafka.create_topic("produce-bench", 4).await;
        let (mut raws, mut services, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let raw = raw(&kafka, &topic).await;
            let svc = service(&kafka, &topic).await;
            println!(
                "round {round}: raw {raw:.0} rec/s, service {svc:.0} rec/s, ratio {:.3}",
                svc / raw
            );
            raws.push(raw);
            services.push(svc);
            ratios.push(svc / raw);
        }
        println!(
            "produce-raw-rdkafka{0}: median {1:.0} rec/s; produce-service{0}: median {2:.0} rec/s",
            kafka.suffix(),
            median(&mut raws),
            median(&mut services)
        );
        println!(
            "| produce-vs-raw{} | {:.3} | ratio | `{}` |",
            kafka.suffix(),
            median(&mut ratios),
            kafka.command("produce")
        );
    });
}
