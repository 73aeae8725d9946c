//! Pieces shared by every rdkafka client this crate creates.

use std::fmt;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::error::{ErrorKind, Kinded};

/// Forwards a librdkafka log line to `tracing`, on target `librdkafka`.
pub(crate) fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// A client that could not be created or configured: kind [`ErrorKind::Config`].
///
/// ```
/// use light_kafka::service::producer::Producer;
///
/// let err = Producer::builder().set("no.such.property", "1").build().unwrap_err();
/// assert!(err.to_string().contains("no.such.property"));
/// ```
#[derive(Debug)]
pub struct BuildError {
    message: String,
    source: Option<KafkaError>,
}

impl BuildError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        BuildError {
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn kafka(message: impl Into<String>, source: KafkaError) -> Self {
        BuildError {
            message: message.into(),
            source: Some(source),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.message, source),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for BuildError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}
