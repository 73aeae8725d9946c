//! Exactly-once on a real Apache Kafka broker (`scripts/kafka test`): a
//! processor killed with SIGKILL mid-transaction, a rebalance between two
//! processors, and a zombie fenced by its successor.

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use light_kafka::record::Record;
use light_kafka::streams::processor::{ProcessorErrorKind, ProcessorHandle, StreamProcessor};

use common::eos::{check_outputs, counting};

const CHILD: &str = "LIGHT_KAFKA_TEST_EOS_CHILD";

/// A fresh application name under `name`, its input topic holding `n`
/// records over `partitions` partitions and its empty output topic:
/// `(bootstrap, application, input, output)`.
async fn application(name: &str, partitions: i32, n: usize) -> (String, String, String, String) {
    let kafka = common::real_only();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let app = format!("{name}-{}", common::uuid_like());
    let (input, out) = (format!("{app}-in"), format!("{app}-out"));
    kafka.create_topic(&input, partitions).unwrap();
    kafka.create_topic(&out, partitions).unwrap();
    common::produce(&bootstrap, &input, partitions, n, |i| {
        (format!("k{i}"), i.to_string())
    })
    .await;
    (bootstrap, app, input, out)
}

async fn child(spec: &str) {
    let mut parts = spec.split('|');
    let (bootstrap, app, input, out, log) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let file = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap(),
    ));
    let processor = StreamProcessor::builder(&app)
        .bootstrap_servers(&bootstrap)
        .topics([input.as_str()])
        .store("count")
        .instance_id("child")
        .max_batch(100)
        .consumer_set("session.timeout.ms", "6000")
        .consumer_set("heartbeat.interval.ms", "500")
        .build()
        .await
        .unwrap();
    let service = counting(out, Duration::from_millis(2), move |p, restored, offset| {
        writeln!(file.lock().unwrap(), "{p} {restored} {offset}").unwrap();
    });
    processor.run(service).await.unwrap();
}

