//! Storage of one-time share links (`share_links`) and of each
//! organization's share-link policy (`share_policies`). A trait of its own
//! ([`ShareStore`], a supertrait of [`super::Backend`]), implemented once
//! here for [`SqlBackend`] in portable SQL.
//!
//! `share_links` holds ciphertext the server cannot read (the key is in the
//! link's URL fragment, docs/share-links.md) and is reached by the SHA-256
//! of the link id, before any organization is known: like `tokens` it is not
//! under PostgreSQL row-level security, so every organization-scoped query
//! here filters on `org_id` or `created_by` itself. `share_policies` is a
//! tenant table (row-level security on PostgreSQL).
//!
//! [`ShareStore::take_view`] is the one race-safe step: in one write
//! transaction it decrements the views left of a live link and returns the
//! ciphertext, and deletes the row when that was the last view. On
//! PostgreSQL the UPDATE locks the row, so a concurrent last view waits and
//! then finds no row; on SQLite write transactions are serialized.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{conflict, opt_uuid, query, uuid};
use super::{Result, SqlBackend};

/// One share link as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareRow {
    /// the handle the creator lists and revokes by
    pub id: Uuid,
    /// SHA-256 of the link id of the URL
    pub lookup: Vec<u8>,
    /// organization whose policy it was made under
    pub org_id: Uuid,
    /// principal id of the creator (nil: root)
    pub created_by: Uuid,
    /// the creator's name
    pub creator_name: String,
    /// `--from`: the environment the value came from
    pub env_id: Option<Uuid>,
    /// `--from`: "project/env:KEY" (names only, never a value)
    pub source: String,
    /// the client's ciphertext (opaque here)
    pub ciphertext: Vec<u8>,
    /// how the client derived its key ("none" or argon2id parameters and salt)
    pub kdf: String,
    /// views allowed
    pub max_views: i64,
    /// views left
    pub views_left: i64,
    /// unix ms
    pub created_at: i64,
    /// unix ms
    pub expires_at: i64,
}

impl std::fmt::Debug for ShareRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareRow")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("views_left", &self.views_left)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What one view takes from a live link.
#[derive(Clone)]
pub struct ShareView {
    /// the handle
    pub id: Uuid,
    /// the organization
    pub org_id: Uuid,
    /// the ciphertext
    pub ciphertext: Vec<u8>,
    /// the client's key derivation
    pub kdf: String,
    /// views left after this one (0: the row is gone)
    pub views_left: i64,
}

impl std::fmt::Debug for ShareView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareView")
            .field("id", &self.id)
            .field("views_left", &self.views_left)
            .finish_non_exhaustive()
    }
}

/// An organization's share-link policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePolicyRow {
    /// organization
    pub org_id: Uuid,
    /// longest lifetime of a link, seconds
    pub max_expiry_s: i64,
    /// weakest membership role that may create links: member | admin | owner
    pub min_role: String,
    /// whether values from a protected environment may be shared
    pub allow_protected: bool,
    /// unix ms
    pub updated_at: i64,
}

/// The share links' storage.
#[async_trait]
pub trait ShareStore: Send + Sync + std::fmt::Debug {
    /// Insert a link; [`super::StorageError::Conflict`] if its lookup exists.
    async fn create_share(&self, row: &ShareRow) -> Result<()>;
    /// One view of the live link (`expires_at > now`, views left) whose
    /// lookup is given, atomically: decrement, return the ciphertext, and
    /// delete the row when it was the last view. None for a spent,
    /// expired, revoked or unknown link.
    async fn take_view(&self, lookup: &[u8], now: i64) -> Result<Option<ShareView>>;
    /// Live links of one creator (every organization), newest first,
    /// without ciphertext.
    async fn shares_by(&self, created_by: Uuid, now: i64) -> Result<Vec<ShareRow>>;
    /// Live links of one organization, newest first, without ciphertext.
    async fn org_shares(&self, org_id: Uuid, now: i64) -> Result<Vec<ShareRow>>;
    /// A link by its handle (metadata only, no ciphertext), live or not.
    async fn share(&self, id: Uuid) -> Result<Option<ShareRow>>;
    /// Delete a link by its handle; false when there was none.
    async fn delete_share(&self, id: Uuid) -> Result<bool>;
    /// Delete every link expired at `now`; returns (handle, org) of each.
    async fn purge_expired_shares(&self, now: i64) -> Result<Vec<(Uuid, Uuid)>>;
    /// An organization's policy row, if one was set.
    async fn share_policy(&self, org_id: Uuid) -> Result<Option<SharePolicyRow>>;
    /// Set an organization's policy.
    async fn set_share_policy(&self, row: &SharePolicyRow) -> Result<()>;
}

const META: &str = "id, lookup, org_id, created_by, creator_name, env_id, source, kdf, max_views, views_left, \
                    created_at, expires_at";

