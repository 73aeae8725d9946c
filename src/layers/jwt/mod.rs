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
//! - **Claims**: when issuers (audiences) are configured, a token must carry
//!   an `iss` (`aud`) that is one of them: a token without one, or with
//!   `null`, is rejected, which is what stops a token minted for another
//!   service from being replayed here. `exp`, `nbf` and `iat` are NumericDates
//!   (integers or not, as RFC 7519 allows). A token is accepted from
//!   `nbf - clock_skew` until `exp + clock_skew + grace_period` (the skew and
//!   the grace period add up; light-kafka: "give the JWT token more grace
//!   period or even avoid validation on the expiration"), or without any
//!   expiry check.
//! - **One identity per record**: a record with more than one `authorization`
//!   header is rejected as ambiguous.
//! - **Scopes** per topic: a record of a topic with required scopes passes when
//!   its token holds at least one of them (light-4j's rule); optionally,
//!   records of topics without a rule are rejected.
//! - **Key server outages**: a JWKS endpoint that cannot be reached, times out
//!   (connect and total timeouts, [`JwtVerifyBuilder::jwks_timeouts`]) or
//!   answers with an error fails the record with kind `Transient`
//!   ([`JwtErrorKind::KeysUnavailable`]), not `Unauthorized`: the record is
//!   tried again later, never dead-lettered for an outage.
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

use jsonwebtoken::Validation;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::layers::future::ResponseFuture;
pub use claims::Claims;
pub use error::{JwtError, JwtErrorKind, KeyError};
/// Re-exported from `jsonwebtoken`, so that callers never pin a second copy.
pub use jsonwebtoken::{Algorithm, DecodingKey};
pub use keys::KeySet;

use self::cache::ClaimsCache;
use self::claims::Identity;
use self::keys::RemoteKeys;
use crate::context::RecordContext;
use crate::error::BoxError;
use crate::layers::http_client::Timeouts;
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
    reject_unscoped: bool,
    cache_capacity: usize,
    jwks_timeouts: Timeouts,
}

/// Most bytes of an untrusted value (a key id) echoed in an error.
const ECHO_LIMIT: usize = 64;

/// `value` for an error message: debug-quoted and cut to a bounded length.
fn echo(value: &str) -> String {
    let shown = crate::text::prefix(value, ECHO_LIMIT);
    if shown.len() == value.len() {
        format!("{value:?}")
    } else {
        format!("{shown:?}… ({} bytes)", value.len())
    }
}

impl JwtVerifyBuilder {
    /// The accepted algorithms. Default: RS256.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Accept only tokens from these issuers: `iss` must be present and one
    /// of them.
    pub fn issuer<I: IntoIterator<Item = T>, T: Into<String>>(mut self, issuers: I) -> Self {
        self.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Accept only tokens for one of these audiences: `aud` (a string or an
    /// array of strings) must be present and name one of them.
    pub fn audience<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Tolerance for clock differences on `exp` and `nbf`. Default: 60 s.
    ///
    /// A token is accepted from `nbf - skew`, and until
    /// `exp + skew + grace_period`: with both set, the tolerance after `exp`
    /// is their sum (60 s of skew and a 10 min grace period accept a token
    /// until 11 min after its `exp`). The expiry error says which tolerance
    /// applied.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Extra time a token stays acceptable after `exp`, on top of the clock
    /// skew (see [`JwtVerifyBuilder::clock_skew`]). Default: none.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Connect and total timeouts of the JWKS fetch. Default: 2 s and 5 s.
    /// A fetch that times out fails the record with kind `Transient`.
    pub fn jwks_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.jwks_timeouts = timeouts;
        self
    }

    /// Do not check expiry at all (nor require an `exp` claim).
    pub fn skip_expiry_check(mut self) -> Self {
        self.check_expiry = false;
        self
    }

    /// Records of `topic` need a token holding at least one of `scopes`.
    /// Called again for the same topic, the scopes add up (any of them passes).
    ///
    /// ```
    /// use light_kafka::layers::jwt::{JwtVerifyLayer, KeySet};
    ///
    /// let layer = JwtVerifyLayer::builder(KeySet::new())
    ///     .scopes("orders", ["order.w"])
    ///     .scopes("orders", ["order.admin"]) // order.w or order.admin
    ///     .reject_unscoped_topics()
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        topic: impl Into<String>,
        scopes: I,
    ) -> Self {
        let rule = self.scopes.entry(topic.into()).or_default();
        for scope in scopes {
            let scope = scope.into();
            if !rule.contains(&scope) {
                rule.push(scope);
            }
        }
        self
    }

