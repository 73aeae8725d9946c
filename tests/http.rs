//! Records through HTTP: an axum router as a topic's handler, tower-http's
//! layers on records, and a remote backend on loopback (the sidecar).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use light_kafka::builder::ServiceBuilderExt;
use light_kafka::http::HttpAdapter;
use light_kafka::http::backend::HttpBackend;
use light_kafka::layers::http_client::Timeouts;
use light_kafka::layers::retry::RetryPolicy;
use light_kafka::record::names;
use serde::Deserialize;
use tower::ServiceBuilder;

#[derive(Deserialize)]
struct Order {
    id: u32,
    quantity: u32,
}

/// Handles orders: 422 for a zero quantity, 503 for the first two attempts
/// of order 7; counts every attempt per order.
fn orders(attempts: Arc<Mutex<HashMap<u32, u32>>>) -> Router {
    Router::new()
        .route(
            "/orders",
            post(
                |State(attempts): State<Arc<Mutex<HashMap<u32, u32>>>>,
                 Json(order): Json<Order>| async move {
                    let n = {
                        let mut attempts = attempts.lock().unwrap();
                        let n = attempts.entry(order.id).or_default();
                        *n += 1;
                        *n
                    };
                    match (order.id, order.quantity) {
                        (_, 0) => (
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "quantity must be positive",
                        ),
                        (7, _) if n <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "warming up"),
                        _ => (StatusCode::OK, "ok"),
                    }
                },
            ),
        )
        .with_state(attempts)
}

fn order_value(i: usize) -> String {
    let quantity = if i == 3 { 0 } else { 1 };
    format!(r#"{{"id": {i}, "quantity": {quantity}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_handles_a_topic_its_4xx_dead_lettered_its_5xx_retried() {
    let kafka = common::seeded("orders", 1, 10, |i| (format!("k{i}"), order_value(i))).await;
    kafka.create_topic("orders.dlq", 1).unwrap();
    let attempts = Arc::new(Mutex::new(HashMap::new()));
    let dlq = light_kafka::service::producer::Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let runtime = common::consumer(&kafka, "http-orders", "orders")
        .build()
        .unwrap();
    let chain = ServiceBuilder::new()
        .dead_letter(dlq)
        .retry_records(
            RetryPolicy::new(3).backoff(Duration::from_millis(5), Duration::from_millis(20)),
        )
        .service(HttpAdapter::new(orders(attempts.clone())));
    assert!(
        common::serve_until_committed(runtime, chain, 10).await,
        "every record settled"
    );
    let dead = common::read_topic_exactly(kafka.bootstrap_servers(), "orders.dlq", 1, 1);
    assert_eq!(dead[0].header_str(names::DLQ_ERROR_KIND), Some("invalid"));
    assert!(
        dead[0]
            .header_str(names::DLQ_ERROR_MESSAGE)
            .unwrap()
            .contains("422")
    );
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts[&7], 3, "the 503s were retried until it passed");
    assert_eq!(attempts[&3], 1, "a 4xx is not retried");
}

#[tokio::test]
async fn tower_http_layers_run_on_records() {
    use light_kafka::testkit;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
    use tower_http::validate_request::ValidateRequestHeaderLayer;

    let attempts = Arc::new(Mutex::new(HashMap::new()));
    let sensitive = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let marked = sensitive.clone();
    #[allow(deprecated)]
    let router = orders(attempts).layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                http::header::AUTHORIZATION,
            ]))
            .map_request(move |request: http::Request<axum::body::Body>| {
                let token = request.headers().get(http::header::AUTHORIZATION);
                sensitive.store(token.is_some_and(|v| v.is_sensitive()), Ordering::SeqCst);
                request
            })
            .layer(RequestBodyLimitLayer::new(64))
            .layer(ValidateRequestHeaderLayer::bearer("s3cret")),
    );
    let mut handler = HttpAdapter::new(router);
    let kind = |e: light_kafka::BoxError| light_kafka::error::classify(e.as_ref());

    let signed = testkit::record("orders")
        .header("authorization", "Bearer s3cret")
        .value(order_value(1))
        .build();
    testkit::call(&mut handler, signed).await.unwrap();
    assert!(
        marked.load(Ordering::SeqCst),
        "the token reached the router marked sensitive"
    );
    let unsigned = testkit::record("orders").value(order_value(1)).build();
    assert_eq!(
        kind(testkit::call(&mut handler, unsigned).await.unwrap_err()),
        light_kafka::ErrorKind::Unauthorized
    );
    let big = testkit::record("orders")
        .header("authorization", "Bearer s3cret")
        .value(format!(
            r#"{{"id": 1, "quantity": 1, "pad": "{}"}}"#,
            "x".repeat(100)
        ))
        .build();
    assert_eq!(
        kind(testkit::call(&mut handler, big).await.unwrap_err()),
        light_kafka::ErrorKind::Rejected
    );
}

