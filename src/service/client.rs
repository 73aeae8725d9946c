//! Pieces shared by every rdkafka client this crate creates.

use std::fmt;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::error::{ErrorKind, Kinded};

/// Raises librdkafka's log level for one of the crate's clients to at least
/// `Info`, the level of the `FAIL` line that alone says a connection was
/// closed by a listener speaking another protocol (see
/// [`crate::service::connect`]). A higher level (from the `log` crate's
/// maximum, as rdkafka reads it) is kept, so `debug` still works.
pub(crate) fn raise_log_level(config: &mut rdkafka::config::ClientConfig) {
    if (config.log_level as i32) < (RDKafkaLogLevel::Info as i32) {
        config.set_log_level(RDKafkaLogLevel::Info);
    }
}

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

/// Repeated client errors, logged once per change of state and then with
/// backoff: with no broker reachable librdkafka reports an error per
/// connection attempt, many per second, and a log line for each would drown
/// everything else.
///
/// Each kind of trouble (a key) is logged the first time it is seen, then at
/// most once per backoff (5 s, doubling up to 5 min) with how often it
/// repeated; [`LogThrottle::recovered`] logs the end of the trouble once and
/// starts over.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    keys: std::sync::Mutex<std::collections::HashMap<String, Repeats>>,
}

#[derive(Debug)]
struct Repeats {
    suppressed: u64,
    next: std::time::Instant,
    backoff: std::time::Duration,
}

const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(300);

impl LogThrottle {
    /// Calls `log(suppressed)` if this occurrence of `key` is to be logged,
    /// with the number of occurrences left unlogged since the last line.
    pub(crate) fn report(&self, key: &str, log: impl FnOnce(u64)) {
        let now = std::time::Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.get_mut(key) {
            None => {
                keys.insert(
                    key.to_owned(),
                    Repeats {
                        suppressed: 0,
                        next: now + FIRST_BACKOFF,
                        backoff: FIRST_BACKOFF,
                    },
                );
                drop(keys);
                log(0);
            }
            Some(repeats) if now >= repeats.next => {
                let suppressed = std::mem::take(&mut repeats.suppressed);
                repeats.backoff = (repeats.backoff * 2).min(MAX_BACKOFF);
                repeats.next = now + repeats.backoff;
                drop(keys);
                log(suppressed);
            }
            Some(repeats) => repeats.suppressed += 1,
        }
    }

    /// The client works again: logs that once, and forgets the trouble.
    pub(crate) fn recovered(&self) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.is_empty() {
            return;
        }
        let troubles: Vec<String> = keys.drain().map(|(key, _)| key).collect();
        drop(keys);
        tracing::info!(troubles = ?troubles, "client recovered");
    }
}

/// The throttle key of a client error: every way of not reaching the
/// cluster is one state.
pub(crate) fn trouble_key(error: &KafkaError) -> String {
    use rdkafka::error::RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::OperationTimedOut
            | C::NetworkException,
        ) => "cluster unreachable".to_owned(),
        Some(code) => format!("{code:?}"),
        None => format!("{error}"),
    }
}

/// A client that could not be created or configured: kind [`ErrorKind::Config`],
/// found before anything connects.
///
/// ```
/// use light_kafka::service::client::BuildErrorKind;
/// use light_kafka::service::producer::Producer;
///
/// let err = Producer::builder().set("no.such.property", "1").build().unwrap_err();
/// assert!(err.to_string().contains("no.such.property"));
///
/// let err = Producer::builder().build().unwrap_err();
/// assert_eq!(err.kind(), BuildErrorKind::Missing);
/// assert_eq!(err.setting(), Some("bootstrap.servers"));
///
/// let err = Producer::builder().bootstrap_servers("kafka:nine").build().unwrap_err();
/// assert_eq!(err.kind(), BuildErrorKind::Invalid);
/// ```
#[derive(Debug)]
pub struct BuildError {
    kind: BuildErrorKind,
    setting: Option<&'static str>,
    message: String,
    source: Option<crate::error::BoxError>,
}

/// What is wrong with a client's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// A required setting is missing or empty (`bootstrap.servers`, `group.id`).
    Missing,
    /// A setting has a value that cannot work (a malformed `bootstrap.servers`,
    /// a non-numeric bound...).
    Invalid,
    /// librdkafka refused the configuration or the client.
    Client,
}

