//! Protobuf in Confluent's wire format with a schema registry stand-in on
//! loopback: round trips through the embedded broker, bytes as Confluent's
//! serializer writes them, poison records dead-lettered, and registry
//! outages retried without committing past the record.

mod common;
mod registry_stub;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use light_kafka::BoxError;
use light_kafka::builder::ServiceBuilderExt as _;
use light_kafka::error::{ErrorKind, classify};
use light_kafka::layers::dead_letter::DeadLetterLayer;
use light_kafka::layers::http_client::Timeouts;
use light_kafka::layers::protobuf::{
    DynamicMessage, ProtobufDecodeLayer, ProtobufEncodeLayer, ProtobufError, ProtobufErrorKind,
    ProtobufRecord, ProtobufValue, compile, encode,
};
use light_kafka::layers::registry::{SchemaRegistry, SchemaVersion, SubjectNameStrategy};
use light_kafka::record::{Record, names};
use light_kafka::service::producer::Producer;
use light_kafka::testkit::{self, Accept};
use registry_stub::Mode;
use serde_json::{Value, json};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

const MONEY: &str = r#"syntax = "proto3";
package common;
message Money { string currency = 1; int64 units = 2; }
"#;

/// Imports `common/money.proto`, registered as its own subject (a registry
/// reference). `Order` is the second top-level message: index path `[1]`.
const ORDER: &str = r#"syntax = "proto3";
package shop;
import "common/money.proto";
message Meta { string source = 1; }
message Order {
  int64 id = 1;
  common.Money total = 2;
  repeated Line lines = 3;
  string customer = 4;
  bool paid = 5;
  Status status = 6;
  message Line { string sku = 1; int32 qty = 2; }
  enum Status { NEW = 0; SHIPPED = 1; }
}
"#;

/// A registry holding `common/money.proto` and the order schema that
/// references it; the order schema's id.
async fn registry_with_order() -> (registry_stub::Registry, u32) {
    let registry = registry_stub::start().await;
    registry.register("common-money", "PROTOBUF", MONEY, json!([]));
    let id = registry.register(
        "orders-value",
        "PROTOBUF",
        ORDER,
        json!([{"name": "common/money.proto", "subject": "common-money", "version": 1}]),
    );
    (registry, id)
}

fn sample(i: i64) -> Value {
    json!({
        "id": i.to_string(),
        "total": {"currency": "CAD", "units": (100 + i).to_string()},
        "lines": [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 1}],
        "customer": format!("c-{i}"),
        "paid": true,
        "status": "SHIPPED",
    })
}

/// Bytes built byte by byte as Confluent's `KafkaProtobufSerializer` writes
/// them (not by this crate's encoder): magic, id, index array, then fields.
fn confluent_order_bytes(id: u32) -> Vec<u8> {
    let mut bytes = vec![0x00]; // magic byte
    bytes.extend_from_slice(&id.to_be_bytes()); // schema id, big-endian
    bytes.extend_from_slice(&[0x02, 0x02]); // index array: length 1, [1] (zig-zag)
    bytes.extend_from_slice(&[0x08, 0x07]); // 1: id = 7
    // 2: total = Money { currency "CAD", units 12 } (7 bytes)
    bytes.extend_from_slice(&[0x12, 0x07, 0x0a, 0x03, b'C', b'A', b'D', 0x10, 0x0c]);
    // 3: lines = [Line { sku "ab", qty 3 }] (6 bytes)
    bytes.extend_from_slice(&[0x1a, 0x06, 0x0a, 0x02, b'a', b'b', 0x10, 0x03]);
    bytes
}

