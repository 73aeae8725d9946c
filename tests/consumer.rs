//! The consumer runtime against the embedded broker: no loss, order,
//! crash safety, rebalances, backpressure, panics, shutdown.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use light_kafka::error::{ErrorKind, classify};
use light_kafka::record::Record;
use light_kafka::service::consumer::{
    Backoff, Consumer, ConsumerBuilder, ConsumerError, ErrorPolicy, Ordering,
};
use light_kafka::{BoxError, Error};
use tower::{ServiceBuilder, service_fn};

/// A cheap deterministic hash, for "random" but reproducible behaviour.
fn mix(a: u64, b: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 29)
}

fn value_of(record: &Record) -> u64 {
    record.value_str().expect("utf-8").parse().expect("number")
}

fn builder(kafka: &impl common::Bootstrap, group: &str, topic: &str) -> ConsumerBuilder {
    Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .group_id(group)
        .topics([topic])
        .set("session.timeout.ms", "3500")
        .set("heartbeat.interval.ms", "100")
        .set("fetch.wait.max.ms", "10")
        .commit_interval(Duration::from_millis(100))
        .error_policy(ErrorPolicy::Retry(Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(20),
        )))
}

#[derive(Default)]
struct Log {
    attempts: HashMap<u64, u32>,
    failures: HashMap<u64, u32>,
    settled: HashMap<u64, u32>,
    /// (partition, offset) of every settled record.
    settled_offsets: HashSet<(i32, i64)>,
    order: BTreeMap<String, Vec<u64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_is_lost_under_transient_failures() {
    const N: usize = 10_000;
    let kafka = common::seeded("no-loss", 4, N, |i| (format!("k{i}"), i.to_string())).await;

    let log = Arc::new(Mutex::new(Log::default()));
    let consumer = builder(&kafka, "no-loss", "no-loss").build().unwrap();
    let handle = consumer.handle();
    let handler = {
        let log = log.clone();
        service_fn(move |record: Record| {
            let log = log.clone();
            async move {
                let v = value_of(&record);
                let mut log = log.lock().unwrap();
                let attempt = log.attempts.entry(v).or_default();
                *attempt += 1;
                if mix(v, u64::from(*attempt)) % 100 < 5 {
                    *log.failures.entry(v).or_default() += 1;
                    return Err(BoxError::from(Error::transient("flaky dependency")));
                }
                *log.settled.entry(v).or_default() += 1;
                Ok(())
            }
        })
    };
    let serving = tokio::spawn(consumer.serve(handler));
    assert!(
        common::eventually(Duration::from_secs(60), || log
            .lock()
            .unwrap()
            .settled
            .len()
            == N)
        .await,
        "only {} of {N} settled",
        log.lock().unwrap().settled.len()
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let log = log.lock().unwrap();
    let failed_records = log.failures.len();
    assert!(
        failed_records > N / 40,
        "the handler should have failed ~5% of records, failed {failed_records}"
    );
    for v in 0..N as u64 {
        assert_eq!(log.settled.get(&v), Some(&1), "record {v} settled once");
        let failures = log.failures.get(&v).copied().unwrap_or(0);
        assert_eq!(
            log.attempts[&v],
            failures + 1,
            "record {v}: only retries duplicate"
        );
    }
    let health = handle.health();
    assert_eq!(health.processed, N as u64);
    assert_eq!(
        health.failures,
        log.failures.values().map(|&f| u64::from(f)).sum::<u64>()
    );
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "no-loss", "no-loss", 4),
        common::end_offsets(kafka.bootstrap_servers(), "no-loss", 4)
    );
}

