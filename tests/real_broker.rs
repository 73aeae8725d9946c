//! Faults only a real Apache Kafka broker can show: the broker JVM killed
//! with SIGKILL mid-stream, consumer processes killed with SIGKILL mid-batch,
//! rebalances under the classic cooperative protocol and under KIP-848.
//!
//! Run by `scripts/kafka test` (which starts the broker and sets
//! `LIGHT_KAFKA_TEST_BOOTSTRAP` and `LIGHT_KAFKA_TEST_BROKER_CTL`); on the
//! embedded broker they are ignored, with the reason printed by cargo.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use light_kafka::BoxError;
use light_kafka::record::Record;
use light_kafka::service::consumer::{Backoff, Consumer, ConsumerBuilder, ErrorPolicy};
use light_kafka::service::producer::Producer;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use tower::{Service, ServiceExt, service_fn};

/// The broker-kill test takes the broker away from every other test of this
/// binary: it holds this lock for writing, the others for reading.
static BROKER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn consumer(bootstrap: &str, group: &str, topic: &str) -> ConsumerBuilder {
    Consumer::builder()
        .bootstrap_servers(bootstrap)
        .group_id(group)
        .topics([topic])
        .set("fetch.wait.max.ms", "10")
        .commit_interval(Duration::from_millis(50))
        .revoke_timeout(Duration::from_secs(10))
        .error_policy(ErrorPolicy::Retry(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(500),
        )))
}

/// Committed offsets of `group`, or `None` while the broker does not answer.
fn try_committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Option<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(2))
        .ok()?;
    Some(
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect(),
    )
}

/// (partition, offset) pairs below a committed offset that were never handled.
fn committed_past_unhandled(committed: &[i64], handled: &HashSet<(i32, i64)>) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    for (p, &c) in committed.iter().enumerate() {
        if let Some(o) = (0..c.max(0)).find(|&o| !handled.contains(&(p as i32, o))) {
            out.push((p as i32, o));
        }
    }
    out
}

/// Watches a group's commits from a thread until dropped: every offset below
/// a committed one must have been handled when the commit was seen.
struct CommitWatch {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(i32, i64)>>>,
}

