//! The workload-identity page of an organization (issue 19,
//! docs/jwt-auth.md), for its owners and admins: the trusted JWT/OIDC
//! issuers (where their keys come from, when this server last fetched
//! them) and the roles (bound claims, audience, TTL, service account);
//! forms to add an issuer (discovery URL, JWKS URL or a static JWKS, with
//! the GitHub/GitLab presets) and a role; Remove with a confirmation. A
//! refusal shows the service's message. Every POST goes through
//! `SessionForm` (CSRF). Thin: one service call per handler.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{Viewer, crumbs, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, html as page, see_other, seg};
use crate::http::AppState;
use crate::service::ServiceError;
use crate::service::jwt_auth::{IssuerInput, IssuerView, Patterns, RoleInput, RoleView, TtlInput};

/// The add-issuer form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct IssuerForm {
    name: String,
    preset: String,
    issuer: String,
    /// discovery | jwks_url | static
    source: String,
    url: String,
    jwks: String,
}

/// The add-role form; `bound_claims` is one `claim=pattern` a line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoleForm {
    name: String,
    issuer: String,
    audience: String,
    bound_claims: String,
    service_account: String,
    max_ttl: String,
}

/// A removal: `confirm=yes` (the "I understand" box).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RemoveForm {
    confirm: String,
}

fn base(org: &str) -> String {
    format!("/ui/orgs/{}/jwt", seg(org))
}

fn unconfirmed() -> ServiceError {
    ServiceError::Invalid("tick \"I understand\" to confirm the removal".into())
}

/// `GET /ui/orgs/{org}/jwt`
pub(crate) async fn page_get(State(s): State<AppState>, user: UiUser, Path(org): Path<String>) -> Response {
    render(&s, &user, &org, None).await
}

