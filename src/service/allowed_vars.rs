//! `coffer run`'s per-environment allow list: the variable names the
//! program-loading policy ([`crate::env_policy`]) refuses, which an
//! environment admin (every permission on the environment) has let through
//! for the rare program that needs one. One name at a time, each change an
//! audited request of its own; inject then returns that name and says so.
//! No HTTP types here.

use serde::Serialize;

use super::{AccessService, Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::{PermSet, Permission};
use crate::env_policy::{is_dangerous, is_variable_name};
use crate::storage::EnvPath;
use crate::storage::env_vars::AllowedVarRow;

/// An allowed name as listed.
#[derive(Debug, Serialize)]
pub struct AllowedVarView {
    /// the variable name
    pub name: String,
    /// who allowed it
    pub allowed_by: String,
    /// RFC 3339
    pub allowed_at: String,
}

fn view(r: AllowedVarRow) -> AllowedVarView {
    AllowedVarView {
        name: r.name,
        allowed_by: r.allowed_by,
        allowed_at: rfc3339(r.created_at),
    }
}

impl AccessService {
    /// The environment, if `who` is its admin (every permission on it).
    pub(crate) async fn env_admin(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<EnvPath> {
        let (path, access) = self.env_access(who, env).await?;
        if access.held(path.project_id, path.env_id).covers(PermSet::ENV_ADMIN) {
            Ok(path)
        } else {
            Err(ServiceError::PermissionDenied)
        }
    }

    /// `GET …/allowed-variables` (read).
    pub async fn allowed_vars(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<Vec<AllowedVarView>> {
        let path = self.authorize_env(who, env, Permission::Read).await?;
        Ok(self
            .env_var_store
            .allowed_vars(path.org_id, path.env_id)
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// `PUT …/allowed-variables/{name}` (environment admin): let `coffer
    /// run` set this refused name. A name the policy does not refuse is
    /// 400 (nothing to allow: likely a typo).
    pub async fn allow_var(&self, who: &Unsealed, env: (&str, &str, &str), name: &str) -> Result<AllowedVarView> {
        let path = self.env_admin(who, env).await?;
        if !is_variable_name(name) {
            return Err(ServiceError::Invalid(format!(
                "{name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most 256 characters)"
            )));
        }
        if !is_dangerous(name) {
            return Err(ServiceError::Invalid(format!(
                "{name} is not refused by coffer run: there is nothing to allow"
            )));
        }
        let row = AllowedVarRow {
            org_id: path.org_id,
            env_id: path.env_id,
            name: name.to_owned(),
            allowed_by: who.name.clone(),
            created_at: now_ms(),
        };
        if self.env_var_store.allow_var(&row).await? {
            tracing::warn!(
                env = %format!("{}/{}/{}", env.0, env.1, env.2),
                name,
                by = %who.name,
                "coffer run may now set a program-loading variable in this environment"
            );
            return Ok(view(row));
        }
        let kept = self.env_var_store.allowed_vars(path.org_id, path.env_id).await?;
        kept.into_iter()
            .find(|r| r.name == name)
            .map(view)
            .ok_or_else(|| ServiceError::Conflict(format!("{name} was withdrawn meanwhile; try again")))
    }

    /// `DELETE …/allowed-variables/{name}` (environment admin): refuse the
    /// name again. Returns whether it was allowed.
    pub async fn disallow_var(&self, who: &Unsealed, env: (&str, &str, &str), name: &str) -> Result<bool> {
        let path = self.env_admin(who, env).await?;
        Ok(self.env_var_store.disallow_var(path.org_id, path.env_id, name).await?)
    }

    /// Of the refused names among `names`, the ones this environment allows.
    pub(super) async fn allowed_among(&self, path: &EnvPath, refused: &[String]) -> Result<Vec<String>> {
        if refused.is_empty() {
            return Ok(Vec::new());
        }
        let allowed = self.env_var_store.allowed_vars(path.org_id, path.env_id).await?;
        Ok(refused
            .iter()
            .filter(|n| allowed.iter().any(|a| &a.name == *n))
            .cloned()
            .collect())
    }
}
