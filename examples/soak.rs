//! A soak run: the canonical consumer chain over millions of records, with the
//! Prometheus recorder installed and nothing scraping it, printing the
//! process's resident memory as it goes.
//!
//! ```text
//! cargo run --release --example soak                # 5,000,000 records
//! cargo run --release --example soak -- 1000000     # fewer
//! ```
//!
//! The last line is the `rss-growth-5m` figure of `BENCHMARKS.md`: the RSS at
//! the end minus the RSS after the first 500,000 records, relative to the
//! latter. The embedded broker runs in a process of its own (this example run
//! again as a broker host): its log, which grows to about 5 MB per partition,
//! is not this process's memory. The producer stays at most 200,000 records
//! ahead of the consumer, so the broker never drops a record before it was
//! consumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use light_kafka::layers::audit::{AuditLayer, NullSink};
use light_kafka::layers::metrics::prometheus;
use light_kafka::prelude::*;

#[path = "../benches/support/broker.rs"]
#[allow(dead_code)]
mod broker;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const PARTITIONS: i32 = 8;
const AHEAD: u64 = 200_000;
const SAMPLE_EVERY: u64 = 500_000;

/// The resident set size of this process, in bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<(), BoxError> {
    if broker::serve_if_child() {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(soak())
}

async fn soak() -> Result<(), BoxError> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5_000_000);
    let _recorder = prometheus::install_recorder(prometheus::UPKEEP_INTERVAL)?;
    let kafka = broker::Broker::start();
    let topic = kafka.create_topic("soak", PARTITIONS).await;
    assert_eq!(topic, "soak");
    let bootstrap = kafka.bootstrap_servers().to_owned();

    let handled = Arc::new(AtomicU64::new(0));
    let producing = {
        let (handled, bootstrap) = (handled.clone(), bootstrap.clone());
        tokio::spawn(async move {
            let mut producer = Producer::builder()
                .bootstrap_servers(&bootstrap)
                .set("linger.ms", "5")
                .set("batch.num.messages", "10000")
                .build()?;
            let mut deliveries = futures_util::stream::FuturesUnordered::new();
            for i in 0..total {
                while i >= handled.load(AtomicOrdering::Relaxed) + AHEAD {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let record = Record::builder("soak")
                    .partition((i % PARTITIONS as u64) as i32)
                    .value(format!("{i:016}"))
                    .build();
                deliveries.push(producer.ready().await?.call(record));
                while deliveries.len() > 20_000 {
                    futures_util::StreamExt::next(&mut deliveries)
                        .await
                        .expect("pending")?;
                }
            }
            while let Some(delivery) = futures_util::StreamExt::next(&mut deliveries).await {
                delivery?;
            }
            Ok::<_, BoxError>(())
        })
    };

    let dlq = Producer::builder().bootstrap_servers(&bootstrap).build()?;
    let consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id("soak")
        .topics(["soak"])
        .build()?;
    let handle = consumer.handle();
    let counted = handled.clone();
    let chain = ServiceBuilder::new()
        .catch_record_panic()
        .metrics_consume("soak")
        .propagate_consume()
        .trace_consume()
        .audit(AuditLayer::consumer("soak", NullSink))
        .dead_letter(dlq)
        .retry_records(RetryPolicy::new(3))
        .service(service_fn(move |record: Record| {
            std::hint::black_box(record.value());
            counted.fetch_add(1, AtomicOrdering::Relaxed);
            async { Ok::<_, BoxError>(()) }
        }));
    let serving = tokio::spawn(consumer.serve(chain));

    let started = Instant::now();
    let mut baseline = None;
    let mut next = SAMPLE_EVERY;
    println!("records,rss_mb,seconds");
    loop {
        let done = handled.load(AtomicOrdering::Relaxed);
        if done >= next.min(total) {
            let rss = rss();
            println!(
                "{done},{:.1},{:.1}",
                rss as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            if baseline.is_none() {
                baseline = Some(rss);
            }
            if done >= total {
                let baseline = baseline.unwrap_or(rss) as f64;
                println!(
                    "rss-growth: {:.1} % ({:.1} MB after {SAMPLE_EVERY} records, {:.1} MB after {total})",
                    (rss as f64 - baseline) / baseline * 100.0,
                    baseline / 1e6,
                    rss as f64 / 1e6
                );
                break;
            }
            next += SAMPLE_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown();
    serving.await??;
    producing.await??;
    Ok(())
}
