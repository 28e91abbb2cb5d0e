//! The audit layer and the audit API.
//!
//! Every route is either public (health, seal status: no record) or has an
//! action in [`ROUTE_ACTIONS`]; the layer records every request to an
//! audited route — allowed, denied or failed — and lets the response leave
//! only after the record is committed. A route registered without an entry
//! answers 500 and logs why, so no route can serve unaudited; the
//! integration test `audit_routes` walks the same table.
//!
//! Handlers and extractors add what only they know through the request's
//! [`AuditNote`]: the authenticated actor (set by authentication), the name
//! a failed login tried, a finer action, the number of values revealed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::api::{Reply, ok};
use super::error::{ApiError, ErrorCode, VaultError};
use super::extract::{Auth, Body, PeerCert};
use crate::access::ENV_ROUTES;
use crate::service::audit::{Actor, AuditEvent, Outcome};
use crate::service::{Principal, ServiceError};
use crate::storage::audit::AuditFilter;

/// What a route is, for the audit layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAudit {
    /// read-only and unauthenticated: not recorded
    Public,
    /// recorded under this action
    Action(&'static str),
    /// the KV v2 mount: the action depends on the path below the mount
    /// and the method (`vault_kv::audit_action`)
    Kv,
}

use RouteAudit::{Action, Kv, Public};

