//! Chains from configuration, the light-4j way.
//!
//! A config directory holds light-kafka's files (`kafka-consumer.yml`,
//! `kafka-producer.yml`, `kafka-streams.yml`), one file per layer in
//! light-4j's style (`security.yml`, `audit.yml`, `metrics.yml`,
//! `trace.yml`, `correlation.yml`, `schema.yml`, `retry.yml`), and
//! `handler.yml`, which names the layers and handlers, lists them into
//! chains, and routes topics (exact or by pattern) to a chain and a handler.
//! Every file but `handler.yml` is optional; a layer whose file says
//! `enabled: false` is left out when the chain is built.
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
//! default; with none of them it is an error. Substituted values and the
//! values of secret properties (passwords, secrets, tokens, JAAS settings)
//! never appear in errors or `Debug` output.
//!
//! **Errors before anything connects**, each with its file, line and column:
//! unknown keys, values of the wrong type, unknown handler names, empty
//! chains, an execution list that does not end with exactly one handler, and
//! orders that break the invariants below. Keys of light-kafka's Java files
//! that mean nothing here (`keyFormat`, `waitPeriod`...) are accepted and
//! ignored, so files move over unchanged.
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
mod files;
mod layers;
mod source;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use chain::{BUILTIN_LAYERS, Chains, HTTP_BACKEND, LayerFn, Registry};
pub use files::{
    AuditFile, AuditTarget, ConsumerFile, HandlerFile, JwtSection, Mask, MetricsFile, ProducerFile,
    Properties, RetryFile, Route, Scalar, SchemaFile, SecurityFile, StreamsFile, SwitchFile,
};
pub use source::{ConfigError, ConfigErrorKind};

use source::Source;

/// A loaded config directory. See the [module documentation](self).
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    dir: PathBuf,
    producer_cache: std::sync::OnceLock<crate::service::producer::Producer>,
    handler_source: Source,
    /// `handler.yml`.
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
}

impl Config {
    /// Loads `dir`, taking `${...}` values from the process environment and
    /// `values.yml`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first problem found, with its position.
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
        let dir = dir.as_ref().to_owned();
        let values: HashMap<String, String> = match optional(&dir, "values.yml", &|_| None)? {
            Some(source) => source
                .parse::<HashMap<String, Scalar>>()?
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            None => HashMap::new(),
        };
        let lookup = |name: &str| {
            env(name)
                .or_else(|| env(&name.to_ascii_uppercase().replace(['.', '-'], "_")))
                .or_else(|| values.get(name).cloned())
        };
        let handler_path = dir.join("handler.yml");
        if !handler_path.exists() {
            return Err(ConfigError::new(
                ConfigErrorKind::Io,
                &handler_path,
                (0, 0),
                "handler.yml is missing",
            ));
        }
        let handler_source = Source::read(&handler_path, &lookup)?;
        let handler = handler_source.parse()?;
        let parse =
            |name: &str| -> Result<Option<Source>, ConfigError> { optional(&dir, name, &lookup) };
        macro_rules! file {
            ($name:literal) => {
                parse($name)?.map(|source| source.parse()).transpose()?
            };
        }
        let config = Config {
            consumer: file!("kafka-consumer.yml"),
            producer: file!("kafka-producer.yml"),
            streams: file!("kafka-streams.yml"),
            security: file!("security.yml"),
            audit: file!("audit.yml"),
            metrics: file!("metrics.yml"),
            trace: file!("trace.yml"),
            correlation: file!("correlation.yml"),
            schema: file!("schema.yml"),
            retry: file!("retry.yml"),
            handler,
            handler_source,
            dir,
            producer_cache: std::sync::OnceLock::new(),
        };
        let ignored = [
            (
                "kafka-consumer.yml",
                config.consumer.as_ref().map(ConsumerFile::ignored_keys),
            ),
            (
                "kafka-producer.yml",
                config.producer.as_ref().map(ProducerFile::ignored_keys),
            ),
            (
                "kafka-streams.yml",
                config.streams.as_ref().map(StreamsFile::ignored_keys),
            ),
            (
                "security.yml",
                config
                    .security
                    .as_ref()
                    .map(|s| [s.ignored_keys(), s.jwt.ignored_keys()].concat()),
            ),
            (
                "audit.yml",
                config.audit.as_ref().map(AuditFile::ignored_keys),
            ),
        ];
        for (file, keys) in ignored {
            if let Some(keys) = keys.filter(|k| !k.is_empty()) {
                tracing::info!(
                    file,
                    ?keys,
                    "keys of light-kafka (Java) with no meaning here are ignored"
                );
            }
        }
        Ok(config)
    }

    /// The directory the config came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn handler_path(&self) -> PathBuf {
        self.handler_source.path().to_owned()
    }

    fn handler_position(&self, location: &serde_saphyr::Location) -> (u64, u64) {
        self.handler_source
            .position(location.line(), location.column())
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
        let path = self.dir.join("kafka-consumer.yml");
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

fn optional(
    dir: &Path,
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Source>, ConfigError> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    Source::read(&path, lookup).map(Some)
}
