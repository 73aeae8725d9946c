//! End-to-end consumer throughput, measured as ratios within one run on one
//! broker, so that the machine's noise cancels out.
//!
//! ```text
//! cargo bench --bench consume                 # the embedded broker
//! scripts/kafka bench                         # also on a real Apache Kafka broker
//! ```
//!
//! With `LIGHT_KAFKA_BENCH_BOOTSTRAP` set, the same measurements run against
//! that cluster and the rows are named `…-real`.
//!
//! - `consume-runtime-vs-raw`: records/s of the light-kafka runtime with an
//!   empty handler, divided by records/s of a plain rdkafka `StreamConsumer`
//!   loop reading the same topic. Rounds alternate; the median ratio is reported.
//! - `key-ordered-speedup`: one partition, 100 keys, a 2 ms handler; records/s
//!   in key-ordered mode divided by records/s in partition-ordered mode.
//!
//! Timing starts at the first record of a round, so the group join (the mock
//! cluster delays a group's first join by 3 s) is not measured. Both sides run
//! with the runtime's librdkafka defaults ([`RUNTIME_DEFAULTS`]): with
//! librdkafka's own `fetch.queue.backoff.ms` of 1 s, a consumer whose local
//! queue fills up idles for a second, and that stall, not the code under
//! test, would decide the figure.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use light_kafka::record::Record;
use light_kafka::service::consumer::{Consumer, Ordering, RUNTIME_DEFAULTS};
use light_kafka::service::producer::Producer;
use rdkafka::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use tower::{Service, ServiceExt, service_fn};

#[path = "support/broker.rs"]
mod broker;
use broker::Broker;

const ROUNDS: usize = 5;

async fn produce(kafka: &Broker, topic: &str, partitions: i32, n: usize, keys: usize) {
    let mut producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .build()
        .expect("producer");
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for i in 0..n {
        let record = Record::builder(topic)
            .partition((i % partitions as usize) as i32)
            .key(format!("key-{}", i % keys))
            .value(format!("{i:016}"))
            .build();
        pending.push(producer.ready().await.expect("ready").call(record));
        while pending.len() > 50_000 {
            pending.next().await.expect("pending").expect("delivery");
        }
    }
    while let Some(result) = pending.next().await {
        result.expect("delivery");
    }
}

fn client_config(kafka: &Broker, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    // Both sides run with the runtime's librdkafka defaults (a shorter fetch
    // queue back-off and fetch wait than librdkafka's own).
    for (key, value) in RUNTIME_DEFAULTS {
        config.set(key, value);
    }
    config
}

/// Records per second of a bare `StreamConsumer` loop.
async fn raw(kafka: &Broker, topic: &str, n: usize, round: usize) -> f64 {
    let consumer: StreamConsumer = client_config(kafka, &format!("raw-{round}"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let first = stream.next().await.expect("stream").expect("message");
    std::hint::black_box(first.payload());
    drop(first);
    let start = Instant::now();
    for _ in 1..n {
        let message = stream.next().await.expect("stream").expect("message");
        std::hint::black_box(message.payload());
    }
    (n - 1) as f64 / start.elapsed().as_secs_f64()
}

/// Records per second of the runtime with `handler_delay` per record.
async fn runtime(
    kafka: &Broker,
    topic: &str,
    n: usize,
    group: String,
    ordering: Ordering,
    handler_delay: Duration,
) -> f64 {
    let consumer = Consumer::builder()
        .properties(
            client_config(kafka, &group)
                .config_map()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .topics([topic])
        .ordering(ordering)
        .build()
        .expect("consumer");
    let handle = consumer.handle();
    let seen = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new((None::<Instant>, None::<Instant>)));
    let handler = {
        let (seen, times, handle) = (seen.clone(), times.clone(), handle.clone());
        service_fn(move |record: Record| {
            std::hint::black_box(record.value());
            let count = seen.fetch_add(1, AtomicOrdering::Relaxed) + 1;
            if count == 1 {
                times.lock().unwrap().0 = Some(Instant::now());
            }
            if count == n {
                times.lock().unwrap().1 = Some(Instant::now());
                handle.shutdown();
            }
            async move {
                if !handler_delay.is_zero() {
                    tokio::time::sleep(handler_delay).await;
                }
                Ok::<_, light_kafka::BoxError>(())
            }
        })
    };
    consumer.serve(handler).await.expect("serve");
    let (first, last) = *times.lock().unwrap();
    (n - 1) as f64 / (last.expect("last") - first.expect("first")).as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

async fn consume_runtime_vs_raw() {
    const N: usize = 400_000;
    let kafka = Broker::start();
    let topic = &kafka.create_topic("bench", 4).await;
    produce(&kafka, topic, 4, N, 1_000).await;

    let (mut raws, mut runtimes, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let raw = raw(&kafka, topic, N, round).await;
        let rt = runtime(
            &kafka,
            topic,
            N,
            format!("runtime-{round}"),
            Ordering::Partition,
            Duration::ZERO,
        )
        .await;
        println!(
            "round {round}: raw {raw:.0} rec/s, runtime {rt:.0} rec/s, ratio {:.3}",
            rt / raw
        );
        raws.push(raw);
        runtimes.push(rt);
        ratios.push(rt / raw);
    }
    println!(
        "consume-raw-rdkafka{0}: median {1:.0} rec/s; consume-runtime{0}: median {2:.0} rec/s",
        kafka.suffix(),
        median(&mut raws),
        median(&mut runtimes)
    );
    println!(
        "| consume-runtime-vs-raw{} | {:.3} | ratio | `{}` |",
        kafka.suffix(),
        median(&mut ratios),
        kafka.command("consume")
    );
}

async fn key_ordered_speedup() {
    const N: usize = 1_000;
    let kafka = Broker::start();
    let topic = &kafka.create_topic("keys", 1).await;
    produce(&kafka, topic, 1, N, 100).await;
    let delay = Duration::from_millis(2);
    let mut ratios = Vec::new();
    for round in 0..3 {
        let partition = runtime(
            &kafka,
            topic,
            N,
            format!("partition-{round}"),
            Ordering::Partition,
            delay,
        )
        .await;
        let key = runtime(
            &kafka,
            topic,
            N,
            format!("key-{round}"),
            Ordering::Key,
            delay,
        )
        .await;
        println!(
            "round {round}: partition-ordered {partition:.0} rec/s, key-ordered {key:.0} rec/s, speedup {:.1}",
            key / partition
        );
        ratios.push(key / partition);
    }
    println!(
        "| key-ordered-speedup{} | {:.1} | ratio | `{}` |",
        kafka.suffix(),
        median(&mut ratios),
        kafka.command("consume")
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and
    // only wants to know that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let only = std::env::var("LIGHT_KAFKA_BENCH").unwrap_or_default();
    runtime.block_on(async {
        if only.is_empty() || only == "consume-runtime-vs-raw" {
            consume_runtime_vs_raw().await;
        }
        if only.is_empty() || only == "key-ordered-speedup" {
            key_ordered_speedup().await;
        }
    });
}