/// Every route of the router but the environment routes (whose actions
/// are in [`ENV_ROUTES`]): method, full path template, audit. HEAD is
/// looked up as GET.
pub const ROUTE_ACTIONS: &[(&str, &str, RouteAudit)] = &[
    // Vault-compatible seal lifecycle
    ("GET", "/v1/sys/health", Public),
    ("GET", "/v1/sys/init", Public),
    ("PUT", "/v1/sys/init", Action("seal.init")),
    ("POST", "/v1/sys/init", Action("seal.init")),
    ("GET", "/v1/sys/seal-status", Public),
    ("PUT", "/v1/sys/unseal", Action("seal.unseal_share")),
    ("POST", "/v1/sys/unseal", Action("seal.unseal_share")),
    ("PUT", "/v1/sys/seal", Action("seal.seal")),
    ("POST", "/v1/sys/seal", Action("seal.seal")),
    ("GET", "/v1/sys/leader", Public),
    // scrape token checked by the handler; touches no secret
    ("GET", "/metrics", Public),
    ("GET", "/v1/sys/backup", Action("backup.create")),
    ("PUT", "/v1/sys/rotate-root", Action("key.rotate_root")),
    ("POST", "/v1/sys/rotate-root", Action("key.rotate_root")),
    (
        "GET",
        "/v1/sys/generate-root/attempt",
        Action("seal.generate_root_status"),
    ),
    (
        "PUT",
        "/v1/sys/generate-root/attempt",
        Action("seal.generate_root_start"),
    ),
    (
        "POST",
        "/v1/sys/generate-root/attempt",
        Action("seal.generate_root_start"),
    ),
    (
        "DELETE",
        "/v1/sys/generate-root/attempt",
        Action("seal.generate_root_cancel"),
    ),
    (
        "PUT",
        "/v1/sys/generate-root/update",
        Action("seal.generate_root_share"),
    ),
    (
        "POST",
        "/v1/sys/generate-root/update",
        Action("seal.generate_root_share"),
    ),
    (
        "GET",
        "/v1/sys/generate-root-token/attempt",
        Action("seal.generate_root_status"),
    ),
    (
        "PUT",
        "/v1/sys/generate-root-token/attempt",
        Action("seal.generate_root_start"),
    ),
    (
        "POST",
        "/v1/sys/generate-root-token/attempt",
        Action("seal.generate_root_start"),
    ),
    (
        "DELETE",
        "/v1/sys/generate-root-token/attempt",
        Action("seal.generate_root_cancel"),
    ),
    (
        "PUT",
        "/v1/sys/generate-root-token/update",
        Action("seal.generate_root_share"),
    ),
    (
        "POST",
        "/v1/sys/generate-root-token/update",
        Action("seal.generate_root_share"),
    ),
    ("GET", "/v1/sys/rekey/init", Action("seal.rekey_status")),
    ("PUT", "/v1/sys/rekey/init", Action("seal.rekey_start")),
    ("POST", "/v1/sys/rekey/init", Action("seal.rekey_start")),
    ("DELETE", "/v1/sys/rekey/init", Action("seal.rekey_cancel")),
    ("PUT", "/v1/sys/rekey/update", Action("seal.rekey_share")),
    ("POST", "/v1/sys/rekey/update", Action("seal.rekey_share")),
    ("GET", "/v1/sys/rekey/verify", Action("seal.rekey_status")),
    ("PUT", "/v1/sys/rekey/verify", Action("seal.rekey_verify")),
    ("POST", "/v1/sys/rekey/verify", Action("seal.rekey_verify")),
    ("DELETE", "/v1/sys/rekey/verify", Action("seal.rekey_verify_reset")),
    ("GET", "/v1/sys/rekey-recovery-key/init", Action("seal.rekey_status")),
    ("PUT", "/v1/sys/rekey-recovery-key/init", Action("seal.rekey_start")),
    ("POST", "/v1/sys/rekey-recovery-key/init", Action("seal.rekey_start")),
    ("DELETE", "/v1/sys/rekey-recovery-key/init", Action("seal.rekey_cancel")),
    ("PUT", "/v1/sys/rekey-recovery-key/update", Action("seal.rekey_share")),
    ("POST", "/v1/sys/rekey-recovery-key/update", Action("seal.rekey_share")),
    ("GET", "/v1/sys/rekey-recovery-key/verify", Action("seal.rekey_status")),
    ("PUT", "/v1/sys/rekey-recovery-key/verify", Action("seal.rekey_verify")),
    ("POST", "/v1/sys/rekey-recovery-key/verify", Action("seal.rekey_verify")),
    (
        "DELETE",
        "/v1/sys/rekey-recovery-key/verify",
        Action("seal.rekey_verify_reset"),
    ),
    // Vault-compatible KV v2 mount, mounts preflight, tokens and logins
    ("*", "/v1/secret/{*rest}", Kv),
    ("GET", "/v1/sys/internal/ui/mounts/{*path}", Action("sys.mounts")),
    ("GET", "/v1/sys/mounts", Action("sys.mounts")),
    ("*", "/v1/sys/mounts/{*path}", Action("sys.mounts")),
    ("GET", "/v1/auth/token/lookup-self", Action("token.lookup")),
    ("POST", "/v1/auth/token/lookup-self", Action("token.lookup")),
    ("POST", "/v1/auth/token/lookup-accessor", Action("token.lookup")),
    ("PUT", "/v1/auth/token/lookup-accessor", Action("token.lookup")),
    ("POST", "/v1/auth/token/create", Action("token.create")),
    ("PUT", "/v1/auth/token/create", Action("token.create")),
    ("POST", "/v1/auth/token/renew-self", Action("token.renew")),
    ("PUT", "/v1/auth/token/renew-self", Action("token.renew")),
    ("POST", "/v1/auth/token/revoke-self", Action("token.revoke")),
    ("PUT", "/v1/auth/token/revoke-self", Action("token.revoke")),
    ("POST", "/v1/auth/cert/login", Action("auth.login")),
    ("PUT", "/v1/auth/cert/login", Action("auth.login")),
    ("POST", "/v1/auth/userpass/login/{user}", Action("auth.login")),
    ("PUT", "/v1/auth/userpass/login/{user}", Action("auth.login")),
    // native: organizations and what hangs off them
    ("GET", "/api/v1/orgs", Action("org.list")),
    ("POST", "/api/v1/orgs", Action("org.create")),
    ("GET", "/api/v1/orgs/{org}", Action("org.read")),
    ("GET", "/api/v1/orgs/{org}/keks", Action("key.kek_list")),
    ("POST", "/api/v1/orgs/{org}/keks/rotate", Action("key.kek_rotate")),
    ("POST", "/api/v1/orgs/{org}/keks/rewrap", Action("key.kek_rewrap")),
    ("DELETE", "/api/v1/orgs/{org}/keks/{version}", Action("key.kek_destroy")),
    ("GET", "/api/v1/orgs/{org}/projects", Action("project.list")),
    ("POST", "/api/v1/orgs/{org}/projects", Action("project.create")),
    ("GET", "/api/v1/orgs/{org}/projects/{project}", Action("project.read")),
    (
        "GET",
        "/api/v1/orgs/{org}/projects/{project}/environments",
        Action("env.list"),
    ),
    (
        "POST",
        "/api/v1/orgs/{org}/projects/{project}/environments",
        Action("env.create"),
    ),
    ("GET", "/api/v1/orgs/{org}/members", Action("member.list")),
    ("POST", "/api/v1/orgs/{org}/members", Action("member.set")),
    ("DELETE", "/api/v1/orgs/{org}/members/{email}", Action("member.remove")),
    ("GET", "/api/v1/orgs/{org}/groups", Action("group.list")),
    ("POST", "/api/v1/orgs/{org}/groups", Action("group.create")),
    (
        "POST",
        "/api/v1/orgs/{org}/groups/{group}/members",
        Action("group.member_add"),
    ),
    (
        "DELETE",
        "/api/v1/orgs/{org}/groups/{group}/members/{email}",
        Action("group.member_remove"),
    ),
    (
        "GET",
        "/api/v1/orgs/{org}/service-accounts",
        Action("service_account.list"),
    ),
    (
        "POST",
        "/api/v1/orgs/{org}/service-accounts",
        Action("service_account.create"),
    ),
    (
        "DELETE",
        "/api/v1/orgs/{org}/service-accounts/{name}",
        Action("service_account.delete"),
    ),
    (
        "GET",
        "/api/v1/orgs/{org}/service-accounts/{name}/tokens",
        Action("token.list"),
    ),
    (
        "POST",
        "/api/v1/orgs/{org}/service-accounts/{name}/tokens",
        Action("token.create"),
    ),
    ("GET", "/api/v1/orgs/{org}/grants", Action("grant.list")),
    ("POST", "/api/v1/orgs/{org}/grants", Action("grant.create")),
    ("DELETE", "/api/v1/orgs/{org}/grants/{id}", Action("grant.delete")),
    // native: users, sessions, tokens
    ("POST", "/api/v1/users", Action("user.create")),
    (
        "POST",
        "/api/v1/users/{email}/revoke-sessions",
        Action("user.revoke_sessions"),
    ),
    ("DELETE", "/api/v1/users/{email}", Action("user.delete")),
    ("DELETE", "/api/v1/users/{email}/totp", Action("user.totp_reset")),
    ("POST", "/api/v1/users/{email}/disable", Action("user.disable")),
    ("POST", "/api/v1/users/{email}/enable", Action("user.enable")),
    ("POST", "/api/v1/auth/password", Action("auth.password_change")),
    ("POST", "/api/v1/auth/login", Action("auth.login")),
    ("POST", "/api/v1/auth/refresh", Action("auth.refresh")),
    ("POST", "/api/v1/auth/logout", Action("auth.logout")),
    ("GET", "/api/v1/auth/whoami", Action("auth.whoami")),
    ("POST", "/api/v1/auth/totp/enroll", Action("auth.totp_enroll")),
    ("POST", "/api/v1/auth/totp/verify", Action("auth.totp_verify")),
    ("POST", "/api/v1/auth/device/code", Action("auth.device_code")),
    ("POST", "/api/v1/auth/device/approve", Action("auth.device_approve")),
    ("POST", "/api/v1/auth/device/token", Action("auth.device_token")),
    ("GET", "/api/v1/tokens", Action("token.list")),
    ("POST", "/api/v1/tokens", Action("token.create")),
    ("DELETE", "/api/v1/tokens/{accessor}", Action("token.revoke")),
    // native: the audit log itself
    ("GET", "/api/v1/audit/records", Action("audit.search")),
    ("GET", "/api/v1/audit/verify", Action("audit.verify")),
    ("POST", "/api/v1/audit/prune", Action("audit.prune")),
];

