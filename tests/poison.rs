//! Poison records and stuck partitions, with bytes another client wrote:
//! header names that are not UTF-8, dead letters too large for the broker,
//! outages that must not reach the dead-letter topic, and dead letters that
//! are the consumed record byte for byte.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::{self, RawRecord};
use light_kafka::error::{ErrorKind, classify};
use light_kafka::layers::dead_letter::DeadLetterLayer;
use light_kafka::layers::propagate::PropagateLayer;
use light_kafka::record::{Record, Timestamp, names};
use light_kafka::service::consumer::{ConsumerError, ErrorPolicy};
use light_kafka::service::producer::Producer;
use light_kafka::{BoxError, Error};
use tower::{ServiceBuilder, service_fn};

fn plain(value: &str) -> RawRecord {
    RawRecord {
        key: Some(b"k".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
        timestamp: 1_600_000_000_000,
    }
}

/// A record whose second header name is not UTF-8.
fn bad_name() -> RawRecord {
    RawRecord {
        key: Some(b"k-bad".to_vec()),
        value: Some(vec![0, 159, 146, 150]),
        headers: vec![
            (b"good".to_vec(), Some(b"yes".to_vec())),
            (b"bad-\xff\xfe".to_vec(), Some(b"x".to_vec())),
            (b"X-Correlation-Id".to_vec(), Some(b"c-bad".to_vec())),
        ],
        timestamp: 1_600_000_000_001,
    }
}

#[test]
fn the_raw_client_frames_batches_with_crc32c() {
    assert_eq!(raw::crc32c(b"123456789"), 0xE306_9283);
}

#[allow(clippy::type_complexity)]
fn recording() -> (
    Arc<Mutex<Vec<String>>>,
    impl tower::Service<
        Record,
        Response = (),
        Error = BoxError,
        Future = impl Future<Output = Result<(), BoxError>> + Send,
    > + Clone
    + Send
    + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        service_fn(move |record: Record| {
            let seen = seen.clone();
            async move {
                let value = String::from_utf8_lossy(record.value().unwrap()).into_owned();
                seen.lock().unwrap().push(value);
                Ok::<_, BoxError>(())
            }
        })
    };
    (seen, handler)
}

/// rdkafka panics on a header name that is not UTF-8. The runtime must not:
/// the record is dead-lettered (raw key and value, the headers that could be
/// read, kind `deserialization`) and the records behind it are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_not_a_crash() {
    let kafka = common::Kafka::start();
    kafka.create_topic("bad-names", 1).unwrap();
    kafka.create_topic("bad-names.dlq", 1).unwrap();
    raw::produce(
        kafka.bootstrap_servers(),
        "bad-names",
        0,
        &[plain("before"), bad_name(), plain("after")],
    );
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let (seen, handler) = recording();
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .service(handler);
    let runtime = common::consumer(&kafka, "bad-names", "bad-names")
        .build()
        .unwrap();
    let handle = runtime.handle();
    let serving = tokio::spawn(runtime.serve(chain));
    let committed_all = || {
        handle
            .health()
            .partitions
            .first()
            .is_some_and(|p| p.committed == Some(3))
    };
    assert!(
        common::eventually(Duration::from_secs(30), committed_all).await,
        "the runtime got stuck: {:?}",
        handle.health()
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    assert_eq!(*seen.lock().unwrap(), ["before", "after"]);
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "bad-names.dlq",
        1,
        1,
        "read_uncommitted",
        Duration::from_secs(10),
    );
    assert_eq!(dead.len(), 1);
    let dead = &dead[0];
    assert_eq!(dead.key().unwrap().as_ref(), b"k-bad");
    assert_eq!(dead.value().unwrap().as_ref(), &[0, 159, 146, 150]);
    assert_eq!(dead.header_str("good"), Some("yes"));
    assert_eq!(dead.header_str(names::CORRELATION_ID), Some("c-bad"));
    assert_eq!(
        dead.header_str(names::DLQ_ERROR_KIND),
        Some("deserialization")
    );
    assert!(
        dead.header_str(names::DLQ_ERROR_MESSAGE)
            .unwrap()
            .contains("not UTF-8")
    );
}

/// Without a dead-letter layer the same record is a typed error under the
/// error policy, even though the handler returned `Ok` for what it could see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_layer_a_bad_header_name_is_a_typed_error() {
    let kafka = common::Kafka::start();
    kafka.create_topic("bad-names-fail-fast", 1).unwrap();
    raw::produce(
        kafka.bootstrap_servers(),
        "bad-names-fail-fast",
        0,
        &[plain("before"), bad_name(), plain("after")],
    );
    let (seen, handler) = recording();
    let runtime = common::consumer(&kafka, "bad-names-fail-fast", "bad-names-fail-fast")
        .error_policy(ErrorPolicy::FailFast)
        .build()
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), runtime.serve(handler))
        .await
        .expect("the runtime stops on the poison record");
    let Err(ConsumerError::Handler { offset, source, .. }) = outcome else {
        panic!("expected a handler error, got {outcome:?}");
    };
    assert_eq!(offset, 1);
    assert_eq!(classify(source.as_ref()), ErrorKind::Deserialization);
    assert_eq!(seen.lock().unwrap()[0], "before");
    assert_eq!(
        common::committed(
            kafka.bootstrap_servers(),
            "bad-names-fail-fast",
            "bad-names-fail-fast",
            1
        ),
        [1],
        "nothing committed past the poison record"
    );
}

