//! The built-in layers, each configured by its file.

use std::sync::Arc;

use serde_saphyr::Spanned;
use tower_layer::Layer;
use tower_service::Service;

use super::Config;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_layer::Stack;

use super::chain::{BUILTIN_LAYERS, LayerFn, Registry, erase};
use super::files::{AuditTarget, Mask};
use super::source::{ConfigError, ConfigErrorKind};
use crate::builder::BoxRecordService;
use crate::error::BoxError;
use crate::layers::audit::{AuditLayer, KafkaSink, LogSink};
use crate::layers::catch_panic::CatchPanicLayer;
use crate::layers::dead_letter::{DeadLetterLayer, Outcome};
use crate::layers::metrics::MetricsLayer;
use crate::layers::propagate::PropagateLayer;
use crate::layers::retry::{RetryPolicy, RetryRecordsLayer};
use crate::layers::trace::TraceLayer;
use crate::record::Record;
use crate::service::producer::Producer;

fn layer_fn<L>(layer: L) -> LayerFn
where
    L: Layer<BoxRecordService> + Send + Sync + 'static,
    L::Service: Service<Record> + Clone + Send + Sync + 'static,
    <L::Service as Service<Record>>::Error: Into<BoxError>,
    <L::Service as Service<Record>>::Future: Send + 'static,
{
    Arc::new(move |inner| erase(layer.layer(inner)))
}

/// A record the dead-letter layer answered for is settled either way.
fn settled(_: Outcome<()>) {}

/// Fields masked by light-4j's `mask: true`.
const MASKED_BY_DEFAULT: [&str; 4] = ["password", "secret", "token", "creditCard"];

impl Config {
    /// The `service` of metrics and audit entries: `metrics.yml`'s
    /// `serviceId`, else the consumer's `group.id`, else `light-kafka`.
    pub fn service_id(&self) -> String {
        self.metrics
            .as_ref()
            .and_then(|m| m.service_id.clone())
            .or_else(|| self.consumer_property("group.id"))
            .unwrap_or_else(|| "light-kafka".to_owned())
    }

    fn consumer_property(&self, key: &str) -> Option<String> {
        self.consumer
            .as_ref()?
            .properties
            .0
            .get(key)
            .map(ToString::to_string)
    }

    /// The producer dead letters and audit entries are written with:
    /// `kafka-producer.yml`'s properties, else the consumer's connection
    /// settings (`bootstrap.servers`, `security.*`, `sasl.*`, `ssl.*`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the producer cannot be built.
    pub fn producer(&self) -> Result<Producer, ConfigError> {
        if let Some(producer) = self.producer_cache.get() {
            return Ok(producer.clone());
        }
        let mut builder = Producer::builder();
        let (file, properties): (&str, Vec<(String, String)>) =
            match (&self.producer, &self.consumer) {
                (Some(p), _) => (
                    "kafka-producer.yml",
                    p.properties
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                ),
                (None, Some(c)) => (
                    "kafka-consumer.yml",
                    c.properties
                        .iter()
                        .filter(|(k, _)| {
                            *k == "bootstrap.servers"
                                || ["security.", "sasl.", "ssl."]
                                    .iter()
                                    .any(|p| k.starts_with(p))
                        })
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                ),
                (None, None) => ("kafka-producer.yml", Vec::new()),
            };
        let secrets: Vec<(String, String)> = properties
            .iter()
            .filter(|(k, _)| super::files::is_secret(k))
            .cloned()
            .collect();
        for (k, v) in properties {
            builder = builder.set(k, v);
        }
        let producer = builder.build().map_err(|e| {
            // librdkafka's messages may quote values: secret ones are cut out.
            let mut message = format!("the producer cannot be built: {e}");
            for (_, value) in secrets {
                if !value.is_empty() {
                    message = message.replace(&value, "<redacted>");
                }
            }
            ConfigError::new(
                ConfigErrorKind::Invalid,
                &self.dir.join(file),
                (0, 0),
                message,
            )
        })?;
        Ok(self.producer_cache.get_or_init(|| producer).clone())
    }