/// Prefix of the environment routes of [`ENV_ROUTES`].
pub const ENV_PREFIX: &str = "/api/v1/orgs/{org}/projects/{project}/environments/{env}";

/// The audit of a matched route; None = a route without an entry (a bug).
pub fn route_audit(method: &Method, path: &str) -> Option<RouteAudit> {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    if let Some(rest) = path.strip_prefix(ENV_PREFIX) {
        return ENV_ROUTES
            .iter()
            .find(|r| r.method == method && r.path == rest)
            .map(|r| Action(r.action()));
    }
    ROUTE_ACTIONS
        .iter()
        .find(|(m, p, _)| (*m == method || *m == "*") && *p == path)
        .map(|(_, _, a)| *a)
}

/// What handlers add to their request's record.
#[derive(Debug, Default)]
struct Note {
    actor: Option<Actor>,
    action: Option<&'static str>,
    values: u64,
}

/// The request's audit note, shared between the layer and the handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditNote(Arc<Mutex<Note>>);

impl AuditNote {
    fn with(&self, f: impl FnOnce(&mut Note)) {
        if let Ok(mut n) = self.0.lock() {
            f(&mut n);
        }
    }

    /// The authenticated caller.
    pub(crate) fn principal(&self, p: &Principal) {
        self.with(|n| n.actor = Some(Actor::of(p)));
    }

