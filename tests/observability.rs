//! Metrics with a test recorder (service and client views, the lag gauge),
//! audit entries in an audit topic, and every layer in consumer, producer and
//! stream-processor chains.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use light_kafka::builder::ServiceBuilderExt;
use light_kafka::layers::audit::{AuditEntry, AuditLayer, AuditStatus, KafkaSink, verify_chain};
use light_kafka::layers::jwt::{JwtVerifyLayer, KeySet};
use light_kafka::layers::metrics::MetricsLayer;
use light_kafka::layers::trace::TraceLayer;
use light_kafka::record::{Record, names};
use light_kafka::service::consumer::Consumer;
use light_kafka::service::producer::Producer;
use light_kafka::testkit::{self, RecordingProducer};
use light_kafka::{BoxError, Error, ErrorKind};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// One global recorder for this test binary; tests tell their metrics apart by
/// service id.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// (name, sorted labels) → value, for metrics labelled with `service`.
type Seen = HashMap<(String, Vec<(String, String)>), DebugValue>;

/// Everything recorded so far. A snapshot drains the debugging recorder
/// (counters are swapped to zero, histograms emptied), so tests running at
/// the same time would take each other's values: each snapshot is added here.
fn recorded() -> std::sync::MutexGuard<'static, Seen> {
    static RECORDED: OnceLock<Mutex<Seen>> = OnceLock::new();
    let mut recorded = RECORDED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let (name, labels) = key.key().clone().into_parts();
        let mut labels: Vec<(String, String)> = labels
            .into_iter()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let key = (name.as_str().to_owned(), labels);
        match (recorded.get_mut(&key), value) {
            (Some(DebugValue::Counter(total)), DebugValue::Counter(n)) => *total += n,
            (Some(DebugValue::Histogram(all)), DebugValue::Histogram(more)) => all.extend(more),
            (Some(DebugValue::Gauge(_)), DebugValue::Gauge(g)) if g.into_inner() == 0.0 => {}
            (_, value) => {
                recorded.insert(key, value);
            }
        }
    }
    recorded
}

fn metrics_of(service: &str) -> Seen {
    recorded()
        .iter()
        .filter(|((name, labels), _)| {
            labels
                .iter()
                .any(|(k, v)| k == "service.id" && v == service)
                || (name.as_str() == "messaging.kafka.consumer.lag"
                    && labels.iter().any(|(_, v)| v == service))
        })
        .map(|(key, value)| {
            let value = match value {
                DebugValue::Counter(n) => DebugValue::Counter(*n),
                DebugValue::Gauge(g) => DebugValue::Gauge(*g),
                DebugValue::Histogram(all) => DebugValue::Histogram(all.clone()),
            };
            (key.clone(), value)
        })
        .collect()
}

fn counter(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    match seen.get(&(name.to_owned(), wanted.clone())) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!(
            "{name} {wanted:?}: {other:?}; have {:#?}",
            seen.keys().collect::<Vec<_>>()
        ),
    }
}

fn histogram_len(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> usize {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    match seen.get(&(name.to_owned(), wanted)) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("{name}: {other:?}"),
    }
}

