//! End-to-end consumer throughput, measured as ratios within one run on one
//! broker, so that the machine's noise cancels out.
//!
//! ```text
//! cargo bench --bench consume                 # the embedded broker
//! scripts/kafka bench                         # also on a real Apache Kafka broker
//! ```
//!
//! By default the embedded broker runs in a process of its own; with
//! `LIGHT_KAFKA_BENCH_IN_PROCESS=1` inside the bench (rows `…-in-process`);
//! with `LIGHT_KAFKA_BENCH_BOOTSTRAP` set, against that cluster (rows `…-real`).
//!
//! - `consume-runtime-vs-raw`: records/s of the light-kafka runtime with an
//!   empty handler, divided by records/s of a plain rdkafka `BaseConsumer`
//!   poll loop reading the same topic. Rounds alternate; the median ratio is
//!   reported.
//! - `consume-chain-vs-raw`: the same with the canonical chain around the
//!   handler: catch-panic, metrics (Prometheus recorder installed, nothing
//!   scraping), propagate (records without headers: ids are generated), trace
//!   (no subscriber), audit (to a no-op sink), dead-letter, retry.
//! - `key-ordered-speedup`: one partition, 100 keys, a 2 ms handler; records/s
//!   in key-ordered mode divided by records/s in partition-ordered mode.
//! - `consume-awaiting-default-vs-large-window`: a key-ordered handler awaiting
//!   5 ms per record, with the default `max.poll.records` against a window
//!   that never fills.
//! - `consume-tls-vs-plaintext-real` (real broker only, `scripts/kafka bench`,
//!   which sets `LIGHT_KAFKA_BENCH_TLS`): the runtime with an empty handler
//!   reading the same topic of the same broker through its TLS listener
//!   against its PLAINTEXT listener.
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

use light_kafka::builder::ServiceBuilderExt;
use light_kafka::layers::audit::{AuditLayer, NullSink};
use light_kafka::layers::retry::RetryPolicy;
use light_kafka::record::Record;
use light_kafka::service::consumer::{Consumer, ConsumerBuilder, Ordering, RUNTIME_DEFAULTS};
use light_kafka::service::producer::Producer;
use rdkafka::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tower::service_fn;

#[path = "support/broker.rs"]
#[allow(dead_code)]
mod broker;
use broker::{Broker, median, seed as produce};

const ROUNDS: usize = 5;

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

