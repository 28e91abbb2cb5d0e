//! Storage of the key lifecycle: KEK versions, DEK re-wrapping, the keyring
//! row's updates (rekey, root rotation, seal migration).
//!
//! A trait of its own ([`KeyStore`], a supertrait of [`super::Backend`]) so
//! the lifecycle stays out of the data path's trait; implemented once here
//! for [`SqlBackend`] in the same portable SQL.
//!
//! Invariants:
//! - re-wrapping a DEK touches `wrapped_dek` and `kek_version` only, never
//!   `ciphertext`, and only if the row still has the KEK version it was read
//!   with (a concurrent re-wrap cannot be overwritten by a stale one);
//! - every keyring change is a compare-and-set on the stored
//!   `encrypted_root`: two rekeys or rotations racing cannot both land;
//! - a re-wrap batch lands whole or not at all (one transaction);
//! - a root rotation replaces the keyring row and every KEK blob in one
//!   transaction: either every KEK is under the new root or none is;
//! - a KEK version is destroyed only when it is not active and no secret
//!   version references it, checked in the deleting transaction.

use async_trait::async_trait;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::db::{conflict, insert_token, query, uuid};
use super::{Backend, KekRow, KeyringRow, Result, SqlBackend, StorageError, TokenRow};

/// Rows re-wrapped per statement at most (SQLite allows 32766 parameters,
/// PostgreSQL 65535; each row takes 3).
pub const MAX_DEK_BATCH: usize = 5_000;

/// A KEK version and how many secret versions its DEKs wrap.
#[derive(Debug, Clone)]
pub struct KekUsage {
    /// version number
    pub version: i64,
    /// the org's active version (new secret versions use it)
    pub active: bool,
    /// secret versions whose DEK this version wraps
    pub references: i64,
    /// unix ms
    pub created_at: i64,
}

/// A blob re-encrypted under a new root key: compare-and-set on `old`.
#[derive(Debug, Clone)]
pub struct Rewrapped {
    /// the blob under the current root key, as read
    pub old: Vec<u8>,
    /// the same plaintext under the new root key
    pub new: Vec<u8>,
}

/// One wrapped DEK as re-wrapping sees it.
#[derive(Debug, Clone)]
pub struct DekRow {
    /// secret_versions row id (the DEK's AAD)
    pub id: Uuid,
    /// the KEK version that wraps it
    pub kek_version: i64,
    /// the wrapped DEK
    pub wrapped_dek: Vec<u8>,
}

/// What destroying a KEK version found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestroyOutcome {
    /// the wrapped key is gone for good
    Destroyed,
    /// no such version
    NotFound,
    /// it is the active version
    Active,
    /// this many secret versions and sealed credentials still reference it
    InUse(i64),
}

/// A new keyring row content (rekey, root rotation, seal migration).
#[derive(Debug, Clone)]
pub struct KeyringUpdate {
    /// "shamir" or "pkcs11"
    pub seal_type: String,
    /// N (unseal or recovery shares)
    pub secret_shares: i64,
    /// K
    pub secret_threshold: i64,
    /// root key under the unseal key or the HSM key
    pub encrypted_root: Vec<u8>,
    /// HMAC of a constant under the root key
    pub verify_tag: Vec<u8>,
    /// pkcs11 mode: HMAC of a constant under the recovery key
    pub recovery_tag: Option<Vec<u8>>,
}

