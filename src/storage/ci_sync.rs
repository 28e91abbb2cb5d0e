//! Storage of CI sync targets (issue 19, docs/ci-sync.md): per environment,
//! a GitHub Actions or GitLab CI/CD destination; the durable queue of its
//! sync jobs (at-least-once, one live job per target, key, version and
//! operation, dead letters kept with their error); and, per key, what
//! coffer last wrote there (the base of deletes and drift detection). A
//! trait of its own ([`CiSyncStore`], a supertrait of [`super::Backend`]),
//! implemented once here for [`SqlBackend`] in portable SQL. Tenant rows:
//! every query filters on `org_id` (and PostgreSQL's row-level security
//! checks it again). No row holds a value; the target's credential is a
//! ciphertext under a DEK wrapped by the organization's KEK.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{query, uuid};
use super::{Result, SqlBackend};

/// One sync target. Its Debug hides the credential blobs.
#[derive(Clone, PartialEq, Eq)]
pub struct CiTargetRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// the environment whose secrets are synced
    pub env_id: Uuid,
    /// github | gitlab
    pub provider: String,
    /// repository | environment | organization (GitHub); project | group (GitLab)
    pub scope: String,
    /// API base URL
    pub api_url: String,
    /// JSON: where in the provider (owner, repo, environment, project or
    /// group id, environment scope, flags)
    pub location: String,
    /// overwrite a value changed at the target by hand
    pub overwrite_drift: bool,
    /// per-request timeout
    pub timeout_ms: i64,
    /// the credential, encrypted under a fresh DEK
    pub credential: Vec<u8>,
    /// that DEK wrapped by the organization's KEK
    pub wrapped_dek: Vec<u8>,
    /// which KEK version wraps it
    pub kek_version: i64,
    /// actor name
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
    /// unix ms of the last successful write at the target
    pub last_success_at: Option<i64>,
    /// last error (never a value or credential)
    pub last_error: Option<String>,
    /// unix ms of the last error
    pub last_error_at: Option<i64>,
    /// unix ms: no request before (Retry-After, rate limit)
    pub blocked_until: i64,
    /// JSON array of drift entries found by the last reconcile
    pub drift: String,
    /// unix ms of the last reconcile
    pub reconciled_at: Option<i64>,
}

impl std::fmt::Debug for CiTargetRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiTargetRow")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("env_id", &self.env_id)
            .field("provider", &self.provider)
            .field("scope", &self.scope)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// One queued sync job: write `key` at `version` to a target, or delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiJobRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// the target
    pub target_id: Uuid,
    /// secret key
    pub key: String,
    /// coffer version written (put) or last written (delete)
    pub version: i64,
    /// put | delete
    pub op: String,
    /// attempts made
    pub attempts: i64,
    /// unix ms: the next attempt is due then
    pub next_at: i64,
    /// pending | done | dead | superseded
    pub status: String,
    /// last error (no value, no credential)
    pub last_error: Option<String>,
    /// unix ms
    pub created_at: i64,
    /// unix ms
    pub done_at: Option<i64>,
}

/// What coffer last wrote to a target for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiStateRow {
    /// organization
    pub org_id: Uuid,
    /// the target
    pub target_id: Uuid,
    /// secret key
    pub key: String,
    /// the coffer version written
    pub version: i64,
    /// unix ms of the write
    pub written_at: i64,
    /// GitHub: the secret's `updated_at` right after the write ("" elsewhere)
    pub remote_updated_at: String,
}

