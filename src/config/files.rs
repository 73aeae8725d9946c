//! The files of a config directory, with light-kafka's and light-4j's names
//! and keys. Unknown keys are errors; keys of the Java implementation that
//! have no meaning here are accepted and ignored (listed per file).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

/// A librdkafka property value: YAML scalars of any type, passed on as text.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text.
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// librdkafka properties (`properties:` in light-kafka's files). `Debug`
/// hides the values of passwords, secrets, tokens and JAAS settings.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, Scalar>);

impl Properties {
    /// The properties as `(key, value)` text pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, String)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.to_string()))
    }
}

/// Whether a property's value is a secret.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "key.pem",
        "credentials",
    ]
    .iter()
    .any(|s| key.contains(s))
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            if is_secret(key) {
                map.entry(key, &"<redacted>");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// Where audit entries go (`auditTarget`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditTarget {
    /// The log (`tracing`, target `audit`).
    #[default]
    Logfile,
    /// A Kafka topic (`auditTopic`).
    Topic,
}

fn yes() -> bool {
    true
}

fn dlq_ext() -> String {
    ".dlq".into()
}

fn audit_topic() -> String {
    "sidecar-audit".into()
}

/// `kafka-consumer.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConsumerFile {
    /// librdkafka properties (`bootstrap.servers`, `group.id`...).
    #[serde(default)]
    pub properties: Properties,
    /// The topics to consume, comma-separated.
    #[serde(default)]
    pub topic: Option<String>,
    /// Whether failed poison records go to a dead-letter topic. Default: true.
    #[serde(default = "yes")]
    pub dead_letter_enabled: bool,
    /// The dead-letter topic's suffix. Default: `.dlq`.
    #[serde(default = "dlq_ext")]
    pub dead_letter_topic_ext: String,
    /// Whether consumed records are audited. Default: true.
    #[serde(default = "yes")]
    pub audit_enabled: bool,
    /// Where audit entries go. Default: `logfile`.
    #[serde(default)]
    pub audit_target: AuditTarget,
    /// The audit topic when `auditTarget` is `topic`. Default: `sidecar-audit`.
    #[serde(default = "audit_topic")]
    pub audit_topic: String,
    /// The sidecar's backend: scheme, host and port.
    #[serde(default)]
    pub backend_api_host: Option<String>,
    /// The sidecar's backend path prefix (each record goes to `<path>/<topic>`).
    #[serde(default)]
    pub backend_api_path: Option<String>,
    // Keys of the Java sidecar with no meaning here.
    #[serde(default)]
    key_format: Option<IgnoredAny>,
    #[serde(default)]
    value_format: Option<IgnoredAny>,
    #[serde(default)]
    wait_period: Option<IgnoredAny>,
    #[serde(default)]
    use_no_wrapping_avro: Option<IgnoredAny>,
    #[serde(default)]
    max_consumer_threads: Option<IgnoredAny>,
    #[serde(default)]
    server_id: Option<IgnoredAny>,
    #[serde(default)]
    request_max_bytes: Option<IgnoredAny>,
    #[serde(default)]
    request_timeout_ms: Option<IgnoredAny>,
    #[serde(default)]
    fetch_min_bytes: Option<IgnoredAny>,
    #[serde(default)]
    instance_timeout_ms: Option<IgnoredAny>,
    #[serde(default)]
    iterator_backoff_ms: Option<IgnoredAny>,
}

/// `kafka-producer.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProducerFile {
    /// librdkafka properties.
    #[serde(default)]
    pub properties: Properties,
    /// The default topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Whether produced records carry a `caller_id` header.
    #[serde(default)]
    pub inject_caller_id: bool,
    /// Whether produced records are audited.
    #[serde(default = "yes")]
    pub audit_enabled: bool,
    /// Where audit entries go.
    #[serde(default)]
    pub audit_target: AuditTarget,
    /// The audit topic when `auditTarget` is `topic`.
    #[serde(default = "audit_topic")]
    pub audit_topic: String,
    // The trace layer is configured in trace.yml.
    #[serde(default)]
    inject_open_tracing: Option<IgnoredAny>,
}

/// `kafka-streams.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct StreamsFile {
    /// librdkafka properties.
    #[serde(default)]
    pub properties: Properties,
    /// The stream processor's `application.id`.
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    clean_up: Option<IgnoredAny>,
}

/// `security.yml` (light-4j's names).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct SecurityFile {
    /// Whether the JWT layer is in the chain. Default: true.
    #[serde(default = "yes")]
    pub enable_verify_jwt: bool,
    /// Tolerated clock difference. Default: 60.
    #[serde(default)]
    pub clock_skew_in_seconds: Option<u64>,
    /// Accept expired tokens (light-4j's `ignoreJwtExpiry`; for tests only).
    #[serde(default)]
    pub ignore_jwt_expiry: bool,
    /// Keys and claims.
    #[serde(default)]
    pub jwt: JwtSection,
    /// Required scopes per topic.
    #[serde(default)]
    pub scopes: BTreeMap<String, Vec<String>>,
    /// Reject records of topics without required scopes.
    #[serde(default)]
    pub reject_unscoped_topics: bool,
    #[serde(default)]
    enable_verify_scope: Option<IgnoredAny>,
    #[serde(default)]
    skip_verify_scope_without_spec: Option<IgnoredAny>,
    #[serde(default)]
    enable_jwt_cache: Option<IgnoredAny>,
    #[serde(default)]
    log_jwt_token: Option<IgnoredAny>,
    #[serde(default)]
    log_client_user_scope: Option<IgnoredAny>,
}

