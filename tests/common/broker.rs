//! The test broker: embedded by default, a real cluster when
//! `LIGHT_KAFKA_TEST_BOOTSTRAP` is set.

use std::time::{Duration, Instant};

use light_kafka::service::embedded::EmbeddedKafka;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The environment variable naming a real cluster's bootstrap servers.
pub const BOOTSTRAP_ENV: &str = "LIGHT_KAFKA_TEST_BOOTSTRAP";
/// The environment variable naming the script that controls the real broker
/// (`scripts/kafka`), set by `scripts/kafka test`.
pub const CTL_ENV: &str = "LIGHT_KAFKA_TEST_BROKER_CTL";

/// A broker for one test.
pub enum Kafka {
    /// librdkafka's mock cluster, private to the test.
    Embedded(EmbeddedKafka),
    /// A real cluster, shared by every test of the run: tests use topic and
    /// group names of their own.
    Real(String),
}

impl Kafka {
    /// The real cluster in `LIGHT_KAFKA_TEST_BOOTSTRAP`, else a new embedded one.
    pub fn start() -> Kafka {
        match std::env::var(BOOTSTRAP_ENV) {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => Kafka::Real(bootstrap),
            _ => Kafka::Embedded(EmbeddedKafka::start().expect("embedded broker")),
        }
    }

    /// The value for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Kafka::Embedded(kafka) => kafka.bootstrap_servers(),
            Kafka::Real(bootstrap) => bootstrap,
        }
    }

    /// Whether this is a real cluster.
    pub fn is_real(&self) -> bool {
        matches!(self, Kafka::Real(_))
    }

    /// Creates `topic` with `partitions` partitions, empty. On a real cluster a
    /// topic of that name left by an earlier run is deleted first, with its
    /// dead-letter topic, and the call returns once every partition has a leader.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        match self {
            Kafka::Embedded(kafka) => kafka.create_topic(topic, partitions),
            Kafka::Real(bootstrap) => {
                let (bootstrap, topic) = (bootstrap.clone(), topic.to_owned());
                // The admin client is async; run it apart from the test's runtime.
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(recreate_topic(&bootstrap, &topic, partitions))
                })
                .join()
                .expect("admin thread")
            }
        }
    }
}

/// What test helpers need of either broker.
pub trait Bootstrap {
    /// The value for `bootstrap.servers`.
    fn bootstrap(&self) -> &str;
}

impl Bootstrap for Kafka {
    fn bootstrap(&self) -> &str {
        self.bootstrap_servers()
    }
}

impl Bootstrap for EmbeddedKafka {
    fn bootstrap(&self) -> &str {
        self.bootstrap_servers()
    }
}

/// An embedded broker for a test that needs what only it has (error
/// injection, broker outages, its known limits); on the real tier the test
/// still runs, on the embedded broker.
pub fn embedded_only() -> EmbeddedKafka {
    EmbeddedKafka::start().expect("embedded broker")
}

/// The real cluster for a test only a real broker can show. Such tests are
/// `#[ignore]`d with the reason (cargo prints it and counts them as ignored);
/// `scripts/kafka test` runs them with `--include-ignored`. Run without a real
/// cluster they fail with this message, never pass.
pub fn real_only() -> Kafka {
    match Kafka::start() {
        kafka @ Kafka::Real(_) => kafka,
        Kafka::Embedded(_) => panic!(
            "this test needs a real Kafka cluster: run `scripts/kafka test`, \
             or set {BOOTSTRAP_ENV}=host:port"
        ),
    }
}

/// Runs `scripts/kafka <command>` (`kill`, `restart`) on the broker that
/// `scripts/kafka test` started. Panics with the reason when the tests do not
/// control their broker (a cluster named only by `LIGHT_KAFKA_TEST_BOOTSTRAP`).
pub fn broker_ctl(command: &str) {
    let ctl = std::env::var(CTL_ENV).unwrap_or_else(|_| {
        panic!(
            "this test stops and restarts the broker, so it needs the broker that \
             `scripts/kafka test` starts ({CTL_ENV} is not set); skip it with \
             `--skip broker_killed` on a cluster of your own"
        )
    });
    let status = std::process::Command::new(&ctl)
        .arg(command)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {ctl}: {e}"));
    assert!(status.success(), "`{ctl} {command}` failed: {status}");
}

async fn recreate_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let dlq = format!("{topic}.dlq");
    for result in admin.delete_topics(&[topic, &dlq], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(delete_failed(&name, code)),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let outcome = admin.create_topics([&new], &options).await?;
        match outcome.into_iter().next() {
            Some(Ok(_)) => break,
            // A topic being deleted still exists for a moment.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(Err((_, code))) => return Err(KafkaError::AdminOp(code)),
            None => return Err(KafkaError::AdminOpCreation("no result".into())),
        }
    }
    wait_for_leaders(bootstrap, topic, partitions, deadline)
}

fn delete_failed(topic: &str, code: RDKafkaErrorCode) -> KafkaError {
    eprintln!("deleting {topic} failed: {code}");
    KafkaError::AdminOp(code)
}

fn wait_for_leaders(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    deadline: Instant,
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let ready = metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::AdminOpCreation(format!(
                "{topic} has no leader for every partition"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
