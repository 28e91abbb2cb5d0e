//! Idempotency keys of the native API (issue 18): a client that sends
//! `Idempotency-Key: K` on a POST, PUT, PATCH or DELETE gets, on a retry
//! with the same key and the same request, the first answer again instead
//! of a second effect. The HTTP layer (`http/idempotency.rs`) calls
//! [`IdempotencyService::begin`] before the handler and
//! [`IdempotencyService::finish`] or [`IdempotencyService::release`] after.
//!
//! - Keys are per principal (the user, the service account, or root): two
//!   principals never see each other's keys. Kept [`TTL`] (24 h).
//! - The request is identified by a SHA-256 fingerprint of its method,
//!   path and query, and body; the same key with another fingerprint is
//!   refused with 422 `idempotency_key_reused`.
//! - Exactly one request claims a key (the INSERT of its row); another
//!   request with that key waits up to [`WAIT`] for the first one's answer,
//!   then gets 409 `conflict`. A claim whose server died
//!   mid-request is taken over after [`STALE_CLAIM`].
//! - The stored body is always encrypted (AES-256-GCM under a key derived
//!   from the root key, AAD binding it to principal and key), since answers
//!   may carry values or tokens. The key itself is stored as its SHA-256.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{PrincipalKind, Result, ServiceError, Unsealed, now_ms};
use crate::keys::IDEMPOTENCY_LABEL;
use crate::storage::idempotency::{IdempotencyClaim, IdempotencyRow, IdempotencyStore};

/// How long a key and its first answer are kept.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a request waits for the answer of a running request with its key.
pub const WAIT: Duration = Duration::from_secs(10);
/// A claim older than this with no answer is taken over (its server died).
pub const STALE_CLAIM: Duration = Duration::from_secs(300);
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;
/// How often a waiting request looks for the first answer.
const POLL: Duration = Duration::from_millis(50);

/// A checked `Idempotency-Key` value: 1–255 visible ASCII characters.
pub fn check_key(raw: &[u8]) -> Result<&str> {
    if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::Invalid(format!(
            "header Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (no spaces)"
        )));
    }
    std::str::from_utf8(raw).map_err(|_| ServiceError::Invalid("header Idempotency-Key is not ASCII".into()))
}

/// SHA-256 of a request: method, path and query, body (length-prefixed, so
/// no two requests share a fingerprint by moving bytes between fields).
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path_and_query.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().to_vec()
}

/// A first answer, decrypted, to send again.
pub struct StoredAnswer {
    /// HTTP status
    pub status: u16,
    /// `Content-Type` ('' for none)
    pub content_type: String,
    /// the body
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAnswer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The claim of a key by the request that runs: hand it back to
/// [`IdempotencyService::finish`] or [`IdempotencyService::release`].
#[derive(Debug)]
pub struct Ticket {
    principal: String,
    key_hash: Vec<u8>,
    who: Unsealed,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begin {
    /// run it (this request holds the key), then finish or release
    Run(Ticket),
    /// answer this (the first answer), run nothing
    Replay(StoredAnswer),
}

/// Idempotency keys: claim, wait, replay, store.
#[derive(Clone)]
pub struct IdempotencyService {
    pub(super) store: Arc<dyn IdempotencyStore>,
}

impl std::fmt::Debug for IdempotencyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyService").finish_non_exhaustive()
    }
}

fn principal_key(who: &Unsealed) -> String {
    match who.kind {
        PrincipalKind::Root => "root".to_owned(),
        PrincipalKind::User(id) => format!("user:{id}"),
        PrincipalKind::ServiceAccount { id, .. } => format!("service_account:{id}"),
    }
}

