//! The stream processor, state stores, projections and aggregates on a broker
//! (the embedded one by default; the real one under `scripts/kafka test`).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::Kafka;
use light_kafka::error::ErrorKind;
use light_kafka::layers::dead_letter::DeadLetterLayer;
use light_kafka::record::Record;
use light_kafka::streams::aggregate::{
    Aggregate, AggregateService, CommandEnvelope, CommandGateway, CommandOutcome, DomainEvent,
};
use light_kafka::streams::changelog_topic;
use light_kafka::streams::persistent::RedbStorage;
use light_kafka::streams::processor::{ProcessorHandle, StreamProcessor};
use light_kafka::streams::projection::{Projection, QueryError};
use light_kafka::streams::store::Stores;
use light_kafka::{BoxError, Error};
use serde::{Deserialize, Serialize};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// Creates the topics a processor reads and writes. The changelogs only on
/// the embedded broker: on a real one the processor creates them itself.
fn topics(kafka: &Kafka, app: &str, stores: &[&str], partitions: i32, others: &[&str]) {
    for topic in others {
        kafka.create_topic(topic, partitions).unwrap();
    }
    if !kafka.is_real() {
        for store in stores {
            kafka
                .create_topic(&changelog_topic(app, store), partitions)
                .unwrap();
        }
    }
}

/// Counts inputs per partition in the store `count` and emits
/// `<partition>:<offset>` with the count so far; `poison` fails as invalid.
fn counting(
    out: &'static str,
) -> impl tower::Service<Record, Response = Vec<Record>, Error = BoxError, Future: Send> + Clone + Send
{
    service_fn(move |record: Record| async move {
        if record.value_str()? == "poison" {
            return Err(Error::new(ErrorKind::Invalid, "poison").into());
        }
        let stores = Stores::of(&record)?;
        let counts = stores.json::<u64>("count")?;
        let key = stores.partition().to_string();
        let n = counts.get(&key)?.unwrap_or(0) + 1;
        counts.put(&key, &n)?;
        let id = format!(
            "{}:{}",
            record.partition().unwrap(),
            record.offset().unwrap()
        );
        Ok::<_, BoxError>(vec![
            Record::builder(out).key(id).value(n.to_string()).build(),
        ])
    })
}

async fn wait(handle: &ProcessorHandle, records: u64) {
    let done = common::eventually(Duration::from_secs(60), || {
        handle.health().committed_records >= records
    })
    .await;
    assert!(done, "processed {:?} of {records}", handle.health());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_emits_one_output_per_input_and_dead_letters_inside_the_transaction() {
    let kafka = Kafka::start();
    let app = format!("eos-{}", common::uuid_like());
    let (input, out) = ("eos-in", "eos-out");
    topics(&kafka, &app, &["count"], 2, &[input, out, "eos-in.dlq"]);
    common::produce(kafka.bootstrap_servers(), input, 2, 1_000, |i| {
        (
            format!("k{i}"),
            if i % 100 == 7 {
                "poison".into()
            } else {
                i.to_string()
            },
        )
    })
    .await;

    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input])
        .store("count")
        .max_batch(128)
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let chain = ServiceBuilder::new()
        .layer(DeadLetterLayer::new(processor.sink()))
        .service(counting(out));
    let running = tokio::spawn(processor.run(chain));
    wait(&handle, 1_000).await;
    handle.shutdown();
    running.await.unwrap().unwrap();

    let outputs = common::read_topic_exactly(kafka.bootstrap_servers(), out, 2, 990);
    let ids: HashSet<_> = outputs
        .iter()
        .map(|r| r.key_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 990, "one output per input");
    let dead = common::read_topic_exactly(kafka.bootstrap_servers(), "eos-in.dlq", 2, 10);
    assert!(dead.iter().all(|r| r.value_str().unwrap() == "poison"));
    let counts: Vec<u64> = (0..2)
        .map(|p| {
            outputs
                .iter()
                .filter(|r| r.key_str().unwrap().starts_with(&format!("{p}:")))
                .map(|r| r.value_str().unwrap().parse::<u64>().unwrap())
                .max()
                .unwrap()
        })
        .collect();
    // The poison records (i % 100 == 7) are all odd: all on partition 1.
    assert_eq!(
        counts,
        [500, 490],
        "the count store saw each handled input once"
    );
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), &app, input, 2),
        common::end_offsets(kafka.bootstrap_servers(), input, 2)
    );
    let health = handle.health();
    assert_eq!(health.aborted, 0, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_record_aborts_its_batch_which_runs_again_once_it_passes() {
    let kafka = Kafka::start();
    let app = format!("abort-{}", common::uuid_like());
    let (input, out) = ("abort-in", "abort-out");
    topics(&kafka, &app, &["count"], 1, &[input, out]);
    common::produce(kafka.bootstrap_servers(), input, 1, 50, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;
    let failures = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = failures.clone();
    let inner = counting(out);
    let flaky = service_fn(move |record: Record| {
        let (seen, inner) = (seen.clone(), inner.clone());
        async move {
            if record.offset() == Some(30)
                && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3
            {
                return Err::<Vec<Record>, BoxError>(Error::transient("not yet").into());
            }
            inner.oneshot(record).await
        }
    });
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input])
        .store("count")
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(flaky));
    wait(&handle, 50).await;
    handle.shutdown();
    running.await.unwrap().unwrap();
    let health = handle.health();
    assert!(health.aborted >= 3, "{health:?}");
    // Aborted writes never reached the store: the counts are 1..=50, once each.
    let outputs = common::read_topic(
        kafka.bootstrap_servers(),
        out,
        1,
        usize::MAX,
        "read_committed",
        Duration::from_secs(3),
    );
    let committed: Vec<u64> = outputs
        .iter()
        .map(|r| r.value_str().unwrap().parse().unwrap())
        .collect();
    if kafka.is_real() {
        assert_eq!(committed, (1..=50).collect::<Vec<_>>());
    } else {
        // The embedded broker shows aborted records too; the last 50 are the committed run.
        assert_eq!(
            committed[committed.len() - 50..],
            (1..=50).collect::<Vec<_>>()[..]
        );
    }
}

