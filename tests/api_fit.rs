//! How the crate fits beside tower, tower-http and axum code: both builder
//! extensions in one module, the retry policy below any error type, chains
//! returned from functions, builders that never panic, one import for the
//! common names, and re-exports instead of second copies.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

// Both extension traits in scope at once, as in an axum service that also
// consumes records.
use light_kafka::builder::ServiceBuilderExt as _;
use light_kafka::prelude::*;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::ServiceBuilderExt as _;

#[tokio::test]
async fn both_service_builder_extensions_work_in_one_module() {
    // tower-http's catch_panic, on an HTTP service.
    let http =
        ServiceBuilder::new()
            .catch_panic()
            .service(service_fn(|_: http::Request<String>| async {
                panic!("handler bug");
                #[allow(unreachable_code)]
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }));
    let response = http
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);

    // light-kafka's, on a record service.
    let mut records = ServiceBuilder::new()
        .catch_record_panic()
        .service(service_fn(|_: Record| async {
            panic!("handler bug");
            #[allow(unreachable_code)]
            Ok::<_, BoxError>(())
        }));
    let err = testkit::call(&mut records, testkit::record("orders").build())
        .await
        .unwrap_err();
    assert_eq!(light_kafka::error::classify(err.as_ref()), ErrorKind::Panic);
}

#[tokio::test]
async fn the_retry_policy_works_below_any_error_that_converts_into_a_box_error() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    // The handler's error is light_kafka::Error, not BoxError.
    let mut chain = ServiceBuilder::new()
        .retry_records(
            RetryPolicy::new(4).backoff(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .service(service_fn(move |_: Record| {
            let n = counted.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(Error::transient("busy"))
                } else {
                    Ok(())
                }
            }
        }));
    testkit::call(&mut chain, testkit::record("orders").build())
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 3);

    // A std::io::Error below it: classified as a handler failure, not retried.
    let io_calls = Arc::new(AtomicU32::new(0));
    let counted = io_calls.clone();
    let mut chain = ServiceBuilder::new()
        .retry_records(
            RetryPolicy::new(4).backoff(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .service(service_fn(move |_: Record| {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(std::io::Error::other("disk")) }
        }));
    assert!(
        testkit::call(&mut chain, testkit::record("orders").build())
            .await
            .is_err()
    );
    assert_eq!(io_calls.load(Ordering::Relaxed), 1);
}

/// A chain returned from a function, its response type named.
fn orders_chain(dlq: testkit::RecordingProducer) -> BoxRecordService<Outcome<()>> {
    boxed(
        ServiceBuilder::new()
            .catch_record_panic()
            .propagate_consume()
            .dead_letter(dlq)
            .retry_records(RetryPolicy::new(2))
            .service(service_fn(|record: Record| async move {
                match record.value_str() {
                    Ok("bad") => Err(Error::new(ErrorKind::Invalid, "bad order")),
                    _ => Ok(()),
                }
            })),
    )
}

#[tokio::test]
async fn a_chain_can_be_returned_from_a_function_boxed() {
    let dlq = testkit::RecordingProducer::new();
    let mut chain = orders_chain(dlq.clone());
    let mut clone = chain.clone();
    assert!(matches!(
        testkit::call(&mut chain, testkit::record("orders").value("ok").build()).await,
        Ok(Outcome::Handled(()))
    ));
    let outcome = testkit::call(&mut clone, testkit::record("orders").value("bad").build())
        .await
        .unwrap();
    assert!(outcome.is_dead_lettered());
    assert_eq!(dlq.records().len(), 1);
    fn assert_send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    assert_send_sync(&chain);
    let _ready: &mut BoxRecordService<Outcome<()>> = chain.ready().await.unwrap();
}

#[test]
fn layer_builders_never_panic_after_a_clone() {
    use light_kafka::layers::avro::{
        AvroDecodeLayer, AvroEncodeLayer, SchemaRegistry, SchemaVersion,
    };

    let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:1"));
    let decode = AvroDecodeLayer::new(registry.clone()).topic("a");
    let kept = decode.clone();
    let decode = decode.topic("b"); // panicked before: "configure the layer before cloning it"
    let encode = AvroEncodeLayer::new(registry).topic("a", "a-value", SchemaVersion::Latest);
    let kept_encode = encode.clone();
    let encode = encode.topic("b", "b-value", SchemaVersion::Number(1));
    let dlq = DeadLetterLayer::new(testkit::RecordingProducer::new());
    let kept_dlq = dlq.clone();
    let dlq = dlq
        .suffix(".dead")
        .route(ErrorKind::Timeout, Route::DeadLetter);
    // The clones keep what they had.
    assert!(format!("{kept_dlq:?}").contains("\".dlq\""));
    assert!(format!("{dlq:?}").contains("\".dead\""));
    let _ = (kept, decode, kept_encode, encode);
}

#[test]
fn re_exports_spare_a_second_copy_of_the_dependencies() {
    // rdkafka, jsonwebtoken's key types and Avro's Schema, through this crate.
    let mut config = light_kafka::rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", "127.0.0.1:9092");
    let algorithm = light_kafka::layers::jwt::Algorithm::RS256;
    let key = light_kafka::layers::jwt::DecodingKey::from_secret(b"secret");
    let keys = light_kafka::layers::jwt::KeySet::new();
    let _ = (algorithm, key, keys);
    let schema = light_kafka::layers::avro::Schema::parse_str(r#""string""#).unwrap();
    assert_eq!(schema.canonical_form(), r#""string""#);
}

/// `testkit::call` runs the handler in the record's propagation context, as
/// the runtime does: what it produces carries the input's identity and trace.
#[tokio::test]
async fn records_produced_in_a_unit_test_carry_what_they_carry_in_production() {
    let sent = testkit::RecordingProducer::new();
    let producer = ServiceBuilder::new()
        .propagate_produce("shipping")
        .service(sent.clone());
    let mut handler = service_fn(move |order: Record| {
        let producer = producer.clone();
        async move {
            producer
                .oneshot(
                    Record::builder("shipments")
                        .key(order.key().cloned().unwrap())
                        .build(),
                )
                .await
        }
    });
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let order = testkit::record("orders")
        .key("o-1")
        .header(names::CORRELATION_ID, "c-42")
        .header(names::AUTHORIZATION, "Bearer t0k3n")
        .header(names::TRACEPARENT, traceparent)
        .build();
    testkit::call(&mut handler, order).await.unwrap();
    let shipment = &sent.records()[0];
    assert_eq!(shipment.header_str(names::CORRELATION_ID), Some("c-42"));
    assert_eq!(
        shipment.header_str(names::AUTHORIZATION),
        Some("Bearer t0k3n")
    );
    assert_eq!(shipment.header_str(names::TRACEPARENT), Some(traceparent));
    assert_eq!(shipment.header_str(names::CALLER_ID), Some("shipping"));
}
