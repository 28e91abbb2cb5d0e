//! Deleting organizations, projects and environments (issue 23): a soft
//! delete that hides the node at once, a restore inside the deletion window
//! (`[orgs] deletion_window_s`, 7 days by default), and a purge that erases
//! every secret version under the node (ciphertext and wrapped DEK: the
//! rows are deleted) and, for an organization, its KEK versions
//! (crypto-shred). The purge job erases what the window let go; an owner
//! (root) may purge earlier with `now`.
//!
//! Decisions (docs/tenants.md): a deleted node's slug stays taken until it
//! is purged, so a restore never meets a newcomer under its name; a deleted
//! node answers "not found" to every route but restore, purge and the
//! `deleted=true` lists; delete and restore are for the organization's
//! owners and admins, purge for its owners (root always).

use serde::Serialize;
use uuid::Uuid;

use super::audit::{Actor, AuditEvent, Outcome};
use super::{Result, ServiceError, TenantService, Unsealed, now_ms, rfc3339};
use crate::storage::{EnvRow, OrgRow, ProjectRow, Purged, TenantNode};

/// A deleted node as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedView {
    /// "organization", "project" or "environment"
    pub kind: &'static str,
    /// `org`, `org/project` or `org/project/env`
    pub path: String,
    /// url slug (still taken)
    pub slug: String,
    /// display name
    pub name: String,
    /// RFC 3339
    pub deleted_at: String,
    /// RFC 3339: restorable until then, purged by the purge job after
    pub purge_after: String,
}

/// What a purge erased, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PurgedView {
    /// "organization", "project" or "environment"
    pub kind: &'static str,
    /// `org`, `org/project` or `org/project/env`
    pub path: String,
    /// secret versions erased (each a ciphertext and its wrapped DEK)
    pub versions: u64,
    /// secrets erased
    pub secrets: u64,
    /// environments erased
    pub environments: u64,
    /// KEK versions destroyed (an organization only)
    pub kek_versions_destroyed: Vec<i64>,
}

/// A restored node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RestoredView {
    /// "organization", "project" or "environment"
    pub kind: &'static str,
    /// `org`, `org/project` or `org/project/env`
    pub path: String,
    /// always true
    pub restored: bool,
}

/// A deleted node found by its slugs.
struct Found {
    node: TenantNode,
    kind: &'static str,
    path: String,
    slug: String,
    name: String,
    deleted_at: i64,
}

impl Found {
    fn org(o: OrgRow, deleted_at: i64) -> Found {
        Found {
            node: TenantNode::Org(o.id),
            kind: "organization",
            path: o.slug.clone(),
            slug: o.slug,
            name: o.name,
            deleted_at,
        }
    }

    /// Project `p` of organization `org` (slug).
    fn project(org: &str, p: ProjectRow, deleted_at: i64) -> Found {
        Found {
            node: TenantNode::Project {
                org_id: p.org_id,
                id: p.id,
            },
            kind: "project",
            path: format!("{org}/{}", p.slug),
            slug: p.slug,
            name: p.name,
            deleted_at,
        }
    }

    /// Environment `e` of `org/project` (slugs).
    fn env(org: &str, project: &str, e: EnvRow, deleted_at: i64) -> Found {
        Found {
            node: TenantNode::Env {
                org_id: e.org_id,
                id: e.id,
            },
            kind: "environment",
            path: format!("{org}/{project}/{}", e.slug),
            slug: e.slug,
            name: e.name,
            deleted_at,
        }
    }
}

impl TenantService {
    fn deleted_view(&self, f: Found) -> DeletedView {
        DeletedView {
            kind: f.kind,
            path: f.path,
            slug: f.slug,
            name: f.name,
            deleted_at: rfc3339(f.deleted_at),
            purge_after: rfc3339(f.deleted_at.saturating_add(self.shared.deletion_window_ms)),
        }
    }

    /// Mark `node` deleted now; hidden on every server at once.
    async fn soft_delete(
        &self,
        node: TenantNode,
        kind: &'static str,
        path: String,
        slug: String,
        name: String,
    ) -> Result<DeletedView> {
        let now = now_ms();
        if !self.tenant_store.mark_deleted(node, Some(now)).await? {
            return Err(ServiceError::NotFound(format!("{kind} {path}")));
        }
        self.shared.principals_changed();
        Ok(self.deleted_view(Found {
            node,
            kind,
            path,
            slug,
            name,
            deleted_at: now,
        }))
    }

    /// Delete an organization (its owners and admins, root): hidden at
    /// once, restorable for the deletion window.
    pub async fn delete_org(&self, who: &Unsealed, org: &str) -> Result<DeletedView> {
        let (row, _) = self.access.org_admin(who, org).await?;
        self.soft_delete(
            TenantNode::Org(row.id),
            "organization",
            row.slug.clone(),
            row.slug,
            row.name,
        )
        .await
    }