/// Records per second of a bare `BaseConsumer` poll loop (on a blocking
/// thread: `poll` blocks).
async fn raw_base(kafka: &Broker, topic: &str, n: usize, round: usize) -> f64 {
    let consumer: BaseConsumer = client_config(kafka, &format!("raw-base-{round}"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    tokio::task::spawn_blocking(move || {
        let next = || loop {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("message");
                std::hint::black_box(message.payload());
                return;
            }
        };
        next();
        let start = Instant::now();
        for _ in 1..n {
            next();
        }
        (n - 1) as f64 / start.elapsed().as_secs_f64()
    })
    .await
    .expect("raw loop")
}

/// Which service the runtime serves.
#[derive(Clone, Copy, PartialEq)]
enum Served {
    Handler,
    CanonicalChain,
    /// The canonical chain built from a config directory.
    ConfigChain,
}

/// Records per second of the runtime serving `served`, with `handler_delay`
/// per record in the handler, and the consumer's builder adjusted by `tune`
/// (ordering, window, concurrency; `|b| b` for the defaults).
async fn serve(
    kafka: &Broker,
    topic: &str,
    n: usize,
    group: String,
    handler_delay: Duration,
    served: Served,
    tune: fn(ConsumerBuilder) -> ConsumerBuilder,
) -> f64 {
    let builder = Consumer::builder()
        .properties(
            client_config(kafka, &group)
                .config_map()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .topics([topic]);
    let consumer = tune(builder).build().expect("consumer");
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
    match served {
        Served::Handler => consumer.serve(handler).await.expect("serve"),
        Served::CanonicalChain => {
            let dlq = Producer::builder()
                .bootstrap_servers(kafka.bootstrap_servers())
                .build()
                .expect("dead-letter producer");
            let chain = tower::ServiceBuilder::new()
                .catch_record_panic()
                .metrics_consume("bench")
                .propagate_consume()
                .trace_consume()
                .audit(AuditLayer::consumer("bench", NullSink))
                .dead_letter(dlq)
                .retry_records(RetryPolicy::new(3))
                .service(handler);
            consumer.serve(chain).await.expect("serve")
        }
        Served::ConfigChain => {
            let dir = config_dir(kafka);
            let config = light_kafka::config::Config::load(&dir).expect("config");
            let registry = light_kafka::config::Registry::new().handler("bench", handler);
            let chains = config.chains(&registry).expect("chains");
            consumer.serve(chains).await.expect("serve");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let (first, last) = *times.lock().unwrap();
    (n - 1) as f64 / (last.expect("last") - first.expect("first")).as_secs_f64()
}

/// The canonical chain of `serve` as config files. Audit goes to the log
/// (`auditTarget: logfile`), which no subscriber reads here, so the layer
/// steps aside as it does for the code chain's `NullSink`.
fn config_dir(kafka: &Broker) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lk-bench-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("config dir");
    let files = [
        (
            "handler.yml",
            "handlers: [catch-panic, metrics, propagate, trace, audit, dead-letter, retry, bench]\n\
             chains:\n  default: [catch-panic, metrics, propagate, trace, audit, dead-letter, retry]\n\
             defaultHandlers: [default, bench]\n"
                .to_owned(),
        ),
        ("metrics.yml", "serviceId: bench\n".to_owned()),
        ("retry.yml", "maxAttempts: 3\n".to_owned()),
        (
            "kafka-consumer.yml",
            format!("properties:\n  bootstrap.servers: {}\n", kafka.bootstrap_servers()),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("config file");
    }
    dir
}

/// The canonical chain written in code against the same chain built from
/// config files: throughput ratio, alternating rounds, median.
async fn config_chain_vs_static(kafka: &Broker) {
    const N: usize = 400_000;
    let topic = &kafka.create_topic("bench-config", 4).await;
    produce(kafka, topic, 4, N, 1_000).await;
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let serve_as = |served, name: &str| {
            serve(
                kafka,
                topic,
                N,
                format!("{name}-{round}"),
                Duration::ZERO,
                served,
                |b| b,
            )
        };
        let fixed = serve_as(Served::CanonicalChain, "static").await;
        let config = serve_as(Served::ConfigChain, "config").await;
        println!(
            "round {round}: static {fixed:.0} rec/s, config {config:.0} rec/s, ratio {:.3}",
            config / fixed
        );
        ratios.push(config / fixed);
    }
    println!(
        "| config-chain-vs-static{} | {:.3} | ratio | `{}` |",
        kafka.suffix(),
        median(&mut ratios),
        kafka.command("consume")
    );
}

async fn consume_runtime_vs_raw(kafka: &Broker, chain: bool) {
    const N: usize = 400_000;
    let topic = &kafka.create_topic("bench", 4).await;
    produce(kafka, topic, 4, N, 1_000).await;

    let (mut raws, mut runtimes, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut chains, mut chain_ratios) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let raw = raw_base(kafka, topic, N, round).await;
        let rt = serve(
            kafka,
            topic,
            N,
            format!("runtime-{round}"),
            Duration::ZERO,
            Served::Handler,
            |b| b,
        )
        .await;
        print!(
            "round {round}: raw {raw:.0} rec/s, runtime {rt:.0} rec/s, ratio {:.3}",
            rt / raw
        );
        if chain {
            let ch = serve(
                kafka,
                topic,
                N,
                format!("chain-{round}"),
                Duration::ZERO,
                Served::CanonicalChain,
                |b| b,
            )
            .await;
            print!(", chain {ch:.0} rec/s, ratio {:.3}", ch / raw);
            chains.push(ch);
            chain_ratios.push(ch / raw);
        }
        println!();
        raws.push(raw);
        runtimes.push(rt);
        ratios.push(rt / raw);
    }
    let suffix = kafka.suffix();
    let command = kafka.command("consume");
    println!(
        "consume-raw-rdkafka{suffix}: median {:.0} rec/s; consume-runtime{suffix}: median {:.0} rec/s",
        median(&mut raws),
        median(&mut runtimes)
    );
    println!(
        "| consume-runtime-vs-raw{suffix} | {:.3} | ratio | `{command}` |",
        median(&mut ratios)
    );
    if chain {
        println!(
            "consume-chain{suffix}: median {:.0} rec/s",
            median(&mut chains)
        );
        println!(
            "| consume-chain-vs-raw{suffix} | {:.3} | ratio | `{command}` |",
            median(&mut chain_ratios)
        );
    }
}

async fn key_ordered_speedup(kafka: &Broker) {
    const N: usize = 1_000;
    let topic = &kafka.create_topic("keys", 1).await;
    produce(kafka, topic, 1, N, 100).await;
    let delay = Duration::from_millis(2);
    let mut ratios = Vec::new();
    for round in 0..3 {
        let partition = serve(
            kafka,
            topic,
            N,
            format!("partition-{round}"),
            delay,
            Served::Handler,
            |b| b,
        )
        .await;
        let key = serve(
            kafka,
            topic,
            N,
            format!("key-{round}"),
            delay,
            Served::Handler,
            |b| b.ordering(Ordering::Key),
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

/// A key-ordered handler that awaits 5 ms of I/O per record (distinct keys,
/// so records overlap; 4,096 in flight), with the default `max.poll.records`
/// (500) against a window of 25,000 that never fills: what the default
/// window's backpressure costs such a handler.
async fn awaiting_handler(kafka: &Broker) {
    const N: usize = 40_000;
    let topic = &kafka.create_topic("awaiting", 4).await;
    produce(kafka, topic, 4, N, N).await;
    let delay = Duration::from_millis(5);
    let (mut ratios, mut defaults, mut larges) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let default = serve(
            kafka,
            topic,
            N,
            format!("awaiting-default-{round}"),
            delay,
            Served::Handler,
            |b| b.ordering(Ordering::Key).max_in_flight(4_096),
        )
        .await;
        let large = serve(
            kafka,
            topic,
            N,
            format!("awaiting-large-{round}"),
            delay,
            Served::Handler,
            |b| {
                b.ordering(Ordering::Key)
                    .max_in_flight(4_096)
                    .max_poll_records(25_000)
                    .max_buffered(100_000)
            },
        )
        .await;
        println!(
            "round {round}: default window {default:.0} rec/s, window 25,000 {large:.0} rec/s, ratio {:.3}",
            default / large
        );
        ratios.push(default / large);
        defaults.push(default);
        larges.push(large);
    }
    let suffix = kafka.suffix();
    println!(
        "consume-awaiting-default-window{suffix}: median {:.0} rec/s; window 25,000: median {:.0} rec/s",
        median(&mut defaults),
        median(&mut larges)
    );
    println!(
        "| consume-awaiting-default-vs-large-window{suffix} | {:.3} | ratio | `{}` |",
        median(&mut ratios),
        kafka.command("consume")
    );
}

/// The runtime's settings for the real broker's TLS listener (the CA and
/// address `scripts/kafka` wrote to `LIGHT_KAFKA_BENCH_TLS`).
fn over_tls(builder: ConsumerBuilder) -> ConsumerBuilder {
    let dir = std::path::PathBuf::from(std::env::var("LIGHT_KAFKA_BENCH_TLS").expect("TLS dir"));
    let bootstrap = std::fs::read_to_string(dir.join("ssl.bootstrap")).expect("TLS listener");
    builder
        .set("bootstrap.servers", bootstrap.trim())
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", dir.join("ca.pem").display().to_string())
}

/// The runtime over TLS against the runtime over plaintext, same broker,
/// same topic, alternating rounds.
async fn tls_vs_plaintext(kafka: &Broker) {
    const N: usize = 400_000;
    let topic = &kafka.create_topic("bench-tls", 4).await;
    produce(kafka, topic, 4, N, 1_000).await;
    let (mut ratios, mut plains, mut tlss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let serve_with = |name: &str, tune: fn(ConsumerBuilder) -> ConsumerBuilder| {
            serve(
                kafka,
                topic,
                N,
                format!("{name}-{round}"),
                Duration::ZERO,
                Served::Handler,
                tune,
            )
        };
        let plain = serve_with("plaintext", |b| b).await;
        let tls = serve_with("tls", over_tls).await;
        println!(
            "round {round}: plaintext {plain:.0} rec/s, TLS {tls:.0} rec/s, ratio {:.3}",
            tls / plain
        );
        ratios.push(tls / plain);
        plains.push(plain);
        tlss.push(tls);
    }
    println!(
        "consume-runtime-plaintext{0}: median {1:.0} rec/s; consume-runtime-tls{0}: median {2:.0} rec/s",
        kafka.suffix(),
        median(&mut plains),
        median(&mut tlss)
    );
    println!(
        "| consume-tls-vs-plaintext{} | {:.3} | ratio | `{}` |",
        kafka.suffix(),
        median(&mut ratios),
        kafka.command("consume")
    );
}

fn main() {
    broker::main(|kafka, only| async move {
        // The recorder of a production service; the chain's metrics go to it.
        let _ = light_kafka::layers::metrics::prometheus::install_recorder(
            light_kafka::layers::metrics::prometheus::UPKEEP_INTERVAL,
        );
        if only.is_empty() || only == "consume-runtime-vs-raw" {
            // The chain row is measured on the embedded broker.
            consume_runtime_vs_raw(&kafka, kafka.suffix() != "-real").await;
        }
        if only.is_empty() || only == "config-chain-vs-static" {
            config_chain_vs_static(&kafka).await;
        }
        if only.is_empty() || only == "key-ordered-speedup" {
            key_ordered_speedup(&kafka).await;
        }
        if only.is_empty() || only == "consume-awaiting-default-vs-large-window" {
            awaiting_handler(&kafka).await;
        }
        if (only.is_empty() || only == "consume-tls-vs-plaintext")
            && std::env::var_os("LIGHT_KAFKA_BENCH_TLS").is_some()
        {
            tls_vs_plaintext(&kafka).await;
        }
    });
}
