//! Per-record cost of each layer, around a service that accepts at once.
//!
//! ```text
//! cargo bench --bench layers
//! cargo bench --bench layers --features protobuf -- protobuf-decode
//! ```
//!
//! Each iteration gets a fresh record (its construction is not timed) and
//! drives the layer's future to completion without an executor: every layer's
//! fast path completes on the first poll.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use light_kafka::context::{self, Propagation};
use light_kafka::layers::jwt::{JwtVerifyLayer, KeySet};
use light_kafka::layers::propagate::PropagateLayer;
use light_kafka::record::{Record, names};
use light_kafka::testkit::{self, Accept};
use tower::{Layer, Service};

const KEY: &[u8] = include_bytes!("../tests/fixtures/jwt/key-a.pem");
const KEY_PUB: &[u8] = include_bytes!("../tests/fixtures/jwt/key-a.pub.pem");

fn token() -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-a".into());
    let claims = serde_json::json!({
        "iss": "https://auth.example", "sub": "alice", "client_id": "portal", "user_id": "alice",
        "scope": ["order.r", "order.w"], "exp": jsonwebtoken::get_current_timestamp() + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(KEY).unwrap()).unwrap()
}

/// A consumed record as it arrives from another light-kafka service.
fn consumed(token: &str) -> Record {
    testkit::record("orders")
        .key("order-42")
        .value(r#"{"item":"coffee","quantity":2}"#)
        .header(
            names::CORRELATION_ID,
            "0196a6f0-6d2c-7000-8000-000000000001",
        )
        .header(names::TRACEABILITY_ID, "trace-1")
        .header(names::AUTHORIZATION, format!("Bearer {token}"))
        .header(names::CALLER_ID, "order-api")
        .header(
            names::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .build()
}

fn run<S>(c: &mut Criterion, name: &str, mut service: S, record: Record)
where
    S: Service<Record>,
    S::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.iter_batched(
            || record.clone(),
            |record| {
                let future = service.call(record);
                black_box(future.now_or_never().expect("ready").expect("ok"))
            },
            BatchSize::SmallInput,
        )
    });
}

fn jwt(c: &mut Criterion) {
    let token = token();
    let keys = KeySet::new().rsa_pem(Some("key-a"), KEY_PUB).unwrap();
    let cached = JwtVerifyLayer::builder(keys.clone())
        .issuer(["https://auth.example"])
        .build();
    run(
        c,
        "jwt-verify-cached",
        cached.layer(Accept),
        consumed(&token),
    );
    let uncached = JwtVerifyLayer::builder(keys)
        .issuer(["https://auth.example"])
        .cache_capacity(0)
        .build();
    run(
        c,
        "jwt-verify-rs256-uncached",
        uncached.layer(Accept),
        consumed(&token),
    );
}

