//! Short-lived caches of the request hot path: token → principal and
//! slug path → environment ids. Entries live one second, so a change made
//! through another server sharing the database (a revoked token, a rotated
//! KEK) is seen within a second; sealing clears both. Token entries are keyed
//! by the token's SHA-256, never by the token.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::Principal;
use crate::storage::EnvPath;

/// How long an entry may be served.
const TTL: Duration = Duration::from_secs(1);
/// Entries per map before it is flushed (bounds memory under token spraying).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct TtlMap<K, V> {
    map: RwLock<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    fn new() -> Self {
        TtlMap {
            map: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.get_by(key)
    }

    fn get_by<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        let map = self.map.read().ok()?;
        let (at, v) = map.get(key)?;
        (at.elapsed() < TTL).then(|| v.clone())
    }

    fn put(&self, key: K, value: V) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, (Instant::now(), value));
        }
    }

    fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }
}

/// The caches of one server process.
#[derive(Debug)]
pub(crate) struct HotCache {
    tokens: TtlMap<Vec<u8>, Principal>,
    envs: TtlMap<(String, String, String), EnvPath>,
}

impl HotCache {
    pub(crate) fn new() -> Self {
        HotCache {
            tokens: TtlMap::new(),
            envs: TtlMap::new(),
        }
    }

    pub(crate) fn principal(&self, token_hash: &[u8]) -> Option<Principal> {
        self.tokens.get_by(token_hash)
    }

    pub(crate) fn put_principal(&self, token_hash: Vec<u8>, who: Principal) {
        self.tokens.put(token_hash, who);
    }

    pub(crate) fn env(&self, path: &(String, String, String)) -> Option<EnvPath> {
        self.envs.get(path)
    }

    pub(crate) fn put_env(&self, path: (String, String, String), env: EnvPath) {
        self.envs.put(path, env);
    }

    pub(crate) fn clear(&self) {
        self.tokens.clear();
        self.envs.clear();
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
