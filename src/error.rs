//! Error kinds shared by every layer, and the classifier the dead-letter layer uses.
//!
//! Layers that can reject a record return a [`BoxError`] that holds a small
//! concrete error type (a JWT rejection, a schema violation, a timeout...). Each of
//! those types has a stable [`ErrorKind`], and [`classify`] recovers it from a boxed
//! error by walking the `source()` chain, so one boundary (the dead-letter layer,
//! the metrics layer, the consumer runtime) can decide what to do without knowing
//! every layer.
//!
//! Handlers report their own failures with [`Error`]:
//!
//! ```
//! use light_kafka::error::{classify, BoxError, Error, ErrorKind};
//!
//! let err: BoxError = Error::transient("database unavailable").into();
//! assert_eq!(classify(err.as_ref()), ErrorKind::Transient);
//! assert_eq!(err.to_string(), "transient: database unavailable");
//! ```

use std::borrow::Cow;
use std::fmt;

/// A type-erased error, as tower uses it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The stable classification of a failure.
///
/// The string form ([`ErrorKind::as_str`]) is written into dead-letter headers,
/// metric labels and audit entries, so it never changes for an existing kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The record carried no usable identity: a missing, invalid or expired token,
    /// or one signed by an unknown key.
    Unauthorized,
    /// The identity was valid but lacked a required scope.
    Forbidden,
    /// The value parsed but violated its schema.
    Invalid,
    /// The value could not be decoded at all (not UTF-8, not JSON, not Avro...).
    Deserialization,
    /// An operation took longer than allowed.
    Timeout,
    /// A service shed the record because it was overloaded.
    Overloaded,
    /// The handler reported a failure that is expected to pass if retried.
    Transient,
    /// The handler failed.
    Handler,
    /// The handler panicked.
    Panic,
    /// Producing a record to Kafka failed in a way that may pass later (the
    /// broker unreachable, a delivery timeout, a fenced or failed producer).
    Produce,
    /// A configuration value was missing or wrong, or the cluster lacks a
    /// feature the configuration needs.
    Config,
    /// The broker or the client refused the record itself, for good: larger
    /// than `message.max.bytes`, a partition that does not exist, a record
    /// the broker calls corrupt.
    Rejected,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::Invalid,
        ErrorKind::Deserialization,
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::Transient,
        ErrorKind::Handler,
        ErrorKind::Panic,
        ErrorKind::Produce,
        ErrorKind::Config,
        ErrorKind::Rejected,
    ];

    /// The stable, lower-case name of this kind.
    ///
    /// ```
    /// # use light_kafka::error::ErrorKind;
    /// assert_eq!(ErrorKind::Deserialization.as_str(), "deserialization");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Deserialization => "deserialization",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Transient => "transient",
            ErrorKind::Handler => "handler",
            ErrorKind::Panic => "panic",
            ErrorKind::Produce => "produce",
            ErrorKind::Config => "config",
            ErrorKind::Rejected => "rejected",
        }
    }

    /// Parses the name produced by [`ErrorKind::as_str`].
    ///
    /// ```
    /// # use light_kafka::error::ErrorKind;
    /// assert_eq!(ErrorKind::parse("timeout"), Some(ErrorKind::Timeout));
    /// assert_eq!(ErrorKind::parse("nope"), None);
    /// ```
    pub fn parse(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether a failure of this kind may succeed when the same record is tried
    /// again (timeouts, overload, transient handler and produce failures).
    ///
    /// ```
    /// # use light_kafka::error::ErrorKind;
    /// assert!(ErrorKind::Timeout.is_transient());
    /// assert!(!ErrorKind::Invalid.is_transient());
    /// ```
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Overloaded | ErrorKind::Transient | ErrorKind::Produce
        )
    }

    /// Whether a record failing this way will never succeed, however often it
    /// is tried: a *poison* record, for the dead-letter topic (invalid,
    /// undecodable, unauthorized, forbidden, rejected by the broker, a handler
    /// error or a panic). Transient kinds and [`ErrorKind::Config`] are not:
    /// they are outages or mistakes to fix, and records failing with them go
    /// back to the consumer runtime, which backs off and tries again.
    ///
    /// ```
    /// # use light_kafka::error::ErrorKind;
    /// assert!(ErrorKind::Invalid.is_poison());
    /// assert!(!ErrorKind::Overloaded.is_poison());
    /// assert!(!ErrorKind::Config.is_poison());
    /// ```
    pub const fn is_poison(self) -> bool {
        matches!(
            self,
            ErrorKind::Unauthorized
                | ErrorKind::Forbidden
                | ErrorKind::Invalid
                | ErrorKind::Deserialization
                | ErrorKind::Handler
                | ErrorKind::Panic
                | ErrorKind::Rejected
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error type that knows its own [`ErrorKind`].
///
/// Implement it for your own error types and register nothing: [`classify`] finds
/// the kind of any error in the chain that is one of this crate's types or an
/// [`Error`]. Your own types can be wrapped in [`Error::with_source`].
pub trait Kinded {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;
}

/// A failure with a kind and a message, for handlers and custom layers.
///
/// ```
/// use light_kafka::error::{Error, ErrorKind};
///
/// let io = std::io::Error::other("connection reset");
/// let err = Error::with_source(ErrorKind::Transient, "calling the ledger", io);
/// assert_eq!(err.kind(), ErrorKind::Transient);
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` with `message`, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<Cow<'static, str>>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A handler failure that is worth retrying.
    pub fn transient(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Transient, message)
    }

    /// A handler failure that retrying will not fix.
    pub fn handler(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Handler, message)
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Kinded for Error {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Finds the [`ErrorKind`] of an error by walking its `source()` chain.
///
/// The first error in the chain that is one of this crate's error types, an
/// [`Error`], or one of tower's (`Elapsed` from the timeout layer, `Overloaded`
/// from load-shed) decides. A chain with none of them is a
/// [`ErrorKind::Handler`] failure.
///
/// ```
/// use light_kafka::error::{classify, BoxError, ErrorKind};
///
/// let elapsed: BoxError = tower::timeout::error::Elapsed::new().into();
/// assert_eq!(classify(elapsed.as_ref()), ErrorKind::Timeout);
///
/// let other: BoxError = "something broke".into();
/// assert_eq!(classify(other.as_ref()), ErrorKind::Handler);
/// ```
pub fn classify(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(kind) = kind_of(e) {
            return kind;
        }
        current = e.source();
    }
    ErrorKind::Handler
}

/// The error and its causes, one per line, each cause after `caused by: `.
///
/// This is the text of the dead-letter layer's `StackTrace` header and of an
/// audit entry's stack trace: Rust errors carry no stack, but their source
/// chain says where a failure came from.
///
/// ```
/// use light_kafka::error::chain;
///
/// #[derive(Debug)]
/// struct Lookup(std::io::Error);
/// impl std::fmt::Display for Lookup {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("customer lookup failed")
///     }
/// }
/// impl std::error::Error for Lookup {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let error = Lookup(std::io::Error::other("connection reset"));
/// assert_eq!(chain(&error), "customer lookup failed\ncaused by: connection reset");
/// ```
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut trace = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        trace.push_str("\ncaused by: ");
        trace.push_str(&cause.to_string());
        source = cause.source();
    }
    trace
}