/// A processor child process is killed with SIGKILL at least 5 times while a
/// transaction is open, and restarted: a `read_committed` reader then sees
/// exactly one output per input, and after every restart each partition's
/// restored count equals the offset its input resumed from (the inputs
/// committed so far).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn processor_killed_with_sigkill_mid_transaction_outputs_each_input_once() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec).await;
    }
    const N: usize = 10_000;
    const P: i32 = 4;
    let (bootstrap, app, input, out) = application("eos-kill", P, N).await;
    let dir = std::env::temp_dir().join(format!("light-kafka-eos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("restores.log");
    let spec = format!("{bootstrap}|{app}|{input}|{out}|{}", log.display());
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "processor_killed_with_sigkill_mid_transaction_outputs_each_input_once",
                "--include-ignored",
                "--nocapture",
            ])
            .env(CHILD, &spec)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(400);
    let mut kills = 0;
    while kills < 5 {
        let before = lines();
        let mut child = spawn();
        // Killed a while after it started handling records: mid-transaction
        // (a batch of 100 records takes about 200 ms).
        while lines() == before {
            assert!(Instant::now() < deadline, "the child made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(700 + 263 * kills as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let mut last = spawn();
    let consumer_done = || {
        common::committed(&bootstrap, &app, &input, P) == common::end_offsets(&bootstrap, &input, P)
    };
    while !consumer_done() {
        assert!(Instant::now() < deadline, "the last child did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last.kill().unwrap();
    last.wait().unwrap();

    let restores: Vec<(i32, u64, i64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect();
    let wrong: Vec<_> = restores
        .iter()
        .filter(|(_, restored, offset)| *restored as i64 != *offset)
        .collect();
    let resumed_mid_stream = restores.iter().filter(|(_, _, offset)| *offset > 0).count();
    let (lost, duplicated) = check_outputs(&bootstrap, &out, P, N);
    common::report(format_args!(
        "stream processor SIGKILLed {kills} times mid-transaction over {N} inputs: {lost} lost, {duplicated} duplicated \
         (read_committed); {} restores, {resumed_mid_stream} mid-stream, {} with a count differing from the committed offset",
        restores.len(),
        wrong.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(kills >= 5);
    assert!(
        resumed_mid_stream >= 5,
        "restarts resumed mid-stream: {restores:?}"
    );
    assert_eq!(
        wrong,
        Vec::<&(i32, u64, i64)>::new(),
        "restored counts equal the committed inputs"
    );
    assert_eq!((lost, duplicated), (0, 0));
}

fn processor(
    bootstrap: &str,
    app: &str,
    input: &str,
    instance: &str,
    protocol: &[(&str, &str)],
) -> light_kafka::streams::processor::StreamProcessorBuilder {
    let mut builder = StreamProcessor::builder(app)
        .bootstrap_servers(bootstrap)
        .topics([input])
        .store("count")
        .instance_id(instance)
        .max_batch(50)
        .consumer_set("session.timeout.ms", "6000")
        .consumer_set("heartbeat.interval.ms", "500");
    for (k, v) in protocol {
        builder = builder.consumer_set(*k, *v);
    }
    builder
}

async fn rebalance(name: &str, protocol: &[(&str, &str)]) {
    const N: usize = 6_000;
    const P: i32 = 6;
    let (bootstrap, app, input, out) = application(name, P, N).await;
    let start = |instance: &str| {
        let builder = processor(&bootstrap, &app, &input, instance, protocol);
        let out = out.clone();
        async move {
            let processor = builder.build().await.unwrap();
            let handle = processor.handle();
            let running =
                tokio::spawn(processor.run(counting(out, Duration::from_millis(1), |_, _, _| {})));
            (handle, running)
        }
    };
    let total = |a: &ProcessorHandle, b: Option<&ProcessorHandle>| {
        a.health().committed_records + b.map_or(0, |b| b.health().committed_records)
    };
    let (first, first_run) = start("a").await;
    assert!(common::eventually(Duration::from_secs(60), || total(&first, None) >= 1_000).await);
    let (second, second_run) = start("b").await;
    assert!(
        common::eventually(Duration::from_secs(90), || total(&first, Some(&second))
            >= 3_500)
        .await
    );
    let second_share = second.health().committed_records;
    second.shutdown();
    second_run.await.unwrap().unwrap();
    assert!(
        common::eventually(Duration::from_secs(120), || common::committed(
            &bootstrap, &app, &input, P
        ) == common::end_offsets(
            &bootstrap, &input, P
        ))
        .await
    );
    first.shutdown();
    first_run.await.unwrap().unwrap();
    let (lost, duplicated) = check_outputs(&bootstrap, &out, P, N);
    common::report(format_args!(
        "two stream processors, {name}, one joining and leaving mid-stream ({second_share} inputs handled by it): \
         {N} inputs, {lost} lost, {duplicated} duplicated (read_committed)"
    ));
    assert!(second_share > 0, "the second processor took part");
    assert_eq!((lost, duplicated), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn a_rebalance_between_two_processors_outputs_each_input_once() {
    rebalance("eos-rebalance", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn a_cooperative_rebalance_between_two_processors_outputs_each_input_once() {
    rebalance(
        "eos-cooperative",
        &[("partition.assignment.strategy", "cooperative-sticky")],
    )
    .await;
}

/// A zombie: an instance whose successor (same `instance_id`) started while
/// it had a transaction open. The zombie cannot commit; it stops with
/// `Fenced`, its open transaction is aborted, and the successor outputs every
/// input exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn a_zombie_processor_cannot_commit() {
    const N: usize = 2_000;
    let (bootstrap, app, input, out) = application("eos-zombie", 2, N).await;

    let zombie = processor(&bootstrap, &app, &input, "z", &[])
        .max_batch(400)
        .max_batch_time(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let zombie_handle = zombie.handle();
    let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = handled.clone();
    let service = counting(out.clone(), Duration::from_millis(5), |_, _, _| {});
    let service = tower::ServiceBuilder::new()
        .map_request(move |r: Record| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        })
        .service(service);
    let zombie_run = tokio::spawn(zombie.run(service));
    // Let it commit a first batch, then catch it with a transaction open.
    assert!(
        common::eventually(Duration::from_secs(60), || zombie_handle.health().committed
            >= 1)
        .await
    );
    let at = handled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        common::eventually(Duration::from_secs(30), || handled
            .load(std::sync::atomic::Ordering::SeqCst)
            > at + 20)
        .await
    );
    let committed_before = zombie_handle.health().committed;

    let successor = processor(&bootstrap, &app, &input, "z", &[])
        .build()
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(60), zombie_run)
        .await
        .expect("the zombie stops")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ProcessorErrorKind::Fenced, "{error}");
    assert_eq!(
        zombie_handle.health().committed,
        committed_before,
        "the zombie committed nothing after its successor started"
    );

    let handle = successor.handle();
    let running = tokio::spawn(successor.run(counting(out.clone(), Duration::ZERO, |_, _, _| {})));
    assert!(
        common::eventually(Duration::from_secs(120), || common::committed(
            &bootstrap, &app, &input, 2
        ) == common::end_offsets(
            &bootstrap, &input, 2
        ))
        .await
    );
    handle.shutdown();
    running.await.unwrap().unwrap();
    let (lost, duplicated) = check_outputs(&bootstrap, &out, 2, N);
    common::report(format_args!(
        "zombie stream processor fenced by its successor ({error}): {N} inputs, {lost} lost, {duplicated} duplicated"
    ));
    assert_eq!((lost, duplicated), (0, 0));
}

/// A projection of a topic written in transactions, some aborted: `consumed`
/// counts the committed records only, and progress (`read` of `total`)
/// counts offsets — records, aborted records and transaction markers alike —
/// so it reaches `total` exactly when the projection is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real broker (scripts/kafka test)"]
async fn projection_progress_counts_offsets_and_consumed_counts_committed_records() {
    use light_kafka::service::transactional::TransactionalProducer;
    use light_kafka::streams::projection::Projection;

    let kafka = common::real_only();
    let topic = format!("projection-markers-{}", common::uuid_like());
    kafka.create_topic(&topic, 2).unwrap();
    let producer = TransactionalProducer::builder(format!("{topic}-tx"))
        .bootstrap_servers(kafka.bootstrap_servers())
        .operation_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let (mut committed, mut transactions) = (0, 0);
    for t in 0..40 {
        let records: Vec<Record> = (0..13)
            .map(|i| {
                Record::builder(topic.as_str())
                    .partition(i % 2)
                    .key(format!("k{}", (t * 13 + i) % 17))
                    .value(format!("{}", t * 13 + i))
                    .build()
            })
            .collect();
        transactions += 1;
        if t % 5 == 4 {
            let mut tx = producer.begin().await.unwrap();
            for record in records {
                tx.send(record).await.unwrap();
            }
            tx.flush().await.unwrap();
            tx.abort().await.unwrap();
        } else {
            producer.send_batch(records).await.unwrap();
            committed += 13;
        }
    }
    let projection = Projection::<u64>::builder("markers", &topic)
        .bootstrap_servers(kafka.bootstrap_servers())
        .start()
        .await
        .unwrap();
    projection.ready(Duration::from_secs(60)).await.unwrap();
    let status = projection.status();
    common::report(format_args!(
        "projection of {transactions} transactions ({committed} committed records): \
         consumed {}, read {} of {} offsets",
        status.consumed, status.read, status.total
    ));
    assert_eq!(status.consumed, committed as u64, "committed records only");
    assert_eq!(status.read, status.total, "progress complete when ready");
    assert!(
        status.total > committed as u64,
        "offsets include markers and aborted records"
    );
}
