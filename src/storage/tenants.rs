//! The tenant aggregate: organizations (with their first KEK), projects and
//! environments — the `org/project/env` tree every secret hangs from.
//! Organizations are listed from the shared pool (a slug is global);
//! projects, environments and KEKs are tenant rows, read and written on a
//! connection acting for their organization (PostgreSQL row-level security).
//!
//! [`TenantStore`] (a supertrait of [`super::Backend`]) is implemented once
//! here for [`SqlBackend`]. Invariants: an organization and its first KEK are
//! written in one transaction, together with the creator's organization
//! count, which cannot overshoot its limit even under parallel creations;
//! slugs are unique (organization: global; project: per organization;
//! environment: per project) and a duplicate is [`StorageError::Conflict`].
//! The KEK lifecycle after creation (rotation, re-wrap, destroy) is
//! [`super::keystore::KeyStore`]'s, but for the purge of a deleted
//! organization, which deletes its KEK versions with everything else.
//! A deleted node (`deleted_at` set) is hidden from every lookup here and
//! keeps its slug until it is purged.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::db::{conflict, query, uuid};
use super::{Result, SqlBackend, StorageError};

/// An organization.
#[derive(Debug, Clone)]
pub struct OrgRow {
    /// id
    pub id: Uuid,
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// unix ms
    pub created_at: i64,
}

/// A wrapped org KEK version.
#[derive(Debug, Clone)]
pub struct KekRow {
    /// organization
    pub org_id: Uuid,
    /// version, from 1
    pub version: i64,
    /// the KEK wrapped by the root key
    pub wrapped_key: Vec<u8>,
    /// unix ms
    pub created_at: i64,
}

/// A project of an organization.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// url slug, unique per org
    pub slug: String,
    /// display name
    pub name: String,
    /// unix ms
    pub created_at: i64,
}

/// An environment of a project.
#[derive(Debug, Clone)]
pub struct EnvRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// project
    pub project_id: Uuid,
    /// url slug, unique per project
    pub slug: String,
    /// display name
    pub name: String,
    /// protected environments (production) get stricter rules later
    pub protected: bool,
    /// unix ms
    pub created_at: i64,
}

/// The ids an `org/project/env` slug path resolves to, plus the org's
/// active KEK version (what new secret versions are encrypted under).
#[derive(Debug, Clone, Copy)]
pub struct EnvPath {
    /// organization
    pub org_id: Uuid,
    /// project
    pub project_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// active KEK version of the org
    pub kek_version: i64,
}

/// A node of the tenant tree, as deletion sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantNode {
    /// an organization and everything in it
    Org(Uuid),
    /// a project and its environments
    Project {
        /// organization
        org_id: Uuid,
        /// project
        id: Uuid,
    },
    /// an environment
    Env {
        /// organization
        org_id: Uuid,
        /// environment
        id: Uuid,
    },
}

impl TenantNode {
    /// The organization the node is part of.
    pub fn org_id(self) -> Uuid {
        match self {
            TenantNode::Org(id) => id,
            TenantNode::Project { org_id, .. } | TenantNode::Env { org_id, .. } => org_id,
        }
    }
}

/// What a purge erased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// secret version rows (each a ciphertext and its wrapped DEK)
    pub versions: u64,
    /// secret rows
    pub secrets: u64,
    /// environments
    pub envs: u64,
    /// the KEK versions destroyed (an organization's purge only)
    pub kek_versions: Vec<i64>,
}

