//! The broker a bench runs on:
//!
//! - a real cluster, when `LIGHT_KAFKA_BENCH_BOOTSTRAP` names one
//!   (`scripts/kafka bench` starts one and sets it): rows end in `-real`;
//! - the embedded broker inside the bench process, when
//!   `LIGHT_KAFKA_BENCH_IN_PROCESS=1`: rows end in `-in-process`;
//! - otherwise the embedded broker in a process of its own (this bench binary
//!   run again as a broker host), so that the broker's threads are not the
//!   measured process's: rows without a suffix.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use light_kafka::service::embedded::EmbeddedKafka;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

const CHILD: &str = "LIGHT_KAFKA_BENCH_BROKER_CHILD";

pub(crate) enum Broker {
    Embedded(EmbeddedKafka),
    Process {
        bootstrap: String,
        child: Child,
        control: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    },
    Real(String),
}

/// When this process is a broker host (see the module docs), serves until
/// its standard input closes and returns `true`.
pub(crate) fn serve_if_child() -> bool {
    if std::env::var_os(CHILD).is_none() {
        return false;
    }
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    println!("{}", kafka.bootstrap_servers());
    for line in std::io::stdin().lines() {
        let line = line.expect("stdin");
        let mut words = line.split_whitespace();
        if let (Some("create"), Some(topic), Some(partitions)) =
            (words.next(), words.next(), words.next())
        {
            kafka
                .create_topic(topic, partitions.parse().expect("partitions"))
                .expect("topic");
            println!("ok");
        }
    }
    true
}

impl Broker {
    pub(crate) fn start() -> Broker {
        if let Ok(bootstrap) = std::env::var("LIGHT_KAFKA_BENCH_BOOTSTRAP")
            && !bootstrap.trim().is_empty()
        {
            return Broker::Real(bootstrap);
        }
        if std::env::var("LIGHT_KAFKA_BENCH_IN_PROCESS").is_ok_and(|v| v == "1") {
            return Broker::Embedded(EmbeddedKafka::start().expect("embedded broker"));
        }
        let mut child = Command::new(std::env::current_exe().expect("bench binary"))
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("broker process");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut bootstrap = String::new();
        stdout.read_line(&mut bootstrap).expect("bootstrap line");
        Broker::Process {
            bootstrap: bootstrap.trim().to_owned(),
            child,
            control: Mutex::new((stdin, stdout)),
        }
    }

    pub(crate) fn bootstrap_servers(&self) -> &str {
        match self {
            Broker::Embedded(kafka) => kafka.bootstrap_servers(),
            Broker::Process { bootstrap, .. } | Broker::Real(bootstrap) => bootstrap,
        }
    }

    /// The suffix of the summary rows (see the module docs).
    pub(crate) fn suffix(&self) -> &'static str {
        match self {
            Broker::Embedded(_) => "-in-process",
            Broker::Process { .. } => "",
            Broker::Real(_) => "-real",
        }
    }

    /// The command that produces this bench's rows.
    pub(crate) fn command(&self, bench: &str) -> String {
        match self {
            Broker::Embedded(_) => {
                format!("LIGHT_KAFKA_BENCH_IN_PROCESS=1 cargo bench --bench {bench}")
            }
            Broker::Process { .. } => format!("cargo bench --bench {bench}"),
            Broker::Real(_) => format!("scripts/kafka bench {bench}"),
        }
    }

    /// Creates a topic named after `base` (unique per process on a real
    /// cluster, where earlier runs left theirs) and returns its name.
    pub(crate) async fn create_topic(&self, base: &str, partitions: i32) -> String {
        match self {
            Broker::Embedded(kafka) => {
                kafka.create_topic(base, partitions).expect("topic");
                base.to_owned()
            }
            Broker::Process { control, .. } => {
                let mut control = control.lock().unwrap();
                writeln!(control.0, "create {base} {partitions}").expect("to the broker");
                let mut ok = String::new();
                control.1.read_line(&mut ok).expect("from the broker");
                assert_eq!(ok.trim(), "ok");
                base.to_owned()
            }
            Broker::Real(bootstrap) => {
                let name = format!("{base}-{}", std::process::id());
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()
                    .expect("admin client");
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
                for result in admin
                    .create_topics([&topic], &options)
                    .await
                    .expect("create")
                {
                    result.expect("topic created");
                }
                // Let every partition get its leader before producing.
                tokio::time::sleep(Duration::from_secs(1)).await;
                name
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Process { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The median of `values` (sorted in place).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Produces `n` records of 16 bytes to `topic`, record `i` to partition
/// `i % partitions` with the key `key-{i % keys}`, and waits for them all.
pub(crate) async fn seed(kafka: &Broker, topic: &str, partitions: i32, n: usize, keys: usize) {
    use futures_util::StreamExt;
    use light_kafka::record::Record;
    use light_kafka::service::producer::Producer;
    use tower::{Service, ServiceExt};
    let mut producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap_servers())
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .build()
        .expect("producer");
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for i in 0..n {
        let record = Record::builder(topic)
            .partition((i % partitions as usize) as i32)
            .key(format!("key-{}", i % keys))
            .value(format!("{i:016}"))
            .build();
        pending.push(producer.ready().await.expect("ready").call(record));
        while pending.len() > 50_000 {
            pending.next().await.expect("pending").expect("delivery");
        }
    }
    while let Some(result) = pending.next().await {
        result.expect("delivery");
    }
}

/// The `main` of a broker bench: serves as a broker host when it is one;
/// does nothing under `cargo test --benches` (which only checks that benches
/// build: `cargo bench` passes `--bench`); otherwise runs `body` with the
/// broker and the value of `LIGHT_KAFKA_BENCH` (the one row to measure, or
/// empty for all) on a two-thread runtime.
pub(crate) fn main<F, Fut>(body: F)
where
    F: FnOnce(Broker, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if serve_if_child() || !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let only = std::env::var("LIGHT_KAFKA_BENCH").unwrap_or_default();
    runtime.block_on(async move { body(Broker::start(), only).await });
}
