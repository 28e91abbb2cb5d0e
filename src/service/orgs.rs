//! Organizations, projects and environments: the tenant tree. Creating an
//! organization also creates its first KEK, wrapped by the root key.

use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

use super::{PrincipalKind, Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::Permission;
use crate::storage::{EnvRow, KekRow, OrgRow, ProjectRow, StorageError};

/// An organization as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// RFC 3339
    pub created_at: String,
}

/// An organization's leaked-password policy as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BreachPolicyView {
    /// a `password` secret found in the breach corpus is refused (422),
    /// else written with a warning
    pub block_breached_passwords: bool,
    /// whether this server checks at all (`[breach_check] enabled`)
    pub check_enabled: bool,
}

/// A project as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// RFC 3339
    pub created_at: String,
}

/// An environment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvView {
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// protected environment
    pub protected: bool,
    /// RFC 3339
    pub created_at: String,
}

/// What `PATCH …/environments/{env}` changes; `None` keeps the value.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvChange<'a> {
    /// new slug
    pub slug: Option<&'a str>,
    /// new display name
    pub name: Option<&'a str>,
    /// protected or not
    pub protected: Option<bool>,
}

/// Check a slug: `[a-z0-9][a-z0-9-]*`, at most 63 characters.
pub(crate) fn check_slug(field: &str, slug: &str) -> Result<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{field} must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )))
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.len() > 200 {
        return Err(ServiceError::Invalid("name must be at most 200 characters".into()));
    }
    Ok(())
}

/// Organizations one user may create unless `[orgs] max_per_user` says
/// otherwise (root is not limited); the configuration owns the default.
pub use crate::config::DEFAULT_MAX_ORGS_PER_USER;

/// Organizations, projects and environments.
#[derive(Debug, Clone)]
pub struct TenantService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) access_store: Arc<dyn crate::storage::AccessStore>,
    pub(super) breach_store: Arc<dyn crate::storage::breach::BreachPolicyStore>,
    pub(super) access: crate::service::AccessService,
}

