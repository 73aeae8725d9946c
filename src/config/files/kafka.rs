//! light-kafka's client files: `kafka-consumer.yml`, `kafka-producer.yml`,
//! `kafka-streams.yml` (or `.yaml`), with every key light-kafka and
//! kafka-sidecar ship.

use serde::Deserialize;

use super::layers::AuditTarget;
use super::properties::{Properties, RegistrySettings};
use super::{Unused, java_keys, lenient};

fn dlq_ext() -> String {
    ".dlq".into()
}

fn audit_topic() -> String {
    "sidecar-audit".into()
}

fn yes() -> bool {
    true
}

fn rollback() -> u8 {
    30
}

/// `kafka-consumer.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConsumerFile {
    /// librdkafka properties (`bootstrap.servers`, `group.id`...), Java
    /// client properties translated (see the README).
    #[serde(default)]
    pub properties: Properties,
    /// The schema registry's settings taken out of `properties`.
    #[serde(skip)]
    pub registry: RegistrySettings,
    /// The topics to consume, comma-separated.
    #[serde(default, deserialize_with = "lenient::text")]
    pub topic: Option<String>,
    /// Whether failed poison records go to a dead-letter topic. Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub dead_letter_enabled: bool,
    /// The dead-letter topic's suffix. Default: `.dlq`.
    #[serde(default = "dlq_ext")]
    pub dead_letter_topic_ext: String,
    /// Whether consumed records are audited. Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub audit_enabled: bool,
    /// Where audit entries go. Default (and for empty text): `logfile`.
    #[serde(default, deserialize_with = "lenient::choice")]
    pub audit_target: AuditTarget,
    /// The audit topic when `auditTarget` is `topic`. Default: `sidecar-audit`.
    #[serde(default = "audit_topic")]
    pub audit_topic: String,
    /// The sidecar's backend: scheme, host and port.
    #[serde(default, deserialize_with = "lenient::text")]
    pub backend_api_host: Option<String>,
    /// The sidecar's backend path prefix (each record goes to `<path>/<topic>`).
    #[serde(default, deserialize_with = "lenient::text")]
    pub backend_api_path: Option<String>,
    /// light-kafka's retries of a failed record: the retry layer's
    /// attempts are `maxRetries + 1` when `retry.yml` sets none.
    #[serde(default, deserialize_with = "lenient::number")]
    pub max_retries: Option<u32>,
    /// light-kafka's delay between retries: the retry layer's backoff when
    /// `retry.yml` sets none.
    #[serde(default, deserialize_with = "lenient::number")]
    pub retry_delay_ms: Option<u64>,
    /// The percentage (0-100) of a batch's records allowed to fail before
    /// the batch is rolled back (light-kafka's default: 30). Kept for a
    /// dead-letter circuit breaker; checked to be at most 100.
    #[serde(default = "rollback", deserialize_with = "rollback_threshold")]
    pub batch_rollback_threshold: u8,
    #[serde(default)]
    key_format: Unused,
    #[serde(default)]
    value_format: Unused,
    #[serde(default)]
    wait_period: Unused,
    #[serde(default)]
    use_no_wrapping_avro: Unused,
    #[serde(default)]
    max_consumer_threads: Unused,
    #[serde(default)]
    server_id: Unused,
    #[serde(default)]
    request_max_bytes: Unused,
    #[serde(default)]
    request_timeout_ms: Unused,
    #[serde(default)]
    fetch_min_bytes: Unused,
    #[serde(default)]
    instance_timeout_ms: Unused,
    #[serde(default)]
    iterator_backoff_ms: Unused,
    #[serde(default)]
    backend_connection_reset: Unused,
    #[serde(default)]
    clean_up: Unused,
}

fn rollback_threshold<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    match lenient::number::<D, u8>(d)? {
        None => Ok(rollback()),
        Some(n) if n <= 100 => Ok(n),
        Some(_) => Err(serde::de::Error::custom(
            "not a percentage: batchRollbackThreshold is 0 to 100",
        )),
    }
}

const FORMATS: &str = "records reach handlers as bytes; decode them in the chain or the handler with the crate's codecs (record::codec: JSON, Avro with the schema registry)";
const ACTIVE: &str = "a setting of the Java sidecar's active (REST) consumer, which this crate does not have: the consumer runtime polls, dispatches and commits";

