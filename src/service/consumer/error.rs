use std::fmt;

use rdkafka::error::KafkaError;

use crate::error::{BoxError, ErrorKind, Kinded, classify};
use crate::service::client::BuildError;

/// Why a consumer stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The service failed a record under [`super::ErrorPolicy::FailFast`].
    /// Nothing at or after `offset` in that partition was committed.
    Handler {
        /// Topic of the failed record.
        topic: String,
        /// Partition of the failed record.
        partition: i32,
        /// Offset of the failed record.
        offset: i64,
        /// What the service returned (or the panic it raised).
        source: BoxError,
    },
    /// The service's `poll_ready` failed, so it cannot take records any more.
    NotReady(BoxError),
    /// The Kafka client failed fatally, or could not subscribe.
    Kafka(KafkaError),
    /// The cluster cannot be reached with this configuration: a wrong
    /// password, a certificate one side does not trust, the wrong
    /// `security.protocol`. Nothing was committed past a settled record.
    Connect(crate::service::connect::ConnectError),
    /// The consumer could not be created.
    Build(BuildError),
}

impl fmt::Display for ConsumerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsumerError::Handler {
                topic,
                partition,
                offset,
                source,
            } => write!(f, "record {topic}[{partition}]@{offset} failed: {source}"),
            ConsumerError::NotReady(source) => {
                write!(f, "the service can take no more records: {source}")
            }
            ConsumerError::Kafka(error) => write!(f, "Kafka consumer failed: {error}"),
            ConsumerError::Connect(error) => write!(f, "cannot connect to Kafka: {error}"),
            ConsumerError::Build(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ConsumerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConsumerError::Handler { source, .. } | ConsumerError::NotReady(source) => {
                Some(source.as_ref())
            }
            ConsumerError::Kafka(error) => Some(error),
            ConsumerError::Connect(error) => Some(error),
            ConsumerError::Build(error) => Some(error),
        }
    }
}

impl Kinded for ConsumerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ConsumerError::Handler { source, .. } | ConsumerError::NotReady(source) => {
                classify(source.as_ref())
            }
            ConsumerError::Kafka(_) => ErrorKind::Transient,
            ConsumerError::Connect(error) => Kinded::kind(error),
            ConsumerError::Build(_) => ErrorKind::Config,
        }
    }
}

impl From<BuildError> for ConsumerError {
    fn from(error: BuildError) -> Self {
        ConsumerError::Build(error)
    }
}
