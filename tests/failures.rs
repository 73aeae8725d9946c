//! Validation and failure handling through the embedded broker: mixed input,
//! a failing dead-letter topic, retries under a paused clock, timeouts, and
//! DLQ replay.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use light_kafka::error::{ErrorKind, classify};
use light_kafka::layers::catch_panic::CatchPanicLayer;
use light_kafka::layers::dead_letter::{DeadLetterLayer, Outcome, Route};
use light_kafka::layers::retry::RetryPolicy;
use light_kafka::layers::schema::JsonSchemaLayer;
use light_kafka::record::{Record, names};
use light_kafka::service::producer::Producer;
use light_kafka::service::replay::Replay;
use light_kafka::testkit::{self, RecordingProducer};
use light_kafka::{BoxError, Error};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{Layer, ServiceBuilder, service_fn};

fn order_schema() -> JsonSchemaLayer {
    JsonSchemaLayer::new()
        .with_schema(
            "mixed-orders",
            &json!({
                "type": "object",
                "required": ["id", "total"],
                "properties": { "id": { "type": "integer" }, "total": { "type": "number" } }
            }),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_input_every_record_handled_or_dead_lettered_exactly() {
    const N: usize = 1_000;
    let kafka = common::Kafka::start();
    kafka.create_topic("mixed-orders", 2).unwrap();
    kafka.create_topic("mixed-orders.dlq", 1).unwrap();
    // 10% not JSON, 10% schema violations, 5% handler panics, the rest valid.
    let make = |i: usize| -> (String, String) {
        let value = match i % 20 {
            0 => json!({"id": i, "total": 1.5, "panic": true}).to_string(),
            1 | 11 => format!("{{oops {i}"),
            2 | 12 => json!({"id": format!("x-{i}")}).to_string(),
            _ => json!({"id": i, "total": 1.5}).to_string(),
        };
        (format!("k{i}"), value)
    };
    common::produce(kafka.bootstrap_servers(), "mixed-orders", 2, N, make).await;

    let dlq_producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let handled = Arc::new(Mutex::new(HashMap::<i64, u32>::new()));
    let handler = {
        let handled = handled.clone();
        service_fn(move |record: Record| {
            let handled = handled.clone();
            async move {
                let order = record
                    .extensions()
                    .get::<light_kafka::layers::schema::ParsedJson>()
                    .expect("validated");
                if order["panic"] == true {
                    panic!("handler bug for order {}", order["id"]);
                }
                *handled
                    .lock()
                    .unwrap()
                    .entry(order["id"].as_i64().unwrap())
                    .or_default() += 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = ServiceBuilder::new()
        .layer(CatchPanicLayer::new())
        .layer(DeadLetterLayer::new(dlq_producer))
        .layer(order_schema())
        .service(handler);
    let consumer = common::consumer(&kafka, "mixed", "mixed-orders")
        .build()
        .unwrap();
    let handle = consumer.handle();
    let serving = tokio::spawn(consumer.serve(chain));
    assert!(
        common::eventually(Duration::from_secs(60), || handle.health().processed
            == N as u64)
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let handled = handled.lock().unwrap();
    let expected_valid: HashSet<i64> = (0..N)
        .filter(|i| ![0, 1, 11, 2, 12].contains(&(i % 20)))
        .map(|i| i as i64)
        .collect();
    assert_eq!(
        handled.keys().copied().collect::<HashSet<_>>(),
        expected_valid
    );
    assert!(
        handled.values().all(|&n| n == 1),
        "each valid record handled once"
    );

    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "mixed-orders.dlq",
        1,
        N,
        "read_uncommitted",
        Duration::from_secs(5),
    );
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut originals = HashSet::new();
    for record in &dead {
        let kind = record.header_str(names::DLQ_ERROR_KIND).unwrap().to_owned();
        let i: usize = record.key_str().unwrap()[1..].parse().unwrap();
        let expected = match i % 20 {
            0 => "panic",
            1 | 11 => "deserialization",
            _ => "invalid",
        };
        assert_eq!(kind, expected, "record {i}");
        assert_eq!(
            record.header_str(names::DLQ_ORIGINAL_TOPIC),
            Some("mixed-orders")
        );
        let partition: i32 = record
            .header_str(names::DLQ_ORIGINAL_PARTITION)
            .unwrap()
            .parse()
            .unwrap();
        let offset: i64 = record
            .header_str(names::DLQ_ORIGINAL_OFFSET)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(partition as usize, i % 2);
        assert!(originals.insert((partition, offset)), "dead-lettered once");
        assert!(record.header_str(names::STACK_TRACE).is_some());
        assert!(
            !record
                .header_str(names::DLQ_ERROR_MESSAGE)
                .unwrap()
                .is_empty()
        );
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(kinds["deserialization"], 100);
    assert_eq!(kinds["invalid"], 100);
    assert_eq!(kinds["panic"], 50);
    assert_eq!(handled.len() + dead.len(), N, "the counts add up exactly");
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "mixed", "mixed-orders", 2),
        common::end_offsets(kafka.bootstrap_servers(), "mixed-orders", 2),
        "every input offset committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_topic_holds_the_commit_until_it_recovers() {
    const FAILING: i64 = 5;
    let kafka =
        common::seeded_embedded("payments", 1, 10, |i| (String::new(), i.to_string())).await;
    kafka.create_topic("payments.dlq", 1).unwrap();

    let dlq_producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .set("message.timeout.ms", "2000")
        .build()
        .unwrap();
    let handler = service_fn(|record: Record| async move {
        if record.offset() == Some(FAILING) {
            return Err(BoxError::from(Error::new(ErrorKind::Invalid, "unpayable")));
        }
        Ok(())
    });
    let chain = DeadLetterLayer::new(dlq_producer).layer(handler);
    let consumer = common::consumer(&kafka, "payments", "payments")
        .build()
        .unwrap();
    let handle = consumer.handle();

    // The dead-letter topic refuses writes for a while.
    kafka
        .request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 6],
        )
        .unwrap();
    let serving = tokio::spawn(consumer.serve(chain));
    assert!(
        common::eventually(Duration::from_secs(30), || handle.health().failures >= 3).await,
        "the dead-letter write keeps failing"
    );
    let committed = common::committed(kafka.bootstrap_servers(), "payments", "payments", 1)[0];
    assert!(
        committed <= FAILING,
        "committed {committed} past the unsettled record {FAILING}"
    );
    assert!(
        handle
            .health()
            .last_error
            .unwrap()
            .contains("cannot dead-letter"),
        "the failure is reported"
    );

    // The broker recovers (the injected errors are used up): the record is
    // dead-lettered, settled, and everything is committed.
    assert!(common::eventually(Duration::from_secs(30), || handle.health().processed == 10).await);
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "payments.dlq",
        1,
        1,
        "read_uncommitted",
        Duration::from_secs(5),
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header_str(names::DLQ_ORIGINAL_OFFSET), Some("5"));
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "payments", "payments", 1),
        [10]
    );
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_configured_backoff_on_a_paused_clock() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now();
    let handler = {
        let attempts = attempts.clone();
        service_fn(move |record: Record| {
            let attempts = attempts.clone();
            async move {
                attempts.lock().unwrap().push(start.elapsed());
                match record.value_str().unwrap() {
                    "transient" => Err::<(), _>(BoxError::from(Error::transient("busy"))),
                    _ => Err(BoxError::from(Error::new(
                        ErrorKind::Invalid,
                        "never works",
                    ))),
                }
            }
        })
    };
    let policy = RetryPolicy::new(4)
        .backoff(Duration::from_millis(100), Duration::from_millis(300))
        .jitter(0.0);
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(handler);

    let err = testkit::call(&mut svc, testkit::record("t").value("transient").build())
        .await
        .unwrap_err();
    assert_eq!(classify(err.as_ref()), ErrorKind::Transient);
    let times: Vec<u128> = attempts
        .lock()
        .unwrap()
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(
        times,
        [0, 100, 300, 600],
        "4 attempts, 100 ms then 200 ms then 300 ms (capped)"
    );

    attempts.lock().unwrap().clear();
    let before = start.elapsed();
    testkit::call(&mut svc, testkit::record("t").value("invalid").build())
        .await
        .unwrap_err();
    assert_eq!(
        attempts.lock().unwrap().len(),
        1,
        "non-transient kinds are not retried"
    );
    assert_eq!(start.elapsed(), before, "and cost no time");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_in_the_chain_is_classified_and_routed() {
    let dlq = RecordingProducer::new();
    let slow_calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let slow_calls = slow_calls.clone();
        service_fn(move |_: Record| {
            slow_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = |route: Route| {
        ServiceBuilder::new()
            .layer(DeadLetterLayer::new(dlq.clone()).route(ErrorKind::Timeout, route))
            .layer(TimeoutLayer::new(Duration::from_millis(50)))
            .service(handler.clone())
    };
    let outcome = testkit::call(&mut chain(Route::DeadLetter), testkit::record("t").build())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::DeadLettered(ref d) if d.kind == ErrorKind::Timeout));
    assert_eq!(
        dlq.records()[0].header_str(names::DLQ_ERROR_KIND),
        Some("timeout")
    );

    let err = testkit::call(&mut chain(Route::Fail), testkit::record("t").build())
        .await
        .unwrap_err();
    assert_eq!(classify(err.as_ref()), ErrorKind::Timeout);
    assert_eq!(slow_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_to_the_original_topic_and_then_succeed() {
    let kafka = common::Kafka::start();
    kafka.create_topic("invoices", 1).unwrap();
    kafka.create_topic("invoices.dlq", 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    for i in 0..6 {
        let record = Record::builder("invoices")
            .value(i.to_string())
            .header(names::CORRELATION_ID, format!("corr-{i}"))
            .build();
        tower::ServiceExt::oneshot(producer.clone(), record)
            .await
            .unwrap();
    }

    // A bug makes odd invoices fail; they go to the dead-letter topic.
    let bug = Arc::new(AtomicBool::new(true));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (bug, handled) = (bug.clone(), handled.clone());
        service_fn(move |record: Record| {
            let (bug, handled) = (bug.clone(), handled.clone());
            async move {
                let n: u32 = record.value_str()?.parse()?;
                if bug.load(Ordering::SeqCst) && n % 2 == 1 {
                    return Err(BoxError::from(Error::handler("rounding bug")));
                }
                assert!(
                    !record.headers().contains(names::DLQ_ERROR_KIND),
                    "DLQ headers are stripped"
                );
                handled.lock().unwrap().push((
                    n,
                    record.header_str(names::CORRELATION_ID).map(str::to_owned),
                ));
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = DeadLetterLayer::new(producer.clone()).layer(handler);
    let consumer = common::consumer(&kafka, "invoices", "invoices")
        .build()
        .unwrap();
    let handle = consumer.handle();
    let serving = tokio::spawn(consumer.serve(chain));
    assert!(common::eventually(Duration::from_secs(30), || handle.health().processed == 6).await);
    assert_eq!(handled.lock().unwrap().len(), 3);

    // The bug is fixed; replay the dead letters.
    bug.store(false, Ordering::SeqCst);
    let report = Replay::new(kafka.bootstrap_servers(), "invoices.dlq")
        .run()
        .await
        .unwrap();
    assert_eq!((report.replayed, report.skipped), (3, 0));
    assert!(
        common::eventually(Duration::from_secs(30), || handled.lock().unwrap().len()
            == 6)
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let handled = handled.lock().unwrap().clone();
    let mut numbers: Vec<u32> = handled.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5]);
    assert!(
        handled
            .iter()
            .all(|(n, c)| c.as_deref() == Some(format!("corr-{n}").as_str())),
        "original headers kept"
    );

    // An offset range replays only part of the dead-letter topic, to another topic.
    kafka.create_topic("invoices.review", 1).unwrap();
    let partial = Replay::new(kafka.bootstrap_servers(), "invoices.dlq")
        .to_topic("invoices.review")
        .offsets(1..3)
        .run()
        .await
        .unwrap();
    assert_eq!(partial.replayed, 2);
}

/// Replaying a topic that does not exist is an error, not "replayed 0"; an
/// unreachable cluster fails within the configured timeout, typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_errors_are_typed_and_bounded() {
    use light_kafka::service::replay::ReplayError;

    let kafka = common::Kafka::start();
    kafka.create_topic("replay-exists", 1).unwrap();
    let err = Replay::new(kafka.bootstrap_servers(), "no-such-topic.dlq")
        .timeout(Duration::from_secs(10))
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReplayError::UnknownTopic(topic) if topic == "no-such-topic.dlq"),
        "{err}"
    );
    assert_eq!(classify(&err), ErrorKind::Config);

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        Replay::new(&closed.to_string(), "orders.dlq")
            .timeout(Duration::from_secs(2))
            .run(),
    )
    .await
    .expect("the replay must give up within its timeout")
    .unwrap_err();
    assert!(
        matches!(err, ReplayError::Unreachable { timeout, .. } if timeout == Duration::from_secs(2)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
