//! The stream processor on a real Apache Kafka broker (`scripts/kafka test`)
//! through what a production cluster does to it: a broker outage longer than
//! the transaction timeout, and a restart of a static group member.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use light_kafka::BoxError;
use light_kafka::record::Record;
use light_kafka::service::producer::Producer;
use light_kafka::streams::processor::StreamProcessor;
use light_kafka::streams::store::Stores;
use tower::{Service, ServiceExt, service_fn};

const CHILD: &str = "LIGHT_KAFKA_TEST_STATIC_CHILD";

/// Held by each test of this file for its whole run: one of them kills the
/// broker, which would stall any other running at the same time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Counts the inputs of each partition in the store `count` and emits one
/// output per input: key `<partition>:<offset>`, value the count so far.
fn counting(
    out: String,
    pause: Duration,
) -> impl tower::Service<Record, Response = Vec<Record>, Error = BoxError, Future: Send> + Clone + Send
{
    service_fn(move |record: Record| {
        let out = out.clone();
        async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let counts = Stores::of(&record)?.json::<u64>("count")?;
            let (p, o) = (
                record.partition().unwrap_or(-1),
                record.offset().unwrap_or(-1),
            );
            let n = counts.get(p.to_string())?.unwrap_or(0) + 1;
            counts.put(p.to_string(), &n)?;
            Ok::<_, BoxError>(vec![
                Record::builder(out.as_str())
                    .key(format!("{p}:{o}"))
                    .value(n.to_string())
                    .build(),
            ])
        }
    })
}

/// Reads `out` `read_committed` and checks that every input of `inputs` has
/// exactly one output and that, per partition in offset order, the counts
/// are 1, 2, 3...: `(lost, duplicated, out of order)`.
fn check_outputs(
    bootstrap: &str,
    out: &str,
    partitions: i32,
    inputs: usize,
) -> (usize, usize, usize) {
    let outputs = common::read_topic(
        bootstrap,
        out,
        partitions,
        usize::MAX,
        "read_committed",
        Duration::from_secs(15),
    );
    let mut per_key: HashMap<(i32, i64), Vec<u64>> = HashMap::new();
    for r in &outputs {
        let (p, o) = r.key_str().unwrap().split_once(':').unwrap();
        per_key
            .entry((p.parse().unwrap(), o.parse().unwrap()))
            .or_default()
            .push(r.value_str().unwrap().parse().unwrap());
    }
    let duplicated = per_key.values().filter(|v| v.len() > 1).count();
    let lost = inputs.saturating_sub(per_key.len());
    let mut keys: Vec<(i32, i64)> = per_key.keys().copied().collect();
    keys.sort_unstable();
    let mut out_of_order = 0;
    let mut expected: HashMap<i32, u64> = HashMap::new();
    for key in keys {
        let next = expected.entry(key.0).or_insert(1);
        if per_key[&key][0] != *next {
            out_of_order += 1;
        }
        *next += 1;
    }
    (lost, duplicated, out_of_order)
}

/// The broker is killed while inputs flow and a transaction is open, stays
/// away longer than the processor's `transaction.timeout.ms` (so the
/// coordinator aborts the transaction and bumps the producer's epoch), and
/// comes back: the processor recovers by itself, and a `read_committed`
/// reader sees exactly one output per input, the counts in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn a_broker_outage_longer_than_the_transaction_timeout_is_recovered_from() {
    const FIRST: usize = 2_000;
    const LATER: usize = 2_000;
    const P: i32 = 3;
    let _broker = BROKER.lock().await;
    let kafka = common::real_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let app = format!("outage-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), format!("{app}-out"));
    kafka.create_topic(&input, P).unwrap();
    kafka.create_topic(&out, P).unwrap();
    common::produce(&bootstrap, &input, P, FIRST, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;

    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(&bootstrap)
        .topics([input.as_str()])
        .store("count")
        .instance_id("outage")
        .max_batch(100)
        .producer_set("transaction.timeout.ms", "5000")
        .backoff(Duration::from_millis(100), Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(counting(out.clone(), Duration::from_millis(2))));

    // More inputs keep coming, through the outage (buffered by the producer).
    let produced = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (bootstrap, input, produced, stop) = (
            bootstrap.clone(),
            input.clone(),
            produced.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut producer = Producer::builder()
                .bootstrap_servers(&bootstrap)
                .set("message.timeout.ms", "180000")
                .build()
                .unwrap();
            let mut deliveries = Vec::new();
            for i in FIRST..FIRST + LATER {
                let record = Record::builder(input.as_str())
                    .partition((i % P as usize) as i32)
                    .key(format!("k{i}"))
                    .value(i.to_string())
                    .build();
                deliveries.push(producer.ready().await.unwrap().call(record));
                produced.fetch_add(1, Relaxed);
                if !stop.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            for delivery in deliveries {
                delivery.await.expect("every input delivered");
            }
        })
    };

    assert!(
        common::eventually(Duration::from_secs(60), || handle
            .health()
            .committed_records
            >= 500)
        .await,
        "{:?}",
        handle.health()
    );
    tokio::task::spawn_blocking(|| common::broker_ctl("kill"))
        .await
        .unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let during = handle.health();
    assert!(!running.is_finished(), "the processor outlives the outage");
    assert!(
        during.recovering.is_some(),
        "health shows the outage while it lasts: {during:?}"
    );
    tokio::task::spawn_blocking(|| common::broker_ctl("restart"))
        .await
        .unwrap();
    let back = Instant::now();
    let committed_when_back = handle.health().committed;
    let recovered = common::eventually(Duration::from_secs(180), || {
        handle.health().committed > committed_when_back
    })
    .await;
    let recovery = back.elapsed();
    assert!(
        recovered,
        "no transaction committed after the broker came back: {:?}",
        handle.health()
    );
    stop.store(true, Relaxed);
    producing.await.unwrap();
    let done = common::eventually(Duration::from_secs(180), || {
        common::committed(&bootstrap, &app, &input, P) == common::end_offsets(&bootstrap, &input, P)
    })
    .await;
    let after = handle.health();
    assert!(done, "{after:?}");
    assert!(after.recovering.is_none(), "{after:?}");
    assert!(!running.is_finished(), "no restart from outside");
    handle.shutdown();
    running.await.unwrap().unwrap();

    let (lost, duplicated, out_of_order) = check_outputs(&bootstrap, &out, P, FIRST + LATER);
    common::report(format_args!(
        "stream processor through a broker outage of {:.1} s (kill → restart, transaction.timeout.ms 5000): \
         {} inputs, {lost} lost, {duplicated} duplicated, {out_of_order} counts out of order (read_committed); \
         first commit {:.2} s after the broker was back; producer re-created {} times, {} transactions aborted; \
         health during the outage: recovering {}",
        back.duration_since(killed).as_secs_f64(),
        FIRST + LATER,
        recovery.as_secs_f64(),
        after.recoveries,
        after.aborted,
        during.recovering.as_ref().map_or_else(
            || "not yet".to_owned(),
            |r| format!("since {:?}: {}", r.since, r.last_error)
        ),
    ));
    assert_eq!((lost, duplicated, out_of_order), (0, 0, 0));
}

