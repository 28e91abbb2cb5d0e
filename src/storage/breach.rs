//! Storage of the organization policy of the leaked-password check
//! (`service/breach.rs`): whether a `password` secret found in the breach
//! corpus is refused (`orgs.block_breached_passwords`, migration 0015). A
//! trait of its own ([`BreachPolicyStore`], a supertrait of
//! [`super::Backend`]), implemented once here for [`SqlBackend`].

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::db::query;
use super::{Result, SqlBackend};

/// The breach-check policy's storage.
#[async_trait]
pub trait BreachPolicyStore: Send + Sync + std::fmt::Debug {
    /// Whether the organization refuses breached passwords (false for an
    /// unknown organization).
    async fn block_breached_passwords(&self, org_id: Uuid) -> Result<bool>;
    /// Set the policy; false when the organization does not exist.
    async fn set_block_breached_passwords(&self, org_id: Uuid, block: bool) -> Result<bool>;
}

#[async_trait]
impl BreachPolicyStore for SqlBackend {
    async fn block_breached_passwords(&self, org_id: Uuid) -> Result<bool> {
        let row = query("SELECT block_breached_passwords FROM orgs WHERE id = $1")
            .bind(org_id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("block_breached_passwords")? != 0,
            None => false,
        })
    }

    async fn set_block_breached_passwords(&self, org_id: Uuid, block: bool) -> Result<bool> {
        let done = query("UPDATE orgs SET block_breached_passwords = $2 WHERE id = $1")
            .bind(org_id.to_string())
            .bind(i64::from(block))
            .execute(self.writes())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
