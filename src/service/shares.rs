//! One-time share links (issue 18, docs/share-links.md): a value encrypted
//! on the client under a key that travels only in the URL fragment, kept
//! here as ciphertext the server cannot read, handed out at most
//! `max_views` times before `expires_at`, the last view deleting it.
//!
//! - create (a member of the organization, per its policy): checks the
//!   policy (who may create, longest lifetime, protected environments) and
//!   stores ciphertext, `kdf`, expiry and views. With `from`, the value
//!   came from a secret: the creator must hold reveal on that environment,
//!   and the link records the environment (never the value).
//! - open (anyone holding the link id): one atomic view; a spent, expired,
//!   revoked or unknown link is one and the same [`ServiceError::NotFound`].
//! - list (my live links, metadata only), revoke (the creator, or an
//!   administrator of the organization), the organization's policy.
//! - the purge job deletes expired links, each audited.
//!
//! The route layer audits every request (`share.*` actions); a view and a
//! purge also get a record naming the organization and the link's handle.
//! No record holds the value, the link id or the fragment key. No HTTP here.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::audit::{Actor, AuditEvent, Outcome};
use super::{AccessService, AuditService, PrincipalKind, Result, ServiceError, Shared, Unsealed, now_ms, rfc3339};
use crate::access::Permission;
use crate::crypto::share::parse_kdf;
use crate::storage::shares::{SharePolicyRow, ShareRow, ShareStore};
use crate::storage::{OrgRow, TenantStore};
use std::sync::Arc;

/// Largest ciphertext a link may hold (bytes, decoded).
pub const MAX_CIPHERTEXT: usize = 64 * 1024;
/// Most views a link may allow.
pub const MAX_VIEWS: i64 = 100;
/// Shortest lifetime of a link, seconds.
pub const MIN_EXPIRY_S: i64 = 60;
/// Longest lifetime any policy may allow, seconds (30 days).
pub const MAX_EXPIRY_CAP_S: i64 = 30 * 24 * 3600;
/// Default policy: longest lifetime (7 days).
pub const DEFAULT_MAX_EXPIRY_S: i64 = 7 * 24 * 3600;
/// Default policy: every member may create links.
pub const DEFAULT_MIN_ROLE: &str = "member";

/// The answer every spent, expired, revoked or unknown link gets.
fn gone() -> ServiceError {
    ServiceError::NotFound("share link".to_owned())
}

/// `POST /orgs/{org}/shares` body. Its Debug shows no ciphertext.
#[derive(Deserialize)]
pub struct ShareInput {
    /// the client's AEAD blob, base64
    pub ciphertext: String,
    /// "none" or argon2id parameters and salt (crypto::share)
    pub kdf: String,
    /// lifetime, seconds
    pub expires_in: i64,
    /// views allowed (default 1)
    #[serde(default = "one")]
    pub max_views: i64,
    /// where the value came from, when it was a secret
    #[serde(default)]
    pub from: Option<ShareSource>,
}

fn one() -> i64 {
    1
}

impl std::fmt::Debug for ShareInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareInput")
            .field("kdf", &self.kdf)
            .field("expires_in", &self.expires_in)
            .field("max_views", &self.max_views)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The secret a shared value came from (names only).
#[derive(Debug, Clone, Deserialize)]
pub struct ShareSource {
    /// project slug
    pub project: String,
    /// environment slug
    pub env: String,
    /// secret key
    pub key: String,
}

/// A new link: its id (goes into the URL path, shown once) and handle.
#[derive(Serialize)]
pub struct ShareCreated {
    /// the link id of the URL (`/s/<id>`); stored only hashed
    pub id: String,
    /// the handle to list and revoke by
    pub handle: String,
    /// RFC 3339
    pub expires_at: String,
    /// views allowed
    pub max_views: i64,
}

impl std::fmt::Debug for ShareCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareCreated")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// What one view returns: the ciphertext and how to derive its key.
#[derive(Serialize)]
pub struct ShareOpened {
    /// base64 AEAD blob
    pub ciphertext: String,
    /// key derivation ("none" or argon2id…)
    pub kdf: String,
}

impl std::fmt::Debug for ShareOpened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareOpened")
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