impl TenantService {
    /// Create an organization and its KEK v1 (root, or a user, who becomes
    /// its owner).
    pub async fn create_org(&self, who: &Unsealed, slug: &str, name: &str) -> Result<OrgView> {
        let keyring = who.keyring();
        if matches!(who.kind, PrincipalKind::ServiceAccount { .. }) {
            return Err(ServiceError::PermissionDenied);
        }
        check_slug("slug", slug)?;
        check_name(name)?;
        let now = now_ms();
        let org = OrgRow {
            id: Uuid::new_v4(),
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_at: now,
        };
        let wrapped = keyring
            .new_kek(org.id, 1)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let kek = KekRow {
            org_id: org.id,
            version: 1,
            wrapped_key: wrapped,
            created_at: now,
        };
        let creator = match who.kind {
            PrincipalKind::User(user_id) => Some((user_id, self.shared.max_orgs_per_user)),
            _ => None,
        };
        match self.tenant_store.create_org(&org, &kek, creator).await {
            Ok(()) => {}
            Err(StorageError::LimitReached) => {
                keyring.forget_kek(org.id, 1);
                return Err(ServiceError::LimitExceeded(format!(
                    "organization limit reached: a user may create at most {} organizations \
                     ([orgs] max_per_user); ask the administrator (root) to create more",
                    self.shared.max_orgs_per_user
                )));
            }
            Err(StorageError::Conflict(_)) => {
                keyring.forget_kek(org.id, 1);
                return Err(ServiceError::Conflict(format!(
                    "an organization with the slug '{slug}' exists already (a deleted one keeps its slug until it is purged)"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        if let PrincipalKind::User(user_id) = who.kind {
            self.access_store.set_membership(org.id, user_id, "owner", now).await?;
        }
        Ok(org_view(org))
    }

    /// The organizations the caller belongs to (root: all).
    pub async fn list_orgs(&self, who: &Unsealed) -> Result<Vec<OrgView>> {
        let orgs = match who.kind {
            PrincipalKind::Root => self.tenant_store.list_orgs().await?,
            PrincipalKind::User(id) => self
                .access_store
                .orgs_of(id)
                .await?
                .into_iter()
                .map(|(o, _)| o)
                .collect(),
            PrincipalKind::ServiceAccount { org_id, .. } => self
                .tenant_store
                .list_orgs()
                .await?
                .into_iter()
                .filter(|o| o.id == org_id)
                .collect(),
        };
        Ok(orgs.into_iter().map(org_view).collect())
    }

    /// One organization.
    pub async fn get_org(&self, who: &Unsealed, slug: &str) -> Result<OrgView> {
        Ok(org_view(self.access.org_access(who, slug).await?.0))
    }

    /// The leaked-password policy of an organization (its members).
    pub async fn breach_policy(&self, who: &Unsealed, slug: &str) -> Result<BreachPolicyView> {
        let (row, _) = self.access.org_access(who, slug).await?;
        Ok(BreachPolicyView {
            block_breached_passwords: self.breach_store.block_breached_passwords(row.id).await?,
            check_enabled: self.shared.breach().enabled(),
        })
    }

    /// Set whether `password` secrets found in the breach corpus are
    /// refused (true) or written with a warning (false); owners and admins.
    pub async fn set_breach_policy(&self, who: &Unsealed, slug: &str, block: bool) -> Result<BreachPolicyView> {
        let (row, _) = self.access.org_admin(who, slug).await?;
        if !self.breach_store.set_block_breached_passwords(row.id, block).await? {
            return Err(ServiceError::NotFound(format!("organization {slug:?}")));
        }
        Ok(BreachPolicyView {
            block_breached_passwords: block,
            check_enabled: self.shared.breach().enabled(),
        })
    }

    /// Rename an organization (its owners and admins, root): a new slug,
    /// a new display name, or both. The id stays, so its members, grants,
    /// secrets with their history, KEKs and audit records stay with it;
    /// the old slug answers "not found" at once on every server.
    pub async fn rename_org(
        &self,
        who: &Unsealed,
        org: &str,
        slug: Option<&str>,
        name: Option<&str>,
    ) -> Result<OrgView> {
        let (mut row, _) = self.access.org_admin(who, org).await?;
        rename(&mut row.slug, &mut row.name, slug, name)?;
        let renamed = self
            .tenant_store
            .rename_org(row.id, &row.slug, &row.name)
            .await
            .map_err(|e| {
                taken(
                    e,
                    format!("an organization with the slug '{}' exists already", row.slug),
                )
            })?;
        if !renamed {
            return Err(ServiceError::NotFound(format!("organization {org:?}")));
        }
        self.shared.principals_changed();
        Ok(org_view(row))
    }

    /// Rename a project (owners and admins of its organization); as
    /// [`Self::rename_org`], the id and everything under it stay.
    pub async fn rename_project(
        &self,
        who: &Unsealed,
        org: &str,
        project: &str,
        slug: Option<&str>,
        name: Option<&str>,
    ) -> Result<ProjectView> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let mut row = self
            .tenant_store
            .project(org_row.id, project)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("project {org}/{project}")))?;
        rename(&mut row.slug, &mut row.name, slug, name)?;
        let renamed = self
            .tenant_store
            .rename_project(org_row.id, row.id, &row.slug, &row.name)
            .await
            .map_err(|e| taken(e, format!("project '{}' exists already in {org}", row.slug)))?;
        if !renamed {
            return Err(ServiceError::NotFound(format!("project {org}/{project}")));
        }
        self.shared.principals_changed();
        Ok(project_view(row))
    }

    /// Create a project in an organization (admins).
    pub async fn create_project(&self, who: &Unsealed, org: &str, slug: &str, name: &str) -> Result<ProjectView> {
        let (org, _) = self.access.org_admin(who, org).await?;
        check_slug("slug", slug)?;
        check_name(name)?;
        let row = ProjectRow {
            id: Uuid::new_v4(),
            org_id: org.id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        self.tenant_store.create_project(&row).await.map_err(|e| {
            taken(
                e,
                format!(
                    "project '{slug}' exists already in {} (a deleted one keeps its slug until it is purged)",
                    org.slug
                ),
            )
        })?;
        Ok(project_view(row))
    }

    /// Projects of an organization: members see all, service accounts those
    /// holding an environment they have a grant on.
    pub async fn list_projects(&self, who: &Unsealed, org: &str) -> Result<Vec<ProjectView>> {
        let (org, access) = self.access.org_access(who, org).await?;
        let envs = if access.member {
            Vec::new()
        } else {
            self.tenant_store.list_envs(org.id).await?
        };
        Ok(self
            .tenant_store
            .list_projects(org.id)
            .await?
            .into_iter()
            .filter(|p| {
                access.member
                    || envs
                        .iter()
                        .any(|e| e.project_id == p.id && access.perms(p.id, e.id) != Default::default())
            })
            .map(project_view)
            .collect())
    }

    async fn project_row(&self, who: &Unsealed, org: &str, project: &str) -> Result<(ProjectRow, Vec<EnvRow>)> {
        let (org, access) = self.access.org_access(who, org).await?;
        let p = self
            .tenant_store
            .project(org.id, project)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("project {org}/{project}", org = org.slug)))?;
        let envs: Vec<EnvRow> = self
            .tenant_store
            .list_envs(org.id)
            .await?
            .into_iter()
            .filter(|e| e.project_id == p.id && (access.member || access.perms(p.id, e.id) != Default::default()))
            .collect();
        if !access.member && envs.is_empty() {
            return Err(ServiceError::PermissionDenied);
        }
        Ok((p, envs))
    }

    /// One project.
    pub async fn get_project(&self, who: &Unsealed, org: &str, project: &str) -> Result<ProjectView> {
        Ok(project_view(self.project_row(who, org, project).await?.0))
    }

    /// Create an environment in a project.
    pub async fn create_env(
        &self,
        who: &Unsealed,
        org: &str,
        project: &str,
        slug: &str,
        name: &str,
        protected: bool,
    ) -> Result<EnvView> {
        self.access.org_admin(who, org).await?;
        check_slug("slug", slug)?;
        check_name(name)?;
        let (p, _) = self.project_row(who, org, project).await?;
        let row = EnvRow {
            id: Uuid::new_v4(),
            org_id: p.org_id,
            project_id: p.id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            protected,
            created_at: now_ms(),
        };
        self.tenant_store
            .create_env(&row)
            .await
            .map_err(|e| taken(e, format!("environment '{slug}' exists already in {org}/{project} (a deleted one keeps its slug until it is purged)")))?;
        Ok(env_view(row))
    }

    /// Change an environment (its admins: every permission on it, which
    /// the organization's owners and admins hold): a new slug, display name
    /// or protection. The id stays, so grants,
    /// secrets with their history and audit continuity stay with it.
    pub async fn update_env(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        change: EnvChange<'_>,
    ) -> Result<EnvView> {
        let path = self.access.env_admin(who, (org, project, env)).await?;
        let missing = || ServiceError::NotFound(format!("environment {org}/{project}/{env}"));
        let mut row = self
            .tenant_store
            .list_envs(path.org_id)
            .await?
            .into_iter()
            .find(|e| e.id == path.env_id)
            .ok_or_else(missing)?;
        rename(&mut row.slug, &mut row.name, change.slug, change.name)?;
        if let Some(protected) = change.protected {
            row.protected = protected;
        }
        let updated = self.tenant_store.update_env(&row).await.map_err(|e| {
            taken(
                e,
                format!("environment '{}' exists already in {org}/{project}", row.slug),
            )
        })?;
        if !updated {
            return Err(missing());
        }
        self.shared.principals_changed();
        Ok(env_view(row))
    }

    /// Environments of a project (service accounts: those they hold a grant on).
    pub async fn list_envs(&self, who: &Unsealed, org: &str, project: &str) -> Result<Vec<EnvView>> {
        let (_, envs) = self.project_row(who, org, project).await?;
        Ok(envs.into_iter().map(env_view).collect())
    }

    /// One environment (read permission).
    pub async fn get_env(&self, who: &Unsealed, org: &str, project: &str, env: &str) -> Result<EnvView> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Read)
            .await?;
        self.tenant_store
            .list_envs(path.org_id)
            .await?
            .into_iter()
            .find(|e| e.id == path.env_id)
            .map(env_view)
            .ok_or_else(|| ServiceError::NotFound(format!("environment {org}/{project}/{env}")))
    }
}