    /// The account a login tried (no principal exists yet).
    pub(crate) fn tried(&self, name: &str) {
        let name = name.chars().take(256).collect();
        self.with(|n| {
            n.actor.get_or_insert_with(|| Actor {
                kind: crate::service::PrincipalKind::ANONYMOUS,
                name,
                accessor: String::new(),
            });
        });
    }

    /// A finer action than the route's (e.g. `secret.create` for a write
    /// that made the first version).
    pub(crate) fn action(&self, action: &'static str) {
        self.with(|n| n.action = Some(action));
    }

    /// Plaintext values the response carries.
    pub(crate) fn values(&self, count: usize) {
        self.with(|n| n.values = count as u64);
    }

    fn take(&self) -> Note {
        self.0.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditNote {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<AuditNote>().cloned().unwrap_or_default())
    }
}

/// The organization slug of a native path or of a KV path
/// (`/v1/secret/<op>/<org>/…`).
fn org_of(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v1/secret/") {
        return rest.split('/').nth(1).unwrap_or("");
    }
    path.strip_prefix("/api/v1/orgs/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
}

fn outcome_of(status: StatusCode) -> Outcome {
    match status.as_u16() {
        0..=399 => Outcome::Allowed,
        401 | 403 | 429 => Outcome::Denied,
        _ => Outcome::Error,
    }
}