/// A live link as listed (metadata only).
#[derive(Debug, Clone, Serialize)]
pub struct ShareInfo {
    /// the handle
    pub handle: String,
    /// organization slug
    pub org: String,
    /// who made it
    pub created_by: String,
    /// "project/env:KEY" when it came from a secret, else ""
    pub source: String,
    /// whether a passphrase protects it
    pub passphrase: bool,
    /// views allowed
    pub max_views: i64,
    /// views left
    pub views_left: i64,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339
    pub expires_at: String,
}

/// An organization's share-link policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SharePolicy {
    /// longest lifetime of a link, seconds
    pub max_expiry: i64,
    /// weakest role that may create links: member | admin | owner
    pub min_role: String,
    /// whether values from a protected environment may be shared
    pub allow_protected: bool,
}

impl Default for SharePolicy {
    fn default() -> Self {
        SharePolicy {
            max_expiry: DEFAULT_MAX_EXPIRY_S,
            min_role: DEFAULT_MIN_ROLE.to_owned(),
            allow_protected: false,
        }
    }
}

/// `PUT /orgs/{org}/share-policy` body: fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SharePolicyChange {
    /// seconds
    pub max_expiry: Option<i64>,
    /// member | admin | owner
    pub min_role: Option<String>,
    /// protected environments
    pub allow_protected: Option<bool>,
}

fn rank(role: &str) -> Option<u8> {
    match role {
        "member" => Some(1),
        "admin" => Some(2),
        "owner" => Some(3),
        _ => None,
    }
}

/// The share-link service.
#[derive(Debug, Clone)]
pub struct ShareService {
    pub(super) shared: Arc<Shared>,
    pub(super) share_store: Arc<dyn ShareStore>,
    pub(super) tenant_store: Arc<dyn TenantStore>,
    pub(super) access: AccessService,
}

impl ShareService {
    async fn policy_of(&self, org_id: Uuid) -> Result<SharePolicy> {
        Ok(self
            .share_store
            .share_policy(org_id)
            .await?
            .map(|r| SharePolicy {
                max_expiry: r.max_expiry_s,
                min_role: r.min_role,
                allow_protected: r.allow_protected,
            })
            .unwrap_or_default())
    }

    /// `POST /orgs/{org}/shares`.
    pub async fn create(&self, who: &Unsealed, org: &str, input: ShareInput) -> Result<ShareCreated> {
        let (org_row, access) = self.access.org_access(who, org).await?;
        let policy = self.policy_of(org_row.id).await?;
        let held = if access.owner {
            3
        } else if access.admin {
            2
        } else if access.member {
            1
        } else {
            0
        };
        let needed = rank(&policy.min_role).unwrap_or(1);
        if held < needed {
            return Err(ServiceError::LimitExceeded(format!(
                "organization {org}'s share policy lets only {}s and above create share links (min_role)",
                policy.min_role
            )));
        }
        let ciphertext = B64
            .decode(input.ciphertext.as_bytes())
            .map_err(|_| ServiceError::Invalid("ciphertext must be base64".into()))?;
        if ciphertext.len() <= crate::crypto::aead::OVERHEAD || ciphertext.len() > MAX_CIPHERTEXT {
            return Err(ServiceError::Invalid(format!(
                "ciphertext must be an AEAD blob of at most {MAX_CIPHERTEXT} bytes"
            )));
        }
        parse_kdf(&input.kdf).map_err(|e| ServiceError::Invalid(format!("kdf: {e}")))?;
        if input.expires_in < MIN_EXPIRY_S {
            return Err(ServiceError::Invalid(format!(
                "expires_in must be at least {MIN_EXPIRY_S} seconds"
            )));
        }
        if input.expires_in > policy.max_expiry {
            return Err(ServiceError::LimitExceeded(format!(
                "expires_in {} s is longer than organization {org}'s share-link limit of {} s (max_expiry)",
                input.expires_in, policy.max_expiry
            )));
        }
        if !(1..=MAX_VIEWS).contains(&input.max_views) {
            return Err(ServiceError::Invalid(format!("max_views must be 1 to {MAX_VIEWS}")));
        }
        let (env_id, source) = match &input.from {
            None => (None, String::new()),
            Some(src) => {
                let path = self
                    .access
                    .authorize_env(who, (org, &src.project, &src.env), Permission::Reveal)
                    .await?;
                let protected = self
                    .tenant_store
                    .list_envs(org_row.id)
                    .await?
                    .iter()
                    .any(|e| e.id == path.env_id && e.protected);
                if protected && !policy.allow_protected {
                    return Err(ServiceError::LimitExceeded(format!(
                        "environment {}/{} is protected and organization {org}'s share policy does not allow \
                         sharing its values (allow_protected)",
                        src.project, src.env
                    )));
                }
                if !crate::env_policy::is_variable_name(&src.key) {
                    return Err(ServiceError::Invalid("from.key is not a secret key".into()));
                }
                (Some(path.env_id), format!("{}/{}:{}", src.project, src.env, src.key))
            }
        };
        let raw = super::random_bytes::<24>()?;
        let id = B64URL.encode(raw);
        let now = now_ms();
        let row = ShareRow {
            id: Uuid::new_v4(),
            lookup: super::token_hash(&id),
            org_id: org_row.id,
            created_by: who.id(),
            creator_name: who.name.clone(),
            env_id,
            source,
            ciphertext,
            kdf: input.kdf,
            max_views: input.max_views,
            views_left: input.max_views,
            created_at: now,
            expires_at: now + input.expires_in * 1000,
        };
        self.share_store.create_share(&row).await?;
        Ok(ShareCreated {
            id,
            handle: row.id.to_string(),
            expires_at: rfc3339(row.expires_at),
            max_views: row.max_views,
        })
    }