impl CommitWatch {
    fn start(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
        handled: Arc<Mutex<HashSet<(i32, i64)>>>,
    ) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
        let flag = running.clone();
        let thread = std::thread::spawn(move || {
            let mut violations = Vec::new();
            while flag.load(Relaxed) {
                if let Some(committed) = try_committed(&bootstrap, &group, &topic, partitions) {
                    let handled = handled.lock().unwrap();
                    violations.extend(committed_past_unhandled(&committed, &handled));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            violations
        });
        CommitWatch {
            running,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(i32, i64)> {
        self.running.store(false, Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

type Handled = Arc<Mutex<HashSet<(i32, i64)>>>;
type Counts = Arc<Mutex<HashMap<u64, u32>>>;

/// A handler that takes `delay` per record, then counts the record's value
/// (a number) and notes its partition and offset as handled.
fn counting(
    handled: Handled,
    counts: Counts,
    delay: Duration,
) -> impl tower::Service<
    Record,
    Response = (),
    Error = BoxError,
    Future = impl Future<Output = Result<(), BoxError>> + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |record: Record| {
        let (handled, counts) = (handled.clone(), counts.clone());
        async move {
            tokio::time::sleep(delay).await;
            let value: u64 = record.value_str().unwrap().parse().unwrap();
            *counts.lock().unwrap().entry(value).or_default() += 1;
            handled
                .lock()
                .unwrap()
                .insert((record.partition().unwrap(), record.offset().unwrap()));
            Ok::<_, BoxError>(())
        }
    })
}

async fn wait_for(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    assert!(
        common::eventually(timeout, &mut condition).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// The broker JVM dies (SIGKILL) while records are produced and consumed, and
/// comes back on the same data: the producer and the consumer runtime recover
/// by themselves, nothing is lost, no offset is committed past an unhandled
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn broker_killed_with_sigkill_mid_stream_loses_nothing() {
    const N: usize = 20_000;
    const PARTITIONS: i32 = 4;
    const TOPIC: &str = "broker-kill";
    let _alone = BROKER.write().await;
    let kafka = common::real_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    kafka.create_topic(TOPIC, PARTITIONS).unwrap();

    let handled = Arc::new(Mutex::new(HashSet::new()));
    let values = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let watch = CommitWatch::start(&bootstrap, TOPIC, TOPIC, PARTITIONS, handled.clone());
    let runtime = consumer(&bootstrap, TOPIC, TOPIC).build().unwrap();
    let handle = runtime.handle();
    // Slow enough that the broker dies while records are in flight.
    let handler = counting(handled.clone(), values.clone(), Duration::from_millis(1));
    let serving = tokio::spawn(runtime.serve(handler));

    // The producer paces itself so that the outage falls in the middle.
    let delivered = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(tokio::sync::Notify::new());
    let producing = {
        let (bootstrap, delivered, killed) = (bootstrap.clone(), delivered.clone(), killed.clone());
        tokio::spawn(async move {
            let mut producer = Producer::builder()
                .bootstrap_servers(&bootstrap)
                .set("linger.ms", "5")
                .set("message.timeout.ms", "120000")
                .build()
                .unwrap();
            let failures = Arc::new(Mutex::new(Vec::new()));
            let mut deliveries = Vec::with_capacity(N);
            for i in 0..N {
                if i == N / 2 {
                    // The second half goes out while the broker is down.
                    killed.notified().await;
                }
                let record = Record::builder(TOPIC)
                    .partition((i % PARTITIONS as usize) as i32)
                    .key(format!("k{i}"))
                    .value(i.to_string())
                    .build();
                let delivery = producer.ready().await.unwrap().call(record);
                let (delivered, failures) = (delivered.clone(), failures.clone());
                deliveries.push(tokio::spawn(async move {
                    match delivery.await {
                        Ok(_) => {
                            delivered.fetch_add(1, Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }));
                if i % 500 == 499 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
            failures.lock().unwrap().clone()
        })
    };

    let under_way = common::eventually(Duration::from_secs(60), || {
        delivered.load(Relaxed) >= N / 4 && handled.lock().unwrap().len() >= N / 8
    })
    .await;
    assert!(
        under_way,
        "the stream never got under way: {} delivered, {} handled, consumer health {:?}",
        delivered.load(Relaxed),
        handled.lock().unwrap().len(),
        handle.health()
    );
    tokio::task::spawn_blocking(|| common::broker_ctl("kill"))
        .await
        .unwrap();
    let at_kill = (delivered.load(Relaxed), handled.lock().unwrap().len());
    killed.notify_one();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| common::broker_ctl("restart"))
        .await
        .unwrap();

    let failures = producing.await.unwrap();
    wait_for(Duration::from_secs(180), "every record handled", || {
        values.lock().unwrap().len() == N
    })
    .await;
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let violations = watch.finish();

    let values = values.lock().unwrap();
    let lost = (0..N as u64).filter(|v| !values.contains_key(v)).count();
    let duplicates: u32 = values.values().map(|&n| n - 1).sum();
    common::report(format_args!(
        "broker SIGKILLed after {} deliveries and {} handled records, restarted: \
         {N} produced, {lost} lost, {duplicates} handled twice, {} failed deliveries",
        at_kill.0,
        at_kill.1,
        failures.len()
    ));
    assert!(at_kill.0 < N, "the broker must die mid-production");
    assert_eq!(failures, Vec::<String>::new(), "deliveries failed");
    assert_eq!(lost, 0, "records lost");
    assert_eq!(violations, [], "offsets committed past unhandled records");
    assert_eq!(
        common::committed(&bootstrap, TOPIC, TOPIC, PARTITIONS),
        common::end_offsets(&bootstrap, TOPIC, PARTITIONS)
    );
}

// ---- consumer processes killed with SIGKILL -------------------------------------

const CHILD_LOG: &str = "LIGHT_KAFKA_TEST_CHILD_LOG";
const SIGKILL_TOPIC: &str = "sigkill";
const SIGKILL_RECORDS: usize = 10_000;
const SIGKILL_PARTITIONS: i32 = 4;

/// The child: a consumer process that appends `partition:offset` of every
/// record to the log before settling it, until it is killed.
async fn child_consumer(log: &str) {
    let kafka = common::real_only();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let file = Arc::new(Mutex::new(file));
    let runtime = consumer(kafka.bootstrap_servers(), SIGKILL_TOPIC, SIGKILL_TOPIC)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .build()
        .unwrap();
    let handler = service_fn(move |record: Record| {
        let file = file.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let line = format!(
                "{}:{}\n",
                record.partition().unwrap(),
                record.offset().unwrap()
            );
            file.lock().unwrap().write_all(line.as_bytes())?;
            Ok::<_, BoxError>(())
        }
    });
    runtime.serve(handler).await.unwrap();
}

fn read_log(path: &std::path::Path) -> Vec<(i32, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        // A line cut by SIGKILL has no newline yet: `lines` still yields it,
        // so keep only complete `p:o` pairs.
        .filter_map(|line| {
            let (p, o) = line.split_once(':')?;
            Some((p.parse().ok()?, o.parse().ok()?))
        })
        .collect()
}

/// A consumer *process* is killed with SIGKILL at least 5 times while it
/// works through 10,000 records, and restarted each time: every record is
/// handled at least once, duplicates are counted, and no commit ever passed an
/// unhandled record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn consumer_process_killed_with_sigkill_loses_nothing() {
    if let Ok(log) = std::env::var(CHILD_LOG) {
        return child_consumer(&log).await;
    }
    let _shared = BROKER.read().await;
    let kafka = common::real_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    kafka
        .create_topic(SIGKILL_TOPIC, SIGKILL_PARTITIONS)
        .unwrap();
    common::produce(
        &bootstrap,
        SIGKILL_TOPIC,
        SIGKILL_PARTITIONS,
        SIGKILL_RECORDS,
        |i| (format!("k{i}"), i.to_string()),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("light-kafka-sigkill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("handled.log");
    let _ = std::fs::remove_file(&log);

    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "consumer_process_killed_with_sigkill_loses_nothing",
                "--include-ignored",
                "--nocapture",
            ])
            .env(CHILD_LOG, &log)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let distinct = |entries: &[(i32, i64)]| entries.iter().collect::<HashSet<_>>().len();

    let mut kills = 0;
    let mut violations = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while kills < 6 {
        let before = read_log(&log).len();
        // Kill after a pseudo-random number of new records: mid-batch, not
        // at a quiet moment.
        let threshold = before + 300 + (kills * 331) % 900;
        let mut child = spawn();
        loop {
            assert!(Instant::now() < deadline, "the children made no progress");
            let entries = read_log(&log);
            if entries.len() >= threshold || distinct(&entries) == SIGKILL_RECORDS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let handled: HashSet<(i32, i64)> = read_log(&log).into_iter().collect();
        if let Some(committed) =
            try_committed(&bootstrap, SIGKILL_TOPIC, SIGKILL_TOPIC, SIGKILL_PARTITIONS)
        {
            violations.extend(committed_past_unhandled(&committed, &handled));
        }
        assert!(
            handled.len() < SIGKILL_RECORDS,
            "all records were handled before the {kills}th kill: make the run longer"
        );
    }

    // The last child runs until every record was handled.
    let mut child = spawn();
    while distinct(&read_log(&log)) < SIGKILL_RECORDS {
        assert!(
            Instant::now() < deadline,
            "the last child did not finish ({} of {SIGKILL_RECORDS})",
            distinct(&read_log(&log))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let its last commit land, then kill it too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let entries = read_log(&log);
    let handled: HashSet<(i32, i64)> = entries.iter().copied().collect();
    let committed = common::committed(&bootstrap, SIGKILL_TOPIC, SIGKILL_TOPIC, SIGKILL_PARTITIONS);
    violations.extend(committed_past_unhandled(&committed, &handled));
    let lost = SIGKILL_RECORDS - handled.len();
    let duplicates = entries.len() - handled.len();
    common::report(format_args!(
        "consumer process SIGKILLed {kills} times: {SIGKILL_RECORDS} records, {lost} lost, \
         {duplicates} handled more than once"
    ));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(kills >= 5);
    assert_eq!(lost, 0, "records never handled");
    assert_eq!(violations, [], "offsets committed past unhandled records");
}

// ---- rebalances -------------------------------------------------------------------

/// Two members in one group, the second joining mid-stream and leaving again:
/// nothing lost, and since every revocation commits what was handled before
/// the partitions go, no record is handled twice.
async fn rebalance(topic: &str, protocol: &[(&str, &str)]) {
    const N: usize = 8_000;
    const PARTITIONS: i32 = 6;
    let _shared = BROKER.read().await;
    let kafka = common::real_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    kafka.create_topic(topic, PARTITIONS).unwrap();
    common::produce(&bootstrap, topic, PARTITIONS, N, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;

    let handled = Arc::new(Mutex::new(HashSet::new()));
    let counts = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let watch = CommitWatch::start(&bootstrap, topic, topic, PARTITIONS, handled.clone());
    let member = || {
        let mut builder = consumer(&bootstrap, topic, topic);
        for (key, value) in protocol {
            builder = builder.set(*key, *value);
        }
        builder.build().unwrap()
    };
    let handler = || counting(handled.clone(), counts.clone(), Duration::from_millis(2));

    let a = member();
    let a_handle = a.handle();
    let a_serving = tokio::spawn(a.serve(handler()));
    wait_for(Duration::from_secs(60), "A to get going", || {
        counts.lock().unwrap().len() >= N / 10
    })
    .await;

    let b = member();
    let b_handle = b.handle();
    let b_serving = tokio::spawn(b.serve(handler()));
    wait_for(Duration::from_secs(60), "B to get partitions", || {
        !b_handle.health().partitions.is_empty() && b_handle.health().processed >= 200
    })
    .await;
    assert!(
        a_handle.health().partitions.len() < PARTITIONS as usize,
        "A kept every partition"
    );
    b_handle.shutdown();
    b_serving.await.unwrap().unwrap();

    wait_for(Duration::from_secs(120), "every record handled", || {
        counts.lock().unwrap().len() == N
    })
    .await;
    a_handle.shutdown();
    a_serving.await.unwrap().unwrap();
    let violations = watch.finish();

    let counts = counts.lock().unwrap();
    let lost = (0..N as u64).filter(|v| !counts.contains_key(v)).count();
    let duplicates: u32 = counts.values().map(|&n| n - 1).sum();
    common::report(format_args!(
        "rebalance ({topic}): {N} records, {lost} lost, {duplicates} handled twice"
    ));
    assert_eq!(lost, 0, "records lost");
    assert_eq!(violations, [], "offsets committed past unhandled records");
    assert_eq!(
        duplicates, 0,
        "records handled twice: a commit on revocation or shutdown failed"
    );
    assert_eq!(
        common::committed(&bootstrap, topic, topic, PARTITIONS),
        common::end_offsets(&bootstrap, topic, PARTITIONS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn rebalance_under_classic_cooperative_sticky_commits_on_revocation() {
    rebalance(
        "rebalance-classic",
        &[
            ("group.protocol", "classic"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn rebalance_under_the_consumer_protocol_kip_848_commits_on_revocation() {
    rebalance("rebalance-kip848", &[("group.protocol", "consumer")]).await;
}
