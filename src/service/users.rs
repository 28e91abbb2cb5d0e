//! Administration of user accounts: listing them, ending every session of
//! a user, password change, TOTP reset, disable, enable, delete.
//!
//! Who may act on a user: root; the user on themself where the operation
//! allows it; an owner of an organization for a user who belongs to that
//! owner's organizations only (never a user another tenant also has).
//! Anyone else is told the user does not exist.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{check_password, hash_password};
use super::{IdentityService, PrincipalKind, Result, ServiceError, Unsealed};
use crate::storage::UserRow;

/// Who may act on the target user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// root, or an owner of every org of the user
    Admin,
    /// root, an owner of every org of the user, or the user on themself
    AdminOrSelf,
    /// root alone
    Root,
}

/// A user account as `GET /users` shows it (never a hash or a secret).
#[derive(Debug, Serialize)]
pub struct UserView {
    /// login name
    pub email: String,
    /// disabled by an administrator
    pub disabled: bool,
    /// TOTP required at login
    pub totp_enabled: bool,
    /// RFC 3339
    pub created_at: String,
    /// organization slug → role, of the organizations the caller may see
    pub orgs: BTreeMap<String, String>,
}

impl IdentityService {
    /// `GET /users`: root sees every user and all their memberships; an
    /// owner or admin of organizations sees the members of those, with
    /// their roles there only; anyone else is refused.
    pub async fn list_users(&self, who: &Unsealed) -> Result<Vec<UserView>> {
        let mut users: BTreeMap<String, UserView> = BTreeMap::new();
        match who.kind {
            PrincipalKind::Root => {
                for u in self.identity_store.list_users().await? {
                    let orgs = self.access_store.orgs_of(u.id).await?;
                    let mut view = user_view(&u);
                    view.orgs = orgs.into_iter().map(|(o, role)| (o.slug, role)).collect();
                    users.insert(u.email.clone(), view);
                }
            }
            PrincipalKind::User(me) => {
                let admin_of: Vec<_> = self
                    .access_store
                    .orgs_of(me)
                    .await?
                    .into_iter()
                    .filter(|(_, role)| role == "owner" || role == "admin")
                    .collect();
                if admin_of.is_empty() {
                    return Err(ServiceError::PermissionDenied);
                }
                for (org, _) in admin_of {
                    for (u, role) in self.access_store.members(org.id).await? {
                        users
                            .entry(u.email.clone())
                            .or_insert_with(|| user_view(&u))
                            .orgs
                            .insert(org.slug.clone(), role);
                    }
                }
            }
            PrincipalKind::ServiceAccount { .. } => return Err(ServiceError::PermissionDenied),
        }
        Ok(users.into_values().collect())
    }

    /// `GET /users/{email}`: one user, as [`Self::list_users`] shows it to
    /// `who`; a user `who` may not see is "not found".
    pub async fn get_user(&self, who: &Unsealed, email: &str) -> Result<UserView> {
        let email = email.trim().to_ascii_lowercase();
        if let PrincipalKind::User(me) = who.kind
            && let Some(u) = self.identity_store.user(me).await?
            && u.email == email
        {
            // Oneself: always, with every membership.
            let mut view = user_view(&u);
            view.orgs = self
                .access_store
                .orgs_of(me)
                .await?
                .into_iter()
                .map(|(o, role)| (o.slug, role))
                .collect();
            return Ok(view);
        }
        let missing = || ServiceError::NotFound(format!("user {email} (or not one you may see)"));
        match self.list_users(who).await {
            Ok(all) => all.into_iter().find(|u| u.email == email).ok_or_else(missing),
            Err(ServiceError::PermissionDenied) => Err(missing()),
            Err(e) => Err(e),
        }
    }

    /// The user `email` names, if `who` may act on it under `scope`.
    async fn managed_user(&self, who: &Unsealed, email: &str, scope: Scope) -> Result<UserRow> {
        let email = email.trim().to_ascii_lowercase();
        let missing = || ServiceError::NotFound(format!("user {email} (or not one you may manage)"));
        let user = self.identity_store.user_by_email(&email).await?.ok_or_else(missing)?;
        let allowed = match who.kind {
            PrincipalKind::Root => true,
            PrincipalKind::User(id) if id == user.id => scope == Scope::AdminOrSelf,
            PrincipalKind::User(id) if scope != Scope::Root => self.owns_every_org_of(id, user.id).await?,
            _ => false,
        };
        if allowed { Ok(user) } else { Err(missing()) }
    }

