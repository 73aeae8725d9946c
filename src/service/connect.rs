//! Connections that can never succeed: a wrong SASL password, a certificate
//! the broker or the client does not trust, a plaintext client on a TLS port.
//!
//! librdkafka treats every failed connection as transient and tries again,
//! forever, reporting each attempt to the client's error callback. For these
//! failures trying again cannot help, so the crate's clients watch their error
//! callback with a [`ConnectWatch`] and, on the first such failure, stop with a
//! typed [`ConnectError`] instead of hanging: the consumer runtime's `serve`
//! returns it, the producer fails what it holds and every later call with it,
//! and health reports it.
//!
//! | what librdkafka reports | [`ConnectErrorKind`] | [`ErrorKind`] |
//! | --- | --- | --- |
//! | SASL authentication failed (wrong user or password, unknown mechanism) | `Authentication` | `unauthorized` |
//! | the broker refused the client's certificate (untrusted, expired) | `ClientCertificate` | `unauthorized` |
//! | the broker's certificate could not be verified (`ssl.ca.location`) | `BrokerCertificate` | `config` |
//! | plaintext spoken to a TLS listener, or TLS to a plaintext one | `Protocol` | `config` |
//!
//! A protocol mismatch is only recognised by librdkafka's wording when a
//! connection closes during its first request (librdkafka 2.12 says no more
//! than "connection closed by peer ... in state APIVERSION_QUERY"), which a
//! broker that stops at that moment can also cause; it is taken as fatal only
//! while the client has not yet reached the cluster (see
//! [`ConnectWatch::reached`]), and only once it happened
//! [`PROTOCOL_EVIDENCE`] times.
//!
//! ```
//! use light_kafka::error::{classify, ErrorKind};
//! use light_kafka::service::connect::{ConnectError, ConnectErrorKind};
//!
//! let err = ConnectError::classify(
//!     &rdkafka::error::KafkaError::Global(rdkafka::error::RDKafkaErrorCode::Authentication),
//!     "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed \
//!      during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
//!     false,
//! )
//! .unwrap();
//! assert_eq!(err.kind(), ConnectErrorKind::Authentication);
//! assert_eq!(classify(&err), ErrorKind::Unauthorized);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorKind, Kinded};

/// How many connections must close during their first request, before the
/// client ever reached the cluster, for a protocol mismatch to be reported.
/// librdkafka reconnects after 100 ms, doubling: three take about half a
/// second.
pub const PROTOCOL_EVIDENCE: u32 = 3;

/// Why a client cannot connect (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// SASL authentication failed: wrong user name or password, or a
    /// mechanism the listener does not enable.
    Authentication,
    /// The broker refused the client's certificate (mTLS): signed by a CA it
    /// does not trust, expired, or missing.
    ClientCertificate,
    /// The client could not verify the broker's certificate: `ssl.ca.location`
    /// names the wrong CA, or the certificate does not match the host.
    BrokerCertificate,
    /// The client and the listener speak different protocols: plaintext to a
    /// TLS listener, TLS to a plaintext one (`security.protocol`).
    Protocol,
}

impl ConnectErrorKind {
    const fn describe(self) -> &'static str {
        match self {
            ConnectErrorKind::Authentication => "SASL authentication failed",
            ConnectErrorKind::ClientCertificate => "the broker refused the client certificate",
            ConnectErrorKind::BrokerCertificate => "the broker's certificate is not trusted",
            ConnectErrorKind::Protocol => "security.protocol does not match the broker's listener",
        }
    }
}

/// A connection failure that trying again cannot mend, with librdkafka's
/// reason (which names the broker and never a credential).
///
/// Its [`ErrorKind`] is `unauthorized` for a refused identity and `config`
/// for a client whose TLS or protocol settings are wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    reason: Arc<str>,
}

impl ConnectError {
    /// Recognises a failure reported to a client's error callback, or `None`
    /// for failures that may pass (a broker down, a timeout).
    ///
    /// `reached` says whether the client has talked to the cluster before: a
    /// protocol mismatch is only taken for one while it has not (see the
    /// [module documentation](self)).
    pub fn classify(error: &KafkaError, reason: &str, reached: bool) -> Option<ConnectError> {
        let code = error.rdkafka_error_code();
        let text = reason.to_ascii_lowercase();
        let kind = if code == Some(RDKafkaErrorCode::Authentication)
            || code == Some(RDKafkaErrorCode::SaslAuthenticationFailed)
        {
            ConnectErrorKind::Authentication
        } else if text.contains("certificate verify failed")
            || text.contains("broker certificate could not be verified")
        {
            ConnectErrorKind::BrokerCertificate
        } else if text.contains("ssl alert")
            && (text.contains("certificate") || text.contains("unknown ca"))
        {
            // The peer's alert: the broker refused what the client presented.
            ConnectErrorKind::ClientCertificate
        } else if !reached
            && (text.contains("incorrect security.protocol")
                || text.contains("wrong version number")
                || (code == Some(RDKafkaErrorCode::SSL) && text.contains("unexpected eof"))
                || (text.contains("connection closed by peer")
                    && text.contains("in state apiversion_query")))
        {
            ConnectErrorKind::Protocol
        } else {
            return None;
        };
        Some(ConnectError {
            kind,
            reason: reason.into(),
        })
    }