    /// The layer `name` as its file configures it, or `None` when its file
    /// switches it off.
    pub(crate) fn layer(
        &self,
        name: &str,
        place: &Spanned<String>,
        registry: &Registry,
    ) -> Result<Option<LayerFn>, ConfigError> {
        if let Some(layer) = registry.layers.get(name) {
            return Ok(Some(layer.clone()));
        }
        Ok(match name {
            "catch-panic" => Some(layer_fn(CatchPanicLayer::new())),
            "metrics" => self.metrics_layer().map(layer_fn),
            "propagate" => self.propagate_layer().map(layer_fn),
            "trace" => self.trace_layer().map(layer_fn),
            "audit" => self.audit_layer()?.map(layer_fn),
            "dead-letter" => self.dead_letter_layer()?.map(layer_fn),
            "retry" => self.retry_layer().map(layer_fn),
            "jwt" => self.jwt_layer(place)?.map(layer_fn),
            "schema" => self.schema_layer(place)?.map(layer_fn),
            other => {
                return Err(self.at(
                    place,
                    ConfigErrorKind::UnknownHandler,
                    format!("no layer `{other}` is registered"),
                ));
            }
        })
    }

    /// The chain of built-in layers `names` around `handler` as one static
    /// stack, erased once, when `names` are all built-ins in the canonical
    /// order (each at most once) and none is overridden by the registry;
    /// `None` otherwise. The same layers as [`Config::layer`] builds, without
    /// a box per layer.
    pub(crate) fn static_chain(
        &self,
        names: &[(&str, &Spanned<String>)],
        handler: BoxRecordService,
        registry: &Registry,
    ) -> Result<Option<BoxRecordService>, ConfigError> {
        let mut last = None;
        for (name, _) in names {
            let index = BUILTIN_LAYERS.iter().position(|b| b == name);
            match index {
                Some(i) if last.is_none_or(|l| i > l) && !registry.layers.contains_key(*name) => {
                    last = Some(i)
                }
                _ => return Ok(None),
            }
        }
        let place = |name: &str| names.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
        let has = |name: &str| place(name).is_some();
        let jwt = match place("jwt") {
            Some(at) => self.jwt_layer(at)?,
            None => None,
        };
        let schema = match place("schema") {
            Some(at) => self.schema_layer(at)?,
            None => None,
        };
        let dead_letter = if has("dead-letter") {
            self.dead_letter_layer()?
        } else {
            None
        };
        let audit = if has("audit") {
            self.audit_layer()?
        } else {
            None
        };
        let chain = ServiceBuilder::new()
            .option_layer(has("catch-panic").then(CatchPanicLayer::new))
            .option_layer(if has("metrics") {
                self.metrics_layer()
            } else {
                None
            })
            .option_layer(if has("propagate") {
                self.propagate_layer()
            } else {
                None
            })
            .option_layer(if has("trace") {
                self.trace_layer()
            } else {
                None
            })
            .option_layer(audit)
            .option_layer(
                dead_letter
                    .map(|l| Stack::new(l, MapResponseLayer::new(settled as fn(Outcome<()>)))),
            )
            .option_layer(if has("retry") {
                self.retry_layer()
            } else {
                None
            })
            .option_layer(jwt)
            .option_layer(schema)
            .service(handler);
        Ok(Some(erase(chain)))
    }

    fn metrics_layer(&self) -> Option<MetricsLayer> {
        self.on(self.metrics.as_ref().map(|m| m.enabled))
            .then(|| MetricsLayer::consume(self.service_id()))
    }

    fn propagate_layer(&self) -> Option<PropagateLayer> {
        self.on(self.correlation.as_ref().map(|c| c.enabled))
            .then(PropagateLayer::consume)
    }