async fn run_counter(
    kafka: &Kafka,
    app: &str,
    input: &str,
    out: &str,
    storage: Option<&std::path::Path>,
    records: u64,
) -> ProcessorHandle {
    let mut builder = StreamProcessor::builder(app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input])
        .instance_id("only");
    builder = match storage {
        Some(dir) => builder.store_with("count", RedbStorage::new(dir)),
        None => builder.store("count"),
    };
    let processor = builder.build().await.unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(counting(Box::leak(out.to_owned().into_boxed_str()))));
    wait(&handle, records).await;
    handle.shutdown();
    running.await.unwrap().unwrap();
    handle
}

async fn restart_restores(storage: Option<&std::path::Path>) -> (u64, u64) {
    let kafka = Kafka::start();
    let app = format!("restore-{}", common::uuid_like());
    let input = format!("{app}-in");
    let out = format!("{app}-out");
    topics(&kafka, &app, &["count"], 1, &[&input, &out]);
    let produce = |n| {
        common::produce(kafka.bootstrap_servers(), &input, 1, n, |i| {
            (format!("k{i}"), i.to_string())
        })
    };
    produce(300).await;
    let first = run_counter(&kafka, &app, &input, &out, storage, 300).await;
    assert_eq!(first.health().restored, 0);
    produce(200).await;
    let second = run_counter(&kafka, &app, &input, &out, storage, 200).await;
    let outputs = common::read_topic(
        kafka.bootstrap_servers(),
        &out,
        1,
        500,
        "read_committed",
        Duration::from_secs(20),
    );
    let last: u64 = outputs
        .last()
        .unwrap()
        .value_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(last, 500, "the count went on from the restored 300");
    (second.health().restored, outputs.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_store_is_restored_from_its_changelog_after_a_restart() {
    let (restored, outputs) = restart_restores(None).await;
    assert_eq!(outputs, 500);
    assert!(restored >= 1, "read the changelog: {restored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_store_restores_only_after_its_checkpoint() {
    let dir = std::env::temp_dir().join(format!("lk-restore-{}", common::uuid_like()));
    let (restored, outputs) = restart_restores(Some(&dir)).await;
    assert_eq!(outputs, 500);
    assert_eq!(restored, 0, "the checkpoint covered every changelog record");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_answers_not_ready_while_restoring_then_serves_queries() {
    let kafka = Kafka::start();
    let topic = format!("prices-{}", common::uuid_like());
    kafka.create_topic(&topic, 3).unwrap();
    common::produce(kafka.bootstrap_servers(), &topic, 3, 30_000, |i| {
        (format!("item{:02}", i % 60), i.to_string())
    })
    .await;
    let prices = Projection::<u64>::builder("prices", &topic)
        .bootstrap_servers(kafka.bootstrap_servers())
        .start()
        .await
        .unwrap();
    match prices.get("item00") {
        Err(QueryError::NotReady { total, .. }) => assert_eq!(total, 30_000),
        other => panic!("expected not ready, got {other:?}"),
    }
    let app = prices.router::<()>();
    let response = app
        .clone()
        .oneshot(http_get("/prices/item00"))
        .await
        .unwrap();
    if !prices.status().ready {
        assert_eq!(response.status(), 503);
    }
    prices.ready(Duration::from_secs(60)).await.unwrap();
    // Key `item{j}` last got the largest i with i % 60 == j.
    assert_eq!(prices.get("item00").unwrap(), Some(29_940));
    assert_eq!(prices.get("item59").unwrap(), Some(29_999));
    assert_eq!(prices.all().unwrap().len(), 60);
    assert_eq!(prices.range("item10", "item20").unwrap().len(), 10);
    assert_eq!(prices.get("nope").unwrap(), None);

    // It keeps following: a new value, and a tombstone that deletes (each
    // to the partition its key was written to, as a keyed producer would).
    let producer = light_kafka::service::producer::Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    producer
        .clone()
        .oneshot(
            Record::builder(topic.as_str())
                .partition(0)
                .key("item00")
                .value("1")
                .build(),
        )
        .await
        .unwrap();
    producer
        .oneshot(
            Record::builder(topic.as_str())
                .partition(1)
                .key("item01")
                .build(),
        )
        .await
        .unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || prices.get("item00").unwrap()
            == Some(1))
        .await
    );
    assert!(
        common::eventually(Duration::from_secs(10), || prices
            .get("item01")
            .unwrap()
            .is_none())
        .await
    );

    let response = app
        .clone()
        .oneshot(http_get("/prices/item00"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await, "1");
    let response = app.clone().oneshot(http_get("/prices/nope")).await.unwrap();
    assert_eq!(response.status(), 404);
    let all: HashMap<String, u64> =
        serde_json::from_str(&body(app.oneshot(http_get("/prices")).await.unwrap()).await).unwrap();
    assert_eq!(all.len(), 59);
}

fn http_get(uri: &str) -> http::Request<axum::body::Body> {
    http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap()
}

async fn body(response: axum::response::Response) -> String {
    use http_body_util::BodyExt;
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

// ---- an aggregate under concurrent commands --------------------------------------

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Serialize, Deserialize)]
enum AccountCommand {
    Deposit(i64),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum AccountEvent {
    Deposited(i64),
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = String;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, String> {
        match command {
            AccountCommand::Deposit(n) if *n <= 0 => Err(format!("cannot deposit {n}")),
            AccountCommand::Deposit(n) => Ok(vec![AccountEvent::Deposited(*n)]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(n) => self.balance += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_commands_on_one_aggregate_lose_no_update() {
    let kafka = Kafka::start();
    let app = format!("bank-{}", common::uuid_like());
    let (commands, events, replies) = (
        format!("{app}-commands"),
        format!("{app}-events"),
        format!("{app}-replies"),
    );
    topics(
        &kafka,
        &app,
        &[Account::TYPE],
        2,
        &[&commands, &events, &replies],
    );
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([commands.as_str()])
        .store(Account::TYPE)
        .max_batch_time(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(AggregateService::<Account>::new(
        events.as_str(),
        replies.as_str(),
    )));
    let gateway = CommandGateway::<Account>::builder(commands.as_str(), replies.as_str())
        .bootstrap_servers(kafka.bootstrap_servers())
        .group_id(format!("{replies}-gateway"))
        .start()
        .await
        .unwrap();

    // 100 commands at once: 40 accept any version, 60 expect the version
    // i % 6 (most of them will find the account moved on).
    let submits = (0..100).map(|i: i64| {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut command = CommandEnvelope::new("acct-1", AccountCommand::Deposit(i + 1));
            if i % 5 >= 2 {
                command = command.expect_version((i % 6) as u64);
            }
            let expected = command.expected_version;
            (i + 1, expected, gateway.submit(command).await.unwrap())
        })
    });
    let results = futures_util::future::join_all(submits).await;
    let mut accepted = Vec::new();
    let mut conflicts = 0;
    for result in results {
        let (amount, expected, outcome) = result.unwrap();
        match outcome {
            CommandOutcome::Accepted { version } => accepted.push((version, amount)),
            CommandOutcome::Conflict {
                expected: e,
                actual,
            } => {
                assert_eq!(Some(e), expected);
                assert_ne!(e, actual);
                conflicts += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    accepted.sort();
    let versions: Vec<u64> = accepted.iter().map(|a| a.0).collect();
    assert_eq!(
        versions,
        (1..=accepted.len() as u64).collect::<Vec<_>>(),
        "one version per accepted command"
    );
    assert_eq!(accepted.len() + conflicts, 100);
    assert!(
        accepted.len() >= 40,
        "every unconditional command was accepted"
    );

    // The event log is the serial application of the accepted commands.
    let log = common::read_topic_exactly(kafka.bootstrap_servers(), &events, 2, accepted.len());
    let mut applied: Vec<(u64, i64)> = log
        .iter()
        .map(|r| {
            let event: DomainEvent<AccountEvent> = r.json().unwrap();
            assert_eq!(r.key_str(), Some("acct-1"));
            let AccountEvent::Deposited(n) = event.event;
            (event.version, n)
        })
        .collect();
    applied.sort();
    assert_eq!(applied, accepted);

    // And the state agrees: one more command reports the next version.
    let balance: i64 = accepted.iter().map(|a| a.1).sum();
    let next = gateway
        .submit(CommandEnvelope::new("acct-1", AccountCommand::Deposit(-1)))
        .await
        .unwrap();
    assert!(matches!(next, CommandOutcome::Rejected { .. }), "{next:?}");
    let next = gateway
        .submit(
            CommandEnvelope::new("acct-1", AccountCommand::Deposit(1))
                .expect_version(accepted.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(
        next,
        CommandOutcome::Accepted {
            version: accepted.len() as u64 + 1
        }
    );
    common::report(format_args!(
        "100 concurrent commands on one aggregate: {} accepted (balance {balance}), {conflicts} conflicts, 0 lost updates",
        accepted.len()
    ));

    // Over HTTP: 200 accepted, 409 conflict, 422 rejected.
    let app_router = gateway.router::<()>();
    let post = |body: &str| {
        http::Request::post("/account/acct-1")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap()
    };
    let ok = app_router
        .clone()
        .oneshot(post(r#"{"command": {"Deposit": 5}}"#))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(body(ok).await.contains("accepted"));
    let stale = app_router
        .clone()
        .oneshot(post(r#"{"expectedVersion": 1, "command": {"Deposit": 5}}"#))
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let refused = app_router
        .oneshot(post(r#"{"command": {"Deposit": 0}}"#))
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    handle.shutdown();
    running.await.unwrap().unwrap();
}

/// The canonical consumer chain runs unchanged around a processor's handler:
/// every input is audited (the poison one as a failure, dead-lettered inside
/// the transaction), and every output carries the correlation id the
/// propagate layer generated for its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canonical_chain_runs_in_a_processor() {
    use light_kafka::builder::ServiceBuilderExt;
    use light_kafka::layers::audit::{AuditEntry, AuditLayer};
    use light_kafka::layers::retry::RetryPolicy;
    use light_kafka::record::names;

    let kafka = Kafka::start();
    let app = format!("chain-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), "chain-out");
    topics(
        &kafka,
        &app,
        &["count"],
        1,
        &[&input, out, &format!("{input}.dlq")],
    );
    common::produce(kafka.bootstrap_servers(), &input, 1, 20, |i| {
        (
            format!("k{i}"),
            if i == 5 {
                "poison".into()
            } else {
                i.to_string()
            },
        )
    })
    .await;
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input.as_str()])
        .store("count")
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let entries = Arc::new(std::sync::Mutex::new(Vec::<AuditEntry>::new()));
    let audited = entries.clone();
    let chain = ServiceBuilder::new()
        .catch_record_panic()
        .metrics_consume("svc")
        .propagate_consume()
        .trace_consume()
        .audit(
            AuditLayer::consumer("svc", move |e: AuditEntry| audited.lock().unwrap().push(e))
                .audit_on_error(false),
        )
        .dead_letter(processor.sink())
        .retry_records(RetryPolicy::new(2))
        .service(counting(out));
    let running = tokio::spawn(processor.run(chain));
    wait(&handle, 20).await;
    handle.shutdown();
    running.await.unwrap().unwrap();

    let outputs = common::read_topic_exactly(kafka.bootstrap_servers(), out, 1, 19);
    let dead = common::read_topic_exactly(kafka.bootstrap_servers(), &format!("{input}.dlq"), 1, 1);
    let entries = entries.lock().unwrap();
    assert_eq!(entries.len(), 20, "one audit entry per input");
    let by_offset: HashMap<i64, &AuditEntry> =
        entries.iter().map(|e| (e.offset.unwrap(), e)).collect();
    for output in &outputs {
        let offset: i64 = output
            .key_str()
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let id = output
            .header_str(names::CORRELATION_ID)
            .expect("a correlation id");
        assert_eq!(by_offset[&offset].correlation_id.as_deref(), Some(id));
    }
    assert!(
        by_offset[&5].error.is_some(),
        "the poison input is audited as a failure"
    );
    assert_eq!(dead[0].header_str(names::DLQ_ERROR_KIND), Some("invalid"));
}

/// One record that always fails, with no dead-letter layer, holds back its
/// own partition only: the other partitions commit to their end, the poison
/// partition's committed offset stays at the record, nothing of it from the
/// record on is emitted, and health names the record and counts its tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_without_dead_letters_stalls_only_its_own_partition() {
    const N: usize = 90;
    const P: i32 = 3;
    let kafka = Kafka::start();
    let app = format!("stall-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), format!("{app}-out"));
    topics(&kafka, &app, &["count"], P, &[&input, &out]);
    // 30 records per partition; the 11th record of partition 1 is poison.
    common::produce(kafka.bootstrap_servers(), &input, P, N, |i| {
        let value = if i == 10 * P as usize + 1 {
            "poison".into()
        } else {
            i.to_string()
        };
        (format!("k{i}"), value)
    })
    .await;
    let out_topic: &'static str = Box::leak(out.clone().into_boxed_str());
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input.as_str()])
        .store("count")
        .max_batch(16)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(counting(out_topic)));

    // Every input but partition 1's from the poison record on.
    wait(&handle, 70).await;
    let expected = vec![30, 10, 30];
    let settled = common::eventually(Duration::from_secs(60), || {
        common::committed(kafka.bootstrap_servers(), &app, &input, P) == expected
    })
    .await;
    assert!(
        settled,
        "committed {:?}, health {:?}",
        common::committed(kafka.bootstrap_servers(), &app, &input, P),
        handle.health()
    );
    // It keeps retrying the poison record, alone, and commits nothing past it.
    let retried = common::eventually(Duration::from_secs(30), || {
        handle
            .health()
            .stalled
            .first()
            .is_some_and(|s| s.attempts >= 4)
    })
    .await;
    let health = handle.health();
    assert!(retried, "{health:?}");
    assert_eq!(health.stalled.len(), 1, "{health:?}");
    let stalled = &health.stalled[0];
    assert_eq!(
        (stalled.topic.as_str(), stalled.partition, stalled.offset),
        (input.as_str(), 1, 10)
    );
    assert!(stalled.last_error.contains("poison"), "{stalled:?}");
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), &app, &input, P),
        expected
    );
    assert!(!running.is_finished(), "the processor goes on");
    handle.shutdown();
    running.await.unwrap().unwrap();

    let outputs = common::read_topic(
        kafka.bootstrap_servers(),
        &out,
        P,
        usize::MAX,
        "read_committed",
        Duration::from_secs(3),
    );
    let ids: HashSet<(i32, i64)> = outputs
        .iter()
        .map(|r| {
            let key = r.key_str().unwrap();
            let (p, o) = key.split_once(':').unwrap();
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .collect();
    assert!(
        ids.iter().all(|(p, o)| *p != 1 || *o < 10),
        "nothing of partition 1 from the poison record on was emitted"
    );
    let mut want: HashSet<(i32, i64)> = (0..30).flat_map(|o| [(0, o), (2, o)]).collect();
    want.extend((0..10).map(|o| (1, o)));
    if kafka.is_real() {
        assert_eq!(ids, want, "read_committed: exactly the committed inputs");
        // Per input partition, in offset order, the count moved by one per input.
        let mut by_offset: Vec<(i32, i64, u64)> = outputs
            .iter()
            .map(|r| {
                let (p, o) = r.key_str().unwrap().split_once(':').unwrap();
                let count = r.value_str().unwrap().parse().unwrap();
                (p.parse().unwrap(), o.parse().unwrap(), count)
            })
            .collect();
        by_offset.sort_unstable();
        let mut per_partition: HashMap<i32, Vec<u64>> = HashMap::new();
        for (p, _, count) in by_offset {
            per_partition.entry(p).or_default().push(count);
        }
        assert_eq!(per_partition[&0], (1..=30).collect::<Vec<_>>());
        assert_eq!(per_partition[&1], (1..=10).collect::<Vec<_>>());
        assert_eq!(per_partition[&2], (1..=30).collect::<Vec<_>>());
    } else {
        // The embedded broker shows aborted outputs too: all that is asked
        // is that every committed input has its output.
        assert!(want.is_subset(&ids));
    }
}

/// `ProcessorHealth::partitions` lists the assigned partitions, before any
/// record (and so any store) was there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_the_assigned_partitions() {
    let kafka = Kafka::start();
    let app = format!("assigned-{}", common::uuid_like());
    let input = format!("{app}-in");
    topics(&kafka, &app, &["count"], 3, &[&input]);
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input.as_str()])
        .store("count")
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(counting("unused")));
    let assigned = common::eventually(Duration::from_secs(30), || {
        handle.health().partitions == [0, 1, 2]
    })
    .await;
    assert!(assigned, "{:?}", handle.health());
    assert_eq!(handle.health().committed, 0, "no record came in");
    handle.shutdown();
    running.await.unwrap().unwrap();
}

/// The cluster goes away while a transaction is open, longer than the
/// processor's transaction timeout: its producer cannot commit nor abort and
/// is re-created, health says it is recovering while the cluster is away, and
/// once it is back every input commits, with no restart from outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_that_breaks_the_producer_is_recovered_from_without_a_restart() {
    const N: usize = 400;
    const P: i32 = 2;
    let kafka = common::embedded_only();
    let app = format!("outage-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), format!("{app}-out"));
    for topic in [&input, &out, &changelog_topic(&app, "count")] {
        kafka.create_topic(topic, P).unwrap();
    }
    common::produce(kafka.bootstrap_servers(), &input, P, N, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;
    let out_topic: &'static str = Box::leak(out.clone().into_boxed_str());
    let inner = counting(out_topic);
    let slow = service_fn(move |record: Record| {
        let inner = inner.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            inner.oneshot(record).await
        }
    });
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([input.as_str()])
        .store("count")
        .max_batch(20)
        .operation_timeout(Duration::from_secs(1))
        .producer_set("transaction.timeout.ms", "3000")
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(slow));
    wait(&handle, 40).await;

    kafka.broker_down(1).unwrap();
    let recovering = common::eventually(Duration::from_secs(30), || {
        handle.health().recovering.is_some()
    })
    .await;
    let during = handle.health();
    assert!(recovering, "{during:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !running.is_finished(),
        "the processor waits for the cluster"
    );
    kafka.broker_up(1).unwrap();

    let done = common::eventually(Duration::from_secs(90), || {
        common::committed(kafka.bootstrap_servers(), &app, &input, P)
            == common::end_offsets(kafka.bootstrap_servers(), &input, P)
    })
    .await;
    let after = handle.health();
    assert!(done, "{after:?}");
    assert!(
        common::eventually(Duration::from_secs(10), || handle
            .health()
            .recovering
            .is_none())
        .await,
        "{:?}",
        handle.health()
    );
    let after = handle.health();
    assert!(after.recoveries >= 1, "{after:?}");
    let recovery = during.recovering.unwrap();
    assert!(!recovery.last_error.is_empty(), "{recovery:?}");
    assert!(!running.is_finished(), "no restart from outside was needed");
    handle.shutdown();
    running.await.unwrap().unwrap();
}
