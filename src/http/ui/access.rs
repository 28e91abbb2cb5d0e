//! The dashboard's Access pages (docs/dashboard.md): per organization its
//! members and roles, groups and service accounts; per environment the
//! grants matrix. The services decide (`AccessService`); these pages only
//! hide the controls their caller cannot use, and every POST checks the
//! session's CSRF token before anything runs. A new service-account token
//! is in the answer to the POST that made it, once (`no-store`), and in no
//! page after.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::pages::{crumbs, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, see_other, seg};
use crate::access::Permission;
use crate::http::AppState;
use crate::http::error::{ErrorCode, describe};
use crate::service::{
    CertMatch, GrantInput, GrantView, GroupView, MemberView, OrgStanding, ServiceAccountInput, ServiceAccountView,
    ServiceError,
};

/// What a page shows besides its data: an error of the POST before, or a
/// token made just now (shown once).
enum Flash {
    None,
    Error(StatusCode, &'static str, String),
    Token { account: String, token: Zeroizing<String> },
}

impl Flash {
    fn of(e: &ServiceError) -> Flash {
        let (status, code, message) = describe(e);
        Flash::Error(status, code, message)
    }

    fn status(&self) -> StatusCode {
        match self {
            Flash::Error(st, _, _) => *st,
            _ => StatusCode::OK,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Flash::Error(_, _, m) => Some(m),
            _ => None,
        }
    }

