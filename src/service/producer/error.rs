use std::fmt;
use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::{ErrorKind, Kinded};
use crate::service::connect::ConnectError;

/// What went wrong when producing a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProduceErrorKind {
    /// The record is larger than `message.max.bytes` (client) or the broker allows.
    MessageTooLarge,
    /// The topic does not exist.
    UnknownTopic,
    /// The partition does not exist.
    UnknownPartition,
    /// The record was not acknowledged within `message.timeout.ms`.
    Timeout,
    /// Another producer with the same `transactional.id` took over (or the epoch
    /// is stale). This producer cannot produce any more.
    Fenced,
    /// The broker refused the client access to the topic or cluster.
    Authorization,
    /// The record was purged before delivery, e.g. because the producer was
    /// dropped or a transaction was aborted.
    Purged,
    /// The connection to the brokers failed.
    Transport,
    /// librdkafka raised a fatal error; the producer cannot produce any more.
    Fatal,
    /// The producer shut down before the record was delivered.
    Closed,
    /// `call` was used without a successful `poll_ready`, and no room was left.
    NotReady,
    /// The broker or cluster lacks a feature the client needs (transactions,
    /// idempotence, a protocol version): a configuration error, not transient.
    Unsupported,
    /// The broker refused the record as malformed or corrupt.
    InvalidRecord,
    /// The producer cannot reach the cluster with its configuration (a wrong
    /// password, an untrusted certificate, the wrong `security.protocol`);
    /// see [`ProduceError::connect_error`]. Every record it held and every
    /// later call fails with it.
    Connect,
    /// Any other broker or client error; see [`ProduceError::code`].
    Other,
}

impl ProduceErrorKind {
    /// Whether trying the same record again may succeed.
    pub const fn is_retriable(self) -> bool {
        matches!(
            self,
            ProduceErrorKind::Timeout | ProduceErrorKind::Transport | ProduceErrorKind::NotReady
        )
    }

    const fn describe(self) -> &'static str {
        match self {
            ProduceErrorKind::MessageTooLarge => "message too large",
            ProduceErrorKind::UnknownTopic => "unknown topic",
            ProduceErrorKind::UnknownPartition => "unknown partition",
            ProduceErrorKind::Timeout => "delivery timed out",
            ProduceErrorKind::Fenced => "producer fenced",
            ProduceErrorKind::Authorization => "not authorized",
            ProduceErrorKind::Purged => "purged before delivery",
            ProduceErrorKind::Transport => "broker transport failure",
            ProduceErrorKind::Fatal => "fatal producer error",
            ProduceErrorKind::Closed => "producer closed",
            ProduceErrorKind::NotReady => "producer not ready (call without poll_ready)",
            ProduceErrorKind::Unsupported => "feature not supported by the cluster",
            ProduceErrorKind::InvalidRecord => "record refused as invalid",
            ProduceErrorKind::Connect => "cannot connect to Kafka",
            ProduceErrorKind::Other => "produce failed",
        }
    }

    fn from_code(code: RDKafkaErrorCode) -> Self {
        use RDKafkaErrorCode as C;
        match code {
            C::MessageSizeTooLarge => ProduceErrorKind::MessageTooLarge,
            C::UnknownTopic | C::UnknownTopicOrPartition => ProduceErrorKind::UnknownTopic,
            C::UnknownPartition => ProduceErrorKind::UnknownPartition,
            C::MessageTimedOut | C::RequestTimedOut => ProduceErrorKind::Timeout,
            C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch => ProduceErrorKind::Fenced,
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed => ProduceErrorKind::Authorization,
            C::PurgeQueue | C::PurgeInflight => ProduceErrorKind::Purged,
            C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve => {
                ProduceErrorKind::Transport
            }
            C::Fatal => ProduceErrorKind::Fatal,
            C::UnsupportedFeature
            | C::UnsupportedVersion
            | C::UnsupportedForMessageFormat
            | C::UnsupportedCompressionType => ProduceErrorKind::Unsupported,
            C::InvalidRecord | C::InvalidMessage | C::BadMessage => ProduceErrorKind::InvalidRecord,
            _ => ProduceErrorKind::Other,
        }
    }
}

/// A record that could not be produced.
///
/// Its [`ErrorKind`] says what to do with the record: [`ErrorKind::Rejected`]
/// when the record itself is refused for good (too large, no such partition,
/// invalid), [`ErrorKind::Config`] when the cluster lacks a feature the
/// producer needs, else [`ErrorKind::Produce`] (an outage: try again later).
///
/// ```
/// use light_kafka::service::producer::{ProduceError, ProduceErrorKind};
/// use rdkafka::error::{KafkaError, RDKafkaErrorCode};
///
/// let err = ProduceError::from_kafka(
///     &KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
///     Some("orders".into()),
/// );
/// assert_eq!(err.kind(), ProduceErrorKind::MessageTooLarge);
/// assert!(err.to_string().contains("orders"));
/// ```
#[derive(Clone, Debug)]
pub struct ProduceError {
    kind: ProduceErrorKind,
    code: Option<RDKafkaErrorCode>,
    topic: Option<Arc<str>>,
    connect: Option<ConnectError>,
}

