//! JSON Schema in Confluent's wire format with a schema registry stand-in on
//! loopback: round trips through the embedded broker, bytes as Confluent's
//! serializer writes them, poison records dead-lettered (`deserialization`
//! or `invalid`), and registry outages retried without committing past the
//! record.

mod common;
mod registry_stub;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use light_kafka::BoxError;
use light_kafka::builder::ServiceBuilderExt as _;
use light_kafka::error::{ErrorKind, classify};
use light_kafka::layers::dead_letter::DeadLetterLayer;
use light_kafka::layers::http_client::Timeouts;
use light_kafka::layers::json_schema_registry::{
    JsonSchemaRecord, JsonSchemaRegistryEncodeLayer, JsonSchemaRegistryError,
    JsonSchemaRegistryErrorKind, JsonSchemaRegistryLayer, ParsedJson, SchemaError,
};
use light_kafka::layers::registry::{SchemaRegistry, SchemaVersion, SubjectNameStrategy};
use light_kafka::record::{Record, names};
use light_kafka::service::producer::Producer;
use light_kafka::testkit::{self, Accept};
use registry_stub::Mode;
use serde_json::{Value, json};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

const ORDER: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "required": ["orderId", "amount", "currency"],
  "properties": {
    "orderId": {"type": "integer"},
    "amount": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "enum": ["CAD", "USD", "EUR"]}
  }
}"#;