fn kind_of(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    macro_rules! try_kinded {
        ($($ty:ty),* $(,)?) => {
            $( if let Some(k) = e.downcast_ref::<$ty>() { return Some(Kinded::kind(k)); } )*
        };
    }
    try_kinded!(
        Error,
        crate::service::producer::ProduceError,
        crate::service::transactional::TransactionError,
        crate::layers::catch_panic::PanicError,
        crate::record::DecodeError,
        crate::record::ConversionError,
        crate::record::codec::CodecError,
        crate::service::batching::BatchError,
        crate::service::client::BuildError,
        crate::service::connect::ConnectError,
        crate::layers::dead_letter::DeadLetterError,
        crate::service::replay::ReplayError,
        crate::http::HttpStatusError,
        crate::streams::store::StoreError,
        crate::streams::processor::ProcessorError,
    );
    #[cfg(feature = "http-backend")]
    try_kinded!(crate::http::backend::BackendError);
    #[cfg(feature = "jwt")]
    try_kinded!(crate::layers::jwt::JwtError, crate::layers::jwt::KeyError);
    #[cfg(feature = "avro")]
    try_kinded!(crate::layers::avro::AvroError);
    #[cfg(feature = "json-schema")]
    try_kinded!(
        crate::layers::schema::SchemaError,
        crate::layers::schema::SchemaConfigError,
        crate::layers::json_schema_registry::JsonSchemaRegistryError
    );
    #[cfg(any(feature = "avro", feature = "json-schema", feature = "protobuf"))]
    try_kinded!(crate::layers::registry::RegistryError);
    #[cfg(feature = "protobuf")]
    try_kinded!(crate::layers::protobuf::ProtobufError);
    if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
        return Some(ErrorKind::Timeout);
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Some(ErrorKind::Overloaded);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn classify_walks_the_source_chain() {
        let inner = Error::new(ErrorKind::Invalid, "bad field");
        let outer = Error::with_source(ErrorKind::Handler, "wrapped", inner);
        // The outermost kinded error decides.
        assert_eq!(classify(&outer), ErrorKind::Handler);

        #[derive(Debug)]
        struct Opaque(Error);
        impl fmt::Display for Opaque {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("opaque")
            }
        }
        impl std::error::Error for Opaque {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let opaque = Opaque(Error::new(ErrorKind::Forbidden, "scope"));
        assert_eq!(classify(&opaque), ErrorKind::Forbidden);
    }

    #[test]
    fn tower_errors_are_classified() {
        let shed: BoxError = tower::load_shed::error::Overloaded::new().into();
        assert_eq!(classify(shed.as_ref()), ErrorKind::Overloaded);
    }
}