/// A unique-slug violation as a conflict that names the slug.
fn taken(e: StorageError, what: String) -> ServiceError {
    match e {
        StorageError::Conflict(_) => ServiceError::Conflict(what),
        e => e.into(),
    }
}

/// Check and apply a rename's new slug and display name, each if given.
fn rename(slug: &mut String, name: &mut String, new_slug: Option<&str>, new_name: Option<&str>) -> Result<()> {
    if let Some(new) = new_slug {
        check_slug("slug", new)?;
        new.clone_into(slug);
    }
    if let Some(new) = new_name {
        check_name(new)?;
        new.clone_into(name);
    }
    Ok(())
}

fn org_view(o: OrgRow) -> OrgView {
    OrgView {
        slug: o.slug,
        name: o.name,
        created_at: rfc3339(o.created_at),
    }
}

fn project_view(p: ProjectRow) -> ProjectView {
    ProjectView {
        slug: p.slug,
        name: p.name,
        created_at: rfc3339(p.created_at),
    }
}

fn env_view(e: EnvRow) -> EnvView {
    EnvView {
        slug: e.slug,
        name: e.name,
        protected: e.protected,
        created_at: rfc3339(e.created_at),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        for ok in ["acme", "a", "my-app-2", "0x"] {
            assert!(super::check_slug("slug", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Acme", "a_b", "a/b", &"a".repeat(64)] {
            assert!(super::check_slug("slug", bad).is_err(), "{bad}");
        }
    }
}