/// Storage of organizations, projects and environments.
#[async_trait]
pub trait TenantStore: Send + Sync + std::fmt::Debug {
    /// Create an organization with its first KEK, in one transaction.
    /// `creator`: the user creating it and how many organizations a user
    /// may create; their count goes up in the same transaction, and
    /// [`StorageError::LimitReached`] (nothing written) once it is at the limit.
    async fn create_org(&self, org: &OrgRow, kek: &KekRow, creator: Option<(Uuid, u64)>) -> Result<()>;
    /// All organizations, by slug.
    async fn list_orgs(&self) -> Result<Vec<OrgRow>>;
    /// One organization by slug.
    async fn org(&self, slug: &str) -> Result<Option<OrgRow>>;
    /// One wrapped KEK version.
    async fn kek(&self, org_id: Uuid, version: i64) -> Result<Option<KekRow>>;
    /// Change an organization's slug and name, keeping its id (and so its
    /// grants, secrets, keys and audit records); false if there is none.
    /// [`StorageError::Conflict`] if another organization has the slug.
    async fn rename_org(&self, org_id: Uuid, slug: &str, name: &str) -> Result<bool>;
    /// Create a project.
    async fn create_project(&self, project: &ProjectRow) -> Result<()>;
    /// Projects of an org, by slug.
    async fn list_projects(&self, org_id: Uuid) -> Result<Vec<ProjectRow>>;
    /// One project by slug.
    async fn project(&self, org_id: Uuid, slug: &str) -> Result<Option<ProjectRow>>;
    /// Change a project's slug and name, keeping its id; false if there is
    /// none. [`StorageError::Conflict`] if the organization has the slug.
    async fn rename_project(&self, org_id: Uuid, project_id: Uuid, slug: &str, name: &str) -> Result<bool>;
    /// Create an environment.
    async fn create_env(&self, env: &EnvRow) -> Result<()>;
    /// Change an environment's slug, name and protection, keeping its id;
    /// false if there is none. [`StorageError::Conflict`] if the project
    /// has the slug.
    async fn update_env(&self, env: &EnvRow) -> Result<bool>;
    /// Environments of an org (every project), by project and slug.
    async fn list_envs(&self, org_id: Uuid) -> Result<Vec<EnvRow>>;
    /// Resolve `org/project/env` slugs.
    async fn resolve_env(&self, org: &str, project: &str, env: &str) -> Result<Option<EnvPath>>;
    /// Soft-delete a node (`at`: unix ms) or restore it (`None`): every
    /// lookup above hides a deleted node and what is under it, its slug
    /// stays taken. False if the node is not in the state to change
    /// (already deleted, or not deleted, or gone).
    async fn mark_deleted(&self, node: TenantNode, at: Option<i64>) -> Result<bool>;
    /// Soft-deleted organizations with their deletion time, by slug.
    async fn deleted_orgs(&self) -> Result<Vec<(OrgRow, i64)>>;
    /// Soft-deleted projects of an organization with their deletion time.
    async fn deleted_projects(&self, org_id: Uuid) -> Result<Vec<(ProjectRow, i64)>>;
    /// Soft-deleted environments of an organization (whatever their
    /// project's state) with their deletion time.
    async fn deleted_envs(&self, org_id: Uuid) -> Result<Vec<(EnvRow, i64)>>;
    /// Nodes deleted at or before `before` (unix ms), organizations first.
    async fn expired_deletions(&self, before: i64) -> Result<Vec<TenantNode>>;
    /// Erase a soft-deleted node and everything under it in one
    /// transaction: secret versions (ciphertexts and wrapped DEKs), secrets,
    /// KV metadata, allowed variables, grants on it; for an organization
    /// also its memberships, groups, service accounts with their tokens and
    /// its KEK versions (crypto-shred). Nothing (None) if the node is not
    /// deleted, or was deleted after `deleted_by` (unix ms; the purge job's
    /// cutoff, so a node restored and deleted again meanwhile is kept).
    async fn purge_node(&self, node: TenantNode, deleted_by: i64) -> Result<Option<Purged>>;
}