/// The `jwt:` section of `security.yml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct JwtSection {
    /// RSA public keys (PEM files, relative to the config directory) by `kid`
    /// (light-4j's `certificate:`).
    #[serde(default, alias = "certificate")]
    pub keys: BTreeMap<String, Spanned<String>>,
    /// A JWKS endpoint instead of (or beside nothing of) `keys`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted issuers.
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Accepted audiences.
    #[serde(default)]
    pub audience: Vec<String>,
    /// A tolerance for clock differences, as light-4j places it.
    #[serde(default)]
    pub clock_skew_in_seconds: Option<u64>,
    #[serde(default)]
    key_resolver: Option<IgnoredAny>,
}

/// A flag or a list: light-4j's `mask: true` or the fields to mask.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Mask {
    /// light-4j's switch (masking of the usual sensitive fields).
    Switch(bool),
    /// The fields to mask.
    Fields(Vec<String>),
}

impl Default for Mask {
    fn default() -> Self {
        Mask::Switch(false)
    }
}

/// `audit.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuditFile {
    /// Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What to mask.
    #[serde(default)]
    pub mask: Mask,
    /// Audit failures only.
    #[serde(default)]
    pub audit_on_error: bool,
    /// Headers to copy into each entry.
    #[serde(default)]
    pub headers: Vec<String>,
    /// A hash chain over the entries.
    #[serde(default)]
    pub hash_chain: bool,
    #[serde(default)]
    status_code: Option<IgnoredAny>,
    #[serde(default)]
    response_time: Option<IgnoredAny>,
    #[serde(default)]
    audit: Option<IgnoredAny>,
}

/// A file that only switches a layer on or off (`trace.yml`,
/// `correlation.yml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct SwitchFile {
    /// Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `metrics.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct MetricsFile {
    /// Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The `service` label. Default: the consumer's `group.id`.
    #[serde(default)]
    pub service_id: Option<String>,
}

/// `schema.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct SchemaFile {
    /// Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A JSON schema file (relative to the config directory) per topic.
    #[serde(default)]
    pub schemas: BTreeMap<String, Spanned<String>>,
}

/// `retry.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct RetryFile {
    /// Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Attempts in all. Default: 3.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First backoff. Default: the policy's.
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// Longest backoff.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
}

/// One route of `handler.yml`: a topic (exact) or a pattern (a regular
/// expression matched against the whole topic name) and what runs for it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct Route {
    /// An exact topic.
    #[serde(default)]
    pub topic: Option<Spanned<String>>,
    /// A regular expression for topics.
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
    /// Chains and handlers, outermost first; the last is the handler.
    pub exec: Vec<Spanned<String>>,
}

/// `handler.yml`, in light-4j's shape.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct HandlerFile {
    /// `false` leaves every layer out (handlers only). Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The layers and handlers this file may use: a built-in or registered
    /// name, optionally `name@alias`.
    pub handlers: Vec<Spanned<String>>,
    /// Named lists of layers.
    #[serde(default)]
    pub chains: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    /// Routes from topics to chains and a handler.
    #[serde(default, alias = "paths")]
    pub topics: Vec<Route>,
    /// What runs for topics no route names.
    #[serde(default)]
    pub default_handlers: Option<Spanned<Vec<Spanned<String>>>>,
}

macro_rules! ignored_keys {
    ($ty:ty { $($field:ident => $key:literal),* $(,)? }) => {
        impl $ty {
            /// The keys of light-kafka's Java file that were present and
            /// are ignored here.
            pub fn ignored_keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$field.is_some() { keys.push($key); } )*
                keys
            }
        }
    };
}

ignored_keys!(ConsumerFile {
    key_format => "keyFormat",
    value_format => "valueFormat",
    wait_period => "waitPeriod",
    use_no_wrapping_avro => "useNoWrappingAvro",
    max_consumer_threads => "maxConsumerThreads",
    server_id => "serverId",
    request_max_bytes => "requestMaxBytes",
    request_timeout_ms => "requestTimeoutMs",
    fetch_min_bytes => "fetchMinBytes",
    instance_timeout_ms => "instanceTimeoutMs",
    iterator_backoff_ms => "iteratorBackoffMs",
});
ignored_keys!(ProducerFile { inject_open_tracing => "injectOpenTracing" });
ignored_keys!(StreamsFile { clean_up => "cleanUp" });
ignored_keys!(SecurityFile {
    enable_verify_scope => "enableVerifyScope",
    skip_verify_scope_without_spec => "skipVerifyScopeWithoutSpec",
    enable_jwt_cache => "enableJwtCache",
    log_jwt_token => "logJwtToken",
    log_client_user_scope => "logClientUserScope",
});
ignored_keys!(JwtSection { key_resolver => "keyResolver" });
ignored_keys!(AuditFile {
    status_code => "statusCode",
    response_time => "responseTime",
    audit => "audit",
});
