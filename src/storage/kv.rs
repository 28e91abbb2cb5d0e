//! Storage of the KV v2 mount (the Vault-compatible `secret/`): per-version
//! delete/destroy state, per-key metadata and the mount configuration.
//!
//! A trait of its own ([`KvStore`], a supertrait of [`super::Backend`]) so
//! the Vault mapping stays out of the data path's trait; implemented once
//! here for [`SqlBackend`] in the same portable SQL.
//!
//! Invariants:
//! - a KV version *is* a `secret_versions` row: no value is stored twice;
//! - destroying a version overwrites its ciphertext and wrapped DEK with
//!   empty blobs in the same statement that flags it: the key material is
//!   gone for good, and no later undelete can bring it back;
//! - the current version's deleted state is the secret's own soft delete
//!   (`secrets.deleted_at`), so the native API and KV agree on it;
//! - every change bumps the environment's revision (inject cache).

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::db::query;
use super::secrets::{PREFIXED, secret_row, version_row};
use super::{Result, SecretRow, SqlBackend, VersionRow};

/// The KV state of one secret version (no value).
#[derive(Debug, Clone)]
pub struct KvVersionRow {
    /// version number
    pub version: i64,
    /// unix ms
    pub created_at: i64,
    /// unix ms of a KV soft delete of this version
    pub deleted_at: Option<i64>,
    /// key material destroyed for good
    pub destroyed: bool,
}

/// Per-key KV metadata (Vault's `metadata/` fields coffer stores).
#[derive(Debug, Clone)]
pub struct KvMetaRow {
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// secret key
    pub key: String,
    /// 0 = the mount's setting
    pub max_versions: i64,
    /// writes must carry `options.cas`
    pub cas_required: bool,
    /// a Go duration string, stored and returned as given
    pub delete_version_after: String,
    /// JSON object of string → string
    pub custom_metadata: String,
    /// unix ms
    pub created_at: i64,
    /// unix ms
    pub updated_at: i64,
}

/// The mount's configuration (`secret/config`).
#[derive(Debug, Clone, Default)]
pub struct KvConfigRow {
    /// versions kept per key (0 = Vault's default, 10)
    pub max_versions: i64,
    /// every write must carry `options.cas`
    pub cas_required: bool,
    /// a Go duration string
    pub delete_version_after: String,
}

/// What [`KvStore::kv_mark`] does to the listed versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvVersionOp {
    /// soft delete (reversible)
    Delete,
    /// undo a soft delete (not of a destroyed version)
    Undelete,
    /// erase the ciphertext and wrapped DEK for good
    Destroy,
}