    /// What failed.
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// librdkafka's words for it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.describe(), self.reason)
    }
}

impl std::error::Error for ConnectError {}

impl Kinded for ConnectError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            ConnectErrorKind::Authentication | ConnectErrorKind::ClientCertificate => {
                ErrorKind::Unauthorized
            }
            ConnectErrorKind::BrokerCertificate | ConnectErrorKind::Protocol => ErrorKind::Config,
        }
    }
}

/// What a client's error callback learned about its connections: the first
/// failure that cannot mend, and whether the client ever reached the cluster.
///
/// Shared between a client's context (which [`report`](Self::report)s) and
/// the runtime around it (which waits on [`failed`](Self::failed)).
#[derive(Default)]
pub struct ConnectWatch {
    failure: OnceLock<ConnectError>,
    reached: AtomicBool,
    protocol_evidence: std::sync::atomic::AtomicU32,
    signal: CancellationToken,
    on_failure: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl fmt::Debug for ConnectWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWatch")
            .field("failure", &self.failure.get())
            .field("reached", &self.reached.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ConnectWatch {
    /// A watch with no failure.
    pub fn new() -> Arc<ConnectWatch> {
        Arc::new(ConnectWatch::default())
    }

    /// Looks at one error from the client's error callback; returns the
    /// failure when this error is the first that cannot mend.
    pub fn report(&self, error: &KafkaError, reason: &str) -> Option<ConnectError> {
        let failure = ConnectError::classify(error, reason, self.reached.load(Ordering::Relaxed))?;
        if failure.kind == ConnectErrorKind::Protocol {
            // librdkafka folds repeats into the next line ("..., 2 identical
            // error(s) suppressed)").
            let seen = 1 + suppressed(reason);
            if self.protocol_evidence.fetch_add(seen, Ordering::Relaxed) + seen < PROTOCOL_EVIDENCE
            {
                return None;
            }
        }
        if self.failure.set(failure.clone()).is_err() {
            return None;
        }
        tracing::error!(target: "light_kafka::connect", error = %failure, "cannot connect to Kafka");
        let hook = self
            .on_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hook) = hook {
            hook();
        }
        self.signal.cancel();
        Some(failure)
    }

    /// Looks at one line from the client's log callback. librdkafka reports a
    /// connection that the listener closes at once (plaintext spoken to a TLS
    /// port) only as an informational `FAIL` line, and its error callback
    /// then says no more than "all brokers are down".
    pub fn report_log(&self, facility: &str, message: &str) -> Option<ConnectError> {
        if facility != "FAIL" {
            return None;
        }
        self.report(
            &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            message,
        )
    }

    /// Notes that the client has talked to the cluster (a delivery, an
    /// assignment, a message).
    pub fn reached(&self) {
        if !self.reached.load(Ordering::Relaxed) {
            self.reached.store(true, Ordering::Relaxed);
        }
    }

    /// The failure, once there is one.
    pub fn failure(&self) -> Option<&ConnectError> {
        self.failure.get()
    }

    /// Completes when a failure is reported.
    pub fn failed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.signal.cancelled()
    }

    /// Like [`failed`](Self::failed), owning a handle.
    pub(crate) fn failed_owned(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.signal.clone().cancelled_owned()
    }

    /// Runs `hook` once, on the librdkafka thread that reports the failure
    /// (so it must not block on the client); at once if there is one already.
    pub(crate) fn on_failure(&self, hook: impl FnOnce() + Send + 'static) {
        let mut slot = self.on_failure.lock().unwrap_or_else(|p| p.into_inner());
        if self.failure.get().is_some() {
            drop(slot);
            hook();
        } else {
            *slot = Some(Box::new(hook));
        }
    }
}

