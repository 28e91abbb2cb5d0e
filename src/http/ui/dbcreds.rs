//! The Database credentials page of an organization (issue 21,
//! docs/database-credentials.md), for its owners and admins: connections
//! (add with a write-only admin URL field, remove), roles (add dynamic or
//! static, remove, rotate now), and the active leases (username, role,
//! expiry, Revoke each, revoke by prefix with a confirmation). The admin URL
//! is never shown back, not even after a refused save. Every POST goes
//! through `SessionForm` (CSRF); a refusal shows the service's message.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::pages::{Viewer, crumbs, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, html as page, see_other, seg};
use crate::http::AppState;
use crate::service::ServiceError;
use crate::service::dbcreds::{ConnectionInput, ConnectionView, LeaseView, RoleInput, RoleView};

/// The add-connection form. `url` holds the admin password: no Debug.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConnectionForm {
    name: String,
    url: Zeroizing<String>,
    project: String,
    environment: String,
}

/// The add-role form (dynamic or static fields by `kind`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoleForm {
    name: String,
    connection: String,
    kind: String,
    defaults: String,
    default_ttl: String,
    max_ttl: String,
    username: String,
    secret_key: String,
    rotation_period: String,
}

/// One lease to revoke.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseForm {
    lease_id: String,
}

/// Revocation by prefix: `confirm=yes` (the checkbox) is required.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PrefixForm {
    prefix: String,
    confirm: String,
}

fn base(org: &str) -> String {
    format!("/ui/orgs/{}/database", seg(org))
}

/// `GET /ui/orgs/{org}/database`
pub(crate) async fn page_get(State(s): State<AppState>, user: UiUser, Path(org): Path<String>) -> Response {
    render(&s, &user, &org, None, None).await
}

