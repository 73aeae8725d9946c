//! One file per layer, in light-4j's style: `security.yml`, `audit.yml`,
//! `metrics.yml`, `trace.yml`, `correlation.yml`, `schema.yml`,
//! `retry.yml`, with the keys light-4j ships.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

use super::{Unused, java_keys, lenient};

fn yes() -> bool {
    true
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

impl lenient::Choices for AuditTarget {
    const CHOICES: &'static str = "`logfile`, `topic`";
}

/// `security.yml` (light-4j's names).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct SecurityFile {
    /// Whether the JWT layer is in the chain. Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub enable_verify_jwt: bool,
    /// Tolerated clock difference. Default: 60.
    #[serde(default, deserialize_with = "lenient::number")]
    pub clock_skew_in_seconds: Option<u64>,
    /// Accept expired tokens (light-4j's `ignoreJwtExpiry`; for tests only).
    #[serde(default, deserialize_with = "lenient::flag_false")]
    pub ignore_jwt_expiry: bool,
    /// Keys and claims.
    #[serde(default)]
    pub jwt: JwtSection,
    /// Required scopes per topic.
    #[serde(default, deserialize_with = "lenient::map")]
    pub scopes: BTreeMap<String, Vec<String>>,
    /// Reject records of topics without required scopes.
    #[serde(default, deserialize_with = "lenient::flag_false")]
    pub reject_unscoped_topics: bool,
    #[serde(default)]
    enable_verify_scope: Unused,
    #[serde(default)]
    skip_verify_scope_without_spec: Unused,
    #[serde(default)]
    enable_jwt_cache: Unused,
    #[serde(default)]
    jwt_cache_full_size: Unused,
    #[serde(default)]
    log_jwt_token: Unused,
    #[serde(default)]
    log_client_user_scope: Unused,
    #[serde(default)]
    enable_verify_swt: Unused,
    #[serde(default)]
    swt_client_id_header: Unused,
    #[serde(default)]
    swt_client_secret_header: Unused,
    #[serde(default)]
    enable_extract_scope_token: Unused,
    #[serde(default)]
    enable_h2c: Unused,
    #[serde(default)]
    enable_mock_jwt: Unused,
    #[serde(default)]
    enable_relaxed_key_validation: Unused,
    #[serde(default)]
    bootstrap_from_key_service: Unused,
    #[serde(default)]
    provider_id: Unused,
    #[serde(default)]
    skip_path_prefixes: Unused,
    #[serde(default)]
    pass_through_claims: Unused,
    #[serde(default)]
    oauth_http2_support: Unused,
}

const HTTP: &str =
    "an HTTP-request setting of light-4j; records carry their token in the `authorization` header";

java_keys!(SecurityFile {
    enable_verify_scope => "enableVerifyScope": "scopes are verified for every topic listed under `scopes`",
    skip_verify_scope_without_spec => "skipVerifyScopeWithoutSpec": "there is no OpenAPI spec for topics; `rejectUnscopedTopics` decides",
    enable_jwt_cache => "enableJwtCache": "verified keys are cached; tokens are verified per record",
    jwt_cache_full_size => "jwtCacheFullSize": "verified keys are cached; tokens are verified per record",
    log_jwt_token => "logJwtToken": "tokens are never logged",
    log_client_user_scope => "logClientUserScope": "client, user and scope go to audit entries, not the log",
    enable_verify_swt => "enableVerifySwt": "simple web tokens (introspection) are not supported for records",
    swt_client_id_header => "swtClientIdHeader": "simple web tokens (introspection) are not supported for records",
    swt_client_secret_header => "swtClientSecretHeader": "simple web tokens (introspection) are not supported for records",
    enable_extract_scope_token => "enableExtractScopeToken": HTTP,
    enable_h2c => "enableH2c": HTTP,
    enable_mock_jwt => "enableMockJwt": "no mock tokens: tests sign real ones",
    enable_relaxed_key_validation => "enableRelaxedKeyValidation": "keys are always validated",
    bootstrap_from_key_service => "bootstrapFromKeyService": "keys come from `jwt.certificate`/`jwt.keys` files or `jwt.jwksUri`",
    provider_id => "providerId": "one key source per config",
    skip_path_prefixes => "skipPathPrefixes": HTTP,
    pass_through_claims => "passThroughClaims": "claims travel in the record's extensions (the audit context)",
    oauth_http2_support => "oauthHttp2Support": "the JWKS client negotiates its HTTP version",
});