/// Bytes built byte by byte as Confluent's `KafkaJsonSchemaSerializer`
/// writes them: magic byte 0, the id as 4 big-endian bytes, the JSON text.
fn confluent_bytes(id: u32, json: &str) -> Vec<u8> {
    let mut bytes = vec![0x00];
    bytes.push((id >> 24) as u8);
    bytes.push((id >> 16) as u8);
    bytes.push((id >> 8) as u8);
    bytes.push(id as u8);
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

#[tokio::test]
async fn confluent_written_bytes_decode_validate_and_are_cached() {
    let server = registry_stub::start().await;
    server.register("other-value", "AVRO", "\"string\"", json!([]));
    let id = server.register("orders-value", "JSON", ORDER, json!([]));
    assert_eq!(id, 2);
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let mut decode = JsonSchemaRegistryLayer::new(registry)
        .topic("orders")
        .layer(service_fn(|record: Record| async move {
            let order = record.extensions().get::<JsonSchemaRecord>().unwrap();
            let parsed = record.extensions().get::<ParsedJson>().unwrap();
            assert_eq!(order.value(), parsed.value());
            Ok::<_, BoxError>((order.schema_id(), order.value().clone()))
        }));
    let text = r#"{"orderId":1001,"amount":12.5,"currency":"CAD"}"#;
    // [0x00, 0x00, 0x00, 0x00, 0x02] then the JSON text.
    let bytes = confluent_bytes(id, text);
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 2]);
    for _ in 0..20 {
        let record = Record::builder("orders").value(bytes.clone()).build();
        let (schema_id, value) = testkit::call(&mut decode, record).await.unwrap();
        assert_eq!(schema_id, 2);
        assert_eq!(value, serde_json::from_str::<Value>(text).unwrap());
    }
    assert_eq!(server.id_lookups(), 1, "compiled once, then cached");

    // Poison, each typed.
    let cases: Vec<(Vec<u8>, ErrorKind, Option<JsonSchemaRegistryErrorKind>)> = vec![
        (
            text.as_bytes().to_vec(),
            ErrorKind::Deserialization,
            Some(JsonSchemaRegistryErrorKind::Framing),
        ),
        (
            vec![0, 0, 0],
            ErrorKind::Deserialization,
            Some(JsonSchemaRegistryErrorKind::Framing),
        ),
        (
            confluent_bytes(999, text),
            ErrorKind::Deserialization,
            Some(JsonSchemaRegistryErrorKind::UnknownSchema),
        ),
        (
            confluent_bytes(1, text),
            ErrorKind::Deserialization,
            Some(JsonSchemaRegistryErrorKind::WrongType),
        ),
        (
            confluent_bytes(id, r#"{"orderId":1001,"amount""#),
            ErrorKind::Deserialization,
            Some(JsonSchemaRegistryErrorKind::NotJson),
        ),
        (
            [&confluent_bytes(id, "")[..], &[0xff, 0xfe]].concat(),
            ErrorKind::Deserialization,
            Some(JsonSchemaRegistryErrorKind::NotJson),
        ),
        (
            confluent_bytes(id, r#"{"orderId":"x","amount":-3,"currency":"CAD"}"#),
            ErrorKind::Invalid,
            None,
        ),
    ];
    for (value, kind, json_kind) in cases {
        let err = testkit::call(&mut decode, Record::builder("orders").value(value).build())
            .await
            .unwrap_err();
        assert_eq!(classify(err.as_ref()), kind, "{err}");
        match json_kind {
            Some(expected) => assert_eq!(
                err.downcast_ref::<JsonSchemaRegistryError>()
                    .unwrap()
                    .json_kind(),
                expected
            ),
            None => assert_eq!(
                err.downcast_ref::<SchemaError>()
                    .unwrap()
                    .violations()
                    .len(),
                2
            ),
        }
    }
}

#[tokio::test]
async fn the_encoder_validates_frames_and_registers_only_when_asked() {
    let server = registry_stub::start().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let subject = SubjectNameStrategy::TopicName.subject("orders", "Order", false);
    let mut lookup = JsonSchemaRegistryEncodeLayer::new(registry.clone())
        .topic("orders", subject.clone(), SchemaVersion::Latest)
        .layer(service_fn(|record: Record| async move {
            Ok::<_, BoxError>(record.value().cloned().unwrap())
        }));
    let text = r#"{"orderId":1,"amount":2,"currency":"USD"}"#;
    let record = Record::builder("orders").value(text).build();
    let err = testkit::call(&mut lookup, record.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<JsonSchemaRegistryError>()
            .unwrap()
            .json_kind(),
        JsonSchemaRegistryErrorKind::UnknownSchema,
        "nothing registered by a lookup"
    );
    assert_eq!(server.schema_type(1), None);

    let schema: Value = serde_json::from_str(ORDER).unwrap();
    let mut registering = JsonSchemaRegistryEncodeLayer::new(registry)
        .topic_registering("orders", subject, &schema)
        .layer(Accept);
    testkit::call(&mut registering, record.clone())
        .await
        .unwrap();
    assert_eq!(server.schema_type(1).as_deref(), Some("JSON"));

    // The lookup now finds it; the JSON text is kept byte for byte.
    let bytes = testkit::call(&mut lookup, record).await.unwrap();
    assert_eq!(&bytes[..], &confluent_bytes(1, text)[..]);

    for (value, expected) in [
        (
            r#"{"orderId":1,"amount":-2,"currency":"USD"}"#,
            ErrorKind::Invalid,
        ),
        ("not json", ErrorKind::Invalid),
    ] {
        let record = Record::builder("orders").value(value).build();
        let err = testkit::call(&mut lookup, record).await.unwrap_err();
        assert_eq!(classify(err.as_ref()), expected, "{err}");
    }
}

#[tokio::test]
async fn a_registry_that_is_down_or_silent_is_a_transient_failure() {
    let bytes = confluent_bytes(1, "{}");
    let closed = Arc::new(SchemaRegistry::new(registry_stub::closed_port().await));
    let (silent, accepting) = common::silent_server().await;
    let silent = Arc::new(SchemaRegistry::with_timeouts(
        format!("http://{silent}"),
        Timeouts::new(Duration::from_millis(200), Duration::from_millis(300)),
    ));
    let server = registry_stub::start().await;
    server.set_mode(Mode::Unavailable);
    let unavailable = Arc::new(SchemaRegistry::new(&server.url));
    for registry in [closed, silent, unavailable] {
        let mut decode = JsonSchemaRegistryLayer::new(registry)
            .topic("t")
            .layer(Accept);
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            testkit::call(
                &mut decode,
                Record::builder("t").value(bytes.clone()).build(),
            ),
        )
        .await
        .expect("a timeout, not a hang")
        .unwrap_err();
        let typed = err.downcast_ref::<JsonSchemaRegistryError>().unwrap();
        assert_eq!(
            typed.json_kind(),
            JsonSchemaRegistryErrorKind::Registry,
            "{typed}"
        );
        assert_eq!(classify(err.as_ref()), ErrorKind::Transient);
    }
    accepting.abort();
}