async fn render(
    s: &AppState,
    user: &UiUser,
    org: &str,
    notice: Option<&str>,
    error: Option<(StatusCode, &str)>,
) -> Response {
    let svc = &s.coffer.dbcreds;
    let loaded = async {
        Ok::<_, ServiceError>((
            svc.list_connections(&user.who, org).await?,
            svc.list_roles(&user.who, org).await?,
            svc.list_leases(&user.who, org).await?,
        ))
    }
    .await;
    match loaded {
        Ok((conns, roles, leases)) => page(
            error.map_or(StatusCode::OK, |(st, _)| st),
            db_page(
                &user.viewer(),
                org,
                (&conns, &roles, &leases),
                notice,
                error.map(|(_, m)| m),
            ),
        ),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// After a POST: back to the page, or the page again with the refusal.
async fn done(s: &AppState, user: &UiUser, org: &str, out: Result<Option<String>, ServiceError>) -> Response {
    match out {
        Ok(None) => see_other(&base(org)),
        Ok(Some(notice)) => render(s, user, org, Some(&notice), None).await,
        Err(e) => {
            let (status, _, message) = crate::http::error::describe(&e);
            render(s, user, org, None, Some((status, &message))).await
        }
    }
}

/// Seconds from a form field: empty is absent.
fn seconds(field: &str, v: &str) -> Result<Option<i64>, ServiceError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<i64>()
        .map(Some)
        .map_err(|_| ServiceError::Invalid(format!("{field}: {v:?} is not a whole number of seconds")))
}

fn opt(v: String) -> Option<String> {
    let v = v.trim().to_owned();
    (!v.is_empty()).then_some(v)
}

/// `POST /ui/orgs/{org}/database/connections`
pub(crate) async fn add_connection(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<ConnectionForm>,
) -> Response {
    let input = ConnectionInput {
        name: f.name.trim().to_owned(),
        url: f.url,
        username: None,
        password: None,
        project: f.project.trim().to_owned(),
        environment: f.environment.trim().to_owned(),
    };
    let out = s.coffer.dbcreds.create_connection(&user.who, &org, input).await;
    done(
        &s,
        &user,
        &org,
        out.map(|c| Some(format!("Connection {} added ({}).", c.name, c.url))),
    )
    .await
}

/// `POST /ui/orgs/{org}/database/connections/{name}/remove`
pub(crate) async fn remove_connection(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    let out = s.coffer.dbcreds.delete_connection(&user.who, &org, &name).await;
    done(&s, &user, &org, out.map(|()| None)).await
}

/// `POST /ui/orgs/{org}/database/roles`
pub(crate) async fn add_role(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<RoleForm>,
) -> Response {
    let out = async {
        let dynamic = f.kind != "static";
        let input = RoleInput {
            name: f.name.trim().to_owned(),
            connection: f.connection.trim().to_owned(),
            kind: Some(if dynamic { "dynamic" } else { "static" }.to_owned()),
            defaults: if dynamic { opt(f.defaults) } else { None },
            creation_sql: None,
            revocation_sql: None,
            default_ttl: if dynamic { seconds("TTL", &f.default_ttl)? } else { None },
            max_ttl: if dynamic { seconds("max TTL", &f.max_ttl)? } else { None },
            username: if dynamic { None } else { opt(f.username) },
            secret_key: if dynamic { None } else { opt(f.secret_key) },
            rotation_period: if dynamic {
                None
            } else {
                seconds("rotation period", &f.rotation_period)?
            },
        };
        s.coffer.dbcreds.create_role(&user.who, &org, input).await
    }
    .await;
    done(&s, &user, &org, out.map(|r| Some(format!("Role {} added.", r.name)))).await
}

/// `POST /ui/orgs/{org}/database/roles/{name}/remove`
pub(crate) async fn remove_role(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    let out = s.coffer.dbcreds.delete_role(&user.who, &org, &name).await;
    done(&s, &user, &org, out.map(|()| None)).await
}

/// `POST /ui/orgs/{org}/database/roles/{name}/rotate`
pub(crate) async fn rotate_role(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    let out = s.coffer.dbcreds.rotate(&user.who, &org, &name).await;
    done(
        &s,
        &user,
        &org,
        out.map(|r| {
            Some(format!(
                "Role {} rotated: secret {} is now version {}.",
                r.role, r.secret_key, r.version
            ))
        }),
    )
    .await
}

/// The lease (or prefix) must be of this organization.
fn of_org(org: &str, id: &str) -> Result<(), ServiceError> {
    if crate::service::dbcreds::lease_org(id)? == org {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "lease {id:?} is not of organization {org}"
        )))
    }
}

/// `POST /ui/orgs/{org}/database/leases/revoke`
pub(crate) async fn revoke_lease(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<LeaseForm>,
) -> Response {
    let out = async {
        of_org(&org, &f.lease_id)?;
        s.coffer.dbcreds.revoke(&user.who, &f.lease_id).await
    }
    .await;
    done(
        &s,
        &user,
        &org,
        out.map(|()| Some(format!("Lease {} revoked.", f.lease_id))),
    )
    .await
}

/// `POST /ui/orgs/{org}/database/leases/revoke-prefix`
pub(crate) async fn revoke_prefix(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<PrefixForm>,
) -> Response {
    let out = async {
        if f.confirm != "yes" {
            return Err(ServiceError::Invalid(
                "check the confirmation box: every active lease under the prefix is revoked at once".into(),
            ));
        }
        of_org(&org, &f.prefix)?;
        s.coffer.dbcreds.revoke_prefix(&user.who, &f.prefix).await
    }
    .await;
    let out = out.and_then(|r| {
        if r.failed.is_empty() {
            Ok(Some(format!("{} leases under {} revoked.", r.revoked.len(), f.prefix)))
        } else {
            Err(ServiceError::Conflict(format!(
                "{} leases revoked, {} not (the expiry job retries them)",
                r.revoked.len(),
                r.failed.len()
            )))
        }
    });
    done(&s, &user, &org, out).await
}

/// The role name of a lease id `database/creds/<org>/<role>/<id>`.
fn lease_role(id: &str) -> &str {
    id.split('/').nth(3).unwrap_or("")
}