async fn ordered_run(ordering: Ordering, partitions: i32, keys: usize, n: usize) -> (Log, usize) {
    let kafka = common::seeded("order", partitions, n, |i| {
        (format!("key-{}", i % keys), i.to_string())
    })
    .await;
    let log = Arc::new(Mutex::new(Log::default()));
    let running = Arc::new(Mutex::new((0usize, 0usize))); // (now, max)
    let consumer = builder(&kafka, "order", "order")
        .ordering(ordering)
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handler = {
        let (log, running) = (log.clone(), running.clone());
        service_fn(move |record: Record| {
            let (log, running) = (log.clone(), running.clone());
            async move {
                {
                    let mut r = running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                let v = value_of(&record);
                tokio::time::sleep(Duration::from_micros(mix(v, 7) % 3_000)).await;
                let lane = match ordering {
                    Ordering::Partition => format!("p{}", record.partition().unwrap()),
                    _ => record.key_str().unwrap().to_owned(),
                };
                let mut log = log.lock().unwrap();
                log.order.entry(lane).or_default().push(v);
                *log.settled.entry(v).or_default() += 1;
                running.lock().unwrap().0 -= 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let serving = tokio::spawn(consumer.serve(handler));
    assert!(
        common::eventually(Duration::from_secs(60), || log
            .lock()
            .unwrap()
            .settled
            .len()
            == n)
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let max_concurrent = running.lock().unwrap().1;
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    (log, max_concurrent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_holds_with_random_handler_latency() {
    let (log, max_concurrent) = ordered_run(Ordering::Partition, 4, 1, 400).await;
    for (lane, values) in &log.order {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(values, &sorted, "{lane} processed out of order");
        assert_eq!(values.len(), 100);
    }
    assert!(max_concurrent > 1, "partitions should run concurrently");
    assert!(
        max_concurrent <= 4,
        "at most one record per partition at a time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_and_keys_overlap() {
    let (log, max_concurrent) = ordered_run(Ordering::Key, 1, 10, 500).await;
    assert_eq!(log.order.len(), 10);
    for (key, values) in &log.order {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(values, &sorted, "{key} processed out of order");
    }
    assert!(
        max_concurrent > 2,
        "different keys of one partition should overlap, max {max_concurrent}"
    );
    assert!(max_concurrent <= 10, "at most one record per key at a time");
}

/// A handler that records what it settles, optionally sleeping per record.
fn recording(
    log: Arc<Mutex<Log>>,
    delay: Duration,
) -> impl tower::Service<Record, Response = (), Error = BoxError, Future = impl Send> + Send {
    service_fn(move |record: Record| {
        let log = log.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let v = value_of(&record);
            let mut log = log.lock().unwrap();
            *log.attempts.entry(v).or_default() += 1;
            *log.settled.entry(v).or_default() += 1;
            log.settled_offsets
                .insert((record.partition().unwrap(), record.offset().unwrap()));
            Ok::<_, BoxError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_consumer_mid_stream_skips_nothing() {
    const N: usize = 5_000;
    let kafka = common::seeded("crash", 2, N, |i| (format!("k{i}"), i.to_string())).await;
    let log = Arc::new(Mutex::new(Log::default()));

    let first = builder(&kafka, "crash", "crash")
        .commit_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let crashing = tokio::spawn(first.serve(recording(log.clone(), Duration::from_micros(200))));
    assert!(
        common::eventually(Duration::from_secs(30), || log
            .lock()
            .unwrap()
            .settled
            .len()
            >= N / 3)
        .await
    );
    // No graceful shutdown: the serving future is dropped where it stands.
    crashing.abort();
    assert!(crashing.await.unwrap_err().is_cancelled());
    let before_restart = log.lock().unwrap().settled.len();
    assert!(before_restart < N, "the crash must happen mid-stream");

    let second = builder(&kafka, "crash", "crash").build().unwrap();
    let handle = second.handle();
    let serving = tokio::spawn(second.serve(recording(log.clone(), Duration::ZERO)));
    assert!(
        common::eventually(Duration::from_secs(30), || log
            .lock()
            .unwrap()
            .settled
            .len()
            == N)
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let log = log.lock().unwrap();
    assert!(
        (0..N as u64).all(|v| log.settled.contains_key(&v)),
        "a record was skipped"
    );
    let redelivered = log.settled.values().filter(|&&n| n > 1).count();
    assert!(
        redelivered < N,
        "only records after the last commit are redelivered ({redelivered})"
    );
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "crash", "crash", 2),
        common::end_offsets(kafka.bootstrap_servers(), "crash", 2)
    );
}

async fn rebalance_run(strategy: &str) {
    const N: usize = 4_000;
    const PARTITIONS: i32 = 4;
    let topic = format!("rebalance-{strategy}");
    let kafka = common::seeded(&topic, PARTITIONS, N, |i| (format!("k{i}"), i.to_string())).await;
    let log = Arc::new(Mutex::new(Log::default()));
    let group = format!("rebalance-{strategy}");
    let member = || {
        builder(&kafka, &group, &topic)
            .set("partition.assignment.strategy", strategy)
            .commit_interval(Duration::from_millis(20))
            .revoke_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };

    // Watch the group's commits: nothing below a committed offset may be unsettled.
    let violations = Arc::new(Mutex::new(Vec::new()));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (log, violations, watching) = (log.clone(), violations.clone(), watching.clone());
        let (bootstrap, group, topic) = (
            kafka.bootstrap_servers().to_owned(),
            group.clone(),
            topic.clone(),
        );
        std::thread::spawn(move || {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let committed = common::committed(&bootstrap, &group, &topic, PARTITIONS);
                let log = log.lock().unwrap();
                for (p, &c) in committed.iter().enumerate() {
                    for offset in 0..c.max(0) {
                        if !log.settled_offsets.contains(&(p as i32, offset)) {
                            violations.lock().unwrap().push((p, offset, c));
                            break;
                        }
                    }
                }
                drop(log);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let a = member();
    let a_handle = a.handle();
    let a_serving = tokio::spawn(a.serve(recording(log.clone(), Duration::from_millis(10))));
    assert!(
        common::eventually(Duration::from_secs(30), || log
            .lock()
            .unwrap()
            .settled
            .len()
            >= N / 20)
        .await
    );

    // B joins mid-stream...
    let b = member();
    let b_handle = b.handle();
    let b_serving = tokio::spawn(b.serve(recording(log.clone(), Duration::from_millis(10))));
    assert!(
        common::eventually(Duration::from_secs(30), || !b_handle
            .health()
            .partitions
            .is_empty()
            && b_handle.health().processed >= 100)
        .await,
        "B never got partitions"
    );
    assert!(
        a_handle.health().partitions.len() < PARTITIONS as usize,
        "A kept every partition"
    );
    // ...and leaves.
    b_handle.shutdown();
    b_serving.await.unwrap().unwrap();

    assert!(
        common::eventually(Duration::from_secs(60), || log
            .lock()
            .unwrap()
            .settled
            .len()
            == N)
        .await
    );
    a_handle.shutdown();
    a_serving.await.unwrap().unwrap();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();

    assert_eq!(
        violations.lock().unwrap().as_slice(),
        &[],
        "offsets committed past unsettled records"
    );
    let log = log.lock().unwrap();
    assert!(
        (0..N as u64).all(|v| log.settled.contains_key(&v)),
        "a record was lost"
    );
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), &group, &topic, PARTITIONS),
        common::end_offsets(kafka.bootstrap_servers(), &topic, PARTITIONS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_and_leaving_loses_nothing_eager() {
    rebalance_run("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_and_leaving_loses_nothing_cooperative() {
    rebalance_run("cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_chain_keeps_buffering_within_the_bound() {
    const N: usize = 100_000;
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 1_000;
    const TOTAL: usize = 2_000;
    let kafka = common::seeded("slow", PARTITIONS, N, |i| (String::new(), i.to_string())).await;

    let log = Arc::new(Mutex::new(Log::default()));
    let consumer = builder(&kafka, "slow", "slow")
        .max_poll_records(PER_PARTITION)
        .max_buffered(TOTAL)
        .build()
        .unwrap();
    let handle = consumer.handle();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = {
        let (log, seen) = (log.clone(), seen.clone());
        service_fn(move |record: Record| {
            let (log, seen) = (log.clone(), seen.clone());
            async move {
                // Slow for the first few thousand records, then quick.
                if seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3_000 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                *log.lock()
                    .unwrap()
                    .settled
                    .entry(value_of(&record))
                    .or_default() += 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = ServiceBuilder::new().concurrency_limit(1).service(handler);
    let serving = tokio::spawn(consumer.serve(chain));

    let mut saw_pause = false;
    let mut max_partition_buffer = 0;
    let mut done = false;
    for _ in 0..6_000 {
        let health = handle.health();
        saw_pause |= health.partitions.iter().any(|p| p.paused);
        max_partition_buffer = health
            .partitions
            .iter()
            .map(|p| p.buffered)
            .max()
            .unwrap_or(0)
            .max(max_partition_buffer);
        assert!(health.in_flight <= 1, "ConcurrencyLimit(1) must hold");
        if log.lock().unwrap().settled.len() == N {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        done,
        "only {} of {N} processed",
        log.lock().unwrap().settled.len()
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let health = handle.health();
    assert!(
        health.peak_buffered <= TOTAL,
        "peak buffered {} over the bound {TOTAL}",
        health.peak_buffered
    );
    assert!(health.peak_buffered > 0);
    assert!(
        max_partition_buffer <= PER_PARTITION,
        "a partition held {max_partition_buffer}"
    );
    assert!(saw_pause, "fetching was never paused");
    assert!(health.backpressure_pauses > 0);
    let log = log.lock().unwrap();
    assert!(
        log.settled.values().all(|&n| n == 1),
        "no record may be lost or repeated"
    );
}

/// A handler that awaits a millisecond of I/O drains a small window long
/// before the runtime's 20 ms hold runs out, so its partitions keep fetching:
/// pausing them on every window (as the runtime once did) made librdkafka
/// discard its prefetched messages and refetch them up to a second later
/// (4,400 records/s with a 5 ms handler and the broker in the same process,
/// whatever the concurrency).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_awaiting_io_does_not_pause_its_partitions_on_every_window() {
    const N: usize = 6_000;
    const PER_PARTITION: usize = 60;
    let kafka = common::seeded("awaiting", 2, N, |i| (format!("k{i}"), i.to_string())).await;
    let settled = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let consumer = builder(&kafka, "awaiting", "awaiting")
        .ordering(Ordering::Key)
        .max_in_flight(1_024)
        .max_poll_records(PER_PARTITION)
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handler = {
        let settled = settled.clone();
        service_fn(move |record: Record| {
            let settled = settled.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                *settled
                    .lock()
                    .unwrap()
                    .entry(value_of(&record))
                    .or_default() += 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let serving = tokio::spawn(consumer.serve(handler));
    let mut peak = 0;
    for _ in 0..3_000 {
        let health = handle.health();
        let most = health.partitions.iter().map(|p| p.buffered).max();
        peak = peak.max(most.unwrap_or(0));
        if settled.lock().unwrap().len() == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.shutdown();
    serving.await.unwrap().unwrap();

    let settled = settled.lock().unwrap();
    assert_eq!(settled.len(), N, "every record settles");
    assert!(settled.values().all(|&n| n == 1), "none twice");
    assert!(peak <= PER_PARTITION, "a partition held {peak}");
    // Each partition fills and drains its window about N / 2 / 20 = 150 times.
    let pauses = handle.health().backpressure_pauses;
    assert!(pauses <= 30, "{pauses} pauses for about 300 windows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_and_the_runtime_survives() {
    let kafka = common::seeded("panic", 1, 50, |i| (String::new(), i.to_string())).await;
    let attempts = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let consumer = builder(&kafka, "panic", "panic").build().unwrap();
    let handle = consumer.handle();
    let handler = {
        let attempts = attempts.clone();
        service_fn(move |record: Record| {
            let attempts = attempts.clone();
            async move {
                let v = value_of(&record);
                let attempt = {
                    let mut a = attempts.lock().unwrap();
                    let n = a.entry(v).or_default();
                    *n += 1;
                    *n
                };
                if v == 7 && attempt == 1 {
                    panic!("record seven is cursed");
                }
                Ok::<_, BoxError>(())
            }
        })
    };
    let serving = tokio::spawn(consumer.serve(handler));
    assert!(common::eventually(Duration::from_secs(30), || handle.health().processed == 50).await);
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts[&7], 2);
    assert!(
        attempts
            .iter()
            .filter(|(v, _)| **v != 7)
            .all(|(_, &n)| n == 1)
    );
    let health = handle.health();
    assert_eq!(health.failures, 1);
    assert!(
        health
            .last_error
            .unwrap()
            .contains("record seven is cursed")
    );
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "panic", "panic", 1),
        [50]
    );
}

/// Runs a handler that settles everything but blocks forever on the records
/// `blocked` selects, shuts down once `settled` records are settled, and
/// returns the committed offset.
async fn shutdown_run(
    ordering: Ordering,
    keys: usize,
    blocked: fn(u64) -> bool,
    settled: usize,
) -> (i64, Log) {
    let kafka = common::seeded("shutdown", 1, 100, |i| {
        (format!("key-{}", i % keys), i.to_string())
    })
    .await;
    let log = Arc::new(Mutex::new(Log::default()));
    let consumer = builder(&kafka, "shutdown", "shutdown")
        .ordering(ordering)
        .commit_interval(Duration::from_secs(3600))
        .commit_every(1_000_000)
        .shutdown_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handler = {
        let log = log.clone();
        service_fn(move |record: Record| {
            let log = log.clone();
            async move {
                let v = value_of(&record);
                if blocked(v) {
                    std::future::pending::<()>().await;
                }
                log.lock()
                    .unwrap()
                    .settled_offsets
                    .insert((0, record.offset().unwrap()));
                Ok::<_, BoxError>(())
            }
        })
    };
    let serving = tokio::spawn(consumer.serve(handler));
    assert!(
        common::eventually(Duration::from_secs(30), || log
            .lock()
            .unwrap()
            .settled_offsets
            .len()
            >= settled)
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let committed = common::committed(kafka.bootstrap_servers(), "shutdown", "shutdown", 1)[0];
    (
        committed,
        Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_commits_exactly_the_settled_prefix() {
    let (committed, log) = shutdown_run(Ordering::Partition, 1, |v| v == 40, 40).await;
    assert_eq!(log.settled_offsets.len(), 40);
    assert_eq!(committed, 40);

    // Key-ordered: records after the blocked one settle, but the commit stops
    // at the first unsettled offset.
    // Keys are `v % 5`: record 12 blocks key 2 from offset 12 on (18 records).
    let (committed, log) = shutdown_run(Ordering::Key, 5, |v| v == 12, 82).await;
    assert_eq!(log.settled_offsets.len(), 82);
    assert!(!log.settled_offsets.contains(&(0, 12)));
    assert_eq!(committed, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_stops_and_commits_nothing_past_the_failure() {
    let kafka = common::seeded("fail-fast", 1, 60, |i| (String::new(), i.to_string())).await;
    let consumer = builder(&kafka, "fail-fast", "fail-fast")
        .error_policy(ErrorPolicy::FailFast)
        .build()
        .unwrap();
    let handler = service_fn(|record: Record| async move {
        if value_of(&record) == 25 {
            Err(BoxError::from(Error::handler("unprocessable order")))
        } else {
            Ok(())
        }
    });
    let err = consumer.serve(handler).await.unwrap_err();
    match &err {
        ConsumerError::Handler {
            topic,
            partition,
            offset,
            source,
        } => {
            assert_eq!((topic.as_str(), *partition, *offset), ("fail-fast", 0, 25));
            assert_eq!(classify(source.as_ref()), ErrorKind::Handler);
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "fail-fast", "fail-fast", 1),
        [25]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn towers_own_layers_work_around_a_handler() {
    let kafka = common::seeded("tower", 4, 400, |i| (format!("k{i}"), i.to_string())).await;
    let log = Arc::new(Mutex::new(Log::default()));
    let slow_once = Arc::new(Mutex::new(HashSet::new()));
    let handler = {
        let (log, slow_once) = (log.clone(), slow_once.clone());
        service_fn(move |record: Record| {
            let (log, slow_once) = (log.clone(), slow_once.clone());
            async move {
                let v = value_of(&record);
                // Record 3's first attempt outlives the timeout.
                if v == 3 && slow_once.lock().unwrap().insert(v) {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                let mut log = log.lock().unwrap();
                *log.settled.entry(v).or_default() += 1;
                Ok::<_, BoxError>(())
            }
        })
    };
    let chain = ServiceBuilder::new()
        .load_shed()
        .buffer(64)
        .concurrency_limit(8)
        .rate_limit(100_000, Duration::from_secs(1))
        .timeout(Duration::from_millis(100))
        .service(handler);
    let consumer = builder(&kafka, "tower", "tower").build().unwrap();
    let handle = consumer.handle();
    let serving = tokio::spawn(consumer.serve(chain));
    assert!(
        common::eventually(Duration::from_secs(30), || log
            .lock()
            .unwrap()
            .settled
            .len()
            == 400)
        .await
    );
    handle.shutdown();
    serving.await.unwrap().unwrap();
    let health = handle.health();
    assert!(
        health.failures >= 1,
        "the timeout should have failed record 3 once"
    );
    assert!(log.lock().unwrap().settled.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_its_records_propagation_and_a_signal_stops_the_runtime() {
    use light_kafka::record::names;
    let kafka = common::Kafka::start();
    kafka.create_topic("context", 1).unwrap();
    let producer = light_kafka::service::producer::Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .build()
        .unwrap();
    for i in 0..5 {
        let record = Record::builder("context")
            .value(i.to_string())
            .header(names::CORRELATION_ID, format!("corr-{i}"))
            .header(
                names::TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .build();
        tower::ServiceExt::oneshot(producer.clone(), record)
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop_tx = Arc::new(Mutex::new(Some(stop_tx)));
    let handler = {
        let (seen, stop_tx) = (seen.clone(), stop_tx.clone());
        service_fn(move |record: Record| {
            let (seen, stop_tx) = (seen.clone(), stop_tx.clone());
            async move {
                // Deep inside the handler, without the record at hand.
                let current = light_kafka::context::current().expect("a current propagation");
                let http = current.to_header_map().unwrap();
                let mut seen = seen.lock().unwrap();
                seen.push((
                    value_of(&record),
                    current.correlation_id().map(str::to_owned),
                    http.get("traceparent").is_some(),
                ));
                if seen.len() == 5 {
                    stop_tx.lock().unwrap().take().map(|tx| tx.send(()));
                }
                Ok::<_, BoxError>(())
            }
        })
    };
    let consumer = builder(&kafka, "context", "context").build().unwrap();
    consumer
        .serve_with_shutdown(handler, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    for (v, correlation, traceparent) in seen.iter() {
        assert_eq!(correlation.as_deref(), Some(format!("corr-{v}").as_str()));
        assert!(traceparent);
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        common::committed(kafka.bootstrap_servers(), "context", "context", 1),
        [5]
    );
}