    /// Delete a project and so its environments (owners and admins of its
    /// organization).
    pub async fn delete_project(&self, who: &Unsealed, org: &str, project: &str) -> Result<DeletedView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let p = self
            .tenant_store
            .project(org_row.id, project)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("project {org}/{project}")))?;
        self.soft_delete(
            TenantNode::Project {
                org_id: org_row.id,
                id: p.id,
            },
            "project",
            format!("{org}/{}", p.slug),
            p.slug,
            p.name,
        )
        .await
    }

    /// Delete an environment (owners and admins of its organization).
    pub async fn delete_env(&self, who: &Unsealed, (org, project, env): (&str, &str, &str)) -> Result<DeletedView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let path = self.access.env_path(org, project, env).await?;
        let row = self
            .tenant_store
            .list_envs(org_row.id)
            .await?
            .into_iter()
            .find(|e| e.id == path.env_id)
            .ok_or_else(|| ServiceError::NotFound(format!("environment {org}/{project}/{env}")))?;
        self.soft_delete(
            TenantNode::Env {
                org_id: org_row.id,
                id: row.id,
            },
            "environment",
            format!("{org}/{project}/{}", row.slug),
            row.slug,
            row.name,
        )
        .await
    }

    /// The deleted organization `slug`, if `who` may manage it (`owner`:
    /// only its owners and root; else its admins too). Anyone else gets
    /// the answer of a nonexistent one.
    async fn find_deleted_org(&self, who: &Unsealed, slug: &str, owner: bool) -> Result<Found> {
        // The answer of a nonexistent organization (`AccessService::org_access`).
        let missing = || ServiceError::NotFound(format!("organization {slug:?}"));
        let Some((org, at)) = self
            .tenant_store
            .deleted_orgs()
            .await?
            .into_iter()
            .find(|(o, _)| o.slug == slug)
        else {
            // A live one: its admins hear that it is not deleted, its other
            // members are refused, anyone else gets "not found".
            if self.tenant_store.org(slug).await?.is_some() {
                self.access.org_admin(who, slug).await?;
                return Err(not_deleted("organization", slug));
            }
            return Err(missing());
        };
        let access = self.access.access(who, org.id).await?.ok_or_else(missing)?;
        if !(access.admin && (access.owner || !owner)) {
            return Err(ServiceError::PermissionDenied);
        }
        Ok(Found::org(org, at))
    }

    /// The deleted project `org/project` of a live organization.
    async fn find_deleted_project(&self, who: &Unsealed, org: &str, project: &str, owner: bool) -> Result<Found> {
        let (org_row, access) = self.access.org_admin(who, org).await?;
        if owner && !access.owner {
            return Err(ServiceError::PermissionDenied);
        }
        let p = self
            .tenant_store
            .deleted_projects(org_row.id)
            .await?
            .into_iter()
            .find(|(p, _)| p.slug == project)
            .ok_or_else(|| ServiceError::NotFound(format!("deleted project {org}/{project}")));
        if p.is_err() && self.tenant_store.project(org_row.id, project).await?.is_some() {
            return Err(not_deleted("project", &format!("{org}/{project}")));
        }
        let (p, at) = p?;
        Ok(Found::project(org, p, at))
    }

    /// The deleted environment `org/project/env` of a live project.
    async fn find_deleted_env(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        owner: bool,
    ) -> Result<Found> {
        let (org_row, access) = self.access.org_admin(who, org).await?;
        if owner && !access.owner {
            return Err(ServiceError::PermissionDenied);
        }
        let p = self
            .tenant_store
            .project(org_row.id, project)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("project {org}/{project}")))?;
        let found = self
            .tenant_store
            .deleted_envs(org_row.id)
            .await?
            .into_iter()
            .find(|(e, _)| e.project_id == p.id && e.slug == env)
            .ok_or_else(|| ServiceError::NotFound(format!("deleted environment {org}/{project}/{env}")));
        if found.is_err()
            && self
                .tenant_store
                .list_envs(org_row.id)
                .await?
                .iter()
                .any(|e| e.project_id == p.id && e.slug == env)
        {
            return Err(not_deleted("environment", &format!("{org}/{project}/{env}")));
        }
        let (e, at) = found?;
        Ok(Found::env(org, project, e, at))
    }

    /// Undo a deletion inside the window; after it the node is the purge
    /// job's.
    async fn restore(&self, f: Found) -> Result<RestoredView> {
        let ends = f.deleted_at.saturating_add(self.shared.deletion_window_ms);
        if now_ms() >= ends {
            return Err(ServiceError::Conflict(format!(
                "the deletion window of {} {} ended at {}; it can no longer be restored",
                f.kind,
                f.path,
                rfc3339(ends)
            )));
        }
        if !self.tenant_store.mark_deleted(f.node, None).await? {
            return Err(ServiceError::NotFound(format!("deleted {} {}", f.kind, f.path)));
        }
        self.shared.principals_changed();
        Ok(RestoredView {
            kind: f.kind,
            path: f.path,
            restored: true,
        })
    }

    /// Restore a deleted organization (its owners and admins, root).
    pub async fn restore_org(&self, who: &Unsealed, org: &str) -> Result<RestoredView> {
        let f = self.find_deleted_org(who, org, false).await?;
        self.restore(f).await
    }

    /// Restore a deleted project (owners and admins of its organization).
    pub async fn restore_project(&self, who: &Unsealed, org: &str, project: &str) -> Result<RestoredView> {
        let f = self.find_deleted_project(who, org, project, false).await?;
        self.restore(f).await
    }

    /// Restore a deleted environment of a live project.
    pub async fn restore_env(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<RestoredView> {
        let f = self.find_deleted_env(who, env, false).await?;
        self.restore(f).await
    }

    /// Erase a deleted node for good (its organization's owners, root).
    /// Before the window ends only with `now`.
    async fn purge(&self, f: Found, now: bool) -> Result<PurgedView> {
        let ends = f.deleted_at.saturating_add(self.shared.deletion_window_ms);
        if !now && now_ms() < ends {
            return Err(ServiceError::Conflict(format!(
                "{} {} is restorable until {}; the purge job erases it then. \
                 To erase it before, purge with now=true (coffer … purge --now)",
                f.kind,
                f.path,
                rfc3339(ends)
            )));
        }
        let purged = self
            .erase(f.node, i64::MAX)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("deleted {} {}", f.kind, f.path)))?;
        Ok(purged_view(f.kind, f.path, purged))
    }

    /// Purge the rows and forget what this server (and every other one)
    /// holds of them: cached rows, slug paths, the org's KEKs.
    async fn erase(&self, node: TenantNode, deleted_by: i64) -> Result<Option<Purged>> {
        let purged = self.tenant_store.purge_node(node, deleted_by).await?;
        if let Some(p) = &purged {
            if let Ok(keyring) = self.shared.keyring() {
                for v in &p.kek_versions {
                    keyring.forget_kek(node.org_id(), *v);
                }
            }
            for v in &p.kek_versions {
                self.shared
                    .broadcast(super::cluster::Event::KekDestroyed(node.org_id(), *v));
            }
            self.shared.store.drop_caches();
            self.shared.principals_changed();
        }
        Ok(purged)
    }

    /// Purge a deleted organization: every secret version, its KEKs.
    pub async fn purge_org(&self, who: &Unsealed, org: &str, now: bool) -> Result<PurgedView> {
        let f = self.find_deleted_org(who, org, true).await?;
        self.purge(f, now).await
    }

    /// Purge a deleted project.
    pub async fn purge_project(&self, who: &Unsealed, org: &str, project: &str, now: bool) -> Result<PurgedView> {
        let f = self.find_deleted_project(who, org, project, true).await?;
        self.purge(f, now).await
    }

    /// Purge a deleted environment.
    pub async fn purge_env(&self, who: &Unsealed, env: (&str, &str, &str), now: bool) -> Result<PurgedView> {
        let f = self.find_deleted_env(who, env, true).await?;
        self.purge(f, now).await
    }

    /// Deleted organizations the caller administers (root: all).
    pub async fn deleted_orgs(&self, who: &Unsealed) -> Result<Vec<DeletedView>> {
        let mut out = Vec::new();
        for (o, at) in self.tenant_store.deleted_orgs().await? {
            if self.access.access(who, o.id).await?.is_some_and(|a| a.admin) {
                out.push(self.deleted_view(Found::org(o, at)));
            }
        }
        Ok(out)
    }

    /// Deleted projects of an organization (its owners and admins).
    pub async fn deleted_projects(&self, who: &Unsealed, org: &str) -> Result<Vec<DeletedView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        Ok(self
            .tenant_store
            .deleted_projects(org_row.id)
            .await?
            .into_iter()
            .map(|(p, at)| self.deleted_view(Found::project(org, p, at)))
            .collect())
    }

    /// Deleted environments of a live project (its organization's owners
    /// and admins).
    pub async fn deleted_envs(&self, who: &Unsealed, org: &str, project: &str) -> Result<Vec<DeletedView>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let p = self
            .tenant_store
            .project(org_row.id, project)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("project {org}/{project}")))?;
        Ok(self
            .tenant_store
            .deleted_envs(org_row.id)
            .await?
            .into_iter()
            .filter(|(e, _)| e.project_id == p.id)
            .map(|(e, at)| self.deleted_view(Found::env(org, project, e, at)))
            .collect())
    }

    /// The purge job: erase every node whose deletion window has ended,
    /// each under a write-ahead audit record and its outcome record (actor
    /// `system`), so none is erased unaudited. Nothing while sealed (the
    /// audit chain needs the keys).
    pub async fn purge_expired(&self, audit: &super::AuditService) -> Result<String> {
        if self.shared.require_unsealed().is_err() {
            return Ok("sealed: nothing purged".to_owned());
        }
        let before = now_ms().saturating_sub(self.shared.deletion_window_ms);
        let due = self.tenant_store.expired_deletions(before).await?;
        let mut done = 0usize;
        for node in due {
            let action = match node {
                TenantNode::Org(_) => "org.purge",
                TenantNode::Project { .. } => "project.purge",
                TenantNode::Env { .. } => "env.purge",
            };
            let request_id = format!("purge-job-{}", Uuid::new_v4());
            let (org_slug, resource) = self.node_names(node).await?;
            let event = |outcome: Outcome, status: u16, reason: String| AuditEvent {
                request_id: request_id.clone(),
                actor: Actor {
                    kind: "system",
                    name: "purge job".to_owned(),
                    accessor: String::new(),
                },
                cert_spki: String::new(),
                source: String::new(),
                method: "JOB".to_owned(),
                action: action.to_owned(),
                resource: resource.clone(),
                org: org_slug.clone(),
                outcome,
                status,
                reason,
                values: 0,
            };
            audit.audit(event(Outcome::Begun, 0, String::new())).await?;
            match self.erase(node, before).await {
                Ok(Some(p)) => {
                    done += 1;
                    let summary = format!(
                        "erased {} versions, {} secrets, {} environments, KEK versions {:?}",
                        p.versions, p.secrets, p.envs, p.kek_versions
                    );
                    audit.audit(event(Outcome::Allowed, 200, summary)).await?;
                }
                Ok(None) => audit.audit(event(Outcome::Allowed, 404, "already gone".into())).await?,
                Err(e) => {
                    audit.audit(event(Outcome::Error, 500, e.to_string())).await?;
                    return Err(e);
                }
            }
        }
        Ok(format!("{done} deleted organizations/projects/environments purged"))
    }
}

