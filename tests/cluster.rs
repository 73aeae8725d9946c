//! On a 3-node Apache Kafka cluster (`scripts/kafka cluster test`, replication
//! factor 3, `min.insync.replicas` 2, `acks=all`): the consumer runtime and
//! the producer ride through the partition leaders being bounced, hard
//! (SIGKILL) and clean (SIGTERM), while records flow — nothing lost, no
//! offset committed past a record that was not handled.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use light_kafka::BoxError;
use light_kafka::record::Record;
use light_kafka::service::consumer::Consumer;
use light_kafka::service::producer::Producer;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use tower::{Service, ServiceExt, service_fn};

const PARTITIONS: i32 = 3;

/// The cluster `scripts/kafka cluster test` started.
fn cluster() -> String {
    std::env::var("LIGHT_KAFKA_TEST_CLUSTER").unwrap_or_else(|_| {
        panic!(
            "this test needs the 3-node cluster: run `scripts/kafka cluster test --test cluster`"
        )
    })
}

/// `scripts/kafka cluster <command> <node>`.
fn ctl(command: &str, node: i32) {
    let script = std::env::var("LIGHT_KAFKA_TEST_CLUSTER_CTL").expect("the cluster's script");
    let status = std::process::Command::new(&script)
        .args(["cluster", command, &node.to_string()])
        .status()
        .expect("the cluster script runs");
    assert!(
        status.success(),
        "`cluster {command} {node}` failed: {status}"
    );
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// The node that leads `topic`'s `partition` now.
fn leader(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let consumer: BaseConsumer = client(bootstrap).create().expect("metadata client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(leader) = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
                .map(|p| p.leader())
                .filter(|leader| *leader > 0)
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}[{partition}] has no leader"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn offsets(consumer: &BaseConsumer, topic: &str, committed: bool) -> Vec<i64> {
    if committed {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
            return vec![-1; PARTITIONS as usize];
        };
        (0..PARTITIONS)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect()
    } else {
        (0..PARTITIONS)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }
}

