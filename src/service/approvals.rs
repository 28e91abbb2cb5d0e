//! Protected environments: second-person approval and break-glass
//! (issue 17, docs/approvals.md).
//!
//! An environment's **approval policy** (set by an organization admin) names
//! the actions that need a second person — `write`, `delete`, `rollback`,
//! `reveal`, `export` —, how many approvals (1–5), who approves (org owners
//! and admins, or a group's members), whether service accounts inject
//! without approval, and how long requests, grants and break-glass windows
//! last. It extends the permission model instead of running beside it: the
//! access of a principal ([`super::access::Access`]) withholds the
//! permissions a policy gates, less what the principal's approved grants and
//! open break-glass windows give back, so every path that checks a
//! permission (API, dashboard, KV mount, sync, copy) sees the same rule.
//!
//! - A write, delete or rollback by anyone but root creates a **change
//!   request** instead of a version (HTTP 202 with its id). The proposed
//!   value is encrypted exactly as a version (a fresh DEK under the org's
//!   KEK, bound to the version row it will become). Approvers see key, type
//!   and metadata; the values only if they hold *reveal* there. The author
//!   never approves their own request; one rejection rejects it; at the
//!   threshold the change applies with compare-and-set against the version
//!   it was made against — a write in between makes it `stale`.
//! - A reveal or export request, once approved, is a time-boxed grant for
//!   the requester alone.
//! - **Break-glass**: a holder of the `break_glass` permission opens a
//!   time-boxed window with a mandatory reason and acts at once; the window
//!   and every gated action in it are audited, and it waits in a review
//!   queue until an approver accepts or flags it. Root's gated actions on
//!   a protected environment are recorded as break-glass too.
//! - Pending requests expire (the `expire_approvals` job).
//!
//! Every step is audited (`approval.*` actions); no value ever is. Each
//! step also goes through [`ApprovalEvent`], the hook where notifications
//! (webhooks) attach.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::access::Access;
use super::audit::{Actor, AuditEvent, Outcome};
use super::secrets::{Sealed, SecretInput, author_of};
use super::{PrincipalKind, Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::{PermSet, Permission};
use crate::storage::approvals::{ApprovalStore, PolicyRow, RequestRow, VoteRow};
use crate::storage::{EnvPath, SecretRow, StorageError, VersionRow};

/// Policy action bits.
pub(crate) const ACT_WRITE: i64 = 1;
/// delete (soft delete; restore and purge need break-glass meanwhile)
pub(crate) const ACT_DELETE: i64 = 2;
/// rollback (a write of an older value)
pub(crate) const ACT_ROLLBACK: i64 = 4;
/// reveal one value
pub(crate) const ACT_REVEAL: i64 = 8;
/// export every value (inject, pull)
pub(crate) const ACT_EXPORT: i64 = 16;

const ACTIONS: [(&str, i64); 5] = [
    ("write", ACT_WRITE),
    ("delete", ACT_DELETE),
    ("rollback", ACT_ROLLBACK),
    ("reveal", ACT_REVEAL),
    ("export", ACT_EXPORT),
];

/// Defaults: a request waits 24 h, an approved reveal/export and a
/// break-glass window last 1 h.
const DEFAULT_REQUEST_TTL_S: i64 = 24 * 3600;
const DEFAULT_GRANT_TTL_S: i64 = 3600;
const MAX_TTL_S: i64 = 30 * 24 * 3600;
/// How many requests a listing returns at most.
const LIST_LIMIT: i64 = 500;

/// The permissions that policy action bits withhold.
pub(crate) fn gated_perms(actions: i64) -> PermSet {
    let mut set = PermSet::default();
    if actions & ACT_WRITE != 0 {
        set = set.with([Permission::Create, Permission::Update].into_iter().collect());
    }
    if actions & ACT_DELETE != 0 {
        set = set.with([Permission::Delete].into_iter().collect());
    }
    if actions & ACT_REVEAL != 0 {
        set = set.with([Permission::Reveal].into_iter().collect());
    }
    if actions & ACT_EXPORT != 0 {
        set = set.with([Permission::Export].into_iter().collect());
    }
    set
}

fn action_names(bits: i64) -> Vec<&'static str> {
    ACTIONS.iter().filter(|(_, b)| bits & b != 0).map(|(n, _)| *n).collect()
}

/// A step of a request's life, for notifications. Webhooks attach here
/// (`ApprovalService::emit`): logged and queued for the org's webhooks
/// (`service::webhooks`); names only, no value.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalEvent {
    /// requested | approved | rejected | applied | stale | expired |
    /// break_glass | reviewed
    pub event: &'static str,
    /// organization slug
    pub org: String,
    /// request id
    pub request_id: String,
    /// write | delete | rollback | reveal | export | break_glass
    pub kind: String,
    /// project/environment
    pub environment: String,
    /// the secret, if any
    pub key: String,
    /// who caused the step (kind:name)
    pub actor: String,
    /// break-glass: the people to notify, every approver of the
    /// environment (emails); empty for the other steps
    pub approvers: Vec<String>,
}

/// `PUT …/approvals/policies/{project}/{env}` body.
#[derive(Debug, Deserialize)]
pub struct PolicyInput {
    /// write, delete, rollback, reveal, export
    pub actions: Vec<String>,
    /// approvals needed, 1-5 (default 1)
    pub required: Option<i64>,
    /// "admin": org owners and admins approve (the default when no group
    /// is named)
    pub approver_role: Option<String>,
    /// a group whose members approve
    pub approver_group: Option<String>,
    /// service accounts inject without approval (default true)
    pub service_accounts_exempt: Option<bool>,
    /// seconds a request waits before it expires (default 86400)
    pub request_ttl_s: Option<i64>,
    /// seconds an approved reveal/export lasts (default 3600)
    pub grant_ttl_s: Option<i64>,
    /// seconds a break-glass window lasts (default 3600)
    pub break_glass_ttl_s: Option<i64>,
}

/// An environment's approval policy as shown.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    /// project slug
    pub project: String,
    /// environment slug
    pub environment: String,
    /// action names that need approval
    pub actions: Vec<&'static str>,
    /// approvals needed
    pub required: i64,
    /// "admin" or ""
    pub approver_role: String,
    /// group name, if any
    pub approver_group: Option<String>,
    /// service accounts inject without approval
    pub service_accounts_exempt: bool,
    /// seconds
    pub request_ttl_s: i64,
    /// seconds
    pub grant_ttl_s: i64,
    /// seconds
    pub break_glass_ttl_s: i64,
    /// who set it
    pub updated_by: String,
    /// RFC 3339
    pub updated_at: String,
}