java_keys!(ConsumerFile {
    key_format => "keyFormat": FORMATS,
    value_format => "valueFormat": FORMATS,
    wait_period => "waitPeriod": "the consumer runtime polls continuously; backpressure pauses partitions instead of waiting",
    use_no_wrapping_avro => "useNoWrappingAvro": "the Avro layer decodes Confluent-framed records; JSON-typed Avro is not supported",
    max_consumer_threads => "maxConsumerThreads": "concurrency is per partition (and per key) in the consumer runtime, not a thread pool",
    server_id => "serverId": ACTIVE,
    request_max_bytes => "requestMaxBytes": ACTIVE,
    request_timeout_ms => "requestTimeoutMs": ACTIVE,
    fetch_min_bytes => "fetchMinBytes": ACTIVE,
    instance_timeout_ms => "instanceTimeoutMs": ACTIVE,
    iterator_backoff_ms => "iteratorBackoffMs": ACTIVE,
    backend_connection_reset => "backendConnectionReset": "the HTTP backend's client manages its connections; no FIN-ACK wait to work around",
    clean_up => "cleanUp": "a Kafka Streams reset switch; state stores restore from their changelogs",
});

/// `kafka-producer.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProducerFile {
    /// librdkafka properties, Java client properties translated.
    #[serde(default)]
    pub properties: Properties,
    /// The schema registry's settings taken out of `properties`.
    #[serde(skip)]
    pub registry: RegistrySettings,
    /// The default topic.
    #[serde(default, deserialize_with = "lenient::text")]
    pub topic: Option<String>,
    /// Whether produced records carry a `caller_id` header.
    #[serde(default, deserialize_with = "lenient::flag_false")]
    pub inject_caller_id: bool,
    /// Whether produced records are audited.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub audit_enabled: bool,
    /// Where audit entries go.
    #[serde(default, deserialize_with = "lenient::choice")]
    pub audit_target: AuditTarget,
    /// The audit topic when `auditTarget` is `topic`.
    #[serde(default = "audit_topic")]
    pub audit_topic: String,
    #[serde(default)]
    key_format: Unused,
    #[serde(default)]
    value_format: Unused,
    #[serde(default)]
    inject_open_tracing: Unused,
}

java_keys!(ProducerFile {
    key_format => "keyFormat": FORMATS,
    value_format => "valueFormat": FORMATS,
    inject_open_tracing => "injectOpenTracing": "tracing is the trace layer's, switched by trace.yml",
});

/// `kafka-streams.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct StreamsFile {
    /// librdkafka properties, Java client properties translated.
    #[serde(default)]
    pub properties: Properties,
    /// The schema registry's settings taken out of `properties`.
    #[serde(skip)]
    pub registry: RegistrySettings,
    /// The stream processor's `application.id` (this key, else
    /// `properties.application.id`).
    #[serde(default, deserialize_with = "lenient::text")]
    pub application_id: Option<String>,
    /// `properties.state.dir`: where persistent stores may keep their files.
    #[serde(skip)]
    pub state_dir: Option<String>,
    /// Whether the processor's failed records go to a dead-letter topic.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub dead_letter_enabled: bool,
    /// The dead-letter topic's suffix. Default: `.dlq`.
    #[serde(default = "dlq_ext")]
    pub dead_letter_topic_ext: String,
    /// Whether the processor's records are audited.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub audit_enabled: bool,
    /// Where audit entries go.
    #[serde(default, deserialize_with = "lenient::choice")]
    pub audit_target: AuditTarget,
    /// The audit topic when `auditTarget` is `topic`.
    #[serde(default = "audit_topic")]
    pub audit_topic: String,
    /// Older light-kafka's `bootstrapServers`: `properties.bootstrap.servers`
    /// when that is not set.
    #[serde(default, deserialize_with = "lenient::text")]
    pub bootstrap_servers: Option<String>,
    #[serde(default)]
    clean_up: Unused,
    #[serde(default)]
    dead_letter_controller_topic: Unused,
    #[serde(default)]
    processing_guarantee: Unused,
    #[serde(default)]
    replication_factor: Unused,
}

java_keys!(StreamsFile {
    clean_up => "cleanUp": "a Kafka Streams reset switch; state stores restore from their changelogs",
    dead_letter_controller_topic => "deadLetterControllerTopic": "replay is driven by the admin API (service::replay), not by a controller topic",
    processing_guarantee => "processingGuarantee": "the stream processor is always exactly-once (one transaction per batch)",
    replication_factor => "replicationFactor": "changelog topics take the broker's default replication",
});