/// Handled offsets per partition: the first offset not yet handled.
fn handled_prefix(handled: &Mutex<Vec<BTreeSet<i64>>>) -> Vec<i64> {
    handled
        .lock()
        .unwrap()
        .iter()
        .map(|offsets| {
            let mut next = 0;
            while offsets.contains(&next) {
                next += 1;
            }
            next
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the 3-node cluster (scripts/kafka cluster test)"]
async fn three_node_cluster_consumer_and_producer_ride_through_leader_bounces() {
    const N: usize = 20_000;
    let bootstrap = cluster();
    let topic = format!("bounce-{}", common::uuid_like());
    let group = format!("{topic}-group");
    let admin: AdminClient<DefaultClientContext> = client(&bootstrap).create().expect("admin");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = admin
        .create_topics(
            [
                &NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(3))
                    .set("min.insync.replicas", "2"),
            ],
            &options,
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    for p in 0..PARTITIONS {
        leader(&bootstrap, &topic, p);
    }

    // The consumer runtime, handling everything and noting what it handled.
    let handled = Arc::new(Mutex::new(vec![BTreeSet::new(); PARTITIONS as usize]));
    let values = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .topics([topic.as_str()])
        .commit_interval(Duration::from_millis(100))
        .build()
        .expect("consumer");
    let handle = consumer.handle();
    let serving = {
        let (handled, values) = (handled.clone(), values.clone());
        tokio::spawn(consumer.serve(service_fn(move |record: Record| {
            let (handled, values) = (handled.clone(), values.clone());
            async move {
                let value = record.value_str()?.to_owned();
                *values.lock().unwrap().entry(value).or_default() += 1;
                handled.lock().unwrap()[record.partition().unwrap_or(0) as usize]
                    .insert(record.offset().unwrap_or(-1));
                Ok::<_, BoxError>(())
            }
        })))
    };

    // A watcher: a committed offset is never past the handled prefix.
    let watching = {
        let (bootstrap, topic, group, handled) = (
            bootstrap.clone(),
            topic.clone(),
            group.clone(),
            handled.clone(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut config = client(&bootstrap);
            config.set("group.id", &group);
            let reader: BaseConsumer = config.create().expect("offset reader");
            let (mut checks, mut violations) = (0, Vec::new());
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let committed = offsets(&reader, &topic, true);
                let prefix = handled_prefix(&handled);
                for p in 0..PARTITIONS as usize {
                    if committed[p] > prefix[p] {
                        violations.push((p, committed[p], prefix[p]));
                    }
                }
                checks += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            (checks, violations)
        });
        (stop, thread)
    };

    // Bounces while the producer produces: a hard one, a clean one, a hard one.
    let bouncing = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            let mut done = Vec::new();
            for (partition, command) in [(0, "kill"), (1, "term"), (2, "kill")] {
                std::thread::sleep(Duration::from_secs(2));
                let node = leader(&bootstrap, &topic, partition);
                ctl(command, node);
                std::thread::sleep(Duration::from_secs(3));
                ctl("restart", node);
                done.push(format!("{command} node {node} (leader of {partition})"));
            }
            done
        })
    };

    let mut producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .build()
        .expect("producer");
    let started = Instant::now();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for i in 0..N {
        let record = Record::builder(topic.as_str())
            .key(format!("k{}", i % 97))
            .value(format!("v{i}"))
            .build();
        pending.push(producer.ready().await.expect("ready").call(record));
        if i % 1_000 == 999 {
            // Spread the records over the bounces.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    use futures_util::StreamExt;
    let mut failed = 0;
    while let Some(result) = pending.next().await {
        if let Err(error) = result {
            eprintln!("delivery failed: {error}");
            failed += 1;
        }
    }
    let produced_in = started.elapsed();
    let bounces = bouncing.join().expect("bounces");

    // Every record handled and committed.
    let reader: BaseConsumer = client(&bootstrap).create().expect("reader");
    let end = offsets(&reader, &topic, false);
    let all_handled = common::eventually(Duration::from_secs(120), || {
        values.lock().unwrap().len() >= N - failed
            && handle
                .health()
                .partitions
                .iter()
                .filter_map(|p| p.committed)
                .sum::<i64>()
                >= end.iter().sum::<i64>()
    })
    .await;
    handle.shutdown();
    serving.await.expect("serving task").expect("serve");
    let (stop, thread) = watching;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (checks, violations) = thread.join().expect("watcher");

    let values = values.lock().unwrap();
    let lost = (0..N)
        .filter(|i| !values.contains_key(&format!("v{i}")))
        .count();
    let twice = values.values().filter(|n| **n > 1).count();
    common::report(format_args!(
        "cluster, {}: {N} produced in {:.1} s ({failed} failed deliveries, {} records in the log), \
         {lost} lost, {twice} handled more than once, {} committed-offset checks, {} past an unhandled record",
        bounces.join(", "),
        produced_in.as_secs_f64(),
        end.iter().sum::<i64>(),
        checks,
        violations.len()
    ));
    assert_eq!(
        failed, 0,
        "every delivery acknowledged by the in-sync replicas"
    );
    assert_eq!(
        end.iter().sum::<i64>(),
        N as i64,
        "the idempotent producer wrote each record once"
    );
    assert!(all_handled, "every record handled and committed");
    assert_eq!(lost, 0);
    assert!(
        violations.is_empty(),
        "commits past unhandled records: {violations:?}"
    );
    assert!(checks > 10, "the watcher ran ({checks} checks)");
}

const EOS_CHILD: &str = "LIGHT_KAFKA_TEST_CLUSTER_EOS_CHILD";

/// The processor of the fault matrix, in a child process of its own so that
/// it can be killed: counts inputs per partition in a store and writes one
/// output per input, exactly once.
async fn eos_child(spec: &str) {
    let mut parts = spec.split('|').map(str::to_owned);
    let mut next = || parts.next().expect("child spec");
    let (bootstrap, app, input, out) = (next(), next(), next(), next());
    let processor = light_kafka::streams::processor::StreamProcessor::builder(&app)
        .bootstrap_servers(&bootstrap)
        .topics([input.as_str()])
        .store("count")
        .instance_id("child")
        .max_batch(200)
        .consumer_set("session.timeout.ms", "10000")
        .consumer_set("heartbeat.interval.ms", "500")
        .build()
        .await
        .expect("processor");
    let service = common::eos::counting(out, Duration::from_micros(500), |_, _, _| {});
    // SIGTERM is a clean bounce: the processor finishes its transaction and
    // leaves; SIGKILL ends it wherever it is.
    let handle = processor.handle();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::spawn(async move {
        terminate.recv().await;
        handle.shutdown();
    });
    processor
        .run(service)
        .await
        .expect("the processor runs until stopped");
}

/// Kafka's own `transactions_test.py` matrix on the cluster: {SIGKILL,
/// SIGTERM} × {the leader broker of the input and output partitions, the
/// processor's process}, bounced while 20,000 inputs are processed; then a
/// `read_committed` reader finds exactly one output per input, and in input
/// order per partition the counts move by one (the store equals the inputs
/// committed before each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the 3-node cluster (scripts/kafka cluster test)"]
async fn three_node_cluster_eos_processor_fault_matrix() {
    if let Ok(spec) = std::env::var(EOS_CHILD) {
        return eos_child(&spec).await;
    }
    const N: usize = 20_000;
    let bootstrap = cluster();
    let app = format!("eos-matrix-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), format!("{app}-out"));
    let admin: AdminClient<DefaultClientContext> = client(&bootstrap).create().expect("admin");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for topic in [&input, &out, &format!("{app}-count-changelog")] {
        let mut new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(3))
            .set("min.insync.replicas", "2");
        if topic.ends_with("-changelog") {
            new = new.set("cleanup.policy", "compact");
        }
        let created = admin.create_topics([&new], &options).await.expect("create");
        assert!(created.iter().all(Result::is_ok), "{created:?}");
        for p in 0..PARTITIONS {
            leader(&bootstrap, topic, p);
        }
    }
    common::produce(&bootstrap, &input, PARTITIONS, N, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;

    let spec = format!("{bootstrap}|{app}|{input}|{out}");
    let spawn = || {
        std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "three_node_cluster_eos_processor_fault_matrix",
                "--include-ignored",
                "--nocapture",
            ])
            .env(EOS_CHILD, &spec)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("processor child")
    };
    let committed_inputs = || -> i64 {
        let mut config = client(&bootstrap);
        config.set("group.id", &app);
        let reader: BaseConsumer = config.create().expect("reader");
        offsets(&reader, &input, true)
            .iter()
            .map(|o| o.max(&0))
            .sum()
    };
    let progressed = |since: i64, by: i64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now = committed_inputs();
            if now >= since + by || now >= N as i64 {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "no progress past {now} committed inputs"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let mut child = spawn();
    let mut done = Vec::new();
    let mut at = progressed(0, 1);
    let schedule = [
        ("kill", "leader"),
        ("kill", "processor"),
        ("term", "leader"),
        ("term", "processor"),
        ("kill", "leader"),
        ("kill", "processor"),
    ];
    for (signal, target) in schedule {
        at = progressed(at, 1_500);
        if at >= N as i64 {
            break;
        }
        if target == "leader" {
            // The leader of an input partition, or of an output partition.
            let topic = if done.len() % 2 == 0 { &input } else { &out };
            let node = leader(&bootstrap, topic, done.len() as i32 % PARTITIONS);
            ctl(signal, node);
            std::thread::sleep(Duration::from_secs(2));
            ctl("restart", node);
            done.push(format!("{signal} leader node {node} at {at} committed"));
        } else {
            let pid = child.id().to_string();
            let status = std::process::Command::new("kill")
                .args([if signal == "kill" { "-KILL" } else { "-TERM" }, &pid])
                .status()
                .expect("kill");
            assert!(status.success());
            child.wait().expect("the child ends");
            child = spawn();
            done.push(format!("{signal} processor at {at} committed"));
        }
    }
    progressed(at, N as i64);
    child.kill().expect("stop the last child");
    child.wait().expect("the last child ends");

    let (lost, duplicated) = common::eos::check_outputs(&bootstrap, &out, PARTITIONS, N);
    common::report(format_args!(
        "cluster EOS matrix, {} bounces ({}): {N} inputs, {lost} lost, {duplicated} duplicated, \
         counts in input order per partition (read_committed)",
        done.len(),
        done.join("; ")
    ));
    assert!(done.len() >= 4, "bounces happened: {done:?}");
    assert_eq!((lost, duplicated), (0, 0));
}
