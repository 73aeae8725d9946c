//! Producing and consuming over SASL_SSL (SCRAM-SHA-512) and over mTLS, the
//! way a managed Kafka asks for it.
//!
//! Needs a broker with TLS listeners: `scripts/kafka start` starts one and
//! writes its CA, a client certificate and a SCRAM user to
//! `target/kafka/run/tls`, which this example reads:
//!
//! ```sh
//! scripts/kafka start
//! cargo run --example tls                     # or: -- path/to/tls/dir
//! scripts/kafka stop
//! ```
//!
//! Then it shows what a wrong password does: `serve` returns a typed
//! `ConsumerError::Connect` within a second instead of reconnecting forever.

use std::path::PathBuf;
use std::time::Duration;

use light_kafka::prelude::*;
use light_kafka::service::consumer::ConsumerError;
use tower::{Service, ServiceExt, service_fn};

fn read(dir: &std::path::Path, name: &str) -> Result<String, BoxError> {
    let path = dir.join(name);
    Ok(std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run `scripts/kafka start` first)", path.display()))?
        .trim()
        .to_owned())
}

/// The librdkafka settings of each listener, as a user writes them.
fn sasl_ssl(
    dir: &std::path::Path,
    password: &str,
) -> Result<Vec<(&'static str, String)>, BoxError> {
    Ok(vec![
        ("bootstrap.servers", read(dir, "sasl_ssl.bootstrap")?),
        ("security.protocol", "SASL_SSL".into()),
        ("ssl.ca.location", dir.join("ca.pem").display().to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        ("sasl.username", read(dir, "scram-user")?),
        ("sasl.password", password.to_owned()),
    ])
}

fn mtls(dir: &std::path::Path) -> Result<Vec<(&'static str, String)>, BoxError> {
    Ok(vec![
        ("bootstrap.servers", read(dir, "mtls.bootstrap")?),
        ("security.protocol", "SSL".into()),
        ("ssl.ca.location", dir.join("ca.pem").display().to_string()),
        (
            "ssl.certificate.location",
            dir.join("client.pem").display().to_string(),
        ),
        (
            "ssl.key.location",
            dir.join("client.key").display().to_string(),
        ),
    ])
}

async fn round_trip(name: &str, settings: &[(&'static str, String)]) -> Result<(), BoxError> {
    let topic = format!("tls-example-{name}-{}", std::process::id());
    let mut producer = Producer::builder();
    for (k, v) in settings {
        producer = producer.set(*k, v);
    }
    let mut producer = producer.build()?;
    for i in 0..3 {
        let record = Record::builder(topic.as_str())
            .value(format!("order {i}"))
            .build();
        let delivery = producer.ready().await?.call(record).await?;
        println!(
            "{name}: produced to {}[{}]@{}",
            delivery.topic(),
            delivery.partition(),
            delivery.offset()
        );
    }

    let mut consumer = Consumer::builder()
        .group_id(format!("{topic}-{name}"))
        .topics([topic.as_str()]);
    for (k, v) in settings {
        consumer = consumer.set(*k, v);
    }
    let consumer = consumer.build()?;
    let handle = consumer.handle();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let name_owned = name.to_owned();
    let serving = tokio::spawn(consumer.serve(service_fn(move |record: Record| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        println!("{name_owned}: consumed {:?}", record.value_str());
        async { Ok::<_, BoxError>(()) }
    })));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.load(std::sync::atomic::Ordering::SeqCst) < 3
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    serving.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/kafka/run/tls"), PathBuf::from);
    let password = read(&dir, "scram-password")?;

    round_trip("sasl_ssl", &sasl_ssl(&dir, &password)?).await?;
    round_trip("mtls", &mtls(&dir)?).await?;

    // A wrong password: a typed error, at once; the password is never printed.
    let mut consumer = Consumer::builder()
        .group_id("tls-example-wrong")
        .topics(["orders"]);
    for (k, v) in sasl_ssl(&dir, "not-the-password")? {
        consumer = consumer.set(k, v);
    }
    let started = std::time::Instant::now();
    match consumer
        .build()?
        .serve(service_fn(|_: Record| async { Ok::<_, BoxError>(()) }))
        .await
    {
        Err(ConsumerError::Connect(error)) => println!(
            "wrong password: {:?} after {:.1} s: {error}",
            light_kafka::error::classify(&error),
            started.elapsed().as_secs_f64()
        ),
        other => return Err(format!("expected a connect error, got {other:?}").into()),
    }
    Ok(())
}
