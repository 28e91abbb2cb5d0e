//! Authorization: what a principal may do in an organization, and the
//! management of members, groups, service accounts and grants.
//!
//! Rules (docs/access.md): root may do everything; org owners and admins
//! hold every permission on every environment; members and service accounts
//! hold what their grants (and, for users, their groups' grants) give. A
//! principal outside an organization gets the answer a nonexistent
//! organization gets, so slugs cannot be probed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{IssuedToken, TokenView, parse_cidrs, ttl_ms};
use super::orgs::check_slug;
use super::{PrincipalKind, Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::{PermSet, Permission};
use crate::storage::{EnvPath, GrantRow, GroupRow, OrgRow, ServiceAccountRow};

/// Org membership roles, strongest first.
const ROLES: [&str; 3] = ["owner", "admin", "member"];

/// What one principal may do in one organization.
#[derive(Debug)]
pub(crate) struct Access {
    /// owner/admin (or root): every permission, and management
    pub(crate) admin: bool,
    /// owner (or root): may manage owners
    pub(crate) owner: bool,
    /// a user member (lists every project and environment)
    pub(crate) member: bool,
    /// (project or every, env or every, permissions)
    grants: Vec<(Option<Uuid>, Option<Uuid>, PermSet)>,
    /// protected environments (`approvals.rs`): per environment, the
    /// permissions withheld until a second person approves (what its
    /// approval policy gates, less what this principal's approved grants
    /// and open break-glass windows give back)
    gated: Vec<(Uuid, i64)>,
    /// environments where this principal has an open break-glass window
    glass: Vec<Uuid>,
}

impl Access {
    /// Permissions on one environment, less what its approval policy
    /// withholds until approved.
    pub(crate) fn perms(&self, project_id: Uuid, env_id: Uuid) -> PermSet {
        self.held(project_id, env_id).without(self.gated(env_id))
    }

    /// Permissions granted on one environment, before its approval policy:
    /// what a request for approval may ask for.
    pub(crate) fn held(&self, project_id: Uuid, env_id: Uuid) -> PermSet {
        if self.admin {
            return PermSet::ALL;
        }
        self.grants
            .iter()
            .filter(|(p, e, _)| p.is_none_or(|p| p == project_id) && e.is_none_or(|e| e == env_id))
            .fold(PermSet::default(), |acc, (_, _, set)| acc.with(*set))
    }

    /// The permissions an approval policy withholds on one environment.
    pub(crate) fn gated(&self, env_id: Uuid) -> PermSet {
        super::approvals::gated_perms(self.gated_actions(env_id))
    }

    /// The policy actions (`approvals::ACT_*` bits) that still need
    /// approval on one environment.
    pub(crate) fn gated_actions(&self, env_id: Uuid) -> i64 {
        self.gated
            .iter()
            .filter(|(e, _)| *e == env_id)
            .fold(0, |acc, (_, bits)| acc | bits)
    }

    /// Whether this principal has an open break-glass window on `env_id`.
    pub(crate) fn glass(&self, env_id: Uuid) -> bool {
        self.glass.contains(&env_id)
    }

    /// `PermissionDenied` unless `p` is held on the environment.
    pub(crate) fn require(&self, path: &EnvPath, p: Permission) -> Result<()> {
        if self.perms(path.project_id, path.env_id).has(p) {
            Ok(())
        } else if self.held(path.project_id, path.env_id).has(p) {
            // Held, but the environment's approval policy withholds it.
            Err(ServiceError::ApprovalRequired(p.as_str()))
        } else {
            Err(ServiceError::PermissionDenied)
        }
    }
}

/// A member as listed.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// email
    pub email: String,
    /// owner | admin | member
    pub role: String,
}

/// A group as listed.
#[derive(Debug, Serialize)]
pub struct GroupView {
    /// slug
    pub name: String,
    /// member emails
    pub members: Vec<String>,
}

/// Certificate fields that authenticate as a service account.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CertMatch {
    /// hex SHA-256 of the SubjectPublicKeyInfo
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spki_sha256: Option<String>,
    /// subject common name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_cn: Option<String>,
    /// a DNS subject alternative name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_san: Option<String>,
}