fn token(client: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-a".into());
    let claims = serde_json::json!({ "client_id": client, "exp": jsonwebtoken::get_current_timestamp() + 600 });
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(include_bytes!("fixtures/jwt/key-a.pem")).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn metrics_have_service_and_client_views_and_outcome_classes() {
    snapshotter();
    let keys = KeySet::new()
        .rsa_pem(Some("key-a"), include_bytes!("fixtures/jwt/key-a.pub.pem"))
        .unwrap();
    let handler = service_fn(|record: Record| async move {
        match record.value_str().unwrap_or("") {
            "bad" => Err(BoxError::from(Error::new(ErrorKind::Invalid, "bad value"))),
            "crash" => Err(BoxError::from(Error::handler("crash"))),
            _ => Ok(()),
        }
    });
    let dlq = RecordingProducer::new();
    let mut chain = ServiceBuilder::new()
        .layer(MetricsLayer::consume("metrics-svc"))
        .layer(
            light_kafka::layers::dead_letter::DeadLetterLayer::new(dlq).route(
                ErrorKind::Handler,
                light_kafka::layers::dead_letter::Route::Fail,
            ),
        )
        .jwt_verify(JwtVerifyLayer::from_keys(keys))
        .service(handler);
    let with_token = |value: &str, client: &str| {
        testkit::record("orders")
            .value(value.to_owned())
            .header(names::AUTHORIZATION, format!("Bearer {}", token(client)))
            .build()
    };
    for _ in 0..3 {
        testkit::call(&mut chain, with_token("ok", "portal"))
            .await
            .unwrap();
    }
    testkit::call(&mut chain, with_token("bad", "portal"))
        .await
        .unwrap(); // dead-lettered
    testkit::call(&mut chain, with_token("crash", "mobile"))
        .await
        .unwrap_err(); // server error
    testkit::call(&mut chain, testkit::record("orders").value("ok").build())
        .await
        .unwrap(); // no token: dead-lettered auth error

    let seen = metrics_of("metrics-svc");
    let service = |outcome: &'static str| {
        vec![
            ("service.id", "metrics-svc"),
            ("messaging.system", "kafka"),
            ("messaging.operation.name", "process"),
            ("messaging.destination.name", "orders"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(
        counter(
            &seen,
            "messaging.client.consumed.messages",
            &service("success")
        ),
        3
    );
    assert_eq!(
        counter(
            &seen,
            "messaging.client.consumed.messages",
            &service("dead_lettered")
        ),
        2
    );
    assert_eq!(
        counter(
            &seen,
            "messaging.client.consumed.messages",
            &service("server_error")
        ),
        1
    );
    assert_eq!(
        histogram_len(&seen, "messaging.process.duration", &service("success")),
        3
    );

    let client = |id: &'static str, outcome: &'static str| {
        vec![
            ("service.id", "metrics-svc"),
            ("client.id", id),
            ("outcome", outcome),
        ]
    };
    assert_eq!(
        counter(
            &seen,
            "light_kafka.client.consumed.messages",
            &client("portal", "success")
        ),
        3,
        "client view from the verified token"
    );
    assert_eq!(
        counter(
            &seen,
            "light_kafka.client.consumed.messages",
            &client("portal", "dead_lettered")
        ),
        1
    );
    assert_eq!(
        counter(
            &seen,
            "light_kafka.client.consumed.messages",
            &client("mobile", "server_error")
        ),
        1
    );
    assert_eq!(
        counter(
            &seen,
            "light_kafka.client.consumed.messages",
            &client("unknown", "dead_lettered")
        ),
        1,
        "no token: unknown"
    );
    assert_eq!(
        histogram_len(
            &seen,
            "light_kafka.client.process.duration",
            &client("portal", "success")
        ),
        3
    );

    // Failures outside a dead-letter layer are classed by kind.
    let mut bare = ServiceBuilder::new()
        .layer(MetricsLayer::consume("metrics-bare"))
        .jwt_verify(JwtVerifyLayer::from_keys(KeySet::new()))
        .service(testkit::Accept);
    testkit::call(&mut bare, testkit::record("orders").build())
        .await
        .unwrap_err();
    let seen = metrics_of("metrics-bare");
    assert_eq!(
        counter(
            &seen,
            "messaging.client.consumed.messages",
            &[
                ("service.id", "metrics-bare"),
                ("messaging.system", "kafka"),
                ("messaging.operation.name", "process"),
                ("messaging.destination.name", "orders"),
                ("outcome", "auth_error")
            ]
        ),
        1
    );

    // Producer side, with a capped number of client labels.
    let mut producer = ServiceBuilder::new()
        .layer(MetricsLayer::produce("metrics-prod").client_allowlist(["portal"]))
        .service(RecordingProducer::new());
    let mut record = Record::builder("shipments").build();
    light_kafka::context::RecordContext::of(&mut record)
        .update(|f| f.client_id = Some("intruder".into()));
    testkit::call(&mut producer, record).await.unwrap();
    let seen = metrics_of("metrics-prod");
    assert_eq!(
        counter(
            &seen,
            "messaging.client.sent.messages",
            &[
                ("service.id", "metrics-prod"),
                ("messaging.system", "kafka"),
                ("messaging.operation.name", "send"),
                ("messaging.destination.name", "shipments"),
                ("outcome", "success")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            &seen,
            "light_kafka.client.sent.messages",
            &[
                ("service.id", "metrics-prod"),
                ("client.id", "other"),
                ("outcome", "success")
            ]
        ),
        1
    );
    assert_eq!(
        histogram_len(
            &seen,
            "messaging.client.operation.duration",
            &[
                ("service.id", "metrics-prod"),
                ("messaging.system", "kafka"),
                ("messaging.operation.name", "send"),
                ("messaging.destination.name", "shipments"),
                ("outcome", "success")
            ]
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_reports_lag_per_partition_and_audit_entries_reach_the_audit_topic() {
    snapshotter();
    let kafka = common::seeded("ledger", 2, 20, |i| (format!("k{i}"), i.to_string())).await;
    kafka.create_topic("audit", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();

    let consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id("lag-group")
        .topics(["ledger"])
        .commit_interval(Duration::from_millis(100))
        .set("statistics.interval.ms", "100")
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handler = service_fn(|record: Record| async move {
        if record.value_str()? == "13" {
            return Err(BoxError::from(Error::new(ErrorKind::Invalid, "unlucky")));
        }
        Ok::<_, BoxError>(())
    });
    let chain = ServiceBuilder::new()
        .propagate_consume()
        .layer(
            AuditLayer::consumer("ledger-svc", KafkaSink::new(producer.clone(), "audit"))
                .hash_chain(),
        )
        .dead_letter(producer.clone())
        .service(handler);
    let serving = tokio::spawn(consumer.serve(chain));
    assert!(common::eventually(Duration::from_secs(30), || handle.health().processed == 20).await);
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let h = handle.health();
            h.partitions.len() == 2 && h.partitions.iter().all(|p| p.lag == Some(0))
        })
        .await,
        "lag reaches 0: {:?}",
        handle.health()
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let seen = metrics_of("lag-group");
    let lags: Vec<_> = seen
        .iter()
        .filter(|((name, _), _)| name == "messaging.kafka.consumer.lag")
        .collect();
    assert_eq!(lags.len(), 2, "one gauge per partition: {lags:?}");
    assert!(
        lags.iter()
            .all(|(_, v)| matches!(v, DebugValue::Gauge(g) if g.0 == 0.0))
    );

    let records = common::read_topic(
        kafka.bootstrap_servers(),
        "audit",
        1,
        20,
        "read_uncommitted",
        Duration::from_secs(10),
    );
    assert_eq!(records.len(), 20);
    let entries: Vec<AuditEntry> = records
        .iter()
        .map(|r| serde_json::from_str(r.value_str().unwrap()).unwrap())
        .collect();
    for (record, entry) in records.iter().zip(&entries) {
        assert_eq!(
            record.key_str(),
            entry.correlation_id.as_deref(),
            "keyed by correlation id"
        );
        assert_eq!(entry.topic.as_ref(), "ledger");
    }
    // Record 13 was dead-lettered: settled (so committed), but a failure for
    // the audit trail, with the reason the dead-letter layer gave.
    for entry in &entries {
        if entry.key.as_deref() == Some(&b"k13"[..]) {
            assert_eq!(entry.status, AuditStatus::Failure);
            let error = entry.error.as_deref().unwrap();
            assert!(
                error.starts_with("dead-lettered: ") && error.contains("unlucky"),
                "{error}"
            );
        } else {
            assert_eq!(entry.status, AuditStatus::Success, "{entry:?}");
            assert_eq!(entry.error, None);
        }
    }
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.status == AuditStatus::Failure)
            .count(),
        1
    );
    let by_prev: HashMap<_, _> = entries
        .iter()
        .map(|e| (e.prev_hash.clone().unwrap(), e.clone()))
        .collect();
    let mut ordered = vec![
        entries
            .iter()
            .find(|e| !entries.iter().any(|o| o.hash == e.prev_hash))
            .unwrap()
            .clone(),
    ];
    while let Some(next) = by_prev.get(ordered.last().unwrap().hash.as_ref().unwrap()) {
        ordered.push(next.clone());
    }
    assert_eq!(
        ordered.len(),
        20,
        "the audit topic holds one unbroken chain"
    );
    assert_eq!(verify_chain(&ordered), Ok(()));
}

/// Every layer composes in consumer, producer and stream-processor chains.
#[tokio::test]
async fn every_layer_works_in_consumer_producer_and_stream_chains() {
    let audit: Arc<Mutex<Vec<AuditEntry>>> = Arc::default();
    let sink = {
        let audit = audit.clone();
        move |e: AuditEntry| audit.lock().unwrap().push(e)
    };
    let keys = KeySet::new()
        .rsa_pem(Some("key-a"), include_bytes!("fixtures/jwt/key-a.pub.pem"))
        .unwrap();
    let schema = light_kafka::layers::schema::JsonSchemaLayer::new()
        .with_schema(
            "orders",
            &serde_json::json!({"type": "object", "required": ["id"]}),
        )
        .unwrap();
    let record = || {
        testkit::record("orders")
            .value(r#"{"id": 1}"#)
            .header(names::AUTHORIZATION, format!("Bearer {}", token("portal")))
            .build()
    };

    // A stream processor: one record in, records out.
    let processor = service_fn(|record: Record| async move {
        let order = record
            .extensions()
            .get::<light_kafka::layers::schema::ParsedJson>()
            .unwrap()
            .clone();
        Ok::<_, BoxError>(vec![Record::builder("invoices").json(&*order)?.build()])
    });
    let mut stream = ServiceBuilder::new()
        .catch_record_panic()
        .layer(MetricsLayer::consume("streams-svc"))
        .propagate_consume()
        .layer(TraceLayer::consume())
        .layer(AuditLayer::streams("streams-svc", sink.clone()))
        .dead_letter(RecordingProducer::new())
        .retry_records(light_kafka::layers::retry::RetryPolicy::new(2))
        .jwt_verify(JwtVerifyLayer::from_keys(keys.clone()))
        .json_schema(schema.clone())
        .service(processor);
    match testkit::call(&mut stream, record()).await.unwrap() {
        light_kafka::layers::dead_letter::Outcome::Handled(out) => {
            assert_eq!(out[0].topic(), "invoices")
        }
        other => panic!("{other:?}"),
    }

    // A consumer chain with the canonical order.
    let mut consumer = ServiceBuilder::new()
        .catch_record_panic()
        .layer(MetricsLayer::consume("consumer-svc"))
        .propagate_consume()
        .layer(TraceLayer::consume())
        .layer(AuditLayer::consumer("consumer-svc", sink.clone()))
        .dead_letter(RecordingProducer::new())
        .retry_records(light_kafka::layers::retry::RetryPolicy::new(2))
        .jwt_verify(JwtVerifyLayer::from_keys(keys))
        .json_schema(schema.clone())
        .service(testkit::Accept);
    assert!(
        !testkit::call(&mut consumer, record())
            .await
            .unwrap()
            .is_dead_lettered()
    );

    // A producer chain.
    let sent = RecordingProducer::new();
    let mut producer = ServiceBuilder::new()
        .layer(MetricsLayer::produce("producer-svc"))
        .propagate_produce("producer-svc")
        .layer(TraceLayer::produce())
        .layer(AuditLayer::producer("producer-svc", sink))
        .json_schema(schema)
        .service(sent.clone());
    producer
        .ready()
        .await
        .unwrap()
        .call(Record::builder("orders").value(r#"{"id": 2}"#).build())
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);

    let audit = audit.lock().unwrap();
    let types: Vec<_> = audit.iter().map(|e| e.audit_type).collect();
    use light_kafka::layers::audit::AuditType;
    assert_eq!(
        types,
        [AuditType::Streams, AuditType::Consumer, AuditType::Producer]
    );
    assert_eq!(
        audit[0].client_id.as_deref(),
        Some("portal"),
        "outer layers read what the JWT layer learned"
    );
    assert!(audit[0].correlation_id.is_some() && audit[2].correlation_id.is_some());
    assert_eq!(audit[2].caller_id.as_deref(), Some("producer-svc"));
}

/// The metrics layer caches the series of the topic it saw last: records of
/// interleaved topics (and the same topic name in different allocations)
/// still count under their own topic.
#[tokio::test]
async fn records_of_interleaved_topics_count_under_their_own_topic() {
    snapshotter();
    let mut handler = ServiceBuilder::new()
        .layer(MetricsLayer::consume("metrics-topics"))
        .service(testkit::Accept);
    let orders = testkit::record("orders").build();
    for record in [
        orders.clone(),
        testkit::record("payments").build(),
        orders.clone(),
        testkit::record("orders").build(),
        testkit::record("payments").build(),
        orders,
    ] {
        testkit::call(&mut handler, record).await.unwrap();
    }
    let seen = metrics_of("metrics-topics");
    let topic = |name: &'static str| {
        vec![
            ("service.id", "metrics-topics"),
            ("messaging.system", "kafka"),
            ("messaging.operation.name", "process"),
            ("messaging.destination.name", name),
            ("outcome", "success"),
        ]
    };
    let consumed = "messaging.client.consumed.messages";
    assert_eq!(counter(&seen, consumed, &topic("orders")), 4);
    assert_eq!(counter(&seen, consumed, &topic("payments")), 2);
    let duration = "messaging.process.duration";
    assert_eq!(histogram_len(&seen, duration, &topic("orders")), 4);
    assert_eq!(histogram_len(&seen, duration, &topic("payments")), 2);
}