/// Through the embedded broker: valid records produced by the encode layer
/// are handled; an unknown id and broken JSON are dead-lettered with kind
/// `deserialization`, a schema violation with kind `invalid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_kafka_with_poison_dead_lettered() {
    let server = registry_stub::start().await;
    let id = server.register("js-orders-value", "JSON", ORDER, json!([]));
    let kafka = common::Kafka::start();
    kafka.create_topic("js-orders", 1).unwrap();
    kafka.create_topic("js-orders.dlq", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let encoding = JsonSchemaRegistryEncodeLayer::new(Arc::new(SchemaRegistry::new(&server.url)))
        .topic("js-orders", "js-orders-value", SchemaVersion::Latest)
        .layer(producer.clone());
    let order = |i: i64| json!({"orderId": i, "amount": 10 + i, "currency": "EUR"});
    let raw = |value: Vec<u8>| {
        Record::builder("js-orders")
            .key("poison")
            .value(value)
            .build()
    };
    encoding
        .clone()
        .oneshot(
            Record::builder("js-orders")
                .json(&order(1))
                .unwrap()
                .build(),
        )
        .await
        .unwrap();
    producer
        .clone()
        .oneshot(raw(confluent_bytes(4242, r#"{"orderId":1}"#)))
        .await
        .unwrap();
    producer
        .clone()
        .oneshot(raw(confluent_bytes(id, r#"{"orderId":"#)))
        .await
        .unwrap();
    producer
        .clone()
        .oneshot(raw(confluent_bytes(
            id,
            r#"{"orderId":1002,"amount":-3,"currency":"CAD"}"#,
        )))
        .await
        .unwrap();
    encoding
        .clone()
        .oneshot(
            Record::builder("js-orders")
                .json(&order(2))
                .unwrap()
                .build(),
        )
        .await
        .unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        service_fn(move |record: Record| {
            let seen = seen.clone();
            async move {
                let order = record.extensions().get::<JsonSchemaRecord>().unwrap();
                seen.lock().unwrap().push(order.value().clone());
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .json_schema_registry(
            JsonSchemaRegistryLayer::new(Arc::new(SchemaRegistry::new(&server.url)))
                .topic("js-orders"),
        )
        .service(handler);
    let runtime = common::consumer(&kafka, "js-readers", "js-orders")
        .build()
        .unwrap();
    assert!(
        common::serve_until_committed(runtime, chain, 5).await,
        "not all committed"
    );
    assert_eq!(*seen.lock().unwrap(), [order(1), order(2)]);

    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "js-orders.dlq",
        1,
        3,
        "read_uncommitted",
        Duration::from_secs(10),
    );
    let kinds: Vec<_> = dead
        .iter()
        .map(|d| d.header_str(names::DLQ_ERROR_KIND).unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["deserialization", "deserialization", "invalid"]);
    // The dead letter is the consumed record byte for byte.
    assert_eq!(
        dead[2].value().unwrap().as_ref(),
        &confluent_bytes(id, r#"{"orderId":1002,"amount":-3,"currency":"CAD"}"#)[..]
    );
}

/// A registry answering 503 is an outage: the record is retried, nothing is
/// committed past it and nothing is dead-lettered; once the registry is back
/// the record is handled and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_the_partition_until_it_recovers() {
    let server = registry_stub::start().await;
    let id = server.register("js-outage-value", "JSON", ORDER, json!([]));
    server.set_mode(Mode::Unavailable);
    let kafka = common::Kafka::start();
    kafka.create_topic("js-outage", 1).unwrap();
    kafka.create_topic("js-outage.dlq", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    producer
        .clone()
        .oneshot(
            Record::builder("js-outage")
                .value(confluent_bytes(
                    id,
                    r#"{"orderId":1,"amount":1,"currency":"CAD"}"#,
                ))
                .build(),
        )
        .await
        .unwrap();

    let handled = Arc::new(Mutex::new(0));
    let handler = {
        let handled = handled.clone();
        service_fn(move |_: Record| {
            let handled = handled.clone();
            async move {
                *handled.lock().unwrap() += 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .layer(
            JsonSchemaRegistryLayer::new(Arc::new(SchemaRegistry::new(&server.url)))
                .topic("js-outage"),
        )
        .service(handler);
    let runtime = common::consumer(&kafka, "js-outage", "js-outage")
        .build()
        .unwrap();
    let handle = runtime.handle();
    let serving = tokio::spawn(runtime.serve(chain));

    assert!(
        common::eventually(Duration::from_secs(20), || handle.health().failures >= 3).await,
        "the lookup was not retried: {:?}",
        handle.health()
    );
    assert_eq!(*handled.lock().unwrap(), 0);
    assert!(
        handle
            .health()
            .partitions
            .first()
            .is_none_or(|p| p.committed.unwrap_or(0) == 0),
        "committed past the record: {:?}",
        handle.health()
    );

    server.set_mode(Mode::Up);
    assert!(
        common::eventually(Duration::from_secs(30), || handle
            .health()
            .partitions
            .first()
            .is_some_and(|p| p.committed == Some(1)))
        .await,
        "not handled after the registry came back: {:?}",
        handle.health()
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    assert_eq!(*handled.lock().unwrap(), 1);
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "js-outage", "js-outage", 1),
        [1]
    );
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "js-outage.dlq",
        1,
        usize::MAX,
        "read_uncommitted",
        Duration::from_secs(2),
    );
    assert_eq!(dead.len(), 0, "an outage reached the dead-letter topic");
}