impl ProduceError {
    /// A producer error of `kind` for `topic`.
    pub fn new(kind: ProduceErrorKind, topic: Option<Arc<str>>) -> Self {
        ProduceError {
            kind,
            code: None,
            topic,
            connect: None,
        }
    }

    /// A record that could not be produced because the producer cannot
    /// connect at all.
    pub fn connect(error: ConnectError, topic: Option<Arc<str>>) -> Self {
        ProduceError {
            kind: ProduceErrorKind::Connect,
            code: None,
            topic,
            connect: Some(error),
        }
    }

    /// Why the producer cannot connect, for [`ProduceErrorKind::Connect`].
    pub fn connect_error(&self) -> Option<&ConnectError> {
        self.connect.as_ref()
    }

    /// Classifies an rdkafka error.
    pub fn from_kafka(err: &KafkaError, topic: Option<Arc<str>>) -> Self {
        let code = err.rdkafka_error_code();
        let mut kind = code.map_or(ProduceErrorKind::Other, ProduceErrorKind::from_code);
        if let KafkaError::Transaction(txn) = err
            && txn.is_fatal()
            && kind == ProduceErrorKind::Other
        {
            kind = ProduceErrorKind::Fatal;
        }
        ProduceError {
            kind,
            code,
            topic,
            connect: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ProduceErrorKind {
        self.kind
    }

    /// librdkafka's error code, when there is one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        self.code
    }

    /// The topic of the record.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(topic) = &self.topic {
            write!(f, " (topic {topic})")?;
        }
        if let Some(code) = self.code {
            write!(f, ": {code}")?;
        }
        if let Some(connect) = &self.connect {
            write!(f, ": {connect}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProduceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.connect
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for ProduceError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            ProduceErrorKind::MessageTooLarge
            | ProduceErrorKind::UnknownPartition
            | ProduceErrorKind::InvalidRecord => ErrorKind::Rejected,
            // The producer's own settings are at fault, not the record: an
            // outage to the dead-letter layer, never poison.
            ProduceErrorKind::Unsupported | ProduceErrorKind::Connect => ErrorKind::Config,
            _ => ErrorKind::Produce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            (
                RDKafkaErrorCode::MessageSizeTooLarge,
                ProduceErrorKind::MessageTooLarge,
            ),
            (
                RDKafkaErrorCode::UnknownTopic,
                ProduceErrorKind::UnknownTopic,
            ),
            (
                RDKafkaErrorCode::UnknownTopicOrPartition,
                ProduceErrorKind::UnknownTopic,
            ),
            (
                RDKafkaErrorCode::UnknownPartition,
                ProduceErrorKind::UnknownPartition,
            ),
            (RDKafkaErrorCode::MessageTimedOut, ProduceErrorKind::Timeout),
            (RDKafkaErrorCode::ProducerFenced, ProduceErrorKind::Fenced),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                ProduceErrorKind::Authorization,
            ),
            (RDKafkaErrorCode::PurgeQueue, ProduceErrorKind::Purged),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                ProduceErrorKind::Transport,
            ),
            (
                RDKafkaErrorCode::InvalidRecord,
                ProduceErrorKind::InvalidRecord,
            ),
            (
                RDKafkaErrorCode::UnsupportedFeature,
                ProduceErrorKind::Unsupported,
            ),
            (RDKafkaErrorCode::NotEnoughReplicas, ProduceErrorKind::Other),
        ];
        for (code, kind) in cases {
            let err = ProduceError::from_kafka(&KafkaError::MessageProduction(code), None);
            assert_eq!(err.kind(), kind, "{code:?}");
            assert_eq!(err.code(), Some(code));
        }
        assert!(ProduceErrorKind::Timeout.is_retriable());
        assert!(!ProduceErrorKind::Fenced.is_retriable());
    }

    #[test]
    fn permanent_produce_errors_are_not_transient() {
        let kind = |code| {
            Kinded::kind(&ProduceError::from_kafka(
                &KafkaError::MessageProduction(code),
                None,
            ))
        };
        assert_eq!(
            kind(RDKafkaErrorCode::MessageSizeTooLarge),
            ErrorKind::Rejected
        );
        assert_eq!(kind(RDKafkaErrorCode::InvalidRecord), ErrorKind::Rejected);
        assert_eq!(
            kind(RDKafkaErrorCode::UnsupportedFeature),
            ErrorKind::Config
        );
        assert_eq!(kind(RDKafkaErrorCode::MessageTimedOut), ErrorKind::Produce);
        for permanent in [ErrorKind::Rejected, ErrorKind::Config] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
        assert!(ErrorKind::Rejected.is_poison());
    }
}