    fn trace_layer(&self) -> Option<TraceLayer> {
        self.on(self.trace.as_ref().map(|t| t.enabled)).then(|| {
            let layer = TraceLayer::consume();
            match self.consumer_property("group.id") {
                Some(group) => layer.group(group),
                None => layer,
            }
        })
    }

    fn audit_layer(&self) -> Result<Option<AuditLayer>, ConfigError> {
        let consumer = self.consumer.as_ref();
        if !self.on(self.audit.as_ref().map(|a| a.enabled))
            || !self.on(consumer.map(|c| c.audit_enabled))
        {
            return Ok(None);
        }
        let service_id = self.service_id();
        let mut layer = match consumer.map(|c| (c.audit_target, c.audit_topic.clone())) {
            Some((AuditTarget::Topic, topic)) => {
                AuditLayer::consumer(service_id, KafkaSink::new(self.producer()?, topic))
            }
            _ => AuditLayer::consumer(service_id, LogSink),
        };
        if let Some(audit) = &self.audit {
            layer = match &audit.mask {
                Mask::Switch(true) => layer.mask(MASKED_BY_DEFAULT),
                Mask::Switch(false) => layer,
                Mask::Fields(fields) => layer.mask(fields.clone()),
            };
            layer = layer
                .audit_on_error(audit.audit_on_error)
                .headers(audit.headers.clone());
            if audit.hash_chain {
                layer = layer.hash_chain();
            }
        }
        Ok(Some(layer))
    }

    fn dead_letter_layer(&self) -> Result<Option<DeadLetterLayer<Producer>>, ConfigError> {
        match self.consumer.as_ref() {
            Some(c) if !c.dead_letter_enabled => Ok(None),
            consumer => {
                let suffix =
                    consumer.map_or(".dlq".to_owned(), |c| c.dead_letter_topic_ext.clone());
                Ok(Some(DeadLetterLayer::new(self.producer()?).suffix(suffix)))
            }
        }
    }

    fn retry_layer(&self) -> Option<RetryRecordsLayer> {
        let consumer = self.consumer.as_ref();
        match self.retry.as_ref() {
            Some(r) if !r.enabled => None,
            retry => {
                let attempts = retry
                    .and_then(|r| r.max_attempts)
                    .or_else(|| consumer?.max_retries.map(|n| n.saturating_add(1)))
                    .unwrap_or(3);
                let mut policy = RetryPolicy::new(attempts);
                let first = retry.and_then(|r| r.initial_backoff_ms);
                let max = retry.and_then(|r| r.max_backoff_ms);
                let delay = consumer.and_then(|c| c.retry_delay_ms);
                if first.is_some() || max.is_some() {
                    let first = std::time::Duration::from_millis(first.unwrap_or(100));
                    let max = std::time::Duration::from_millis(max.unwrap_or(5_000));
                    policy = policy.backoff(first, max.max(first));
                } else if let Some(delay) = delay {
                    // light-kafka's fixed delay between retries.
                    let delay = std::time::Duration::from_millis(delay);
                    policy = policy.backoff(delay, delay);
                }
                Some(policy.layer())
            }
        }
    }

    fn on(&self, enabled: Option<bool>) -> bool {
        enabled.unwrap_or(true)
    }

    #[cfg(any(feature = "jwt", feature = "json-schema"))]
    fn in_file(&self, file: &str, position: (u64, u64), message: impl Into<String>) -> ConfigError {
        ConfigError::new(
            ConfigErrorKind::Invalid,
            &self.dir.join(file),
            position,
            message,
        )
    }