#[tokio::test]
async fn confluent_written_bytes_decode_with_imports_and_nested_messages() {
    let (server, id) = registry_with_order().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let mut decode = ProtobufDecodeLayer::new(registry)
        .topic("orders")
        .layer(service_fn(|record: Record| async move {
            let decoded = record.extensions().get::<ProtobufRecord>().unwrap();
            Ok::<_, BoxError>((
                decoded.schema_id(),
                decoded.descriptor().full_name().to_owned(),
                decoded.to_json()?,
            ))
        }));

    let record = Record::builder("orders")
        .value(confluent_order_bytes(id))
        .build();
    let (schema_id, name, json) = testkit::call(&mut decode, record).await.unwrap();
    assert_eq!((schema_id, name.as_str()), (id, "shop.Order"));
    assert_eq!(
        json,
        json!({"id": "7", "total": {"currency": "CAD", "units": "12"},
               "lines": [{"sku": "ab", "qty": 3}]})
    );

    // A nested message: Order.Line is [1, 0] (length 2, then 1 and 0, zig-zag).
    let mut line = vec![0x00];
    line.extend_from_slice(&id.to_be_bytes());
    line.extend_from_slice(&[0x04, 0x02, 0x00, 0x0a, 0x01, b'x', 0x10, 0x05]);
    let (_, name, json) = testkit::call(&mut decode, Record::builder("orders").value(line).build())
        .await
        .unwrap();
    assert_eq!(name, "shop.Order.Line");
    assert_eq!(json, json!({"sku": "x", "qty": 5}));
    // The schema was fetched by id once (its import through its subject
    // version), then came from the cache.
    assert_eq!(server.id_lookups(), 1);
}

