//! The secrets aggregate: secrets (metadata rows), their immutable
//! versions (ciphertext + wrapped DEK) and the inject cache of current
//! values. Tenant rows only: every query filters on `org_id` and runs on a
//! connection acting for that organization (PostgreSQL row-level security
//! checks it a second time).
//!
//! [`SecretStore`] (a supertrait of [`super::Backend`]) is implemented once
//! here for [`SqlBackend`]. Invariants:
//! - a version and its secret row are written in one transaction, as a
//!   compare-and-set on the secret's current version: a write that raced
//!   another fails with [`StorageError::Conflict`] and writes nothing;
//! - every write to an environment's secrets bumps the environment's
//!   `revision` in the same transaction, which is what the inject cache
//!   ([`ValuesCache`]) is keyed on;
//! - history listings carry no ciphertext.
//!
//! The KV v2 view of the same rows is [`super::kv::KvStore`]'s; it shares
//! this module's row decoders.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::db::{conflict, query, uuid};
use super::{Result, SqlBackend, StorageError};

/// A secret's metadata row.
#[derive(Debug, Clone)]
pub struct SecretRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// variable name
    pub key: String,
    /// value type of the current version
    pub value_type: String,
    /// free text
    pub description: String,
    /// latest version number
    pub current_version: i64,
    /// unix ms when soft-deleted
    pub deleted_at: Option<i64>,
    /// unix ms
    pub created_at: i64,
    /// unix ms
    pub updated_at: i64,
    /// ciphertext bytes of the current version (gives the value's length
    /// without decrypting); 0 when not loaded
    pub ciphertext_len: i64,
    /// the writer of the current version, as [`VersionRow::author`]; ""
    /// when not loaded (or written before names were recorded)
    pub author: String,
}

/// One immutable version of a secret (ciphertext + wrapped DEK).
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// row id (AAD of the wrapped DEK)
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// secret
    pub secret_id: Uuid,
    /// version number, from 1
    pub version: i64,
    /// value type of this version
    pub value_type: String,
    /// value encrypted by the DEK
    pub ciphertext: Vec<u8>,
    /// DEK wrapped by the org KEK
    pub wrapped_dek: Vec<u8>,
    /// which KEK version wrapped the DEK
    pub kek_version: i64,
    /// token accessor of the writer
    pub created_by: String,
    /// the writer by name: "root", "user:EMAIL", "service_account:NAME"
    /// ("" for versions written before names were recorded)
    pub author: String,
    /// unix ms
    pub created_at: i64,
}

/// What inject needs of a live secret's current version: its blobs and the
/// ids their AADs bind them to.
#[derive(Debug, Clone)]
pub struct CurrentValue {
    /// variable name
    pub key: String,
    /// secret
    pub secret_id: Uuid,
    /// the secret_versions row id
    pub version_id: Uuid,
    /// version number
    pub version: i64,
    /// which KEK version wrapped the DEK
    pub kek_version: i64,
    /// value encrypted by the DEK
    pub ciphertext: Vec<u8>,
    /// DEK wrapped by the org KEK
    pub wrapped_dek: Vec<u8>,
}

