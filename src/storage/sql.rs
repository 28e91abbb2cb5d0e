//! The [`Backend`] implementation shared by SQLite and PostgreSQL.
//!
//! Portable SQL only: `$N` placeholders (numbered in order of first use,
//! which SQLite maps to the same indexes PostgreSQL does), TEXT ids holding
//! UUIDs, BIGINT/INTEGER unix-millisecond timestamps and 0/1 flags, BLOB/BYTEA
//! for ciphertexts. Dialect-specific setup lives in `sqlite.rs` and
//! `postgres.rs`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

/// A connection pool of either dialect.
pub type AnyPool = sqlx::Pool<Any>;

use super::{
    Backend, CurrentValue, DeviceRow, EnvPath, EnvRow, GrantRow, GroupRow, KekRow, KeyringRow, OrgRow, ProjectRow,
    RefreshRow, RefreshUse, Result, SecretRow, ServiceAccountRow, StorageError, TokenRow, UserRow, VersionRow,
};

/// A pool of connections to one SQLite file or one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct SqlBackend {
    pool: AnyPool,
    kind: &'static str,
    values: Arc<ValuesCache>,
    tenants: Option<Arc<Tenants>>,
    cluster: Option<super::cluster::ClusterLink>,
}

/// PostgreSQL only: one bounded pool for every organization's rows. A
/// connection is handed out only after its session's `coffer.org_id` (the
/// setting the row-level security policies compare with) is set to the
/// organization asked for, so even a query that forgot its `org_id` filter
/// sees that organization's rows only; the shared pool sees no tenant row at
/// all. However many organizations exist, this pool holds at most
/// [`TENANT_POOL_MAX`] connections (one pool per organization used to mean
/// up to 8 connections each, never released).
pub(super) struct Tenants {
    pool: AnyPool,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("connections", &self.pool.size())
            .finish()
    }
}

/// Connections of the tenant pool (idle ones close after a minute).
pub(super) const TENANT_POOL_MAX: u32 = 16;

/// A connection of the tenant pool acting for one organization (on SQLite a
/// connection of the shared pool).
pub(super) type TenantConn = sqlx::pool::PoolConnection<Any>;

impl Tenants {
    pub(super) fn new(opts: sqlx::any::AnyConnectOptions) -> Tenants {
        let pool = sqlx::pool::PoolOptions::<Any>::new()
            .test_before_acquire(false)
            .max_connections(TENANT_POOL_MAX)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(super::postgres::SET_ROLE).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        Tenants { pool }
    }

    /// A connection whose session acts for `org_id` until the next acquire
    /// sets it again (every acquire does).
    async fn acquire(&self, org_id: Uuid) -> Result<TenantConn> {
        let mut conn = self.pool.acquire().await?;
        if let Err(e) = query("SELECT set_config('coffer.org_id', $1, false)")
            .bind(org_id.to_string())
            .execute(&mut *conn)
            .await
        {
            // Its session state is unknown: never reuse it.
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(conn)
    }

    /// A transaction acting for `org_id` (`set_config(…, true)`: until it ends).
    async fn begin(&self, org_id: Uuid) -> Result<sqlx::Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await?;
        query("SELECT set_config('coffer.org_id', $1, true)")
            .bind(org_id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// The inject rows of recently injected environments (ciphertexts and
/// wrapped DEKs only, nothing in clear), each stamped with the environment's
/// `revision`. Every write to an environment's secrets bumps its revision in
/// the same transaction, so one single-row query tells whether the cached
/// rows are still current, on this server or any other sharing the database.
/// Entries also expire after a second, which bounds the effect of edits made
/// behind coffer's back (a database restored in place).
#[derive(Default)]
struct ValuesCache {
    map: RwLock<HashMap<Uuid, CachedValues>>,
}

/// (environment revision, when cached, rows)
type CachedValues = (i64, Instant, Arc<Vec<CurrentValue>>);

impl std::fmt::Debug for ValuesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("ValuesCache").field("environments", &n).finish()
    }
}

/// Oldest cache entry served.
const VALUES_TTL: Duration = Duration::from_secs(1);
/// Environments kept before the cache is flushed.
const VALUES_MAX: usize = 1_000;

impl ValuesCache {
    fn get(&self, env_id: Uuid, revision: i64) -> Option<Arc<Vec<CurrentValue>>> {
        let map = self.map.read().ok()?;
        let (rev, at, rows) = map.get(&env_id)?;
        (*rev == revision && at.elapsed() < VALUES_TTL).then(|| rows.clone())
    }

    fn put(&self, env_id: Uuid, revision: i64, rows: Arc<Vec<CurrentValue>>) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= VALUES_MAX {
                map.clear();
            }
            map.insert(env_id, (revision, Instant::now(), rows));
        }
    }
}

impl SqlBackend {
    pub(super) fn new(pool: AnyPool, kind: &'static str, tenants: Option<Tenants>) -> Self {
        SqlBackend {
            pool,
            kind,
            values: Arc::new(ValuesCache::default()),
            tenants: tenants.map(Arc::new),
            cluster: None,
        }
    }

    /// PostgreSQL: where cluster traffic (NOTIFY, job locks) goes.
    pub(super) fn with_cluster(mut self, link: super::cluster::ClusterLink) -> Self {
        self.cluster = Some(link);
        self
    }

    /// The cluster link of a PostgreSQL store (None on SQLite).
    pub fn cluster_link(&self) -> Option<&super::cluster::ClusterLink> {
        self.cluster.as_ref()
    }

