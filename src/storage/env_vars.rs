//! Storage of the per-environment allow list of `coffer run` variable names
//! the program-loading policy would refuse (`src/env_policy.rs`). A trait of
//! its own ([`EnvVarStore`], a supertrait of [`super::Backend`]), implemented
//! once here for [`SqlBackend`] in portable SQL. Tenant rows: every query
//! filters on `org_id` (and PostgreSQL's row-level security checks it again).

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::db::query;
use super::{Result, SqlBackend};

/// One allowed name of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedVarRow {
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// the variable name, as stored and injected
    pub name: String,
    /// who allowed it (actor name)
    pub allowed_by: String,
    /// unix ms
    pub created_at: i64,
}

/// The allow list's storage.
#[async_trait]
pub trait EnvVarStore: Send + Sync + std::fmt::Debug {
    /// Every allowed name of an environment, by name.
    async fn allowed_vars(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<AllowedVarRow>>;
    /// Allow a name; false when it was allowed already (the row is kept).
    async fn allow_var(&self, row: &AllowedVarRow) -> Result<bool>;
    /// Withdraw a name; false when it was not allowed.
    async fn disallow_var(&self, org_id: Uuid, env_id: Uuid, name: &str) -> Result<bool>;
}

#[async_trait]
impl EnvVarStore for SqlBackend {
    async fn allowed_vars(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<AllowedVarRow>> {
        let rows = query(
            "SELECT name, allowed_by, created_at FROM env_allowed_vars \
             WHERE org_id = $1 AND env_id = $2 ORDER BY name",
        )
        .bind(org_id.to_string())
        .bind(env_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AllowedVarRow {
                    org_id,
                    env_id,
                    name: r.try_get("name")?,
                    allowed_by: r.try_get("allowed_by")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn allow_var(&self, row: &AllowedVarRow) -> Result<bool> {
        let done = query(
            "INSERT INTO env_allowed_vars (org_id, env_id, name, allowed_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (env_id, name) DO NOTHING",
        )
        .bind(row.org_id.to_string())
        .bind(row.env_id.to_string())
        .bind(row.name.clone())
        .bind(row.allowed_by.clone())
        .bind(row.created_at)
        .execute(&mut *self.tenant(row.org_id).await?)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn disallow_var(&self, org_id: Uuid, env_id: Uuid, name: &str) -> Result<bool> {
        let done = query("DELETE FROM env_allowed_vars WHERE org_id = $1 AND env_id = $2 AND name = $3")
            .bind(org_id.to_string())
            .bind(env_id.to_string())
            .bind(name.to_owned())
            .execute(&mut *self.tenant(org_id).await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
