//! The chain of a directory whose `handler.yml` routes no topic (or that
//! has none, as a Java light-kafka folder): the canonical order, with the
//! built-in layers whose files are present, around one handler.

use std::collections::HashMap;
use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::Config;
use super::chain::{Chains, HTTP_BACKEND, Registry};
use super::source::{ConfigError, ConfigErrorKind};

/// The name a registered handler has to be the default chain's handler.
pub const DEFAULT_HANDLER: &str = "default";

impl Config {
    /// The layers of the default chain, outermost first: `catch-panic`
    /// always; `metrics`, `propagate`, `trace`, `audit`, `schema` when
    /// `metrics.yml`, `correlation.yml`, `trace.yml`, `audit.yml`,
    /// `schema.yml` are present; `dead-letter` when `kafka-consumer.yml` is
    /// (unless `deadLetterEnabled: false`); `retry` when `retry.yml` is or
    /// `kafka-consumer.yml` sets `maxRetries`; `jwt` when `security.yml`
    /// names keys (`jwt.certificate`/`jwt.keys`) or `jwt.jwksUri`. A layer
    /// whose file says `enabled: false` is then left out when built.
    pub fn default_layers(&self) -> Vec<&'static str> {
        let consumer = self.consumer.as_ref();
        let jwt = self.security.as_ref().is_some_and(|s| {
            s.jwt.jwks_uri.is_some() || s.jwt.keys.as_ref().is_some_and(|k| !k.value.0.is_empty())
        });
        [
            ("catch-panic", true),
            ("metrics", self.metrics.is_some()),
            ("propagate", self.correlation.is_some()),
            ("trace", self.trace.is_some()),
            ("audit", self.audit.is_some()),
            (
                "dead-letter",
                consumer.is_some_and(|c| c.dead_letter_enabled),
            ),
            (
                "retry",
                self.retry.is_some() || consumer.is_some_and(|c| c.max_retries.is_some()),
            ),
            ("jwt", jwt),
            ("schema", self.schema.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }

    /// The default chain for every topic: [`Config::default_layers`]
    /// around the handler registered as [`DEFAULT_HANDLER`], else
    /// `http-backend` when `kafka-consumer.yml` sets `backendApiHost`.
    pub(crate) fn default_chains(&self, registry: &Registry) -> Result<Chains, ConfigError> {
        let place = Spanned::new(String::new(), Location::UNKNOWN, Location::UNKNOWN);
        let handler = if registry.has_handler(DEFAULT_HANDLER) {
            self.handler_service(DEFAULT_HANDLER, &place, registry)?
        } else if self
            .consumer
            .as_ref()
            .is_some_and(|c| c.backend_api_host.is_some())
        {
            self.handler_service(HTTP_BACKEND, &place, registry)?
        } else {
            return Err(ConfigError::new(
                ConfigErrorKind::UnknownHandler,
                &self.handler_path(),
                (0, 0),
                format!(
                    "no topic is routed (no handler.yml, or one with HTTP paths only): register a handler named `{DEFAULT_HANDLER}` or set `backendApiHost` in kafka-consumer.yml"
                ),
            ));
        };
        let names: Vec<(&str, &Spanned<String>)> = self
            .default_layers()
            .into_iter()
            .map(|n| (n, &place))
            .collect();
        let chain = match self.static_chain(&names, handler.clone(), registry)? {
            Some(chain) => chain,
            None => {
                let mut service = handler;
                for (name, _) in names.iter().rev() {
                    if let Some(layer) = self.layer(name, &place, registry)? {
                        service = layer(service);
                    }
                }
                service
            }
        };
        Ok(Chains::single(chain, Arc::new(HashMap::new())))
    }
}
