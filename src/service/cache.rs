//! Short-lived caches of the request hot path: token → principal,
//! principal × org → permissions, slug path → environment ids. Entries live one second, so a change made
//! through another server sharing the database (a revoked token, a rotated
//! KEK) is seen within a second; sealing clears both. Token entries are keyed
//! by the token's SHA-256, never by the token.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use std::sync::Arc;

use uuid::Uuid;

use super::access::Access;
use super::auth::AuthEntry;
use crate::storage::EnvPath;

/// How long an entry may be served.
const TTL: Duration = Duration::from_secs(1);
/// Entries per map before it is flushed (bounds memory under token spraying).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub(crate) struct TtlMap<K, V> {
    map: RwLock<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    fn new() -> Self {
        TtlMap {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.get_by(key)
    }

    pub(crate) fn get_by<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        let map = self.map.read().ok()?;
        let (at, v) = map.get(key)?;
        (at.elapsed() < TTL).then(|| v.clone())
    }

    pub(crate) fn put(&self, key: K, value: V) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, (Instant::now(), value));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }
}

/// The caches of one server process.
#[derive(Debug)]
pub(crate) struct HotCache {
    /// token SHA-256 → who it is
    pub(crate) tokens: TtlMap<Vec<u8>, Arc<AuthEntry>>,
    /// (org, certificate SPKI hash) → the service account it maps to
    pub(crate) certs: TtlMap<(Uuid, String), Arc<AuthEntry>>,
    /// (principal id, org id) → what it may do there
    pub(crate) access: TtlMap<(Uuid, Uuid), Option<Arc<Access>>>,
    /// org/project/env slugs → ids
    pub(crate) envs: TtlMap<(String, String, String), EnvPath>,
    /// an organization's SSO policy (`sso.rs`)
    pub(crate) sso: TtlMap<Uuid, Option<Arc<super::sso::SsoPolicy>>>,
}

impl HotCache {
    pub(crate) fn new() -> Self {
        HotCache {
            tokens: TtlMap::new(),
            certs: TtlMap::new(),
            access: TtlMap::new(),
            envs: TtlMap::new(),
            sso: TtlMap::new(),
        }
    }

    pub(crate) fn clear(&self) {
        self.tokens.clear();
        self.certs.clear();
        self.access.clear();
        self.envs.clear();
        self.sso.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_clear() {
        let m: TtlMap<u8, u8> = TtlMap::new();
        m.put(1, 10);
        assert_eq!(m.get(&1), Some(10));
        m.clear();
        assert_eq!(m.get(&1), None);
        m.put(2, 20);
        if let Ok(mut map) = m.map.write() {
            map.insert(2, (Instant::now() - TTL, 20));
        }
        assert_eq!(m.get(&2), None, "an entry older than the TTL is not served");
    }
}