/// The dead letter is the consumed record: key, value, every header with its
/// name as written (case kept), in order, null, empty and non-UTF-8 values,
/// the timestamp; then the `dlq.*` headers. The propagate layer changes none
/// of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_the_consumed_record_byte_for_byte() {
    let kafka = common::Kafka::start();
    kafka.create_topic("faithful", 1).unwrap();
    kafka.create_topic("faithful.dlq", 1).unwrap();
    let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
        (b"x-correlation-id".to_vec(), Some(b"lower-case".to_vec())),
        (b"Dup".to_vec(), Some(b"first".to_vec())),
        (b"dup".to_vec(), Some(b"second".to_vec())),
        (b"nothing".to_vec(), None),
        (b"empty".to_vec(), Some(Vec::new())),
        (b"binary".to_vec(), Some(vec![0xff, 0x00, 0xfe])),
        (b"authorization".to_vec(), Some(b"Bearer abc".to_vec())),
        (b"StackTrace".to_vec(), Some(b"from upstream".to_vec())),
    ];
    raw::produce(
        kafka.bootstrap_servers(),
        "faithful",
        0,
        &[RawRecord {
            key: Some(vec![1, 2, 3]),
            value: Some(b"{\"not\": \"valid\"}".to_vec()),
            headers: headers.clone(),
            timestamp: 1_234_567_890_123,
        }],
    );
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let chain = ServiceBuilder::new()
        .layer(PropagateLayer::consume())
        .layer(DeadLetterLayer::new(producer))
        .service(service_fn(|_: Record| async {
            Err::<(), _>(Error::new(ErrorKind::Invalid, "no such order"))
        }));
    let runtime = common::consumer(&kafka, "faithful", "faithful")
        .build()
        .unwrap();
    let handle = runtime.handle();
    let serving = tokio::spawn(runtime.serve(chain));
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "faithful.dlq",
        1,
        1,
        "read_uncommitted",
        Duration::from_secs(30),
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    assert_eq!(dead.len(), 1);
    let dead = &dead[0];
    assert_eq!(dead.key().unwrap().as_ref(), &[1, 2, 3]);
    assert_eq!(dead.value().unwrap().as_ref(), b"{\"not\": \"valid\"}");
    assert_eq!(dead.timestamp(), Timestamp::CreateTime(1_234_567_890_123));
    let read: Vec<(Vec<u8>, Option<Vec<u8>>)> = dead
        .headers()
        .iter()
        .map(|h| (h.name().as_bytes().to_vec(), h.value().map(|v| v.to_vec())))
        .collect();
    assert_eq!(
        read[..headers.len()],
        headers[..],
        "the consumed headers, as consumed"
    );
    let added: Vec<&str> = dead
        .headers()
        .iter()
        .skip(headers.len())
        .map(|h| h.name())
        .collect();
    assert_eq!(
        added,
        [
            names::DLQ_ORIGINAL_TOPIC,
            names::DLQ_ORIGINAL_PARTITION,
            names::DLQ_ORIGINAL_OFFSET,
            names::DLQ_ORIGINAL_TIMESTAMP,
            names::DLQ_ORIGINAL_TIMESTAMP_TYPE,
            names::DLQ_ERROR_KIND,
            names::DLQ_ERROR_MESSAGE,
            names::STACK_TRACE,
        ],
        "then the dlq headers, and no generated correlation id (the record had one)"
    );
    assert_eq!(
        dead.header_str(names::DLQ_ORIGINAL_TIMESTAMP),
        Some("1234567890123")
    );
    assert_eq!(
        dead.header_str(names::DLQ_ORIGINAL_TIMESTAMP_TYPE),
        Some("CreateTime")
    );
    assert_eq!(dead.header_str(names::DLQ_ERROR_KIND), Some("invalid"));
}

