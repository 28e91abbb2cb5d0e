//! Storage of idempotency keys (`Idempotency-Key` on the native API,
//! `service/idempotency.rs`): per principal and key, the fingerprint of the
//! first request and, once it finished, its answer (status, content type,
//! encrypted body). A trait of its own ([`IdempotencyStore`], a supertrait of
//! [`super::Backend`]), implemented once here for [`SqlBackend`] in portable
//! SQL. Not tenant rows: a key belongs to a principal, whichever
//! organizations its requests touch.
//!
//! A row is *claimed* (status 0) by the request that inserted it; exactly
//! one request wins the INSERT, so two concurrent requests with one key
//! cannot both run. The winner then completes it (status and body) or
//! releases it (deletes it, so a retry runs again).

use async_trait::async_trait;
use sqlx::Row;

use super::db::query;
use super::{Result, SqlBackend, StorageError};

/// One idempotency key of one principal.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyRow {
    /// `user:<uuid>`, `service_account:<uuid>` or `root`
    pub principal: String,
    /// SHA-256 of the key the client sent
    pub key_hash: Vec<u8>,
    /// SHA-256 of the first request's method, path and body
    pub fingerprint: Vec<u8>,
    /// the first answer's HTTP status; 0 while the first request runs
    pub status: i64,
    /// the first answer's `Content-Type` ('' while running)
    pub content_type: String,
    /// the first answer's body, encrypted (None while running)
    pub body: Option<Vec<u8>>,
    /// unix ms when the running request claimed the key
    pub claimed_at: i64,
    /// unix ms after which the row is forgotten
    pub expires_at: i64,
}

impl std::fmt::Debug for IdempotencyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyRow")
            .field("principal", &self.principal)
            .field("status", &self.status)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("claimed_at", &self.claimed_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What [`IdempotencyStore::claim_idempotency`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// the row was inserted: the caller runs the request
    Claimed,
    /// an unexpired row of this principal and key exists
    Exists(IdempotencyRow),
}

/// The idempotency keys' storage.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Insert `row` (status 0) unless an unexpired row of its principal and
    /// key exists (an expired one, not yet purged, is replaced); returns
    /// that row instead.
    async fn claim_idempotency(&self, row: &IdempotencyRow, now: i64) -> Result<IdempotencyClaim>;
    /// The row of this principal and key, expired or not.
    async fn idempotency(&self, principal: &str, key_hash: &[u8]) -> Result<Option<IdempotencyRow>>;
    /// Take over a claim still running since before `stale_before` (its
    /// server died mid-request): true when this caller now holds it.
    async fn reclaim_idempotency(&self, principal: &str, key_hash: &[u8], stale_before: i64, now: i64) -> Result<bool>;
    /// Store the first answer of a claimed row; false when it was not
    /// claimed (any more).
    async fn complete_idempotency(
        &self,
        principal: &str,
        key_hash: &[u8],
        status: i64,
        content_type: &str,
        body: &[u8],
    ) -> Result<bool>;
    /// Forget a claimed, unanswered row (the request's outcome is not kept,
    /// so a retry runs again).
    async fn release_idempotency(&self, principal: &str, key_hash: &[u8]) -> Result<()>;
    /// Delete every row that expired before `now`; returns how many.
    async fn purge_idempotency(&self, now: i64) -> Result<u64>;
}

fn row(r: &sqlx::any::AnyRow) -> Result<IdempotencyRow> {
    Ok(IdempotencyRow {
        principal: r.try_get("principal")?,
        key_hash: r.try_get("key_hash")?,
        fingerprint: r.try_get("fingerprint")?,
        status: r.try_get("status")?,
        content_type: r.try_get("content_type")?,
        body: r.try_get("body")?,
        claimed_at: r.try_get("claimed_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

#[async_trait]
impl IdempotencyStore for SqlBackend {
    async fn claim_idempotency(&self, r: &IdempotencyRow, now: i64) -> Result<IdempotencyClaim> {
        // A row released between our INSERT and SELECT: try again.
        for _ in 0..3 {
            let mut tx = self.writes().begin().await?;
            query("DELETE FROM idempotency_keys WHERE principal = $1 AND key_hash = $2 AND expires_at <= $3")
                .bind(r.principal.clone())
                .bind(r.key_hash.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let done = query(
                "INSERT INTO idempotency_keys (principal, key_hash, fingerprint, status, content_type, body, \
                 claimed_at, expires_at) VALUES ($1, $2, $3, 0, '', NULL, $4, $5) \
                 ON CONFLICT (principal, key_hash) DO NOTHING",
            )
            .bind(r.principal.clone())
            .bind(r.key_hash.clone())
            .bind(r.fingerprint.clone())
            .bind(r.claimed_at)
            .bind(r.expires_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(IdempotencyClaim::Claimed);
            }
            let existing = query(
                "SELECT principal, key_hash, fingerprint, status, content_type, body, claimed_at, expires_at \
                 FROM idempotency_keys WHERE principal = $1 AND key_hash = $2",
            )
            .bind(r.principal.clone())
            .bind(r.key_hash.clone())
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            if let Some(existing) = existing {
                return Ok(IdempotencyClaim::Exists(row(&existing)?));
            }
        }
        Err(StorageError::Conflict("idempotency key"))
    }

    async fn idempotency(&self, principal: &str, key_hash: &[u8]) -> Result<Option<IdempotencyRow>> {
        query(
            "SELECT principal, key_hash, fingerprint, status, content_type, body, claimed_at, expires_at \
             FROM idempotency_keys WHERE principal = $1 AND key_hash = $2",
        )
        .bind(principal.to_owned())
        .bind(key_hash.to_vec())
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(row)
        .transpose()
    }

    async fn reclaim_idempotency(&self, principal: &str, key_hash: &[u8], stale_before: i64, now: i64) -> Result<bool> {
        let done = query(
            "UPDATE idempotency_keys SET claimed_at = $3 \
             WHERE principal = $1 AND key_hash = $2 AND status = 0 AND claimed_at < $4",
        )
        .bind(principal.to_owned())
        .bind(key_hash.to_vec())
        .bind(now)
        .bind(stale_before)
        .execute(self.writes())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_idempotency(
        &self,
        principal: &str,
        key_hash: &[u8],
        status: i64,
        content_type: &str,
        body: &[u8],
    ) -> Result<bool> {
        let done = query(
            "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 \
             WHERE principal = $1 AND key_hash = $2 AND status = 0",
        )
        .bind(principal.to_owned())
        .bind(key_hash.to_vec())
        .bind(status)
        .bind(content_type.to_owned())
        .bind(body.to_vec())
        .execute(self.writes())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_idempotency(&self, principal: &str, key_hash: &[u8]) -> Result<()> {
        query("DELETE FROM idempotency_keys WHERE principal = $1 AND key_hash = $2 AND status = 0")
            .bind(principal.to_owned())
            .bind(key_hash.to_vec())
            .execute(self.writes())
            .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, now: i64) -> Result<u64> {
        let done = query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writes())
            .await?;
        Ok(done.rows_affected())
    }
}
