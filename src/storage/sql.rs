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
    Backend, CurrentValue, EnvPath, EnvRow, KekRow, KeyringRow, OrgRow, ProjectRow, Result, SecretRow, StorageError,
    TokenRow, VersionRow,
};

/// A pool of connections to one SQLite file or one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct SqlBackend {
    pool: AnyPool,
    kind: &'static str,
    values: Arc<ValuesCache>,
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
    pub(super) fn new(pool: AnyPool, kind: &'static str) -> Self {
        SqlBackend {
            pool,
            kind,
            values: Arc::new(ValuesCache::default()),
        }
    }

    /// The pool, for tests that tamper with rows directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Map a unique-constraint violation to [`StorageError::Conflict`].
fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StorageError::Conflict(what)
        }
        _ => StorageError::Database(e),
    }
}

fn uuid(row: &AnyRow, col: &str, table: &'static str) -> Result<Uuid> {
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

const SECRET_COLS: &str =
    "id, org_id, env_id, key, type, description, current_version, deleted_at, created_at, updated_at";

fn secret_row(r: &AnyRow) -> Result<SecretRow> {
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
    })
}

/// Column names of a version row: plain, or with the `v_` prefix the reveal
/// join uses. Static so decoding allocates nothing for names.
struct VersionCols {
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

const PREFIXED: VersionCols = VersionCols {
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
fn version_row(r: &AnyRow, c: &VersionCols, with_blobs: bool) -> Result<VersionRow> {
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
        let row = query(
            "SELECT accessor, token_hash, policy, display_name, created_at, expires_at FROM tokens WHERE token_hash = $1",
        )
        .bind(hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRow {
                accessor: r.try_get("accessor")?,
                token_hash: r.try_get("token_hash")?,
                policy: r.try_get("policy")?,
                display_name: r.try_get("display_name")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn create_org(&self, org: &OrgRow, kek: &KekRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
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
            .fetch_optional(&self.pool)
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
            .execute(&self.pool)
            .await
            .map_err(conflict("a project with this slug exists in the organization"))?;
        Ok(())
    }

    async fn list_projects(&self, org_id: Uuid) -> Result<Vec<ProjectRow>> {
        let rows = query("SELECT id, org_id, slug, name, created_at FROM projects WHERE org_id = $1 ORDER BY slug")
            .bind(org_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_row).collect()
    }

    async fn project(&self, org_id: Uuid, slug: &str) -> Result<Option<ProjectRow>> {
        let row = query("SELECT id, org_id, slug, name, created_at FROM projects WHERE org_id = $1 AND slug = $2")
            .bind(org_id.to_string())
            .bind(slug.to_owned())
            .fetch_optional(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(conflict("an environment with this slug exists in the project"))?;
        Ok(())
    }

    async fn list_envs(&self, project_id: Uuid) -> Result<Vec<EnvRow>> {
        let rows = query(
            "SELECT id, org_id, project_id, slug, name, protected, created_at FROM environments \
             WHERE project_id = $1 ORDER BY slug",
        )
        .bind(project_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_row).collect()
    }

    async fn resolve_env(&self, org: &str, project: &str, env: &str) -> Result<Option<EnvPath>> {
        let row = query(
            "SELECT o.id AS org_id, p.id AS project_id, e.id AS env_id, o.kek_version \
             FROM orgs o JOIN projects p ON p.org_id = o.id JOIN environments e ON e.project_id = p.id \
             WHERE o.slug = $1 AND p.slug = $2 AND e.slug = $3",
        )
        .bind(org.to_owned())
        .bind(project.to_owned())
        .bind(env.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(EnvPath {
                org_id: uuid(&r, "org_id", "orgs")?,
                project_id: uuid(&r, "project_id", "projects")?,
                env_id: uuid(&r, "env_id", "environments")?,
                kek_version: r.try_get("kek_version")?,
            })
        })
        .transpose()
    }

    async fn list_secrets(&self, env_id: Uuid) -> Result<Vec<SecretRow>> {
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE env_id = $1 ORDER BY key"
        )))
        .bind(env_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_row).collect()
    }

    async fn secret(&self, env_id: Uuid, key: &str) -> Result<Option<SecretRow>> {
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE env_id = $1 AND key = $2"
        )))
        .bind(env_id.to_string())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(secret_row).transpose()
    }

    async fn current_secret(&self, env_id: Uuid, key: &str) -> Result<Option<(SecretRow, VersionRow)>> {
        let row = query(
            "SELECT s.id, s.org_id, s.env_id, s.key, s.type, s.description, s.current_version, s.deleted_at, \
                    s.created_at, s.updated_at, v.id AS v_id, v.org_id AS v_org_id, v.secret_id AS v_secret_id, \
                    v.version AS v_version, v.type AS v_type, v.ciphertext AS v_ciphertext, \
                    v.wrapped_dek AS v_wrapped_dek, v.kek_version AS v_kek_version, v.created_by AS v_created_by, \
                    v.created_at AS v_created_at \
             FROM secrets s JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version \
             WHERE s.env_id = $1 AND s.key = $2",
        )
        .bind(env_id.to_string())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((secret_row(&r)?, version_row(&r, &PREFIXED, true)?)))
            .transpose()
    }

    async fn version(&self, secret_id: Uuid, version: i64) -> Result<Option<VersionRow>> {
        let row = query(
            "SELECT id, org_id, secret_id, version, type, ciphertext, wrapped_dek, kek_version, created_by, created_at \
             FROM secret_versions WHERE secret_id = $1 AND version = $2",
        )
        .bind(secret_id.to_string())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| version_row(&r, &PLAIN, true)).transpose()
    }

    async fn versions(&self, secret_id: Uuid) -> Result<Vec<VersionRow>> {
        let rows = query(
            "SELECT id, org_id, secret_id, version, type, kek_version, created_by, created_at \
             FROM secret_versions WHERE secret_id = $1 ORDER BY version",
        )
        .bind(secret_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| version_row(r, &PLAIN, false)).collect()
    }

    async fn current_values(&self, env_id: Uuid) -> Result<Arc<Vec<CurrentValue>>> {
        let revision: i64 = query("SELECT revision FROM environments WHERE id = $1")
            .bind(env_id.to_string())
            .fetch_optional(&self.pool)
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
             WHERE s.env_id = $1 AND s.deleted_at IS NULL ORDER BY s.key",
        )
        .bind(env_id.to_string())
        .fetch_all(&self.pool)
        .await?;
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

    async fn put_version(&self, s: &SecretRow, expected_current: i64, v: &VersionRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
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
                 WHERE id = $5 AND current_version = $6",
            )
            .bind(&s.value_type)
            .bind(&s.description)
            .bind(v.version)
            .bind(s.updated_at)
            .bind(s.id.to_string())
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
        .bind(v.org_id.to_string())
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
        bump_revision(&mut tx, BUMP_ENV, &s.env_id.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_deleted(&self, secret_id: Uuid, deleted_at: Option<i64>, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = query("UPDATE secrets SET deleted_at = $1, updated_at = $2 WHERE id = $3")
            .bind(deleted_at)
            .bind(now)
            .bind(secret_id.to_string())
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, BUMP_BY_SECRET, &secret_id.to_string()).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_secret(&self, secret_id: Uuid) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        bump_revision(&mut tx, BUMP_BY_SECRET, &secret_id.to_string()).await?;
        query("DELETE FROM secret_versions WHERE secret_id = $1")
            .bind(secret_id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = query("DELETE FROM secrets WHERE id = $1")
            .bind(secret_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Count a change to environment `$1`'s secrets (see [`ValuesCache`]).
const BUMP_ENV: &str = "UPDATE environments SET revision = revision + 1 WHERE id = $1";
/// Count a change to the secrets of the environment of secret `$1`.
const BUMP_BY_SECRET: &str =
    "UPDATE environments SET revision = revision + 1 WHERE id = (SELECT env_id FROM secrets WHERE id = $1)";

/// Run one of the `BUMP_*` statements in `tx`.
async fn bump_revision(tx: &mut sqlx::Transaction<'_, Any>, sql: &'static str, id: &str) -> Result<()> {
    query(sql).bind(id.to_owned()).execute(&mut **tx).await?;
    Ok(())
}

async fn insert_token(tx: &mut sqlx::Transaction<'_, Any>, t: &TokenRow) -> Result<()> {
    query(
        "INSERT INTO tokens (accessor, token_hash, policy, display_name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.accessor)
    .bind(&t.token_hash)
    .bind(&t.policy)
    .bind(&t.display_name)
    .bind(t.created_at)
    .bind(t.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("token exists"))?;
    Ok(())
}