    /// Rejects (as a scope mismatch, `ERR10005`) records of topics that have
    /// no [`scopes`](JwtVerifyBuilder::scopes) rule, instead of admitting any
    /// verified token: nothing passes by omission.
    pub fn reject_unscoped_topics(mut self) -> Self {
        self.reject_unscoped = true;
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
            } => Keys::Remote(RemoteKeys::new(url, refresh_interval, self.jwks_timeouts)),
        };
        // jsonwebtoken checks the signature and the algorithm; every claim
        // is checked in `Verifier::verify`, the same way for every algorithm.
        let validations = self
            .algorithms
            .iter()
            .map(|&algorithm| {
                let mut v = Validation::new(algorithm);
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                v.required_spec_claims.clear();
                (algorithm, v)
            })
            .collect();
        JwtVerifyLayer {
            verifier: Arc::new(Verifier {
                keys,
                validations,
                issuers: self.issuers,
                audiences: self.audiences,
                clock_skew: self.clock_skew.as_secs_f64(),
                grace_period: self.grace_period.as_secs_f64(),
                check_expiry: self.check_expiry,
                scopes: self.scopes,
                reject_unscoped: self.reject_unscoped,
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
    issuers: Vec<String>,
    audiences: Vec<String>,
    clock_skew: f64,
    grace_period: f64,
    check_expiry: bool,
    scopes: HashMap<String, Vec<String>>,
    reject_unscoped: bool,
    cache: ClaimsCache,
}

/// A NumericDate claim (RFC 7519: seconds since the epoch, integer or not):
/// `Ok(None)` when absent, an error when present but not a number.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(&format!("{name} is not a NumericDate"))),
    }
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
        if record
            .headers()
            .get_all(names::AUTHORIZATION)
            .nth(1)
            .is_some()
        {
            return Err(invalid(
                "more than one authorization header (ambiguous identity)",
            ));
        }
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
            if let Keys::Remote(remote) = &self.keys {
                if may_fetch && remote.may_fetch() {
                    return Check::NeedsKeys;
                }
                if let Some(outage) = remote.unavailable() {
                    return Check::Rejected(outage);
                }
            }
            let detail = match header.kid {
                Some(kid) => format!("no key with id {}", echo(&kid)),
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
                _ => "malformed token",
            })
        })?;
        let claims = data.claims;
        let now = now as f64;
        let exp = numeric_date(&claims, "exp")?;
        let nbf = numeric_date(&claims, "nbf")?;
        numeric_date(&claims, "iat")?;
        if let Some(nbf) = nbf
            && now + self.clock_skew < nbf
        {
            return Err(invalid("not valid yet"));
        }
        if !self.issuers.is_empty() {
            let accepted = claims
                .get("iss")
                .and_then(|v| v.as_str())
                .is_some_and(|iss| self.issuers.iter().any(|i| i == iss));
            if !accepted {
                return Err(invalid(if claims.issuer().is_none() {
                    "no issuer (iss), and issuers are required"
                } else {
                    "issuer not accepted"
                }));
            }
        }
        if !self.audiences.is_empty() {
            let accepts = |aud: &str| self.audiences.iter().any(|a| a == aud);
            let accepted = match claims.get("aud") {
                Some(serde_json::Value::String(aud)) => accepts(aud),
                Some(serde_json::Value::Array(auds)) => {
                    auds.iter().filter_map(|a| a.as_str()).any(accepts)
                }
                _ => false,
            };
            if !accepted {
                return Err(invalid(match claims.get("aud") {
                    None | Some(serde_json::Value::Null) => {
                        "no audience (aud), and audiences are required"
                    }
                    _ => "audience not accepted",
                }));
            }
        }
        let valid_until = if self.check_expiry {
            let exp = exp.ok_or_else(|| invalid("a required claim is missing: exp"))?;
            let until = exp + self.clock_skew + self.grace_period;
            if now > until {
                return Err(JwtError::new(
                    JwtErrorKind::Expired,
                    format!(
                        "expired {:.0} s ago (accepted until exp + {} s clock skew + {} s grace period)",
                        now - exp,
                        self.clock_skew,
                        self.grace_period
                    ),
                ));
            }
            Some(until.floor().max(0.0) as u64)
        } else {
            None
        };
        Ok((Identity::new(claims), valid_until))
    }

    fn authorize(&self, topic: &str, identity: &Identity) -> Result<(), JwtError> {
        if self.reject_unscoped && !self.scopes.contains_key(topic) {
            return Err(JwtError::new(
                JwtErrorKind::ScopeMismatch,
                format!("topic {topic} has no scope rule, and unscoped topics are rejected"),
            ));
        }
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
            reject_unscoped: false,
            cache_capacity: 10_000,
            jwks_timeouts: Timeouts::default(),
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
