//! Chains from configuration, the light-4j way.
//!
//! A config directory holds light-kafka's files (`kafka-consumer.yml`,
//! `kafka-producer.yml`, `kafka-streams.yml`), one file per layer in
//! light-4j's style (`security.yml`, `audit.yml`, `metrics.yml`,
//! `trace.yml`, `correlation.yml`, `schema.yml`, `retry.yml`), and
//! `handler.yml`, which names the layers and handlers, lists them into
//! chains, and routes topics (exact or by pattern) to a chain and a handler.
//! Every file is optional and may end in `.yml` or `.yaml` (both for one
//! file is an error); a layer whose file says `enabled: false` is left out
//! when the chain is built.
//!
//! **A Java folder loads as it is.** A light-kafka, kafka-sidecar or light-4j
//! folder moves over unchanged: its keys are applied where this crate has
//! the feature (`maxRetries`/`retryDelayMs` configure the retry layer,
//! `batchRollbackThreshold` is kept, `properties.application.id` names the
//! stream processor...), and the rest (`waitPeriod`, `keyFormat`, light-4j
//! HTTP handlers and `paths`, files such as `server.yml`) is accepted,
//! logged once per load, and listed by [`Config::ignored`] with its position
//! and the reason. A key that no Java version has is still an error, so a
//! typo is caught. Without a `handler.yml` that routes topics, every topic
//! runs through the default chain ([`Config::default_layers`] around the
//! handler registered as [`DEFAULT_HANDLER`], else the HTTP backend of
//! `backendApiHost`).
//!
//! **Java client properties are translated**, not forwarded:
//! `sasl.jaas.config` (PLAIN and SCRAM login modules) and light-kafka's
//! `sasl.jaas.config.module/.username/.password` become `sasl.mechanism`,
//! `sasl.username`, `sasl.password`; `ssl.truststore.*` / `ssl.keystore.*`
//! become `ssl.ca.location` (PEM), `ssl.keystore.location` (PKCS#12) or
//! `ssl.certificate.location` + `ssl.key.location` (PEM), and a JKS store is
//! an error saying how to convert it; `schema.registry.*` and
//! `basic.auth.*` go to [`Config::registry`]; serializer classes and other
//! JVM-only settings are dropped with their reason. What librdkafka still
//! rejects is one error listing each property with its file, line and
//! column, never its value. The README's "Moving from Java light-kafka" has
//! the whole table.
//!
//! ```
//! use light_kafka::config::Config;
//!
//! let dir = std::env::temp_dir().join(format!("lk-config-java-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! // light-kafka's own file name and keys.
//! std::fs::write(dir.join("kafka-consumer.yaml"), r#"
//! properties:
//!   bootstrap.servers: ${kafka-consumer.bootstrap.servers:localhost:9092}
//!   key.deserializer: org.apache.kafka.common.serialization.ByteArrayDeserializer
//!   group.id: ${kafka-consumer.group.id:group1}
//!   security.protocol: SASL_PLAINTEXT
//!   sasl.jaas.config: org.apache.kafka.common.security.plain.PlainLoginModule required username="svc" password="${KAFKA_PASSWORD:}";
//! waitPeriod: 100
//! maxRetries: 2
//! "#)?;
//! let config = Config::load_with(&dir, |name| (name == "KAFKA_PASSWORD").then(|| "s3cret".to_owned()))?;
//! let consumer = config.consumer.as_ref().unwrap();
//! assert_eq!(consumer.properties.0["sasl.username"].to_string(), "svc");
//! assert_eq!(consumer.max_retries, Some(2));
//! for entry in config.ignored() {
//!     // kafka-consumer.yaml:4:21: `properties.key.deserializer`: records reach handlers as bytes...
//!     // kafka-consumer.yaml:8:13: `waitPeriod`: the consumer runtime polls continuously...
//!     println!("{entry}");
//! }
//! assert_eq!(config.ignored().len(), 2);
//! assert!(!format!("{config:?}").contains("s3cret"));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```text
//! config/
//!   handler.yml          kafka-consumer.yml   kafka-producer.yml
//!   audit.yml            metrics.yml          trace.yml
//!   security.yml         schema.yml           retry.yml
//!   values.yml           (values for ${...}, light-4j's habit)
//! ```
//!
//! ```yaml
//! # handler.yml
//! handlers:
//!   - catch-panic
//!   - metrics
//!   - propagate
//!   - trace
//!   - audit
//!   - dead-letter
//!   - retry
//!   - http-backend          # built in: kafka-consumer.yml's backendApiHost
//!   - orders@order-handler  # registered from code, under an alias
//! chains:
//!   default: [catch-panic, metrics, propagate, trace, audit, dead-letter, retry]
//! topics:
//!   - topic: orders
//!     exec: [default, order-handler]
//!   - pattern: "audit-.*"
//!     exec: [catch-panic, order-handler]
//! defaultHandlers: [default, http-backend]
//! ```
//!
//! **Values.** `${NAME}` and `${NAME:default}` anywhere in a file take the
//! value of the environment variable `NAME` (or `NAME` upper-cased with `.`
//! and `-` as `_`: `${kafka-consumer.group.id}` reads
//! `KAFKA_CONSUMER_GROUP_ID`), else of `NAME` in `values.yml`, else the
//! default; with none of them it is an error. A value keeps its type and
//! never changes the file's structure: a whole scalar `${NAME}` from the
//! environment is that text (`007`, `yes`, `0x1F`, `svc #1` or `a: b, "y`
//! stay what they are; a field that takes a number or a flag parses it, with
//! a positioned error when it does not parse); a `values.yml` value keeps
//! its YAML type (lists and maps included, an error where one value is
//! expected); a `${NAME}` inside a longer text is interpolated; `${NAME:}`
//! is the empty text, which light-4j uses for "not set". Errors point at the
//! file's own line and column. Substituted values and the values of secret
//! properties (passwords, secrets, tokens, JAAS settings, registry
//! credentials) never appear in errors, log lines or `Debug` output.
//!
//! ```
//! use light_kafka::config::Config;
//!
//! let dir = std::env::temp_dir().join(format!("lk-config-values-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("values.yml"), "retries: 4\n")?;
//! std::fs::write(dir.join("kafka-consumer.yml"), "properties:\n  group.id: ${GROUP}\n")?;
//! std::fs::write(dir.join("retry.yml"), "maxAttempts: ${retries}\n")?;
//! let config = Config::load_with(&dir, |name| (name == "GROUP").then(|| "007".to_owned()))?;
//! assert_eq!(config.consumer.as_ref().unwrap().properties.0["group.id"].to_string(), "007");
//! assert_eq!(config.retry.as_ref().unwrap().max_attempts, Some(4));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Errors before anything connects**, each with its file, line and column:
//! unknown keys, values of the wrong type, unknown handler names, empty
//! chains, an execution list that does not end with exactly one handler, and
//! orders that break the invariants below, a topic (or an HTTP path and
//! method) routed twice (both places named).
//!
//! **Order invariants** (outermost first): each layer at most once per
//! execution list (chains expanded); `retry`, `jwt` and `schema` after
//! `dead-letter` when it is present. Anything else may be reordered; see
//! [`crate::layers`] for what each position means.
//!
//! **The chain built from files is the chain in code**: the same layers,
//! configured the same way, type-erased where they meet
//! ([`BoxRecordService`](crate::builder::BoxRecordService)): same dead
//! letters, audit entries and metrics.
//!
//! ```
//! use light_kafka::config::{Config, Registry};
//! use light_kafka::record::Record;
//! use tower::service_fn;
//!
//! let dir = std::env::temp_dir().join(format!("lk-config-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("handler.yml"), "
//! handlers: [catch-panic, retry, echo]
//! chains:
//!   base: [catch-panic, retry]
//! defaultHandlers: [base, echo]
//! ")?;
//! std::fs::write(dir.join("retry.yml"), "maxAttempts: ${RETRIES:2}\n")?;
//!
//! let config = Config::load(&dir)?;
//! let registry = Registry::new()
//!     .handler("echo", service_fn(|_: Record| async { Ok::<_, light_kafka::BoxError>(()) }));
//! let chains = config.chains(&registry)?;
//! assert!(chains.covers("any-topic"));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chain;
mod default;
mod files;
mod layers;
mod load;
mod registry;
mod source;
mod subst;