/// Storage operations of the key lifecycle.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The recovery key's tag (pkcs11 mode), if any.
    async fn recovery_tag(&self) -> Result<Option<Vec<u8>>>;
    /// [`super::Backend::init_keyring`] with a recovery tag, one transaction.
    async fn init_keyring_with_recovery(&self, k: &KeyringRow, recovery_tag: &[u8], t: &TokenRow) -> Result<()>;
    /// Store a root token minted by a quorum (generate-root).
    async fn insert_root_token(&self, t: &TokenRow) -> Result<()>;
    /// Replace the keyring row if its `encrypted_root` is still `expected`;
    /// [`StorageError::Conflict`] otherwise.
    async fn update_keyring(&self, expected: &[u8], update: &KeyringUpdate) -> Result<()>;
    /// [`KeyStore::update_keyring`] and replace every KEK blob, in one
    /// transaction. `keks` must be every KEK row.
    async fn rotate_root(
        &self,
        expected: &[u8],
        update: &KeyringUpdate,
        keks: &[KekRow],
        totp_seeds: &[(Uuid, Vec<u8>)],
        audit_key: Option<&Rewrapped>,
    ) -> Result<()>;
    /// Every user's encrypted TOTP seed (they are under the root key).
    async fn totp_seeds(&self) -> Result<Vec<(Uuid, Vec<u8>)>>;
    /// Every KEK of every organization.
    async fn all_keks(&self) -> Result<Vec<KekRow>>;
    /// An org's KEK versions with their reference counts, oldest first.
    async fn kek_usage(&self, org_id: Uuid) -> Result<Vec<KekUsage>>;
    /// The org's active KEK version, if the org exists.
    async fn active_kek(&self, org_id: Uuid) -> Result<Option<i64>>;
    /// Store KEK version `kek.version` and make it the org's active one, if
    /// the active one is still `kek.version - 1`.
    async fn rotate_kek(&self, kek: &KekRow) -> Result<()>;
    /// Up to `limit` DEKs of the org wrapped by a version below `active`.
    async fn stale_deks(&self, org_id: Uuid, active: i64, limit: usize) -> Result<Vec<DekRow>>;
    /// Store re-wrapped DEKs (now under `active`), in one statement; rows
    /// whose KEK version changed since they were read are left alone.
    /// Returns the rows written.
    async fn replace_deks(&self, org_id: Uuid, active: i64, rows: &[DekRow]) -> Result<u64>;
    /// Crypto-shred a KEK version: delete its wrapped key if allowed.
    async fn destroy_kek(&self, org_id: Uuid, version: i64) -> Result<DestroyOutcome>;
}

/// Rows per re-wrap UPDATE statement on SQLite (see `replace_deks`).
const UPDATE_CHUNK: usize = 250;

/// PostgreSQL: a whole re-wrap batch in one statement. sqlx's `Any` driver
/// binds no arrays, so the batch travels as three text parameters that the
/// server splits: `$3` the row ids joined by `,` (UUIDs), `$4` the new
/// wrapped DEKs in hex joined by `,`, `$5` the KEK versions they were read
/// with joined by `,`. `unnest` of three arrays zips them row by row; each
/// row is matched by primary key and changes only if it still has the KEK
/// version it was read with (compare-and-set), so `rows_affected` is the
/// exact number re-wrapped. `$1` active version, `$2` org.
const UPDATE_UNNEST_PG: &str = "UPDATE secret_versions AS v \
     SET wrapped_dek = decode(d.dek, 'hex'), kek_version = $1 \
     FROM unnest(string_to_array($3, ','), string_to_array($4, ','), string_to_array($5, ',')::bigint[]) \
       AS d(id, dek, old) \
     WHERE v.org_id = $2 AND v.id = d.id AND v.kek_version = d.old";

/// The three text parameters of [`UPDATE_UNNEST_PG`] for `rows`.
fn unnest_params(rows: &[DekRow]) -> (String, String, String) {
    let mut ids = String::with_capacity(rows.len() * 37);
    let mut deks = String::with_capacity(rows.iter().map(|r| 2 * r.wrapped_dek.len() + 1).sum());
    let mut olds = String::with_capacity(rows.len() * 4);
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            ids.push(',');
            deks.push(',');
            olds.push(',');
        }
        ids.push_str(r.id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        deks.push_str(&hex::encode(&r.wrapped_dek));
        olds.push_str(&r.kek_version.to_string());
    }
    (ids, deks, olds)
}

/// `UPDATE … FROM (VALUES …)` for `n` rows — portable: SQLite ≥ 3.33 and
/// PostgreSQL both name VALUES columns column1, column2, … . `$1` active
/// version, `$2` org, then (id, wrapped_dek, old kek_version) per row. Only
/// placeholders are generated, never data.
fn update_sql(n: usize) -> String {
    let mut sql = String::with_capacity(200 + n * 24);
    sql.push_str("UPDATE secret_versions SET wrapped_dek = d.column2, kek_version = $1 FROM (VALUES ");
    for i in 0..n {
        let p = 3 + 3 * i;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${})", p, p + 1, p + 2));
    }
    sql.push_str(
        ") AS d WHERE secret_versions.id = d.column1 AND secret_versions.kek_version = d.column3 \
         AND secret_versions.org_id = $2",
    );
    sql
}