impl TenantService {
    /// The organization slug and the API path of a node (as the HTTP
    /// layer's records name it), for the purge job's records; ids where a
    /// slug cannot be found.
    async fn node_names(&self, node: TenantNode) -> Result<(String, String)> {
        let org_id = node.org_id();
        let org = self
            .tenant_store
            .list_orgs()
            .await?
            .into_iter()
            .chain(self.tenant_store.deleted_orgs().await?.into_iter().map(|(o, _)| o))
            .find(|o| o.id == org_id)
            .map_or_else(|| org_id.to_string(), |o| o.slug);
        let projects = || async {
            Ok::<_, ServiceError>(
                self.tenant_store
                    .list_projects(org_id)
                    .await?
                    .into_iter()
                    .chain(
                        self.tenant_store
                            .deleted_projects(org_id)
                            .await?
                            .into_iter()
                            .map(|(p, _)| p),
                    )
                    .collect::<Vec<_>>(),
            )
        };
        let resource = match node {
            TenantNode::Org(_) => format!("/api/v1/orgs/{org}"),
            TenantNode::Project { id, .. } => {
                let p = projects().await?.into_iter().find(|p| p.id == id);
                format!(
                    "/api/v1/orgs/{org}/projects/{}",
                    p.map_or_else(|| id.to_string(), |p| p.slug)
                )
            }
            TenantNode::Env { id, .. } => {
                let e = self
                    .tenant_store
                    .deleted_envs(org_id)
                    .await?
                    .into_iter()
                    .find(|(e, _)| e.id == id);
                match e {
                    Some((e, _)) => {
                        let p = projects().await?.into_iter().find(|p| p.id == e.project_id);
                        format!(
                            "/api/v1/orgs/{org}/projects/{}/environments/{}",
                            p.map_or_else(|| e.project_id.to_string(), |p| p.slug),
                            e.slug
                        )
                    }
                    None => format!("/api/v1/orgs/{org}/environments/{id}"),
                }
            }
        };
        Ok((org, resource))
    }
}

/// Restore or purge of a node that is not deleted.
fn not_deleted(kind: &str, path: &str) -> ServiceError {
    ServiceError::Conflict(format!("{kind} {path} is not deleted"))
}

fn purged_view(kind: &'static str, path: String, p: Purged) -> PurgedView {
    PurgedView {
        kind,
        path,
        versions: p.versions,
        secrets: p.secrets,
        environments: p.envs,
        kek_versions_destroyed: p.kek_versions,
    }
}