/// KV v2 storage; see the module doc for the invariants.
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// A secret, its current version (with blobs) and the key's custom
    /// metadata JSON (None without metadata), in one query: the KV read path.
    async fn kv_current(
        &self,
        org_id: Uuid,
        env_id: Uuid,
        key: &str,
    ) -> Result<Option<(SecretRow, VersionRow, Option<String>)>>;
    /// Every version of a secret, oldest first.
    async fn kv_versions(&self, org_id: Uuid, secret_id: Uuid) -> Result<Vec<KvVersionRow>>;
    /// Apply `op` to `versions` of a secret (unknown numbers are ignored, as
    /// Vault does), in one transaction; the current version also sets or
    /// clears the secret's soft delete.
    async fn kv_mark(&self, org_id: Uuid, secret_id: Uuid, versions: &[i64], op: KvVersionOp, now: i64) -> Result<()>;
    /// Remove every version of a secret older than `keep_from` (Vault's
    /// `max_versions`); the current version is never removed.
    async fn kv_prune(&self, org_id: Uuid, secret_id: Uuid, keep_from: i64) -> Result<u64>;
    /// A key's metadata, if any was written.
    async fn kv_metadata(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<KvMetaRow>>;
    /// The keys of an environment that have metadata (with or without a
    /// version), sorted.
    async fn kv_metadata_keys(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<String>>;
    /// Insert or replace a key's metadata.
    async fn put_kv_metadata(&self, row: &KvMetaRow) -> Result<()>;
    /// Forget a key's metadata (purge).
    async fn delete_kv_metadata(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<()>;
    /// The mount configuration (defaults when never written).
    async fn kv_config(&self) -> Result<KvConfigRow>;
    /// Replace the mount configuration.
    async fn put_kv_config(&self, c: &KvConfigRow) -> Result<()>;
}

#[async_trait]
impl KvStore for SqlBackend {
    async fn kv_current(
        &self,
        org_id: Uuid,
        env_id: Uuid,
        key: &str,
    ) -> Result<Option<(SecretRow, VersionRow, Option<String>)>> {
        let row = query(
            "SELECT s.id, s.org_id, s.env_id, s.key, s.type, s.description, s.current_version, s.deleted_at, \
                    s.created_at, s.updated_at, CAST(length(v.ciphertext) AS BIGINT) AS ct_len, v.id AS v_id, \
                    v.org_id AS v_org_id, v.secret_id AS v_secret_id, \
                    v.version AS v_version, v.type AS v_type, v.ciphertext AS v_ciphertext, \
                    v.wrapped_dek AS v_wrapped_dek, v.kek_version AS v_kek_version, v.created_by AS v_created_by, v.author AS v_author, \
                    v.created_at AS v_created_at, m.custom_metadata AS kv_custom \
             FROM secrets s JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version \
             LEFT JOIN kv_metadata m ON m.org_id = s.org_id AND m.env_id = s.env_id AND m.key = s.key \
             WHERE s.org_id = $1 AND v.org_id = $1 AND s.env_id = $2 AND s.key = $3",
        )
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .bind(key.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.map(|r| {
            Ok((
                secret_row(&r)?,
                version_row(&r, &PREFIXED, true)?,
                r.try_get::<Option<String>, _>("kv_custom")?,
            ))
        })
        .transpose()
    }

    async fn kv_versions(&self, org_id: Uuid, secret_id: Uuid) -> Result<Vec<KvVersionRow>> {
        let rows = query(
            "SELECT version, created_at, kv_deleted_at, kv_destroyed FROM secret_versions \
             WHERE org_id = $1 AND secret_id = $2 ORDER BY version",
        )
        .bind(org_id.to_string())
        .bind(secret_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KvVersionRow {
                    version: r.try_get("version")?,
                    created_at: r.try_get("created_at")?,
                    deleted_at: r.try_get("kv_deleted_at")?,
                    destroyed: r.try_get::<i64, _>("kv_destroyed")? != 0,
                })
            })
            .collect()
    }

    async fn kv_mark(&self, org_id: Uuid, secret_id: Uuid, versions: &[i64], op: KvVersionOp, now: i64) -> Result<()> {
        let org = org_id.to_string();
        let id = secret_id.to_string();
        let mut tx = self.tenant_tx(org_id).await?;
        let current: Option<i64> = query("SELECT current_version FROM secrets WHERE org_id = $1 AND id = $2")
            .bind(org.clone())
            .bind(id.clone())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("current_version"))
            .transpose()?;
        let Some(current) = current else {
            return Ok(());
        };
        for &v in versions {
            let stmt = match op {
                KvVersionOp::Delete => query(
                    "UPDATE secret_versions SET kv_deleted_at = COALESCE(kv_deleted_at, $1) \
                     WHERE org_id = $2 AND secret_id = $3 AND version = $4",
                )
                .bind(now),
                KvVersionOp::Undelete => query(
                    "UPDATE secret_versions SET kv_deleted_at = NULL \
                     WHERE org_id = $1 AND secret_id = $2 AND version = $3 AND kv_destroyed = 0",
                ),
                KvVersionOp::Destroy => query(
                    "UPDATE secret_versions SET ciphertext = $1, wrapped_dek = $1, kv_destroyed = 1 \
                     WHERE org_id = $2 AND secret_id = $3 AND version = $4",
                )
                .bind(Vec::<u8>::new()),
            };
            stmt.bind(org.clone())
                .bind(id.clone())
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        if versions.contains(&current) {
            let sql = match op {
                KvVersionOp::Delete | KvVersionOp::Destroy => {
                    "UPDATE secrets SET deleted_at = COALESCE(deleted_at, $1), updated_at = $1 \
                     WHERE org_id = $2 AND id = $3"
                }
                KvVersionOp::Undelete => {
                    "UPDATE secrets SET deleted_at = NULL, updated_at = $1 WHERE org_id = $2 AND id = $3 \
                     AND NOT EXISTS (SELECT 1 FROM secret_versions v WHERE v.org_id = $2 AND v.secret_id = $3 \
                                     AND v.version = secrets.current_version AND v.kv_destroyed <> 0)"
                }
            };
            query(sql)
                .bind(now)
                .bind(org.clone())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
        }
        query(
            "UPDATE environments SET revision = revision + 1 \
             WHERE org_id = $1 AND id = (SELECT env_id FROM secrets WHERE org_id = $1 AND id = $2)",
        )
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn kv_prune(&self, org_id: Uuid, secret_id: Uuid, keep_from: i64) -> Result<u64> {
        let done = query(
            "DELETE FROM secret_versions WHERE org_id = $1 AND secret_id = $2 AND version < $3 \
             AND version < (SELECT current_version FROM secrets WHERE org_id = $1 AND id = $2)",
        )
        .bind(org_id.to_string())
        .bind(secret_id.to_string())
        .bind(keep_from)
        .execute(&mut *self.tenant(org_id).await?)
        .await?;
        Ok(done.rows_affected())
    }

    async fn kv_metadata(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<KvMetaRow>> {
        let row = query(
            "SELECT max_versions, cas_required, delete_version_after, custom_metadata, created_at, updated_at \
             FROM kv_metadata WHERE org_id = $1 AND env_id = $2 AND key = $3",
        )
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .bind(key.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.map(|r| {
            Ok(KvMetaRow {
                org_id,
                env_id,
                key: key.to_owned(),
                max_versions: r.try_get("max_versions")?,
                cas_required: r.try_get::<i64, _>("cas_required")? != 0,
                delete_version_after: r.try_get("delete_version_after")?,
                custom_metadata: r.try_get("custom_metadata")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn kv_metadata_keys(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<String>> {
        let rows = query("SELECT key FROM kv_metadata WHERE org_id = $1 AND env_id = $2 ORDER BY key")
            .bind(org_id.to_string())
            .bind(env_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("key")?)).collect()
    }

    async fn put_kv_metadata(&self, m: &KvMetaRow) -> Result<()> {
        query(
            "INSERT INTO kv_metadata (org_id, env_id, key, max_versions, cas_required, delete_version_after, \
                                      custom_metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (env_id, key) DO UPDATE SET max_versions = $4, cas_required = $5, \
                delete_version_after = $6, custom_metadata = $7, updated_at = $9",
        )
        .bind(m.org_id.to_string())
        .bind(m.env_id.to_string())
        .bind(m.key.clone())
        .bind(m.max_versions)
        .bind(i64::from(m.cas_required))
        .bind(m.delete_version_after.clone())
        .bind(m.custom_metadata.clone())
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&mut *self.tenant(m.org_id).await?)
        .await?;
        Ok(())
    }

    async fn delete_kv_metadata(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<()> {
        query("DELETE FROM kv_metadata WHERE org_id = $1 AND env_id = $2 AND key = $3")
            .bind(org_id.to_string())
            .bind(env_id.to_string())
            .bind(key.to_owned())
            .execute(&mut *self.tenant(org_id).await?)
            .await?;
        Ok(())
    }

    async fn kv_config(&self) -> Result<KvConfigRow> {
        let row = query("SELECT max_versions, cas_required, delete_version_after FROM kv_config WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(KvConfigRow {
                delete_version_after: "0s".into(),
                ..KvConfigRow::default()
            }),
            Some(r) => Ok(KvConfigRow {
                max_versions: r.try_get("max_versions")?,
                cas_required: r.try_get::<i64, _>("cas_required")? != 0,
                delete_version_after: r.try_get("delete_version_after")?,
            }),
        }
    }

    async fn put_kv_config(&self, c: &KvConfigRow) -> Result<()> {
        query(
            "INSERT INTO kv_config (id, max_versions, cas_required, delete_version_after) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET max_versions = $1, cas_required = $2, delete_version_after = $3",
        )
        .bind(c.max_versions)
        .bind(i64::from(c.cas_required))
        .bind(c.delete_version_after.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