fn meta_row(r: &AnyRow) -> Result<ShareRow> {
    Ok(ShareRow {
        id: uuid(r, "id", "share_links")?,
        lookup: r.try_get("lookup")?,
        org_id: uuid(r, "org_id", "share_links")?,
        created_by: uuid(r, "created_by", "share_links")?,
        creator_name: r.try_get("creator_name")?,
        env_id: opt_uuid(r, "env_id", "share_links")?,
        source: r.try_get("source")?,
        ciphertext: Vec::new(),
        kdf: r.try_get("kdf")?,
        max_views: r.try_get("max_views")?,
        views_left: r.try_get("views_left")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

#[async_trait]
impl ShareStore for SqlBackend {
    async fn create_share(&self, row: &ShareRow) -> Result<()> {
        query(
            "INSERT INTO share_links (id, lookup, org_id, created_by, creator_name, env_id, source, ciphertext, kdf, \
             max_views, views_left, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(row.id.to_string())
        .bind(row.lookup.clone())
        .bind(row.org_id.to_string())
        .bind(row.created_by.to_string())
        .bind(row.creator_name.clone())
        .bind(row.env_id.map(|u| u.to_string()))
        .bind(row.source.clone())
        .bind(row.ciphertext.clone())
        .bind(row.kdf.clone())
        .bind(row.max_views)
        .bind(row.views_left)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(self.writes())
        .await
        .map_err(conflict("share link exists"))?;
        Ok(())
    }

    async fn take_view(&self, lookup: &[u8], now: i64) -> Result<Option<ShareView>> {
        let mut tx = self.writes().begin().await?;
        let row = query(
            "UPDATE share_links SET views_left = views_left - 1 \
             WHERE lookup = $1 AND views_left > 0 AND expires_at > $2 \
             RETURNING id, org_id, ciphertext, kdf, views_left",
        )
        .bind(lookup.to_vec())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let view = ShareView {
            id: uuid(&r, "id", "share_links")?,
            org_id: uuid(&r, "org_id", "share_links")?,
            ciphertext: r.try_get("ciphertext")?,
            kdf: r.try_get("kdf")?,
            views_left: r.try_get("views_left")?,
        };
        if view.views_left <= 0 {
            // The last view: the ciphertext goes for good, in the same
            // transaction as the decrement.
            query("DELETE FROM share_links WHERE id = $1")
                .bind(view.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(view))
    }

    async fn shares_by(&self, created_by: Uuid, now: i64) -> Result<Vec<ShareRow>> {
        let rows = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(format!(
            "SELECT {META} FROM share_links WHERE created_by = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, id"
        )))
        .bind(created_by.to_string())
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(meta_row).collect()
    }

    async fn org_shares(&self, org_id: Uuid, now: i64) -> Result<Vec<ShareRow>> {
        let rows = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(format!(
            "SELECT {META} FROM share_links WHERE org_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, id"
        )))
        .bind(org_id.to_string())
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(meta_row).collect()
    }

    async fn share(&self, id: Uuid) -> Result<Option<ShareRow>> {
        let row = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(format!(
            "SELECT {META} FROM share_links WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(meta_row).transpose()
    }

    async fn delete_share(&self, id: Uuid) -> Result<bool> {
        let done = query("DELETE FROM share_links WHERE id = $1")
            .bind(id.to_string())
            .execute(self.writes())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_expired_shares(&self, now: i64) -> Result<Vec<(Uuid, Uuid)>> {
        let rows = query("DELETE FROM share_links WHERE expires_at <= $1 RETURNING id, org_id")
            .bind(now)
            .fetch_all(self.writes())
            .await?;
        rows.iter()
            .map(|r| Ok((uuid(r, "id", "share_links")?, uuid(r, "org_id", "share_links")?)))
            .collect()
    }

    async fn share_policy(&self, org_id: Uuid) -> Result<Option<SharePolicyRow>> {
        let row =
            query("SELECT max_expiry_s, min_role, allow_protected, updated_at FROM share_policies WHERE org_id = $1")
                .bind(org_id.to_string())
                .fetch_optional(&mut *self.tenant(org_id).await?)
                .await?;
        row.map(|r| {
            Ok(SharePolicyRow {
                org_id,
                max_expiry_s: r.try_get("max_expiry_s")?,
                min_role: r.try_get("min_role")?,
                allow_protected: r.try_get::<i64, _>("allow_protected")? != 0,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn set_share_policy(&self, row: &SharePolicyRow) -> Result<()> {
        let mut tx = self.tenant_tx(row.org_id).await?;
        query(
            "INSERT INTO share_policies (org_id, max_expiry_s, min_role, allow_protected, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id) DO UPDATE SET max_expiry_s = $2, min_role = $3, \
             allow_protected = $4, updated_at = $5",
        )
        .bind(row.org_id.to_string())
        .bind(row.max_expiry_s)
        .bind(row.min_role.clone())
        .bind(i64::from(row.allow_protected))
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