/// One approver's decision.
#[derive(Debug, Serialize)]
pub struct VoteView {
    /// the approver's name
    pub approver: String,
    /// approve | reject
    pub decision: String,
    /// comment
    pub comment: String,
    /// RFC 3339
    pub at: String,
}

/// A request (or break-glass window) as shown. The values appear only for
/// a viewer holding *reveal* on the environment; its Debug never shows them.
#[derive(Serialize)]
pub struct RequestView {
    /// id
    pub id: String,
    /// write | delete | rollback | reveal | export | break_glass
    pub kind: String,
    /// project slug
    pub project: String,
    /// environment slug
    pub environment: String,
    /// the secret ("" for export and break-glass)
    pub key: String,
    /// value type of a proposed version
    #[serde(rename = "type")]
    pub value_type: String,
    /// a write's new description
    pub description: Option<String>,
    /// the version the change was made against (0: new key)
    pub base_version: i64,
    /// a rollback's source version
    pub rollback_to: Option<i64>,
    /// who asked (name)
    pub author: String,
    /// "user", "service_account", "root"
    pub author_kind: String,
    /// break-glass reason or the requester's note
    pub reason: String,
    /// pending | applied | approved | rejected | stale | expired |
    /// unreviewed | accepted | flagged
    pub status: String,
    /// approvals needed
    pub required: i64,
    /// approvals given
    pub approvals: usize,
    /// every decision so far
    pub votes: Vec<VoteView>,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339: a pending request expires then
    pub expires_at: String,
    /// RFC 3339 of the decision or review
    pub decided_at: Option<String>,
    /// RFC 3339: the granted access or the break-glass window ends then
    pub grant_until: Option<String>,
    /// who reviewed a break-glass window
    pub reviewed_by: Option<String>,
    /// the review's comment
    pub review_comment: Option<String>,
    /// the caller may approve/reject (or review) it now
    pub can_decide: bool,
    /// the value now (only with reveal; a write, rollback or delete)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_value: Option<Zeroizing<String>>,
    /// the proposed value (only with reveal)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_value: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for RequestView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("status", &self.status)
            .field("current_value", &self.current_value.as_ref().map(|_| "<redacted>"))
            .field("proposed_value", &self.proposed_value.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

fn name_of(author: &str) -> (String, String) {
    match author.split_once(':') {
        Some((kind, name)) => (name.to_owned(), kind.to_owned()),
        None => (author.to_owned(), String::new()),
    }
}

fn check_text(field: &str, text: &str, required: bool) -> Result<String> {
    let t = text.trim();
    if required && t.is_empty() {
        return Err(ServiceError::Invalid(format!("{field} is required")));
    }
    if t.chars().count() > 1000 {
        return Err(ServiceError::Invalid(format!(
            "{field} must be at most 1000 characters"
        )));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(t.to_owned())
}

fn ttl_ms(field: &str, seconds: Option<i64>, default_s: i64) -> Result<i64> {
    let s = seconds.unwrap_or(default_s);
    if !(1..=MAX_TTL_S).contains(&s) {
        return Err(ServiceError::Invalid(format!(
            "{field} must be between 1 and {MAX_TTL_S} seconds"
        )));
    }
    Ok(s * 1000)
}

/// An audit record of one step (never a value).
fn step(who: Actor, action: &str, resource: String, org: &str, reason: String) -> AuditEvent {
    AuditEvent {
        request_id: format!("approval-{}", Uuid::new_v4()),
        actor: who,
        cert_spki: String::new(),
        source: String::new(),
        method: "EVENT".to_owned(),
        action: action.to_owned(),
        resource,
        org: org.to_owned(),
        outcome: Outcome::Allowed,
        status: 200,
        reason,
        values: 0,
    }
}

fn system_actor(name: &str) -> Actor {
    Actor {
        kind: "system",
        name: name.to_owned(),
        accessor: String::new(),
    }
}

impl super::Shared {
    /// Record one approval step; fails closed like every audited action.
    async fn audit_step(&self, ev: AuditEvent) -> Result<()> {
        self.auditor
            .record(ev)
            .await
            .map_err(|e| ServiceError::AuditUnavailable(e.to_string()))
    }

    /// Grants and windows changed: every server recomputes access.
    fn access_changed(&self) {
        self.cache.access.clear();
        self.broadcast(super::cluster::Event::Principals);
    }
}

impl super::AccessService {
    /// The approval gates of a principal in an organization: per
    /// environment the policy actions still needing approval, and the
    /// environments where it has an open break-glass window.
    pub(super) async fn approval_gates(
        &self,
        org_id: Uuid,
        principal: Uuid,
        service_account: bool,
    ) -> Result<(Vec<(Uuid, i64)>, Vec<Uuid>)> {
        let policies = self.approval_store.approval_policies(org_id).await?;
        let grants = self.approval_store.active_grants(org_id, principal, now_ms()).await?;
        let glass: Vec<Uuid> = grants
            .iter()
            .filter(|g| g.kind == "break_glass")
            .map(|g| g.env_id)
            .collect();
        let mut gated = Vec::new();
        for p in policies {
            let mut bits = p.actions;
            if service_account && p.sa_inject_exempt {
                bits &= !ACT_EXPORT;
            }
            if glass.contains(&p.env_id) {
                continue;
            }
            for g in grants.iter().filter(|g| g.env_id == p.env_id) {
                match g.kind.as_str() {
                    "reveal" => bits &= !ACT_REVEAL,
                    "export" => bits &= !ACT_EXPORT,
                    _ => {}
                }
            }
            if bits != 0 {
                gated.push((p.env_id, bits));
            }
        }
        Ok((gated, glass))
    }
}

/// What a gated action does now.
enum Gate {
    /// act (no policy, a grant, a break-glass window, or root: recorded)
    Proceed,
    /// make a request instead
    Propose,
}

impl super::SecretService {
    /// The notification hook of every step: logged, and queued for the
    /// organization's webhooks (`service::webhooks`) with the environment's
    /// path. Names only. A failure to queue is logged, never fails the step.
    pub(super) async fn emit(&self, mut ev: ApprovalEvent) {
        tracing::info!(
            event = ev.event,
            org = %ev.org,
            request = %ev.request_id,
            kind = %ev.kind,
            key = %ev.key,
            actor = %ev.actor,
            "approval event"
        );
        let org_row = match self.tenant_store.org(&ev.org).await {
            Ok(Some(o)) => o,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "approval event: webhooks not queued");
                return;
            }
        };
        if let Ok(env_id) = Uuid::parse_str(&ev.environment)
            && let Ok(envs) = self.tenant_store.list_envs(org_row.id).await
            && let Some(env) = envs.iter().find(|e| e.id == env_id)
            && let Ok(projects) = self.tenant_store.list_projects(org_row.id).await
            && let Some(project) = projects.iter().find(|p| p.id == env.project_id)
        {
            ev.environment = format!("{}/{}", project.slug, env.slug);
        }
        if let Err(e) = self.webhooks.enqueue(org_row.id, &ev).await {
            tracing::warn!(error = %e, event = ev.event, "approval event: webhooks not queued");
        }
    }

    /// Every approver of `env_id` (emails, enabled accounts): the org's
    /// owners and admins when the policy's role is "admin" (or there is no
    /// policy), and the members of its approver group. Break-glass
    /// notifies them all (a storage error is logged: the step goes on).
    pub(super) async fn approvers(&self, org_id: Uuid, env_id: Uuid) -> Vec<String> {
        self.try_approvers(org_id, env_id).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "break-glass: approvers to notify not found");
            Vec::new()
        })
    }

    async fn try_approvers(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<String>> {
        let policy = self.approval_store.approval_policy(org_id, env_id).await?;
        let admins = policy.as_ref().is_none_or(|p| p.approver_role == "admin");
        let group = policy.and_then(|p| p.approver_group);
        let store = &self.access.access_store;
        let mut out = Vec::new();
        for (user, role) in store.members(org_id).await? {
            if user.disabled {
                continue;
            }
            let admin = admins && (role == "owner" || role == "admin");
            let in_group = match group {
                Some(g) if !admin => store.user_groups(org_id, user.id).await?.contains(&g),
                _ => false,
            };
            if admin || in_group {
                out.push(user.email);
            }
        }
        Ok(out)
    }

    async fn gate(&self, who: &Unsealed, org: &str, path: &EnvPath, access: &Access, act: i64) -> Result<Gate> {
        match who.kind {
            PrincipalKind::Root => {
                // Root is never held back, but on a protected environment
                // its use is break-glass: recorded and queued for review.
                if let Some(p) = self.approval_store.approval_policy(path.org_id, path.env_id).await?
                    && p.actions & act != 0
                {
                    let now = now_ms();
                    let reason = format!("root token used for {}", action_names(act).join("/"));
                    let row = break_glass_row(path, Uuid::nil(), author_of(who), reason, (now, now));
                    self.approval_store.insert_request(&row).await?;
                    self.shared
                        .audit_step(step(
                            Actor::of(who),
                            "approval.break_glass",
                            format!("approvals/{}", row.id),
                            org,
                            row.reason.clone(),
                        ))
                        .await?;
                    self.emit(ApprovalEvent {
                        event: "break_glass",
                        org: org.to_owned(),
                        request_id: row.id.to_string(),
                        kind: row.kind.clone(),
                        environment: path.env_id.to_string(),
                        key: String::new(),
                        actor: row.author.clone(),
                        approvers: self.approvers(path.org_id, path.env_id).await,
                    })
                    .await;
                }
                Ok(Gate::Proceed)
            }
            _ => {
                let gated = access.gated_actions(path.env_id);
                if gated & act != 0 {
                    return Ok(Gate::Propose);
                }
                if access.glass(path.env_id) {
                    self.shared
                        .audit_step(step(
                            Actor::of(who),
                            "approval.break_glass_use",
                            format!("env/{}", path.env_id),
                            org,
                            action_names(act).join("/"),
                        ))
                        .await?;
                }
                Ok(Gate::Proceed)
            }
        }
    }

    /// Before a write (`rollback_to`: a rollback): None to go on, or the
    /// id of the change request made instead.
    pub(super) async fn approval_for_write(
        &self,
        who: &Unsealed,
        (org, path, access): (&str, &EnvPath, &Access),
        key: &str,
        input: &SecretInput,
        (cas, rollback_to): (Option<i64>, Option<i64>),
    ) -> Result<Option<String>> {
        let act = if rollback_to.is_some() {
            ACT_ROLLBACK | ACT_WRITE
        } else {
            ACT_WRITE
        };
        if let Gate::Proceed = self.gate(who, org, path, access, act).await? {
            return Ok(None);
        }
        let existing = self.secret_store.secret(path.org_id, path.env_id, key).await?;
        let held = access.held(path.project_id, path.env_id);
        let need = if existing.is_some() {
            Permission::Update
        } else {
            Permission::Create
        };
        if !held.has(need) {
            return Err(ServiceError::PermissionDenied);
        }
        if let Some(expected) = cas
            && existing.as_ref().map_or(0, |s| s.current_version) != expected
        {
            return Err(ServiceError::Invalid(
                "check-and-set parameter did not match the current version".into(),
            ));
        }
        let (secret, base, version) = self
            .prepare_version(who.keyring(), who, path, existing, key, input)
            .await?;
        let row = RequestRow {
            kind: if rollback_to.is_some() { "rollback" } else { "write" }.to_owned(),
            key: key.to_owned(),
            value_type: version.value_type.clone(),
            description: input.description.clone(),
            base_version: base,
            rollback_to,
            secret_id: Some(secret.id),
            version_id: Some(version.id),
            ciphertext: Some(version.ciphertext),
            wrapped_dek: Some(version.wrapped_dek),
            kek_version: Some(version.kek_version),
            ..self.new_request(who, path).await?
        };
        self.file_request(who, org, &row).await.map(Some)
    }

    /// Before a soft delete: None to go on, or the request made instead.
    pub(super) async fn approval_for_delete(
        &self,
        who: &Unsealed,
        (org, path, access): (&str, &EnvPath, &Access),
        secret: &SecretRow,
    ) -> Result<Option<String>> {
        if let Gate::Proceed = self.gate(who, org, path, access, ACT_DELETE).await? {
            return Ok(None);
        }
        if !access.held(path.project_id, path.env_id).has(Permission::Delete) {
            return Err(ServiceError::PermissionDenied);
        }
        let row = RequestRow {
            kind: "delete".to_owned(),
            key: secret.key.clone(),
            value_type: secret.value_type.clone(),
            base_version: secret.current_version,
            secret_id: Some(secret.id),
            ..self.new_request(who, path).await?
        };
        self.file_request(who, org, &row).await.map(Some)
    }

    /// A reveal or an export by a principal: flagged when it is root's on a
    /// protected environment or inside a break-glass window (the access
    /// check itself withheld it when approval is needed).
    pub(super) async fn approval_for_read(&self, who: &Unsealed, org: &str, path: &EnvPath, act: i64) -> Result<()> {
        let Some(access) = self.access.access(who, path.org_id).await? else {
            return Ok(());
        };
        match self.gate(who, org, path, &access, act).await? {
            Gate::Proceed => Ok(()),
            Gate::Propose => Err(ServiceError::ApprovalRequired(if act == ACT_REVEAL {
                "reveal"
            } else {
                "export"
            })),
        }
    }

    /// A pending request of `who` on `path` under the policy now in force.
    async fn new_request(&self, who: &Unsealed, path: &EnvPath) -> Result<RequestRow> {
        let policy = self
            .approval_store
            .approval_policy(path.org_id, path.env_id)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the environment's approval policy changed; retry".into()))?;
        let now = now_ms();
        Ok(RequestRow {
            status: "pending".to_owned(),
            required: policy.required,
            expires_at: now.saturating_add(policy.request_ttl_ms),
            ..request_base(path, who.id(), author_of(who), now)
        })
    }

    async fn file_request(&self, who: &Unsealed, org: &str, row: &RequestRow) -> Result<String> {
        self.approval_store.insert_request(row).await?;
        self.shared
            .audit_step(step(
                Actor::of(who),
                "approval.request",
                format!("approvals/{}", row.id),
                org,
                format!("{} {}", row.kind, row.key).trim().to_owned(),
            ))
            .await?;
        self.emit(ApprovalEvent {
            event: "requested",
            org: org.to_owned(),
            request_id: row.id.to_string(),
            kind: row.kind.clone(),
            environment: row.env_id.to_string(),
            key: row.key.clone(),
            actor: row.author.clone(),
            approvers: Vec::new(),
        })
        .await;
        Ok(row.id.to_string())
    }
}