/// The audit layer (see the module docs).
pub(crate) async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        // No route matched: the fallback answers 404/503 and touches nothing.
        return next.run(req).await;
    };
    let method = req.method().clone();
    let vault = path.starts_with("/v1/");
    let mut action = match route_audit(&method, &path) {
        Some(Public) => return next.run(req).await,
        Some(Action(a)) => a,
        Some(Kv) => super::vault_kv::audit_action(
            &method,
            req.uri().path_and_query().map_or(req.uri().path(), |pq| pq.as_str()),
        ),
        None => {
            tracing::error!(%method, %path, "route has no audit action; refusing to serve it unaudited");
            let e = ServiceError::Internal(format!("route {method} {path} has no audit action"));
            return if vault {
                VaultError(e).into_response()
            } else {
                ApiError(e).into_response()
            };
        }
    };
    let note = AuditNote::default();
    req.extensions_mut().insert(note.clone());
    let request_id = req
        .extensions()
        .get::<crate::ops::RequestId>()
        .map_or_else(crate::ops::fresh_request_id, |r| r.0.clone());
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_default();
    let cert_spki = req
        .extensions()
        .get::<PeerCert>()
        .map(|c| c.0.spki_sha256.clone())
        .unwrap_or_default();
    let resource = req.uri().path().to_owned();
    let reveal = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "reveal=true"));
    if action == "secret.read" && reveal {
        action = "secret.reveal";
    }

    let res = next.run(req).await;

    let status = res.status();
    let outcome = outcome_of(status);
    let mut n = note.take();
    if action == "secret.reveal" && outcome == Outcome::Allowed {
        n.values = 1;
    }
    let ev = AuditEvent {
        request_id,
        actor: n.actor.unwrap_or_default(),
        cert_spki,
        source,
        method: method.to_string(),
        action: n.action.unwrap_or(action).to_owned(),
        org: org_of(&resource).to_owned(),
        resource,
        outcome,
        status: status.as_u16(),
        reason: res
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.0)
            .unwrap_or("")
            .to_owned(),
        values: n.values,
    };
    if let Err(e) = state.coffer.audit(ev).await {
        // Fail closed: the response (a value, a token) is dropped.
        return if vault {
            VaultError(e).into_response()
        } else {
            ApiError(e).into_response()
        };
    }
    res
}

/// `GET /api/v1/audit/records` query.
#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    org: Option<String>,
    outcome: Option<String>,
    /// RFC 3339 or unix ms
    since: Option<String>,
    /// RFC 3339 or unix ms
    until: Option<String>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}

fn time_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ServiceError> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| {
            ServiceError::Invalid(format!(
                "{name} must be RFC 3339 (2026-01-31T00:00:00Z) or unix milliseconds"
            ))
        })
}

pub(super) async fn search(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<SearchQuery>,
) -> Reply<impl serde::Serialize> {
    if let Some(o) = &q.outcome
        && !matches!(o.as_str(), "allowed" | "denied" | "error")
    {
        return Err(ServiceError::Invalid("outcome must be allowed, denied or error".into()).into());
    }
    let f = AuditFilter {
        since: time_param("since", q.since.as_deref())?,
        until: time_param("until", q.until.as_deref())?,
        actor: q.actor,
        action: q.action,
        resource: q.resource,
        org: q.org,
        outcome: q.outcome,
        after_seq: q.after_seq,
        limit: q.limit.unwrap_or(1_000),
    };
    ok(s.coffer.audit_search(&who, f).await?)
}

pub(super) async fn verify(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl serde::Serialize> {
    ok(s.coffer.audit_verify(&who).await?)
}

#[derive(Debug, Deserialize)]
pub(super) struct Prune {
    through_seq: i64,
}

pub(super) async fn prune(
    State(s): State<AppState>,
    Auth(who): Auth,
    Body(b): Body<Prune>,
) -> Reply<impl serde::Serialize> {
    ok(s.coffer.audit_prune(&who, b.through_seq).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_routes_and_heads_resolve() {
        assert_eq!(
            route_audit(&Method::GET, &format!("{ENV_PREFIX}/secrets/{{key}}")),
            Some(Action("secret.read"))
        );
        assert_eq!(route_audit(&Method::HEAD, "/v1/sys/health"), Some(Public));
        assert_eq!(route_audit(&Method::PATCH, "/api/v1/orgs"), None);
    }

    #[test]
    fn every_env_route_has_an_action() {
        for r in ENV_ROUTES {
            assert_ne!(r.action(), "env.unknown", "{} {} has no action", r.method, r.path);
        }
    }

    #[test]
    fn org_is_read_from_native_and_kv_paths() {
        assert_eq!(org_of("/api/v1/orgs/acme/projects"), "acme");
        assert_eq!(org_of("/v1/secret/data/acme/api/prod/K"), "acme");
        assert_eq!(route_audit(&Method::PATCH, "/v1/secret/{*rest}"), Some(Kv));
        assert_eq!(org_of("/api/v1/orgs"), "");
        assert_eq!(org_of("/v1/sys/unseal"), "");
    }
}