async fn render(s: &AppState, user: &UiUser, org: &str, error: Option<&ServiceError>) -> Response {
    let lists = async {
        let issuers = s.coffer.jwt.list_issuers(&user.who, org).await?;
        let roles = s.coffer.jwt.list_roles(&user.who, org).await?;
        Ok::<_, ServiceError>((issuers, roles))
    };
    match lists.await {
        Ok((issuers, roles)) => {
            let described = error.map(crate::http::error::describe);
            page(
                described.as_ref().map_or(StatusCode::OK, |(st, _, _)| *st),
                jwt_page(
                    &user.viewer(),
                    org,
                    &issuers,
                    &roles,
                    described.as_ref().map(|(_, _, m)| m.as_str()),
                ),
            )
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn issuer_input(f: &IssuerForm) -> Result<IssuerInput, ServiceError> {
    let (mut discovery_url, mut jwks_url, mut jwks) = (None, None, None);
    match f.source.as_str() {
        "" | "discovery" => discovery_url = some(&f.url),
        "jwks_url" => {
            jwks_url = Some(some(&f.url).ok_or_else(|| ServiceError::Invalid("the JWKS URL is required".into()))?);
        }
        "static" => {
            let doc = serde_json::from_str(f.jwks.trim())
                .map_err(|e| ServiceError::Invalid(format!("the static JWKS is not JSON: {e}")))?;
            jwks = Some(doc);
        }
        other => {
            return Err(ServiceError::Invalid(format!(
                "key source {other:?} is unknown; use discovery, jwks_url or static"
            )));
        }
    }
    Ok(IssuerInput {
        name: f.name.clone(),
        preset: some(&f.preset),
        issuer: some(&f.issuer),
        discovery_url,
        jwks_url,
        jwks,
    })
}

fn role_input(f: &RoleForm) -> Result<RoleInput, ServiceError> {
    let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, line) in f.bound_claims.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (claim, pattern) = line.split_once('=').ok_or_else(|| {
            ServiceError::Invalid(format!(
                "bound claims line {}: write claim=pattern (e.g. repository=acme/api)",
                n + 1
            ))
        })?;
        bound
            .entry(claim.trim().to_owned())
            .or_default()
            .push(pattern.trim().to_owned());
    }
    Ok(RoleInput {
        name: f.name.clone(),
        issuer: f.issuer.clone(),
        audience: f.audience.clone(),
        bound_claims: bound.into_iter().map(|(k, v)| (k, Patterns::Many(v))).collect(),
        service_account: f.service_account.clone(),
        max_ttl: some(&f.max_ttl).map(TtlInput::Text),
    })
}

/// `POST /ui/orgs/{org}/jwt/issuers`
pub(crate) async fn add_issuer(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<IssuerForm>,
) -> Response {
    let res = match issuer_input(&f) {
        Ok(input) => s.coffer.jwt.add_issuer(&user.who, &org, input).await.map(|_| ()),
        Err(e) => Err(e),
    };
    done(&s, &user, &org, res, "#issuers").await
}

/// `POST /ui/orgs/{org}/jwt/issuers/{name}/remove` (with `confirm=yes`)
pub(crate) async fn remove_issuer(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<RemoveForm>,
) -> Response {
    let res = if f.confirm == "yes" {
        s.coffer.jwt.remove_issuer(&user.who, &org, &name).await
    } else {
        Err(unconfirmed())
    };
    done(&s, &user, &org, res, "#issuers").await
}

/// `POST /ui/orgs/{org}/jwt/roles`
pub(crate) async fn add_role(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<RoleForm>,
) -> Response {
    let res = match role_input(&f) {
        Ok(input) => s.coffer.jwt.add_role(&user.who, &org, input).await.map(|_| ()),
        Err(e) => Err(e),
    };
    done(&s, &user, &org, res, "#roles").await
}

/// `POST /ui/orgs/{org}/jwt/roles/{name}/remove` (with `confirm=yes`)
pub(crate) async fn remove_role(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<RemoveForm>,
) -> Response {
    let res = if f.confirm == "yes" {
        s.coffer.jwt.remove_role(&user.who, &org, &name).await
    } else {
        Err(unconfirmed())
    };
    done(&s, &user, &org, res, "#roles").await
}

/// Back to the page after a change; a refusal: the page with its message
/// (a caller who may not even list: the error page).
async fn done(s: &AppState, user: &UiUser, org: &str, res: Result<(), ServiceError>, anchor: &str) -> Response {
    match res {
        Ok(()) => see_other(&format!("{}{anchor}", base(org))),
        Err(e @ ServiceError::PermissionDenied) => error_page(Some(&user.viewer()), &e),
        Err(e) => render(s, user, org, Some(&e)).await,
    }
}

fn source_of(i: &IssuerView) -> Markup {
    html! {
        @match i.source {
            "static" => { "static JWKS (" (i.static_kids.join(", ")) ")" }
            "jwks_url" => { "JWKS URL " code { (i.jwks_url.as_deref().unwrap_or("")) } }
            _ => { "discovery " code { (i.discovery_url.as_deref().unwrap_or("")) } }
        }
    }
}

fn jwt_page(viewer: &Viewer<'_>, org: &str, issuers: &[IssuerView], roles: &[RoleView], error: Option<&str>) -> Markup {
    let base = base(org);
    layout(
        "Workload identity",
        Some(viewer),
        html! {
            (crumbs(Some(org), None))
            h1 { "Workload identity (JWT/OIDC) of " code { (org) } }
            p { "CI jobs trade their platform's ID token for a short-lived token of a service account: "
                code { "coffer login --jwt \"$ID_TOKEN\" --role deploy" } ". No stored credential." }
            (error_line(error))
            section #issuers {
                h2 { "Trusted issuers" }
                @if issuers.is_empty() {
                    p.muted #no-issuers { "No issuer yet." }
                } @else {
                    div.table-wrap {
                        table #issuer-table {
                            thead { tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Issuer (iss)" }
                                th scope="col" { "Preset" }
                                th scope="col" { "Keys from" }
                                th scope="col" { "Last key fetch" }
                                th scope="col" { span.muted { "Actions" } }
                            } }
                            tbody {
                                @for i in issuers {
                                    tr data-issuer=(i.name) {
                                        th scope="row" { code { (i.name) } }
                                        td { code { (i.issuer) } }
                                        td { (i.preset) }
                                        td.source { (source_of(i)) }
                                        td.fetched {
                                            @if i.source == "static" { span.muted { "static" } }
                                            @else { (i.last_key_fetch.as_deref().unwrap_or("not since this server started")) }
                                        }
                                        td.actions {
                                            form.inline.remove-issuer method="post" action={ (base) "/issuers/" (seg(&i.name)) "/remove" } {
                                                (csrf_field(viewer.csrf))
                                                label.check { input type="checkbox" name="confirm" value="yes" required; " I understand" }
                                                button.danger type="submit" { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section #roles {
                h2 { "Roles" }
                @if roles.is_empty() {
                    p.muted #no-roles { "No role yet." }
                } @else {
                    div.table-wrap {
                        table #role-table {
                            thead { tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Issuer" }
                                th scope="col" { "Audience" }
                                th scope="col" { "Bound claims" }
                                th scope="col" { "TTL (s)" }
                                th scope="col" { "Service account" }
                                th scope="col" { span.muted { "Actions" } }
                            } }
                            tbody {
                                @for r in roles {
                                    tr data-role=(r.name) {
                                        th scope="row" { code { (r.name) } }
                                        td { (r.issuer) }
                                        td { code { (r.audience) } }
                                        td.claims {
                                            @for (claim, patterns) in &r.bound_claims {
                                                div { code { (claim) "=" (patterns.join(" | ")) } }
                                            }
                                        }
                                        td.ttl { (r.max_ttl) }
                                        td.sa { (r.service_account) }
                                        td.actions {
                                            form.inline.remove-role method="post" action={ (base) "/roles/" (seg(&r.name)) "/remove" } {
                                                (csrf_field(viewer.csrf))
                                                label.check { input type="checkbox" name="confirm" value="yes" required; " I understand" }
                                                button.danger type="submit" { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section #add-issuer {
                h2 { "Add an issuer" }
                form.card #issuer-form method="post" action={ (base) "/issuers" } {
                    (csrf_field(viewer.csrf))
                    label for="issuer-name" { "Name" }
                    input #issuer-name type="text" name="name" required maxlength="63";
                    label for="issuer-preset" { "Preset" }
                    select #issuer-preset name="preset" {
                        option value="github" { "GitHub Actions (iss https://token.actions.githubusercontent.com)" }
                        option value="gitlab" { "GitLab CI (iss https://gitlab.com, or your instance)" }
                        option value="generic" selected { "generic OIDC issuer" }
                    }
                    label for="issuer-iss" { "Issuer (the tokens' iss; empty: the preset's)" }
                    input #issuer-iss type="url" name="issuer" maxlength="500";
                    label for="issuer-source" { "Keys from" }
                    select #issuer-source name="source" {
                        option value="discovery" selected { "OIDC discovery (empty URL: <issuer>/.well-known/openid-configuration)" }
                        option value="jwks_url" { "a JWKS URL" }
                        option value="static" { "a static JWKS (pasted below)" }
                    }
                    label for="issuer-url" { "Discovery or JWKS URL" }
                    input #issuer-url type="url" name="url" maxlength="2000";
                    label for="issuer-jwks" { "Static JWKS (JSON, public keys only)" }
                    textarea #issuer-jwks name="jwks" rows="4" maxlength="65536" {}
                    button type="submit" { "Add issuer" }
                }
            }
            section #add-role {
                h2 { "Add a role" }
                form.card #role-form method="post" action={ (base) "/roles" } {
                    (csrf_field(viewer.csrf))
                    label for="role-name" { "Name" }
                    input #role-name type="text" name="name" required maxlength="63";
                    label for="role-issuer" { "Issuer" }
                    select #role-issuer name="issuer" required {
                        @for i in issuers { option value=(i.name) { (i.name) " (" (i.preset) ")" } }
                    }
                    label for="role-audience" { "Audience (the aud the tokens must carry)" }
                    input #role-audience type="text" name="audience" required maxlength="500";
                    label for="role-claims" { "Bound claims, one claim=pattern a line (exact, or * glob)" }
                    textarea #role-claims name="bound_claims" rows="4" maxlength="8000"
                        placeholder="repository=acme/api\nref=refs/heads/main\nenvironment=production" {}
                    details {
                        summary { "Presets" }
                        p { "GitHub Actions issuers: bind " code { "repository" } ", " code { "repository_owner" } ", "
                            code { "sub" } " or " code { "job_workflow_ref" } " (one is required), and e.g. "
                            code { "ref=refs/heads/main" } ", " code { "environment=production" } "." }
                        p { "GitLab CI issuers: bind " code { "project_path" } ", " code { "namespace_path" } " or "
                            code { "sub" } " (one is required), and e.g. " code { "ref_protected=true" } ", "
                            code { "environment=production" } "." }
                    }
                    label for="role-sa" { "Service account" }
                    input #role-sa type="text" name="service_account" required maxlength="63";
                    label for="role-ttl" { "Token TTL (e.g. 15m; empty: 15 minutes)" }
                    input #role-ttl type="text" name="max_ttl" maxlength="16";
                    button type="submit" { "Add role" }
                }
            }
        },
    )
}