const UPDATE_KEYRING: &str = "UPDATE keyring SET seal_type = $1, secret_shares = $2, secret_threshold = $3, \
     encrypted_root = $4, verify_tag = $5, recovery_tag = $6 WHERE id = 1 AND encrypted_root = $7";

async fn update_keyring_in(tx: &mut sqlx::Transaction<'_, Any>, expected: &[u8], u: &KeyringUpdate) -> Result<()> {
    let done = query(UPDATE_KEYRING)
        .bind(&u.seal_type)
        .bind(u.secret_shares)
        .bind(u.secret_threshold)
        .bind(&u.encrypted_root)
        .bind(&u.verify_tag)
        .bind(u.recovery_tag.clone())
        .bind(expected.to_vec())
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StorageError::Conflict("the keyring was changed concurrently"));
    }
    Ok(())
}

#[async_trait]
impl KeyStore for SqlBackend {
    async fn recovery_tag(&self) -> Result<Option<Vec<u8>>> {
        let row = query("SELECT recovery_tag FROM keyring WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<Vec<u8>>, _>("recovery_tag")?,
            None => None,
        })
    }

    async fn init_keyring_with_recovery(&self, k: &KeyringRow, recovery_tag: &[u8], t: &TokenRow) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        query(
            "INSERT INTO keyring (id, seal_type, secret_shares, secret_threshold, encrypted_root, verify_tag, \
           created_at, recovery_tag) VALUES (1, $1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.seal_type)
        .bind(k.secret_shares)
        .bind(k.secret_threshold)
        .bind(&k.encrypted_root)
        .bind(&k.verify_tag)
        .bind(k.created_at)
        .bind(recovery_tag.to_vec())
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

    async fn insert_root_token(&self, t: &TokenRow) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        insert_token(&mut tx, t).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_keyring(&self, expected: &[u8], update: &KeyringUpdate) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        update_keyring_in(&mut tx, expected, update).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_root(
        &self,
        expected: &[u8],
        update: &KeyringUpdate,
        keks: &[KekRow],
        totp_seeds: &[(Uuid, Vec<u8>)],
        audit_key: Option<&Rewrapped>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        update_keyring_in(&mut tx, expected, update).await?;
        // The audit key, if the server made one: compare-and-set on its old
        // blob; with none, none may have appeared meanwhile.
        let done = match audit_key {
            Some(k) => query("UPDATE audit_keys SET wrapped = $1 WHERE id = 1 AND wrapped = $2")
                .bind(k.new.clone())
                .bind(k.old.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            None => {
                let n: i64 = query("SELECT COUNT(*) AS n FROM audit_keys")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                u64::from(n == 0)
            }
        };
        if done != 1 {
            return Err(StorageError::Conflict("the audit key changed during root rotation"));
        }
        for (user_id, seed) in totp_seeds {
            query("UPDATE users SET totp_secret = $1 WHERE id = $2")
                .bind(seed.clone())
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        // Organization by organization: on PostgreSQL each one's KEK rows are
        // visible only while the transaction acts for it.
        let mut total = 0i64;
        for org_id in org_ids(&mut tx).await? {
            self.act_for(&mut tx, org_id).await?;
            let n: i64 = query("SELECT COUNT(*) AS n FROM kms_keys WHERE org_id = $1")
                .bind(org_id.to_string())
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            total += n;
            for k in keks.iter().filter(|k| k.org_id == org_id) {
                let done = query("UPDATE kms_keys SET wrapped_key = $1 WHERE org_id = $2 AND version = $3")
                    .bind(&k.wrapped_key)
                    .bind(k.org_id.to_string())
                    .bind(k.version)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Err(StorageError::Conflict("a KEK was removed during root rotation"));
                }
            }
        }
        if usize::try_from(total).ok() != Some(keks.len()) {
            return Err(StorageError::Conflict(
                "a KEK was added or removed during root rotation",
            ));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn totp_seeds(&self) -> Result<Vec<(Uuid, Vec<u8>)>> {
        query("SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL")
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| Ok((uuid(r, "id", "users")?, r.try_get("totp_secret")?)))
            .collect()
    }

    async fn all_keks(&self) -> Result<Vec<KekRow>> {
        let mut tx = self.pool().begin().await?;
        let mut rows = Vec::new();
        for org_id in org_ids(&mut tx).await? {
            self.act_for(&mut tx, org_id).await?;
            rows.extend(
                query(
                    "SELECT org_id, version, wrapped_key, created_at FROM kms_keys WHERE org_id = $1 ORDER BY version",
                )
                .bind(org_id.to_string())
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(KekRow {
                    org_id: uuid(r, "org_id", "kms_keys")?,
                    version: r.try_get("version")?,
                    wrapped_key: r.try_get("wrapped_key")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn kek_usage(&self, org_id: Uuid) -> Result<Vec<KekUsage>> {
        let rows = query(
            "SELECT k.version, k.created_at, o.kek_version AS active, \
                  (SELECT COUNT(*) FROM secret_versions v WHERE v.org_id = k.org_id AND v.kek_version = k.version) \
                  + (SELECT COUNT(*) FROM webhooks w WHERE w.org_id = k.org_id AND w.kek_version = k.version) \
                  + (SELECT COUNT(*) FROM ci_sync_targets c WHERE c.org_id = k.org_id AND c.kek_version = k.version) \
                  + (SELECT COUNT(*) FROM sso_providers p WHERE p.org_id = k.org_id AND p.kek_version = k.version) \
                  + (SELECT COUNT(*) FROM db_connections d WHERE d.org_id = k.org_id AND d.kek_version = k.version) \
                  AS refs \
             FROM kms_keys k JOIN orgs o ON o.id = k.org_id WHERE k.org_id = $1 ORDER BY k.version",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                Ok(KekUsage {
                    version,
                    active: r.try_get::<i64, _>("active")? == version,
                    references: r.try_get("refs")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn active_kek(&self, org_id: Uuid) -> Result<Option<i64>> {
        let row = query("SELECT kek_version FROM orgs WHERE id = $1")
            .bind(org_id.to_string())
            .fetch_optional(&mut *self.tenant(org_id).await?)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("kek_version")?),
            None => None,
        })
    }

    async fn rotate_kek(&self, kek: &KekRow) -> Result<()> {
        let mut tx = self.tenant_tx(kek.org_id).await?;
        let done = query("UPDATE orgs SET kek_version = $1 WHERE id = $2 AND kek_version = $3")
            .bind(kek.version)
            .bind(kek.org_id.to_string())
            .bind(kek.version - 1)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict("the KEK was rotated concurrently"));
        }
        query("INSERT INTO kms_keys (org_id, version, wrapped_key, created_at) VALUES ($1, $2, $3, $4)")
            .bind(kek.org_id.to_string())
            .bind(kek.version)
            .bind(&kek.wrapped_key)
            .bind(kek.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                    StorageError::Conflict("this KEK version exists already")
                }
                _ => StorageError::Database(e),
            })?;
        tx.commit().await?;
        Ok(())
    }

    async fn stale_deks(&self, org_id: Uuid, active: i64, limit: usize) -> Result<Vec<DekRow>> {
        let limit = i64::try_from(limit.min(MAX_DEK_BATCH)).unwrap_or(1);
        // ORDER BY the index's second column: both planners then walk the
        // (org_id, kek_version) index and stop after `limit` rows. Without
        // it PostgreSQL's estimate (most rows match) picks a sequential scan
        // from the start of the heap, which re-reads the rows moved by the
        // earlier batches every time: quadratic over a whole re-wrap.
        let rows = query(
            "SELECT id, kek_version, wrapped_dek FROM secret_versions \
             WHERE org_id = $1 AND kek_version < $2 ORDER BY kek_version LIMIT $3",
        )
        .bind(org_id.to_string())
        .bind(active)
        .bind(limit)
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DekRow {
                    id: uuid(r, "id", "secret_versions")?,
                    kek_version: r.try_get("kek_version")?,
                    wrapped_dek: r.try_get("wrapped_dek")?,
                })
            })
            .collect()
    }

    async fn replace_deks(&self, org_id: Uuid, active: i64, rows: &[DekRow]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if rows.len() > MAX_DEK_BATCH {
            return Err(StorageError::Conflict("too many DEKs in one re-wrap batch"));
        }
        if self.kind() == "postgres" {
            // Two statements on two connections at once: the server's cost
            // (a new row version and three index entries per DEK) is what
            // bounds a re-wrap, and two backends use two cores. Each row
            // moves at most once (compare-and-set on its KEK version), so
            // the halves need no common transaction.
            let (first, second) = rows.split_at(rows.len().div_ceil(2));
            let (a, b) = tokio::try_join!(
                self.update_deks_pg(org_id, active, first),
                self.update_deks_pg(org_id, active, second)
            )?;
            return Ok(a + b);
        }
        // SQLite: statements of UPDATE_CHUNK rows in one transaction: sqlx's SQLite
        // binding looks every `$N` up by name (linear in the parameter
        // count), so one statement per batch would cost O(parameters²) —
        // 74 % of the time at 15,000 parameters.
        let mut tx = self.tenant_tx(org_id).await?;
        let mut written = 0;
        for chunk in rows.chunks(UPDATE_CHUNK) {
            let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(update_sql(chunk.len())))
                .bind(active)
                .bind(org_id.to_string());
            for r in chunk {
                query = query
                    .bind(r.id.to_string())
                    .bind(r.wrapped_dek.clone())
                    .bind(r.kek_version);
            }
            written += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn destroy_kek(&self, org_id: Uuid, version: i64) -> Result<DestroyOutcome> {
        let mut tx = self.tenant_tx(org_id).await?;
        let Some(org) = query("SELECT kek_version FROM orgs WHERE id = $1")
            .bind(org_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(DestroyOutcome::NotFound);
        };
        if org.try_get::<i64, _>("kek_version")? == version {
            return Ok(DestroyOutcome::Active);
        }
        // Secret versions' DEKs and every credential sealed under an org
        // KEK: webhooks' signing secrets (0018), CI sync tokens (0019), SSO
        // client secrets (0021), database connections' admin URLs (0022).
        let refs: i64 = query(
            "SELECT (SELECT COUNT(*) FROM secret_versions WHERE org_id = $1 AND kek_version = $2) \
             + (SELECT COUNT(*) FROM webhooks WHERE org_id = $1 AND kek_version = $2) \
             + (SELECT COUNT(*) FROM ci_sync_targets WHERE org_id = $1 AND kek_version = $2) \
             + (SELECT COUNT(*) FROM sso_providers WHERE org_id = $1 AND kek_version = $2) \
             + (SELECT COUNT(*) FROM db_connections WHERE org_id = $1 AND kek_version = $2) AS n",
        )
        .bind(org_id.to_string())
        .bind(version)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if refs > 0 {
            return Ok(DestroyOutcome::InUse(refs));
        }
        let done = query("DELETE FROM kms_keys WHERE org_id = $1 AND version = $2")
            .bind(org_id.to_string())
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(if done.rows_affected() == 1 {
            DestroyOutcome::Destroyed
        } else {
            DestroyOutcome::NotFound
        })
    }
}

/// Every organization id, in the shared pool's transaction.
async fn org_ids(tx: &mut sqlx::Transaction<'_, Any>) -> Result<Vec<Uuid>> {
    query("SELECT id FROM orgs ORDER BY id")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| uuid(r, "id", "orgs"))
        .collect()
}

impl SqlBackend {
    /// PostgreSQL: one `UPDATE … FROM unnest(…)` re-wrapping `rows`.
    async fn update_deks_pg(&self, org_id: Uuid, active: i64, rows: &[DekRow]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let (ids, deks, olds) = unnest_params(rows);
        let done = query(UPDATE_UNNEST_PG)
            .bind(active)
            .bind(org_id.to_string())
            .bind(ids)
            .bind(deks)
            .bind(olds)
            .execute(&mut *self.tenant(org_id).await?)
            .await?;
        Ok(done.rows_affected())
    }
}
