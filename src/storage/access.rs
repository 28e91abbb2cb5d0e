//! The access aggregate: who may do what in an organization. Memberships
//! (a user's role in an org), groups and their members, service accounts
//! (CI identities) and grants of permissions on projects and environments.
//!
//! [`AccessStore`] (a supertrait of [`super::Backend`]) is implemented once
//! here for [`SqlBackend`]. Memberships are read on the shared pool (a user
//! lists their organizations across tenants); groups, service accounts and
//! grants are tenant rows. Invariants: removing a membership removes the
//! member's grants and group memberships in that organization, and deleting
//! a service account its grants and tokens, each in one transaction — access
//! never outlives the thing it was granted to.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use uuid::Uuid;

use super::db::{conflict, opt_uuid, query, uuid};
use super::identity::user_row;
use super::tenants::org_row;
use super::{OrgRow, Result, SqlBackend, UserRow};

/// A group of users in an organization.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// slug
    pub name: String,
    /// unix ms
    pub created_at: i64,
}

/// A service account (CI identity) of an organization.
#[derive(Debug, Clone)]
pub struct ServiceAccountRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// slug
    pub name: String,
    /// allowed source networks, comma-separated; empty = anywhere
    pub cidrs: String,
    /// client certificate SPKI SHA-256 (hex) that authenticates as this account
    pub cert_spki_sha256: Option<String>,
    /// client certificate subject common name
    pub cert_subject_cn: Option<String>,
    /// client certificate DNS subject alternative name
    pub cert_dns_san: Option<String>,
    /// unix ms
    pub created_at: i64,
}

/// A grant of permissions to a subject on environments.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// user | service_account | group
    pub subject_kind: String,
    /// the subject's id
    pub subject_id: Uuid,
    /// None = every project
    pub project_id: Option<Uuid>,
    /// None = every environment of the project (or of the org)
    pub env_id: Option<Uuid>,
    /// permission bits (`access::PermSet`)
    pub permissions: i64,
    /// unix ms
    pub created_at: i64,
}

/// Storage of memberships, groups, service accounts and grants.
#[async_trait]
pub trait AccessStore: Send + Sync + std::fmt::Debug {
    /// Add a member or change the role.
    async fn set_membership(&self, org_id: Uuid, user_id: Uuid, role: &str, now: i64) -> Result<()>;
    /// Remove a member with the member's grants and group memberships in the org.
    async fn remove_membership(&self, org_id: Uuid, user_id: Uuid) -> Result<bool>;
    /// The role of a user in an org.
    async fn membership(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<String>>;
    /// Members of an org: (user, role), by email.
    async fn members(&self, org_id: Uuid) -> Result<Vec<(UserRow, String)>>;
    /// Organizations a user belongs to, with the role.
    async fn orgs_of(&self, user_id: Uuid) -> Result<Vec<(OrgRow, String)>>;
    /// Create a group.
    async fn create_group(&self, group: &GroupRow) -> Result<()>;
    /// Groups of an org with their members' emails.
    async fn groups(&self, org_id: Uuid) -> Result<Vec<(GroupRow, Vec<String>)>>;
    /// Add a user to a group.
    async fn add_group_member(&self, org_id: Uuid, group_id: Uuid, user_id: Uuid) -> Result<()>;
    /// Remove a user from a group.
    async fn remove_group_member(&self, org_id: Uuid, group_id: Uuid, user_id: Uuid) -> Result<bool>;
    /// Ids of the groups of a user in an org.
    async fn user_groups(&self, org_id: Uuid, user_id: Uuid) -> Result<Vec<Uuid>>;
    /// Create a service account.
    async fn create_service_account(&self, sa: &ServiceAccountRow) -> Result<()>;
    /// Service accounts of an org, by name.
    async fn service_accounts(&self, org_id: Uuid) -> Result<Vec<ServiceAccountRow>>;
    /// One service account by id.
    async fn service_account(&self, org_id: Uuid, id: Uuid) -> Result<Option<ServiceAccountRow>>;
    /// Delete a service account with its grants and tokens, in one transaction.
    async fn delete_service_account(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Create a grant.
    async fn create_grant(&self, grant: &GrantRow) -> Result<()>;
    /// Every grant of an org.
    async fn grants(&self, org_id: Uuid) -> Result<Vec<GrantRow>>;
    /// Delete a grant.
    async fn delete_grant(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
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

#[async_trait]
impl AccessStore for SqlBackend {
    async fn set_membership(&self, org_id: Uuid, user_id: Uuid, role: &str, now: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
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
            .fetch_optional(self.pool())
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
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((user_row(r)?, r.try_get("role")?))).collect()
    }

    async fn orgs_of(&self, user_id: Uuid) -> Result<Vec<(OrgRow, String)>> {
        let rows = query(
            "SELECT o.id, o.slug, o.name, o.created_at, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = $1 AND o.deleted_at IS NULL ORDER BY o.slug",
        )
        .bind(user_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((org_row(r)?, r.try_get("role")?))).collect()
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
}