/// `POST /orgs/{org}/service-accounts` body.
#[derive(Debug, Deserialize)]
pub struct ServiceAccountInput {
    /// slug
    pub name: String,
    /// allowed source networks
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// client certificate that authenticates as the account
    #[serde(default)]
    pub certificate: Option<CertMatch>,
}

/// A service account as listed.
#[derive(Debug, Serialize)]
pub struct ServiceAccountView {
    /// slug
    pub name: String,
    /// allowed source networks (empty: anywhere)
    pub cidrs: Vec<String>,
    /// certificate mapping, if any
    pub certificate: Option<CertMatch>,
    /// RFC 3339
    pub created_at: String,
}

/// `POST /orgs/{org}/grants` body: one subject, a scope, permissions or a role.
#[derive(Debug, Deserialize)]
pub struct GrantInput {
    /// a member's email
    pub user: Option<String>,
    /// a service account's name
    pub service_account: Option<String>,
    /// a group's name
    pub group: Option<String>,
    /// project slug or "*"
    pub project: String,
    /// environment slug or "*"
    pub environment: String,
    /// permission names
    pub permissions: Option<Vec<String>>,
    /// viewer | developer | admin
    pub role: Option<String>,
}

/// A grant as listed.
#[derive(Debug, Serialize)]
pub struct GrantView {
    /// id (for revoke)
    pub id: String,
    /// `{"user": email}`, `{"service_account": name}` or `{"group": name}`
    pub subject: serde_json::Value,
    /// project slug or "*"
    pub project: String,
    /// environment slug or "*"
    pub environment: String,
    /// permission names
    pub permissions: Vec<&'static str>,
}

/// What the caller is in an organization (see [`AccessService::standing`]).
#[derive(Debug, Clone, Copy)]
pub struct OrgStanding {
    /// owner or admin (or root): manages members, groups, accounts, grants
    pub admin: bool,
    /// owner (or root): may manage owners
    pub owner: bool,
    /// a user member (sees members and groups)
    pub member: bool,
}

/// The subject of a grant input as grant listings name it.
pub(crate) fn grant_subject(input: &GrantInput) -> Result<serde_json::Value> {
    match (&input.user, &input.service_account, &input.group) {
        (Some(u), None, None) => Ok(serde_json::json!({ "user": u.trim().to_ascii_lowercase() })),
        (None, Some(n), None) => Ok(serde_json::json!({ "service_account": n })),
        (None, None, Some(n)) => Ok(serde_json::json!({ "group": n })),
        _ => Err(ServiceError::Invalid(
            "give exactly one of user, service_account or group".into(),
        )),
    }
}

fn sa_view(sa: ServiceAccountRow) -> ServiceAccountView {
    let certificate = (sa.cert_spki_sha256.is_some() || sa.cert_subject_cn.is_some() || sa.cert_dns_san.is_some())
        .then_some(CertMatch {
            spki_sha256: sa.cert_spki_sha256,
            subject_cn: sa.cert_subject_cn,
            dns_san: sa.cert_dns_san,
        });
    ServiceAccountView {
        name: sa.name,
        cidrs: sa
            .cidrs
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        certificate,
        created_at: rfc3339(sa.created_at),
    }
}

fn check_spki(field: &str, hex_str: &str) -> Result<String> {
    let s = hex_str.trim().to_ascii_lowercase();
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(ServiceError::Invalid(format!(
            "{field} must be 64 hex characters (SHA-256)"
        )))
    }
}

/// Who may do what: the access of a caller to an organization and its
/// environments, members, groups, service accounts, grants and (in
/// `allowed_vars.rs`) the variables an environment lets `coffer run` set.
#[derive(Debug, Clone)]
pub struct AccessService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) access_store: Arc<dyn crate::storage::AccessStore>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) identity_store: Arc<dyn crate::storage::IdentityStore>,
    pub(super) env_var_store: Arc<dyn crate::storage::env_vars::EnvVarStore>,
    pub(super) approval_store: Arc<dyn crate::storage::approvals::ApprovalStore>,
}