/// CI sync targets, their job queue and their per-key state.
#[async_trait]
pub trait CiSyncStore: Send + Sync + std::fmt::Debug {
    /// Add a target.
    async fn insert_ci_target(&self, row: &CiTargetRow) -> Result<()>;
    /// An organization's targets, oldest first.
    async fn ci_targets(&self, org_id: Uuid) -> Result<Vec<CiTargetRow>>;
    /// Every target of every organization.
    async fn all_ci_targets(&self) -> Result<Vec<CiTargetRow>>;
    /// Save a target's delivery status (last success/error,
    /// blocked_until); false if absent.
    async fn update_ci_target_status(&self, row: &CiTargetRow) -> Result<bool>;
    /// Replace a target's sealed credential (`credential`, `wrapped_dek`,
    /// `kek_version`) and its `location` (how it authenticates) together;
    /// false if absent.
    async fn set_ci_target_credential(&self, row: &CiTargetRow) -> Result<bool>;
    /// Save a reconcile's drift; its time only if no reconcile was
    /// requested since the job read `seen` (so a request is never lost).
    async fn record_ci_reconcile(&self, org_id: Uuid, id: Uuid, drift: &str, at: i64, seen: Option<i64>) -> Result<()>;
    /// Ask for a reconcile at the next run; false if absent.
    async fn request_ci_reconcile(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Delete a target with its jobs and state; false if absent.
    async fn delete_ci_target(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Store a target credential's DEK wrapped again under KEK version
    /// `kek_version`, if the row still holds `expect_dek` (re-wrap; the
    /// credential ciphertext is untouched); false otherwise.
    async fn rewrap_ci_credential(
        &self,
        org_id: Uuid,
        id: Uuid,
        wrapped_dek: &[u8],
        kek_version: i64,
        expect_dek: &[u8],
    ) -> Result<bool>;
    /// Queue jobs; a job whose (target, key, version, op) is already
    /// pending or dead is skipped. Returns how many were queued.
    async fn enqueue_ci_jobs(&self, org_id: Uuid, rows: &[CiJobRow]) -> Result<usize>;
    /// A target's pending jobs due at `now`, oldest first, at most `limit`.
    async fn due_ci_jobs(&self, org_id: Uuid, target_id: Uuid, now: i64, limit: i64) -> Result<Vec<CiJobRow>>;
    /// A target's jobs: pending and dead ones, then the latest others,
    /// newest first, at most `limit`.
    async fn ci_jobs(&self, org_id: Uuid, target_id: Uuid, limit: i64) -> Result<Vec<CiJobRow>>;
    /// (pending, dead) job counts of a target.
    async fn ci_job_counts(&self, org_id: Uuid, target_id: Uuid) -> Result<(i64, i64)>;
    /// Record an attempt's outcome if the job is still pending.
    async fn update_ci_job(&self, row: &CiJobRow) -> Result<bool>;
    /// Make a target's pending jobs due now and its dead letters pending
    /// again with fresh attempts; returns how many were requeued.
    async fn requeue_ci_jobs(&self, org_id: Uuid, target_id: Uuid, now: i64) -> Result<u64>;
    /// What coffer last wrote to a target, by key.
    async fn ci_state(&self, org_id: Uuid, target_id: Uuid) -> Result<Vec<CiStateRow>>;
    /// Record a write (insert or replace the key's row).
    async fn put_ci_state(&self, row: &CiStateRow) -> Result<()>;
    /// Forget a key after its delete at the target.
    async fn delete_ci_state(&self, org_id: Uuid, target_id: Uuid, key: &str) -> Result<()>;
}

const TARGET_COLUMNS: &str = "id, org_id, env_id, provider, scope, api_url, location, overwrite_drift, timeout_ms, \
     credential, wrapped_dek, kek_version, created_by, created_at, last_success_at, last_error, last_error_at, \
     blocked_until, drift, reconciled_at";
const JOB_COLUMNS: &str =
    "id, org_id, target_id, key, version, op, attempts, next_at, status, last_error, created_at, done_at";

fn target_row(r: &AnyRow) -> Result<CiTargetRow> {
    Ok(CiTargetRow {
        id: uuid(r, "id", "ci_sync_targets")?,
        org_id: uuid(r, "org_id", "ci_sync_targets")?,
        env_id: uuid(r, "env_id", "ci_sync_targets")?,
        provider: r.try_get("provider")?,
        scope: r.try_get("scope")?,
        api_url: r.try_get("api_url")?,
        location: r.try_get("location")?,
        overwrite_drift: r.try_get::<i64, _>("overwrite_drift")? != 0,
        timeout_ms: r.try_get("timeout_ms")?,
        credential: r.try_get("credential")?,
        wrapped_dek: r.try_get("wrapped_dek")?,
        kek_version: r.try_get("kek_version")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        last_success_at: r.try_get("last_success_at")?,
        last_error: r.try_get("last_error")?,
        last_error_at: r.try_get("last_error_at")?,
        blocked_until: r.try_get("blocked_until")?,
        drift: r.try_get("drift")?,
        reconciled_at: r.try_get("reconciled_at")?,
    })
}

fn job_row(r: &AnyRow) -> Result<CiJobRow> {
    Ok(CiJobRow {
        id: uuid(r, "id", "ci_sync_jobs")?,
        org_id: uuid(r, "org_id", "ci_sync_jobs")?,
        target_id: uuid(r, "target_id", "ci_sync_jobs")?,
        key: r.try_get("key")?,
        version: r.try_get("version")?,
        op: r.try_get("op")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        status: r.try_get("status")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        done_at: r.try_get("done_at")?,
    })
}

fn select(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(sql))
}

#[async_trait]
impl CiSyncStore for SqlBackend {
    async fn insert_ci_target(&self, t: &CiTargetRow) -> Result<()> {
        let mut tx = self.tenant_tx(t.org_id).await?;
        select(format!(
            "INSERT INTO ci_sync_targets ({TARGET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        ))
        .bind(t.id.to_string())
        .bind(t.org_id.to_string())
        .bind(t.env_id.to_string())
        .bind(t.provider.clone())
        .bind(t.scope.clone())
        .bind(t.api_url.clone())
        .bind(t.location.clone())
        .bind(i64::from(t.overwrite_drift))
        .bind(t.timeout_ms)
        .bind(t.credential.clone())
        .bind(t.wrapped_dek.clone())
        .bind(t.kek_version)
        .bind(t.created_by.clone())
        .bind(t.created_at)
        .bind(t.last_success_at)
        .bind(t.last_error.clone())
        .bind(t.last_error_at)
        .bind(t.blocked_until)
        .bind(t.drift.clone())
        .bind(t.reconciled_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ci_targets(&self, org_id: Uuid) -> Result<Vec<CiTargetRow>> {
        let rows = select(format!(
            "SELECT {TARGET_COLUMNS} FROM ci_sync_targets WHERE org_id = $1 ORDER BY created_at, id"
        ))
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(target_row).collect()
    }

    async fn all_ci_targets(&self) -> Result<Vec<CiTargetRow>> {
        let orgs = query("SELECT id FROM orgs ORDER BY id").fetch_all(self.pool()).await?;
        let mut out = Vec::new();
        for r in &orgs {
            out.extend(self.ci_targets(uuid(r, "id", "orgs")?).await?);
        }
        Ok(out)
    }

    async fn update_ci_target_status(&self, t: &CiTargetRow) -> Result<bool> {
        let mut tx = self.tenant_tx(t.org_id).await?;
        let done = query(
            "UPDATE ci_sync_targets SET last_success_at = $1, last_error = $2, last_error_at = $3, \
             blocked_until = $4 WHERE org_id = $5 AND id = $6",
        )
        .bind(t.last_success_at)
        .bind(t.last_error.clone())
        .bind(t.last_error_at)
        .bind(t.blocked_until)
        .bind(t.org_id.to_string())
        .bind(t.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_ci_target_credential(&self, t: &CiTargetRow) -> Result<bool> {
        let mut tx = self.tenant_tx(t.org_id).await?;
        let done = query(
            "UPDATE ci_sync_targets SET credential = $1, wrapped_dek = $2, kek_version = $3, location = $4 \
             WHERE org_id = $5 AND id = $6",
        )
        .bind(t.credential.clone())
        .bind(t.wrapped_dek.clone())
        .bind(t.kek_version)
        .bind(t.location.clone())
        .bind(t.org_id.to_string())
        .bind(t.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_ci_reconcile(&self, org_id: Uuid, id: Uuid, drift: &str, at: i64, seen: Option<i64>) -> Result<()> {
        let mut tx = self.tenant_tx(org_id).await?;
        // A requested reconcile is NULL; -1 stands for "never" in `seen`.
        query(
            "UPDATE ci_sync_targets SET drift = $1, reconciled_at = CASE \
             WHEN COALESCE(reconciled_at, -1) = $2 THEN $3 ELSE reconciled_at END \
             WHERE org_id = $4 AND id = $5",
        )
        .bind(drift.to_owned())
        .bind(seen.unwrap_or(-1))
        .bind(at)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn request_ci_reconcile(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("UPDATE ci_sync_targets SET reconciled_at = NULL WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn rewrap_ci_credential(
        &self,
        org_id: Uuid,
        id: Uuid,
        wrapped_dek: &[u8],
        kek_version: i64,
        expect_dek: &[u8],
    ) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE ci_sync_targets SET wrapped_dek = $1, kek_version = $2 \
             WHERE org_id = $3 AND id = $4 AND wrapped_dek = $5",
        )
        .bind(wrapped_dek.to_vec())
        .bind(kek_version)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .bind(expect_dek.to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_ci_target(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        for sql in [
            "DELETE FROM ci_sync_jobs WHERE org_id = $1 AND target_id = $2",
            "DELETE FROM ci_sync_state WHERE org_id = $1 AND target_id = $2",
        ] {
            query(sql)
                .bind(org_id.to_string())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let done = query("DELETE FROM ci_sync_targets WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue_ci_jobs(&self, org_id: Uuid, rows: &[CiJobRow]) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.tenant_tx(org_id).await?;
        let mut queued = 0;
        for j in rows {
            // The partial unique index (pending or dead) makes this idempotent.
            let done = select(format!(
                "INSERT INTO ci_sync_jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(j.id.to_string())
            .bind(org_id.to_string())
            .bind(j.target_id.to_string())
            .bind(j.key.clone())
            .bind(j.version)
            .bind(j.op.clone())
            .bind(j.attempts)
            .bind(j.next_at)
            .bind(j.status.clone())
            .bind(j.last_error.clone())
            .bind(j.created_at)
            .bind(j.done_at)
            .execute(&mut *tx)
            .await?;
            queued += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await?;
        Ok(queued)
    }

    async fn due_ci_jobs(&self, org_id: Uuid, target_id: Uuid, now: i64, limit: i64) -> Result<Vec<CiJobRow>> {
        let rows = select(format!(
            "SELECT {JOB_COLUMNS} FROM ci_sync_jobs WHERE org_id = $1 AND target_id = $2 AND status = 'pending' \
             AND next_at <= $3 ORDER BY created_at, id LIMIT $4"
        ))
        .bind(org_id.to_string())
        .bind(target_id.to_string())
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn ci_jobs(&self, org_id: Uuid, target_id: Uuid, limit: i64) -> Result<Vec<CiJobRow>> {
        let rows = select(format!(
            "SELECT {JOB_COLUMNS} FROM ci_sync_jobs WHERE org_id = $1 AND target_id = $2 \
             ORDER BY CASE WHEN status IN ('pending', 'dead') THEN 0 ELSE 1 END, created_at DESC, id DESC LIMIT $3"
        ))
        .bind(org_id.to_string())
        .bind(target_id.to_string())
        .bind(limit)
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn ci_job_counts(&self, org_id: Uuid, target_id: Uuid) -> Result<(i64, i64)> {
        let rows = query(
            "SELECT status, COUNT(*) AS n FROM ci_sync_jobs WHERE org_id = $1 AND target_id = $2 \
             AND status IN ('pending', 'dead') GROUP BY status",
        )
        .bind(org_id.to_string())
        .bind(target_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        let (mut pending, mut dead) = (0, 0);
        for r in &rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            match status.as_str() {
                "pending" => pending = n,
                _ => dead = n,
            }
        }
        Ok((pending, dead))
    }

    async fn update_ci_job(&self, j: &CiJobRow) -> Result<bool> {
        let mut tx = self.tenant_tx(j.org_id).await?;
        let done = query(
            "UPDATE ci_sync_jobs SET attempts = $1, next_at = $2, status = $3, last_error = $4, done_at = $5 \
             WHERE org_id = $6 AND id = $7 AND status = 'pending'",
        )
        .bind(j.attempts)
        .bind(j.next_at)
        .bind(j.status.clone())
        .bind(j.last_error.clone())
        .bind(j.done_at)
        .bind(j.org_id.to_string())
        .bind(j.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_ci_jobs(&self, org_id: Uuid, target_id: Uuid, now: i64) -> Result<u64> {
        let mut tx = self.tenant_tx(org_id).await?;
        let due =
            query("UPDATE ci_sync_jobs SET next_at = $1 WHERE org_id = $2 AND target_id = $3 AND status = 'pending'")
                .bind(now)
                .bind(org_id.to_string())
                .bind(target_id.to_string())
                .execute(&mut *tx)
                .await?;
        let dead = query(
            "UPDATE ci_sync_jobs SET status = 'pending', attempts = 0, next_at = $1 \
             WHERE org_id = $2 AND target_id = $3 AND status = 'dead'",
        )
        .bind(now)
        .bind(org_id.to_string())
        .bind(target_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(due.rows_affected() + dead.rows_affected())
    }

    async fn ci_state(&self, org_id: Uuid, target_id: Uuid) -> Result<Vec<CiStateRow>> {
        let rows = query(
            "SELECT org_id, target_id, key, version, written_at, remote_updated_at FROM ci_sync_state \
             WHERE org_id = $1 AND target_id = $2 ORDER BY key",
        )
        .bind(org_id.to_string())
        .bind(target_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CiStateRow {
                    org_id: uuid(r, "org_id", "ci_sync_state")?,
                    target_id: uuid(r, "target_id", "ci_sync_state")?,
                    key: r.try_get("key")?,
                    version: r.try_get("version")?,
                    written_at: r.try_get("written_at")?,
                    remote_updated_at: r.try_get("remote_updated_at")?,
                })
            })
            .collect()
    }

    async fn put_ci_state(&self, s: &CiStateRow) -> Result<()> {
        let mut tx = self.tenant_tx(s.org_id).await?;
        query(
            "INSERT INTO ci_sync_state (org_id, target_id, key, version, written_at, remote_updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (target_id, key) DO UPDATE SET \
             version = excluded.version, written_at = excluded.written_at, \
             remote_updated_at = excluded.remote_updated_at",
        )
        .bind(s.org_id.to_string())
        .bind(s.target_id.to_string())
        .bind(s.key.clone())
        .bind(s.version)
        .bind(s.written_at)
        .bind(s.remote_updated_at.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_ci_state(&self, org_id: Uuid, target_id: Uuid, key: &str) -> Result<()> {
        let mut tx = self.tenant_tx(org_id).await?;
        query("DELETE FROM ci_sync_state WHERE org_id = $1 AND target_id = $2 AND key = $3")
            .bind(org_id.to_string())
            .bind(target_id.to_string())
            .bind(key.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