    /// Inside a transaction of the shared pool, act for organization
    /// `org_id` until the transaction ends (PostgreSQL row-level security;
    /// nothing to do on SQLite). For the few cross-organization operations.
    pub(super) async fn act_for(&self, tx: &mut sqlx::Transaction<'_, Any>, org_id: Uuid) -> Result<()> {
        if self.tenants.is_some() {
            query("SELECT set_config('coffer.org_id', $1, true)")
                .bind(org_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A connection for one organization's rows (of the shared pool on SQLite).
    pub(super) async fn tenant(&self, org_id: Uuid) -> Result<TenantConn> {
        match &self.tenants {
            Some(t) => t.acquire(org_id).await,
            None => Ok(self.pool.acquire().await?),
        }
    }

    /// A transaction on one organization's rows (of the shared pool on SQLite).
    pub(super) async fn tenant_tx(&self, org_id: Uuid) -> Result<sqlx::Transaction<'static, Any>> {
        match &self.tenants {
            Some(t) => t.begin(org_id).await,
            None => Ok(self.pool.begin().await?),
        }
    }

    /// The pool, for tests that tamper with rows directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Map a unique-constraint violation to [`StorageError::Conflict`].
pub(super) fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StorageError::Conflict(what)
        }
        _ => StorageError::Database(e),
    }
}

pub(super) fn uuid(row: &AnyRow, col: &str, table: &'static str) -> Result<Uuid> {
    let text: String = row.try_get(col)?;
    Uuid::parse_str(&text).map_err(|_| StorageError::Corrupt {
        table,
        what: format!("column {col} is not a UUID"),
    })
}

