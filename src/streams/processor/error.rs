//! Why a processor stopped.

#[allow(unused_imports)]
use super::*;

/// Why a processor stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessorErrorKind {
    /// A newer instance with the same `transactional.id` took over: this one
    /// is a zombie and must not write.
    Fenced,
    /// The transactional producer failed fatally or cannot abort.
    Fatal,
    /// A state store could not be opened, restored or written.
    Store,
    /// The processor's consumer cannot reach the cluster with its
    /// configuration (a wrong password, an untrusted certificate, the wrong
    /// `security.protocol`); the source is the
    /// [`ConnectError`](crate::service::connect::ConnectError).
    Connect,
}

/// Why [`StreamProcessor::run`] returned an error.
#[derive(Debug)]
pub struct ProcessorError {
    pub(super) kind: ProcessorErrorKind,
    pub(super) source: BoxError,
}

impl ProcessorError {
    /// What went wrong.
    pub fn kind(&self) -> ProcessorErrorKind {
        self.kind
    }
}

impl fmt::Display for ProcessorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProcessorErrorKind::Fenced => write!(
                f,
                "the processor was fenced by a newer instance and stopped: {}",
                self.source
            ),
            ProcessorErrorKind::Fatal => write!(
                f,
                "the processor's producer failed for good: {}",
                self.source
            ),
            ProcessorErrorKind::Store => write!(f, "a state store failed: {}", self.source),
            ProcessorErrorKind::Connect => write!(f, "cannot connect to Kafka: {}", self.source),
        }
    }
}

impl std::error::Error for ProcessorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl Kinded for ProcessorError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}