/// Policies, requests, decisions, break-glass and its review.
#[derive(Debug, Clone)]
pub struct ApprovalService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) store: Arc<dyn ApprovalStore>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) access_store: Arc<dyn crate::storage::AccessStore>,
    pub(super) secret_store: Arc<dyn crate::storage::SecretStore>,
    pub(super) access: super::AccessService,
    pub(super) secrets: super::SecretService,
}

/// env id → (project slug, env slug, project id)
type EnvNames = HashMap<Uuid, (String, String, Uuid)>;

/// `POST /api/v1/orgs/{org}/approvals` body: ask for reveal or export.
#[derive(Debug, Deserialize)]
pub struct AccessRequestInput {
    /// project slug
    pub project: String,
    /// environment slug
    pub environment: String,
    /// reveal | export
    pub kind: String,
    /// the secret a reveal is about (informational; the grant covers the
    /// environment)
    #[serde(default)]
    pub key: String,
    /// why
    #[serde(default)]
    pub reason: String,
}

impl ApprovalService {
    /// The notification hook of every step (see `SecretService::emit`).
    async fn emit(&self, ev: ApprovalEvent) {
        self.secrets.emit(ev).await;
    }

    async fn env_names(&self, org_id: Uuid) -> Result<EnvNames> {
        let projects: HashMap<Uuid, String> = self
            .tenant_store
            .list_projects(org_id)
            .await?
            .into_iter()
            .map(|p| (p.id, p.slug))
            .collect();
        Ok(self
            .tenant_store
            .list_envs(org_id)
            .await?
            .into_iter()
            .map(|e| {
                let project = projects.get(&e.project_id).cloned().unwrap_or_default();
                (e.id, (project, e.slug, e.project_id))
            })
            .collect())
    }

