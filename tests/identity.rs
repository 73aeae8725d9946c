//! End to end: HTTP request → Kafka record → consumer chain with JWT
//! verification → next Kafka record, carrying the same identity and ids.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use light_kafka::BoxError;
use light_kafka::context::RecordContext;
use light_kafka::layers::http_context::HttpContextLayer;
use light_kafka::layers::jwt::{JwtVerifyLayer, KeySet};
use light_kafka::layers::propagate::PropagateLayer;
use light_kafka::record::{Record, names};
use light_kafka::service::consumer::Consumer;
use light_kafka::service::producer::Producer;
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_ids_flow_from_http_through_kafka_and_on() {
    let kafka = common::Kafka::start();
    kafka.create_topic("orders", 1).unwrap();
    kafka.create_topic("shipments", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();

    // --- the HTTP service: produces one record per request, copying nothing by hand.
    let api_producer = ServiceBuilder::new()
        .layer(PropagateLayer::produce("order-api"))
        .service(producer.clone());
    let app = axum::Router::new()
        .route(
            "/orders",
            post(move |body: String| {
                let producer = api_producer.clone();
                async move {
                    let record = Record::builder("orders").key("order-1").value(body).build();
                    match producer.oneshot(record).await {
                        Ok(_) => StatusCode::ACCEPTED,
                        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                    }
                }
            }),
        )
        .layer(HttpContextLayer::new());

    let token = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("key-a".into());
        let claims = json!({
            "iss": "https://auth.example", "sub": "alice", "client_id": "web-portal",
            "scope": "order.w", "exp": jsonwebtoken::get_current_timestamp() + 600,
        });
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(include_bytes!("fixtures/jwt/key-a.pem")).unwrap(),
        )
        .unwrap()
    };
    let request = Request::post("/orders")
        .header("authorization", format!("Bearer {token}"))
        .header("x-correlation-id", "corr-42")
        .header("x-traceability-id", "trace-7")
        .body(axum::body::Body::from(r#"{"item":"coffee"}"#))
        .unwrap();
    assert_eq!(
        app.oneshot(request).await.unwrap().status(),
        StatusCode::ACCEPTED
    );

    // --- the consuming service: verifies the token per record, then produces on.
    let seen = Arc::new(Mutex::new(None));
    let next_producer = ServiceBuilder::new()
        .layer(PropagateLayer::produce("order-service"))
        .service(producer.clone());
    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("order-service")
        .topics(["orders"])
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handler = {
        let (seen, handle) = (seen.clone(), handle.clone());
        service_fn(move |record: Record| {
            let (seen, handle, mut next) = (seen.clone(), handle.clone(), next_producer.clone());
            async move {
                let fields = RecordContext::get(&record).unwrap().fields();
                *seen.lock().unwrap() = Some((
                    record.header_str(names::CORRELATION_ID).map(str::to_owned),
                    fields.correlation_id,
                    fields.client_id,
                    fields.caller_id,
                ));
                let shipment = Record::builder("shipments")
                    .key("order-1")
                    .value("ship it")
                    .build();
                next.ready().await?.call(shipment).await?;
                handle.shutdown();
                Ok::<_, BoxError>(())
            }
        })
    };
    let keys = KeySet::new()
        .rsa_pem(Some("key-a"), include_bytes!("fixtures/jwt/key-a.pub.pem"))
        .unwrap();
    let chain = ServiceBuilder::new()
        .layer(PropagateLayer::consume())
        .layer(
            JwtVerifyLayer::builder(keys)
                .issuer(["https://auth.example"])
                .scopes("orders", ["order.w"])
                .build(),
        )
        .service(handler);
    tokio::time::timeout(Duration::from_secs(30), consumer.serve(chain))
        .await
        .unwrap()
        .unwrap();

    let (header, correlation, client, caller) =
        seen.lock().unwrap().take().expect("the handler ran");
    assert_eq!(header.as_deref(), Some("corr-42"));
    assert_eq!(correlation.as_deref(), Some("corr-42"));
    assert_eq!(
        client.as_deref(),
        Some("web-portal"),
        "the verified client id"
    );
    assert_eq!(
        caller.as_deref(),
        Some("order-api"),
        "the HTTP service stamped its id"
    );

    let shipments = common::read_topic(
        kafka.bootstrap_servers(),
        "shipments",
        1,
        1,
        "read_uncommitted",
        Duration::from_secs(10),
    );
    let shipment = &shipments[0];
    assert_eq!(shipment.header_str(names::CORRELATION_ID), Some("corr-42"));
    assert_eq!(shipment.header_str(names::TRACEABILITY_ID), Some("trace-7"));
    assert_eq!(
        shipment.header_str(names::AUTHORIZATION),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(shipment.header_str(names::CALLER_ID), Some("order-service"));
}
