//! Storage of JWT/OIDC workload-identity login (issue 19,
//! docs/jwt-auth.md): an organization's trusted token issuers and its login
//! roles. A trait of its own ([`JwtAuthStore`], a supertrait of
//! [`super::Backend`]), implemented once here for [`SqlBackend`] in portable
//! SQL. Tenant rows: every query filters on `org_id` (and PostgreSQL's
//! row-level security checks it again). No row holds a credential.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{conflict, query, uuid};
use super::{Result, SqlBackend, StorageError};

/// A trusted token issuer of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuerRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// slug, unique in the organization
    pub name: String,
    /// the tokens' exact `iss`
    pub issuer: String,
    /// github | gitlab | "" (generic)
    pub preset: String,
    /// OIDC discovery document URL
    pub discovery_url: Option<String>,
    /// JWKS URL
    pub jwks_url: Option<String>,
    /// static JWKS (JSON)
    pub jwks: Option<String>,
    /// actor name
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
}

/// A login role: which tokens of which issuer may act as which service
/// account, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRoleRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// slug, unique in the organization
    pub name: String,
    /// the issuer whose tokens it accepts
    pub issuer_id: Uuid,
    /// the required `aud`
    pub audience: String,
    /// JSON `{claim: [pattern, …]}`
    pub bound_claims: String,
    /// the service account a login acts as
    pub sa_id: Uuid,
    /// lifetime of an issued token, seconds
    pub max_ttl_s: i64,
    /// actor name
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
}