/// Storage of secrets and their versions; see the module doc.
#[async_trait]
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// Secrets of an environment (including soft-deleted ones), by key.
    async fn list_secrets(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<SecretRow>>;
    /// One secret by key.
    async fn secret(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<SecretRow>>;
    /// One secret by key with its current version, in one query (the
    /// reveal path).
    async fn current_secret(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<(SecretRow, VersionRow)>>;
    /// One version of a secret.
    async fn version(&self, org_id: Uuid, secret_id: Uuid, version: i64) -> Result<Option<VersionRow>>;
    /// Every version of a secret, oldest first, without ciphertexts.
    async fn versions(&self, org_id: Uuid, secret_id: Uuid) -> Result<Vec<VersionRow>>;
    /// The current version of every live secret of an environment, only the
    /// columns decryption needs: the inject query.
    async fn current_values(&self, org_id: Uuid, env_id: Uuid) -> Result<Arc<Vec<CurrentValue>>>;
    /// Drop the cached inject rows of one environment.
    fn forget_values(&self, env_id: Uuid);
    /// Append `version` and move `secret` to it, in one transaction.
    /// `expected_current` is the version the writer based its write on
    /// (0 = the secret must not exist yet); if another write got there first
    /// this fails with [`StorageError::Conflict`] and writes nothing.
    async fn put_version(&self, secret: &SecretRow, expected_current: i64, version: &VersionRow) -> Result<()>;
    /// Several [`Self::put_version`]s in one environment, in one
    /// transaction: all of them or (on any [`StorageError::Conflict`])
    /// none.
    async fn put_versions(&self, writes: &[(SecretRow, i64, VersionRow)]) -> Result<()>;
    /// Set or clear the soft-delete mark. False if no such secret.
    async fn set_deleted(&self, org_id: Uuid, secret_id: Uuid, deleted_at: Option<i64>, now: i64) -> Result<bool>;
    /// Remove a secret and all its versions for good. False if no such secret.
    async fn purge_secret(&self, org_id: Uuid, secret_id: Uuid) -> Result<bool>;
}

/// The inject rows of recently injected environments (ciphertexts and
/// wrapped DEKs only, nothing in clear), each stamped with the environment's
/// `revision`. Every write to an environment's secrets bumps its revision in
/// the same transaction, so one single-row query tells whether the cached
/// rows are still current, on this server or any other sharing the database.
/// Entries also expire after a second, which bounds the effect of edits made
/// behind coffer's back (a database restored in place).
#[derive(Default)]
pub(super) struct ValuesCache {
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

    /// Forget every environment (on seal).
    pub(super) fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }

    /// Forget one environment.
    fn remove(&self, env_id: Uuid) {
        if let Ok(mut map) = self.map.write() {
            map.remove(&env_id);
        }
    }
}

/// A secret row with the ciphertext length of its current version.
const SECRET_SELECT: &str = "SELECT s.id, s.org_id, s.env_id, s.key, s.type, s.description, s.current_version, \
     s.deleted_at, s.created_at, s.updated_at, CAST(length(v.ciphertext) AS BIGINT) AS ct_len, \
     v.author AS cur_author FROM secrets s LEFT JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version";

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
        // Only the listing selects it (the reveal and KV joins carry the
        // version's own author).
        author: r
            .try_get::<Option<String>, _>("cur_author")
            .ok()
            .flatten()
            .unwrap_or_default(),
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
    author: &'static str,
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
    author: "author",
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
    author: "v_author",
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
        author: r.try_get(c.author)?,
        created_at: r.try_get(c.created_at)?,
    })
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

#[async_trait]
impl SecretStore for SqlBackend {
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
                    v.wrapped_dek AS v_wrapped_dek, v.kek_version AS v_kek_version, v.created_by AS v_created_by, v.author AS v_author, \
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
            "SELECT id, org_id, secret_id, version, type, ciphertext, wrapped_dek, kek_version, created_by, author, created_at \
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
            "SELECT id, org_id, secret_id, version, type, kek_version, created_by, author, created_at \
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

    fn forget_values(&self, env_id: Uuid) {
        self.values.remove(env_id);
    }

    async fn put_version(&self, s: &SecretRow, expected_current: i64, v: &VersionRow) -> Result<()> {
        let mut tx = self.tenant_tx(s.org_id).await?;
        append_version(&mut tx, s, expected_current, v).await?;
        bump_revision(&mut tx, BUMP_ENV, s.org_id, s.env_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_versions(&self, writes: &[(SecretRow, i64, VersionRow)]) -> Result<()> {
        let Some((first, _, _)) = writes.first() else {
            return Ok(());
        };
        let (org_id, env_id) = (first.org_id, first.env_id);
        if writes.iter().any(|(s, _, _)| s.org_id != org_id || s.env_id != env_id) {
            return Err(StorageError::Corrupt {
                table: "secrets",
                what: "one batch of versions must be of one environment".into(),
            });
        }
        let mut tx = self.tenant_tx(org_id).await?;
        for (s, expected, v) in writes {
            append_version(&mut tx, s, *expected, v).await?;
        }
        bump_revision(&mut tx, BUMP_ENV, org_id, env_id).await?;
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

/// Append one version in `tx` and move its secret to it (compare-and-set
/// on the current version; 0 = create).
async fn append_version(
    tx: &mut sqlx::Transaction<'static, Any>,
    s: &SecretRow,
    expected_current: i64,
    v: &VersionRow,
) -> Result<()> {
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
            .execute(&mut **tx)
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
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict("the secret was changed concurrently"));
        }
    }
    query(
            "INSERT INTO secret_versions (id, org_id, secret_id, version, type, ciphertext, wrapped_dek, kek_version, created_by, created_at, author) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .bind(&v.author)
        .execute(&mut **tx)
        .await
        .map_err(conflict("this version exists already"))?;
    Ok(())
}