/// The `N` of librdkafka's "N identical error(s) suppressed", else 0.
fn suppressed(reason: &str) -> u32 {
    reason
        .find(" identical error(s) suppressed")
        .and_then(|end| {
            let digits = reason[..end].rsplit(|c: char| !c.is_ascii_digit()).next()?;
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// The context of a short-lived client (metadata, admin) that only watches
/// for connections that cannot succeed and logs like the crate's others.
#[derive(Debug, Default)]
pub(crate) struct WatchContext {
    pub(crate) connect: Arc<ConnectWatch>,
}

impl rdkafka::ClientContext for WatchContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.connect.report_log(fac, log_message);
        crate::service::client::log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.connect.report(&error, reason).is_none() {
            tracing::warn!(target: "librdkafka", %error, reason, "client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for WatchContext {}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    #[test]
    fn recognises_what_librdkafka_reports() {
        // Reasons as librdkafka 2.x words them (seen against Kafka 4.1).
        let cases = [
            (
                global(RDKafkaErrorCode::Authentication),
                "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 314ms in state AUTH_REQ)",
                Some(ConnectErrorKind::Authentication),
            ),
            (
                global(RDKafkaErrorCode::BrokerTransportFailure),
                "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000416:SSL routines::sslv3 alert certificate unknown: SSL alert number 46 (after 0ms in state APIVERSION_QUERY)",
                Some(ConnectErrorKind::ClientCertificate),
            ),
            (
                global(RDKafkaErrorCode::SSL),
                "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 5ms in state SSL_HANDSHAKE)",
                Some(ConnectErrorKind::BrokerCertificate),
            ),
            (
                global(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:1/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see api.version.request) (after 1ms in state APIVERSION_QUERY)",
                Some(ConnectErrorKind::Protocol),
            ),
            (
                global(RDKafkaErrorCode::SSL),
                "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000126:SSL routines::unexpected eof while reading (after 4ms in state SSL_HANDSHAKE)",
                Some(ConnectErrorKind::Protocol),
            ),
            (
                global(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
                None,
            ),
            (
                global(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down",
                None,
            ),
        ];
        for (error, reason, expected) in cases {
            let got = ConnectError::classify(&error, reason, false).map(|e| e.kind());
            assert_eq!(got, expected, "{reason}");
        }
    }

    #[test]
    fn a_protocol_mismatch_after_the_cluster_was_reached_is_a_passing_trouble() {
        let reason = "127.0.0.1:1/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)";
        let error = global(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(ConnectError::classify(&error, reason, true).is_none());
        let watch = ConnectWatch::new();
        watch.reached();
        for _ in 0..PROTOCOL_EVIDENCE {
            assert!(watch.report(&error, reason).is_none());
        }
        assert!(watch.failure().is_none());
    }

    #[test]
    fn folded_repeats_count_as_evidence() {
        assert_eq!(
            suppressed("x (after 2ms in state APIVERSION_QUERY, 1 identical error(s) suppressed)"),
            1
        );
        assert_eq!(
            suppressed("x (after 2ms in state UP, 12 identical error(s) suppressed)"),
            12
        );
        assert_eq!(suppressed("x (after 2ms in state UP)"), 0);
        let watch = ConnectWatch::new();
        let first = "127.0.0.1:1/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 26ms in state APIVERSION_QUERY)";
        let folded = "127.0.0.1:1/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 2ms in state APIVERSION_QUERY, 1 identical error(s) suppressed)";
        assert!(watch.report_log("FAIL", first).is_none());
        assert!(watch.report_log("FAIL", folded).is_some());
    }

    #[test]
    fn a_protocol_mismatch_needs_repeated_evidence() {
        // librdkafka 2.12's words for plaintext spoken to a TLS listener.
        let reason = "127.0.0.1:1/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 26ms in state APIVERSION_QUERY)";
        let watch = ConnectWatch::new();
        for _ in 1..PROTOCOL_EVIDENCE {
            assert!(watch.report_log("FAIL", reason).is_none());
        }
        assert!(
            watch.report_log("CONNECT", reason).is_none(),
            "only FAIL lines count"
        );
        let failure = watch
            .report_log("FAIL", reason)
            .expect("the last piece of evidence");
        assert_eq!(failure.kind(), ConnectErrorKind::Protocol);
        assert_eq!(Kinded::kind(&failure), ErrorKind::Config);
    }

    #[test]
    fn the_first_failure_is_kept_and_signalled_once() {
        let watch = ConnectWatch::new();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        watch.on_failure(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let auth = global(RDKafkaErrorCode::Authentication);
        assert!(watch.report(&auth, "first").is_some());
        assert!(watch.report(&auth, "second").is_none());
        assert_eq!(watch.failure().unwrap().reason(), "first");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(watch.signal.is_cancelled());
        assert_eq!(
            Kinded::kind(watch.failure().unwrap()),
            ErrorKind::Unauthorized
        );
    }

    #[test]
    fn watch_and_error_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ConnectWatch>();
        assert_send_sync::<ConnectError>();
    }
}