fn answer_aad(principal: &str, key_hash: &[u8]) -> Vec<u8> {
    let mut aad = b"idempotency\x00".to_vec();
    aad.extend_from_slice(&(principal.len() as u64).to_be_bytes());
    aad.extend_from_slice(principal.as_bytes());
    aad.extend_from_slice(key_hash);
    aad
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl IdempotencyService {
    /// Claim `key` for `who`'s request of fingerprint `fp`, or find the
    /// first answer to send again. Waits up to [`WAIT`] while another
    /// request with the key runs.
    pub async fn begin(&self, who: &Unsealed, key: &str, fp: Vec<u8>) -> Result<Begin> {
        let principal = principal_key(who);
        let key_hash = Sha256::digest(key.as_bytes()).to_vec();
        let started = tokio::time::Instant::now();
        let ticket = || Ticket {
            principal: principal.clone(),
            key_hash: key_hash.clone(),
            who: who.clone(),
        };
        // While another request runs, its row is polled with reads (no
        // write per poll); gone (released or expired): claim again.
        let mut seen: Option<IdempotencyRow> = None;
        loop {
            let now = now_ms();
            let existing = match seen.take() {
                Some(r) => r,
                None => {
                    let row = IdempotencyRow {
                        principal: principal.clone(),
                        key_hash: key_hash.clone(),
                        fingerprint: fp.clone(),
                        status: 0,
                        content_type: String::new(),
                        body: None,
                        claimed_at: now,
                        expires_at: now.saturating_add(ms(TTL)),
                    };
                    match self.store.claim_idempotency(&row, now).await? {
                        IdempotencyClaim::Claimed => return Ok(Begin::Run(ticket())),
                        IdempotencyClaim::Exists(existing) => existing,
                    }
                }
            };
            // Constant time: the fingerprint is a hash of the request.
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                existing.fingerprint.as_slice(),
                fp.as_slice(),
            )) {
                return Err(ServiceError::Unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for another request (other method, path or body) in the \
                     last 24 h; use a new key for a new request"
                        .into(),
                ));
            }
            if existing.status != 0 {
                return self.replay(who, &existing).map(Begin::Replay);
            }
            if existing.claimed_at < now.saturating_sub(ms(STALE_CLAIM))
                && self
                    .store
                    .reclaim_idempotency(&principal, &key_hash, now.saturating_sub(ms(STALE_CLAIM)), now)
                    .await?
            {
                return Ok(Begin::Run(ticket()));
            }
            if started.elapsed() >= WAIT {
                return Err(ServiceError::Conflict(format!(
                    "a request with this Idempotency-Key is still running (waited {} s); retry later with the \
                     same key to get its answer",
                    WAIT.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
            seen = self
                .store
                .idempotency(&principal, &key_hash)
                .await?
                .filter(|r| r.expires_at > now_ms());
        }
    }

    fn replay(&self, who: &Unsealed, row: &IdempotencyRow) -> Result<StoredAnswer> {
        let unreadable = || {
            ServiceError::Conflict(
                "the stored answer of this Idempotency-Key cannot be read (the root key was rotated); its request \
                 completed with status "
                    .to_owned()
                    + &row.status.to_string()
                    + "; use a new key for a new request",
            )
        };
        let blob = row.body.as_deref().ok_or_else(unreadable)?;
        let body = who
            .keyring()
            .open_derived(IDEMPOTENCY_LABEL, &answer_aad(&row.principal, &row.key_hash), blob)
            .map_err(|_| unreadable())?;
        Ok(StoredAnswer {
            status: u16::try_from(row.status).map_err(|_| unreadable())?,
            content_type: row.content_type.clone(),
            body,
        })
    }

    /// Keep the first answer of a claimed key (encrypted).
    pub async fn finish(&self, ticket: Ticket, status: u16, content_type: &str, body: &[u8]) -> Result<()> {
        let blob = ticket
            .who
            .keyring()
            .seal_derived(
                IDEMPOTENCY_LABEL,
                &answer_aad(&ticket.principal, &ticket.key_hash),
                body,
            )
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store
            .complete_idempotency(
                &ticket.principal,
                &ticket.key_hash,
                i64::from(status),
                content_type,
                &blob,
            )
            .await?;
        Ok(())
    }

    /// Forget a claimed key without an answer: a retry runs again.
    pub async fn release(&self, ticket: Ticket) -> Result<()> {
        self.store
            .release_idempotency(&ticket.principal, &ticket.key_hash)
            .await?;
        Ok(())
    }

    /// Delete expired keys (the purge job); returns how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        Ok(self.store.purge_idempotency(now_ms()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(check_key(b"").is_err());
        assert!(check_key(b"a b").is_err());
        assert!(check_key("é".as_bytes()).is_err());
        assert!(check_key(&[b'k'; 256]).is_err());
        assert_eq!(check_key(&[b'k'; 255]).map(str::len).ok(), Some(255));
        assert_eq!(
            check_key(b"550e8400-e29b-41d4-a716-446655440000").ok(),
            Some("550e8400-e29b-41d4-a716-446655440000")
        );
    }

    #[test]
    fn fingerprints_separate_method_path_and_body() {
        let a = fingerprint("POST", "/api/v1/x", b"{}");
        assert_eq!(a, fingerprint("POST", "/api/v1/x", b"{}"));
        assert_ne!(a, fingerprint("PUT", "/api/v1/x", b"{}"));
        assert_ne!(a, fingerprint("POST", "/api/v1/y", b"{}"));
        assert_ne!(a, fingerprint("POST", "/api/v1/x", b"{ }"));
        assert_ne!(fingerprint("POST", "/a", b"b"), fingerprint("POST", "/ab", b""));
    }
}
