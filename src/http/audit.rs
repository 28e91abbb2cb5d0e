//! The audit layer and the audit API.
//!
//! Every route is either public (health, seal status: no record) or has an
//! action in the route table (`routes.rs`, environment routes: the access
//! table); the layer records every request to an audited route — allowed,
//! denied or failed — and lets the response leave only after the record is
//! committed; a mutation is announced by a write-ahead record committed
//! before its handler runs (see [`layer`]). Action, organization and value
//! count come from the decoded request and the handler, never from the raw
//! URI. A method a route does not serve answers 405 with `Allow` (OPTIONS:
//! 204), unrecorded. The router is built from the same tables, so no route
//! serves without an audit entry; the integration test `audit_routes` walks
//! them.
//!
//! Handlers and extractors add what only they know through the request's
//! [`AuditNote`]: the authenticated actor (set by authentication), the name
//! a failed login tried, a finer action, the number of values revealed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Query, RawPathParams, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::api::{Reply, ok};
use super::error::{ApiError, ErrorCode, VaultError};
use super::extract::{Auth, Body, PeerCert};
use super::routes::RouteAudit::{self, Action, Kv, Public};
use super::routes::{allow_header, route_audit};
use crate::service::audit::{Actor, AuditEvent, AuditQuery, Outcome};
use crate::service::{Principal, ServiceError};

/// What handlers add to their request's record.
#[derive(Debug, Default)]
struct Note {
    actor: Option<Actor>,
    action: Option<&'static str>,
    values: u64,
    /// organization slug the handler resolved (a route without `{org}`)
    org: Option<String>,
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

    /// The account a login tried (no principal exists yet). Recorded only
    /// when it is a syntactically valid address: a password typed into the
    /// name field must not stay in an append-only log.
    pub(crate) fn tried(&self, name: &str) {
        let name = login_name(name);
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

    /// A JWT login (issue 19): the role, issuer and verified `sub` as
    /// the actor's name (never the token), the account it acted as when it
    /// succeeded, and the organization resolved from the role.
    pub(crate) fn jwt_login(&self, attempt: &crate::service::jwt_auth::JwtAttempt, accessor: Option<&str>) {
        let name = attempt.describe();
        let org = attempt.org.clone();
        self.with(|n| {
            n.actor = Some(Actor {
                kind: if accessor.is_some() {
                    "service_account"
                } else {
                    crate::service::PrincipalKind::ANONYMOUS
                },
                name,
                accessor: accessor.unwrap_or_default().to_owned(),
            });
            n.org = org;
        });
    }

    /// Plaintext values the response carries.
    pub(crate) fn values(&self, count: usize) {
        self.with(|n| n.values = count as u64);
    }

    fn take(&self) -> Note {
        self.0.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default()
    }
}

/// What a record keeps of the name a login tried: the address when it is
/// one (RFC 5321 sizes: ≤ 254 characters, local part ≤ 64, dot-atom local
/// part, a domain of at least two LDH labels), else only its length.
fn login_name(name: &str) -> String {
    fn atom(s: &str, ok: impl Fn(char) -> bool) -> bool {
        !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(&ok))
    }
    let valid = name.len() <= 254
        && name.split_once('@').is_some_and(|(local, domain)| {
            local.len() <= 64
                && atom(local, |c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
                })
                && domain.contains('.')
                && atom(domain, |c| c.is_ascii_alphanumeric() || c == '-')
                && domain
                    .split('.')
                    .all(|l| l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
        });
    if valid {
        name.to_owned()
    } else {
        format!("invalid ({} chars)", name.chars().count())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditNote {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<AuditNote>().cloned().unwrap_or_default())
    }
}

fn outcome_of(status: StatusCode) -> Outcome {
    match status.as_u16() {
        0..=399 => Outcome::Allowed,
        401 | 403 | 429 => Outcome::Denied,
        _ => Outcome::Error,
    }
}