fn db_page(
    viewer: &Viewer<'_>,
    org: &str,
    (conns, roles, leases): (&[ConnectionView], &[RoleView], &[LeaseView]),
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let base = base(org);
    let active: Vec<&LeaseView> = leases.iter().filter(|l| l.status == "active").collect();
    layout(
        "Database credentials",
        Some(viewer),
        html! {
            (crumbs(Some(org), None))
            h1 { "Database credentials of " code { (org) } }
            p { "Short-lived PostgreSQL users per lease, and scheduled password rotation of existing users. "
                "Admin URLs are sealed and never shown again." }
            (error_line(error))
            @if let Some(n) = notice { p.notice #db-notice role="status" { (n) } }
            section #db-connections {
                h2 { "Connections" }
                @if conns.is_empty() {
                    p.muted #no-connections { "No connection yet." }
                } @else {
                    div.table-wrap { table #connection-table {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Database" } th scope="col" { "Environment" }
                            th scope="col" { "Added" } th scope="col" { span.muted { "Actions" } }
                        } }
                        tbody { @for c in conns {
                            tr data-connection=(c.name) {
                                th scope="row" { code { (c.name) } }
                                td { code { (c.url) } }
                                td { code { (c.project) "/" (c.environment) } }
                                td { (c.created_by) " " time datetime=(c.created_at) { (c.created_at) } }
                                td.actions {
                                    form.inline method="post" action={ (base) "/connections/" (seg(&c.name)) "/remove" } {
                                        (csrf_field(viewer.csrf))
                                        button.danger.remove-connection type="submit" { "Remove" }
                                    }
                                }
                            }
                        } }
                    } }
                }
                form.card #connection-form method="post" action={ (base) "/connections" } {
                    (csrf_field(viewer.csrf))
                    h3 { "Add a connection" }
                    label for="conn-name" { "Name" }
                    input #conn-name type="text" name="name" required maxlength="64";
                    label for="conn-url" { "Admin URL (postgres://user:password@host:port/db; write-only, verified before saving)" }
                    input #conn-url type="password" name="url" required autocomplete="off" spellcheck="false";
                    label for="conn-project" { "Project" }
                    input #conn-project type="text" name="project" required;
                    label for="conn-env" { "Environment (whoever may reveal there may take credentials)" }
                    input #conn-env type="text" name="environment" required;
                    button type="submit" { "Add connection" }
                }
            }
            section #db-roles {
                h2 { "Roles" }
                @if roles.is_empty() {
                    p.muted #no-roles { "No role yet." }
                } @else {
                    div.table-wrap { table #role-table {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Connection" }
                            th scope="col" { "Details" } th scope="col" { span.muted { "Actions" } }
                        } }
                        tbody { @for r in roles {
                            tr data-role=(r.name) {
                                th scope="row" { code { (r.name) } }
                                td.kind { (r.kind) }
                                td { code { (r.connection) } }
                                td {
                                    @if r.kind == "static" {
                                        "user " code { (r.username) } ", secret " code { (r.secret_key) } ", "
                                        @if r.rotation_period > 0 { "every " (r.rotation_period) " s, next " (r.next_rotation.as_deref().unwrap_or("")) }
                                        @else { "on demand" }
                                    } @else {
                                        "TTL " (r.default_ttl) " s, max " (r.max_ttl) " s"
                                    }
                                }
                                td.actions {
                                    @if r.kind == "static" {
                                        form.inline method="post" action={ (base) "/roles/" (seg(&r.name)) "/rotate" } {
                                            (csrf_field(viewer.csrf))
                                            button.rotate-role type="submit" { "Rotate now" }
                                        }
                                    }
                                    form.inline method="post" action={ (base) "/roles/" (seg(&r.name)) "/remove" } {
                                        (csrf_field(viewer.csrf))
                                        button.danger.remove-role type="submit" { "Remove" }
                                    }
                                }
                            }
                        } }
                    } }
                }
                form.card #dynamic-role-form method="post" action={ (base) "/roles" } {
                    (csrf_field(viewer.csrf))
                    h3 { "Add a dynamic role" }
                    input type="hidden" name="kind" value="dynamic";
                    label for="dyn-name" { "Name" }
                    input #dyn-name type="text" name="name" required maxlength="64";
                    label for="dyn-connection" { "Connection" }
                    select #dyn-connection name="connection" required {
                        @for c in conns { option value=(c.name) { (c.name) } }
                    }
                    label for="dyn-defaults" { "Grants" }
                    select #dyn-defaults name="defaults" {
                        option value="read-only" selected { "read-only (SELECT on public)" }
                        option value="read-write" { "read-write (DML and sequences on public)" }
                    }
                    label for="dyn-ttl" { "TTL, seconds (default 3600)" }
                    input #dyn-ttl type="number" name="default_ttl" min="1";
                    label for="dyn-max" { "Max TTL, seconds (default 86400)" }
                    input #dyn-max type="number" name="max_ttl" min="1";
                    button type="submit" { "Add dynamic role" }
                }
                form.card #static-role-form method="post" action={ (base) "/roles" } {
                    (csrf_field(viewer.csrf))
                    h3 { "Add a static role" }
                    input type="hidden" name="kind" value="static";
                    label for="st-name" { "Name" }
                    input #st-name type="text" name="name" required maxlength="64";
                    label for="st-connection" { "Connection" }
                    select #st-connection name="connection" required {
                        @for c in conns { option value=(c.name) { (c.name) } }
                    }
                    label for="st-user" { "Existing database user" }
                    input #st-user type="text" name="username" required maxlength="63";
                    label for="st-key" { "Secret key of its password (in the connection's environment)" }
                    input #st-key type="text" name="secret_key" required;
                    label for="st-period" { "Rotation period, seconds (0 or empty: on demand)" }
                    input #st-period type="number" name="rotation_period" min="0";
                    button type="submit" { "Add static role (rotates now)" }
                }
            }
            section #db-leases {
                h2 { "Active leases" }
                @if active.is_empty() {
                    p.muted #no-leases { "No active lease." }
                } @else {
                    div.table-wrap { table #lease-table {
                        thead { tr {
                            th scope="col" { "Username" } th scope="col" { "Role" } th scope="col" { "Expires" }
                            th scope="col" { "Lease id" } th scope="col" { span.muted { "Actions" } }
                        } }
                        tbody { @for l in &active {
                            tr data-lease=(l.lease_id) data-username=(l.username) {
                                th scope="row" { code.lease-user { (l.username) } }
                                td { code { (lease_role(&l.lease_id)) } }
                                td { time datetime=(l.expires_at) { (l.expires_at) } " (" (l.lease_duration) " s)"
                                    @if let Some(e) = &l.last_error { br; span.error { "revocation failed: " (e) } } }
                                td { code { (l.lease_id) } }
                                td.actions {
                                    form.inline method="post" action={ (base) "/leases/revoke" } {
                                        (csrf_field(viewer.csrf))
                                        input type="hidden" name="lease_id" value=(l.lease_id);
                                        button.danger.revoke-lease type="submit" { "Revoke" }
                                    }
                                }
                            }
                        } }
                    } }
                }
                form.card #revoke-prefix-form method="post" action={ (base) "/leases/revoke-prefix" } {
                    (csrf_field(viewer.csrf))
                    h3 { "Revoke by prefix (incident response)" }
                    label for="prefix" { "Prefix: a role (database/creds/" (org) "/ROLE) or the whole organization" }
                    input #prefix type="text" name="prefix" required value={ "database/creds/" (org) "/" };
                    label.check { input #prefix-confirm type="checkbox" name="confirm" value="yes" required;
                        " Revoke every active lease under this prefix now (their database users are dropped)" }
                    button.danger #revoke-prefix type="submit" { "Revoke by prefix" }
                }
            }
        },
    )
}
