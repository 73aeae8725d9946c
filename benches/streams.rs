//! Stream processing throughput and changelog restore speed.
//!
//! - `eos-processor-vs-at-least-once`: the same transform (each input becomes
//!   one output record on another topic) run by the exactly-once
//!   `StreamProcessor` and by the at-least-once consumer runtime with a
//!   producer awaiting each output's delivery before settling its input;
//!   same broker, same run, alternating rounds, median ratio.
//! - `changelog-restore`: changelog records read into an in-memory store per
//!   second, by the restore step a processor runs on assignment.
//!
//! ```text
//! cargo bench --bench streams
//! ```

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use light_kafka::record::Record;
use light_kafka::service::consumer::{Consumer, Ordering};
use light_kafka::service::producer::Producer;
use light_kafka::streams::processor::StreamProcessor;
use light_kafka::streams::restore::restore;
use light_kafka::streams::store::MemoryBackend;
use rdkafka::config::ClientConfig;
use tower::{ServiceExt, service_fn};

#[path = "support/broker.rs"]
#[allow(dead_code)]
mod broker;
use broker::{Broker, median, seed};

const ROUNDS: usize = 5;
const N: usize = 100_000;

/// Marks the first and the n-th call.
#[derive(Clone)]
struct Clock {
    seen: Arc<AtomicUsize>,
    times: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            seen: Arc::default(),
            times: Arc::default(),
        }
    }

    fn tick(&self, n: usize) -> bool {
        let count = self.seen.fetch_add(1, AtomicOrdering::Relaxed) + 1;
        if count == 1 {
            self.times.lock().unwrap().0 = Some(Instant::now());
        }
        if count == n {
            self.times.lock().unwrap().1 = Some(Instant::now());
        }
        count == n
    }

    fn rate(&self, n: usize) -> f64 {
        let (first, last) = *self.times.lock().unwrap();
        (n - 1) as f64 / (last.expect("last") - first.expect("first")).as_secs_f64()
    }
}

fn transform(record: &Record, out: &str) -> Record {
    Record::builder(out)
        .key(record.key().cloned().unwrap_or_default())
        .value(record.value().cloned().unwrap_or_default())
        .build()
}

/// Inputs per second through the exactly-once processor (first input handled
/// to last input committed).
async fn exactly_once(kafka: &Broker, input: &str, out: &str, round: usize) -> f64 {
    let processor = StreamProcessor::builder(format!("eos-bench-{round}-{}", std::process::id()))
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input])
        .build()
        .await
        .expect("processor");
    let handle = processor.handle();
    let clock = Clock::new();
    let first = clock.clone();
    let out = out.to_owned();
    let running = tokio::spawn(processor.run(service_fn(move |record: Record| {
        first.tick(usize::MAX);
        let output = transform(&record, &out);
        async move { Ok::<_, light_kafka::BoxError>(output) }
    })));
    while handle.health().committed_records < N as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = Instant::now();
    handle.shutdown();
    running.await.expect("task").expect("processor");
    let start = clock.times.lock().unwrap().0.expect("first");
    N as f64 / (end - start).as_secs_f64()
}

/// Inputs per second through the consumer runtime with a producer, settling
/// each input once its output is delivered. Key-ordered (the keys are
/// distinct, so inputs overlap) with a window of 25,000 records per
/// partition: with the runtime's default window (500) a handler that awaits a
/// 5 ms delivery spends most of its time in pause/resume cycles (about 3,000
/// records/s here), which would make this baseline unfairly slow.
async fn at_least_once(kafka: &Broker, input: &str, out: &str, round: usize) -> f64 {
    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id(format!("alo-bench-{round}-{}", std::process::id()))
        .topics([input])
        .set("auto.offset.reset", "earliest")
        .ordering(Ordering::Key)
        .max_in_flight(4_096)
        .max_poll_records(25_000)
        .max_buffered(100_000)
        .build()
        .expect("consumer");
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .set("linger.ms", "5")
        .build()
        .expect("producer");
    let handle = consumer.handle();
    let clock = Clock::new();
    let (ticks, out) = (clock.clone(), out.to_owned());
    let handler = service_fn(move |record: Record| {
        let (producer, ticks, handle) = (producer.clone(), ticks.clone(), handle.clone());
        let output = transform(&record, &out);
        async move {
            producer.oneshot(output).await?;
            if ticks.tick(N) {
                handle.shutdown();
            }
            Ok::<_, light_kafka::BoxError>(())
        }
    });
    consumer.serve(handler).await.expect("serve");
    clock.rate(N)
}

async fn eos_vs_at_least_once(kafka: &Broker) {
    let input = kafka.create_topic("eos-in", 4).await;
    let out = kafka.create_topic("eos-out", 4).await;
    seed(kafka, &input, 4, N, N).await;
    let (mut ratios, mut eos, mut alo) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let a = at_least_once(kafka, &input, &out, round).await;
        let e = exactly_once(kafka, &input, &out, round).await;
        println!(
            "round {round}: at-least-once {a:.0} rec/s, exactly-once {e:.0} rec/s, ratio {:.3}",
            e / a
        );
        ratios.push(e / a);
        eos.push(e);
        alo.push(a);
    }
    let (suffix, command) = (kafka.suffix(), kafka.command("streams"));
    println!(
        "eos-processor{suffix}: median {:.0} rec/s; at-least-once{suffix}: median {:.0} rec/s",
        median(&mut eos),
        median(&mut alo)
    );
    println!(
        "| eos-processor-vs-at-least-once{suffix} | {:.3} | ratio | `{command}` |",
        median(&mut ratios)
    );
}

async fn changelog_restore(kafka: &Broker) {
    let topic = kafka.create_topic("bench-store-changelog", 1).await;
    seed(kafka, &topic, 1, N, N).await;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.bootstrap_servers());
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let (config, topic) = (config.clone(), topic.clone());
        let rate = tokio::task::spawn_blocking(move || {
            let mut store = MemoryBackend::default();
            let start = Instant::now();
            let read = restore(&config, &topic, 0, &mut store, |_, _| {}).expect("restore");
            assert_eq!(read, N as u64);
            read as f64 / start.elapsed().as_secs_f64()
        })
        .await
        .expect("restore task");
        println!("restore: {rate:.0} records/s");
        rates.push(rate);
    }
    println!(
        "| changelog-restore{} | {:.0} | records/s | `{}` |",
        kafka.suffix(),
        median(&mut rates),
        kafka.command("streams")
    );
}

fn main() {
    broker::main(|kafka, only| async move {
        if only.is_empty() || only == "eos-processor-vs-at-least-once" {
            eos_vs_at_least_once(&kafka).await;
        }
        if only.is_empty() || only == "changelog-restore" {
            changelog_restore(&kafka).await;
        }
    });
}