/// Actions that change nothing: they are recorded once, after the handler,
/// at no extra cost. Every other action is a mutation and gets a
/// write-ahead record first (see [`layer`]).
pub(crate) fn reads_only(action: &str) -> bool {
    action.ends_with(".list")
        || action.ends_with(".read")
        || action.ends_with("_list")
        || action.ends_with("_status")
        || matches!(
            action,
            "secret.reveal"
                | "secret.inject"
                | "secret.history"
                | "secret.validate"
                | "env.diff"
                | "env.pull"
                | "env.file_diff"
                | "token.lookup"
                | "auth.whoami"
                | "audit.search"
                | "audit.verify"
                | "sys.mounts"
                | "backup.create"
        )
}

/// The action and organization of a request, from its decoded path
/// parameters and query — what the handler's own extractors will see — so
/// that no spelling of the URI (`%61cme`, `%64ata`, `re%76eal=%74rue`)
/// changes what the record says.
async fn resolve(state: &AppState, req: Request, template: &str, route: RouteAudit) -> Resolved {
    let (mut parts, body) = req.into_parts();
    // Decoded values, shared with the request (no copy of the strings).
    let params = RawPathParams::from_request_parts(&mut parts, state).await;
    let req = Request::from_parts(parts, body);
    let Ok(params) = params else {
        // Not UTF-8 once decoded: the handler's Path refuses it too.
        let action = match route {
            Action(a) => a,
            Kv | Public => "secret.unknown",
        };
        return Resolved {
            req,
            action,
            org: String::new(),
            resource: template.to_owned(),
        };
    };
    let param = |name: &str| params.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v);
    let resource = resource_of(template, param);
    let (action, org) = match route {
        Action(a) => (a, param("org").to_owned()),
        Kv => {
            let q = Query::<super::vault_kv::KvQuery>::try_from_uri(req.uri())
                .map(|Query(q)| q)
                .unwrap_or_default();
            super::vault_kv::kv_target(req.method(), param("rest"), &q)
        }
        Public => ("", String::new()),
    };
    let action = if action == "secret.read" && matches!(route, Action(_)) && super::api::reveal_requested(req.uri()) {
        "secret.reveal"
    } else {
        action
    };
    Resolved {
        req,
        action,
        org,
        resource,
    }
}

/// What [`resolve`] found.
struct Resolved {
    req: Request,
    action: &'static str,
    org: String,
    resource: String,
}

/// The path a record names: the route's template with the decoded
/// parameters in place, so every spelling of one path is recorded alike.
/// A Vault userpass login name goes through [`login_name`]: a password
/// typed as the name must not reach the log through the path either.
fn resource_of<'a>(template: &str, param: impl Fn(&str) -> &'a str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    for (i, seg) in template.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.trim_start_matches('*');
                if name == "user" {
                    out.push_str(&login_name(param(name)));
                } else {
                    out.push_str(param(name));
                }
            }
            None => out.push_str(seg),
        }
    }
    out
}