use std::path::{Path, PathBuf};

pub use chain::{BUILTIN_LAYERS, Chains, HTTP_BACKEND, LayerFn, Registry};
pub use default::DEFAULT_HANDLER;
pub use files::CertificateMap;
pub use files::{
    AuditFile, AuditTarget, ConsumerFile, HandlerFile, Ignored, JwtSection, Mask, MetricsFile,
    ProducerFile, Properties, RegistrySettings, RetryFile, Route, Scalar, SchemaFile, SecurityFile,
    StreamsFile, SwitchFile,
};
pub use source::{ConfigError, ConfigErrorKind};

use source::Source;

/// A loaded config directory. See the [module documentation](self).
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    dir: PathBuf,
    producer_cache: std::sync::OnceLock<crate::service::producer::Producer>,
    handler_source: Option<Source>,
    handler_path: PathBuf,
    /// `handler.yml` (empty when the directory has none: the default chain
    /// is built).
    pub handler: HandlerFile,
    /// `kafka-consumer.yml`.
    pub consumer: Option<ConsumerFile>,
    /// `kafka-producer.yml`.
    pub producer: Option<ProducerFile>,
    /// `kafka-streams.yml`.
    pub streams: Option<StreamsFile>,
    /// `security.yml`.
    pub security: Option<SecurityFile>,
    /// `audit.yml`.
    pub audit: Option<AuditFile>,
    /// `metrics.yml`.
    pub metrics: Option<MetricsFile>,
    /// `trace.yml`.
    pub trace: Option<SwitchFile>,
    /// `correlation.yml` (the propagate layer).
    pub correlation: Option<SwitchFile>,
    /// `schema.yml`.
    pub schema: Option<SchemaFile>,
    /// `retry.yml`.
    pub retry: Option<RetryFile>,
    /// The schema registry's settings from the files' `properties`
    /// (`schema.registry.url`, `basic.auth.*`: the consumer's first, then
    /// the producer's, then the streams').
    pub registry: RegistrySettings,
    ignored: Vec<Ignored>,
}

