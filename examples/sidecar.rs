//! The config-driven sidecar: consumes the topics `kafka-consumer.yml`
//! names, runs the chain `handler.yml` builds (catch-panic, metrics,
//! propagate, trace, audit, dead-letter, retry), and forwards each record to
//! an HTTP backend with its identity and trace headers.
//!
//! ```text
//! cargo run --example sidecar                       # embedded broker, in-process backend
//! cargo run --example sidecar -- path/to/config     # your own config directory
//! ```
//!
//! The sample config is in `examples/sidecar/config`; here `KAFKA_BOOTSTRAP`
//! and `BACKEND_HOST` point it at an embedded broker and at a backend this
//! example serves on loopback (the environment wins when it sets them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use light_kafka::config::{Config, Registry};
use light_kafka::record::{Record, names};
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::service::producer::Producer;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sidecar/config").to_owned()
    });

    // Audit entries (auditTarget: logfile) go to the log; show them.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("audit=info,warn"))
        .with_target(true)
        .init();
    let kafka = EmbeddedKafka::start()?;
    for topic in ["orders", "payments", "orders.dlq", "payments.dlq"] {
        kafka.create_topic(topic, 1)?;
    }
    println!("embedded Kafka listening on {}", kafka.bootstrap_servers());

    // The backend: 422 for an order it cannot take, 200 otherwise.
    let received = Arc::new(Mutex::new(0usize));
    let count = received.clone();
    let backend = Router::new().route(
        "/kafka/{topic}",
        post(move |axum::extract::Path(topic): axum::extract::Path<String>, headers: HeaderMap, body: String| {
            let count = count.clone();
            async move {
                *count.lock().unwrap() += 1;
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                println!(
                    "backend: POST /kafka/{topic} {body}\n  correlation {} | authorization {} | traceparent {}",
                    header("x-correlation-id"),
                    if headers.contains_key("authorization") { "present" } else { "-" },
                    header("traceparent"),
                );
                if body.contains("\"quantity\":0") { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, backend).await });
    println!("backend listening on {backend_url}");

    let bootstrap = kafka.bootstrap_servers().to_owned();
    let config = Config::load_with(&dir, |name| {
        std::env::var(name).ok().or_else(|| match name {
            "KAFKA_BOOTSTRAP" => Some(bootstrap.clone()),
            "BACKEND_HOST" => Some(backend_url.clone()),
            _ => None,
        })
    })?;
    println!("config loaded from {dir}");

    // Records as another service would produce them.
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()?;
    let records = [
        ("orders", r#"{"id":1,"quantity":2}"#, Some("corr-1")),
        ("orders", r#"{"id":2,"quantity":0}"#, Some("corr-2")),
        ("payments", r#"{"order":1,"amount":20}"#, None),
    ];
    for (topic, value, correlation) in records {
        let mut record = Record::builder(topic)
            .value(value)
            .header(
                names::AUTHORIZATION,
                "Bearer <token of the calling service>",
            )
            .header(
                names::TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            );
        if let Some(id) = correlation {
            record = record.header(names::CORRELATION_ID, id);
        }
        producer.clone().oneshot(record.build()).await?;
    }

    let chains = config.chains(&Registry::new())?;
    let consumer = config
        .consumer_builder()?
        .commit_interval(Duration::from_millis(100))
        .build()?;
    let handle = consumer.handle();
    println!("consuming (the embedded broker holds a new group's first join for 3 s)...");
    let serving = tokio::spawn(consumer.serve(chains));
    for _ in 0..300 {
        let committed: i64 = handle
            .health()
            .partitions
            .iter()
            .filter_map(|p| p.committed)
            .sum();
        if committed >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    serving.await??;

    let dead = light_kafka::testkit::read_topic(
        kafka.bootstrap_servers(),
        "orders.dlq",
        Duration::from_secs(3),
    )?;
    println!("backend received {} records", received.lock().unwrap());
    for record in &dead {
        println!(
            "dead letter on orders.dlq: {} ({})",
            record.value_str()?,
            record.header_str(names::DLQ_ERROR_MESSAGE).unwrap_or("-")
        );
    }
    println!(
        "committed: {:?}",
        handle
            .health()
            .partitions
            .iter()
            .map(|p| (&p.topic, p.committed))
            .collect::<Vec<_>>()
    );
    Ok(())
}
