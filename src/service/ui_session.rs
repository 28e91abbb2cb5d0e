//! Dashboard sessions: what the browser's `coffer_session` cookie stands for.
//!
//! A dashboard login makes an ordinary login session (an access token in
//! the tokens table, `auth.rs`), but the browser never sees that token: the
//! server keeps it here, under the SHA-256 of a fresh random cookie secret,
//! with the session's CSRF token. So the cookie is not an API token (it is
//! in no tokens table: sent as `X-Vault-Token` or `Bearer` it is refused),
//! and an API token is not a cookie (it is not a key of this map).
//!
//! Invariants: the cookie secret and the access token never reach a log
//! (no `Debug` shows them); a session idle for [`IDLE_MS`] or older than its
//! access token is gone at its next use; [`UiSessions::end`] removes it and
//! hands back the access token so the caller can revoke it server-side.
//! The map lives in this process: a restart or another cluster node means a
//! new login, and an idle session's entry is dropped lazily.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Result, ServiceError, now_ms, random_bytes, token_hash};

/// A dashboard session ends after this long without a request.
pub const IDLE_MS: i64 = 15 * 60_000;
/// At most this many live dashboard sessions; the oldest is dropped first.
const MAX_SESSIONS: usize = 10_000;

/// One session, as the map keeps it.
struct Entry {
    /// the login's access token (never sent to the browser)
    token: Zeroizing<String>,
    /// the per-session CSRF token (in every form and fetch)
    csrf: String,
    /// unix ms of the last request
    last_seen: i64,
    /// unix ms: the access token's expiry
    expires_at: i64,
}

/// What a page gets from a live session. Its Debug shows neither secret.
pub struct UiSession {
    /// the access token the page acts with
    pub token: Zeroizing<String>,
    /// the session's CSRF token, for the page's forms
    pub csrf: String,
}

impl std::fmt::Debug for UiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiSession").finish_non_exhaustive()
    }
}

/// The dashboard sessions of this process.
#[derive(Clone, Default)]
pub struct UiSessions(Arc<Mutex<HashMap<Vec<u8>, Entry>>>);

impl std::fmt::Debug for UiSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiSessions").finish_non_exhaustive()
    }
}

/// A random URL-safe secret of 32 bytes.
pub fn random_secret() -> Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(random_bytes::<32>()?);
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()),
    ))
}

/// Constant-time equality of two tokens (CSRF tokens, cookie values).
pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl UiSessions {
    fn map(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry>>> {
        self.0
            .lock()
            .map_err(|_| ServiceError::Internal("dashboard session map poisoned".into()))
    }

    /// A new session holding `token` (valid until `expires_at`, unix ms):
    /// the cookie secret, shown once to the browser.
    pub fn create(&self, token: Zeroizing<String>, expires_at: i64) -> Result<Zeroizing<String>> {
        let cookie = random_secret()?;
        let csrf = random_secret()?.to_string();
        let now = now_ms();
        let mut map = self.map()?;
        map.retain(|_, e| e.last_seen + IDLE_MS > now && e.expires_at > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            token_hash(&cookie),
            Entry {
                token,
                csrf,
                last_seen: now,
                expires_at,
            },
        );
        Ok(cookie)
    }

    /// The live session of a cookie (and the request counts as activity);
    /// None when unknown, idle too long or expired (then it is dropped).
    pub fn get(&self, cookie: &str) -> Result<Option<UiSession>> {
        let key = token_hash(cookie);
        let now = now_ms();
        let mut map = self.map()?;
        let live = match map.get_mut(&key) {
            Some(e) if e.last_seen + IDLE_MS > now && e.expires_at > now => {
                e.last_seen = now;
                Some(UiSession {
                    token: e.token.clone(),
                    csrf: e.csrf.clone(),
                })
            }
            Some(_) => None,
            None => return Ok(None),
        };
        if live.is_none() {
            map.remove(&key);
        }
        Ok(live)
    }

    /// End a session: it is gone, and its access token is returned for
    /// revocation.
    pub fn end(&self, cookie: &str) -> Result<Option<Zeroizing<String>>> {
        Ok(self.map()?.remove(&token_hash(cookie)).map(|e| e.token))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_only_and_ends() {
        let s = UiSessions::default();
        let cookie = s.create(Zeroizing::new("api-token".into()), now_ms() + 60_000).unwrap();
        let got = s.get(&cookie).unwrap().unwrap();
        assert_eq!(got.token.as_str(), "api-token");
        assert!(s.get("api-token").unwrap().is_none(), "the API token is not a cookie");
        assert!(!format!("{got:?}").contains("api-token"));
        assert_eq!(s.end(&cookie).unwrap().unwrap().as_str(), "api-token");
        assert!(s.get(&cookie).unwrap().is_none(), "ended server-side");
    }

    #[test]
    fn expired_and_idle_sessions_are_gone() {
        let s = UiSessions::default();
        let expired = s.create(Zeroizing::new("t".into()), now_ms() - 1).unwrap();
        assert!(s.get(&expired).unwrap().is_none());
        let idle = s.create(Zeroizing::new("t".into()), now_ms() + 3_600_000).unwrap();
        if let Some(e) = s.0.lock().unwrap().get_mut(&token_hash(&idle)) {
            e.last_seen -= IDLE_MS;
        }
        assert!(s.get(&idle).unwrap().is_none());
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
    }
}