    #[cfg(feature = "jwt")]
    fn jwt_layer(
        &self,
        place: &Spanned<String>,
    ) -> Result<Option<crate::layers::jwt::JwtVerifyLayer>, ConfigError> {
        use crate::layers::jwt::{JwtVerifyLayer, KeySet, KeySource};
        let security = self
            .security
            .as_ref()
            .ok_or_else(|| self.at(place, ConfigErrorKind::Invalid, "`jwt` needs security.yml"))?;
        if !security.enable_verify_jwt {
            return Ok(None);
        }
        let jwt = &security.jwt;
        let files = jwt.keys.as_ref().filter(|k| !k.value.0.is_empty());
        let source = match (&jwt.jwks_uri, files) {
            (Some(url), None) => KeySource::Jwks {
                url: url.clone(),
                refresh_interval: std::time::Duration::from_secs(60),
            },
            (None, Some(files)) => {
                let mut keys = KeySet::new();
                let at = (files.referenced.line(), files.referenced.column());
                for (kid, path) in &files.value.0 {
                    let file = self.dir.join(path);
                    let pem = std::fs::read(&file).map_err(|e| {
                        self.in_file(
                            "security.yml",
                            at,
                            format!("cannot read the key of `{kid}`: {}", e.kind()),
                        )
                    })?;
                    keys = keys.rsa_pem(Some(kid), &pem).map_err(|e| {
                        self.in_file("security.yml", at, format!("the key of `{kid}`: {e}"))
                    })?;
                }
                KeySource::Static(keys)
            }
            _ => {
                return Err(self.in_file(
                    "security.yml",
                    (0, 0),
                    "`jwt` needs either `keys` (or `certificate`) or `jwksUri`",
                ));
            }
        };
        let mut builder = JwtVerifyLayer::builder(source);
        if !jwt.issuer.is_empty() {
            builder = builder.issuer(jwt.issuer.clone());
        }
        if !jwt.audience.is_empty() {
            builder = builder.audience(jwt.audience.clone());
        }
        if let Some(skew) = security.clock_skew_in_seconds.or(jwt.clock_skew_in_seconds) {
            builder = builder.clock_skew(std::time::Duration::from_secs(skew));
        }
        if security.ignore_jwt_expiry {
            builder = builder.skip_expiry_check();
        }
        for (topic, scopes) in &security.scopes {
            builder = builder.scopes(topic.clone(), scopes.clone());
        }
        if security.reject_unscoped_topics {
            builder = builder.reject_unscoped_topics();
        }
        Ok(Some(builder.build()))
    }

    #[cfg(not(feature = "jwt"))]
    fn jwt_layer(
        &self,
        place: &Spanned<String>,
    ) -> Result<Option<tower::layer::util::Identity>, ConfigError> {
        Err(self.at(
            place,
            ConfigErrorKind::Invalid,
            "`jwt` needs the crate's `jwt` feature",
        ))
    }

    #[cfg(feature = "json-schema")]
    fn schema_layer(
        &self,
        place: &Spanned<String>,
    ) -> Result<Option<crate::layers::schema::JsonSchemaLayer>, ConfigError> {
        use crate::layers::schema::JsonSchemaLayer;
        let schema = self
            .schema
            .as_ref()
            .ok_or_else(|| self.at(place, ConfigErrorKind::Invalid, "`schema` needs schema.yml"))?;
        if !schema.enabled {
            return Ok(None);
        }
        let mut layer = JsonSchemaLayer::new();
        for (topic, path) in &schema.schemas {
            layer = layer
                .with_schema_file(topic.clone(), self.dir.join(&path.value))
                .map_err(|e| {
                    self.in_file(
                        "schema.yml",
                        (path.referenced.line(), path.referenced.column()),
                        e.to_string(),
                    )
                })?;
        }
        Ok(Some(layer))
    }

    #[cfg(not(feature = "json-schema"))]
    fn schema_layer(
        &self,
        place: &Spanned<String>,
    ) -> Result<Option<tower::layer::util::Identity>, ConfigError> {
        Err(self.at(
            place,
            ConfigErrorKind::Invalid,
            "`schema` needs the crate's `json-schema` feature",
        ))
    }
}
