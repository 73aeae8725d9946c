//! Quickstart: HTTP → Kafka → a consumer chain, on an embedded broker.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Nothing needs to be installed: the Kafka cluster runs inside this process.
//! Point `bootstrap.servers` at a real cluster and the same code runs there.
//!
//! 1. An axum handler receives orders over "HTTP" (called in-process here) and
//!    produces them through the `Producer` service. It copies no headers by
//!    hand: the request's token and correlation id travel into the records.
//! 2. A consumer chain in the canonical layer order verifies each record's
//!    JWT, validates it against a JSON schema, hands it to the handler, and
//!    dead-letters what fails.
//! 3. The program prints what the handler saw, the dead letter, and the
//!    committed offsets.

use std::time::Duration;

use axum::routing::post;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use light_kafka::BoxError;
use light_kafka::builder::ServiceBuilderExt;
use light_kafka::context::RecordContext;
use light_kafka::layers::audit::{AuditEntry, AuditLayer};
use light_kafka::layers::http_context::HttpContextLayer;
use light_kafka::layers::jwt::{JwtVerifyLayer, KeySet};
use light_kafka::layers::retry::RetryPolicy;
use light_kafka::layers::schema::{JsonSchemaLayer, ParsedJson};
use light_kafka::record::{Record, names};
use light_kafka::service::consumer::Consumer;
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::service::producer::Producer;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const SECRET: &[u8] = b"quickstart-demo-secret";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let kafka = EmbeddedKafka::start()?;
    for topic in ["orders", "orders.dlq"] {
        kafka.create_topic(topic, 1)?;
    }
    println!("embedded Kafka listening on {}", kafka.bootstrap_servers());
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()?;

    // --- 1. The HTTP service: one record per POST /orders.
    let api_producer = ServiceBuilder::new()
        .propagate_produce("order-api")
        .service(producer.clone());
    let app = axum::Router::new()
        .route(
            "/orders",
            post(move |body: String| {
                let producer = api_producer.clone();
                async move {
                    let record = Record::builder("orders").key("web").value(body).build();
                    match producer.oneshot(record).await {
                        Ok(delivery) => (
                            StatusCode::ACCEPTED,
                            format!("stored at offset {}", delivery.offset()),
                        ),
                        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
                    }
                }
            }),
        )
        .layer(HttpContextLayer::new());

    let claims = json!({ "iss": "quickstart", "client_id": "web-portal", "user_id": "alice", "scope": "order.w",
                         "exp": jsonwebtoken::get_current_timestamp() + 600 });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )?;
    let orders = [
        r#"{"id": 1, "item": "coffee", "quantity": 2}"#,
        r#"{"id": 2, "item": "tea", "quantity": 1}"#,
        r#"{"id": 3, "item": "cake"}"#, // no quantity: violates the schema
    ];
    for (i, body) in orders.iter().enumerate() {
        let request = Request::post("/orders")
            .header("authorization", format!("Bearer {token}"))
            .header("x-correlation-id", format!("quickstart-{}", i + 1))
            .body(axum::body::Body::from(*body))?;
        let response = app.clone().oneshot(request).await?;
        println!("POST /orders {body} -> {}", response.status());
    }

    // --- 2. The consuming service, layers in the canonical order.
    let schema = json!({
        "type": "object",
        "required": ["id", "item", "quantity"],
        "properties": { "id": { "type": "integer" }, "item": { "type": "string" }, "quantity": { "type": "integer", "minimum": 1 } }
    });
    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("order-service")
        .topics(["orders"])
        .build()?;
    let handle = consumer.handle();
    let handler = service_fn(|record: Record| async move {
        let order = record
            .extensions()
            .get::<ParsedJson>()
            .ok_or("the schema layer parses every record it lets through")?;
        let who = RecordContext::get(&record)
            .map(|c| c.fields())
            .unwrap_or_default();
        println!(
            "handled order {} ({} x {}) for client {} / user {}, correlation {}",
            order["id"],
            order["quantity"],
            order["item"],
            who.client_id.as_deref().unwrap_or("?"),
            who.user_id.as_deref().unwrap_or("?"),
            who.correlation_id.as_deref().unwrap_or("?"),
        );
        Ok::<_, BoxError>(())
    });
    let keys = KeySet::new().hmac_secret(None, SECRET);
    let chain = ServiceBuilder::new()
        .catch_record_panic()
        .metrics_consume("order-service")
        .propagate_consume()
        .trace_consume()
        .audit(AuditLayer::consumer(
            "order-service",
            |entry: AuditEntry| {
                println!(
                    "audit: {} {}[{}]@{} {:?}",
                    entry.status_text(),
                    entry.topic,
                    entry.partition.unwrap_or(0),
                    entry.offset.unwrap_or(0),
                    entry.correlation_id
                );
            },
        ))
        .dead_letter(producer.clone())
        .retry_records(RetryPolicy::new(3))
        .jwt_verify(
            JwtVerifyLayer::builder(keys)
                .algorithms([Algorithm::HS256])
                .issuer(["quickstart"])
                .scopes("orders", ["order.w"])
                .build(),
        )
        .json_schema(JsonSchemaLayer::new().with_schema("orders", &schema)?)
        .service(handler);
    println!("consuming (the embedded broker holds a new group's first join for 3 s)...");
    let serving = tokio::spawn(consumer.serve(chain));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while handle.health().processed < orders.len() as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown(); // every order is settled: stop this demo
    serving.await??;

    // --- 3. What ended where.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "quickstart-reader")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("orders.dlq", 0, Offset::Beginning)?;
    reader.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(message) = reader.poll(Duration::from_millis(100)) {
            let dead = Record::from(&message?);
            println!(
                "dead letter: {} ({}: {}), from {}@{}, correlation {}",
                dead.value_str()?,
                dead.header_str(names::DLQ_ERROR_KIND).unwrap_or("?"),
                dead.header_str(names::DLQ_ERROR_MESSAGE).unwrap_or("?"),
                dead.header_str(names::DLQ_ORIGINAL_TOPIC).unwrap_or("?"),
                dead.header_str(names::DLQ_ORIGINAL_OFFSET).unwrap_or("?"),
                dead.header_str(names::CORRELATION_ID).unwrap_or("?"),
            );
            break;
        }
    }
    for partition in handle.health().partitions {
        println!(
            "committed {}[{}] at offset {:?}",
            partition.topic, partition.partition, partition.committed
        );
    }
    Ok(())
}