impl BuildError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        BuildError {
            kind: BuildErrorKind::Invalid,
            setting: None,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn missing(setting: &'static str, message: impl Into<String>) -> Self {
        BuildError {
            kind: BuildErrorKind::Missing,
            setting: Some(setting),
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn invalid(setting: &'static str, message: impl Into<String>) -> Self {
        BuildError {
            kind: BuildErrorKind::Invalid,
            setting: Some(setting),
            message: message.into(),
            source: None,
        }
    }

    /// librdkafka refused the configuration or the client. A refused
    /// property is named with a reason, never with its value (which may be a
    /// secret, and which rdkafka's own message quotes), and rdkafka's error is
    /// not kept as the source for the same reason.
    pub(crate) fn kafka(message: impl Into<String>, source: KafkaError) -> Self {
        let mut message = message.into();
        let source = match source {
            KafkaError::ClientConfig(result, _, key, _) => {
                let reason = match result {
                    rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN => "no such property",
                    _ => "value refused (not shown: it may be a secret)",
                };
                message = format!("{message}: property `{key}`: {reason}");
                None
            }
            other => Some(Box::new(other) as crate::error::BoxError),
        };
        BuildError {
            kind: BuildErrorKind::Client,
            setting: None,
            message,
            source,
        }
    }

    /// A client that could not be set up because of `source` (a transactional
    /// producer that cannot initialise, a connection that cannot succeed).
    pub(crate) fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BuildError {
            kind: BuildErrorKind::Client,
            setting: None,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> BuildErrorKind {
        self.kind
    }

    /// The setting at fault, when one is.
    pub fn setting(&self) -> Option<&'static str> {
        self.setting
    }
}

/// Whether a client property's value is a secret: passwords (and their
/// common misspellings), secrets, tokens, JAAS settings, inline private keys,
/// registry credentials.
pub(crate) fn is_secret_property(key: &str) -> bool {
    const MARKS: [&str; 13] = [
        "passw",
        "pasw",
        "pssw",
        "pwd",
        "secret",
        "token",
        "jaas",
        "key.pem",
        "credential",
        "user.info",
        "oauthbearer.config",
        "private",
        "apikey",
    ];
    let key = key.to_ascii_lowercase();
    MARKS.iter().any(|mark| key.contains(mark))
}

/// `Debug` for a client configuration that shows every property and hides
/// the value of each secret one ([`is_secret_property`]; rdkafka's own
/// `Debug` hides five exact names only).
pub(crate) struct Redacted<'a>(pub(crate) &'a rdkafka::config::ClientConfig);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in self.0.config_map() {
            if is_secret_property(key) {
                map.entry(&key, &"<redacted>");
            } else {
                map.entry(&key, &value);
            }
        }
        map.finish()
    }
}

/// The properties of `config` with their real values. rdkafka's
/// `ClientConfig::config_map` replaces the values of five secret properties
/// with a placeholder, so copying a configuration through it loses the
/// SASL password and the key passwords.
pub(crate) fn properties(
    config: &rdkafka::config::ClientConfig,
) -> impl Iterator<Item = (&str, &str)> {
    config
        .config_map()
        .into_keys()
        .filter_map(|key| config.get(key).map(|value| (key, value)))
}

/// Checks `bootstrap.servers` before any client is created: present, and a
/// comma-separated list of `host:port` (optionally `PROTOCOL://host:port`,
/// IPv6 hosts in brackets) with ports from 1 to 65535.
pub(crate) fn check_bootstrap(config: &rdkafka::config::ClientConfig) -> Result<(), BuildError> {
    const SETTING: &str = "bootstrap.servers";
    let servers = config
        .get(SETTING)
        .or_else(|| config.get("metadata.broker.list"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            BuildError::missing(
                SETTING,
                "bootstrap.servers is required (host:port[,host:port...])",
            )
        })?;
    for entry in servers.split(',').map(str::trim) {
        let address = entry.split_once("://").map_or(entry, |(_, rest)| rest);
        let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(BuildError::invalid(
                SETTING,
                format!("bootstrap.servers entry {entry:?} is not host:port"),
            ));
        }
    }
    Ok(())
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
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for BuildError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}
