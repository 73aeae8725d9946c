//! Per-record cost of each layer, around a service that accepts at once.
//!
//! ```text
//! cargo bench --bench layers
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
    run(
        c,
        "propagate-consume",
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

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = jwt, propagate
}
criterion_main!(benches);
