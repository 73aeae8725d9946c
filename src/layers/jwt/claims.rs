use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The verified claims of a record's token, in the record's extensions.
///
/// Cheap to clone. Common claims have accessors; any claim is reachable
/// through [`Claims::get`].
#[derive(Clone, PartialEq)]
pub struct Claims {
    inner: Arc<Map<String, Value>>,
}

impl Claims {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Claims {
            inner: Arc::new(map),
        }
    }

    /// Any claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.inner.get(name)
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.inner.get(name).and_then(Value::as_str)
    }

    /// `iss`.
    pub fn issuer(&self) -> Option<&str> {
        self.str("iss")
    }

    /// `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.str("sub")
    }

    /// `exp`, whole seconds since the epoch (a fractional NumericDate is
    /// rounded down).
    pub fn expires_at(&self) -> Option<u64> {
        let exp = self.inner.get("exp")?;
        exp.as_u64()
            .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    }

    /// `client_id`, or Okta-style `cid`.
    pub fn client_id(&self) -> Option<&str> {
        self.str("client_id").or_else(|| self.str("cid"))
    }

    /// `user_id`, or Okta-style `uid`.
    pub fn user_id(&self) -> Option<&str> {
        self.str("user_id").or_else(|| self.str("uid"))
    }

    /// The scopes: `scope` (a space-separated string or an array, as
    /// light-oauth2 issues it) or `scp`.
    pub fn scopes(&self) -> Vec<&str> {
        let mut scopes = Vec::new();
        for name in ["scope", "scp"] {
            match self.inner.get(name) {
                Some(Value::String(s)) => scopes.extend(s.split_whitespace()),
                Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        scopes
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.inner
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.inner.iter()).finish()
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Claims::new)
    }
}

/// What verification keeps for a token: its claims and what the per-record
/// context needs, ready to share.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) claims: Claims,
    pub(crate) client_id: Option<Arc<str>>,
    pub(crate) user_id: Option<Arc<str>>,
    pub(crate) issuer: Option<Arc<str>>,
    pub(crate) scopes: Vec<Box<str>>,
}

impl Identity {
    pub(crate) fn new(claims: Claims) -> Self {
        Identity {
            client_id: claims.client_id().map(Arc::from),
            user_id: claims.user_id().map(Arc::from),
            issuer: claims.issuer().map(Arc::from),
            scopes: claims.scopes().into_iter().map(Box::from).collect(),
            claims,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_as_strings_or_arrays() {
        let claims: Claims =
            serde_json::from_str(r#"{"scope":"a.r a.w","scp":["b.r"],"cid":"c","uid":"u"}"#)
                .unwrap();
        assert_eq!(claims.scopes(), ["a.r", "a.w", "b.r"]);
        assert_eq!(
            (claims.client_id(), claims.user_id()),
            (Some("c"), Some("u"))
        );
        let identity = Identity::new(claims);
        assert_eq!(identity.scopes.len(), 3);
    }
}