/// Transient failures, overload and timeouts are outages, not poison: the
/// dead-letter layer hands them back, the runtime retries with backoff, and
/// nothing reaches the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_are_retried_by_the_runtime_not_dead_lettered() {
    let kafka = common::Kafka::start();
    kafka.create_topic("outages", 1).unwrap();
    kafka.create_topic("outages.dlq", 1).unwrap();
    common::produce(kafka.bootstrap_servers(), "outages", 1, 4, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::<String>::new()));
    let handler = {
        let attempts = attempts.clone();
        service_fn(move |record: Record| {
            let attempts = attempts.clone();
            async move {
                let value = record.value_str().unwrap().to_owned();
                let tries = {
                    let mut attempts = attempts.lock().unwrap();
                    attempts.push(value.clone());
                    attempts.iter().filter(|v| **v == value).count()
                };
                if tries > 3 {
                    return Ok(());
                }
                let error: BoxError = match value.as_str() {
                    "0" => Error::transient("database unavailable").into(),
                    "1" => Box::new(tower::load_shed::error::Overloaded::new()),
                    "2" => Box::new(tower::timeout::error::Elapsed::new()),
                    _ => return Ok(()),
                };
                Err(error)
            }
        })
    };
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .service(handler);
    let runtime = common::consumer(&kafka, "outages", "outages")
        .build()
        .unwrap();
    let handle = runtime.handle();
    let serving = tokio::spawn(runtime.serve(chain));
    assert!(
        common::eventually(Duration::from_secs(30), || handle
            .health()
            .partitions
            .first()
            .is_some_and(|p| p.committed == Some(4)))
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    assert!(handle.health().failures >= 9, "{:?}", handle.health());
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "outages.dlq",
        1,
        usize::MAX,
        "read_uncommitted",
        Duration::from_secs(2),
    );
    assert_eq!(dead.len(), 0, "an outage reached the dead-letter topic");
}

/// Serves `topic` (group of the same name) with a handler that finds every
/// record invalid, behind a dead-letter layer whose producer takes records of
/// at most 10,000 bytes (`message.max.bytes`).
fn serve_invalid_with_small_dead_letters(
    kafka: &common::Kafka,
    topic: &str,
) -> (
    light_kafka::service::consumer::ConsumerHandle,
    tokio::task::JoinHandle<Result<(), ConsumerError>>,
) {
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .set("message.max.bytes", "10000")
        .build()
        .unwrap();
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(producer))
        .service(service_fn(|_: Record| async {
            Err::<(), _>(Error::new(ErrorKind::Invalid, "not a valid record"))
        }));
    let runtime = common::consumer(kafka, topic, topic).build().unwrap();
    let handle = runtime.handle();
    (handle, tokio::spawn(runtime.serve(chain)))
}

/// A dead letter larger than the broker takes is written reduced (value left
/// out, its size and hash in headers) rather than never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_the_broker_is_written_reduced() {
    let kafka = common::Kafka::start();
    kafka.create_topic("huge", 1).unwrap();
    kafka.create_topic("huge.dlq", 1).unwrap();
    let value = vec![b'x'; 20_000];
    raw::produce(
        kafka.bootstrap_servers(),
        "huge",
        0,
        &[RawRecord {
            key: Some(b"big".to_vec()),
            value: Some(value.clone()),
            headers: vec![(b"h".to_vec(), Some(b"v".to_vec()))],
            timestamp: 1_600_000_000_000,
        }],
    );
    let (handle, serving) = serve_invalid_with_small_dead_letters(&kafka, "huge");
    let dead = common::read_topic(
        kafka.bootstrap_servers(),
        "huge.dlq",
        1,
        1,
        "read_uncommitted",
        Duration::from_secs(30),
    );
    assert!(
        common::eventually(Duration::from_secs(10), || handle
            .health()
            .partitions
            .first()
            .is_some_and(|p| p.committed == Some(1)))
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    assert_eq!(dead.len(), 1);
    let dead = &dead[0];
    assert_eq!(dead.value(), None);
    assert_eq!(dead.key_str(), Some("big"));
    assert_eq!(dead.header_str("h"), Some("v"));
    assert_eq!(dead.header_str(names::DLQ_VALUE_OMITTED), Some("too-large"));
    assert_eq!(
        dead.header_str(names::DLQ_ORIGINAL_VALUE_SIZE),
        Some("20000")
    );
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&value)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        dead.header_str(names::DLQ_ORIGINAL_VALUE_SHA256),
        Some(hash.as_str())
    );
}

/// What cannot be dead-lettered even reduced (here a key larger than the
/// broker allows) holds its partition, and says so in health with the reason:
/// never silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_settle_shows_as_a_stalled_partition() {
    let kafka = common::Kafka::start();
    kafka.create_topic("stuck", 1).unwrap();
    kafka.create_topic("stuck.dlq", 1).unwrap();
    raw::produce(
        kafka.bootstrap_servers(),
        "stuck",
        0,
        &[RawRecord {
            key: Some(vec![b'k'; 20_000]),
            value: Some(b"v".to_vec()),
            headers: Vec::new(),
            timestamp: 1_600_000_000_000,
        }],
    );
    let (handle, serving) = serve_invalid_with_small_dead_letters(&kafka, "stuck");
    let stalled = || {
        handle
            .health()
            .partitions
            .first()
            .and_then(|p| p.stalled.clone())
            .filter(|s| s.attempts >= 3)
    };
    assert!(
        common::eventually(Duration::from_secs(30), || stalled().is_some()).await,
        "no stall reported: {:?}",
        handle.health()
    );
    let stall = stalled().unwrap();
    assert_eq!(stall.offset, 0);
    assert!(
        stall.reason.contains("cannot dead-letter") && stall.reason.contains("too large"),
        "{}",
        stall.reason
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "stuck", "stuck", 1),
        [-1],
        "nothing committed past the unsettled record"
    );
}
