//! Storage of database credentials (issue 21): target PostgreSQL
//! connections (their admin URL sealed under the organization KEK), roles
//! (dynamic templates, or a static user rotated on a schedule) and the
//! durable leases of dynamic credentials. A trait of its own
//! ([`DbCredsStore`], a supertrait of [`super::Backend`]), implemented once
//! here for [`SqlBackend`] in portable SQL. Tenant rows: every query filters
//! on `org_id` (and PostgreSQL's row-level security checks it again). No
//! password is stored in clear: a lease row holds a username only.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{conflict, query, uuid};
use super::{Result, SqlBackend};

/// A target database connection. Its Debug hides the sealed URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DbConnectionRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// name, unique in the organization
    pub name: String,
    /// project slug of the environment whose readers take credentials
    pub project: String,
    /// environment slug
    pub environment: String,
    /// `postgres://user@host:port/db`, no password
    pub display: String,
    /// KEK version sealing the URL
    pub kek_version: i64,
    /// the admin URL (with its password), AES-256-GCM under the KEK
    pub sealed_url: Vec<u8>,
    /// actor name
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
}

impl std::fmt::Debug for DbConnectionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConnectionRow")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("name", &self.name)
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

/// A role: a dynamic template or a static user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRoleRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// name, unique in the organization
    pub name: String,
    /// its connection
    pub connection_id: Uuid,
    /// dynamic | static
    pub kind: String,
    /// dynamic: creation SQL template
    pub creation_sql: String,
    /// dynamic: revocation SQL template
    pub revocation_sql: String,
    /// dynamic: default lease TTL, seconds
    pub default_ttl_s: i64,
    /// dynamic: longest lease life from issue, seconds
    pub max_ttl_s: i64,
    /// static: the database user
    pub username: String,
    /// static: the secret key holding its password
    pub secret_key: String,
    /// static: rotation period, seconds (0: on demand only)
    pub rotation_period_s: i64,
    /// static: unix ms of the next scheduled rotation
    pub next_rotation_at: i64,
    /// actor name
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
}

/// A lease of dynamic credentials (no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbLeaseRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// Vault lease id: `database/creds/<org>/<role>/<id>`
    pub lease_id: String,
    /// its role
    pub role_id: Uuid,
    /// its connection
    pub connection_id: Uuid,
    /// the database role created
    pub username: String,
    /// unix ms
    pub issued_at: i64,
    /// unix ms: revoked by the job from then on
    pub expires_at: i64,
    /// unix ms: renewals stop here
    pub max_expires_at: i64,
    /// active | revoked
    pub status: String,
    /// unix ms
    pub revoked_at: Option<i64>,
    /// failed revocation attempts
    pub attempts: i64,
    /// last revocation error (no secret)
    pub last_error: Option<String>,
    /// actor name
    pub created_by: String,
}