    fn respond(&self, page: Markup) -> Response {
        let mut res = (self.status(), page).into_response();
        if let Flash::Error(_, code, _) = self {
            res.extensions_mut().insert(ErrorCode(code));
        }
        res
    }
}

fn access_url(org: &str) -> String {
    format!("/ui/orgs/{}/access", seg(org))
}

/// The org's access page as `user` may see it.
async fn access_view(s: &AppState, user: &UiUser, org: &str, flash: Flash) -> Response {
    let loaded = async {
        let standing = s.coffer.access.standing(&user.who, org).await?;
        let members = s.coffer.access.list_members(&user.who, org).await?;
        let groups = s.coffer.access.list_groups(&user.who, org).await?;
        let breach = s.coffer.tenants.breach_policy(&user.who, org).await?;
        let accounts = if standing.admin {
            s.coffer.access.list_service_accounts(&user.who, org).await?
        } else {
            Vec::new()
        };
        Ok::<_, ServiceError>((standing, members, groups, accounts, breach))
    }
    .await;
    match loaded {
        Ok((standing, members, groups, accounts, breach)) => {
            let data = AccessData {
                org,
                standing,
                breach: (breach.block_breached_passwords, breach.check_enabled),
                members: &members,
                groups: &groups,
                accounts: &accounts,
            };
            flash.respond(access_page(user, &data, &flash))
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/orgs/{org}/access`.
pub(in crate::http) async fn access(State(s): State<AppState>, user: UiUser, Path(org): Path<String>) -> Response {
    access_view(&s, &user, &org, Flash::None).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct MemberForm {
    email: String,
    role: String,
}

/// `POST /ui/orgs/{org}/access/members`: add a member or change a role.
pub(in crate::http) async fn set_member(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<MemberForm>,
) -> Response {
    match s.coffer.access.set_member(&user.who, &org, &f.email, &f.role).await {
        Ok(_) => see_other(&access_url(&org)),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct BreachForm {
    /// "block" or "warn"
    mode: String,
}

/// `POST /ui/orgs/{org}/access/breach-policy`: refuse breached passwords
/// (`block`) or write them with a warning (`warn`); audited as
/// `org.breach_policy_set` like the API's PUT.
pub(in crate::http) async fn set_breach_policy(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<BreachForm>,
) -> Response {
    let block = match f.mode.as_str() {
        "block" => true,
        "warn" => false,
        other => {
            let e = ServiceError::Invalid(format!("breach policy mode must be block or warn, got {other:?}"));
            return access_view(&s, &user, &org, Flash::of(&e)).await;
        }
    };
    match s.coffer.tenants.set_breach_policy(&user.who, &org, block).await {
        Ok(_) => see_other(&format!("{}#breach-policy", access_url(&org))),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

/// `POST /ui/orgs/{org}/access/members/remove`.
pub(in crate::http) async fn remove_member(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<MemberForm>,
) -> Response {
    match s.coffer.access.remove_member(&user.who, &org, &f.email).await {
        Ok(()) => see_other(&access_url(&org)),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct NameForm {
    name: String,
}

/// `POST /ui/orgs/{org}/access/groups`: create a group.
pub(in crate::http) async fn create_group(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<NameForm>,
) -> Response {
    match s.coffer.access.create_group(&user.who, &org, f.name.trim()).await {
        Ok(_) => see_other(&access_url(&org)),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

/// `POST /ui/orgs/{org}/access/groups/{group}/members`.
pub(in crate::http) async fn add_group_member(
    State(s): State<AppState>,
    Path((org, group)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<MemberForm>,
) -> Response {
    match s
        .coffer
        .access
        .add_group_member(&user.who, &org, &group, &f.email)
        .await
    {
        Ok(()) => see_other(&access_url(&org)),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

/// `POST /ui/orgs/{org}/access/groups/{group}/members/remove`.
pub(in crate::http) async fn remove_group_member(
    State(s): State<AppState>,
    Path((org, group)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<MemberForm>,
) -> Response {
    match s
        .coffer
        .access
        .remove_group_member(&user.who, &org, &group, &f.email)
        .await
    {
        Ok(()) => see_other(&access_url(&org)),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct AccountForm {
    name: String,
    /// comma- or space-separated networks
    cidrs: String,
    spki_sha256: String,
    subject_cn: String,
    dns_san: String,
    /// hours; empty: no expiry
    ttl_hours: String,
}

pub(super) fn ttl_seconds(hours: &str) -> Result<Option<u64>, ServiceError> {
    let h = hours.trim();
    if h.is_empty() {
        return Ok(None);
    }
    h.parse::<u64>()
        .ok()
        .filter(|h| *h >= 1)
        .and_then(|h| h.checked_mul(3600))
        .map(Some)
        .ok_or_else(|| ServiceError::Invalid(format!("token lifetime must be a whole number of hours, got {h:?}")))
}

fn opt(v: &str) -> Option<String> {
    Some(v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `POST /ui/orgs/{org}/access/service-accounts`: create an account and
/// its first token, shown in this answer only.
pub(in crate::http) async fn create_service_account(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<AccountForm>,
) -> Response {
    let made = async {
        let ttl = ttl_seconds(&f.ttl_hours)?;
        let spki = opt(&f.spki_sha256);
        let certificate =
            (spki.is_some() || opt(&f.subject_cn).is_some() || opt(&f.dns_san).is_some()).then(|| CertMatch {
                spki_sha256: spki,
                subject_cn: opt(&f.subject_cn),
                dns_san: opt(&f.dns_san),
            });
        let input = ServiceAccountInput {
            name: f.name.trim().to_owned(),
            cidrs: f
                .cidrs
                .split([',', ' ', '\n', '\r', '\t'])
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            certificate,
        };
        let sa = s.coffer.access.create_service_account(&user.who, &org, input).await?;
        s.coffer
            .access
            .service_account_token(&user.who, &org, &sa.name, ttl, None)
            .await
            .map(|t| (sa.name, t))
    }
    .await;
    match made {
        Ok((account, issued)) => {
            access_view(
                &s,
                &user,
                &org,
                Flash::Token {
                    account,
                    token: issued.token,
                },
            )
            .await
        }
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

/// `POST /ui/orgs/{org}/access/service-accounts/{name}/tokens`: another
/// token for an account, shown in this answer only.
pub(in crate::http) async fn service_account_token(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<AccountForm>,
) -> Response {
    let issued = match ttl_seconds(&f.ttl_hours) {
        Ok(ttl) => {
            s.coffer
                .access
                .service_account_token(&user.who, &org, &name, ttl, None)
                .await
        }
        Err(e) => Err(e),
    };
    match issued {
        Ok(t) => {
            access_view(
                &s,
                &user,
                &org,
                Flash::Token {
                    account: name,
                    token: t.token,
                },
            )
            .await
        }
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

/// `POST /ui/orgs/{org}/access/service-accounts/{name}/delete`: the
/// account with its grants and tokens.
pub(in crate::http) async fn delete_service_account(
    State(s): State<AppState>,
    Path((org, name)): Path<(String, String)>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    match s.coffer.access.delete_service_account(&user.who, &org, &name).await {
        Ok(()) => see_other(&access_url(&org)),
        Err(e) => access_view(&s, &user, &org, Flash::of(&e)).await,
    }
}

struct AccessData<'a> {
    org: &'a str,
    standing: OrgStanding,
    /// the leaked-password policy: (block, whether this server checks)
    breach: (bool, bool),
    members: &'a [MemberView],
    groups: &'a [GroupView],
    accounts: &'a [ServiceAccountView],
}

fn role_select(id: &str, current: &str, owner: bool) -> Markup {
    html! {
        select id=(id) name="role" {
            @for r in ["member", "admin", "owner"] {
                @if r != "owner" || owner || current == "owner" {
                    option value=(r) selected[r == current] { (r) }
                }
            }
        }
    }
}

fn access_page(user: &UiUser, d: &AccessData<'_>, flash: &Flash) -> Markup {
    let viewer = user.viewer();
    let csrf = viewer.csrf;
    let base = access_url(d.org);
    let admin = d.standing.admin;
    layout(
        &format!("Access · {}", d.org),
        Some(&viewer),
        html! {
            (crumbs(Some(d.org), None))
            h1 { "Access to " (d.org) }
            @if !admin {
                p.muted #no-admin { "You may see who is here; only the organization's owners and admins change it." }
            }
            (error_line(flash.error()))
            @if let Flash::Token { account, token } = flash {
                section.card #new-token role="status" {
                    h2 { "Token for " (account) }
                    p { "Shown only now: store it where the service reads it. coffer keeps only its hash." }
                    code.secret-value #sa-token { (token.as_str()) }
                    button.secondary.copy-once type="button" data-copy="sa-token" hidden data-js { "Copy" }
                }
            }
            section #members {
                h2 { "Members" }
                div.table-wrap {
                    table #member-table {
                        thead { tr {
                            th scope="col" { "Email" }
                            th scope="col" { "Role" }
                            @if admin { th scope="col" { span.muted { "Actions" } } }
                        } }
                        tbody {
                            @for (i, m) in d.members.iter().enumerate() {
                                tr data-email=(m.email) {
                                    th scope="row" { (m.email) }
                                    @if admin && (d.standing.owner || m.role != "owner") {
                                        td {
                                            form.inline method="post" action={ (base) "/members" } {
                                                (csrf_field(csrf))
                                                input type="hidden" name="email" value=(m.email);
                                                label.sr-only for={ "role-" (i) } { "Role of " (m.email) }
                                                (role_select(&format!("role-{i}"), &m.role, d.standing.owner))
                                                button.secondary.change-role type="submit" { "Change" }
                                            }
                                        }
                                        td {
                                            form.inline method="post" action={ (base) "/members/remove" } {
                                                (csrf_field(csrf))
                                                input type="hidden" name="email" value=(m.email);
                                                button.secondary.remove-member type="submit" { "Remove" }
                                            }
                                        }
                                    } @else {
                                        td { (m.role) }
                                        @if admin { td {} }
                                    }
                                }
                            }
                        }
                    }
                }
                @if admin {
                    form.card #add-member method="post" action={ (base) "/members" } {
                        (csrf_field(csrf))
                        h3 { "Add a member" }
                        label for="member-email" { "Email (an existing user)" }
                        input #member-email type="email" name="email" required autocomplete="off";
                        label for="member-role" { "Role" }
                        (role_select("member-role", "member", d.standing.owner))
                        button type="submit" { "Add member" }
                    }
                }
            }
            section #groups {
                h2 { "Groups" }
                @if d.groups.is_empty() {
                    p.muted { "No groups." }
                }
                @for g in d.groups {
                    section.card.group data-group=(g.name) {
                        h3 { (g.name) }
                        @if g.members.is_empty() {
                            p.muted { "No members." }
                        } @else {
                            ul.plain {
                                @for email in &g.members {
                                    li.row {
                                        span.group-member { (email) }
                                        @if admin {
                                            form.inline method="post" action={ (base) "/groups/" (seg(&g.name)) "/members/remove" } {
                                                (csrf_field(csrf))
                                                input type="hidden" name="email" value=(email);
                                                button.secondary.small type="submit" { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if admin {
                            form.row.add-to-group method="post" action={ (base) "/groups/" (seg(&g.name)) "/members" } {
                                (csrf_field(csrf))
                                label.sr-only for={ "group-add-" (g.name) } { "Member to add to " (g.name) }
                                select id={ "group-add-" (g.name) } name="email" {
                                    @for m in d.members.iter().filter(|m| !g.members.contains(&m.email)) {
                                        option value=(m.email) { (m.email) }
                                    }
                                }
                                button.secondary type="submit" { "Add to group" }
                            }
                        }
                    }
                }
                @if admin {
                    form.card #create-group method="post" action={ (base) "/groups" } {
                        (csrf_field(csrf))
                        h3 { "Create a group" }
                        label for="group-name" { "Name (lowercase letters, digits, dashes)" }
                        input #group-name type="text" name="name" required autocomplete="off";
                        button type="submit" { "Create group" }
                    }
                }
            }
            @if admin {
                section #service-accounts {
                    h2 { "Service accounts" }
                    @if d.accounts.is_empty() {
                        p.muted { "No service accounts." }
                    } @else {
                        div.table-wrap {
                            table #sa-table {
                                thead { tr {
                                    th scope="col" { "Name" }
                                    th scope="col" { "Networks" }
                                    th scope="col" { "Certificate" }
                                    th scope="col" { span.muted { "Actions" } }
                                } }
                                tbody {
                                    @for a in d.accounts {
                                        tr data-account=(a.name) {
                                            th scope="row" { (a.name) }
                                            td { @if a.cidrs.is_empty() { span.muted { "anywhere" } } @else { (a.cidrs.join(", ")) } }
                                            td {
                                                @if let Some(c) = &a.certificate {
                                                    @if let Some(spki) = &c.spki_sha256 { code.fingerprint title=(spki) { (spki.get(..16).unwrap_or(spki)) "…" } }
                                                    @if let Some(cn) = &c.subject_cn { " CN=" (cn) }
                                                    @if let Some(san) = &c.dns_san { " DNS=" (san) }
                                                } @else { span.muted { "none" } }
                                            }
                                            td.actions {
                                                form.inline method="post" action={ (base) "/service-accounts/" (seg(&a.name)) "/tokens" } {
                                                    (csrf_field(csrf))
                                                    button.secondary.new-token type="submit" { "New token" }
                                                }
                                                form.inline method="post" action={ (base) "/service-accounts/" (seg(&a.name)) "/delete" } {
                                                    (csrf_field(csrf))
                                                    button.secondary.delete-account type="submit" { "Delete" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    form.card #create-sa method="post" action={ (base) "/service-accounts" } {
                        (csrf_field(csrf))
                        h3 { "Create a service account" }
                        label for="sa-name" { "Name (lowercase letters, digits, dashes)" }
                        input #sa-name type="text" name="name" required autocomplete="off";
                        label for="sa-cidrs" { "Allowed networks (CIDRs, comma-separated; empty: anywhere)" }
                        input #sa-cidrs type="text" name="cidrs" autocomplete="off" placeholder="10.0.0.0/8, 192.168.1.0/24";
                        fieldset {
                            legend { "Client certificate mapping (optional)" }
                            label for="sa-spki" { "SHA-256 of the certificate's public key (hex)" }
                            input #sa-spki type="text" name="spki_sha256" autocomplete="off" spellcheck="false";
                            label for="sa-cn" { "Subject CN must be (optional)" }
                            input #sa-cn type="text" name="subject_cn" autocomplete="off";
                            label for="sa-san" { "DNS SAN must include (optional)" }
                            input #sa-san type="text" name="dns_san" autocomplete="off";
                        }
                        label for="sa-ttl" { "Token lifetime in hours (empty: no expiry)" }
                        input #sa-ttl type="number" name="ttl_hours" min="1";
                        p.muted { "Its first token is shown once, on the next page." }
                        button type="submit" { "Create service account" }
                    }
                }
            }
            @let (block, checking) = d.breach;
            section #breach-policy {
                h2 { "Leaked passwords" }
                p #breach-mode data-mode=(if block { "block" } else { "warn" }) {
                    @if block {
                        "A password secret found in a public breach corpus is refused."
                    } @else {
                        "A password secret found in a public breach corpus is written with a warning."
                    }
                }
                @if !checking {
                    p.muted #breach-off { "This server does not check passwords ([breach_check] enabled = false)." }
                }
                @if admin {
                    form.card #breach-form method="post" action={ (base) "/breach-policy" } {
                        (csrf_field(csrf))
                        fieldset {
                            legend { "Policy" }
                            label {
                                input type="radio" name="mode" value="warn" checked[!block];
                                " Warn: write it and say so"
                            }
                            label {
                                input type="radio" name="mode" value="block" checked[block];
                                " Block: refuse it"
                            }
                        }
                        button #breach-save type="submit" { "Save policy" }
                    }
                }
            }
        },
    )
}

// --- grants matrix ---

fn env_base(org: &str, project: &str, env: &str) -> String {
    format!("/ui/orgs/{}/projects/{}/envs/{}", seg(org), seg(project), seg(env))
}

/// One subject's row of the matrix: what it holds on exactly this
/// environment (editable) and through wildcard grants (shown, not edited
/// here).
struct MatrixRow {
    kind: &'static str,
    name: String,
    exact: Vec<&'static str>,
    inherited: Vec<&'static str>,
}

fn subject_of(g: &GrantView) -> Option<(&'static str, String)> {
    let obj = g.subject.as_object()?;
    let (k, v) = obj.iter().next()?;
    let kind = match k.as_str() {
        "user" => "user",
        "group" => "group",
        "service_account" => "service_account",
        _ => return None,
    };
    Some((kind, v.as_str()?.to_owned()))
}

fn matrix(grants: &[GrantView], project: &str, env: &str) -> Vec<MatrixRow> {
    let mut rows: Vec<MatrixRow> = Vec::new();
    for g in grants {
        let applies = (g.project == "*" || g.project == project) && (g.environment == "*" || g.environment == env);
        if !applies {
            continue;
        }
        let Some((kind, name)) = subject_of(g) else { continue };
        let i = match rows.iter().position(|r| r.kind == kind && r.name == name) {
            Some(i) => i,
            None => {
                rows.push(MatrixRow {
                    kind,
                    name,
                    exact: Vec::new(),
                    inherited: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        let into = if g.project == project && g.environment == env {
            &mut row.exact
        } else {
            &mut row.inherited
        };
        for p in &g.permissions {
            if !into.contains(p) {
                into.push(p);
            }
        }
    }
    let order = |k: &str| match k {
        "user" => 0,
        "group" => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| (order(a.kind), &a.name).cmp(&(order(b.kind), &b.name)));
    rows
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "user" => "user",
        "group" => "group",
        _ => "service account",
    }
}

async fn grants_view(s: &AppState, user: &UiUser, (org, project, env): (&str, &str, &str), flash: Flash) -> Response {
    let loaded = async {
        let standing = s.coffer.access.standing(&user.who, org).await?;
        let mine = s.coffer.access.env_permissions(&user.who, (org, project, env)).await?;
        // The list, not `get_env`: a member without read here may still
        // see who may do what to it (as the environments page shows it).
        let protected = s
            .coffer
            .tenants
            .list_envs(&user.who, org, project)
            .await?
            .iter()
            .any(|e| e.slug == env && e.protected);
        let admin_data = if standing.admin {
            let grants = s.coffer.access.list_grants(&user.who, org).await?;
            let members = s.coffer.access.list_members(&user.who, org).await?;
            let groups = s.coffer.access.list_groups(&user.who, org).await?;
            let accounts = s.coffer.access.list_service_accounts(&user.who, org).await?;
            Some((grants, members, groups, accounts))
        } else {
            None
        };
        Ok::<_, ServiceError>((mine, protected, admin_data))
    }
    .await;
    match loaded {
        Ok((mine, protected, admin_data)) => {
            let page = grants_page(user, (org, project, env), protected, &mine, admin_data.as_ref(), &flash);
            flash.respond(page)
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/orgs/{org}/projects/{project}/envs/{env}/grants`.
pub(in crate::http) async fn grants(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Response {
    grants_view(&s, &user, (&org, &project, &env), Flash::None).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct GrantForm {
    /// `user:EMAIL`, `group:NAME` or `service_account:NAME`
    subject: String,
    read: String,
    reveal: String,
    create: String,
    update: String,
    delete: String,
    export: String,
}

impl GrantForm {
    fn permissions(&self) -> Vec<String> {
        let on = |v: &str| !v.is_empty();
        [
            (Permission::Read, on(&self.read)),
            (Permission::Reveal, on(&self.reveal)),
            (Permission::Create, on(&self.create)),
            (Permission::Update, on(&self.update)),
            (Permission::Delete, on(&self.delete)),
            (Permission::Export, on(&self.export)),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(p, _)| p.as_str().to_owned())
        .collect()
    }

    fn input(&self, project: &str, env: &str) -> Result<GrantInput, ServiceError> {
        let (kind, name) = self
            .subject
            .split_once(':')
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| ServiceError::Invalid("choose who the grant is for".into()))?;
        let mut input = GrantInput {
            user: None,
            service_account: None,
            group: None,
            project: project.to_owned(),
            environment: env.to_owned(),
            permissions: Some(self.permissions()),
            role: None,
        };
        match kind {
            "user" => input.user = Some(name.to_owned()),
            "group" => input.group = Some(name.to_owned()),
            "service_account" => input.service_account = Some(name.to_owned()),
            _ => return Err(ServiceError::Invalid("choose who the grant is for".into())),
        }
        Ok(input)
    }
}

/// `POST …/envs/{env}/grants`: set what one subject holds on this
/// environment (its row of the matrix).
pub(in crate::http) async fn set_grant(
    State(s): State<AppState>,
    Path((org, project, env)): Path<(String, String, String)>,
    SessionForm(user, f): SessionForm<GrantForm>,
) -> Response {
    let done = match f.input(&project, &env) {
        Ok(input) => s.coffer.access.set_env_grant(&user.who, &org, input).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => see_other(&format!("{}/grants", env_base(&org, &project, &env))),
        Err(e) => grants_view(&s, &user, (&org, &project, &env), Flash::of(&e)).await,
    }
}

/// `POST …/envs/{env}/grants/revoke`: revoke what one subject holds on
/// exactly this environment.
pub(in crate::http) async fn revoke_grant(
    State(s): State<AppState>,
    Path((org, project, env)): Path<(String, String, String)>,
    SessionForm(user, f): SessionForm<GrantForm>,
) -> Response {
    let done = match f.input(&project, &env) {
        Ok(input) => match crate::service::grant_subject(&input) {
            Ok(subject) => s
                .coffer
                .access
                .revoke_env_grants(&user.who, &org, &subject, (&project, &env))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => see_other(&format!("{}/grants", env_base(&org, &project, &env))),
        Err(e) => grants_view(&s, &user, (&org, &project, &env), Flash::of(&e)).await,
    }
}

type AdminData = (Vec<GrantView>, Vec<MemberView>, Vec<GroupView>, Vec<ServiceAccountView>);

fn grants_page(
    user: &UiUser,
    (org, project, env): (&str, &str, &str),
    protected: bool,
    mine: &[&str],
    admin: Option<&AdminData>,
    flash: &Flash,
) -> Markup {
    let viewer = user.viewer();
    let csrf = viewer.csrf;
    let action = format!("{}/grants", env_base(org, project, env));
    layout(
        &format!("Grants · {env}"),
        Some(&viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            h1 {
                "Who may do what in " (env)
                @if protected { span.badge.protected title="protected environment" { "protected" } }
            }
            p #my-permissions {
                "You hold: "
                @if mine.is_empty() { span.muted { "nothing" } } @else { strong { (mine.join(", ")) } }
                " · " a href=(env_base(org, project, env)) { "Secrets" }
            }
            (error_line(flash.error()))
            @match admin {
                None => {
                    p.muted #no-admin { "Only the organization's owners and admins see and change the grants." }
                }
                Some((grants, members, groups, accounts)) => {
                    @let rows = matrix(grants, project, env);
                    @let admins: Vec<&str> = members.iter().filter(|m| m.role != "member").map(|m| m.email.as_str()).collect();
                    p.muted { "Owners and admins hold every permission everywhere: " (admins.join(", ")) "." }
                    @if rows.is_empty() {
                        p.muted #no-grants { "Nobody else holds a grant on this environment." }
                    } @else {
                        div.table-wrap {
                            table #grants-matrix {
                                thead { tr {
                                    th scope="col" { "Who" }
                                    @for p in Permission::ALL { th scope="col" { (p.as_str()) } }
                                    th scope="col" { span.muted { "Actions" } }
                                } }
                                tbody {
                                    @for (i, r) in rows.iter().enumerate() {
                                        @let form_id = format!("grant-row-{i}");
                                        @let subject = format!("{}:{}", r.kind, r.name);
                                        tr data-subject=(subject) {
                                            th scope="row" { (r.name) " " span.muted { "(" (kind_label(r.kind)) ")" } }
                                            @for p in Permission::ALL {
                                                @let name = p.as_str();
                                                @let inherited = r.inherited.contains(&name);
                                                td {
                                                    input type="checkbox" form=(form_id) name=(name) value="on"
                                                        aria-label={ (name) " for " (r.name) }
                                                        checked[r.exact.contains(&name) || inherited]
                                                        disabled[inherited && !r.exact.contains(&name)]
                                                        title=[inherited.then_some("held through a project- or organization-wide grant")];
                                                }
                                            }
                                            td.actions {
                                                form.inline id=(form_id) method="post" action=(action) {
                                                    (csrf_field(csrf))
                                                    input type="hidden" name="subject" value=(subject);
                                                    button.secondary.save-grant type="submit" { "Save" }
                                                }
                                                @if !r.exact.is_empty() {
                                                    form.inline method="post" action={ (action) "/revoke" } {
                                                        (csrf_field(csrf))
                                                        input type="hidden" name="subject" value=(subject);
                                                        button.secondary.revoke-grant type="submit" { "Revoke" }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if rows.iter().any(|r| !r.inherited.is_empty()) {
                            p.muted { "Greyed boxes are held through a project- or organization-wide grant (change those with the API)." }
                        }
                    }
                    form.card #add-grant method="post" action=(action) {
                        (csrf_field(csrf))
                        h2 { "Grant" }
                        label for="grant-subject" { "To" }
                        select #grant-subject name="subject" required {
                            @for m in members.iter().filter(|m| m.role == "member") {
                                option value={ "user:" (m.email) } { (m.email) " (user)" }
                            }
                            @for g in groups.iter() {
                                option value={ "group:" (g.name) } { (g.name) " (group)" }
                            }
                            @for a in accounts.iter() {
                                option value={ "service_account:" (a.name) } { (a.name) " (service account)" }
                            }
                        }
                        fieldset.perms {
                            legend { "Permissions on " (env) }
                            @for p in Permission::ALL {
                                label.check {
                                    input type="checkbox" name=(p.as_str()) value="on" id={ "grant-" (p.as_str()) };
                                    " " (p.as_str())
                                }
                            }
                        }
                        button type="submit" { "Grant" }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn grant(subject: serde_json::Value, project: &str, env: &str, perms: &[&'static str]) -> GrantView {
        GrantView {
            id: String::new(),
            subject,
            project: project.into(),
            environment: env.into(),
            permissions: perms.to_vec(),
        }
    }

    #[test]
    fn the_matrix_splits_exact_and_inherited_grants_and_skips_other_environments() {
        let grants = [
            grant(json!({"service_account": "ci"}), "api", "dev", &["read"]),
            grant(json!({"service_account": "ci"}), "api", "*", &["export"]),
            grant(json!({"user": "vic@x"}), "api", "prod", &["reveal"]),
            grant(json!({"group": "ops"}), "*", "*", &["read", "reveal"]),
        ];
        let rows = matrix(&grants, "api", "dev");
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ops", "ci"], "vic holds nothing on dev");
        assert_eq!(rows[1].exact, ["read"]);
        assert_eq!(rows[1].inherited, ["export"]);
        assert!(rows[0].exact.is_empty());
    }

    #[test]
    fn a_grant_form_names_one_subject_and_its_boxes() {
        let f = GrantForm {
            subject: "service_account:ci".into(),
            read: "on".into(),
            export: "on".into(),
            ..GrantForm::default()
        };
        let input = f.input("api", "dev").expect("input");
        assert_eq!(input.service_account.as_deref(), Some("ci"));
        assert_eq!(input.permissions, Some(vec!["read".to_owned(), "export".to_owned()]));
        for bad in ["", "ci", "robot:ci", "user:"] {
            let f = GrantForm {
                subject: bad.into(),
                ..GrantForm::default()
            };
            assert!(f.input("api", "dev").is_err(), "{bad}");
        }
    }

    #[test]
    fn token_lifetimes_are_whole_hours() {
        assert_eq!(ttl_seconds("").ok(), Some(None));
        assert_eq!(ttl_seconds(" 2 ").ok(), Some(Some(7200)));
        for bad in ["0", "-1", "1.5", "x", "99999999999999999999"] {
            assert!(ttl_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_access_template_has_inline_style_or_script() {
        let src = include_str!("access.rs");
        let needle = ["style", "="].concat();
        assert!(!src.contains(&format!(" {needle}\"")), "a style attribute");
        assert!(!src.contains(&["on", "click"].concat()));
    }
}