/// Issuers and roles of JWT login.
#[async_trait]
pub trait JwtAuthStore: Send + Sync + std::fmt::Debug {
    /// Add an issuer ([`StorageError::Conflict`] if the name is taken).
    async fn insert_jwt_issuer(&self, row: &JwtIssuerRow) -> Result<()>;
    /// An organization's issuers, by name.
    async fn jwt_issuers(&self, org_id: Uuid) -> Result<Vec<JwtIssuerRow>>;
    /// One issuer by id.
    async fn jwt_issuer(&self, org_id: Uuid, id: Uuid) -> Result<Option<JwtIssuerRow>>;
    /// Delete an issuer no role uses; false if absent,
    /// [`StorageError::Conflict`] while a role uses it.
    async fn delete_jwt_issuer(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Add a role ([`StorageError::Conflict`] if the name is taken or its
    /// issuer is gone).
    async fn insert_jwt_role(&self, row: &JwtRoleRow) -> Result<()>;
    /// An organization's roles, by name.
    async fn jwt_roles(&self, org_id: Uuid) -> Result<Vec<JwtRoleRow>>;
    /// Delete a role by name; false if absent.
    async fn delete_jwt_role(&self, org_id: Uuid, name: &str) -> Result<bool>;
    /// The roles of this name in every organization (a login that names
    /// no organization).
    async fn jwt_roles_named(&self, name: &str) -> Result<Vec<JwtRoleRow>>;
}

fn issuer_row(r: &AnyRow) -> Result<JwtIssuerRow> {
    Ok(JwtIssuerRow {
        id: uuid(r, "id", "jwt_issuers")?,
        org_id: uuid(r, "org_id", "jwt_issuers")?,
        name: r.try_get("name")?,
        issuer: r.try_get("issuer")?,
        preset: r.try_get("preset")?,
        discovery_url: r.try_get("discovery_url")?,
        jwks_url: r.try_get("jwks_url")?,
        jwks: r.try_get("jwks")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn role_row(r: &AnyRow) -> Result<JwtRoleRow> {
    Ok(JwtRoleRow {
        id: uuid(r, "id", "jwt_roles")?,
        org_id: uuid(r, "org_id", "jwt_roles")?,
        name: r.try_get("name")?,
        issuer_id: uuid(r, "issuer_id", "jwt_roles")?,
        audience: r.try_get("audience")?,
        bound_claims: r.try_get("bound_claims")?,
        sa_id: uuid(r, "sa_id", "jwt_roles")?,
        max_ttl_s: r.try_get("max_ttl_s")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl JwtAuthStore for SqlBackend {
    async fn insert_jwt_issuer(&self, i: &JwtIssuerRow) -> Result<()> {
        let mut tx = self.tenant_tx(i.org_id).await?;
        query(
            "INSERT INTO jwt_issuers (id, org_id, name, issuer, preset, discovery_url, jwks_url, jwks, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(i.id.to_string())
        .bind(i.org_id.to_string())
        .bind(i.name.clone())
        .bind(i.issuer.clone())
        .bind(i.preset.clone())
        .bind(i.discovery_url.clone())
        .bind(i.jwks_url.clone())
        .bind(i.jwks.clone())
        .bind(i.created_by.clone())
        .bind(i.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("a JWT issuer of this name exists in the organization"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn jwt_issuers(&self, org_id: Uuid) -> Result<Vec<JwtIssuerRow>> {
        let rows = query("SELECT * FROM jwt_issuers WHERE org_id = $1 ORDER BY name")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(issuer_row).collect()
    }

    async fn jwt_issuer(&self, org_id: Uuid, id: Uuid) -> Result<Option<JwtIssuerRow>> {
        let row = query("SELECT * FROM jwt_issuers WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *self.tenant(org_id).await?)
            .await?;
        row.as_ref().map(issuer_row).transpose()
    }

    async fn delete_jwt_issuer(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let used = query("SELECT COUNT(*) AS n FROM jwt_roles WHERE org_id = $1 AND issuer_id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let n: i64 = used.try_get("n")?;
        if n > 0 {
            return Err(StorageError::Conflict("roles use this JWT issuer; remove them first"));
        }
        let done = query("DELETE FROM jwt_issuers WHERE org_id = $1 AND id = $2")
            .bind(org_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_jwt_role(&self, r: &JwtRoleRow) -> Result<()> {
        let mut tx = self.tenant_tx(r.org_id).await?;
        // The issuer must still exist (a parallel removal loses to this
        // insert or makes it fail, never leaves a role without an issuer).
        let issuer = query("SELECT id FROM jwt_issuers WHERE org_id = $1 AND id = $2")
            .bind(r.org_id.to_string())
            .bind(r.issuer_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if issuer.is_none() {
            return Err(StorageError::Conflict("the role's JWT issuer was removed"));
        }
        query(
            "INSERT INTO jwt_roles (id, org_id, name, issuer_id, audience, bound_claims, sa_id, max_ttl_s, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(r.id.to_string())
        .bind(r.org_id.to_string())
        .bind(r.name.clone())
        .bind(r.issuer_id.to_string())
        .bind(r.audience.clone())
        .bind(r.bound_claims.clone())
        .bind(r.sa_id.to_string())
        .bind(r.max_ttl_s)
        .bind(r.created_by.clone())
        .bind(r.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("a JWT role of this name exists in the organization"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn jwt_roles(&self, org_id: Uuid) -> Result<Vec<JwtRoleRow>> {
        let rows = query("SELECT * FROM jwt_roles WHERE org_id = $1 ORDER BY name")
            .bind(org_id.to_string())
            .fetch_all(&mut *self.tenant(org_id).await?)
            .await?;
        rows.iter().map(role_row).collect()
    }

    async fn delete_jwt_role(&self, org_id: Uuid, name: &str) -> Result<bool> {
        let mut tx = self.tenant_tx(org_id).await?;
        let done = query("DELETE FROM jwt_roles WHERE org_id = $1 AND name = $2")
            .bind(org_id.to_string())
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn jwt_roles_named(&self, name: &str) -> Result<Vec<JwtRoleRow>> {
        let orgs = query("SELECT id FROM orgs WHERE deleted_at IS NULL ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for r in &orgs {
            let org_id = uuid(r, "id", "orgs")?;
            let rows = query("SELECT * FROM jwt_roles WHERE org_id = $1 AND name = $2")
                .bind(org_id.to_string())
                .bind(name.to_owned())
                .fetch_all(&mut *self.tenant(org_id).await?)
                .await?;
            for row in &rows {
                out.push(role_row(row)?);
            }
        }
        Ok(out)
    }
}