/// Connections, roles and leases of database credentials.
#[async_trait]
pub trait DbCredsStore: Send + Sync + std::fmt::Debug {
    /// Add a connection; Conflict if its name exists.
    async fn insert_db_connection(&self, row: &DbConnectionRow) -> Result<()>;
    /// An organization's connections, by name.
    async fn db_connections(&self, org_id: Uuid) -> Result<Vec<DbConnectionRow>>;
    /// Delete a connection; false if absent.
    async fn delete_db_connection(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Store a connection's admin URL sealed again under KEK version
    /// `kek_version`, if it is still under `expect` (re-wrap); false otherwise.
    async fn reseal_db_connection(
        &self,
        org_id: Uuid,
        id: Uuid,
        sealed_url: &[u8],
        kek_version: i64,
        expect: i64,
    ) -> Result<bool>;
    /// Add a role; Conflict if its name exists.
    async fn insert_db_role(&self, row: &DbRoleRow) -> Result<()>;
    /// An organization's roles, by name.
    async fn db_roles(&self, org_id: Uuid) -> Result<Vec<DbRoleRow>>;
    /// Delete a role; false if absent.
    async fn delete_db_role(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Static roles due at `now` in every organization.
    async fn due_static_roles(&self, now: i64) -> Result<Vec<DbRoleRow>>;
    /// Move a static role's next rotation from `expected` to `next`
    /// (compare-and-set: false when another server claimed it).
    async fn claim_rotation(&self, org_id: Uuid, id: Uuid, expected: i64, next: i64) -> Result<bool>;
    /// Add a lease.
    async fn insert_db_lease(&self, row: &DbLeaseRow) -> Result<()>;
    /// An organization's leases (active and revoked), newest first, at most `limit`.
    async fn db_leases(&self, org_id: Uuid, limit: i64) -> Result<Vec<DbLeaseRow>>;
    /// Active leases of every organization, soonest expiry first.
    async fn active_db_leases(&self) -> Result<Vec<DbLeaseRow>>;
    /// Set an active lease's expiry; false if it is not active.
    async fn set_lease_expiry(&self, org_id: Uuid, id: Uuid, expires_at: i64) -> Result<bool>;
    /// Mark a lease revoked; false if it was not active.
    async fn mark_lease_revoked(&self, org_id: Uuid, id: Uuid, at: i64) -> Result<bool>;
    /// Record a failed revocation attempt.
    async fn lease_revocation_failed(&self, org_id: Uuid, id: Uuid, error: &str) -> Result<()>;
}

fn connection_row(r: &AnyRow) -> Result<DbConnectionRow> {
    Ok(DbConnectionRow {
        id: uuid(r, "id", "db_connections")?,
        org_id: uuid(r, "org_id", "db_connections")?,
        name: r.try_get("name")?,
        project: r.try_get("project")?,
        environment: r.try_get("environment")?,
        display: r.try_get("display")?,
        kek_version: r.try_get("kek_version")?,
        sealed_url: r.try_get("sealed_url")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn role_row(r: &AnyRow) -> Result<DbRoleRow> {
    Ok(DbRoleRow {
        id: uuid(r, "id", "db_roles")?,
        org_id: uuid(r, "org_id", "db_roles")?,
        name: r.try_get("name")?,
        connection_id: uuid(r, "connection_id", "db_roles")?,
        kind: r.try_get("kind")?,
        creation_sql: r.try_get("creation_sql")?,
        revocation_sql: r.try_get("revocation_sql")?,
        default_ttl_s: r.try_get("default_ttl_s")?,
        max_ttl_s: r.try_get("max_ttl_s")?,
        username: r.try_get("username")?,
        secret_key: r.try_get("secret_key")?,
        rotation_period_s: r.try_get("rotation_period_s")?,
        next_rotation_at: r.try_get("next_rotation_at")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn lease_row(r: &AnyRow) -> Result<DbLeaseRow> {
    Ok(DbLeaseRow {
        id: uuid(r, "id", "db_leases")?,
        org_id: uuid(r, "org_id", "db_leases")?,
        lease_id: r.try_get("lease_id")?,
        role_id: uuid(r, "role_id", "db_leases")?,
        connection_id: uuid(r, "connection_id", "db_leases")?,
        username: r.try_get("username")?,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
        max_expires_at: r.try_get("max_expires_at")?,
        status: r.try_get("status")?,
        revoked_at: r.try_get("revoked_at")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        created_by: r.try_get("created_by")?,
    })
}

impl SqlBackend {
    /// Every organization's id (cross-organization job reads go through
    /// each organization's tenant connection).
    async fn db_org_ids(&self) -> Result<Vec<Uuid>> {
        let orgs = query("SELECT id FROM orgs ORDER BY id").fetch_all(self.pool()).await?;
        orgs.iter().map(|r| uuid(r, "id", "orgs")).collect()
    }
}

#[async_trait]
impl DbCredsStore for SqlBackend {
    async fn insert_db_connection(&self, c: &DbConnectionRow) -> Result<()> {
        let mut tx = self.tenant_tx(c.org_id).await?;
        query(
            "INSERT INTO db_connections (id, org_id, name, project, environment, display, kek_version, sealed_url, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.id.to_string())
        .bind(c.org_id.to_string())
        .bind(c.name.clone())
        .bind(c.project.clone())
        .bind(c.environment.clone())
        .bind(c.display.clone())
        .bind(c.kek_version)
        .bind(c.sealed_url.clone())
        .bind(c.created_by.clone())
        .bind(c.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("a database connection of this name exists"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn db_connections(&self, org_id: Uuid) -> Result<Vec<DbConnectionRow>> {
        let rows = query("SELECT * FROM db_connections WHERE org_id = $1 ORDER BY name")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(connection_row).collect()
    }

    async fn delete_db_connection(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("DELETE FROM db_connections WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn reseal_db_connection(
        &self,
        org_id: Uuid,
        id: Uuid,
        sealed_url: &[u8],
        kek_version: i64,
        expect: i64,
    ) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE db_connections SET sealed_url = $1, kek_version = $2 \
             WHERE org_id = $3 AND id = $4 AND kek_version = $5",
        )
        .bind(sealed_url.to_vec())
        .bind(kek_version)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .bind(expect)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_db_role(&self, r: &DbRoleRow) -> Result<()> {
        let mut tx = self.tenant_tx(r.org_id).await?;
        query(
            "INSERT INTO db_roles (id, org_id, name, connection_id, kind, creation_sql, revocation_sql, default_ttl_s, \
             max_ttl_s, username, secret_key, rotation_period_s, next_rotation_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(r.id.to_string())
        .bind(r.org_id.to_string())
        .bind(r.name.clone())
        .bind(r.connection_id.to_string())
        .bind(r.kind.clone())
        .bind(r.creation_sql.clone())
        .bind(r.revocation_sql.clone())
        .bind(r.default_ttl_s)
        .bind(r.max_ttl_s)
        .bind(r.username.clone())
        .bind(r.secret_key.clone())
        .bind(r.rotation_period_s)
        .bind(r.next_rotation_at)
        .bind(r.created_by.clone())
        .bind(r.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("a database role of this name exists"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn db_roles(&self, org_id: Uuid) -> Result<Vec<DbRoleRow>> {
        let rows = query("SELECT * FROM db_roles WHERE org_id = $1 ORDER BY name")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(role_row).collect()
    }

    async fn delete_db_role(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("DELETE FROM db_roles WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn due_static_roles(&self, now: i64) -> Result<Vec<DbRoleRow>> {
        let mut out = Vec::new();
        for org_id in self.db_org_ids().await? {
            let rows = query(
                "SELECT * FROM db_roles WHERE org_id = $1 AND kind = 'static' AND rotation_period_s > 0 \
                 AND next_rotation_at <= $2 ORDER BY next_rotation_at",
            )
            .bind(org_id.to_string())
            .bind(now)
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
            for r in &rows {
                out.push(role_row(r)?);
            }
        }
        Ok(out)
    }

    async fn claim_rotation(&self, org_id: Uuid, id: Uuid, expected: i64, next: i64) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done =
            query("UPDATE db_roles SET next_rotation_at = $1 WHERE org_id = $2 AND id = $3 AND next_rotation_at = $4")
                .bind(next)
                .bind(org_id.to_string())
                .bind(id.to_string())
                .bind(expected)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_db_lease(&self, l: &DbLeaseRow) -> Result<()> {
        let mut tx = self.tenant_tx(l.org_id).await?;
        query(
            "INSERT INTO db_leases (id, org_id, lease_id, role_id, connection_id, username, issued_at, expires_at, \
             max_expires_at, status, revoked_at, attempts, last_error, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(l.id.to_string())
        .bind(l.org_id.to_string())
        .bind(l.lease_id.clone())
        .bind(l.role_id.to_string())
        .bind(l.connection_id.to_string())
        .bind(l.username.clone())
        .bind(l.issued_at)
        .bind(l.expires_at)
        .bind(l.max_expires_at)
        .bind(l.status.clone())
        .bind(l.revoked_at)
        .bind(l.attempts)
        .bind(l.last_error.clone())
        .bind(l.created_by.clone())
        .execute(&mut *tx)
        .await
        .map_err(conflict("lease exists"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn db_leases(&self, org_id: Uuid, limit: i64) -> Result<Vec<DbLeaseRow>> {
        let rows = query("SELECT * FROM db_leases WHERE org_id = $1 ORDER BY issued_at DESC, id LIMIT $2")
            .bind(org_id.to_string())
            .bind(limit)
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(lease_row).collect()
    }

    async fn active_db_leases(&self) -> Result<Vec<DbLeaseRow>> {
        let mut out = Vec::new();
        for org_id in self.db_org_ids().await? {
            let rows = query("SELECT * FROM db_leases WHERE org_id = $1 AND status = 'active'")
                .bind(org_id.to_string())
                .fetch_all(&mut *self.tenant(org_id).await?)
                .await?;
            for r in &rows {
                out.push(lease_row(r)?);
            }
        }
        out.sort_by_key(|l| l.expires_at);
        Ok(out)
    }

    async fn set_lease_expiry(&self, org_id: Uuid, id: Uuid, expires_at: i64) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("UPDATE db_leases SET expires_at = $1 WHERE org_id = $2 AND id = $3 AND status = 'active'")
            .bind(expires_at)
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn mark_lease_revoked(&self, org_id: Uuid, id: Uuid, at: i64) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query(
            "UPDATE db_leases SET status = 'revoked', revoked_at = $1, last_error = NULL \
             WHERE org_id = $2 AND id = $3 AND status = 'active'",
        )
        .bind(at)
        .bind(org_id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn lease_revocation_failed(&self, org_id: Uuid, id: Uuid, error: &str) -> Result<()> {
        let mut tx = self.tenant_tx(org_id).await?;
        query("UPDATE db_leases SET attempts = attempts + 1, last_error = $1 WHERE org_id = $2 AND id = $3")
            .bind(error.to_owned())
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