#[tokio::test]
async fn the_encoder_writes_what_the_decoder_and_confluent_read() {
    let (server, id) = registry_with_order().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let subject = SubjectNameStrategy::TopicName.subject("orders", "shop.Order", false);
    let mut encode_layer = ProtobufEncodeLayer::new(registry.clone())
        .topic_message("orders", subject, SchemaVersion::Latest, "shop.Order")
        .layer(service_fn(|record: Record| async move {
            Ok::<_, BoxError>(record.value().cloned().unwrap())
        }));
    let record = Record::builder("orders")
        .json(
            &json!({"id": "7", "total": {"currency": "CAD", "units": "12"},
                      "lines": [{"sku": "ab", "qty": 3}]}),
        )
        .unwrap()
        .build();
    let bytes = testkit::call(&mut encode_layer, record).await.unwrap();
    assert_eq!(&bytes[..], &confluent_order_bytes(id)[..], "byte for byte");

    // A DynamicMessage in the extensions is written as is.
    let mut decode = ProtobufDecodeLayer::new(registry)
        .topic("orders")
        .layer(service_fn(|record: Record| async move {
            Ok::<_, BoxError>(
                record
                    .extensions()
                    .get::<ProtobufRecord>()
                    .unwrap()
                    .message()
                    .clone(),
            )
        }));
    let message: DynamicMessage =
        testkit::call(&mut decode, Record::builder("orders").value(bytes).build())
            .await
            .unwrap();
    let mut record = Record::builder("orders").build();
    record
        .extensions_mut()
        .insert(ProtobufValue(message.clone()));
    assert_eq!(
        testkit::call(&mut encode_layer, record).await.unwrap(),
        encode(id, &message)
    );

    // Values that do not fit the message are invalid, not sent.
    for unfit in [
        json!({"id": "seven"}),
        json!({"no_such_field": 1}),
        json!([1, 2]),
    ] {
        let record = Record::builder("orders").json(&unfit).unwrap().build();
        let err = testkit::call(&mut encode_layer, record).await.unwrap_err();
        assert_eq!(classify(err.as_ref()), ErrorKind::Invalid, "{unfit}: {err}");
    }
    // A message of another type too.
    let other = compile("o.proto", "syntax = \"proto3\"; message O { int32 n = 1; }").unwrap();
    let mut record = Record::builder("orders").build();
    record
        .extensions_mut()
        .insert(ProtobufValue(DynamicMessage::new(
            other.messages().next().unwrap(),
        )));
    let err = testkit::call(&mut encode_layer, record).await.unwrap_err();
    assert_eq!(classify(err.as_ref()), ErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn auto_registration_is_explicit_and_sends_the_schema_type() {
    let server = registry_stub::start().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    // Looking a subject up never registers it: nothing there, nothing sent.
    let mut lookup = ProtobufEncodeLayer::new(registry.clone())
        .topic("money", "money-value", SchemaVersion::Latest)
        .layer(Accept);
    let record = Record::builder("money")
        .json(&json!({"currency": "EUR"}))
        .unwrap()
        .build();
    let err = testkit::call(&mut lookup, record.clone())
        .await
        .unwrap_err();
    let typed = err.downcast_ref::<ProtobufError>().unwrap();
    assert_eq!(typed.protobuf_kind(), ProtobufErrorKind::UnknownSchema);

    let mut registering = ProtobufEncodeLayer::new(registry.clone())
        .topic_registering("money", "money-value", MONEY)
        .layer(service_fn(|record: Record| async move {
            Ok::<_, BoxError>(record.value().cloned().unwrap())
        }));
    let bytes = testkit::call(&mut registering, record.clone())
        .await
        .unwrap();
    assert_eq!(&bytes[..], &[0, 0, 0, 0, 1, 0, 0x0a, 3, b'E', b'U', b'R']);
    assert_eq!(server.schema_type(1).as_deref(), Some("PROTOBUF"));
    // Now the lookup finds it.
    testkit::call(&mut lookup, record).await.unwrap();
}

#[tokio::test]
async fn poison_bytes_are_typed_deserialization_errors() {
    let (server, id) = registry_with_order().await;
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let mut decode = ProtobufDecodeLayer::new(registry)
        .topic("orders")
        .layer(Accept);
    let good = confluent_order_bytes(id);
    let framed = |tail: &[u8]| [&[0u8][..], &id.to_be_bytes(), tail].concat();
    let cases: Vec<(Vec<u8>, ProtobufErrorKind)> = vec![
        (b"{\"id\": 7}".to_vec(), ProtobufErrorKind::Framing),
        (vec![0, 0, 0], ProtobufErrorKind::Framing),
        (framed(&[]), ProtobufErrorKind::Framing),
        (vec![0, 0, 0, 3, 231, 0], ProtobufErrorKind::UnknownSchema),
        (framed(&[0x02, 0x08]), ProtobufErrorKind::UnknownMessage),
        (good[..good.len() - 3].to_vec(), ProtobufErrorKind::Decode),
        (framed(&[0x00, 0xff, 0xff]), ProtobufErrorKind::Decode),
    ];
    for (value, kind) in cases {
        let err = testkit::call(&mut decode, Record::builder("orders").value(value).build())
            .await
            .unwrap_err();
        let typed = err
            .downcast_ref::<ProtobufError>()
            .expect("a ProtobufError");
        assert_eq!(typed.protobuf_kind(), kind, "{typed}");
        assert_eq!(classify(err.as_ref()), ErrorKind::Deserialization);
    }
}

#[tokio::test]
async fn a_registry_that_is_down_or_silent_is_a_transient_failure() {
    let bytes = [0, 0, 0, 0, 1, 0];
    // Nothing listens on the port.
    let closed = Arc::new(SchemaRegistry::new(registry_stub::closed_port().await));
    // Accepts connections and never answers.
    let (silent, accepting) = common::silent_server().await;
    let silent = Arc::new(SchemaRegistry::with_timeouts(
        format!("http://{silent}"),
        Timeouts::new(Duration::from_millis(200), Duration::from_millis(300)),
    ));
    // Answers 503.
    let server = registry_stub::start().await;
    server.set_mode(Mode::Unavailable);
    let unavailable = Arc::new(SchemaRegistry::new(&server.url));
    for registry in [closed, silent, unavailable] {
        let mut decode = ProtobufDecodeLayer::new(registry).topic("t").layer(Accept);
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            testkit::call(
                &mut decode,
                Record::builder("t").value(bytes.to_vec()).build(),
            ),
        )
        .await
        .expect("a timeout, not a hang")
        .unwrap_err();
        let typed = err.downcast_ref::<ProtobufError>().unwrap();
        assert_eq!(
            typed.protobuf_kind(),
            ProtobufErrorKind::Registry,
            "{typed}"
        );
        assert_eq!(classify(err.as_ref()), ErrorKind::Transient);
    }
    accepting.abort();
}

/// Through the embedded broker: records produced by the encode layer are
/// handled; an unknown id, bytes that are not framed and a truncated body
/// are dead-lettered with kind `deserialization`; everything is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_kafka_with_poison_dead_lettered() {
    let (server, id) = registry_with_order().await;
    let kafka = common::Kafka::start();
    kafka.create_topic("pb-orders", 1).unwrap();
    kafka.create_topic("pb-orders.dlq", 1).unwrap();
    let registry = Arc::new(SchemaRegistry::new(&server.url));
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let encoding = ProtobufEncodeLayer::new(registry.clone())
        .topic_message(
            "pb-orders",
            "orders-value",
            SchemaVersion::Number(1),
            "shop.Order",
        )
        .layer(producer.clone());
    let raw = |value: Vec<u8>| {
        Record::builder("pb-orders")
            .key("poison")
            .value(value)
            .build()
    };
    let truncated = {
        let good = confluent_order_bytes(id);
        good[..good.len() - 2].to_vec()
    };
    encoding
        .clone()
        .oneshot(
            Record::builder("pb-orders")
                .json(&sample(2))
                .unwrap()
                .build(),
        )
        .await
        .unwrap();
    producer
        .clone()
        .oneshot(raw(vec![0, 0, 0, 0x10, 0, 0, 0x08, 1]))
        .await
        .unwrap();
    encoding
        .clone()
        .oneshot(
            Record::builder("pb-orders")
                .json(&sample(1))
                .unwrap()
                .build(),
        )
        .await
        .unwrap();
    producer
        .clone()
        .oneshot(raw(b"plain text".to_vec()))
        .await
        .unwrap();
    producer.clone().oneshot(raw(truncated)).await.unwrap();
    producer
        .clone()
        .oneshot(
            Record::builder("pb-orders")
                .value(confluent_order_bytes(id))
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
                let order = record.extensions().get::<ProtobufRecord>().unwrap();
                seen.lock().unwrap().push(order.to_json()?);
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .protobuf_decode(
            ProtobufDecodeLayer::new(Arc::new(SchemaRegistry::new(&server.url))).topic("pb-orders"),
        )
        .service(handler);
    let runtime = common::consumer(&kafka, "pb-readers", "pb-orders")
        .build()
        .unwrap();
    assert!(
        common::serve_until_committed(runtime, chain, 6).await,
        "not all committed"
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], sample(2));
    assert_eq!(seen[1], sample(1));
    assert_eq!(seen[2]["total"]["currency"], "CAD");
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "pb-orders.dlq",
        1,
        3,
        "read_uncommitted",
        Duration::from_secs(10),
    );
    assert_eq!(dead.len(), 3);
    for dead in &dead {
        assert_eq!(dead.key().unwrap().as_ref(), b"poison");
        assert_eq!(
            dead.header_str(names::DLQ_ERROR_KIND),
            Some("deserialization"),
            "{:?}",
            dead.header_str(names::DLQ_ERROR_MESSAGE)
        );
    }
    assert!(
        dead[0]
            .header_str(names::DLQ_ERROR_MESSAGE)
            .unwrap()
            .contains("schema id 4096")
    );
}