fn propagate(c: &mut Criterion) {
    let token = token();
    // A record from a client that sends no ids: one is generated (UUID v7).
    run(
        c,
        "propagate-consume",
        PropagateLayer::consume().layer(Accept),
        testkit::record("orders")
            .key("order-42")
            .value(r#"{"item":"coffee","quantity":2}"#)
            .build(),
    );
    run(
        c,
        "propagate-consume-ids-present",
        PropagateLayer::consume().layer(Accept),
        consumed(&token),
    );
    let current = Propagation::from_headers(consumed(&token).headers());
    let outgoing = Record::builder("shipments")
        .key("order-42")
        .value("ship it")
        .build();
    context::sync_scope(current, || {
        run(
            c,
            "propagate-produce",
            PropagateLayer::produce("order-service").layer(Accept),
            outgoing,
        );
    });
}

/// An order of about 1 KiB and a schema that checks all of it.
fn order_1kb() -> (serde_json::Value, String) {
    let schema = serde_json::json!({
        "type": "object",
        "required": ["id", "customer", "items", "total", "currency", "created"],
        "properties": {
            "id": { "type": "integer", "minimum": 1 },
            "customer": {
                "type": "object",
                "required": ["id", "email"],
                "properties": {
                    "id": { "type": "string", "minLength": 1 },
                    "email": { "type": "string", "pattern": "^[^@]+@[^@]+$" },
                    "tier": { "enum": ["basic", "gold", "platinum"] }
                }
            },
            "items": {
                "type": "array", "minItems": 1, "maxItems": 50,
                "items": {
                    "type": "object",
                    "required": ["sku", "quantity", "price"],
                    "properties": {
                        "sku": { "type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$" },
                        "quantity": { "type": "integer", "minimum": 1 },
                        "price": { "type": "number", "minimum": 0 },
                        "note": { "type": "string", "maxLength": 200 }
                    }
                }
            },
            "total": { "type": "number", "minimum": 0 },
            "currency": { "enum": ["EUR", "USD", "CAD"] },
            "created": { "type": "string" }
        }
    });
    let items: Vec<_> = (0..10)
        .map(|i| serde_json::json!({ "sku": format!("ABC-{:04}", 1000 + i), "quantity": i + 1, "price": 9.99, "note": "gift wrap, leave at the door" }))
        .collect();
    let order = serde_json::json!({
        "id": 42,
        "customer": { "id": "c-1234567", "email": "alice@example.com", "tier": "gold" },
        "items": items,
        "total": 359.64,
        "currency": "CAD",
        "created": "2026-11-26T22:24:51Z"
    });
    (schema, order.to_string())
}

fn schema(c: &mut Criterion) {
    use light_kafka::layers::schema::JsonSchemaLayer;
    let (schema, order) = order_1kb();
    assert!((900..1200).contains(&order.len()), "{} bytes", order.len());
    let layer = JsonSchemaLayer::new()
        .with_schema("orders", &schema)
        .unwrap();
    run(
        c,
        "schema-validate-1kb",
        layer.layer(Accept),
        testkit::record("orders").value(order).build(),
    );
}

fn avro(c: &mut Criterion) {
    use light_kafka::layers::avro::{AvroDecodeLayer, SchemaRegistry, wire};
    use std::sync::Arc;
    let schema = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"Order","fields":[
            {"name":"id","type":"long"},
            {"name":"customer","type":"string"},
            {"name":"sku","type":"string"},
            {"name":"quantity","type":"int"},
            {"name":"price","type":"double"},
            {"name":"currency","type":"string"}]}"#,
    )
    .unwrap();
    let value = apache_avro::types::Value::Record(vec![
        ("id".into(), apache_avro::types::Value::Long(42)),
        (
            "customer".into(),
            apache_avro::types::Value::String("c-1234567".into()),
        ),
        (
            "sku".into(),
            apache_avro::types::Value::String("ABC-1000".into()),
        ),
        ("quantity".into(), apache_avro::types::Value::Int(2)),
        ("price".into(), apache_avro::types::Value::Double(9.99)),
        (
            "currency".into(),
            apache_avro::types::Value::String("CAD".into()),
        ),
    ]);
    let bytes = wire::encode(7, &schema, value).unwrap();
    // The schema is cached, as after the first record of its id.
    let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:1"));
    registry.insert(7, Arc::new(schema));
    let layer = AvroDecodeLayer::new(registry).topic("orders");
    run(
        c,
        "avro-decode-cached",
        layer.layer(Accept),
        testkit::record("orders").value(bytes).build(),
    );
}

/// A realistic order of ten fields, as JSON (the Protobuf JSON mapping of
/// `ORDER_PROTO`'s `Order` too).
#[cfg(any(feature = "json-schema", feature = "protobuf"))]
const ORDER_JSON: &str = r#"{"id":"42","customer":"c-1234567","sku":"ABC-1000","quantity":2,
    "price":9.99,"currency":"CAD","paid":true,"createdAt":"1733600000000",
    "channel":"web","note":"leave at the door"}"#;

/// The Confluent-framed JSON Schema decode and validation, the schema
/// compiled and cached as after the first record of its id.
#[cfg(feature = "json-schema")]
fn json_schema_registry(c: &mut Criterion) {
    use light_kafka::layers::json_schema_registry::{JsonSchemaRegistryLayer, encode};
    use light_kafka::layers::registry::{RegisteredSchema, SchemaRegistry, SchemaType};
    use std::sync::Arc;
    let schema = r#"{"type":"object",
        "required":["id","customer","sku","quantity","price","currency"],
        "properties":{
            "id":{"type":"string"},"customer":{"type":"string"},"sku":{"type":"string"},
            "quantity":{"type":"integer","minimum":1},"price":{"type":"number","minimum":0},
            "currency":{"type":"string","enum":["CAD","USD","EUR"]},"paid":{"type":"boolean"},
            "createdAt":{"type":"string"},"channel":{"type":"string"},"note":{"type":"string"}}}"#;
    let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:1"));
    registry.insert_schema(RegisteredSchema::new(7, SchemaType::Json, schema));
    let mut service = JsonSchemaRegistryLayer::new(registry)
        .topic("orders")
        .layer(Accept);
    let value: serde_json::Value = serde_json::from_str(ORDER_JSON).unwrap();
    let record = testkit::record("orders").value(encode(7, &value)).build();
    // The first record fetches nothing (the schema is known) but compiles it.
    service
        .call(record.clone())
        .now_or_never()
        .expect("ready")
        .expect("ok");
    run(c, "jsonschema-sr-decode", service, record);
}