async fn static_child(spec: &str) {
    let mut parts = spec.split('|');
    let (bootstrap, app, input, out) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let processor = static_member(bootstrap, app, input).build().await.unwrap();
    processor
        .run(counting(out.to_owned(), Duration::ZERO))
        .await
        .unwrap();
}

fn static_member(
    bootstrap: &str,
    app: &str,
    input: &str,
) -> light_kafka::streams::processor::StreamProcessorBuilder {
    StreamProcessor::builder(app)
        .bootstrap_servers(bootstrap)
        .topics([input])
        .store("count")
        .instance_id("static")
        .static_membership(true)
        .consumer_set("session.timeout.ms", "30000")
        .consumer_set("heartbeat.interval.ms", "1000")
}

/// A processor that is a static member of its group is killed with SIGKILL
/// (so it never leaves the group) and started again with the same
/// `group.instance.id`: it takes its partitions back at once and handles its
/// first record well before `session.timeout.ms` (30 s) would have expired
/// the dead member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn a_restarted_static_member_handles_its_first_record_before_the_session_timeout() {
    if let Ok(spec) = std::env::var(CHILD) {
        return static_child(&spec).await;
    }
    const P: i32 = 2;
    let _broker = BROKER.lock().await;
    let kafka = common::real_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let app = format!("static-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), format!("{app}-out"));
    kafka.create_topic(&input, P).unwrap();
    kafka.create_topic(&out, P).unwrap();
    common::produce(&bootstrap, &input, P, 10, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_restarted_static_member_handles_its_first_record_before_the_session_timeout",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD, format!("{bootstrap}|{app}|{input}|{out}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_run = common::eventually(Duration::from_secs(90), || {
        common::committed(&bootstrap, &app, &input, P) == [5, 5]
    })
    .await;
    if !first_run {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the first instance did not commit its inputs");
    }
    child.kill().unwrap(); // SIGKILL: no LeaveGroup, the member stays in the group
    child.wait().unwrap();

    let restart = Instant::now();
    let processor = static_member(&bootstrap, &app, &input)
        .build()
        .await
        .unwrap();
    let built = restart.elapsed();
    let handle = processor.handle();
    let running = tokio::spawn(processor.run(counting(out.clone(), Duration::ZERO)));
    common::produce(&bootstrap, &input, P, 2, |i| {
        (format!("n{i}"), i.to_string())
    })
    .await;
    let assigned = common::eventually(Duration::from_secs(60), || {
        !handle.health().partitions.is_empty()
    })
    .await;
    let assigned = assigned.then(|| restart.elapsed());
    let handled = common::eventually(Duration::from_secs(60), || {
        handle.health().committed_records >= 1
    })
    .await;
    let first_record = restart.elapsed();
    let all = common::eventually(Duration::from_secs(60), || {
        common::committed(&bootstrap, &app, &input, P) == [6, 6]
    })
    .await;
    handle.shutdown();
    running.await.unwrap().unwrap();
    common::report(format_args!(
        "processor-restart-to-first-record: a static member (session.timeout.ms 30000) killed with SIGKILL \
         and started again handled its first record {:.2} s after the restart (built in {:.2} s, assigned after {:?})",
        first_record.as_secs_f64(),
        built.as_secs_f64(),
        assigned,
    ));
    assert!(
        handled,
        "the restarted instance handled nothing: {:?}",
        handle.health()
    );
    assert!(all, "{:?}", handle.health());
    assert!(
        first_record < Duration::from_secs(10),
        "{first_record:?}: the restart waited for the session timeout"
    );
    let (lost, duplicated, out_of_order) = check_outputs(&bootstrap, &out, P, 12);
    assert_eq!((lost, duplicated, out_of_order), (0, 0, 0));
}