/// The audit layer (see the module docs).
///
/// A mutation (any action not in [`reads_only`]) is recorded twice: a
/// write-ahead record (outcome `begun`, status 0) is committed before the
/// handler runs — if that commit fails the request is refused with 503
/// `audit_unavailable` and the handler never runs — and the outcome record
/// after it, as for every request. So no change exists without a chained
/// record that announced it (docs/audit.md, "Mutations").
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        // No route matched: the fallback answers 404/503 and touches nothing.
        return next.run(req).await;
    };
    let method = req.method().clone();
    let vault = path.starts_with("/v1/");
    let fail = |e: ServiceError| {
        if vault {
            VaultError(e).into_response()
        } else {
            ApiError(e).into_response()
        }
    };
    let route = match route_audit(&method, &path) {
        Some(Public) => return next.run(req).await,
        Some(r) => r,
        // A method the route does not serve (every matched route is in the
        // tables): no handler runs, nothing is touched, and, like an
        // unmatched route, nothing is recorded.
        None => return super::error::method_refused(vault, &method, &allow_header(&path)),
    };
    let Resolved {
        mut req,
        action,
        org,
        resource,
    } = resolve(&state, req, &path, route).await;
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
    let mut ev = AuditEvent {
        request_id,
        actor: Actor::default(),
        cert_spki,
        source,
        method: method.to_string(),
        action: action.to_owned(),
        org,
        resource,
        outcome: Outcome::Begun,
        status: 0,
        reason: String::new(),
        values: 0,
    };
    if !reads_only(action)
        && let Err(e) = state.coffer.audit.audit(ev.clone()).await
    {
        // Nothing has happened yet, and nothing will.
        return fail(e);
    }

    let res = next.run(req).await;

    let status = res.status();
    let n = note.take();
    ev.actor = n.actor.unwrap_or_default();
    ev.action = n.action.unwrap_or(action).to_owned();
    if let Some(org) = n.org {
        ev.org = org;
    }
    ev.outcome = outcome_of(status);
    ev.status = status.as_u16();
    ev.reason = res
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0)
        .unwrap_or("")
        .to_owned();
    // Values count only when they left.
    ev.values = if ev.outcome == Outcome::Allowed { n.values } else { 0 };
    if let Err(e) = state.coffer.audit.audit(ev).await {
        // Fail closed: the response (a value, a token) is dropped.
        return fail(e);
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
        && !matches!(o.as_str(), "allowed" | "denied" | "error" | "begun")
    {
        return Err(ServiceError::Invalid("outcome must be allowed, denied, error or begun".into()).into());
    }
    let f = AuditQuery {
        since: time_param("since", q.since.as_deref())?,
        until: time_param("until", q.until.as_deref())?,
        actor: q.actor,
        action: q.action,
        resource: q.resource,
        org: q.org,
        outcome: q.outcome,
        after_seq: q.after_seq,
        limit: q.limit,
        ..AuditQuery::default()
    };
    ok(s.coffer.audit.audit_search(&who, f).await?)
}

pub(super) async fn verify(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl serde::Serialize> {
    ok(s.coffer.audit.audit_verify(&who).await?)
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
    ok(s.coffer.audit.audit_prune(&who, b.through_seq).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_records_an_address_or_only_a_length() {
        assert_eq!(login_name("ann@acme.test"), "ann@acme.test");
        assert_eq!(
            login_name("first.last+tag@mail.example.com"),
            "first.last+tag@mail.example.com"
        );
        for (typed, n) in [
            ("hunter2-Correct-Horse", 21),
            ("P@ssw0rd", 8),
            ("ann@acme.test correct horse", 27),
            ("ann@@acme.test", 14),
            ("ann@acme..test", 14),
            (".ann@acme.test", 14),
            ("ann@-acme.test", 14),
            ("", 0),
        ] {
            assert_eq!(login_name(typed), format!("invalid ({n} chars)"), "{typed}");
        }
        let long = format!("{}@{}.test", "a".repeat(64), "b".repeat(200));
        assert_eq!(login_name(&long), format!("invalid ({} chars)", long.len()));
        let local = format!("{}@acme.test", "a".repeat(65));
        assert_eq!(login_name(&local), "invalid (75 chars)");
    }

    #[test]
    fn resources_are_decoded_paths() {
        let p = |name: &str| match name {
            "org" => "acme",
            "rest" => "data/acme/api/production/K",
            "user" => "hunter2",
            _ => "",
        };
        assert_eq!(resource_of("/api/v1/orgs/{org}/keks", p), "/api/v1/orgs/acme/keks");
        assert_eq!(
            resource_of("/v1/secret/{*rest}", p),
            "/v1/secret/data/acme/api/production/K"
        );
        assert_eq!(
            resource_of("/v1/auth/userpass/login/{user}", p),
            "/v1/auth/userpass/login/invalid (7 chars)"
        );
    }

    #[test]
    fn reads_and_mutations() {
        for a in [
            "secret.reveal",
            "secret.inject",
            "secret.read",
            "secret.validate",
            "org.list",
            "key.kek_list",
            "seal.rekey_status",
        ] {
            assert!(reads_only(a), "{a}");
        }
        for a in [
            "secret.write",
            "secret.update",
            "auth.login",
            "seal.unseal_share",
            "secret.unknown",
            "token.create",
        ] {
            assert!(!reads_only(a), "{a}");
        }
    }
}