    /// `POST /shares/open`: one view. Every link that cannot be viewed
    /// answers alike ([`gone`]); the view's audit record is committed
    /// before the ciphertext leaves.
    pub async fn open(&self, audit: &AuditService, id: &str) -> Result<ShareOpened> {
        self.shared.require_unsealed()?;
        // Anything else is no id of ours: the same answer, with no lookup.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(gone());
        }
        let view = self
            .share_store
            .take_view(&super::token_hash(id), now_ms())
            .await?
            .ok_or_else(gone)?;
        let org = self.org_slug(view.org_id).await?;
        audit
            .audit(AuditEvent {
                request_id: format!("share-{}", Uuid::new_v4()),
                actor: Actor {
                    kind: PrincipalKind::ANONYMOUS,
                    name: "link holder".to_owned(),
                    accessor: String::new(),
                },
                cert_spki: String::new(),
                source: String::new(),
                method: "POST".to_owned(),
                action: "share.viewed".to_owned(),
                resource: format!("/api/v1/shares/{}", view.id),
                org,
                outcome: Outcome::Allowed,
                status: 200,
                reason: if view.views_left == 0 {
                    "last view: ciphertext deleted".to_owned()
                } else {
                    format!("{} views left", view.views_left)
                },
                values: 0,
            })
            .await?;
        Ok(ShareOpened {
            ciphertext: B64.encode(&view.ciphertext),
            kdf: view.kdf,
        })
    }

    async fn org_slug(&self, org_id: Uuid) -> Result<String> {
        Ok(self
            .tenant_store
            .list_orgs()
            .await?
            .into_iter()
            .find(|o: &OrgRow| o.id == org_id)
            .map_or_else(|| org_id.to_string(), |o| o.slug))
    }

    async fn infos(&self, rows: Vec<ShareRow>) -> Result<Vec<ShareInfo>> {
        let orgs = self.tenant_store.list_orgs().await?;
        Ok(rows
            .into_iter()
            .map(|r| ShareInfo {
                handle: r.id.to_string(),
                org: orgs
                    .iter()
                    .find(|o| o.id == r.org_id)
                    .map_or_else(|| r.org_id.to_string(), |o| o.slug.clone()),
                created_by: r.creator_name,
                source: r.source,
                passphrase: r.kdf != crate::crypto::share::KDF_NONE,
                max_views: r.max_views,
                views_left: r.views_left,
                created_at: rfc3339(r.created_at),
                expires_at: rfc3339(r.expires_at),
            })
            .collect())
    }

    /// `GET /shares`: the caller's live links, every organization.
    pub async fn list_mine(&self, who: &Unsealed) -> Result<Vec<ShareInfo>> {
        let rows = self.share_store.shares_by(who.id(), now_ms()).await?;
        self.infos(rows).await
    }

    /// `GET /orgs/{org}/shares`: every live link of an organization
    /// (its administrators).
    pub async fn list_org(&self, who: &Unsealed, org: &str) -> Result<Vec<ShareInfo>> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let rows = self.share_store.org_shares(org_row.id, now_ms()).await?;
        self.infos(rows).await
    }

    /// `DELETE /shares/{handle}`: the creator, or an administrator of the
    /// link's organization. Anyone else gets "not found", as for a link
    /// that does not exist.
    pub async fn revoke(&self, who: &Unsealed, handle: &str) -> Result<()> {
        let handle = Uuid::parse_str(handle).map_err(|_| gone())?;
        let row = self.share_store.share(handle).await?.ok_or_else(gone)?;
        let allowed = row.created_by == who.id() || self.access.access(who, row.org_id).await?.is_some_and(|a| a.admin);
        if !allowed || row.expires_at <= now_ms() {
            return Err(gone());
        }
        if self.share_store.delete_share(handle).await? {
            Ok(())
        } else {
            Err(gone())
        }
    }

    /// `GET /orgs/{org}/share-policy` (members).
    pub async fn policy(&self, who: &Unsealed, org: &str) -> Result<SharePolicy> {
        let (org_row, _) = self.access.org_access(who, org).await?;
        self.policy_of(org_row.id).await
    }

    /// `PUT /orgs/{org}/share-policy` (administrators).
    pub async fn set_policy(&self, who: &Unsealed, org: &str, change: SharePolicyChange) -> Result<SharePolicy> {
        let (org_row, _) = self.access.org_admin(who, org).await?;
        let mut p = self.policy_of(org_row.id).await?;
        if let Some(m) = change.max_expiry {
            if !(MIN_EXPIRY_S..=MAX_EXPIRY_CAP_S).contains(&m) {
                return Err(ServiceError::Invalid(format!(
                    "max_expiry must be {MIN_EXPIRY_S} to {MAX_EXPIRY_CAP_S} seconds"
                )));
            }
            p.max_expiry = m;
        }
        if let Some(r) = change.min_role {
            if rank(&r).is_none() {
                return Err(ServiceError::Invalid("min_role must be member, admin or owner".into()));
            }
            p.min_role = r;
        }
        if let Some(a) = change.allow_protected {
            p.allow_protected = a;
        }
        self.share_store
            .set_share_policy(&SharePolicyRow {
                org_id: org_row.id,
                max_expiry_s: p.max_expiry,
                min_role: p.min_role.clone(),
                allow_protected: p.allow_protected,
                updated_at: now_ms(),
            })
            .await?;
        Ok(p)
    }

    /// The purge job: delete every expired link, one audit record each
    /// (actor `system`). Nothing while sealed (the audit chain needs keys).
    pub async fn purge_expired(&self, audit: &AuditService) -> Result<String> {
        if self.shared.require_unsealed().is_err() {
            return Ok("sealed: nothing purged".to_owned());
        }
        let gone = self.share_store.purge_expired_shares(now_ms()).await?;
        let orgs = if gone.is_empty() {
            Vec::new()
        } else {
            self.tenant_store.list_orgs().await?
        };
        for (handle, org_id) in &gone {
            audit
                .audit(AuditEvent {
                    request_id: format!("share-purge-{}", Uuid::new_v4()),
                    actor: Actor {
                        kind: "system",
                        name: "purge job".to_owned(),
                        accessor: String::new(),
                    },
                    cert_spki: String::new(),
                    source: String::new(),
                    method: "JOB".to_owned(),
                    action: "share.expire".to_owned(),
                    resource: format!("/api/v1/shares/{handle}"),
                    org: orgs
                        .iter()
                        .find(|o| o.id == *org_id)
                        .map_or_else(|| org_id.to_string(), |o| o.slug.clone()),
                    outcome: Outcome::Allowed,
                    status: 200,
                    reason: "expired: ciphertext deleted".to_owned(),
                    values: 0,
                })
                .await?;
        }
        Ok(format!("{} expired share links deleted", gone.len()))
    }
}
