use std::fmt;

use crate::error::{ErrorKind, Kinded};

/// Why a record's token was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtErrorKind {
    /// No `authorization: Bearer <token>` header (light-4j `ERR10002`).
    Missing,
    /// Malformed, badly signed, wrong algorithm, issuer or audience, not yet
    /// valid, or not UTF-8 (light-4j `ERR10000`).
    Invalid,
    /// Expired beyond the clock skew and grace period (light-4j `ERR10001`).
    Expired,
    /// Valid, but without a scope the topic requires (light-4j `ERR10005`).
    ScopeMismatch,
    /// Signed with a key id the key set does not hold (light-4j `ERR10000`).
    UnknownKey,
    /// The JWKS endpoint could not be reached, timed out or answered with an
    /// error, so the token could not be checked: kind
    /// [`ErrorKind::Transient`] (an outage, not a bad token; light-4j has no
    /// code of its own for it, `ERR10000` is used).
    KeysUnavailable,
}

impl JwtErrorKind {
    /// light-4j's error code for this rejection.
    pub const fn code(self) -> &'static str {
        match self {
            JwtErrorKind::Missing => "ERR10002",
            JwtErrorKind::Invalid | JwtErrorKind::UnknownKey | JwtErrorKind::KeysUnavailable => {
                "ERR10000"
            }
            JwtErrorKind::Expired => "ERR10001",
            JwtErrorKind::ScopeMismatch => "ERR10005",
        }
    }
}

/// A rejected token: kind [`ErrorKind::Unauthorized`], or
/// [`ErrorKind::Forbidden`] for a scope mismatch, or [`ErrorKind::Transient`]
/// when the keys to check it could not be fetched.
///
/// Neither `Display` nor `Debug` ever includes the token.
///
/// ```
/// use light_kafka::layers::jwt::{JwtError, JwtErrorKind};
///
/// let err = JwtError::new(JwtErrorKind::Expired, "expired 2 hours ago");
/// assert_eq!(err.code(), "ERR10001");
/// assert_eq!(err.to_string(), "ERR10001 token expired: expired 2 hours ago");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtError {
    kind: JwtErrorKind,
    detail: String,
}

impl JwtError {
    /// A rejection of `kind`; `detail` must not contain the token.
    pub fn new(kind: JwtErrorKind, detail: impl Into<String>) -> Self {
        JwtError {
            kind,
            detail: detail.into(),
        }
    }

    /// Why the token was rejected.
    pub fn kind(&self) -> JwtErrorKind {
        self.kind
    }

    /// light-4j's error code.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// What exactly was wrong (never the token).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JwtErrorKind::Missing => "missing token",
            JwtErrorKind::Invalid => "invalid token",
            JwtErrorKind::Expired => "token expired",
            JwtErrorKind::ScopeMismatch => "token scope mismatch",
            JwtErrorKind::UnknownKey => "unknown signing key",
            JwtErrorKind::KeysUnavailable => "verification keys unavailable",
        };
        write!(f, "{} {what}: {}", self.code(), self.detail)
    }
}

impl std::error::Error for JwtError {}

impl Kinded for JwtError {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            JwtErrorKind::ScopeMismatch => ErrorKind::Forbidden,
            JwtErrorKind::KeysUnavailable => ErrorKind::Transient,
            _ => ErrorKind::Unauthorized,
        }
    }
}

/// A key or key set that could not be loaded: kind [`ErrorKind::Config`].
#[derive(Debug)]
pub struct KeyError {
    message: String,
}

impl KeyError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyError {}

impl Kinded for KeyError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}
