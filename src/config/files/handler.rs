//! `handler.yml`, in light-4j's shape: names, chains, routes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Unused, java_keys, lenient};

fn yes() -> bool {
    true
}

/// One route of `handler.yml`: a topic (exact) or a pattern (a regular
/// expression matched against the whole topic name) and what runs for it.
/// A light-4j HTTP route (`path`, `method`) is accepted and listed as
/// ignored: records are routed by topic.
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
    /// light-4j's HTTP path (an HTTP route).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// light-4j's HTTP method of `path`.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Chains and handlers, outermost first; the last is the handler.
    #[serde(deserialize_with = "lenient::list")]
    pub exec: Vec<Spanned<String>>,
}

/// `handler.yml`, in light-4j's shape.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct HandlerFile {
    /// `false` leaves every layer out (handlers only). Default: true.
    #[serde(default = "yes", deserialize_with = "lenient::flag_true")]
    pub enabled: bool,
    /// The layers and handlers this file may use: a built-in or registered
    /// name, or a light-4j class name, optionally `name@alias`.
    #[serde(default, deserialize_with = "lenient::list")]
    pub handlers: Vec<Spanned<String>>,
    /// Named lists of layers.
    #[serde(default, deserialize_with = "lenient::map")]
    pub chains: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    /// Routes from topics to chains and a handler (light-4j's `paths`).
    #[serde(default, alias = "paths", deserialize_with = "lenient::list")]
    pub topics: Vec<Route>,
    /// What runs for topics no route names.
    #[serde(default)]
    pub default_handlers: Option<Spanned<Vec<Spanned<String>>>>,
    /// light-4j's `additionalHandlers`: appended to `handlers`.
    #[serde(default, deserialize_with = "lenient::list")]
    pub additional_handlers: Vec<Spanned<String>>,
    /// light-4j's `additionalChains`: added to `chains`.
    #[serde(default, deserialize_with = "lenient::map")]
    pub additional_chains: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    /// light-4j's `additionalPaths`: appended to the routes.
    #[serde(default, deserialize_with = "lenient::list")]
    pub additional_paths: Vec<Route>,
    #[serde(default)]
    base_path: Unused,
    #[serde(default)]
    audit_on_error: Unused,
    #[serde(default)]
    audit_stack_trace: Unused,
    #[serde(default)]
    report_handler_duration: Unused,
    #[serde(default)]
    handler_metrics_log_level: Unused,
}

java_keys!(HandlerFile {
    base_path => "basePath": "an HTTP path prefix; records are routed by topic",
    audit_on_error => "auditOnError": "audit.yml's auditOnError decides",
    audit_stack_trace => "auditStackTrace": "a failure's kind and message are audited; stack traces go to dead letters",
    report_handler_duration => "reportHandlerDuration": "the metrics layer measures every record's duration",
    handler_metrics_log_level => "handlerMetricsLogLevel": "durations are metrics, not log lines",
});

impl HandlerFile {
    /// Merges light-4j's `additional*` lists into the main ones.
    pub(crate) fn merge_additional(&mut self) {
        self.handlers.append(&mut self.additional_handlers);
        for (name, chain) in std::mem::take(&mut self.additional_chains) {
            self.chains.insert(name, chain);
        }
        self.topics.append(&mut self.additional_paths);
    }

    /// Whether the file routes any topic (else the default chain is built).
    pub fn routes_topics(&self) -> bool {
        self.default_handlers.is_some()
            || self
                .topics
                .iter()
                .any(|r| r.topic.is_some() || r.pattern.is_some())
    }
}

/// The built-in layer a light-4j handler class stands for, or why it has
/// none.
pub(crate) fn java_handler(class: &str) -> Result<&'static str, &'static str> {
    let simple = class.rsplit('.').next().unwrap_or(class);
    match simple {
        "ExceptionHandler" => Ok("catch-panic"),
        "MetricsHandler" | "PrometheusHandler" => Ok("metrics"),
        "CorrelationHandler" => Ok("propagate"),
        "TraceabilityHandler" => {
            Err("the propagate layer (correlation.yml) carries X-Traceability-Id too")
        }
        "AuditHandler" => Ok("audit"),
        "JwtVerifyHandler" => Ok("jwt"),
        "ValidatorHandler" | "SchemaValidatorHandler" => Ok("schema"),
        _ => Err("a light-4j HTTP handler with no counterpart for records"),
    }
}
