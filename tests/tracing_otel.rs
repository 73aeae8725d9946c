//! Trace context across Kafka: an HTTP request → produce → consume → produce
//! chain is one OpenTelemetry trace, checked with the in-memory exporter.

mod common;

use std::time::Duration;

use light_kafka::BoxError;
use light_kafka::builder::ServiceBuilderExt;
use light_kafka::layers::trace::TraceLayer;
use light_kafka::record::{Record, names};
use light_kafka::service::consumer::Consumer;
use light_kafka::service::producer::Producer;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn http_produce_consume_produce_is_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("light-kafka-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let kafka = common::Kafka::start();
    kafka.create_topic("parcels", 1).unwrap();
    kafka.create_topic("deliveries", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();

    // An HTTP handler's span produces the first record.
    let api = ServiceBuilder::new()
        .propagate_produce("order-api")
        .layer(TraceLayer::produce())
        .service(producer.clone());
    api.oneshot(
        Record::builder("parcels")
            .key("order-1")
            .value("{}")
            .build(),
    )
    .instrument(tracing::info_span!("POST /orders", "otel.kind" = "server"))
    .await
    .unwrap();

    // The consuming service processes it and produces the next one.
    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("shipping")
        .topics(["parcels"])
        .build()
        .unwrap();
    let handle = consumer.handle();
    let next = ServiceBuilder::new()
        .propagate_produce("shipping")
        .layer(TraceLayer::produce())
        .service(producer.clone());
    let handler = service_fn(move |_record: Record| {
        let (mut next, handle) = (next.clone(), handle.clone());
        async move {
            next.ready()
                .await?
                .call(Record::builder("deliveries").value("ship").build())
                .await?;
            handle.shutdown();
            Ok::<_, BoxError>(())
        }
    });
    let chain = ServiceBuilder::new()
        .propagate_consume()
        .layer(TraceLayer::consume().group("shipping"))
        .service(handler);
    tokio::time::timeout(Duration::from_secs(30), consumer.serve(chain))
        .await
        .unwrap()
        .unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let by_name = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span {name}: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let http = by_name("POST /orders");
    let send_orders = by_name("send parcels");
    let process = by_name("process parcels");
    let send_shipments = by_name("send deliveries");

    let trace = http.span_context.trace_id();
    for span in [send_orders, process, send_shipments] {
        assert_eq!(
            span.span_context.trace_id(),
            trace,
            "{} is in the request's trace",
            span.name
        );
    }
    assert_eq!(send_orders.parent_span_id, http.span_context.span_id());
    assert_eq!(process.parent_span_id, send_orders.span_context.span_id());
    assert!(
        process.parent_span_is_remote,
        "the parent came through Kafka headers"
    );
    assert_eq!(
        send_shipments.parent_span_id,
        process.span_context.span_id()
    );
    assert_eq!(send_orders.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);

    // The record on the wire carries the second send span's context.
    let shipments = common::read_topic(
        kafka.bootstrap_servers(),
        "deliveries",
        1,
        1,
        "read_uncommitted",
        Duration::from_secs(10),
    );
    let traceparent = shipments[0]
        .header_str(names::TRACEPARENT)
        .unwrap()
        .to_owned();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", trace, send_shipments.span_context.span_id())
    );
}

#[tokio::test]
async fn a_record_produced_in_an_http_context_without_spans_joins_its_trace() {
    use light_kafka::context::{self, Propagation};
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("light-kafka-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let sent = light_kafka::testkit::RecordingProducer::new();
    let producer = ServiceBuilder::new()
        .propagate_produce("api")
        .layer(TraceLayer::produce())
        .service(sent.clone());
    let mut incoming = Propagation::new();
    incoming.set_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    context::scope(
        incoming,
        producer.oneshot(Record::builder("orders").build()),
    )
    .await
    .unwrap();

    let span = &exporter.get_finished_spans().unwrap()[0];
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    let header = sent.records()[0]
        .header_str(names::TRACEPARENT)
        .unwrap()
        .to_owned();
    assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(
        !header.contains("00f067aa0ba902b7"),
        "the record carries the send span, not the caller's"
    );
}
