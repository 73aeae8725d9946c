//! The broker a bench runs on: the embedded one, or the real cluster named by
//! `LIGHT_KAFKA_BENCH_BOOTSTRAP` (`scripts/kafka bench` starts one and sets it).

use std::time::Duration;

use light_kafka::service::embedded::EmbeddedKafka;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

pub(crate) enum Broker {
    Embedded(EmbeddedKafka),
    Real(String),
}

impl Broker {
    pub(crate) fn start() -> Broker {
        match std::env::var("LIGHT_KAFKA_BENCH_BOOTSTRAP") {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => Broker::Real(bootstrap),
            _ => Broker::Embedded(EmbeddedKafka::start().expect("embedded broker")),
        }
    }

    pub(crate) fn bootstrap_servers(&self) -> &str {
        match self {
            Broker::Embedded(kafka) => kafka.bootstrap_servers(),
            Broker::Real(bootstrap) => bootstrap,
        }
    }

    /// `-real` on a real cluster: the suffix of the summary rows.
    pub(crate) fn suffix(&self) -> &'static str {
        match self {
            Broker::Embedded(_) => "",
            Broker::Real(_) => "-real",
        }
    }

    /// The command that produces this bench's rows.
    pub(crate) fn command(&self, bench: &str) -> String {
        match self {
            Broker::Embedded(_) => format!("cargo bench --bench {bench}"),
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
