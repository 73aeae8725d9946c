use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

use super::error::{JwtError, JwtErrorKind, KeyError};
use crate::layers::http_client::Timeouts;

/// Verification keys, each with an optional key id (`kid`).
///
/// A token's `kid` selects its key. A token without a `kid` uses the key that
/// has none, or the only key when there is just one.
///
/// ```
/// use light_kafka::layers::jwt::KeySet;
///
/// let keys = KeySet::new()
///     .rsa_pem(Some("2024-01"), include_bytes!("../../../tests/fixtures/jwt/key-a.pub.pem"))?
///     .hmac_secret(Some("internal"), b"a shared secret");
/// assert_eq!(keys.len(), 2);
///
/// let from_jwks = KeySet::from_jwk_set(include_str!("../../../tests/fixtures/jwt/jwks-ab.json"))?;
/// assert_eq!(from_jwks.len(), 2);
/// # Ok::<(), light_kafka::layers::jwt::KeyError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<(Option<String>, Arc<DecodingKey>)>,
}

impl KeySet {
    /// No keys.
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Adds a verification key.
    pub fn key(mut self, kid: Option<&str>, key: DecodingKey) -> Self {
        self.keys.push((kid.map(str::to_owned), Arc::new(key)));
        self
    }

    /// Adds an RSA public key in PEM form.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when `pem` is not an RSA public key.
    pub fn rsa_pem(self, kid: Option<&str>, pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|e| KeyError::new(format!("not an RSA public key in PEM form: {e}")))?;
        Ok(self.key(kid, key))
    }

    /// Adds an HMAC secret (for HS256/384/512 tokens).
    pub fn hmac_secret(self, kid: Option<&str>, secret: &[u8]) -> Self {
        self.key(kid, DecodingKey::from_secret(secret))
    }

    /// The keys of a JWK set document (`{"keys": [...]}`).
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when the document is not a JWK set or holds an unusable key.
    pub fn from_jwk_set(json: &str) -> Result<Self, KeyError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| KeyError::new(format!("not a JWK set: {e}")))?;
        let mut keys = KeySet::new();
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| KeyError::new(format!("unusable JWK: {e}")))?;
            keys = keys.key(jwk.common.key_id.as_deref(), key);
        }
        Ok(keys)
    }

    /// The keys of a JWK set file.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] when the file cannot be read or is not a JWK set.
    pub fn from_jwk_set_file(path: impl AsRef<std::path::Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path)
            .map_err(|e| KeyError::new(format!("cannot read {}: {e}", path.display())))?;
        KeySet::from_jwk_set(&json)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn find(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        match kid {
            Some(kid) => self.keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => self.keys.iter().find(|(k, _)| k.is_none()),
        }
        .map(|(_, key)| key.clone())
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "kids",
                &self
                    .keys
                    .iter()
                    .map(|(k, _)| k.as_deref())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Keys fetched from a JWKS URL, cached by key id, fetched again when a token
/// names a key id the cache lacks (at most once per refresh interval).
pub(crate) struct RemoteKeys {
    url: String,
    client: Result<reqwest::Client, String>,
    keys: RwLock<KeySet>,
    last_fetch: Mutex<Option<Instant>>,
    /// Why the last fetch failed, until one succeeds.
    last_failure: Mutex<Option<String>>,
    min_interval: Duration,
    fetching: tokio::sync::Mutex<()>,
}

impl RemoteKeys {
    pub(crate) fn new(url: String, min_interval: Duration, timeouts: Timeouts) -> Self {
        RemoteKeys {
            url,
            client: timeouts.client(),
            keys: RwLock::new(KeySet::new()),
            last_fetch: Mutex::new(None),
            last_failure: Mutex::new(None),
            min_interval,
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn find(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .find(kid)
    }

    /// Whether a fetch is allowed now (the last one is older than the interval).
    pub(crate) fn may_fetch(&self) -> bool {
        self.last_fetch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= self.min_interval)
    }

    /// Why the last fetch failed, if it did (and none succeeded since).
    pub(crate) fn unavailable(&self) -> Option<JwtError> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|why| JwtError::new(JwtErrorKind::KeysUnavailable, why.clone()))
    }

    /// Fetches the key set again unless the interval forbids it.
    pub(crate) async fn refresh(&self) -> Result<(), JwtError> {
        let _one_at_a_time = self.fetching.lock().await;
        if !self.may_fetch() {
            return self.unavailable().map_or(Ok(()), Err);
        }
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let outcome = self.fetch().await;
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
            outcome.as_ref().err().map(|e| e.detail().to_owned());
        if let Err(error) = &outcome {
            tracing::warn!(url = %self.url, %error, "JWKS fetch failed");
        }
        outcome
    }

    async fn fetch(&self) -> Result<(), JwtError> {
        let unavailable = |what: String| {
            JwtError::new(
                JwtErrorKind::KeysUnavailable,
                format!("cannot fetch the JWKS: {what}"),
            )
        };
        let client = self.client.as_ref().map_err(|e| unavailable(e.clone()))?;
        let response = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let body = response
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let keys = KeySet::from_jwk_set(&body).map_err(|e| unavailable(e.to_string()))?;
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS refreshed");
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(())
    }
}

impl fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_selection() {
        let keys = KeySet::new()
            .hmac_secret(Some("a"), b"1")
            .hmac_secret(None, b"2");
        assert!(keys.find(Some("a")).is_some());
        assert!(keys.find(Some("b")).is_none());
        assert!(keys.find(None).is_some(), "the key without a kid");
        let single = KeySet::new().hmac_secret(Some("only"), b"1");
        assert!(single.find(None).is_some(), "the only key");
    }

    #[test]
    fn bad_material_is_a_config_error() {
        assert!(KeySet::new().rsa_pem(None, b"not a pem").is_err());
        assert!(KeySet::from_jwk_set("{}").is_err());
        assert!(KeySet::from_jwk_set_file("/nonexistent/jwks.json").is_err());
    }
}
