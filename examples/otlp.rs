//! Export the spans of an HTTP → Kafka → consumer → Kafka chain over OTLP.
//!
//! ```text
//! cargo run --example otlp                                   # http://localhost:4318/v1/traces
//! cargo run --example otlp -- --endpoint http://jaeger:4318/v1/traces
//! OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces cargo run --example otlp
//! ```
//!
//! Jaeger accepts OTLP: run it with its OTLP HTTP port (4318) open and the
//! trace shows up as one trace of four spans (the request, `send orders`,
//! `process orders`, `send shipments`). Without a collector the example still
//! runs; the exporter reports that it could not deliver the spans.

use std::time::Duration;

use light_kafka::BoxError;
use light_kafka::builder::ServiceBuilderExt;
use light_kafka::record::Record;
use light_kafka::service::consumer::Consumer;
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::service::producer::Producer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn endpoint() -> String {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--endpoint"
            && let Some(endpoint) = args.next()
        {
            return endpoint;
        }
    }
    std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .unwrap_or_else(|_| "http://localhost:4318/v1/traces".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let endpoint = endpoint();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(&endpoint)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("light-kafka-example")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::EnvFilter::new("info,librdkafka=warn")),
        )
        .init();
    println!("exporting spans to {endpoint}");

    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic("orders", 1)?;
    kafka.create_topic("shipments", 1)?;
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()?;

    // The "HTTP request": a server span inside which the API produces.
    let api = ServiceBuilder::new()
        .propagate_produce("order-api")
        .trace_produce()
        .service(producer.clone());
    api.oneshot(
        Record::builder("orders")
            .key("order-1")
            .value(r#"{"item":"coffee"}"#)
            .build(),
    )
    .instrument(tracing::info_span!("POST /orders", "otel.kind" = "server"))
    .await?;

    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("shipping")
        .topics(["orders"])
        .build()?;
    let handle = consumer.handle();
    let next = ServiceBuilder::new()
        .propagate_produce("shipping")
        .trace_produce()
        .service(producer.clone());
    let handler = service_fn(move |_record: Record| {
        let (mut next, handle) = (next.clone(), handle.clone());
        async move {
            next.ready()
                .await?
                .call(Record::builder("shipments").value("ship").build())
                .await?;
            handle.shutdown();
            Ok::<_, BoxError>(())
        }
    });
    let chain = ServiceBuilder::new()
        .propagate_consume()
        .trace_consume()
        .service(handler);
    tokio::time::timeout(Duration::from_secs(30), consumer.serve(chain)).await??;

    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    println!("done: four spans of one trace were handed to the exporter");
    Ok(())
}