/// A registry that times out is an outage: the record is retried, nothing
/// is committed past it and nothing is dead-lettered; once the registry
/// answers, the record is handled and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_the_partition_until_it_recovers() {
    let (server, id) = registry_with_order().await;
    let kafka = common::Kafka::start();
    kafka.create_topic("pb-outage", 1).unwrap();
    kafka.create_topic("pb-outage.dlq", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    for _ in 0..2 {
        producer
            .clone()
            .oneshot(
                Record::builder("pb-outage")
                    .value(confluent_order_bytes(id))
                    .build(),
            )
            .await
            .unwrap();
    }
    server.set_mode(Mode::Hanging);

    let handled = Arc::new(Mutex::new(0));
    let handler = {
        let handled = handled.clone();
        service_fn(move |record: Record| {
            let handled = handled.clone();
            async move {
                assert!(record.extensions().get::<ProtobufRecord>().is_some());
                *handled.lock().unwrap() += 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let registry = Arc::new(SchemaRegistry::with_timeouts(
        &server.url,
        Timeouts::new(Duration::from_millis(200), Duration::from_millis(200)),
    ));
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .layer(ProtobufDecodeLayer::new(registry).topic("pb-outage"))
        .service(handler);
    let runtime = common::consumer(&kafka, "pb-outage", "pb-outage")
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
            .is_some_and(|p| p.committed == Some(2)))
        .await,
        "not handled after the registry came back: {:?}",
        handle.health()
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    assert_eq!(*handled.lock().unwrap(), 2);
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "pb-outage.dlq",
        1,
        usize::MAX,
        "read_uncommitted",
        Duration::from_secs(2),
    );
    assert_eq!(dead.len(), 0, "an outage reached the dead-letter topic");
}