impl Config {
    /// Loads `dir`, taking `${...}` values from the process environment and
    /// `values.yml`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first problem found, with its position
    /// (librdkafka properties: all rejected ones at once).
    pub fn load(dir: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_with(dir, |name| std::env::var(name).ok())
    }

    /// Loads `dir`, taking `${...}` values from `env` (then `values.yml`):
    /// for tests, or another source of overrides.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_with(
        dir: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        load::load(dir.as_ref(), &env)
    }

    /// What the directory holds that is accepted and not applied: files and
    /// keys of the Java implementation, Java client properties dropped or
    /// mapped, light-4j HTTP handlers and routes; each with its position and
    /// its reason. Each is logged once per load (`tracing`, INFO).
    pub fn ignored(&self) -> &[Ignored] {
        &self.ignored
    }

    /// Whether the directory has a `handler.yml` (or `.yaml`).
    pub fn has_handler_file(&self) -> bool {
        self.handler_source.is_some()
    }

    /// The directory the config came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn handler_path(&self) -> PathBuf {
        self.handler_path.clone()
    }

    fn handler_position(&self, location: &serde_saphyr::Location) -> (u64, u64) {
        self.handler_source
            .as_ref()
            .map_or((location.line(), location.column()), |s| s.at(location))
    }

    /// The schema registry client of `schema.registry.url` (the files'
    /// `properties`), `None` when no file names one. `basic.auth.user.info`
    /// (`user:password`) becomes its HTTP basic credentials, which it never
    /// shows.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `basic.auth.credentials.source` names a source
    /// other than `USER_INFO` (Confluent's `SASL_INHERIT` and `URL` are not
    /// offered: write the credentials into `basic.auth.user.info`, or into
    /// the URL), so that a registry that needs them fails here and not on
    /// every record.
    #[cfg(any(feature = "avro", feature = "json-schema", feature = "protobuf"))]
    pub fn schema_registry(
        &self,
    ) -> Result<Option<crate::layers::registry::SchemaRegistry>, ConfigError> {
        let Some(url) = &self.registry.url else {
            return Ok(None);
        };
        if let Some(source) = &self.registry.basic_auth_credentials_source
            && !source.eq_ignore_ascii_case("USER_INFO")
        {
            return Err(ConfigError::new(
                ConfigErrorKind::Invalid,
                &self.dir,
                (0, 0),
                "`basic.auth.credentials.source` must be USER_INFO (with `basic.auth.user.info: user:password`)",
            ));
        }
        let registry = crate::layers::registry::SchemaRegistry::new(url.clone());
        Ok(Some(match &self.registry.basic_auth_user_info {
            Some(user_info) => registry.with_user_info(user_info),
            None => registry,
        }))
    }

    /// A stream processor configured by `kafka-streams.yml`: its
    /// `application.id` (`properties.application.id`, or `applicationId`)
    /// and its translated properties. Topics, stores and the chain are the
    /// application's; `dead_letter_*` and `audit_*` of
    /// [`StreamsFile`] say what its layers should be.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the file is missing or names no application id.
    pub fn stream_processor_builder(
        &self,
    ) -> Result<crate::streams::processor::StreamProcessorBuilder, ConfigError> {
        let path = load::find(&self.dir, "kafka-streams")
            .ok()
            .flatten()
            .unwrap_or_else(|| self.dir.join("kafka-streams.yml"));
        let file = self.streams.as_ref().ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::Io,
                &path,
                (0, 0),
                "kafka-streams.yml is missing",
            )
        })?;
        let id = file.application_id.as_deref().ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::Invalid,
                &path,
                (0, 0),
                "no `application.id` (properties) nor `applicationId`",
            )
        })?;
        let mut builder = crate::streams::processor::StreamProcessor::builder(id);
        for (key, value) in file.properties.iter() {
            builder = builder.set(key, value);
        }
        Ok(builder)
    }

    /// A consumer runtime configured by `kafka-consumer.yml`: its
    /// properties, and its `topic` list subscribed.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the file is missing or names no topic.
    pub fn consumer_builder(
        &self,
    ) -> Result<crate::service::consumer::ConsumerBuilder, ConfigError> {
        let path = load::find(&self.dir, "kafka-consumer")
            .ok()
            .flatten()
            .unwrap_or_else(|| self.dir.join("kafka-consumer.yml"));
        let file = self.consumer.as_ref().ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::Io,
                &path,
                (0, 0),
                "kafka-consumer.yml is missing",
            )
        })?;
        let topics: Vec<String> = file
            .topic
            .iter()
            .flat_map(|t| t.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::Invalid,
                &path,
                (0, 0),
                "`topic` names no topic to consume",
            ));
        }
        Ok(crate::service::consumer::Consumer::builder()
            .properties(file.properties.iter().map(|(k, v)| (k.to_owned(), v)))
            .topics(topics))
    }
}