    async fn group_name(&self, org_id: Uuid, id: Option<Uuid>) -> Result<Option<String>> {
        let Some(id) = id else { return Ok(None) };
        Ok(self
            .access_store
            .groups(org_id)
            .await?
            .into_iter()
            .find(|(g, _)| g.id == id)
            .map(|(g, _)| g.name))
    }

    fn policy_view(p: PolicyRow, (project, env): (&str, &str), group: Option<String>) -> PolicyView {
        PolicyView {
            project: project.to_owned(),
            environment: env.to_owned(),
            actions: action_names(p.actions),
            required: p.required,
            approver_role: p.approver_role,
            approver_group: group,
            service_accounts_exempt: p.sa_inject_exempt,
            request_ttl_s: p.request_ttl_ms / 1000,
            grant_ttl_s: p.grant_ttl_ms / 1000,
            break_glass_ttl_s: p.break_glass_ttl_ms / 1000,
            updated_by: p.updated_by,
            updated_at: rfc3339(p.updated_at),
        }
    }

    /// An environment's policy (anyone who may read the environment).
    pub async fn policy(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<Option<PolicyView>> {
        let (path, access) = self.access.env_access(who, env).await?;
        if !access.held(path.project_id, path.env_id).has(Permission::Read) {
            return Err(ServiceError::PermissionDenied);
        }
        let Some(p) = self.store.approval_policy(path.org_id, path.env_id).await? else {
            return Ok(None);
        };
        let group = self.group_name(path.org_id, p.approver_group).await?;
        Ok(Some(Self::policy_view(p, (env.1, env.2), group)))
    }

    /// Every policy of an organization (its members).
    pub async fn policies(&self, who: &Unsealed, org: &str) -> Result<Vec<PolicyView>> {
        let (org_row, access) = self.access.org_access(who, org).await?;
        if !access.member {
            return Err(ServiceError::PermissionDenied);
        }
        let names = self.env_names(org_row.id).await?;
        let mut out = Vec::new();
        for p in self.store.approval_policies(org_row.id).await? {
            let Some((project, env, _)) = names.get(&p.env_id).cloned() else {
                continue;
            };
            let group = self.group_name(org_row.id, p.approver_group).await?;
            out.push(Self::policy_view(p, (&project, &env), group));
        }
        out.sort_by(|a, b| (&a.project, &a.environment).cmp(&(&b.project, &b.environment)));
        Ok(out)
    }

    /// Set an environment's policy (org admins).
    pub async fn set_policy(&self, who: &Unsealed, env: (&str, &str, &str), input: PolicyInput) -> Result<PolicyView> {
        let (org_row, _) = self.access.org_admin(who, env.0).await?;
        let path = self.access.env_path(env.0, env.1, env.2).await?;
        if input.actions.is_empty() {
            return Err(ServiceError::Invalid(
                "actions must name at least one of write, delete, rollback, reveal, export".into(),
            ));
        }
        let mut actions = 0;
        for a in &input.actions {
            let bit = ACTIONS.iter().find(|(n, _)| n == a).map(|(_, b)| *b).ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "action {a:?} is unknown; use write, delete, rollback, reveal or export"
                ))
            })?;
            actions |= bit;
        }
        let required = input.required.unwrap_or(1);
        if !(1..=5).contains(&required) {
            return Err(ServiceError::Invalid("required must be between 1 and 5".into()));
        }
        let group = match input.approver_group.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
            None => None,
            Some(name) => Some(
                self.access_store
                    .groups(org_row.id)
                    .await?
                    .into_iter()
                    .find(|(g, _)| g.name == name)
                    .map(|(g, _)| g.id)
                    .ok_or_else(|| ServiceError::NotFound(format!("group {name}")))?,
            ),
        };
        let role = match input.approver_role.as_deref().map(str::trim) {
            Some("admin") => "admin",
            Some("") | None if group.is_some() => "",
            None | Some("") => "admin",
            Some(other) => {
                return Err(ServiceError::Invalid(format!(
                    "approver_role {other:?} is unknown; use \"admin\" (org owners and admins) or name an approver_group"
                )));
            }
        };
        let row = PolicyRow {
            org_id: org_row.id,
            env_id: path.env_id,
            actions,
            required,
            approver_role: role.to_owned(),
            approver_group: group,
            sa_inject_exempt: input.service_accounts_exempt.unwrap_or(true),
            request_ttl_ms: ttl_ms("request_ttl_s", input.request_ttl_s, DEFAULT_REQUEST_TTL_S)?,
            grant_ttl_ms: ttl_ms("grant_ttl_s", input.grant_ttl_s, DEFAULT_GRANT_TTL_S)?,
            break_glass_ttl_ms: ttl_ms("break_glass_ttl_s", input.break_glass_ttl_s, DEFAULT_GRANT_TTL_S)?,
            updated_by: who.name.clone(),
            updated_at: now_ms(),
        };
        self.store.put_approval_policy(&row).await?;
        self.shared.access_changed();
        let group_name = self.group_name(org_row.id, row.approver_group).await?;
        Ok(Self::policy_view(row, (env.1, env.2), group_name))
    }

    /// Remove an environment's policy (org admins).
    pub async fn delete_policy(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<()> {
        let (org_row, _) = self.access.org_admin(who, env.0).await?;
        let path = self.access.env_path(env.0, env.1, env.2).await?;
        if !self.store.delete_approval_policy(org_row.id, path.env_id).await? {
            return Err(ServiceError::NotFound(format!(
                "approval policy of {}/{}/{}",
                env.0, env.1, env.2
            )));
        }
        self.shared.access_changed();
        Ok(())
    }

    /// May `who` decide on (or review) requests of `env_id`? People only:
    /// root and service accounts are no second person.
    async fn may_approve(&self, who: &Unsealed, access: &Access, org_id: Uuid, env_id: Uuid) -> Result<bool> {
        let PrincipalKind::User(user_id) = who.kind else {
            return Ok(false);
        };
        let policy = self.store.approval_policy(org_id, env_id).await?;
        let role = policy.as_ref().map_or("admin", |p| p.approver_role.as_str());
        if role == "admin" && access.admin {
            return Ok(true);
        }
        match policy.and_then(|p| p.approver_group) {
            Some(g) => Ok(self.access_store.user_groups(org_id, user_id).await?.contains(&g)),
            None => Ok(false),
        }
    }

    async fn view(
        &self,
        who: &Unsealed,
        access: &Access,
        names: &EnvNames,
        r: RequestRow,
        with_values: bool,
    ) -> Result<RequestView> {
        let (project, environment, project_id) = names.get(&r.env_id).cloned().unwrap_or_default();
        let votes = self.store.votes(r.org_id, r.id).await?;
        let open = matches!(r.status.as_str(), "pending" | "unreviewed");
        let can_decide = open
            && r.author_id != who.id()
            && !votes.iter().any(|v| v.approver_id == who.id())
            && self.may_approve(who, access, r.org_id, r.env_id).await?;
        let (mut current_value, mut proposed_value) = (None, None);
        let revealer = access.held(project_id, r.env_id).has(Permission::Reveal);
        if with_values && revealer && matches!(r.kind.as_str(), "write" | "rollback" | "delete") {
            let path = EnvPath {
                org_id: r.org_id,
                project_id,
                env_id: r.env_id,
                kek_version: 0,
            };
            if let Some((s, v)) = self.secret_store.current_secret(r.org_id, r.env_id, &r.key).await?
                && s.deleted_at.is_none()
            {
                current_value = Some(self.secrets.decrypt(who.keyring(), &path, &r.key, (&v).into()).await?);
            }
            if let (Some(secret_id), Some(version_id), Some(ct), Some(wd), Some(kek)) =
                (r.secret_id, r.version_id, &r.ciphertext, &r.wrapped_dek, r.kek_version)
            {
                let sealed = Sealed {
                    secret_id,
                    version_id,
                    version: r.base_version + 1,
                    kek_version: kek,
                    ciphertext: ct,
                    wrapped_dek: wd,
                };
                proposed_value = Some(self.secrets.decrypt(who.keyring(), &path, &r.key, sealed).await?);
            }
        }
        let (author, author_kind) = name_of(&r.author);
        Ok(RequestView {
            id: r.id.to_string(),
            kind: r.kind,
            project,
            environment,
            key: r.key,
            value_type: r.value_type,
            description: r.description,
            base_version: r.base_version,
            rollback_to: r.rollback_to,
            author,
            author_kind,
            reason: r.reason,
            status: r.status,
            required: r.required,
            approvals: votes.iter().filter(|v| v.decision == "approve").count(),
            votes: votes
                .into_iter()
                .map(|v| VoteView {
                    approver: name_of(&v.approver).0,
                    decision: v.decision,
                    comment: v.comment,
                    at: rfc3339(v.created_at),
                })
                .collect(),
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            decided_at: r.decided_at.map(rfc3339),
            grant_until: r.grant_until.map(rfc3339),
            reviewed_by: r.reviewed_by.map(|b| name_of(&b).0),
            review_comment: r.review_comment,
            can_decide,
            current_value,
            proposed_value,
        })
    }

    /// The requests of an organization the caller may read (their
    /// environment's metadata), newest first; `status` filters.
    pub async fn list(&self, who: &Unsealed, org: &str, status: Option<&str>) -> Result<Vec<RequestView>> {
        self.readable(who, org, |r| {
            status.is_none_or(|s| s == r.status) && r.kind != "break_glass"
        })
        .await
    }

    /// The requests of an organization that `keep` selects and whose
    /// environment's metadata the caller may read, newest first.
    async fn readable(
        &self,
        who: &Unsealed,
        org: &str,
        keep: impl Fn(&RequestRow) -> bool,
    ) -> Result<Vec<RequestView>> {
        let (org_row, access) = self.access.org_access(who, org).await?;
        let names = self.env_names(org_row.id).await?;
        let mut out = Vec::new();
        for r in self.store.requests(org_row.id, LIST_LIMIT).await? {
            if !keep(&r) {
                continue;
            }
            let Some((_, _, project_id)) = names.get(&r.env_id) else {
                continue;
            };
            if !access.held(*project_id, r.env_id).has(Permission::Read) {
                continue;
            }
            out.push(self.view(who, &access, &names, r, false).await?);
        }
        Ok(out)
    }

    async fn load(
        &self,
        who: &Unsealed,
        org: &str,
        id: &str,
    ) -> Result<(crate::storage::OrgRow, Arc<Access>, RequestRow)> {
        let (org_row, access) = self.access.org_access(who, org).await?;
        let missing = || ServiceError::NotFound(format!("request {id}"));
        let id = Uuid::parse_str(id.trim()).map_err(|_| ServiceError::Invalid("request id must be a UUID".into()))?;
        let r = self.store.request(org_row.id, id).await?.ok_or_else(missing)?;
        let names = self.env_names(org_row.id).await?;
        let project_id = names.get(&r.env_id).map(|n| n.2).ok_or_else(missing)?;
        if !access.held(project_id, r.env_id).has(Permission::Read) && r.author_id != who.id() {
            return Err(missing());
        }
        Ok((org_row, access, r))
    }

    /// One request; its values for a viewer holding *reveal* there
    /// (`values`: how many the answer carries, for the audit record).
    pub async fn show(&self, who: &Unsealed, org: &str, id: &str) -> Result<RequestView> {
        let (org_row, access, r) = self.load(who, org, id).await?;
        let names = self.env_names(org_row.id).await?;
        self.view(who, &access, &names, r, true).await
    }

    /// Ask for a time-boxed reveal or export on a protected environment.
    pub async fn request_access(&self, who: &Unsealed, org: &str, input: AccessRequestInput) -> Result<RequestView> {
        let (path, access) = self
            .access
            .env_access(who, (org, &input.project, &input.environment))
            .await?;
        let (perm, act) = match input.kind.as_str() {
            "reveal" => (Permission::Reveal, ACT_REVEAL),
            "export" => (Permission::Export, ACT_EXPORT),
            other => {
                return Err(ServiceError::Invalid(format!(
                    "kind {other:?} cannot be requested; use reveal or export (writes make their request themselves)"
                )));
            }
        };
        if !access.held(path.project_id, path.env_id).has(perm) {
            return Err(ServiceError::PermissionDenied);
        }
        if access.gated_actions(path.env_id) & act == 0 {
            return Err(ServiceError::Conflict(format!(
                "{} on this environment needs no approval for you now",
                input.kind
            )));
        }
        if !input.key.is_empty() {
            super::secrets::check_key(&input.key)?;
        }
        let reason = check_text("reason", &input.reason, false)?;
        let row = RequestRow {
            kind: input.kind.clone(),
            key: input.key.clone(),
            reason,
            ..self.secrets.new_request(who, &path).await?
        };
        self.secrets.file_request(who, org, &row).await?;
        let names = self.env_names(path.org_id).await?;
        self.view(who, &access, &names, row, false).await
    }

    /// Approve (`approve`) or reject a pending request, with a comment. At
    /// the threshold the change applies (or the grant starts).
    pub async fn decide(
        &self,
        who: &Unsealed,
        org: &str,
        id: &str,
        approve: bool,
        comment: &str,
    ) -> Result<RequestView> {
        let (org_row, access, r) = self.load(who, org, id).await?;
        let comment = check_text("comment", comment, false)?;
        if r.kind == "break_glass" {
            return Err(ServiceError::Invalid(
                "a break-glass window is reviewed, not approved: use the review queue".into(),
            ));
        }
        // By id (names can change): the author never decides their own.
        if r.author_id == who.id() {
            return Err(ServiceError::PermissionDenied);
        }
        if !self.may_approve(who, &access, org_row.id, r.env_id).await? {
            return Err(ServiceError::PermissionDenied);
        }
        if r.status != "pending" {
            return Err(ServiceError::Conflict(format!("request {} is {}", r.id, r.status)));
        }
        let now = now_ms();
        if r.expires_at < now {
            return Err(ServiceError::Conflict(format!("request {} has expired", r.id)));
        }
        let vote = VoteRow {
            request_id: r.id,
            org_id: org_row.id,
            approver_id: who.id(),
            approver: author_of(who),
            decision: if approve { "approve" } else { "reject" }.to_owned(),
            comment: comment.clone(),
            created_at: now,
        };
        self.store.add_vote(&vote).await.map_err(|e| match e {
            StorageError::Conflict(_) => ServiceError::Conflict("you have decided on this request already".into()),
            other => other.into(),
        })?;
        let resource = format!("approvals/{}", r.id);
        let event = |event: &'static str, actor: &str| ApprovalEvent {
            event,
            org: org.to_owned(),
            request_id: r.id.to_string(),
            kind: r.kind.clone(),
            environment: r.env_id.to_string(),
            key: r.key.clone(),
            actor: actor.to_owned(),
            approvers: Vec::new(),
        };
        let actor = author_of(who);
        if approve {
            self.shared
                .audit_step(step(Actor::of(who), "approval.approve", resource.clone(), org, comment))
                .await?;
            self.emit(event("approved", &actor)).await;
            let approvals = self
                .store
                .votes(org_row.id, r.id)
                .await?
                .iter()
                .filter(|v| v.decision == "approve")
                .count();
            if i64::try_from(approvals).unwrap_or(i64::MAX) >= r.required {
                self.apply(who, org, &r).await?;
            }
        } else {
            if self
                .store
                .set_request_status(org_row.id, r.id, ("pending", "rejected"), now, None)
                .await?
            {
                self.shared
                    .audit_step(step(Actor::of(who), "approval.reject", resource, org, comment))
                    .await?;
                self.emit(event("rejected", &actor)).await;
            }
        }
        self.show(who, org, id).await
    }

    /// The threshold is reached: apply the change with compare-and-set
    /// against its base version (else `stale`), or start the grant.
    async fn apply(&self, who: &Unsealed, org: &str, r: &RequestRow) -> Result<()> {
        let now = now_ms();
        let resource = format!("approvals/{}", r.id);
        if matches!(r.kind.as_str(), "reveal" | "export") {
            let policy = self.store.approval_policy(r.org_id, r.env_id).await?;
            let ttl = policy.map_or(DEFAULT_GRANT_TTL_S * 1000, |p| p.grant_ttl_ms);
            let until = now.saturating_add(ttl);
            if self
                .store
                .set_request_status(r.org_id, r.id, ("pending", "approved"), now, Some(until))
                .await?
            {
                self.shared.access_changed();
                self.shared
                    .audit_step(step(
                        system_actor("approvals"),
                        "approval.grant",
                        resource,
                        org,
                        format!("{} for {} until {}", r.kind, name_of(&r.author).0, rfc3339(until)),
                    ))
                    .await?;
            }
            return Ok(());
        }
        // Only one approver applies: the one who moves it out of pending.
        if !self
            .store
            .set_request_status(r.org_id, r.id, ("pending", "applying"), now, None)
            .await?
        {
            return Ok(());
        }
        let applied = match self.apply_change(r, now).await {
            Ok(applied) => applied,
            Err(e) => {
                // Leave it decidable again rather than stuck.
                let _ = self
                    .store
                    .set_request_status(r.org_id, r.id, ("applying", "pending"), now, None)
                    .await;
                return Err(e);
            }
        };
        let (status, action, event) = if applied {
            ("applied", "approval.apply", "applied")
        } else {
            ("stale", "approval.stale", "stale")
        };
        self.store
            .set_request_status(r.org_id, r.id, ("applying", status), now, None)
            .await?;
        self.shared
            .audit_step(step(
                system_actor("approvals"),
                action,
                resource,
                org,
                format!("{} {} (base version {})", r.kind, r.key, r.base_version),
            ))
            .await?;
        self.emit(ApprovalEvent {
            event,
            org: org.to_owned(),
            request_id: r.id.to_string(),
            kind: r.kind.clone(),
            environment: r.env_id.to_string(),
            key: r.key.clone(),
            actor: author_of(who),
            approvers: Vec::new(),
        })
        .await;
        Ok(())
    }

    /// True when applied; false when the secret moved on (stale).
    async fn apply_change(&self, r: &RequestRow, now: i64) -> Result<bool> {
        let _turn = self.shared.writes.turn(r.env_id, &r.key).await;
        let existing = self.secret_store.secret(r.org_id, r.env_id, &r.key).await?;
        let Some(secret_id) = r.secret_id else {
            return Err(ServiceError::Internal("a change request without its secret".into()));
        };
        if r.kind == "delete" {
            return Ok(self
                .store
                .delete_secret_if(r.org_id, secret_id, r.base_version, now)
                .await?);
        }
        let (Some(version_id), Some(ct), Some(wd), Some(kek)) =
            (r.version_id, &r.ciphertext, &r.wrapped_dek, r.kek_version)
        else {
            return Err(ServiceError::Internal("a change request without its value".into()));
        };
        let secret = match existing {
            None if r.base_version == 0 => SecretRow {
                id: secret_id,
                org_id: r.org_id,
                env_id: r.env_id,
                key: r.key.clone(),
                value_type: r.value_type.clone(),
                description: r.description.clone().unwrap_or_default(),
                current_version: 1,
                deleted_at: None,
                created_at: now,
                updated_at: now,
                ciphertext_len: ct.len() as i64,
                author: r.author.clone(),
            },
            Some(s) if s.id == secret_id && s.current_version == r.base_version => SecretRow {
                current_version: r.base_version + 1,
                value_type: r.value_type.clone(),
                description: r.description.clone().unwrap_or(s.description.clone()),
                deleted_at: None,
                updated_at: now,
                ciphertext_len: ct.len() as i64,
                author: r.author.clone(),
                ..s
            },
            _ => return Ok(false),
        };
        let version = VersionRow {
            id: version_id,
            org_id: r.org_id,
            secret_id,
            version: r.base_version + 1,
            value_type: r.value_type.clone(),
            ciphertext: ct.clone(),
            wrapped_dek: wd.clone(),
            kek_version: kek,
            created_by: format!("request:{}", r.id),
            author: r.author.clone(),
            created_at: now,
        };
        match self.secret_store.put_version(&secret, r.base_version, &version).await {
            Ok(()) => {
                self.shared.broadcast(super::cluster::Event::Env(r.env_id));
                Ok(true)
            }
            Err(StorageError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Open a break-glass window on an environment (the `break_glass`
    /// permission), with a mandatory reason.
    pub async fn break_glass(&self, who: &Unsealed, env: (&str, &str, &str), reason: &str) -> Result<RequestView> {
        let (path, access) = self.access.env_access(who, env).await?;
        if !access.held(path.project_id, path.env_id).has(Permission::BreakGlass) {
            return Err(ServiceError::PermissionDenied);
        }
        let reason = check_text("reason", reason, true)?;
        let policy = self.store.approval_policy(path.org_id, path.env_id).await?;
        let now = now_ms();
        let until = now.saturating_add(
            policy
                .as_ref()
                .map_or(DEFAULT_GRANT_TTL_S * 1000, |p| p.break_glass_ttl_ms),
        );
        let row = break_glass_row(&path, who.id(), author_of(who), reason.clone(), (now, until));
        self.store.insert_request(&row).await?;
        self.shared.access_changed();
        self.shared
            .audit_step(step(
                Actor::of(who),
                "approval.break_glass",
                format!("approvals/{}", row.id),
                env.0,
                reason,
            ))
            .await?;
        self.emit(ApprovalEvent {
            event: "break_glass",
            org: env.0.to_owned(),
            request_id: row.id.to_string(),
            kind: row.kind.clone(),
            environment: format!("{}/{}", env.1, env.2),
            key: String::new(),
            actor: row.author.clone(),
            approvers: self.secrets.approvers(path.org_id, path.env_id).await,
        })
        .await;
        let names = self.env_names(path.org_id).await?;
        self.view(who, &access, &names, row, false).await
    }

    /// The break-glass review queue of an organization (`all`: reviewed
    /// ones too), newest first: what the caller may read.
    pub async fn break_glass_queue(&self, who: &Unsealed, org: &str, all: bool) -> Result<Vec<RequestView>> {
        self.readable(who, org, |r| {
            r.kind == "break_glass" && (all || r.status == "unreviewed")
        })
        .await
    }

    /// Review a break-glass window: `accept` or `flag`, with a comment.
    pub async fn review(
        &self,
        who: &Unsealed,
        org: &str,
        id: &str,
        decision: &str,
        comment: &str,
    ) -> Result<RequestView> {
        let (org_row, access, r) = self.load(who, org, id).await?;
        let comment = check_text("comment", comment, false)?;
        if r.kind != "break_glass" {
            return Err(ServiceError::Invalid("only a break-glass window is reviewed".into()));
        }
        let status = match decision {
            "accept" => "accepted",
            "flag" => "flagged",
            other => {
                return Err(ServiceError::Invalid(format!(
                    "decision {other:?} is unknown; use accept or flag"
                )));
            }
        };
        // By id (names can change): the author never decides their own.
        if r.author_id == who.id() {
            return Err(ServiceError::PermissionDenied);
        }
        if !self.may_approve(who, &access, org_row.id, r.env_id).await? {
            return Err(ServiceError::PermissionDenied);
        }
        if !self
            .store
            .review_request(org_row.id, r.id, status, &author_of(who), &comment, now_ms())
            .await?
        {
            return Err(ServiceError::Conflict(format!(
                "break-glass {} was reviewed already",
                r.id
            )));
        }
        self.shared
            .audit_step(step(
                Actor::of(who),
                "approval.review",
                format!("approvals/{}", r.id),
                org,
                format!("{status}: {comment}"),
            ))
            .await?;
        self.emit(ApprovalEvent {
            event: "reviewed",
            org: org.to_owned(),
            request_id: r.id.to_string(),
            kind: r.kind.clone(),
            environment: r.env_id.to_string(),
            key: String::new(),
            actor: author_of(who),
            approvers: Vec::new(),
        })
        .await;
        self.show(who, org, id).await
    }

    /// The `expire_approvals` job: pending requests past their expiry
    /// become `expired` (each audited).
    pub async fn expire(&self) -> Result<String> {
        if self.shared.require_unsealed().is_err() {
            return Ok("sealed: nothing expired".to_owned());
        }
        let expired = self.store.expire_requests(now_ms()).await?;
        let orgs: HashMap<Uuid, String> = self
            .tenant_store
            .list_orgs()
            .await?
            .into_iter()
            .map(|o| (o.id, o.slug))
            .collect();
        for r in &expired {
            let org = orgs.get(&r.org_id).cloned().unwrap_or_default();
            self.shared
                .audit_step(step(
                    system_actor("approval expiry job"),
                    "approval.expire",
                    format!("approvals/{}", r.id),
                    &org,
                    format!("{} {}", r.kind, r.key).trim().to_owned(),
                ))
                .await?;
            self.emit(ApprovalEvent {
                event: "expired",
                org,
                request_id: r.id.to_string(),
                kind: r.kind.clone(),
                environment: r.env_id.to_string(),
                key: r.key.clone(),
                actor: "system:approval expiry job".to_owned(),
                approvers: Vec::new(),
            })
            .await;
        }
        Ok(format!("{} requests expired", expired.len()))
    }
}

/// The fields every request row starts from: a fresh id on `path`, by
/// `author_id` (`author`: kind:name) at `now`, nothing proposed, nothing
/// decided. Each kind sets its own kind, status, threshold and times.
fn request_base(path: &EnvPath, author_id: Uuid, author: String, now: i64) -> RequestRow {
    RequestRow {
        id: Uuid::new_v4(),
        org_id: path.org_id,
        env_id: path.env_id,
        kind: String::new(),
        key: String::new(),
        value_type: String::new(),
        description: None,
        base_version: 0,
        rollback_to: None,
        secret_id: None,
        version_id: None,
        ciphertext: None,
        wrapped_dek: None,
        kek_version: None,
        author_id,
        author,
        reason: String::new(),
        status: String::new(),
        required: 0,
        created_at: now,
        expires_at: now,
        decided_at: None,
        grant_until: None,
        reviewed_by: None,
        review_comment: None,
    }
}

/// A break-glass entry: `author_id` acted at `now` (root: the nil id) and
/// the window lasts until `until`; unreviewed until an approver looks.
fn break_glass_row(
    path: &EnvPath,
    author_id: Uuid,
    author: String,
    reason: String,
    (now, until): (i64, i64),
) -> RequestRow {
    RequestRow {
        kind: "break_glass".to_owned(),
        reason,
        status: "unreviewed".to_owned(),
        expires_at: until,
        grant_until: Some(until),
        ..request_base(path, author_id, author, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_bits_withhold_their_permissions() {
        let set = gated_perms(ACT_WRITE | ACT_REVEAL);
        assert!(set.has(Permission::Create) && set.has(Permission::Update) && set.has(Permission::Reveal));
        assert!(!set.has(Permission::Read) && !set.has(Permission::Export) && !set.has(Permission::Delete));
        assert_eq!(gated_perms(ACT_ROLLBACK), PermSet::default());
        assert_eq!(action_names(ACT_DELETE | ACT_EXPORT), ["delete", "export"]);
    }

    #[test]
    fn texts_and_ttls_are_checked() {
        assert!(check_text("reason", "  ", true).is_err());
        assert!(check_text("reason", "db down\u{7}", true).is_err());
        assert_eq!(check_text("reason", " ok ", true).ok().as_deref(), Some("ok"));
        assert!(ttl_ms("grant_ttl_s", Some(0), 1).is_err());
        assert_eq!(ttl_ms("grant_ttl_s", None, 3600).ok(), Some(3_600_000));
    }
}