/// RSA public key files by `kid`: a map, or light-4j's text form
/// `100=primary.crt&101=secondary.crt`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateMap(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for CertificateMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CertificateMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of key files by kid, or `kid=file&kid=file`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CertificateMap, E> {
                let mut map = BTreeMap::new();
                for pair in v.split('&').filter(|p| !p.trim().is_empty()) {
                    let (kid, file) = pair
                        .split_once('=')
                        .ok_or_else(|| E::custom("not `kid=file&kid=file`"))?;
                    map.insert(kid.trim().to_owned(), file.trim().to_owned());
                }
                Ok(CertificateMap(map))
            }
            fn visit_unit<E: de::Error>(self) -> Result<CertificateMap, E> {
                Ok(CertificateMap::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<CertificateMap, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<super::Scalar, String>()? {
                    map.insert(k.to_string(), v);
                }
                Ok(CertificateMap(map))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `jwt:` section of `security.yml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct JwtSection {
    /// RSA public keys (PEM files, relative to the config directory) by `kid`
    /// (light-4j's `certificate:`, as a map or `kid=file&kid=file`).
    #[serde(default, alias = "certificate")]
    pub keys: Option<Spanned<CertificateMap>>,
    /// A JWKS endpoint instead of `keys`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub jwks_uri: Option<String>,
    /// Accepted issuers.
    #[serde(default, deserialize_with = "lenient::list")]
    pub issuer: Vec<String>,
    /// Accepted audiences.
    #[serde(default, deserialize_with = "lenient::list")]
    pub audience: Vec<String>,
    /// A tolerance for clock differences, as light-4j places it.
    #[serde(default, deserialize_with = "lenient::number")]
    pub clock_skew_in_seconds: Option<u64>,
    #[serde(default)]
    key_resolver: Unused,
}

java_keys!(JwtSection {
    key_resolver => "jwt.keyResolver": "the key source follows from `certificate`/`keys` (files) or `jwksUri`",
});

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
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub enabled: bool,
    /// What to mask.
    #[serde(default)]
    pub mask: Mask,
    /// Audit failures only.
    #[serde(default, deserialize_with = "lenient::flag_false")]
    pub audit_on_error: bool,
    /// Headers to copy into each entry.
    #[serde(default, deserialize_with = "lenient::list")]
    pub headers: Vec<String>,
    /// A hash chain over the entries.
    #[serde(default, deserialize_with = "lenient::flag_false")]
    pub hash_chain: bool,
    #[serde(default)]
    status_code: Unused,
    #[serde(default)]
    response_time: Unused,
    #[serde(default)]
    audit: Unused,
    #[serde(default)]
    audit_stack_trace: Unused,
    #[serde(default)]
    log_level_is_error: Unused,
    #[serde(default)]
    timestamp_format: Unused,
    #[serde(default)]
    request_body_max_size: Unused,
    #[serde(default)]
    response_body_max_size: Unused,
}

java_keys!(AuditFile {
    status_code => "statusCode": "every entry has its outcome (the record's status)",
    response_time => "responseTime": "every entry has its duration",
    audit => "audit": "every entry has the client, user and caller ids the JWT layer found",
    audit_stack_trace => "auditStackTrace": "a failure's kind and message are audited; stack traces go to dead letters",
    log_level_is_error => "logLevelIsError": "audit entries are `tracing` events at INFO, target `audit`",
    timestamp_format => "timestampFormat": "timestamps are RFC 3339",
    request_body_max_size => "requestBodyMaxSize": "record values are not copied into audit entries",
    response_body_max_size => "responseBodyMaxSize": "record values are not copied into audit entries",
});

/// A file that switches a layer on or off (`trace.yml`,
/// `correlation.yml`, `traceability.yml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct SwitchFile {
    /// Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub enabled: bool,
    #[serde(default, rename = "autogenCorrelationID")]
    autogen_correlation_id: Unused,
    #[serde(default)]
    correlation_mdc_field: Unused,
    #[serde(default)]
    traceability_mdc_field: Unused,
}

java_keys!(SwitchFile {
    autogen_correlation_id => "autogenCorrelationID": "the propagate layer always makes a correlation id when a record has none",
    correlation_mdc_field => "correlationMdcField": "ids are fields of the `process` span, not of a logging MDC",
    traceability_mdc_field => "traceabilityMdcField": "ids are fields of the `process` span, not of a logging MDC",
});

/// `metrics.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct MetricsFile {
    /// Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub enabled: bool,
    /// The `service` label. Default: the consumer's `group.id`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub service_id: Option<String>,
    #[serde(default, rename = "enableJVMMonitor")]
    enable_jvm_monitor: Unused,
    #[serde(default)]
    server_protocol: Unused,
    #[serde(default)]
    server_host: Unused,
    #[serde(default)]
    server_path: Unused,
    #[serde(default)]
    server_port: Unused,
    #[serde(default)]
    server_name: Unused,
    #[serde(default)]
    server_user: Unused,
    #[serde(default)]
    server_pass: Unused,
    #[serde(default)]
    report_in_minutes: Unused,
    #[serde(default)]
    product_name: Unused,
    #[serde(default)]
    send_scope_client_id: Unused,
    #[serde(default)]
    send_caller_id: Unused,
    #[serde(default)]
    send_issuer: Unused,
    #[serde(default)]
    issuer_regex: Unused,
    #[serde(default)]
    influxdb_protocol: Unused,
    #[serde(default)]
    influxdb_host: Unused,
    #[serde(default)]
    influxdb_port: Unused,
    #[serde(default)]
    influxdb_name: Unused,
    #[serde(default)]
    influxdb_user: Unused,
    #[serde(default)]
    influxdb_pass: Unused,
}

const PUSH: &str = "metrics are recorded with the `metrics` crate and exported by the recorder the application installs (Prometheus helper), not pushed to InfluxDB";

java_keys!(MetricsFile {
    enable_jvm_monitor => "enableJVMMonitor": "there is no JVM",
    server_protocol => "serverProtocol": PUSH,
    server_host => "serverHost": PUSH,
    server_path => "serverPath": PUSH,
    server_port => "serverPort": PUSH,
    server_name => "serverName": PUSH,
    server_user => "serverUser": PUSH,
    server_pass => "serverPass": PUSH,
    report_in_minutes => "reportInMinutes": PUSH,
    product_name => "productName": "the `service` label comes from serviceId (else the group id)",
    send_scope_client_id => "sendScopeClientId": "client ids from the JWT layer are always labelled",
    send_caller_id => "sendCallerId": "caller ids from the JWT layer are always labelled",
    send_issuer => "sendIssuer": "issuers are not labelled (unbounded cardinality)",
    issuer_regex => "issuerRegex": "issuers are not labelled (unbounded cardinality)",
    influxdb_protocol => "influxdbProtocol": PUSH,
    influxdb_host => "influxdbHost": PUSH,
    influxdb_port => "influxdbPort": PUSH,
    influxdb_name => "influxdbName": PUSH,
    influxdb_user => "influxdbUser": PUSH,
    influxdb_pass => "influxdbPass": PUSH,
});

/// `schema.yml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct SchemaFile {
    /// Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
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
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub enabled: bool,
    /// Attempts in all. Default: 3 (or `maxRetries + 1` of kafka-consumer.yml).
    #[serde(default, deserialize_with = "lenient::number")]
    pub max_attempts: Option<u32>,
    /// First backoff. Default: the policy's (or `retryDelayMs`).
    #[serde(default, deserialize_with = "lenient::number")]
    pub initial_backoff_ms: Option<u64>,
    /// Longest backoff.
    #[serde(default, deserialize_with = "lenient::number")]
    pub max_backoff_ms: Option<u64>,
}
