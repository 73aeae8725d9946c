//! Verified tokens, so that a token reused across many records is verified once.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use super::claims::Identity;

struct Entry {
    token: Box<[u8]>,
    identity: Arc<Identity>,
    /// Seconds since the epoch after which the entry is stale; `None` when
    /// expiry is not checked.
    valid_until: Option<u64>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    order: VecDeque<u64>,
}

/// A bounded map from token to verified identity, keyed by a randomly seeded
/// hash of the token. A hit is confirmed by comparing the whole token, so a
/// hash collision is a miss, never a wrong identity. The oldest entry makes
/// room for a new one; an entry past its token's expiry (plus grace) is a miss.
pub(crate) struct ClaimsCache {
    inner: Mutex<Inner>,
    hasher: foldhash::quality::RandomState,
    capacity: usize,
}

impl ClaimsCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ClaimsCache {
            inner: Mutex::new(Inner::default()),
            hasher: foldhash::quality::RandomState::default(),
            capacity,
        }
    }

    fn key(&self, token: &[u8]) -> u64 {
        self.hasher.hash_one(token)
    }

    pub(crate) fn get(&self, token: &[u8], now: u64) -> Option<Arc<Identity>> {
        if self.capacity == 0 {
            return None;
        }
        let key = self.key(token);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = inner.entries.get(&key)?;
        if &*entry.token != token {
            return None;
        }
        if entry.valid_until.is_some_and(|until| now > until) {
            inner.entries.remove(&key);
            return None;
        }
        Some(entry.identity.clone())
    }

    pub(crate) fn insert(&self, token: &[u8], identity: Arc<Identity>, valid_until: Option<u64>) {
        if self.capacity == 0 {
            return;
        }
        let key = self.key(token);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while inner.entries.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.entries.remove(&old);
                }
                None => break,
            }
        }
        let entry = Entry {
            token: token.into(),
            identity,
            valid_until,
        };
        if inner.entries.insert(key, entry).is_none() {
            inner.order.push_back(key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::jwt::claims::Claims;

    fn identity() -> Arc<Identity> {
        Arc::new(Identity::new(Claims::new(serde_json::Map::new())))
    }

    #[test]
    fn bounded_and_expiring() {
        let cache = ClaimsCache::new(2);
        cache.insert(b"a", identity(), Some(100));
        cache.insert(b"b", identity(), None);
        cache.insert(b"c", identity(), None);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(b"a", 50).is_none(), "evicted as the oldest");
        assert!(cache.get(b"b", 50).is_some());

        let cache = ClaimsCache::new(10);
        cache.insert(b"t", identity(), Some(100));
        assert!(cache.get(b"t", 100).is_some());
        assert!(cache.get(b"t", 101).is_none(), "past its validity");
        assert!(cache.get(b"other", 0).is_none());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = ClaimsCache::new(0);
        cache.insert(b"a", identity(), None);
        assert!(cache.get(b"a", 0).is_none());
    }
}
