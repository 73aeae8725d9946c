//! Per-record JWT verification: who sent this record, and may they?
//!
//! [`JwtVerifyLayer`] reads `authorization: Bearer <token>` from each record
//! and verifies the token before the inner service sees the record:
//!
//! - **Keys**: a static [`KeySet`] (PEM keys, HMAC secrets, a JWK set file) or
//!   a JWKS URL, whose keys are cached by `kid` and fetched again when a token
//!   names an unknown `kid` (at most once per refresh interval).
//! - **Algorithms**: an allowlist (default RS256). `none` is never accepted,
//!   and a key only verifies algorithms of its own family, so an HS256 token
//!   "signed" with an RSA public key is rejected.
//! - **Claims**: issuer and audience when configured; `nbf` and `exp` with a
//!   clock skew, plus a grace period on `exp` (light-kafka: "give the JWT token
//!   more grace period or even avoid validation on the expiration"), or no
//!   expiry check at all.
//! - **Scopes** per topic: a record of a topic with required scopes passes when
//!   its token holds at least one of them (light-4j's rule).
//! - **Cache**: verified tokens are cached (bounded, keyed by a hash of the
//!   token, until they expire), so a token reused across many records costs one
//!   lookup.
//!
//! A verified record carries its [`Claims`] in its extensions, and its
//! [`RecordContext`] holds the client id (`client_id` or `cid`), user id
//! (`user_id` or `uid`), issuer and `caller_id` header for outer layers.
//! A rejected record fails with a [`JwtError`] carrying light-4j's codes
//! (`ERR10002` missing, `ERR10000` invalid, `ERR10001` expired, `ERR10005`
//! scope). The token itself never appears in errors, logs or `Debug` output.
//!
//! ```
//! use jsonwebtoken::{Algorithm, EncodingKey, Header};
//! use light_kafka::context::RecordContext;
//! use light_kafka::layers::jwt::{Claims, JwtVerifyLayer, KeySet};
//! use light_kafka::record::Record;
//! use light_kafka::testkit;
//! use tower::{service_fn, ServiceBuilder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), light_kafka::BoxError> {
//! let keys = KeySet::new().rsa_pem(Some("k1"), include_bytes!("../../../tests/fixtures/jwt/key-a.pub.pem"))?;
//! let mut handler = ServiceBuilder::new()
//!     .layer(JwtVerifyLayer::builder(keys).issuer(["https://auth.example"]).scopes("payments", ["payment.w"]).build())
//!     .service(service_fn(|record: Record| async move {
//!         let claims = record.extensions().get::<Claims>().unwrap().clone();
//!         let client = RecordContext::get(&record).unwrap().fields().client_id;
//!         Ok::<_, light_kafka::BoxError>((claims.subject().map(str::to_owned), client))
//!     }));
//!
//! let mut header = Header::new(Algorithm::RS256);
//! header.kid = Some("k1".into());
//! let claims = serde_json::json!({
//!     "iss": "https://auth.example", "sub": "alice", "client_id": "portal",
//!     "scope": "payment.w", "exp": jsonwebtoken::get_current_timestamp() + 600,
//! });
//! let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(include_bytes!("../../../tests/fixtures/jwt/key-a.pem"))?)?;
//!
//! let record = Record::builder("payments").header("authorization", format!("Bearer {token}")).build();
//! let (subject, client) = testkit::call(&mut handler, record).await?;
//! assert_eq!((subject.as_deref(), client.as_deref()), (Some("alice"), Some("portal")));
//!
//! let unsigned = Record::builder("payments").build();
//! let err = testkit::call(&mut handler, unsigned).await.unwrap_err();
//! assert!(err.to_string().starts_with("ERR10002"));
//! # Ok(()) }
//! ```

mod cache;
mod claims;
mod error;
mod keys;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::layers::future::ResponseFuture;
pub use claims::Claims;
pub use error::{JwtError, JwtErrorKind, KeyError};
pub use keys::KeySet;

use self::cache::ClaimsCache;
use self::claims::Identity;
use self::keys::RemoteKeys;
use crate::context::RecordContext;
use crate::error::BoxError;
use crate::record::{Record, names};

