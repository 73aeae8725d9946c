//! Re-publish dead letters to their original topic (or another one).
//!
//! ```text
//! cargo run --example dlq_replay -- --bootstrap kafka:9092 --topic orders.dlq [--to orders.retry] [--from 10] [--until 20]
//! cargo run --example dlq_replay          # a demo on the embedded broker
//! ```
//!
//! `--from`/`--until` limit the replay to an offset range of each partition
//! (`until` excluded). The headers the dead-letter layer added are removed;
//! every other header (correlation id, token, trace context) is kept.

use std::time::Duration;

use light_kafka::layers::dead_letter::dead_letter_record;
use light_kafka::record::{Record, names};
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::service::producer::Producer;
use light_kafka::service::replay::Replay;
use light_kafka::{Error, ErrorKind};
use tower::ServiceExt;

struct Args {
    bootstrap: Option<String>,
    topic: Option<String>,
    to: Option<String>,
    from: Option<i64>,
    until: Option<i64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        bootstrap: None,
        topic: None,
        to: None,
        from: None,
        until: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = Some(value()?),
            "--topic" => args.topic = Some(value()?),
            "--to" => args.to = Some(value()?),
            "--from" => args.from = Some(value()?.parse().map_err(|e| format!("--from: {e}"))?),
            "--until" => args.until = Some(value()?.parse().map_err(|e| format!("--until: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

async fn replay(
    bootstrap: &str,
    args: &Args,
    topic: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut replay = Replay::new(bootstrap, topic).timeout(Duration::from_secs(60));
    if let Some(to) = &args.to {
        replay = replay.to_topic(to);
    }
    if args.from.is_some() || args.until.is_some() {
        replay = replay.offsets(args.from.unwrap_or(0)..args.until.unwrap_or(i64::MAX));
    }
    let report = replay.run().await?;
    println!(
        "replayed {} record(s) from {topic}, skipped {} without an original topic",
        report.replayed, report.skipped
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse().map_err(|e| format!("{e}\nusage: dlq_replay --bootstrap SERVERS --topic DLQ_TOPIC [--to TOPIC] [--from OFFSET] [--until OFFSET]"))?;
    if let Some(bootstrap) = &args.bootstrap {
        let topic = args
            .topic
            .clone()
            .ok_or("--topic is required with --bootstrap")?;
        return replay(bootstrap, &args, &topic).await;
    }

    println!("demo on the embedded broker");
    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic("orders", 1)?;
    kafka.create_topic("orders.dlq", 1)?;
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()?;
    for i in 0..3 {
        let failed = Record::builder("orders")
            .key(format!("order-{i}"))
            .value(format!(r#"{{"id":{i}}}"#))
            .header(names::CORRELATION_ID, format!("corr-{i}"))
            .partition(0)
            .offset(i)
            .build();
        let error = Error::new(ErrorKind::Transient, "inventory service unavailable");
        producer
            .clone()
            .oneshot(dead_letter_record(&failed, &error, ".dlq"))
            .await?;
    }
    println!("wrote 3 dead letters to orders.dlq");
    replay(kafka.bootstrap_servers(), &args, "orders.dlq").await
}
