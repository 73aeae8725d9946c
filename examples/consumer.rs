//! A consumer chain built from tower's own layers, on the embedded broker.
//!
//! ```text
//! cargo run --example consumer
//! ```
//!
//! The handler runs behind a timeout, a concurrency limit and a rate limit, in
//! key-ordered mode; a transient failure is retried by the runtime; the health
//! handle reports progress and committed offsets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use light_kafka::layers::catch_panic::CatchPanicLayer;
use light_kafka::record::Record;
use light_kafka::service::consumer::{Consumer, Ordering};
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::service::producer::Producer;
use light_kafka::{BoxError, Error};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const ORDERS: usize = 200;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic("orders", 4)?;

    let mut producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()?;
    for i in 0..ORDERS {
        let record = Record::builder("orders")
            .key(format!("customer-{}", i % 10))
            .json(&serde_json::json!({ "order": i, "amount": i * 3 }))?
            .build();
        producer.ready().await?.call(record).await?;
    }
    println!("produced {ORDERS} orders");

    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("order-handler")
        .topics(["orders"])
        .ordering(Ordering::Key)
        .build()?;
    let handle = consumer.handle();

    let handled = Arc::new(AtomicUsize::new(0));
    let ledger_was_busy = Arc::new(AtomicBool::new(false));
    let handler = {
        let (handled, busy, handle) = (handled.clone(), ledger_was_busy.clone(), handle.clone());
        service_fn(move |record: Record| {
            let (handled, busy, handle) = (handled.clone(), busy.clone(), handle.clone());
            async move {
                let order: serde_json::Value = record.json()?;
                // Pretend the ledger is busy once, for order 42: the runtime
                // retries the record after a backoff.
                if order["order"] == 42 && !busy.swap(true, AtomicOrdering::Relaxed) {
                    return Err(BoxError::from(Error::transient("ledger busy")));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                if handled.fetch_add(1, AtomicOrdering::Relaxed) + 1 == ORDERS {
                    handle.shutdown();
                }
                Ok::<_, BoxError>(())
            }
        })
    };

    let chain = ServiceBuilder::new()
        .layer(CatchPanicLayer::new())
        .concurrency_limit(16)
        .rate_limit(5_000, Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .service(handler);

    let reporter = {
        let handle = handle.clone();
        tokio::spawn(async move {
            while handle.is_running() || handle.health().processed == 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let h = handle.health();
                println!(
                    "processed {:>4}  in flight {:>2}  buffered {:>3}  failures {}",
                    h.processed, h.in_flight, h.buffered, h.failures
                );
            }
        })
    };
    println!("joining the group (the embedded broker holds a new group's first join for 3 s)");
    consumer.serve(chain).await?;
    reporter.await?;

    let health = handle.health();
    println!(
        "done: {} records processed, {} failed attempt(s) retried",
        health.processed, health.failures
    );
    for p in health.partitions {
        println!(
            "  {}[{}] committed at {:?}",
            p.topic, p.partition, p.committed
        );
    }
    Ok(())
}