/// Where verification keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A fixed set of keys.
    Static(KeySet),
    /// A JWKS endpoint, fetched when a token names an unknown key id, at most
    /// once per `refresh_interval`.
    Jwks {
        /// The JWKS URL.
        url: String,
        /// The least time between two fetches.
        refresh_interval: Duration,
    },
}

impl From<KeySet> for KeySource {
    fn from(keys: KeySet) -> Self {
        KeySource::Static(keys)
    }
}

/// Configures a [`JwtVerifyLayer`].
#[derive(Clone, Debug)]
pub struct JwtVerifyBuilder {
    keys: KeySource,
    algorithms: Vec<Algorithm>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    clock_skew: Duration,
    grace_period: Duration,
    check_expiry: bool,
    scopes: HashMap<String, Vec<String>>,
    cache_capacity: usize,
}

impl JwtVerifyBuilder {
    /// The accepted algorithms. Default: RS256.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Accept only tokens from these issuers (`iss`).
    pub fn issuer<I: IntoIterator<Item = T>, T: Into<String>>(mut self, issuers: I) -> Self {
        self.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Accept only tokens for one of these audiences (`aud`).
    pub fn audience<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Tolerance for clock differences on `exp` and `nbf`. Default: 60 s.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Extra time a token stays acceptable after `exp`. Default: none.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Do not check expiry at all (nor require an `exp` claim).
    pub fn skip_expiry_check(mut self) -> Self {
        self.check_expiry = false;
        self
    }

    /// Records of `topic` need a token holding at least one of `scopes`.
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        topic: impl Into<String>,
        scopes: I,
    ) -> Self {
        self.scopes
            .insert(topic.into(), scopes.into_iter().map(Into::into).collect());
        self
    }

    /// How many verified tokens to remember (0 disables the cache). Default: 10,000.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Finishes the layer.
    pub fn build(self) -> JwtVerifyLayer {
        let keys = match self.keys {
            KeySource::Static(keys) => Keys::Static(keys),
            KeySource::Jwks {
                url,
                refresh_interval,
            } => Keys::Remote(RemoteKeys::new(url, refresh_interval)),
        };
        let validations = self
            .algorithms
            .iter()
            .map(|&algorithm| {
                let mut v = Validation::new(algorithm);
                v.leeway = self.clock_skew.as_secs();
                // Expiry is checked here, with the grace period.
                v.validate_exp = false;
                v.validate_nbf = true;
                if self.check_expiry {
                    v.set_required_spec_claims(&["exp"]);
                } else {
                    v.required_spec_claims.clear();
                }
                if !self.issuers.is_empty() {
                    v.set_issuer(&self.issuers);
                }
                if self.audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&self.audiences);
                }
                (algorithm, v)
            })
            .collect();
        JwtVerifyLayer {
            verifier: Arc::new(Verifier {
                keys,
                validations,
                expiry_tolerance: (self.clock_skew + self.grace_period).as_secs(),
                check_expiry: self.check_expiry,
                scopes: self.scopes,
                cache: ClaimsCache::new(self.cache_capacity),
            }),
        }
    }
}

enum Keys {
    Static(KeySet),
    Remote(RemoteKeys),
}

struct Verifier {
    keys: Keys,
    validations: HashMap<Algorithm, Validation>,
    expiry_tolerance: u64,
    check_expiry: bool,
    scopes: HashMap<String, Vec<String>>,
    cache: ClaimsCache,
}

enum Check {
    Verified(Arc<Identity>),
    Rejected(JwtError),
    /// The token names a key id we may learn by fetching the JWKS again.
    NeedsKeys,
}

fn invalid(detail: &str) -> JwtError {
    JwtError::new(JwtErrorKind::Invalid, detail)
}

