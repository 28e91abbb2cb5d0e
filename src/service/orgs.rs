//! Organizations, projects and environments: the tenant tree. Creating an
//! organization also creates its first KEK, wrapped by the root key.

use serde::Serialize;
use uuid::Uuid;

use super::{Coffer, Principal, Result, ServiceError, now_ms, rfc3339};
use crate::storage::{EnvPath, EnvRow, KekRow, OrgRow, ProjectRow};

/// An organization as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrgView {
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// RFC 3339
    pub created_at: String,
}

/// A project as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProjectView {
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// RFC 3339
    pub created_at: String,
}

/// An environment as the API shows it.
#[derive(Debug, Serialize)]
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

impl Coffer {
    /// Create an organization and its KEK v1.
    pub async fn create_org(&self, who: &Principal, slug: &str, name: &str) -> Result<OrgView> {
        let keyring = self.keyring()?;
        who.require_root()?;
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
        self.store.create_org(&org, &kek).await?;
        Ok(org_view(org))
    }

    /// All organizations.
    pub async fn list_orgs(&self, _who: &Principal) -> Result<Vec<OrgView>> {
        self.keyring()?;
        Ok(self.store.list_orgs().await?.into_iter().map(org_view).collect())
    }

    async fn org_row(&self, slug: &str) -> Result<OrgRow> {
        self.store
            .org(slug)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {slug:?}")))
    }

    /// One organization.
    pub async fn get_org(&self, _who: &Principal, slug: &str) -> Result<OrgView> {
        self.keyring()?;
        Ok(org_view(self.org_row(slug).await?))
    }

    /// Create a project in an organization.
    pub async fn create_project(&self, who: &Principal, org: &str, slug: &str, name: &str) -> Result<ProjectView> {
        self.keyring()?;
        who.require_root()?;
        check_slug("slug", slug)?;
        check_name(name)?;
        let org = self.org_row(org).await?;
        let row = ProjectRow {
            id: Uuid::new_v4(),
            org_id: org.id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        self.store.create_project(&row).await?;
        Ok(project_view(row))
    }

    /// Projects of an organization.
    pub async fn list_projects(&self, _who: &Principal, org: &str) -> Result<Vec<ProjectView>> {
        self.keyring()?;
        let org = self.org_row(org).await?;
        Ok(self
            .store
            .list_projects(org.id)
            .await?
            .into_iter()
            .map(project_view)
            .collect())
    }

    async fn project_row(&self, org: &str, project: &str) -> Result<ProjectRow> {
        let org = self.org_row(org).await?;
        self.store
            .project(org.id, project)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("project {org}/{project}", org = org.slug)))
    }

    /// One project.
    pub async fn get_project(&self, _who: &Principal, org: &str, project: &str) -> Result<ProjectView> {
        self.keyring()?;
        Ok(project_view(self.project_row(org, project).await?))
    }

    /// Create an environment in a project.
    pub async fn create_env(
        &self,
        who: &Principal,
        org: &str,
        project: &str,
        slug: &str,
        name: &str,
        protected: bool,
    ) -> Result<EnvView> {
        self.keyring()?;
        who.require_root()?;
        check_slug("slug", slug)?;
        check_name(name)?;
        let p = self.project_row(org, project).await?;
        let row = EnvRow {
            id: Uuid::new_v4(),
            org_id: p.org_id,
            project_id: p.id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            protected,
            created_at: now_ms(),
        };
        self.store.create_env(&row).await?;
        Ok(env_view(row))
    }

    /// Environments of a project.
    pub async fn list_envs(&self, _who: &Principal, org: &str, project: &str) -> Result<Vec<EnvView>> {
        self.keyring()?;
        let p = self.project_row(org, project).await?;
        Ok(self.store.list_envs(p.id).await?.into_iter().map(env_view).collect())
    }

    /// One environment.
    pub async fn get_env(&self, who: &Principal, org: &str, project: &str, env: &str) -> Result<EnvView> {
        self.list_envs(who, org, project)
            .await?
            .into_iter()
            .find(|e| e.slug == env)
            .ok_or_else(|| ServiceError::NotFound(format!("environment {org}/{project}/{env}")))
    }

    /// Resolve the slug path of an environment.
    pub(crate) async fn env_path(&self, org: &str, project: &str, env: &str) -> Result<EnvPath> {
        let key = (org.to_owned(), project.to_owned(), env.to_owned());
        if let Some(path) = self.cache.env(&key) {
            return Ok(path);
        }
        let path = self
            .store
            .resolve_env(org, project, env)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("environment {org}/{project}/{env}")))?;
        self.cache.put_env(key, path);
        Ok(path)
    }
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