    /// True when `owner` is an owner of every organization `user` belongs
    /// to (and the user belongs to at least one).
    async fn owns_every_org_of(&self, owner: Uuid, user: Uuid) -> Result<bool> {
        let orgs = self.access_store.orgs_of(user).await?;
        if orgs.is_empty() {
            return Ok(false);
        }
        for (org, _) in &orgs {
            if self.access_store.membership(org.id, owner).await?.as_deref() != Some("owner") {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `POST /users/{email}/revoke-sessions`: end every session of a user —
    /// each token, what was derived from it, the refresh tokens, approved
    /// device logins not collected yet — here and on every server at once.
    /// Returns how many tokens went.
    pub async fn revoke_user_sessions(&self, who: &Unsealed, email: &str) -> Result<u64> {
        let user = self.managed_user(who, email, Scope::AdminOrSelf).await?;
        let n = self.identity_store.revoke_user_sessions(user.id, None).await?;
        self.shared.principals_changed();
        tracing::info!(user = %user.id, tokens = n, "every session of the user ended");
        Ok(n)
    }

    /// `POST /auth/password`: change one's own password. The old password
    /// is required (a token alone cannot); every other session of the
    /// user ends, the caller's own login session stays.
    pub async fn change_password(
        &self,
        who: &Unsealed,
        source: Option<IpAddr>,
        old_password: Zeroizing<String>,
        new_password: Zeroizing<String>,
    ) -> Result<u64> {
        let PrincipalKind::User(id) = who.kind else {
            return Err(ServiceError::Invalid("only a user account has a password".into()));
        };
        check_password(&new_password)?;
        let user = self.prove_person(id, source, old_password, None, false).await?;
        self.shared.refuse_breached_password(&new_password).await?;
        let hash = hash_password(new_password).await?;
        self.identity_store.set_password(user.id, &hash).await?;
        let n = self
            .identity_store
            .revoke_user_sessions(user.id, who.family_id.as_deref())
            .await?;
        self.shared.principals_changed();
        tracing::info!(user = %user.id, other_tokens = n, "password changed; other sessions ended");
        Ok(n)
    }

    /// `DELETE /users/{email}/totp` (root, or the owner of the user's only
    /// orgs): turn two-factor login off and drop the recovery codes, for a
    /// user who lost the authenticator. The user enrolls again.
    pub async fn reset_totp(&self, who: &Unsealed, email: &str) -> Result<()> {
        let user = self.managed_user(who, email, Scope::Admin).await?;
        self.identity_store.set_totp(user.id, None, false).await?;
        self.identity_store.set_recovery_codes(user.id, &[]).await?;
        tracing::warn!(user = %user.id, "TOTP reset by an administrator");
        Ok(())
    }

    /// `POST /users/{email}/disable` and `/enable` (root, or the owner of
    /// the user's only orgs). Disabling ends every session at once and
    /// refuses login, refresh and device logins until enabled again.
    pub async fn set_user_disabled(&self, who: &Unsealed, email: &str, disabled: bool) -> Result<()> {
        let user = self.managed_user(who, email, Scope::Admin).await?;
        self.identity_store.set_user_disabled(user.id, disabled).await?;
        if disabled {
            self.identity_store.revoke_user_sessions(user.id, None).await?;
        }
        self.shared.principals_changed();
        tracing::warn!(user = %user.id, disabled, "user account state changed");
        Ok(())
    }

    /// `DELETE /users/{email}` (root): the user, their memberships, group
    /// memberships and grants in every org, and every token and session.
    pub async fn delete_user(&self, who: &Unsealed, email: &str) -> Result<()> {
        let user = self.managed_user(who, email, Scope::Root).await?;
        self.identity_store.delete_user(user.id).await?;
        self.shared.principals_changed();
        tracing::warn!(user = %user.id, "user deleted");
        Ok(())
    }
}

fn user_view(u: &UserRow) -> UserView {
    UserView {
        email: u.email.clone(),
        disabled: u.disabled,
        totp_enabled: u.totp_enabled,
        created_at: super::rfc3339(u.created_at),
        orgs: BTreeMap::new(),
    }
}