impl Verifier {
    /// Extracts the bearer token of a record.
    fn token(record: &Record) -> Result<&str, JwtError> {
        let value = record
            .header(names::AUTHORIZATION)
            .ok_or_else(|| JwtError::new(JwtErrorKind::Missing, "no authorization header"))?;
        let value = std::str::from_utf8(value)
            .map_err(|_| invalid("the authorization header is not UTF-8"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(invalid("the authorization header is not a bearer token")),
        };
        if token.is_empty() {
            return Err(JwtError::new(JwtErrorKind::Missing, "empty bearer token"));
        }
        Ok(token)
    }

    fn check(&self, token: &str, may_fetch: bool) -> Check {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(identity) = self.cache.get(token.as_bytes(), now) {
            return Check::Verified(identity);
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => return Check::Rejected(invalid("malformed token")),
        };
        let Some(validation) = self.validations.get(&header.alg) else {
            return Check::Rejected(invalid(&format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        };
        let key = match &self.keys {
            Keys::Static(keys) => keys.find(header.kid.as_deref()),
            Keys::Remote(remote) => remote.find(header.kid.as_deref()),
        };
        let Some(key) = key else {
            if may_fetch && matches!(&self.keys, Keys::Remote(remote) if remote.may_fetch()) {
                return Check::NeedsKeys;
            }
            let detail = match header.kid {
                Some(kid) => format!("no key with id {kid:?}"),
                None => "the token names no key id and there is no default key".to_owned(),
            };
            return Check::Rejected(JwtError::new(JwtErrorKind::UnknownKey, detail));
        };
        match self.verify(token, &key, validation, now) {
            Ok((identity, valid_until)) => {
                let identity = Arc::new(identity);
                self.cache
                    .insert(token.as_bytes(), identity.clone(), valid_until);
                Check::Verified(identity)
            }
            Err(error) => Check::Rejected(error),
        }
    }

    fn verify(
        &self,
        token: &str,
        key: &DecodingKey,
        validation: &Validation,
        now: u64,
    ) -> Result<(Identity, Option<u64>), JwtError> {
        use jsonwebtoken::errors::ErrorKind as E;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            invalid(match e.kind() {
                E::InvalidSignature => "bad signature",
                E::InvalidAlgorithm | E::MissingAlgorithm => "algorithm does not match the key",
                E::InvalidIssuer => "issuer not accepted",
                E::InvalidAudience => "audience not accepted",
                E::ImmatureSignature => "not valid yet",
                E::MissingRequiredClaim(_) => "a required claim is missing",
                E::InvalidClaimFormat(_) => "a claim has the wrong format",
                _ => "malformed token",
            })
        })?;
        let claims = data.claims;
        let valid_until = if self.check_expiry {
            let exp = claims
                .expires_at()
                .ok_or_else(|| invalid("exp is not a number"))?;
            let until = exp.saturating_add(self.expiry_tolerance);
            if now > until {
                return Err(JwtError::new(
                    JwtErrorKind::Expired,
                    format!(
                        "expired {} s ago (tolerance {} s)",
                        now - exp,
                        self.expiry_tolerance
                    ),
                ));
            }
            Some(until)
        } else {
            None
        };
        Ok((Identity::new(claims), valid_until))
    }

    fn authorize(&self, topic: &str, identity: &Identity) -> Result<(), JwtError> {
        match self.scopes.get(topic) {
            Some(required)
                if !required
                    .iter()
                    .any(|r| identity.scopes.iter().any(|s| **s == **r)) =>
            {
                Err(JwtError::new(
                    JwtErrorKind::ScopeMismatch,
                    format!("topic {topic} needs one of {required:?}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Verifies without fetching keys: the fast path.
    fn admit(&self, record: &mut Record, may_fetch: bool) -> Result<bool, JwtError> {
        let token = Verifier::token(record)?;
        let identity = match self.check(token, may_fetch) {
            Check::Verified(identity) => identity,
            Check::Rejected(error) => return Err(error),
            Check::NeedsKeys => return Ok(false),
        };
        self.authorize(record.topic(), &identity)?;
        let caller = record
            .header(names::CALLER_ID)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(Arc::from);
        RecordContext::of(record).update(|f| {
            f.client_id = identity.client_id.clone();
            f.user_id = identity.user_id.clone();
            f.issuer = identity.issuer.clone();
            if caller.is_some() {
                f.caller_id = caller;
            }
        });
        record.extensions_mut().insert(identity.claims.clone());
        Ok(true)
    }
}

/// Layer that applies [`JwtVerify`]. See the [module documentation](self).
#[derive(Clone)]
pub struct JwtVerifyLayer {
    verifier: Arc<Verifier>,
}

impl JwtVerifyLayer {
    /// Verifies with `keys` and the defaults (RS256, 60 s clock skew, no grace).
    pub fn from_keys(keys: KeySet) -> Self {
        JwtVerifyLayer::builder(keys).build()
    }

    /// Verifies with keys from a JWKS URL (refetched at most every 60 s) and
    /// the defaults.
    pub fn from_jwks(url: impl Into<String>) -> Self {
        JwtVerifyLayer::builder(KeySource::Jwks {
            url: url.into(),
            refresh_interval: Duration::from_secs(60),
        })
        .build()
    }

    /// Starts configuring a layer.
    pub fn builder(keys: impl Into<KeySource>) -> JwtVerifyBuilder {
        JwtVerifyBuilder {
            keys: keys.into(),
            algorithms: vec![Algorithm::RS256],
            issuers: Vec::new(),
            audiences: Vec::new(),
            clock_skew: Duration::from_secs(60),
            grace_period: Duration::ZERO,
            check_expiry: true,
            scopes: HashMap::new(),
            cache_capacity: 10_000,
        }
    }
}

impl fmt::Debug for JwtVerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifyLayer")
            .field(
                "algorithms",
                &self.verifier.validations.keys().collect::<Vec<_>>(),
            )
            .field(
                "scoped_topics",
                &self.verifier.scopes.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for JwtVerifyLayer {
    type Service = JwtVerify<S>;

    fn layer(&self, inner: S) -> JwtVerify<S> {
        JwtVerify {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// Verifies each record's token before the inner service sees the record.
#[derive(Clone)]
pub struct JwtVerify<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S> JwtVerify<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for JwtVerify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Record> for JwtVerify<S>
where
    S: Service<Record> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        match self.verifier.admit(&mut record, true) {
            Ok(true) => ResponseFuture::inner(self.inner.call(record)),
            Err(error) => ResponseFuture::rejected(error),
            Ok(false) => {
                // The slow path: fetch the JWKS again, then verify. The ready
                // service goes with the future; a clone stays here.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let verifier = self.verifier.clone();
                ResponseFuture::deferred(Box::pin(async move {
                    if let Keys::Remote(remote) = &verifier.keys {
                        remote.refresh().await?;
                    }
                    verifier.admit(&mut record, false)?;
                    inner.oneshot(record).await.map_err(Into::into)
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn types_are_send_and_sync() {
        assert_send_sync::<JwtVerifyLayer>();
        assert_send_sync::<JwtVerify<crate::testkit::Accept>>();
        assert_send::<ResponseFuture<std::future::Ready<Result<(), BoxError>>, ()>>();
        assert_send_sync::<JwtError>();
    }

    #[test]
    fn bearer_parsing() {
        let with = |v: &[u8]| {
            Record::builder("t")
                .header(names::AUTHORIZATION, v.to_vec())
                .build()
        };
        assert_eq!(Verifier::token(&with(b"Bearer abc")).unwrap(), "abc");
        assert_eq!(Verifier::token(&with(b"bearer   abc ")).unwrap(), "abc");
        assert_eq!(
            Verifier::token(&with(b"Basic abc")).unwrap_err().kind(),
            JwtErrorKind::Invalid
        );
        assert_eq!(
            Verifier::token(&with(b"Bearer ")).unwrap_err().kind(),
            JwtErrorKind::Missing
        );
        assert_eq!(
            Verifier::token(&with(&[0xff, 0xfe])).unwrap_err().kind(),
            JwtErrorKind::Invalid
        );
        assert_eq!(
            Verifier::token(&Record::new("t")).unwrap_err().kind(),
            JwtErrorKind::Missing
        );
    }
}