/// A backend on loopback that records the headers of every request and
/// answers `status`.
async fn backend(status: Arc<AtomicU32>) -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().route(
        "/kafka/{topic}",
        post({
            let seen = seen.clone();
            move |headers: HeaderMap| {
                let (seen, status) = (seen.clone(), status.clone());
                async move {
                    seen.lock().unwrap().push(headers);
                    StatusCode::from_u16(status.load(Ordering::SeqCst) as u16).unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/kafka"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_backend_receives_the_records_identity_and_trace_headers() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let kafka = common::Kafka::start();
    kafka.create_topic("sidecar-in", 1).unwrap();
    let producer = light_kafka::service::producer::Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    use tower::ServiceExt;
    for (i, correlation) in [Some("c-1"), None].into_iter().enumerate() {
        let mut record = light_kafka::record::Record::builder("sidecar-in")
            .key(format!("k{i}"))
            .value("{}")
            .header(names::AUTHORIZATION, "Bearer abc")
            .header(names::TRACEPARENT, TRACEPARENT);
        if let Some(id) = correlation {
            record = record.header(names::CORRELATION_ID, id);
        }
        producer.clone().oneshot(record.build()).await.unwrap();
    }
    let (url, seen) = backend(Arc::new(AtomicU32::new(200))).await;
    let runtime = common::consumer(&kafka, "sidecar", "sidecar-in")
        .build()
        .unwrap();
    let handle = runtime.handle();
    let chain = ServiceBuilder::new()
        .propagate_consume()
        .service(HttpAdapter::new(HttpBackend::new(url).unwrap()));
    let serving = tokio::spawn(runtime.serve(chain));
    assert!(common::eventually(Duration::from_secs(30), || seen.lock().unwrap().len() >= 2).await);
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0]["x-correlation-id"], "c-1");
    let generated = seen[1]["x-correlation-id"].to_str().unwrap();
    assert!(
        generated.len() >= 32,
        "a generated correlation id: {generated}"
    );
    for headers in seen.iter() {
        assert_eq!(headers["authorization"], "Bearer abc");
        assert_eq!(headers["traceparent"], TRACEPARENT);
        assert_eq!(headers["x-kafka-topic"], "sidecar-in");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_is_retried_and_nothing_is_committed_until_it_answers() {
    let kafka = common::seeded("backend-down", 1, 3, |i| (format!("k{i}"), "{}".into())).await;
    kafka.create_topic("backend-down.dlq", 1).unwrap();
    // A port nobody listens on (yet), and a backend that refuses 503 meanwhile.
    let status = Arc::new(AtomicU32::new(503));
    let (url, seen) = backend(status.clone()).await;
    let dlq = light_kafka::service::producer::Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = HttpBackend::with_timeouts(
        format!("http://{dead_port}/kafka"),
        Timeouts::new(Duration::from_millis(200), Duration::from_millis(500)),
    )
    .unwrap();
    let up = HttpBackend::new(url).unwrap();
    let switched = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let use_up = switched.clone();
    // The backend is unreachable at first, then answers 503, then 200.
    let backend = tower::service_fn(
        move |request: http::Request<light_kafka::http::RequestBody>| {
            use tower::Service;
            if use_up.load(Ordering::SeqCst) {
                up.clone().call(request)
            } else {
                down.clone().call(request)
            }
        },
    );
    let runtime = common::consumer(&kafka, "backend-down", "backend-down")
        .build()
        .unwrap();
    let handle = runtime.handle();
    let chain = ServiceBuilder::new()
        .dead_letter(dlq)
        .retry_records(
            RetryPolicy::new(2).backoff(Duration::from_millis(5), Duration::from_millis(10)),
        )
        .service(HttpAdapter::new(backend));
    let serving = tokio::spawn(runtime.serve(chain));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = handle.health();
    assert!(
        health
            .partitions
            .iter()
            .all(|p| p.committed.unwrap_or(-1) <= 0),
        "{health:?}"
    );
    switched.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !seen.lock().unwrap().is_empty(),
        "the 503s reached the backend"
    );
    assert!(
        handle
            .health()
            .partitions
            .iter()
            .all(|p| p.committed.unwrap_or(-1) <= 0)
    );
    status.store(200, Ordering::SeqCst);
    let done = common::eventually(Duration::from_secs(30), || {
        handle
            .health()
            .partitions
            .iter()
            .any(|p| p.committed == Some(3))
    })
    .await;
    handle.shutdown();
    serving.await.unwrap().unwrap();
    assert!(done, "settled once the backend answered");
    assert!(
        common::read_topic(
            kafka.bootstrap_servers(),
            "backend-down.dlq",
            1,
            1,
            "read_committed",
            Duration::from_secs(2)
        )
        .is_empty(),
        "an outage is never dead-lettered"
    );
}