fn org_row(r: &AnyRow) -> Result<OrgRow> {
    Ok(OrgRow {
        id: uuid(r, "id", "orgs")?,
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn project_row(r: &AnyRow) -> Result<ProjectRow> {
    Ok(ProjectRow {
        id: uuid(r, "id", "projects")?,
        org_id: uuid(r, "org_id", "projects")?,
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn env_row(r: &AnyRow) -> Result<EnvRow> {
    Ok(EnvRow {
        id: uuid(r, "id", "environments")?,
        org_id: uuid(r, "org_id", "environments")?,
        project_id: uuid(r, "project_id", "environments")?,
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        protected: r.try_get::<i64, _>("protected")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

/// A secret row with the ciphertext length of its current version.
const SECRET_SELECT: &str = "SELECT s.id, s.org_id, s.env_id, s.key, s.type, s.description, s.current_version, \
     s.deleted_at, s.created_at, s.updated_at, CAST(length(v.ciphertext) AS BIGINT) AS ct_len \
     FROM secrets s LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version";

pub(super) fn secret_row(r: &AnyRow) -> Result<SecretRow> {
    Ok(SecretRow {
        id: uuid(r, "id", "secrets")?,
        org_id: uuid(r, "org_id", "secrets")?,
        env_id: uuid(r, "env_id", "secrets")?,
        key: r.try_get("key")?,
        value_type: r.try_get("type")?,
        description: r.try_get("description")?,
        current_version: r.try_get("current_version")?,
        deleted_at: r.try_get("deleted_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        ciphertext_len: r.try_get::<Option<i64>, _>("ct_len")?.unwrap_or(0),
    })
}

/// Column names of a version row: plain, or with the `v_` prefix the reveal
/// join uses. Static so decoding allocates nothing for names.
pub(super) struct VersionCols {
    id: &'static str,
    org_id: &'static str,
    secret_id: &'static str,
    version: &'static str,
    value_type: &'static str,
    ciphertext: &'static str,
    wrapped_dek: &'static str,
    kek_version: &'static str,
    created_by: &'static str,
    created_at: &'static str,
}

const PLAIN: VersionCols = VersionCols {
    id: "id",
    org_id: "org_id",
    secret_id: "secret_id",
    version: "version",
    value_type: "type",
    ciphertext: "ciphertext",
    wrapped_dek: "wrapped_dek",
    kek_version: "kek_version",
    created_by: "created_by",
    created_at: "created_at",
};

pub(super) const PREFIXED: VersionCols = VersionCols {
    id: "v_id",
    org_id: "v_org_id",
    secret_id: "v_secret_id",
    version: "v_version",
    value_type: "v_type",
    ciphertext: "v_ciphertext",
    wrapped_dek: "v_wrapped_dek",
    kek_version: "v_kek_version",
    created_by: "v_created_by",
    created_at: "v_created_at",
};

/// Decode a version row; `with_blobs = false` for history listings, which
/// select no ciphertext.
pub(super) fn version_row(r: &AnyRow, c: &VersionCols, with_blobs: bool) -> Result<VersionRow> {
    let (ciphertext, wrapped_dek) = if with_blobs {
        (r.try_get(c.ciphertext)?, r.try_get(c.wrapped_dek)?)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(VersionRow {
        id: uuid(r, c.id, "secret_versions")?,
        org_id: uuid(r, c.org_id, "secret_versions")?,
        secret_id: uuid(r, c.secret_id, "secret_versions")?,
        version: r.try_get(c.version)?,
        value_type: r.try_get(c.value_type)?,
        ciphertext,
        wrapped_dek,
        kek_version: r.try_get(c.kek_version)?,
        created_by: r.try_get(c.created_by)?,
        created_at: r.try_get(c.created_at)?,
    })
}

fn query(sql: &'static str) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query::<Any>(sql)
}

#[async_trait]
impl Backend for SqlBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn keyring(&self) -> Result<Option<KeyringRow>> {
        let row = query(
            "SELECT seal_type, secret_shares, secret_threshold, encrypted_root, verify_tag, created_at \
             FROM keyring WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(KeyringRow {
                seal_type: r.try_get("seal_type")?,
                secret_shares: r.try_get("secret_shares")?,
                secret_threshold: r.try_get("secret_threshold")?,
                encrypted_root: r.try_get("encrypted_root")?,
                verify_tag: r.try_get("verify_tag")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn init_keyring(&self, k: &KeyringRow, t: &TokenRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        query(
            "INSERT INTO keyring (id, seal_type, secret_shares, secret_threshold, encrypted_root, verify_tag, created_at) \
             VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.seal_type)
        .bind(k.secret_shares)
        .bind(k.secret_threshold)
        .bind(&k.encrypted_root)
        .bind(&k.verify_tag)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match conflict("keyring")(e) {
            StorageError::Conflict(_) => StorageError::AlreadyInitialized,
            other => other,
        })?;
        insert_token(&mut tx, t).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE token_hash = $1")))
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} WHERE accessor = $1")))
            .bind(accessor.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn create_token(&self, t: &TokenRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_token(&mut tx, t).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tokens(&self, principal_id: Option<Uuid>) -> Result<Vec<TokenRow>> {
        let rows = match principal_id {
            Some(id) => {
                sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
                    "{TOKEN_SELECT} WHERE principal_id = $1 ORDER BY created_at"
                )))
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{TOKEN_SELECT} ORDER BY created_at")))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(token_row).collect()
    }

    async fn revoke_family(&self, family_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        query("DELETE FROM tokens WHERE family_id = $1")
            .bind(family_id.to_owned())
            .execute(&mut *tx)
            .await?;
        query("UPDATE refresh_tokens SET spent = 1 WHERE family_id = $1")
            .bind(family_id.to_owned())
            .execute(&mut *tx)
            .await?;
        // A device login approved into the session but not collected yet
        // must not start it again.
        query("UPDATE device_codes SET status = 'denied' WHERE family_id = $1 AND status = 'approved'")
            .bind(family_id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_token_tree(&self, accessor: &str) -> Result<u64> {
        let done = query(TOKEN_TREE_DELETE)
            .bind(accessor.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, keep_family: Option<&str>) -> Result<u64> {
        let keep = keep_family.unwrap_or("").to_owned();
        let mut tx = self.pool.begin().await?;
        // The user's tokens and, transitively, whatever was derived from them.
        let done = query(
            "WITH RECURSIVE doomed (accessor) AS ( \
                 SELECT accessor FROM tokens WHERE policy = 'user' AND principal_id = $1 \
                     AND ($2 = '' OR family_id IS NULL OR family_id <> $2) \
                 UNION SELECT t.accessor FROM tokens t JOIN doomed d ON t.parent_accessor = d.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM doomed)",
        )
        .bind(user_id.to_string())
        .bind(keep.clone())
        .execute(&mut *tx)
        .await?;
        query("UPDATE refresh_tokens SET spent = 1 WHERE user_id = $1 AND family_id <> $2")
            .bind(user_id.to_string())
            .bind(keep.clone())
            .execute(&mut *tx)
            .await?;
        query("UPDATE device_codes SET status = 'denied' WHERE user_id = $1 AND status = 'approved'")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn set_password(&self, user_id: Uuid, password_hash: &str) -> Result<()> {
        query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash.to_owned())
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool> {
        let done = query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, user_id: Uuid) -> Result<bool> {
        let id = user_id.to_string();
        let mut tx = self.pool.begin().await?;
        let orgs = query("SELECT org_id FROM memberships WHERE user_id = $1")
            .bind(id.clone())
            .fetch_all(&mut *tx)
            .await?;
        for row in &orgs {
            let org_id = uuid(row, "org_id", "memberships")?;
            // Row-level security: act for each organization in turn.
            self.act_for(&mut tx, org_id).await?;
            query("DELETE FROM grants WHERE org_id = $1 AND subject_kind = 'user' AND subject_id = $2")
                .bind(org_id.to_string())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            query("DELETE FROM group_members WHERE org_id = $1 AND user_id = $2")
                .bind(org_id.to_string())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
        }
        query(
            "WITH RECURSIVE doomed (accessor) AS ( \
                 SELECT accessor FROM tokens WHERE policy = 'user' AND principal_id = $1 \
                 UNION SELECT t.accessor FROM tokens t JOIN doomed d ON t.parent_accessor = d.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM doomed)",
        )
        .bind(id.clone())
        .execute(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM memberships WHERE user_id = $1",
            "DELETE FROM refresh_tokens WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "DELETE FROM device_codes WHERE user_id = $1",
        ] {
            query(sql).bind(id.clone()).execute(&mut *tx).await?;
        }
        let done = query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_user(&self, u: &UserRow) -> Result<()> {
        query(
            "INSERT INTO users (id, email, password_hash, totp_secret, totp_enabled, totp_last_step, failed_logins, \
             locked_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(u.id.to_string())
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.totp_secret.clone())
        .bind(i64::from(u.totp_enabled))
        .bind(u.totp_last_step)
        .bind(u.failed_logins)
        .bind(u.locked_until)
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(conflict("a user with this email exists"))?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{USER_SELECT} WHERE email = $1")))
            .bind(email.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{USER_SELECT} WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn set_login_state(&self, user_id: Uuid, failed_logins: i64, locked_until: i64) -> Result<()> {
        query("UPDATE users SET failed_logins = $1, locked_until = $2 WHERE id = $3")
            .bind(failed_logins)
            .bind(locked_until)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn count_login_failure(&self, user_id: Uuid) -> Result<i64> {
        let row = query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("failed_logins")).transpose()?.unwrap_or(0))
    }

    async fn lock_user_until(&self, user_id: Uuid, until: i64) -> Result<()> {
        query("UPDATE users SET locked_until = $1 WHERE id = $2 AND locked_until < $1")
            .bind(until)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_totp(&self, user_id: Uuid, secret: Option<&[u8]>, enabled: bool) -> Result<()> {
        query("UPDATE users SET totp_secret = $1, totp_enabled = $2 WHERE id = $3")
            .bind(secret.map(<[u8]>::to_vec))
            .bind(i64::from(enabled))
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn use_totp_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        let done = query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_recovery_codes(&self, user_id: Uuid, hashes: &[Vec<u8>]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        for h in hashes {
            query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id.to_string())
                .bind(h.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(&self, user_id: Uuid, hash: &[u8]) -> Result<bool> {
        let done = query("DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2")
            .bind(user_id.to_string())
            .bind(hash.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_refresh(&self, r: &RefreshRow) -> Result<()> {
        query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, spent, expires_at, created_at, auth_at) \
             VALUES ($1, $2, $3, 0, $4, $5, $6)",
        )
        .bind(r.token_hash.clone())
        .bind(&r.family_id)
        .bind(r.user_id.to_string())
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(r.auth_at)
        .execute(&self.pool)
        .await
        .map_err(conflict("refresh token exists"))?;
        Ok(())
    }

    async fn spend_refresh(&self, hash: &[u8]) -> Result<RefreshUse> {
        let row = query(
            "SELECT token_hash, family_id, user_id, spent, expires_at, created_at, auth_at FROM refresh_tokens \
             WHERE token_hash = $1",
        )
        .bind(hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(RefreshUse::Unknown);
        };
        let refresh = RefreshRow {
            token_hash: r.try_get("token_hash")?,
            family_id: r.try_get("family_id")?,
            user_id: uuid(&r, "user_id", "refresh_tokens")?,
            expires_at: r.try_get("expires_at")?,
            created_at: r.try_get("created_at")?,
            auth_at: r.try_get("auth_at")?,
        };
        // Compare-and-set: of two concurrent uses exactly one spends it.
        let done = query("UPDATE refresh_tokens SET spent = 1 WHERE token_hash = $1 AND spent = 0")
            .bind(hash.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(if done.rows_affected() == 1 {
            RefreshUse::Fresh(refresh)
        } else {
            RefreshUse::Reused(refresh)
        })
    }

    async fn create_device(&self, d: &DeviceRow) -> Result<()> {
        query(
            "INSERT INTO device_codes (device_hash, user_code, user_id, status, interval_s, last_poll, expires_at) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6)",
        )
        .bind(d.device_hash.clone())
        .bind(&d.user_code)
        .bind(&d.status)
        .bind(d.interval_s)
        .bind(d.last_poll)
        .bind(d.expires_at)
        .execute(&self.pool)
        .await
        .map_err(conflict("device code exists"))?;
        Ok(())
    }

    async fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{DEVICE_SELECT} WHERE user_code = $1")))
            .bind(user_code.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_row).transpose()
    }

    async fn poll_device(&self, device_hash: &[u8], now: i64) -> Result<Option<DeviceRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("{DEVICE_SELECT} WHERE device_hash = $1")))
            .bind(device_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row.as_ref().map(device_row).transpose()? else {
            return Ok(None);
        };
        query("UPDATE device_codes SET last_poll = $1 WHERE device_hash = $2")
            .bind(now)
            .bind(device_hash.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(Some(row))
    }

    async fn approve_device(
        &self,
        user_code: &str,
        user_id: Uuid,
        family_id: &str,
        auth_at: i64,
        now: i64,
    ) -> Result<bool> {
        let done = query(
            "UPDATE device_codes SET status = 'approved', user_id = $1, family_id = $4, auth_at = $5 \
             WHERE user_code = $2 AND status = 'pending' AND expires_at > $3",
        )
        .bind(user_id.to_string())
        .bind(user_code.to_owned())
        .bind(now)
        .bind(family_id.to_owned())
        .bind(auth_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_device(&self, device_hash: &[u8]) -> Result<bool> {
        let done = query("UPDATE device_codes SET status = 'done' WHERE device_hash = $1 AND status = 'approved'")
            .bind(device_hash.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_membership(&self, org_id: Uuid, user_id: Uuid, role: &str, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let updated = query("UPDATE memberships SET role = $1 WHERE org_id = $2 AND user_id = $3")
            .bind(role.to_owned())
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(org_id.to_string())
                .bind(user_id.to_string())
                .bind(role.to_owned())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict("the membership was changed concurrently"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_membership(&self, org_id: Uuid, user_id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        // Grants end with the membership: re-adding someone starts from nothing.
        query("DELETE FROM grants WHERE org_id = $1 AND subject_kind = 'user' AND subject_id = $2")
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        query("DELETE FROM group_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn membership(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<String>> {
        let row = query("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("role")).transpose()?)
    }

    async fn members(&self, org_id: Uuid) -> Result<Vec<(UserRow, String)>> {
        let rows = query(
            "SELECT u.id, u.email, u.password_hash, u.totp_secret, u.totp_enabled, u.totp_last_step, u.failed_logins, \
                    u.locked_until, u.created_at, u.disabled, m.role \
             FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.email",
        )
        .bind(org_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((user_row(r)?, r.try_get("role")?))).collect()
    }

    async fn orgs_of(&self, user_id: Uuid) -> Result<Vec<(OrgRow, String)>> {
        let rows = query(
            "SELECT o.id, o.slug, o.name, o.created_at, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = $1 ORDER BY o.slug",
        )
        .bind(user_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((org_row(r)?, r.try_get("role")?))).collect()
    }

    async fn create_org(&self, org: &OrgRow, kek: &KekRow, creator: Option<(Uuid, u64)>) -> Result<()> {
        let mut tx = self.tenant_tx(org.id).await?;
        if let Some((user_id, max)) = creator {
            // Compare-and-increment: parallel creations cannot overshoot.
            let counted = query("UPDATE users SET orgs_created = orgs_created + 1 WHERE id = $1 AND orgs_created < $2")
                .bind(user_id.to_string())
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            if counted.rows_affected() != 1 {
                return Err(StorageError::LimitReached);
            }
        }
        query("INSERT INTO orgs (id, slug, name, kek_version, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(org.id.to_string())
            .bind(&org.slug)
            .bind(&org.name)
            .bind(kek.version)
            .bind(org.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict("an organization with this slug exists"))?;
        query("INSERT INTO kms_keys (org_id, version, wrapped_key, created_at) VALUES ($1, $2, $3, $4)")
            .bind(kek.org_id.to_string())
            .bind(kek.version)
            .bind(&kek.wrapped_key)
            .bind(kek.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_orgs(&self) -> Result<Vec<OrgRow>> {
        let rows = query("SELECT id, slug, name, created_at FROM orgs ORDER BY slug")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(org_row).collect()
    }

    async fn org(&self, slug: &str) -> Result<Option<OrgRow>> {
        let row = query("SELECT id, slug, name, created_at FROM orgs WHERE slug = $1")
            .bind(slug.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(org_row).transpose()
    }

    async fn kek(&self, org_id: Uuid, version: i64) -> Result<Option<KekRow>> {
        let row = query("SELECT wrapped_key, created_at FROM kms_keys WHERE org_id = $1 AND version = $2")
            .bind(org_id.to_string())
            .bind(version)
            .fetch_optional(&mut *self.tenant(org_id).await?)
            .await?;
        row.map(|r| {
            Ok(KekRow {
                org_id,
                version,
                wrapped_key: r.try_get("wrapped_key")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn create_project(&self, p: &ProjectRow) -> Result<()> {
        query("INSERT INTO projects (id, org_id, slug, name, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(p.id.to_string())
            .bind(p.org_id.to_string())
            .bind(&p.slug)
            .bind(&p.name)
            .bind(p.created_at)
            .execute(&mut *self.tenant(p.org_id).await?)
            .await
            .map_err(conflict("a project with this slug exists in the organization"))?;
        Ok(())
    }

    async fn list_projects(&self, org_id: Uuid) -> Result<Vec<ProjectRow>> {
        let rows = query("SELECT id, org_id, slug, name, created_at FROM projects WHERE org_id = $1 ORDER BY slug")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(project_row).collect()
    }

    async fn project(&self, org_id: Uuid, slug: &str) -> Result<Option<ProjectRow>> {
        let row = query("SELECT id, org_id, slug, name, created_at FROM projects WHERE org_id = $1 AND slug = $2")
            .bind(org_id.to_string())
            .bind(slug.to_owned())
            .fetch_optional(&mut *self.tenant(org_id).await?)
            .await?;
        row.as_ref().map(project_row).transpose()
    }

    async fn create_env(&self, e: &EnvRow) -> Result<()> {
        query(
            "INSERT INTO environments (id, org_id, project_id, slug, name, protected, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.to_string())
        .bind(e.org_id.to_string())
        .bind(e.project_id.to_string())
        .bind(&e.slug)
        .bind(&e.name)
        .bind(i64::from(e.protected))
        .bind(e.created_at)
        .execute(&mut *self.tenant(e.org_id).await?)
        .await
        .map_err(conflict("an environment with this slug exists in the project"))?;
        Ok(())
    }

    async fn list_envs(&self, org_id: Uuid) -> Result<Vec<EnvRow>> {
        let rows = query(
            "SELECT id, org_id, project_id, slug, name, protected, created_at FROM environments \
             WHERE org_id = $1 ORDER BY project_id, slug",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(env_row).collect()
    }

    async fn resolve_env(&self, org: &str, project: &str, env: &str) -> Result<Option<EnvPath>> {
        let row = query("SELECT id, kek_version FROM orgs WHERE slug = $1")
            .bind(org.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let org_id = uuid(&row, "id", "orgs")?;
        let kek_version: i64 = row.try_get("kek_version")?;
        let row = query(
            "SELECT p.id AS project_id, e.id AS env_id \
             FROM projects p JOIN environments e ON e.project_id = p.id \
             WHERE p.org_id = $1 AND e.org_id = $1 AND p.slug = $2 AND e.slug = $3",
        )
        .bind(org_id.to_string())
        .bind(project.to_owned())
        .bind(env.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.map(|r| {
            Ok(EnvPath {
                org_id,
                project_id: uuid(&r, "project_id", "projects")?,
                env_id: uuid(&r, "env_id", "environments")?,
                kek_version,
            })
        })
        .transpose()
    }

    async fn create_group(&self, g: &GroupRow) -> Result<()> {
        query("INSERT INTO groups (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(g.id.to_string())
            .bind(g.org_id.to_string())
            .bind(&g.name)
            .bind(g.created_at)
            .execute(&mut *self.tenant(g.org_id).await?)
            .await
            .map_err(conflict("a group with this name exists in the organization"))?;
        Ok(())
    }

    async fn groups(&self, org_id: Uuid) -> Result<Vec<(GroupRow, Vec<String>)>> {
        let mut conn = self.tenant(org_id).await?;
        let rows = query("SELECT id, org_id, name, created_at FROM groups WHERE org_id = $1 ORDER BY name")
            .bind(org_id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        let members = query("SELECT group_id, user_id FROM group_members WHERE org_id = $1")
            .bind(org_id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        // Never hold a tenant connection while waiting for a shared one.
        drop(conn);
        let emails: HashMap<String, String> = self
            .members(org_id)
            .await?
            .into_iter()
            .map(|(u, _)| (u.id.to_string(), u.email))
            .collect();
        rows.iter()
            .map(|r| {
                let g = GroupRow {
                    id: uuid(r, "id", "groups")?,
                    org_id,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                };
                let gid = g.id.to_string();
                let mut list = Vec::new();
                for m in &members {
                    if m.try_get::<String, _>("group_id")? == gid
                        && let Some(e) = emails.get(&m.try_get::<String, _>("user_id")?)
                    {
                        list.push(e.clone());
                    }
                }
                list.sort();
                Ok((g, list))
            })
            .collect()
    }

    async fn add_group_member(&self, org_id: Uuid, group_id: Uuid, user_id: Uuid) -> Result<()> {
        query("INSERT INTO group_members (org_id, group_id, user_id) VALUES ($1, $2, $3)")
            .bind(org_id.to_string())
            .bind(group_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *self.tenant(org_id).await?)
            .await
            .map_err(conflict("the user is in the group already"))?;
        Ok(())
    }

    async fn remove_group_member(&self, org_id: Uuid, group_id: Uuid, user_id: Uuid) -> Result<bool> {
        let done = query("DELETE FROM group_members WHERE org_id = $1 AND group_id = $2 AND user_id = $3")
            .bind(org_id.to_string())
            .bind(group_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *self.tenant(org_id).await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_groups(&self, org_id: Uuid, user_id: Uuid) -> Result<Vec<Uuid>> {
        let rows = query("SELECT group_id FROM group_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(|r| uuid(r, "group_id", "group_members")).collect()
    }

    async fn create_service_account(&self, sa: &ServiceAccountRow) -> Result<()> {
        query(
            "INSERT INTO service_accounts (id, org_id, name, cidrs, cert_spki_sha256, cert_subject_cn, cert_dns_san, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(sa.id.to_string())
        .bind(sa.org_id.to_string())
        .bind(&sa.name)
        .bind(&sa.cidrs)
        .bind(sa.cert_spki_sha256.clone())
        .bind(sa.cert_subject_cn.clone())
        .bind(sa.cert_dns_san.clone())
        .bind(sa.created_at)
        .execute(&mut *self.tenant(sa.org_id).await?)
        .await
        .map_err(|e| {
            // Two unique keys: (org_id, name), and the certificate's SPKI
            // server-wide (0009). The other org is not named.
            let spki = matches!(&e, sqlx::Error::Database(db) if db.message().contains("cert_spki")
                || db.constraint().is_some_and(|c| c.contains("cert_spki")));
            if spki {
                conflict(
                    "certificate.spki_sha256 is already mapped to a service account on this server; a certificate \
                     identifies at most one account",
                )(e)
            } else {
                conflict("a service account with this name exists in the organization")(e)
            }
        })?;
        Ok(())
    }

    async fn service_accounts(&self, org_id: Uuid) -> Result<Vec<ServiceAccountRow>> {
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "{SA_SELECT} WHERE org_id = $1 ORDER BY name"
        )))
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(sa_row).collect()
    }

    async fn service_account(&self, org_id: Uuid, id: Uuid) -> Result<Option<ServiceAccountRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "{SA_SELECT} WHERE org_id = $1 AND id = $2"
        )))
        .bind(org_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.as_ref().map(sa_row).transpose()
    }

    async fn delete_service_account(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        query("DELETE FROM grants WHERE org_id = $1 AND subject_id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        query("DELETE FROM tokens WHERE org_id = $1 AND principal_id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = query("DELETE FROM service_accounts WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_grant(&self, g: &GrantRow) -> Result<()> {
        query(
            "INSERT INTO grants (id, org_id, subject_kind, subject_id, project_id, env_id, permissions, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(g.id.to_string())
        .bind(g.org_id.to_string())
        .bind(&g.subject_kind)
        .bind(g.subject_id.to_string())
        .bind(g.project_id.map(|u| u.to_string()))
        .bind(g.env_id.map(|u| u.to_string()))
        .bind(g.permissions)
        .bind(g.created_at)
        .execute(&mut *self.tenant(g.org_id).await?)
        .await?;
        Ok(())
    }

    async fn grants(&self, org_id: Uuid) -> Result<Vec<GrantRow>> {
        let rows = query(
            "SELECT id, org_id, subject_kind, subject_id, project_id, env_id, permissions, created_at FROM grants \
             WHERE org_id = $1 ORDER BY created_at, id",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(grant_row).collect()
    }

    async fn delete_grant(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let done = query("DELETE FROM grants WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *self.tenant(org_id).await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_secrets(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<SecretRow>> {
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "{SECRET_SELECT} WHERE s.org_id = $1 AND s.env_id = $2 ORDER BY s.key"
        )))
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(secret_row).collect()
    }

    async fn secret(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<SecretRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "{SECRET_SELECT} WHERE s.org_id = $1 AND s.env_id = $2 AND s.key = $3"
        )))
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .bind(key.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.as_ref().map(secret_row).transpose()
    }

    async fn current_secret(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<(SecretRow, VersionRow)>> {
        let row = query(
            "SELECT s.id, s.org_id, s.env_id, s.key, s.type, s.description, s.current_version, s.deleted_at, \
                    s.created_at, s.updated_at, CAST(length(v.ciphertext) AS BIGINT) AS ct_len, v.id AS v_id, \
                    v.org_id AS v_org_id, v.secret_id AS v_secret_id, \
                    v.version AS v_version, v.type AS v_type, v.ciphertext AS v_ciphertext, \
                    v.wrapped_dek AS v_wrapped_dek, v.kek_version AS v_kek_version, v.created_by AS v_created_by, \
                    v.created_at AS v_created_at \
             FROM secrets s JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version \
             WHERE s.org_id = $1 AND v.org_id = $1 AND s.env_id = $2 AND s.key = $3",
        )
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .bind(key.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.map(|r| Ok((secret_row(&r)?, version_row(&r, &PREFIXED, true)?)))
            .transpose()
    }

    async fn version(&self, org_id: Uuid, secret_id: Uuid, version: i64) -> Result<Option<VersionRow>> {
        let row = query(
            "SELECT id, org_id, secret_id, version, type, ciphertext, wrapped_dek, kek_version, created_by, created_at \
             FROM secret_versions WHERE org_id = $1 AND secret_id = $2 AND version = $3",
        )
        .bind(org_id.to_string())
        .bind(secret_id.to_string())
        .bind(version)
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.map(|r| version_row(&r, &PLAIN, true)).transpose()
    }

    async fn versions(&self, org_id: Uuid, secret_id: Uuid) -> Result<Vec<VersionRow>> {
        let rows = query(
            "SELECT id, org_id, secret_id, version, type, kek_version, created_by, created_at \
             FROM secret_versions WHERE org_id = $1 AND secret_id = $2 ORDER BY version",
        )
        .bind(org_id.to_string())
        .bind(secret_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(|r| version_row(r, &PLAIN, false)).collect()
    }

    async fn current_values(&self, org_id: Uuid, env_id: Uuid) -> Result<Arc<Vec<CurrentValue>>> {
        let mut conn = self.tenant(org_id).await?;
        let revision: i64 = query("SELECT revision FROM environments WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(env_id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("revision"))
            .transpose()?
            .unwrap_or(0);
        if let Some(rows) = self.values.get(env_id, revision) {
            return Ok(rows);
        }
        let rows = query(
            "SELECT s.key, s.id AS secret_id, v.id AS version_id, v.version, v.kek_version, v.ciphertext, v.wrapped_dek \
             FROM secrets s JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version \
             WHERE s.org_id = $1 AND v.org_id = $1 AND s.env_id = $2 AND s.deleted_at IS NULL ORDER BY s.key",
        )
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        drop(conn);
        let rows = Arc::new(
            rows.iter()
                .map(|r| {
                    Ok(CurrentValue {
                        key: r.try_get("key")?,
                        secret_id: uuid(r, "secret_id", "secrets")?,
                        version_id: uuid(r, "version_id", "secret_versions")?,
                        version: r.try_get("version")?,
                        kek_version: r.try_get("kek_version")?,
                        ciphertext: r.try_get("ciphertext")?,
                        wrapped_dek: r.try_get("wrapped_dek")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        );
        // Rows read after the revision are at least as new as it: safe to
        // file under it (a newer revision only causes a refetch).
        self.values.put(env_id, revision, rows.clone());
        Ok(rows)
    }

    fn drop_caches(&self) {
        if let Ok(mut map) = self.values.map.write() {
            map.clear();
        }
    }

    async fn notify(&self, payload: &str) -> Result<()> {
        self.notify_all(payload).await
    }

    fn cluster(&self) -> Option<super::cluster::ClusterLink> {
        self.cluster.clone()
    }

    async fn try_lock_job(&self, job: &str) -> Result<Option<super::cluster::JobLock>> {
        match &self.cluster {
            Some(link) => link.try_lock(job).await,
            None => Ok(Some(super::cluster::JobLock::local())),
        }
    }

    fn forget_values(&self, env_id: Uuid) {
        if let Ok(mut map) = self.values.map.write() {
            map.remove(&env_id);
        }
    }

    async fn purge_expired(&self, now: i64) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let mut n = 0;
        for sql in [
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM device_codes WHERE expires_at < $1",
        ] {
            n += query(sql).bind(now).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn snapshot(&self) -> Result<super::backup::Snapshot> {
        self.snapshot_all().await
    }

    async fn restore(
        &self,
        snap: &super::backup::Snapshot,
        progress: &mut (dyn for<'s> FnMut(&'s str, usize) + Send),
    ) -> Result<()> {
        self.restore_all(snap, progress).await
    }

    async fn put_version(&self, s: &SecretRow, expected_current: i64, v: &VersionRow) -> Result<()> {
        let mut tx = self.tenant_tx(s.org_id).await?;
        if expected_current == 0 {
            query(
                "INSERT INTO secrets (id, org_id, env_id, key, type, description, current_version, deleted_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)",
            )
            .bind(s.id.to_string())
            .bind(s.org_id.to_string())
            .bind(s.env_id.to_string())
            .bind(&s.key)
            .bind(&s.value_type)
            .bind(&s.description)
            .bind(v.version)
            .bind(s.created_at)
            .bind(s.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict("the secret was created concurrently"))?;
        } else {
            let done = query(
                "UPDATE secrets SET type = $1, description = $2, current_version = $3, deleted_at = NULL, updated_at = $4 \
                 WHERE id = $5 AND org_id = $6 AND current_version = $7",
            )
            .bind(&s.value_type)
            .bind(&s.description)
            .bind(v.version)
            .bind(s.updated_at)
            .bind(s.id.to_string())
            .bind(s.org_id.to_string())
            .bind(expected_current)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StorageError::Conflict("the secret was changed concurrently"));
            }
        }
        query(
            "INSERT INTO secret_versions (id, org_id, secret_id, version, type, ciphertext, wrapped_dek, kek_version, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(v.id.to_string())
        .bind(s.org_id.to_string())
        .bind(v.secret_id.to_string())
        .bind(v.version)
        .bind(&v.value_type)
        .bind(&v.ciphertext)
        .bind(&v.wrapped_dek)
        .bind(v.kek_version)
        .bind(&v.created_by)
        .bind(v.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("this version exists already"))?;
        bump_revision(&mut tx, BUMP_ENV, s.org_id, s.env_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_deleted(&self, org_id: Uuid, secret_id: Uuid, deleted_at: Option<i64>, now: i64) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("UPDATE secrets SET deleted_at = $1, updated_at = $2 WHERE org_id = $3 AND id = $4")
            .bind(deleted_at)
            .bind(now)
            .bind(org_id.to_string())
            .bind(secret_id.to_string())
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, BUMP_BY_SECRET, org_id, secret_id).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_secret(&self, org_id: Uuid, secret_id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        bump_revision(&mut tx, BUMP_BY_SECRET, org_id, secret_id).await?;
        query("DELETE FROM secret_versions WHERE org_id = $1 AND secret_id = $2")
            .bind(org_id.to_string())
            .bind(secret_id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = query("DELETE FROM secrets WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(secret_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Count a change to environment `$2`'s secrets (see [`ValuesCache`]).
const BUMP_ENV: &str = "UPDATE environments SET revision = revision + 1 WHERE org_id = $1 AND id = $2";
/// Count a change to the secrets of the environment of secret `$2`.
const BUMP_BY_SECRET: &str = "UPDATE environments SET revision = revision + 1 \
     WHERE org_id = $1 AND id = (SELECT env_id FROM secrets WHERE org_id = $1 AND id = $2)";

/// Run one of the `BUMP_*` statements in `tx`.
async fn bump_revision(tx: &mut sqlx::Transaction<'_, Any>, sql: &'static str, org_id: Uuid, id: Uuid) -> Result<()> {
    query(sql)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const TOKEN_SELECT: &str = "SELECT accessor, token_hash, policy, display_name, created_at, expires_at, principal_id, \
     org_id, bound_spki, family_id, parent_accessor, auth_at FROM tokens";

/// Delete token `$1` and every token derived from it, transitively.
const TOKEN_TREE_DELETE: &str = "WITH RECURSIVE doomed (accessor) AS ( \
         SELECT accessor FROM tokens WHERE accessor = $1 \
         UNION SELECT t.accessor FROM tokens t JOIN doomed d ON t.parent_accessor = d.accessor) \
     DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM doomed)";

fn opt_uuid(r: &AnyRow, col: &str, table: &'static str) -> Result<Option<Uuid>> {
    let text: Option<String> = r.try_get(col)?;
    text.map(|t| {
        Uuid::parse_str(&t).map_err(|_| StorageError::Corrupt {
            table,
            what: format!("column {col} is not a UUID"),
        })
    })
    .transpose()
}

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        accessor: r.try_get("accessor")?,
        token_hash: r.try_get("token_hash")?,
        policy: r.try_get("policy")?,
        display_name: r.try_get("display_name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        principal_id: opt_uuid(r, "principal_id", "tokens")?,
        org_id: opt_uuid(r, "org_id", "tokens")?,
        bound_spki: r.try_get("bound_spki")?,
        family_id: r.try_get("family_id")?,
        parent_accessor: r.try_get("parent_accessor")?,
        auth_at: r.try_get("auth_at")?,
    })
}

async fn insert_token(tx: &mut sqlx::Transaction<'_, Any>, t: &TokenRow) -> Result<()> {
    query(
        "INSERT INTO tokens (accessor, token_hash, policy, display_name, created_at, expires_at, principal_id, org_id, \
         bound_spki, family_id, parent_accessor, auth_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&t.accessor)
    .bind(&t.token_hash)
    .bind(&t.policy)
    .bind(&t.display_name)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.principal_id.map(|u| u.to_string()))
    .bind(t.org_id.map(|u| u.to_string()))
    .bind(t.bound_spki.clone())
    .bind(t.family_id.clone())
    .bind(t.parent_accessor.clone())
    .bind(t.auth_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("token exists"))?;
    Ok(())
}

const USER_SELECT: &str = "SELECT id, email, password_hash, totp_secret, totp_enabled, totp_last_step, failed_logins, \
     locked_until, created_at, disabled FROM users";

fn user_row(r: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: uuid(r, "id", "users")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret: r.try_get("totp_secret")?,
        totp_enabled: r.try_get::<i64, _>("totp_enabled")? != 0,
        totp_last_step: r.try_get("totp_last_step")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get("locked_until")?,
        created_at: r.try_get("created_at")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
    })
}

const DEVICE_SELECT: &str = "SELECT device_hash, user_code, user_id, status, interval_s, last_poll, expires_at, family_id, auth_at \
     FROM device_codes";

fn device_row(r: &AnyRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        device_hash: r.try_get("device_hash")?,
        user_code: r.try_get("user_code")?,
        user_id: opt_uuid(r, "user_id", "device_codes")?,
        status: r.try_get("status")?,
        interval_s: r.try_get("interval_s")?,
        last_poll: r.try_get("last_poll")?,
        expires_at: r.try_get("expires_at")?,
        family_id: r.try_get("family_id")?,
        auth_at: r.try_get("auth_at")?,
    })
}

const SA_SELECT: &str = "SELECT id, org_id, name, cidrs, cert_spki_sha256, cert_subject_cn, cert_dns_san, created_at \
     FROM service_accounts";

fn sa_row(r: &AnyRow) -> Result<ServiceAccountRow> {
    Ok(ServiceAccountRow {
        id: uuid(r, "id", "service_accounts")?,
        org_id: uuid(r, "org_id", "service_accounts")?,
        name: r.try_get("name")?,
        cidrs: r.try_get("cidrs")?,
        cert_spki_sha256: r.try_get("cert_spki_sha256")?,
        cert_subject_cn: r.try_get("cert_subject_cn")?,
        cert_dns_san: r.try_get("cert_dns_san")?,
        created_at: r.try_get("created_at")?,
    })
}

fn grant_row(r: &AnyRow) -> Result<GrantRow> {
    Ok(GrantRow {
        id: uuid(r, "id", "grants")?,
        org_id: uuid(r, "org_id", "grants")?,
        subject_kind: r.try_get("subject_kind")?,
        subject_id: uuid(r, "subject_id", "grants")?,
        project_id: opt_uuid(r, "project_id", "grants")?,
        env_id: opt_uuid(r, "env_id", "grants")?,
        permissions: r.try_get("permissions")?,
        created_at: r.try_get("created_at")?,
    })
}