pub(super) fn org_row(r: &AnyRow) -> Result<OrgRow> {
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

#[async_trait]
impl TenantStore for SqlBackend {
    async fn create_org(&self, org: &OrgRow, kek: &KekRow, creator: Option<(Uuid, u64)>) -> Result<()> {
        let mut tx = self.tenant_tx(org.id).await?;
        if let Some((user_id, max)) = creator {
            // Compare-and-increment: parallel creations cannot overshoot.
            let counted = query("UPDATE users SET orgs_created = orgs_created + 1 WHERE id = $1 AND orgs_created < $2")
                .bind(user_id.to_string())
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            if counted.rows_affected() != 1 {
                return Err(StorageError::LimitReached);
            }
        }
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

    async fn rename_org(&self, org_id: Uuid, slug: &str, name: &str) -> Result<bool> {
        let done = query("UPDATE orgs SET slug = $1, name = $2 WHERE id = $3")
            .bind(slug.to_owned())
            .bind(name.to_owned())
            .bind(org_id.to_string())
            .execute(&mut *self.tenant(org_id).await?)
            .await
            .map_err(conflict("an organization with this slug exists"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_orgs(&self) -> Result<Vec<OrgRow>> {
        let rows = query("SELECT id, slug, name, created_at FROM orgs WHERE deleted_at IS NULL ORDER BY slug")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(org_row).collect()
    }

    async fn org(&self, slug: &str) -> Result<Option<OrgRow>> {
        let row = query("SELECT id, slug, name, created_at FROM orgs WHERE slug = $1 AND deleted_at IS NULL")
            .bind(slug.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(org_row).transpose()
    }

    async fn kek(&self, org_id: Uuid, version: i64) -> Result<Option<KekRow>> {
        let row = query("SELECT wrapped_key, created_at FROM kms_keys WHERE org_id = $1 AND version = $2")
            .bind(org_id.to_string())
            .bind(version)
            .fetch_optional(&mut *self.tenant(org_id).await?)
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
            .execute(&mut *self.tenant(p.org_id).await?)
            .await
            .map_err(conflict("a project with this slug exists in the organization"))?;
        Ok(())
    }

    async fn rename_project(&self, org_id: Uuid, project_id: Uuid, slug: &str, name: &str) -> Result<bool> {
        let done = query("UPDATE projects SET slug = $1, name = $2 WHERE org_id = $3 AND id = $4")
            .bind(slug.to_owned())
            .bind(name.to_owned())
            .bind(org_id.to_string())
            .bind(project_id.to_string())
            .execute(&mut *self.tenant(org_id).await?)
            .await
            .map_err(conflict("a project with this slug exists in the organization"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_projects(&self, org_id: Uuid) -> Result<Vec<ProjectRow>> {
        let rows = query(
            "SELECT id, org_id, slug, name, created_at FROM projects WHERE org_id = $1 AND deleted_at IS NULL \
             ORDER BY slug",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(project_row).collect()
    }

    async fn project(&self, org_id: Uuid, slug: &str) -> Result<Option<ProjectRow>> {
        let row = query(
            "SELECT id, org_id, slug, name, created_at FROM projects \
             WHERE org_id = $1 AND slug = $2 AND deleted_at IS NULL",
        )
        .bind(org_id.to_string())
        .bind(slug.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
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
        .execute(&mut *self.tenant(e.org_id).await?)
        .await
        .map_err(conflict("an environment with this slug exists in the project"))?;
        Ok(())
    }

    async fn update_env(&self, e: &EnvRow) -> Result<bool> {
        let done = query(
            "UPDATE environments SET slug = $1, name = $2, protected = $3 \
             WHERE org_id = $4 AND project_id = $5 AND id = $6",
        )
        .bind(&e.slug)
        .bind(&e.name)
        .bind(i64::from(e.protected))
        .bind(e.org_id.to_string())
        .bind(e.project_id.to_string())
        .bind(e.id.to_string())
        .execute(&mut *self.tenant(e.org_id).await?)
        .await
        .map_err(conflict("an environment with this slug exists in the project"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_envs(&self, org_id: Uuid) -> Result<Vec<EnvRow>> {
        let rows = query(
            "SELECT id, org_id, project_id, slug, name, protected, created_at FROM environments \
             WHERE org_id = $1 AND deleted_at IS NULL \
             AND project_id IN (SELECT id FROM projects WHERE org_id = $1 AND deleted_at IS NULL) \
             ORDER BY project_id, slug",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter().map(env_row).collect()
    }

    async fn resolve_env(&self, org: &str, project: &str, env: &str) -> Result<Option<EnvPath>> {
        let row = query("SELECT id, kek_version FROM orgs WHERE slug = $1 AND deleted_at IS NULL")
            .bind(org.to_owned())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let org_id = uuid(&row, "id", "orgs")?;
        let kek_version: i64 = row.try_get("kek_version")?;
        let row = query(
            "SELECT p.id AS project_id, e.id AS env_id \
             FROM projects p JOIN environments e ON e.project_id = p.id \
             WHERE p.org_id = $1 AND e.org_id = $1 AND p.slug = $2 AND e.slug = $3 \
             AND p.deleted_at IS NULL AND e.deleted_at IS NULL",
        )
        .bind(org_id.to_string())
        .bind(project.to_owned())
        .bind(env.to_owned())
        .fetch_optional(&mut *self.tenant(org_id).await?)
        .await?;
        row.map(|r| {
            Ok(EnvPath {
                org_id,
                project_id: uuid(&r, "project_id", "projects")?,
                env_id: uuid(&r, "env_id", "environments")?,
                kek_version,
            })
        })
        .transpose()
    }
    async fn mark_deleted(&self, node: TenantNode, at: Option<i64>) -> Result<bool> {
        let (sql, id): (&'static str, Uuid) = match (node, at) {
            (TenantNode::Org(id), Some(_)) => (
                "UPDATE orgs SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
                id,
            ),
            (TenantNode::Org(id), None) => (
                "UPDATE orgs SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NOT NULL",
                id,
            ),
            (TenantNode::Project { id, .. }, Some(_)) => (
                "UPDATE projects SET deleted_at = $1 WHERE id = $2 AND org_id = $3 AND deleted_at IS NULL",
                id,
            ),
            (TenantNode::Project { id, .. }, None) => (
                "UPDATE projects SET deleted_at = $1 WHERE id = $2 AND org_id = $3 AND deleted_at IS NOT NULL",
                id,
            ),
            (TenantNode::Env { id, .. }, Some(_)) => (
                "UPDATE environments SET deleted_at = $1 WHERE id = $2 AND org_id = $3 AND deleted_at IS NULL",
                id,
            ),
            (TenantNode::Env { id, .. }, None) => (
                "UPDATE environments SET deleted_at = $1 WHERE id = $2 AND org_id = $3 AND deleted_at IS NOT NULL",
                id,
            ),
        };
        let org_id = node.org_id();
        let mut q = query(sql).bind(at).bind(id.to_string());
        if !matches!(node, TenantNode::Org(_)) {
            q = q.bind(org_id.to_string());
        }
        let done = q.execute(&mut *self.tenant(org_id).await?).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn deleted_orgs(&self) -> Result<Vec<(OrgRow, i64)>> {
        let rows =
            query("SELECT id, slug, name, created_at, deleted_at FROM orgs WHERE deleted_at IS NOT NULL ORDER BY slug")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((org_row(r)?, r.try_get("deleted_at")?)))
            .collect()
    }

    async fn deleted_projects(&self, org_id: Uuid) -> Result<Vec<(ProjectRow, i64)>> {
        let rows = query(
            "SELECT id, org_id, slug, name, created_at, deleted_at FROM projects \
             WHERE org_id = $1 AND deleted_at IS NOT NULL ORDER BY slug",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| Ok((project_row(r)?, r.try_get("deleted_at")?)))
            .collect()
    }

    async fn deleted_envs(&self, org_id: Uuid) -> Result<Vec<(EnvRow, i64)>> {
        let rows = query(
            "SELECT id, org_id, project_id, slug, name, protected, created_at, deleted_at FROM environments \
             WHERE org_id = $1 AND deleted_at IS NOT NULL ORDER BY project_id, slug",
        )
        .bind(org_id.to_string())
        .fetch_all(&mut *self.tenant(org_id).await?)
        .await?;
        rows.iter()
            .map(|r| Ok((env_row(r)?, r.try_get("deleted_at")?)))
            .collect()
    }

    async fn expired_deletions(&self, before: i64) -> Result<Vec<TenantNode>> {
        let mut out = Vec::new();
        let orgs = query("SELECT id, deleted_at FROM orgs ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut live = Vec::new();
        for r in &orgs {
            let id = uuid(r, "id", "orgs")?;
            match r.try_get::<Option<i64>, _>("deleted_at")? {
                Some(at) if at <= before => out.push(TenantNode::Org(id)),
                Some(_) => {}
                None => live.push(id),
            }
        }
        for org_id in live {
            let mut conn = self.tenant(org_id).await?;
            let projects = query(
                "SELECT id FROM projects WHERE org_id = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2 ORDER BY id",
            )
            .bind(org_id.to_string())
            .bind(before)
            .fetch_all(&mut *conn)
            .await?;
            for r in &projects {
                out.push(TenantNode::Project {
                    org_id,
                    id: uuid(r, "id", "projects")?,
                });
            }
            let envs = query(
                "SELECT id FROM environments WHERE org_id = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2 \
                 ORDER BY id",
            )
            .bind(org_id.to_string())
            .bind(before)
            .fetch_all(&mut *conn)
            .await?;
            for r in &envs {
                out.push(TenantNode::Env {
                    org_id,
                    id: uuid(r, "id", "environments")?,
                });
            }
        }
        Ok(out)
    }

    async fn purge_node(&self, node: TenantNode, deleted_by: i64) -> Result<Option<Purged>> {
        let org_id = node.org_id();
        let org = org_id.to_string();
        let mut tx = self.tenant_tx(org_id).await?;
        let mut purged = Purged::default();
        // Each step: (SQL with $1 = org and, but for an organization, $2 =
        // the node), and which count it adds to.
        let (check, steps): (&'static str, &[(&'static str, u8)]) = match node {
            TenantNode::Env { .. } => (
                "UPDATE environments SET deleted_at = deleted_at \
                 WHERE org_id = $1 AND id = $2 AND deleted_at IS NOT NULL AND deleted_at <= $3",
                &[
                    (
                        "DELETE FROM secret_versions WHERE org_id = $1 AND secret_id IN \
                         (SELECT id FROM secrets WHERE org_id = $1 AND env_id = $2)",
                        1,
                    ),
                    ("DELETE FROM secrets WHERE org_id = $1 AND env_id = $2", 2),
                    ("DELETE FROM kv_metadata WHERE org_id = $1 AND env_id = $2", 0),
                    ("DELETE FROM env_allowed_vars WHERE org_id = $1 AND env_id = $2", 0),
                    // protected environments (issue 17)
                    (
                        "DELETE FROM approval_votes WHERE org_id = $1 AND request_id IN \
                         (SELECT id FROM approval_requests WHERE org_id = $1 AND env_id = $2)",
                        0,
                    ),
                    ("DELETE FROM approval_requests WHERE org_id = $1 AND env_id = $2", 0),
                    ("DELETE FROM approval_policies WHERE org_id = $1 AND env_id = $2", 0),
                    // CI sync targets (issue 19)
                    (
                        "DELETE FROM ci_sync_jobs WHERE org_id = $1 AND target_id IN \
                         (SELECT id FROM ci_sync_targets WHERE org_id = $1 AND env_id = $2)",
                        0,
                    ),
                    (
                        "DELETE FROM ci_sync_state WHERE org_id = $1 AND target_id IN \
                         (SELECT id FROM ci_sync_targets WHERE org_id = $1 AND env_id = $2)",
                        0,
                    ),
                    ("DELETE FROM ci_sync_targets WHERE org_id = $1 AND env_id = $2", 0),
                    ("DELETE FROM grants WHERE org_id = $1 AND env_id = $2", 0),
                    ("DELETE FROM environments WHERE org_id = $1 AND id = $2", 3),
                ],
            ),
            TenantNode::Project { .. } => (
                "UPDATE projects SET deleted_at = deleted_at \
                 WHERE org_id = $1 AND id = $2 AND deleted_at IS NOT NULL AND deleted_at <= $3",
                &[
                    (
                        "DELETE FROM secret_versions WHERE org_id = $1 AND secret_id IN \
                         (SELECT id FROM secrets WHERE org_id = $1 AND env_id IN \
                          (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2))",
                        1,
                    ),
                    (
                        "DELETE FROM secrets WHERE org_id = $1 AND env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2)",
                        2,
                    ),
                    (
                        "DELETE FROM kv_metadata WHERE org_id = $1 AND env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2)",
                        0,
                    ),
                    (
                        "DELETE FROM env_allowed_vars WHERE org_id = $1 AND env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2)",
                        0,
                    ),
                    // protected environments (issue 17)
                    (
                        "DELETE FROM approval_votes WHERE org_id = $1 AND request_id IN \
                         (SELECT id FROM approval_requests WHERE org_id = $1 AND env_id IN \
                          (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2))",
                        0,
                    ),
                    (
                        "DELETE FROM approval_requests WHERE org_id = $1 AND env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2)",
                        0,
                    ),
                    (
                        "DELETE FROM approval_policies WHERE org_id = $1 AND env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2)",
                        0,
                    ),
                    (
                        "DELETE FROM grants WHERE org_id = $1 AND (project_id = $2 OR env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2))",
                        0,
                    ),
                    // CI sync targets (issue 19)
                    (
                        "DELETE FROM ci_sync_jobs WHERE org_id = $1 AND target_id IN \
                         (SELECT id FROM ci_sync_targets WHERE org_id = $1 AND env_id IN \
                          (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2))",
                        0,
                    ),
                    (
                        "DELETE FROM ci_sync_state WHERE org_id = $1 AND target_id IN \
                         (SELECT id FROM ci_sync_targets WHERE org_id = $1 AND env_id IN \
                          (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2))",
                        0,
                    ),
                    (
                        "DELETE FROM ci_sync_targets WHERE org_id = $1 AND env_id IN \
                         (SELECT id FROM environments WHERE org_id = $1 AND project_id = $2)",
                        0,
                    ),
                    ("DELETE FROM environments WHERE org_id = $1 AND project_id = $2", 3),
                    ("DELETE FROM projects WHERE org_id = $1 AND id = $2", 0),
                ],
            ),
            TenantNode::Org(_) => (
                "UPDATE orgs SET deleted_at = deleted_at WHERE id = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2",
                &[
                    ("DELETE FROM secret_versions WHERE org_id = $1", 1),
                    ("DELETE FROM secrets WHERE org_id = $1", 2),
                    ("DELETE FROM kv_metadata WHERE org_id = $1", 0),
                    ("DELETE FROM env_allowed_vars WHERE org_id = $1", 0),
                    ("DELETE FROM ci_sync_jobs WHERE org_id = $1", 0),
                    ("DELETE FROM ci_sync_state WHERE org_id = $1", 0),
                    ("DELETE FROM ci_sync_targets WHERE org_id = $1", 0),
                    ("DELETE FROM webhook_deliveries WHERE org_id = $1", 0),
                    ("DELETE FROM webhooks WHERE org_id = $1", 0),
                    ("DELETE FROM jwt_roles WHERE org_id = $1", 0),
                    ("DELETE FROM jwt_issuers WHERE org_id = $1", 0),
                    ("DELETE FROM db_leases WHERE org_id = $1", 0),
                    ("DELETE FROM db_roles WHERE org_id = $1", 0),
                    ("DELETE FROM db_connections WHERE org_id = $1", 0),
                    ("DELETE FROM sso_states WHERE org_id = $1", 0),
                    ("DELETE FROM sso_providers WHERE org_id = $1", 0),
                    ("DELETE FROM approval_votes WHERE org_id = $1", 0),
                    ("DELETE FROM approval_requests WHERE org_id = $1", 0),
                    ("DELETE FROM approval_policies WHERE org_id = $1", 0),
                    ("DELETE FROM grants WHERE org_id = $1", 0),
                    ("DELETE FROM group_members WHERE org_id = $1", 0),
                    ("DELETE FROM groups WHERE org_id = $1", 0),
                    ("DELETE FROM tokens WHERE org_id = $1", 0),
                    ("DELETE FROM share_links WHERE org_id = $1", 0),
                    ("DELETE FROM share_policies WHERE org_id = $1", 0),
                    ("DELETE FROM service_accounts WHERE org_id = $1", 0),
                    ("DELETE FROM memberships WHERE org_id = $1", 0),
                    ("DELETE FROM environments WHERE org_id = $1", 3),
                    ("DELETE FROM projects WHERE org_id = $1", 0),
                    ("DELETE FROM kms_keys WHERE org_id = $1", 0),
                    ("DELETE FROM orgs WHERE id = $1", 0),
                ],
            ),
        };
        let node_id = match node {
            TenantNode::Org(_) => None,
            TenantNode::Project { id, .. } | TenantNode::Env { id, .. } => Some(id.to_string()),
        };
        // Still deleted (and, for the purge job, since before its cutoff)?
        // The no-op UPDATE also locks the row until the commit, so a
        // restore racing the purge waits for it and then finds nothing.
        let mut q = query(check).bind(org.clone());
        if let Some(id) = &node_id {
            q = q.bind(id.clone());
        }
        if q.bind(deleted_by).execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(None);
        }
        if matches!(node, TenantNode::Org(_)) {
            let rows = query("SELECT version FROM kms_keys WHERE org_id = $1 ORDER BY version")
                .bind(org.clone())
                .fetch_all(&mut *tx)
                .await?;
            for r in &rows {
                purged.kek_versions.push(r.try_get("version")?);
            }
        }
        for (sql, count) in steps {
            let mut q = query(sql).bind(org.clone());
            if let Some(id) = &node_id {
                q = q.bind(id.clone());
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            match count {
                1 => purged.versions += n,
                2 => purged.secrets += n,
                3 => purged.envs += n,
                _ => {}
            }
        }
        tx.commit().await?;
        if super::Backend::kind(self) == "sqlite" {
            // secure_delete zeroed the erased cells; move those pages out
            // of the write-ahead log into the file and empty the log, so no
            // older page image with a ciphertext stays on disk. Busy (a
            // reader holds a snapshot) is not an error: the next
            // checkpoint completes it.
            query("PRAGMA wal_checkpoint(TRUNCATE)").execute(self.writes()).await?;
        }
        Ok(Some(purged))
    }
}