#[cfg(not(feature = "json-schema"))]
fn json_schema_registry(_: &mut Criterion) {}

/// `.proto` text of the benched message: ten fields.
#[cfg(feature = "protobuf")]
const ORDER_PROTO: &str = r#"syntax = "proto3";
package shop;
message Order {
  int64 id = 1; string customer = 2; string sku = 3; int32 quantity = 4;
  double price = 5; string currency = 6; bool paid = 7; int64 created_at = 8;
  string channel = 9; string note = 10;
}"#;

/// The Confluent-framed Protobuf decode into a `DynamicMessage`, the schema
/// compiled and cached as after the first record of its id.
#[cfg(feature = "protobuf")]
fn protobuf(c: &mut Criterion) {
    use light_kafka::layers::protobuf::{DynamicMessage, ProtobufDecodeLayer, compile, encode};
    use light_kafka::layers::registry::{RegisteredSchema, SchemaRegistry, SchemaType};
    use std::sync::Arc;
    let file = compile("order.proto", ORDER_PROTO).unwrap();
    let descriptor = file.messages().next().unwrap();
    let mut json = serde_json::Deserializer::from_str(ORDER_JSON);
    let message = DynamicMessage::deserialize(descriptor, &mut json).unwrap();
    let bytes = encode(7, &message);
    let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:1"));
    registry.insert_schema(RegisteredSchema::new(7, SchemaType::Protobuf, ORDER_PROTO));
    let mut service = ProtobufDecodeLayer::new(registry)
        .topic("orders")
        .layer(Accept);
    let record = testkit::record("orders").value(bytes).build();
    // The first record compiles the schema (the deferred path, on an executor).
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(service.call(record.clone()))
        .unwrap();
    run(c, "protobuf-decode", service, record);
}

#[cfg(not(feature = "protobuf"))]
fn protobuf(_: &mut Criterion) {}

fn dead_letter(c: &mut Criterion) {
    use light_kafka::layers::dead_letter::DeadLetterLayer;
    use light_kafka::{BoxError, Error, ErrorKind};
    // A producer that accepts at once, so only the layer's own work is timed.
    let sink = tower::service_fn(|_: Record| std::future::ready(Ok::<_, BoxError>(())));
    let failing = tower::service_fn(|_: Record| {
        std::future::ready(Err::<(), _>(BoxError::from(Error::new(
            ErrorKind::Invalid,
            "no such product",
        ))))
    });
    let layer = DeadLetterLayer::new(sink);
    run(
        c,
        "dead-letter-path",
        layer.layer(failing),
        consumed(&token()),
    );
}

fn observability(c: &mut Criterion) {
    use light_kafka::layers::audit::{AuditLayer, NullSink};
    use light_kafka::layers::metrics::MetricsLayer;
    use light_kafka::layers::trace::TraceLayer;
    // A real recorder, as in production (Prometheus with its upkeep, without
    // its HTTP server); no tracing subscriber and so no OpenTelemetry exporter.
    let _ = light_kafka::layers::metrics::prometheus::install_recorder(
        light_kafka::layers::metrics::prometheus::UPKEEP_INTERVAL,
    );
    let record = consumed(&token());
    // What every row below pays besides its layer: the call of a service that
    // accepts at once, and dropping the six-header record.
    run(c, "baseline-accept", Accept, record.clone());
    run(
        c,
        "trace-consume",
        TraceLayer::consume().group("billing").layer(Accept),
        record.clone(),
    );
    run(
        c,
        "metrics-consume",
        MetricsLayer::consume("billing").layer(Accept),
        record.clone(),
    );
    run(
        c,
        "audit-consume",
        AuditLayer::consumer("billing", NullSink).layer(Accept),
        record.clone(),
    );
    let stack = tower::ServiceBuilder::new()
        .layer(MetricsLayer::consume("billing"))
        .layer(PropagateLayer::consume())
        .layer(TraceLayer::consume().group("billing"))
        .layer(AuditLayer::consumer("billing", NullSink))
        .service(Accept);
    run(c, "observability-stack", stack, record);
}

/// A record through the HTTP adapter into an axum router whose handler
/// extracts the JSON body and answers 200.
fn http_adapter(c: &mut Criterion) {
    use axum::routing::post;
    #[derive(serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        item: String,
    }
    let router = axum::Router::new().route(
        "/orders",
        post(|axum::Json(order): axum::Json<Order>| async move {
            black_box(order);
            axum::http::StatusCode::OK
        }),
    );
    let record = consumed(&token());
    run(
        c,
        "http-adapter",
        light_kafka::http::HttpAdapter::new(router),
        record,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = jwt, propagate, schema, avro, json_schema_registry, protobuf, dead_letter, observability, http_adapter
}
criterion_main!(benches);