impl AccessService {
    /// Resolve the slug path of an environment.
    pub(crate) async fn env_path(&self, org: &str, project: &str, env: &str) -> Result<EnvPath> {
        let key = (org.to_owned(), project.to_owned(), env.to_owned());
        if let Some(path) = self.shared.cache.envs.get(&key) {
            return Ok(path);
        }
        let path = self
            .tenant_store
            .resolve_env(org, project, env)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("environment {org}/{project}/{env}")))?;
        self.shared.cache.envs.put(key, path);
        Ok(path)
    }

    /// What `who` may do in `org_id`; None when it is not part of the org.
    pub(crate) async fn access(&self, who: &Unsealed, org_id: Uuid) -> Result<Option<Arc<Access>>> {
        // Per token (its login session), so before the per-principal cache.
        self.sso_gate(who, org_id).await?;
        let key = (who.id(), org_id);
        if let Some(a) = self.shared.cache.access.get(&key) {
            return Ok(a);
        }
        let access = match who.kind {
            PrincipalKind::Root => Some(Access {
                admin: true,
                owner: true,
                member: true,
                grants: Vec::new(),
                gated: Vec::new(),
                glass: Vec::new(),
            }),
            PrincipalKind::User(user_id) => match self.access_store.membership(org_id, user_id).await? {
                None => None,
                Some(role) => {
                    let admin = role == "owner" || role == "admin";
                    let groups = if admin {
                        Vec::new()
                    } else {
                        self.access_store.user_groups(org_id, user_id).await?
                    };
                    let grants = if admin {
                        Vec::new()
                    } else {
                        self.grants_of(org_id, |g| {
                            (g.subject_kind == "user" && g.subject_id == user_id)
                                || (g.subject_kind == "group" && groups.contains(&g.subject_id))
                        })
                        .await?
                    };
                    let (gated, glass) = self.approval_gates(org_id, user_id, false).await?;
                    Some(Access {
                        admin,
                        owner: role == "owner",
                        member: true,
                        grants,
                        gated,
                        glass,
                    })
                }
            },
            PrincipalKind::ServiceAccount { id, org_id: own } if own == org_id => {
                let (gated, glass) = self.approval_gates(org_id, id, true).await?;
                Some(Access {
                    admin: false,
                    owner: false,
                    member: false,
                    grants: self
                        .grants_of(org_id, |g| g.subject_kind == "service_account" && g.subject_id == id)
                        .await?,
                    gated,
                    glass,
                })
            }
            PrincipalKind::ServiceAccount { .. } => None,
        };
        let access = access.map(Arc::new);
        // Grant and membership changes are seen within the 1 s entry lifetime.
        self.shared.cache.access.put(key, access.clone());
        Ok(access)
    }

    async fn grants_of(
        &self,
        org_id: Uuid,
        mut pick: impl FnMut(&GrantRow) -> bool,
    ) -> Result<Vec<(Option<Uuid>, Option<Uuid>, PermSet)>> {
        Ok(self
            .access_store
            .grants(org_id)
            .await?
            .iter()
            .filter(|g| pick(g))
            .map(|g| (g.project_id, g.env_id, PermSet::from_bits(g.permissions)))
            .collect())
    }

    /// Resolve an environment and what `who` may do there. Outsiders get
    /// the nonexistent environment's answer.
    pub(crate) async fn env_access(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
    ) -> Result<(EnvPath, Arc<Access>)> {
        let missing = || ServiceError::NotFound(format!("environment {org}/{project}/{env}"));
        let path = self.env_path(org, project, env).await?;
        let access = self.access(who, path.org_id).await?.ok_or_else(missing)?;
        Ok((path, access))
    }

    /// Resolve an environment and require one permission on it.
    pub(crate) async fn authorize_env(
        &self,
        who: &Unsealed,
        env: (&str, &str, &str),
        p: Permission,
    ) -> Result<EnvPath> {
        let (path, access) = self.env_access(who, env).await?;
        access.require(&path, p)?;
        Ok(path)
    }

    /// An organization `who` belongs to (else "not found", as for a
    /// nonexistent one) and what it may do there.
    pub(crate) async fn org_access(&self, who: &Unsealed, slug: &str) -> Result<(OrgRow, Arc<Access>)> {
        let missing = || ServiceError::NotFound(format!("organization {slug:?}"));
        let org = self.tenant_store.org(slug).await?.ok_or_else(missing)?;
        let access = self.access(who, org.id).await?.ok_or_else(missing)?;
        Ok((org, access))
    }

    /// An organization `who` administers.
    pub(crate) async fn org_admin(&self, who: &Unsealed, slug: &str) -> Result<(OrgRow, Arc<Access>)> {
        let (org, access) = self.org_access(who, slug).await?;
        if access.admin {
            Ok((org, access))
        } else {
            Err(ServiceError::PermissionDenied)
        }
    }

    async fn user_id_by_email(&self, email: &str) -> Result<Uuid> {
        let email = email.trim().to_ascii_lowercase();
        Ok(self
            .identity_store
            .user_by_email(&email)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("user {email}")))?
            .id)
    }

    /// Members of an organization (users of the org and root).
    pub async fn list_members(&self, who: &Unsealed, org: &str) -> Result<Vec<MemberView>> {
        let (org, access) = self.org_access(who, org).await?;
        if !access.member {
            return Err(ServiceError::PermissionDenied);
        }
        Ok(self
            .access_store
            .members(org.id)
            .await?
            .into_iter()
            .map(|(u, role)| MemberView { email: u.email, role })
            .collect())
    }

    /// Add a member or change a member's role.
    pub async fn set_member(&self, who: &Unsealed, org: &str, email: &str, role: &str) -> Result<MemberView> {
        let (org, access) = self.org_admin(who, org).await?;
        if !ROLES.contains(&role) {
            return Err(ServiceError::Invalid("role must be owner, admin or member".into()));
        }
        let user_id = self.user_id_by_email(email).await?;
        let current = self.access_store.membership(org.id, user_id).await?;
        if (role == "owner" || current.as_deref() == Some("owner")) && !access.owner {
            return Err(ServiceError::PermissionDenied);
        }
        if current.as_deref() == Some("owner") && role != "owner" {
            self.keep_an_owner(org.id).await?;
        }
        self.access_store
            .set_membership(org.id, user_id, role, now_ms())
            .await?;
        self.shared.principals_changed();
        Ok(MemberView {
            email: email.trim().to_ascii_lowercase(),
            role: role.to_owned(),
        })
    }

    /// Conflict if the org has only one owner left.
    async fn keep_an_owner(&self, org_id: Uuid) -> Result<()> {
        let owners = self
            .access_store
            .members(org_id)
            .await?
            .iter()
            .filter(|(_, r)| r == "owner")
            .count();
        if owners <= 1 {
            return Err(ServiceError::Conflict(
                "the last owner of an organization cannot be removed".into(),
            ));
        }
        Ok(())
    }

    /// Remove a member.
    pub async fn remove_member(&self, who: &Unsealed, org: &str, email: &str) -> Result<()> {
        let (org, access) = self.org_admin(who, org).await?;
        let user_id = self.user_id_by_email(email).await?;
        match self.access_store.membership(org.id, user_id).await?.as_deref() {
            None => return Err(ServiceError::NotFound(format!("member {email}"))),
            Some("owner") if !access.owner => return Err(ServiceError::PermissionDenied),
            Some("owner") => self.keep_an_owner(org.id).await?,
            Some(_) => {}
        }
        self.access_store.remove_membership(org.id, user_id).await?;
        self.shared.principals_changed();
        Ok(())
    }

    /// Create a group.
    pub async fn create_group(&self, who: &Unsealed, org: &str, name: &str) -> Result<GroupView> {
        let (org, _) = self.org_admin(who, org).await?;
        check_slug("name", name)?;
        self.access_store
            .create_group(&GroupRow {
                id: Uuid::new_v4(),
                org_id: org.id,
                name: name.to_owned(),
                created_at: now_ms(),
            })
            .await?;
        Ok(GroupView {
            name: name.to_owned(),
            members: Vec::new(),
        })
    }

    /// Groups of an organization.
    pub async fn list_groups(&self, who: &Unsealed, org: &str) -> Result<Vec<GroupView>> {
        let (org, access) = self.org_access(who, org).await?;
        if !access.member {
            return Err(ServiceError::PermissionDenied);
        }
        Ok(self
            .access_store
            .groups(org.id)
            .await?
            .into_iter()
            .map(|(g, members)| GroupView { name: g.name, members })
            .collect())
    }

    async fn group_id(&self, org_id: Uuid, name: &str) -> Result<Uuid> {
        self.access_store
            .groups(org_id)
            .await?
            .into_iter()
            .find(|(g, _)| g.name == name)
            .map(|(g, _)| g.id)
            .ok_or_else(|| ServiceError::NotFound(format!("group {name}")))
    }

    /// Add a member of the org to a group.
    pub async fn add_group_member(&self, who: &Unsealed, org: &str, group: &str, email: &str) -> Result<()> {
        let (org, _) = self.org_admin(who, org).await?;
        let group_id = self.group_id(org.id, group).await?;
        let user_id = self.user_id_by_email(email).await?;
        if self.access_store.membership(org.id, user_id).await?.is_none() {
            return Err(ServiceError::Invalid(format!(
                "{email} is not a member of the organization"
            )));
        }
        self.access_store.add_group_member(org.id, group_id, user_id).await?;
        self.shared.principals_changed();
        Ok(())
    }

    /// Remove a user from a group.
    pub async fn remove_group_member(&self, who: &Unsealed, org: &str, group: &str, email: &str) -> Result<()> {
        let (org, _) = self.org_admin(who, org).await?;
        let group_id = self.group_id(org.id, group).await?;
        let user_id = self.user_id_by_email(email).await?;
        if self.access_store.remove_group_member(org.id, group_id, user_id).await? {
            self.shared.principals_changed();
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("{email} in group {group}")))
        }
    }

    /// Create a service account.
    pub async fn create_service_account(
        &self,
        who: &Unsealed,
        org: &str,
        input: ServiceAccountInput,
    ) -> Result<ServiceAccountView> {
        let (org, _) = self.org_admin(who, org).await?;
        check_slug("name", &input.name)?;
        let cidrs = input.cidrs.join(",");
        parse_cidrs(&cidrs)?;
        let cert = input.certificate.unwrap_or_default();
        let spki = cert
            .spki_sha256
            .as_deref()
            .map(|s| check_spki("certificate.spki_sha256", s))
            .transpose()?;
        let (cn, san) = (
            cert.subject_cn.filter(|s| !s.is_empty()),
            cert.dns_san.filter(|s| !s.is_empty()),
        );
        // A certificate is identified by its key. CNs and SANs are whatever
        // the (server-wide) CA wrote, so they only narrow an SPKI match.
        if spki.is_none() && (cn.is_some() || san.is_some()) {
            return Err(ServiceError::Invalid(
                "certificate.spki_sha256 is required: a certificate maps to an account by the SHA-256 of its \
                 public key; subject_cn and dns_san only narrow that match"
                    .into(),
            ));
        }
        // One account per certificate, server-wide (a unique index). Within
        // the org the conflict can be named.
        if let Some(spki) = &spki
            && let Some(other) = self
                .access_store
                .service_accounts(org.id)
                .await?
                .into_iter()
                .find(|sa| sa.cert_spki_sha256.as_deref() == Some(spki.as_str()))
        {
            return Err(ServiceError::Conflict(format!(
                "certificate.spki_sha256 is already mapped to service account {}; a certificate identifies at most \
                 one account",
                other.name
            )));
        }
        let row = ServiceAccountRow {
            id: Uuid::new_v4(),
            org_id: org.id,
            name: input.name,
            cidrs,
            cert_spki_sha256: spki,
            cert_subject_cn: cn,
            cert_dns_san: san,
            created_at: now_ms(),
        };
        self.access_store.create_service_account(&row).await?;
        Ok(sa_view(row))
    }

    /// Service accounts of an organization.
    pub async fn list_service_accounts(&self, who: &Unsealed, org: &str) -> Result<Vec<ServiceAccountView>> {
        let (org, _) = self.org_admin(who, org).await?;
        Ok(self
            .access_store
            .service_accounts(org.id)
            .await?
            .into_iter()
            .map(sa_view)
            .collect())
    }

    async fn service_account_named(&self, org_id: Uuid, name: &str) -> Result<ServiceAccountRow> {
        self.access_store
            .service_accounts(org_id)
            .await?
            .into_iter()
            .find(|sa| sa.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("service account {name}")))
    }

    /// Delete a service account with its grants and tokens.
    pub async fn delete_service_account(&self, who: &Unsealed, org: &str, name: &str) -> Result<()> {
        let (org, _) = self.org_admin(who, org).await?;
        let sa = self.service_account_named(org.id, name).await?;
        self.access_store.delete_service_account(org.id, sa.id).await?;
        self.shared.principals_changed();
        Ok(())
    }

    /// A token for a service account (no expiry unless `ttl_seconds`).
    pub async fn service_account_token(
        &self,
        who: &Unsealed,
        org: &str,
        name: &str,
        ttl_seconds: Option<u64>,
        bind_spki_sha256: Option<&str>,
    ) -> Result<IssuedToken> {
        let (org, _) = self.org_admin(who, org).await?;
        let sa = self.service_account_named(org.id, name).await?;
        let bound = bind_spki_sha256
            .map(|s| check_spki("bind_spki_sha256", s))
            .transpose()?;
        let expires_at = ttl_ms(ttl_seconds)?.map(|t| now_ms() + t);
        super::auth::issue_token(
            &*self.identity_store,
            PrincipalKind::ServiceAccount {
                id: sa.id,
                org_id: org.id,
            },
            &sa.name,
            expires_at,
            bound,
            super::auth::Lineage::default(),
            false,
        )
        .await
    }

    /// `GET /orgs/{org}/service-accounts/{name}/tokens`: the account's
    /// tokens as its org's admins see them (never the secrets); they revoke
    /// one with `DELETE /tokens/{accessor}`.
    pub async fn service_account_tokens(&self, who: &Unsealed, org: &str, name: &str) -> Result<Vec<TokenView>> {
        let (org, _) = self.org_admin(who, org).await?;
        let sa = self.service_account_named(org.id, name).await?;
        Ok(self
            .identity_store
            .list_tokens(Some(sa.id))
            .await?
            .into_iter()
            .filter(|t| t.org_id == Some(org.id))
            .map(super::auth::token_view)
            .collect())
    }

    /// Grant permissions to a subject.
    pub async fn create_grant(&self, who: &Unsealed, org: &str, input: GrantInput) -> Result<GrantView> {
        let (org, _) = self.org_admin(who, org).await?;
        let (kind, subject_id) = match (&input.user, &input.service_account, &input.group) {
            (Some(email), None, None) => {
                let id = self.user_id_by_email(email).await?;
                if self.access_store.membership(org.id, id).await?.is_none() {
                    return Err(ServiceError::Invalid(format!(
                        "{email} is not a member of the organization"
                    )));
                }
                ("user", id)
            }
            (None, Some(name), None) => ("service_account", self.service_account_named(org.id, name).await?.id),
            (None, None, Some(name)) => ("group", self.group_id(org.id, name).await?),
            _ => {
                return Err(ServiceError::Invalid(
                    "give exactly one of user, service_account or group".into(),
                ));
            }
        };
        let perms = match (&input.permissions, &input.role) {
            (Some(names), None) => names
                .iter()
                .map(|n| {
                    Permission::parse(n).ok_or_else(|| {
                        ServiceError::Invalid(format!(
                            "permission {n:?} is unknown; use read, reveal, create, update, delete, export"
                        ))
                    })
                })
                .collect::<Result<PermSet>>()?,
            (None, Some(role)) => PermSet::role(role)
                .ok_or_else(|| ServiceError::Invalid("role must be viewer, developer or admin".into()))?,
            _ => return Err(ServiceError::Invalid("give either permissions or role".into())),
        };
        if perms == PermSet::default() {
            return Err(ServiceError::Invalid("a grant needs at least one permission".into()));
        }
        let (project_id, env_id) = match (input.project.as_str(), input.environment.as_str()) {
            ("*", "*") => (None, None),
            ("*", _) => {
                return Err(ServiceError::Invalid(
                    "environment must be \"*\" when project is \"*\"".into(),
                ));
            }
            (p, e) => {
                let project = self
                    .tenant_store
                    .project(org.id, p)
                    .await?
                    .ok_or_else(|| ServiceError::NotFound(format!("project {p}")))?;
                let env = match e {
                    "*" => None,
                    e => Some(
                        self.tenant_store
                            .list_envs(org.id)
                            .await?
                            .into_iter()
                            .find(|x| x.project_id == project.id && x.slug == e)
                            .ok_or_else(|| ServiceError::NotFound(format!("environment {p}/{e}")))?
                            .id,
                    ),
                };
                (Some(project.id), env)
            }
        };
        let row = GrantRow {
            id: Uuid::new_v4(),
            org_id: org.id,
            subject_kind: kind.to_owned(),
            subject_id,
            project_id,
            env_id,
            permissions: i64::from(perms.0),
            created_at: now_ms(),
        };
        self.access_store.create_grant(&row).await?;
        self.shared.principals_changed();
        Ok(GrantView {
            id: row.id.to_string(),
            subject: serde_json::json!({ kind: input.user.or(input.service_account).or(input.group) }),
            project: input.project,
            environment: input.environment,
            permissions: perms.names(),
        })
    }

    /// Every grant of an organization, with names.
    pub async fn list_grants(&self, who: &Unsealed, org: &str) -> Result<Vec<GrantView>> {
        let (org, _) = self.org_admin(who, org).await?;
        let projects = self.tenant_store.list_projects(org.id).await?;
        let envs = self.tenant_store.list_envs(org.id).await?;
        let users = self.access_store.members(org.id).await?;
        let sas = self.access_store.service_accounts(org.id).await?;
        let groups = self.access_store.groups(org.id).await?;
        let name_of = |g: &GrantRow| -> String {
            match g.subject_kind.as_str() {
                "user" => users
                    .iter()
                    .find(|(u, _)| u.id == g.subject_id)
                    .map(|(u, _)| u.email.clone()),
                "service_account" => sas.iter().find(|s| s.id == g.subject_id).map(|s| s.name.clone()),
                _ => groups
                    .iter()
                    .find(|(x, _)| x.id == g.subject_id)
                    .map(|(x, _)| x.name.clone()),
            }
            .unwrap_or_else(|| g.subject_id.to_string())
        };
        Ok(self
            .access_store
            .grants(org.id)
            .await?
            .iter()
            .map(|g| GrantView {
                id: g.id.to_string(),
                subject: serde_json::json!({ g.subject_kind.as_str(): name_of(g) }),
                project: g
                    .project_id
                    .and_then(|id| projects.iter().find(|p| p.id == id))
                    .map_or_else(|| "*".to_owned(), |p| p.slug.clone()),
                environment: g
                    .env_id
                    .and_then(|id| envs.iter().find(|e| e.id == id))
                    .map_or_else(|| "*".to_owned(), |e| e.slug.clone()),
                permissions: PermSet::from_bits(g.permissions).names(),
            })
            .collect())
    }

    /// What `who` is in `org` (owner, admin, member), for pages that
    /// show only the controls their caller may use; outsiders get the
    /// nonexistent organization's answer.
    pub async fn standing(&self, who: &Unsealed, org: &str) -> Result<OrgStanding> {
        let (_, access) = self.org_access(who, org).await?;
        Ok(OrgStanding {
            admin: access.admin,
            owner: access.owner,
            member: access.member,
        })
    }

    /// The permission names `who` holds on one environment.
    pub async fn env_permissions(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<Vec<&'static str>> {
        let (path, access) = self.env_access(who, env).await?;
        Ok(access.perms(path.project_id, path.env_id).names())
    }

    /// The grants naming exactly one environment for one subject
    /// (`{"user": email}` and so on), as listed.
    async fn exact_env_grants(
        &self,
        who: &Unsealed,
        org: &str,
        subject: &serde_json::Value,
        (project, env): (&str, &str),
    ) -> Result<Vec<GrantView>> {
        Ok(self
            .list_grants(who, org)
            .await?
            .into_iter()
            .filter(|g| &g.subject == subject && g.project == project && g.environment == env)
            .collect())
    }

    /// Set what one subject holds on one environment (the dashboard's
    /// grants matrix): the new grant is made first, then the subject's
    /// earlier grants naming exactly this environment are revoked, so the
    /// result is the one grant. Wildcard grants are left alone.
    pub async fn set_env_grant(&self, who: &Unsealed, org: &str, input: GrantInput) -> Result<GrantView> {
        if input.project == "*" || input.environment == "*" {
            return Err(ServiceError::Invalid(
                "the matrix sets grants on one environment; use the API for wildcards".into(),
            ));
        }
        let subject = grant_subject(&input)?;
        let scope = (input.project.clone(), input.environment.clone());
        let before = self.exact_env_grants(who, org, &subject, (&scope.0, &scope.1)).await?;
        let made = self.create_grant(who, org, input).await?;
        for g in before {
            self.delete_grant(who, org, &g.id).await?;
        }
        Ok(made)
    }

    /// Revoke every grant of one subject naming exactly one environment;
    /// how many there were.
    pub async fn revoke_env_grants(
        &self,
        who: &Unsealed,
        org: &str,
        subject: &serde_json::Value,
        scope: (&str, &str),
    ) -> Result<usize> {
        let grants = self.exact_env_grants(who, org, subject, scope).await?;
        if grants.is_empty() {
            return Err(ServiceError::NotFound(
                "no grant of that subject on this environment".into(),
            ));
        }
        for g in &grants {
            self.delete_grant(who, org, &g.id).await?;
        }
        Ok(grants.len())
    }

    /// Revoke a grant.
    pub async fn delete_grant(&self, who: &Unsealed, org: &str, id: &str) -> Result<()> {
        let (org, _) = self.org_admin(who, org).await?;
        let missing = || ServiceError::NotFound(format!("grant {id}"));
        let id = Uuid::parse_str(id).map_err(|_| missing())?;
        if self.access_store.delete_grant(org.id, id).await? {
            self.shared.principals_changed();
            Ok(())
        } else {
            Err(missing())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: Option<&str>, sa: Option<&str>, group: Option<&str>) -> GrantInput {
        GrantInput {
            user: user.map(str::to_owned),
            service_account: sa.map(str::to_owned),
            group: group.map(str::to_owned),
            project: "api".into(),
            environment: "dev".into(),
            permissions: None,
            role: None,
        }
    }

    #[test]
    fn a_grant_subject_is_named_as_grant_listings_name_it() {
        let user = grant_subject(&input(Some(" Ann@Acme.TEST "), None, None)).expect("user");
        assert_eq!(user, serde_json::json!({ "user": "ann@acme.test" }));
        let sa = grant_subject(&input(None, Some("ci"), None)).expect("account");
        assert_eq!(sa, serde_json::json!({ "service_account": "ci" }));
        let group = grant_subject(&input(None, None, Some("ops"))).expect("group");
        assert_eq!(group, serde_json::json!({ "group": "ops" }));
        assert!(grant_subject(&input(None, None, None)).is_err(), "nobody");
        assert!(
            grant_subject(&input(Some("a@b"), Some("ci"), None)).is_err(),
            "two subjects"
        );
    }
}
