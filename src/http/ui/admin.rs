//! The dashboard's admin pages (issue 16): the audit log (search, record
//! detail, chain verification), keys and server (health, seal status, KEK
//! versions and rewrap progress per organization, seal with a confirmation
//! step) and the root-token login that reaches them.
//!
//! Handlers stay thin: who may see what is the services' decision, as for
//! the API (`audit_search`: root, or an organization's admin naming it;
//! `audit_verify`, `list_keks`, `seal`: root). Every POST checks its CSRF
//! token before anything else. The filters travel as GET parameters: they
//! carry no value.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::pages::{Viewer, csrf_field, error_line, layout, masked_input};
use super::{PreCsrf, SessionForm, UiForm, UiUser, csrf_refused, error_page, html as page, see_other, seg};
use crate::http::AppState;
use crate::http::audit::AuditNote;
use crate::http::error::{ErrorCode, describe};
use crate::http::extract::Peer;
use crate::seal::{SealKind, SealStatus};
use crate::service::audit::{AuditQuery, RecordView, VerifyReport};
use crate::service::keys::KekView;
use crate::service::{Caller, PrincipalKind, ServiceError, now_ms};

/// Records per audit page.
pub(crate) const AUDIT_PAGE: i64 = 50;
/// How long a root-token dashboard session's own token lives.
const ROOT_SESSION_S: u64 = 3_600;

// ---------------------------------------------------------------- audit

/// The audit page's filters (GET parameters; every one optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditFilters {
    actor: String,
    action: String,
    resource: String,
    org: String,
    outcome: String,
    /// `datetime-local` (UTC) or RFC 3339
    since: String,
    until: String,
    /// keyset: records before this seq (the next page)
    before: Option<i64>,
}

impl AuditFilters {
    /// The query string of these filters (`before` replaced by `before`).
    fn query(&self, before: Option<i64>) -> String {
        let mut pairs: Vec<(&str, String)> = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
            ("org", &self.org),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
        if let Some(b) = before {
            pairs.push(("before", b.to_string()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    fn to_query(&self, org: Option<String>) -> Result<AuditQuery, ServiceError> {
        let opt = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(o) = opt(&self.outcome)
            && !matches!(o.as_str(), "allowed" | "denied" | "error" | "begun")
        {
            return Err(ServiceError::Invalid(
                "outcome must be allowed, denied, error or begun".into(),
            ));
        }
        Ok(AuditQuery {
            actor: opt(&self.actor),
            action: opt(&self.action),
            resource: opt(&self.resource),
            org,
            outcome: opt(&self.outcome),
            since: time_field("since", &self.since)?,
            until: time_field("until", &self.until)?,
            before_seq: self.before,
            newest_first: true,
            // One more than shown: whether a next page exists.
            limit: Some(AUDIT_PAGE + 1),
            ..AuditQuery::default()
        })
    }
}

/// A time filter: a `datetime-local` value (taken as UTC), RFC 3339, or
/// unix milliseconds; empty is no filter.
fn time_field(name: &str, v: &str) -> Result<Option<i64>, ServiceError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    if let Ok(t) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Ok(Some(ms(t)));
    }
    let local = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local_s = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(v, &local)
        .or_else(|_| time::PrimitiveDateTime::parse(v, &local_s))
        .map(|t| Some(ms(t.assume_utc())))
        .map_err(|_| ServiceError::Invalid(format!("{name} must be a date and time (2026-01-31T00:00, UTC)")))
}

/// The organization a non-root search names: the one asked for, else the
/// caller's first (the service refuses it unless they administer it).
async fn audit_org(s: &AppState, user: &UiUser, asked: &str) -> Result<(Option<String>, Vec<String>), ServiceError> {
    let orgs: Vec<String> = s
        .coffer
        .tenants
        .list_orgs(&user.who)
        .await?
        .into_iter()
        .map(|o| o.slug)
        .collect();
    let asked = Some(asked.trim().to_owned()).filter(|o| !o.is_empty());
    if user.who.kind == PrincipalKind::Root {
        return Ok((asked, orgs));
    }
    let org = asked.or_else(|| orgs.first().cloned());
    match org {
        Some(o) => Ok((Some(o), orgs)),
        None => Err(ServiceError::PermissionDenied),
    }
}

/// `GET /ui/audit`: the filtered records, newest first, one page.
pub(crate) async fn audit(State(s): State<AppState>, user: UiUser, Query(f): Query<AuditFilters>) -> Response {
    let loaded = async {
        let (org, orgs) = audit_org(&s, &user, &f.org).await?;
        let mut rows = s.coffer.audit.audit_search(&user.who, f.to_query(org.clone())?).await?;
        let more = rows.len() as i64 > AUDIT_PAGE;
        rows.truncate(AUDIT_PAGE as usize);
        Ok::<_, ServiceError>((rows, more, org, orgs))
    }
    .await;
    match loaded {
        Ok((rows, more, org, orgs)) => {
            let root = user.who.kind == PrincipalKind::Root;
            let view = AuditView {
                filters: &f,
                rows: &rows,
                more,
                org: org.as_deref(),
                orgs: &orgs,
                root,
            };
            page(StatusCode::OK, audit_page(&user.viewer(), &view, None))
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OrgParam {
    org: String,
}

/// `GET /ui/audit/{seq}`: one record, every field.
pub(crate) async fn audit_record(
    State(s): State<AppState>,
    user: UiUser,
    Path(seq): Path<i64>,
    Query(q): Query<OrgParam>,
) -> Response {
    let loaded = async {
        let (org, _) = audit_org(&s, &user, &q.org).await?;
        let query = AuditQuery {
            org,
            after_seq: Some(seq.saturating_sub(1)),
            limit: Some(1),
            ..AuditQuery::default()
        };
        let rows = s.coffer.audit.audit_search(&user.who, query).await?;
        rows.into_iter()
            .find(|r| r.seq == seq)
            .ok_or_else(|| ServiceError::NotFound(format!("audit record {seq}")))
    }
    .await;
    match loaded {
        Ok(r) => page(StatusCode::OK, record_page(&user.viewer(), &r, &q.org)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST /ui/audit/verify`: check the whole chain (root), show the report.
pub(crate) async fn audit_verify(
    State(s): State<AppState>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    match s.coffer.audit.audit_verify(&user.who).await {
        Ok(report) => page(StatusCode::OK, verify_page(&user.viewer(), &report)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

struct AuditView<'a> {
    filters: &'a AuditFilters,
    rows: &'a [RecordView],
    more: bool,
    org: Option<&'a str>,
    orgs: &'a [String],
    root: bool,
}

fn outcome_badge(outcome: &str) -> Markup {
    html! { span class={ "badge outcome " (outcome) } { (outcome) } }
}

fn audit_page(viewer: &Viewer<'_>, v: &AuditView<'_>, error: Option<&str>) -> Markup {
    let f = v.filters;
    let org_q = v
        .org
        .filter(|_| !v.root)
        .map(|o| format!("?org={}", seg(o)))
        .unwrap_or_default();
    layout(
        "Audit",
        Some(viewer),
        html! {
            h1 { "Audit log" }
            p.muted { "Every request that touched a secret, a key, a token, a user, a grant or the seal, newest first. "
                "Filters match exactly (action: a prefix when it ends in “.”, resource: a prefix); times are UTC." }
            (error_line(error))
            form.card.filters #audit-filters method="get" action="/ui/audit" {
                div.filter-grid {
                    div {
                        label for="f-actor" { "Actor" }
                        input #f-actor type="text" name="actor" value=(f.actor) placeholder="ann@acme.test";
                    }
                    div {
                        label for="f-action" { "Action" }
                        input #f-action type="text" name="action" value=(f.action) placeholder="secret.reveal or secret.";
                    }
                    div {
                        label for="f-resource" { "Resource (prefix)" }
                        input #f-resource type="text" name="resource" value=(f.resource) placeholder="/api/v1/orgs/acme";
                    }
                    div {
                        label for="f-org" { "Organization" }
                        select #f-org name="org" {
                            @if v.root { option value="" selected[v.org.is_none()] { "all" } }
                            @for o in v.orgs {
                                option value=(o) selected[v.org == Some(o.as_str())] { (o) }
                            }
                        }
                    }
                    div {
                        label for="f-outcome" { "Outcome" }
                        select #f-outcome name="outcome" {
                            @for (value, label) in [("", "any"), ("allowed", "allowed"), ("denied", "denied"), ("error", "error"), ("begun", "begun")] {
                                option value=(value) selected[f.outcome == value] { (label) }
                            }
                        }
                    }
                    div {
                        label for="f-since" { "From (UTC)" }
                        input #f-since type="datetime-local" name="since" value=(f.since);
                    }
                    div {
                        label for="f-until" { "Until (UTC)" }
                        input #f-until type="datetime-local" name="until" value=(f.until);
                    }
                }
                div.row {
                    button type="submit" { "Search" }
                    a.button-link href="/ui/audit" { "Clear" }
                }
            }
            @if v.root {
                form #verify-form method="post" action="/ui/audit/verify" {
                    (csrf_field(viewer.csrf))
                    button.secondary type="submit" { "Verify chain" }
                }
            }
            @if v.rows.is_empty() {
                p.muted #no-records { "No record matches." }
            } @else {
                div.table-wrap {
                    table #audit {
                        thead { tr {
                            th scope="col" { "#" }
                            th scope="col" { "Time (UTC)" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Action" }
                            th scope="col" { "Resource" }
                            th scope="col" { "Outcome" }
                        } }
                        tbody {
                            @for r in v.rows {
                                tr data-seq=(r.seq) data-action=(r.action) {
                                    td { a href={ "/ui/audit/" (r.seq) (org_q) } { (r.seq) } }
                                    td { time datetime=(r.time) { (r.time) } }
                                    td.actor { (r.actor) }
                                    td.action { code { (r.action) } }
                                    td.resource { (r.resource) }
                                    td { (outcome_badge(&r.outcome)) " " span.muted { (r.status) } }
                                }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="pages" {
                @if f.before.is_some() {
                    a #newest href={ "/ui/audit?" (f.query(None)) } { "Newest" }
                }
                @if v.more {
                    @if let Some(last) = v.rows.last() {
                        a #older href={ "/ui/audit?" (f.query(Some(last.seq))) } { "Older →" }
                    }
                }
            }
        },
    )
}

fn record_page(viewer: &Viewer<'_>, r: &RecordView, org: &str) -> Markup {
    let back = if org.is_empty() {
        "/ui/audit".to_owned()
    } else {
        format!("/ui/audit?org={}", seg(org))
    };
    let detail = serde_json::to_string_pretty(&r.detail).unwrap_or_default();
    let fields: [(&str, String); 17] = [
        ("Sequence", r.seq.to_string()),
        ("Time (UTC)", r.time.clone()),
        ("Request id", r.request_id.clone()),
        ("Actor", r.actor.clone()),
        ("Actor kind", r.actor_kind.clone()),
        ("Token accessor", r.accessor.clone()),
        ("Client certificate (SPKI SHA-256)", r.cert_spki.clone()),
        ("Source address", r.source.clone()),
        ("Method", r.method.clone()),
        ("Action", r.action.clone()),
        ("Resource", r.resource.clone()),
        ("Organization", r.org.clone()),
        ("Outcome", r.outcome.clone()),
        ("HTTP status", r.status.to_string()),
        ("Reason", r.reason.clone()),
        ("Previous hash", r.prev_hash.clone()),
        ("Hash", r.hash.clone()),
    ];
    layout(
        &format!("Audit record {}", r.seq),
        Some(viewer),
        html! {
            nav.crumbs aria-label="breadcrumb" { a href=(back) { "Audit log" } " / " (r.seq) }
            h1 { "Audit record " (r.seq) " " (outcome_badge(&r.outcome)) }
            dl.record #record {
                @for (name, value) in &fields {
                    dt { (name) }
                    dd data-field=(name) { @if value.is_empty() { span.muted { "—" } } @else { (value) } }
                }
                dt { "Detail" }
                dd data-field="Detail" { pre { (detail) } }
            }
        },
    )
}

fn verify_page(viewer: &Viewer<'_>, r: &VerifyReport) -> Markup {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!("{a} to {b}"),
        _ => "none".to_owned(),
    };
    layout(
        "Verify chain",
        Some(viewer),
        html! {
            nav.crumbs aria-label="breadcrumb" { a href="/ui/audit" { "Audit log" } " / verify" }
            h1 { "Audit chain verification" }
            @if r.ok {
                p.notice #verify-result data-ok="true" role="status" {
                    "OK: " (r.records) " records checked (" (range) "), " (r.checkpoints)
                    " signed checkpoints valid. Nothing is missing or modified."
                }
            } @else if let Some(b) = &r.broken {
                p.error #verify-result data-ok="false" role="alert" {
                    "Broken at record " (b.seq) ": " (b.reason) " (" (r.records) " records checked before it)."
                }
                @if let Some(rec) = &b.record {
                    p { a href={ "/ui/audit/" (rec.seq) } { "The record as stored" } }
                }
            }
            dl.record {
                dt { "Records checked" } dd #verify-records { (r.records) }
                dt { "Range" } dd { (range) }
                dt { "Checkpoints" } dd { (r.checkpoints) }
                dt { "Pruned through" } dd { (r.pruned_through) }
            }
        },
    )
}

// --------------------------------------------------------------- server

/// One organization's KEK versions and how far re-wrapping got.
struct OrgKeys {
    slug: String,
    keks: Vec<KekView>,
}

impl OrgKeys {
    /// (secret versions under the active KEK, all secret versions)
    fn progress(&self) -> (i64, i64) {
        let total = self.keks.iter().map(|k| k.references).sum();
        let active = self.keks.iter().filter(|k| k.active).map(|k| k.references).sum();
        (active, total)
    }
}

fn root_only(user: &UiUser) -> Result<(), ServiceError> {
    if user.who.kind == PrincipalKind::Root {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied)
    }
}

/// `GET /ui/server`: health, seal status, KEK versions per organization
/// (root).
pub(crate) async fn server(State(s): State<AppState>, user: UiUser) -> Response {
    let loaded = async {
        root_only(&user)?;
        let status = s.coffer.operator.seal_status().await?;
        let mut keys = Vec::new();
        for org in s.coffer.tenants.list_orgs(&user.who).await? {
            let keks = s.coffer.keys.list_keks(&user.who, &org.slug).await?;
            keys.push(OrgKeys { slug: org.slug, keks });
        }
        Ok::<_, ServiceError>((status, keys))
    }
    .await;
    match loaded {
        Ok((status, keys)) => page(StatusCode::OK, server_page(&user.viewer(), &status, &keys)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/server/seal`: the confirmation step (nothing happens yet).
pub(crate) async fn seal_confirm(State(s): State<AppState>, user: UiUser) -> Response {
    let loaded = async {
        root_only(&user)?;
        s.coffer.operator.seal_status().await
    }
    .await;
    match loaded {
        Ok(status) => page(StatusCode::OK, seal_page(&user.viewer(), &status)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SealForm {
    confirm: String,
}

/// `POST /ui/server/seal`: seal now (root, confirmed); then the unseal page.
pub(crate) async fn seal(State(s): State<AppState>, SessionForm(user, f): SessionForm<SealForm>) -> Response {
    if f.confirm != "seal" {
        return see_other("/ui/server/seal");
    }
    match s.coffer.operator.seal(&user.who) {
        Ok(()) => {
            tracing::warn!(accessor = %user.who.accessor, "sealed from the dashboard");
            see_other("/ui/unseal")
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

fn status_rows(st: &SealStatus) -> Markup {
    html! {
        dt { "State" }
        dd #seal-state { @if !st.initialized { "uninitialized" } @else if st.sealed { "sealed" } @else { "unsealed, serving" } }
        dt { "Seal" }
        dd { @if st.kind == SealKind::Pkcs11 { "HSM (PKCS#11)" } @else { "Shamir shares" } }
        @if st.kind != SealKind::Pkcs11 {
            dt { "Shares" } dd { (st.threshold) " of " (st.shares) " unseal" }
        }
        dt { "Cluster id" } dd { code { (st.cluster_id) } }
        dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
    }
}

fn server_page(viewer: &Viewer<'_>, st: &SealStatus, keys: &[OrgKeys]) -> Markup {
    layout(
        "Server",
        Some(viewer),
        html! {
            h1 { "Keys and server" }
            section.card #health {
                h2 { "Health" }
                dl.record.compact { (status_rows(st)) }
                a.button-link.danger #seal-link href="/ui/server/seal" { "Seal now…" }
            }
            section.card #keks {
                h2 { "Key-encryption keys" }
                p.muted { "Each organization's secrets are wrapped by its KEK. After a rotation, older versions keep "
                    "their secret versions until re-wrapped (" code { "coffer operator rewrap --org ORG" } "); a version is destroyed "
                    "only when nothing references it." }
                @if keys.is_empty() {
                    p.muted { "No organization yet." }
                }
                @for org in keys {
                    @let (done, total) = org.progress();
                    div.org-keys data-org=(org.slug) {
                        h3 { (org.slug) }
                        p.rewrap {
                            "Rewrap: " span.rewrap-count { (done) " of " (total) } " secret versions under the active KEK"
                        }
                        progress.rewrap-progress value=(done) max=(total.max(1)) { (done) "/" (total) }
                        div.table-wrap {
                            table.keks {
                                thead { tr {
                                    th scope="col" { "Version" }
                                    th scope="col" { "State" }
                                    th scope="col" { "Secret versions" }
                                    th scope="col" { "Created (UTC)" }
                                } }
                                tbody {
                                    @for k in &org.keks {
                                        tr data-version=(k.version) {
                                            td { (k.version) }
                                            td { @if k.active { span.badge.active { "active" } } @else { "older" } }
                                            td.references { (k.references) }
                                            td { (k.created_at) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn seal_page(viewer: &Viewer<'_>, st: &SealStatus) -> Markup {
    layout(
        "Seal",
        Some(viewer),
        html! {
            nav.crumbs aria-label="breadcrumb" { a href="/ui/server" { "Server" } " / seal" }
            h1 { "Seal the server?" }
            p.error role="alert" {
                "Sealing drops every key from memory, on every server of the cluster. Nothing is served until "
                @if st.kind == SealKind::Pkcs11 { "the HSM unseals it again." } @else { (st.threshold) " custodians enter their shares." }
            }
            form.card #seal-form method="post" action="/ui/server/seal" {
                (csrf_field(viewer.csrf))
                input type="hidden" name="confirm" value="seal";
                div.row {
                    button.danger type="submit" { "Seal now" }
                    a.button-link href="/ui/server" { "Cancel" }
                }
            }
        },
    )
}

// ----------------------------------------------------------- root login

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenForm {
    csrf: String,
    token: Zeroizing<String>,
}

fn token_login_page(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in with a root token",
        None,
        html! {
            h1 { "Log in with a root token" }
            p { "For the server's keys, the seal and the whole audit log. People log in with "
                a href="/ui/login" { "their email and password" } "." }
            p.muted { "The token stays on the server: the dashboard session gets its own token, a child of it "
                "that lives an hour at most and is revoked when you log out." }
            (error_line(error))
            form.card #token-form method="post" action="/ui/login/token" {
                (csrf_field(csrf))
                (masked_input("root-token", "token", "Root token", true))
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /ui/login/token`.
pub(crate) async fn token_login(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = s.coffer.operator.require_unsealed() {
        return match e {
            ServiceError::Sealed | ServiceError::NotInitialized => see_other("/ui"),
            e => error_page(None, &e),
        };
    }
    match PreCsrf::of(&s, &headers) {
        Ok(pre) => {
            let p = token_login_page(&pre.token, None);
            pre.respond(page(StatusCode::OK, p))
        }
        Err(e) => error_page(None, &e),
    }
}

/// `POST /ui/login/token`: a root token makes a dashboard session around a
/// child token of it (one hour), so logging out revokes the child only.
pub(crate) async fn token_login_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    note: AuditNote,
    UiForm(f): UiForm<TokenForm>,
) -> Response {
    if !PreCsrf::matches(&headers, &f.csrf) {
        return csrf_refused(false);
    }
    let made = async {
        let caller = Caller {
            token: Some(f.token.trim()),
            source: peer.source,
            cert: peer.cert.as_deref(),
            org_hint: None,
        };
        let who = s.coffer.identity.authenticate(&caller).await?;
        note.principal(&who);
        if who.kind != PrincipalKind::Root {
            return Err(ServiceError::Invalid(
                "only a root token logs in here; people log in with their email and password".into(),
            ));
        }
        let child = s
            .coffer
            .identity
            .create_token(&who, "dashboard session", Some(ROOT_SESSION_S), None, false)
            .await?;
        let expires_at = now_ms() + i64::try_from(ROOT_SESSION_S * 1000).unwrap_or(i64::MAX);
        s.coffer.ui_sessions.create(child.token, expires_at)
    }
    .await;
    match made {
        Ok(cookie) => super::session_started(&s, &cookie, "/ui/server"),
        Err(e) => {
            let (status, code, message) = describe(&e);
            let mut res = page(status, token_login_page(&f.csrf, Some(&message)));
            res.extensions_mut().insert(ErrorCode(code));
            res
        }
    }
}

/// The header's admin links: Audit for everyone logged in (the page says
/// what they may see), Server for root.
pub(crate) fn nav_links(root: bool) -> Markup {
    html! {
        a href="/ui/audit" { "Audit" }
        @if root { a #nav-server href="/ui/server" { "Server" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters_take_local_rfc3339_or_ms() {
        assert_eq!(time_field("since", "").ok(), Some(None));
        assert_eq!(time_field("since", "1700000000000").ok(), Some(Some(1_700_000_000_000)));
        assert_eq!(
            time_field("since", "2023-11-14T22:13").ok(),
            Some(Some(1_699_999_980_000))
        );
        assert_eq!(
            time_field("since", "2023-11-14T22:13:20Z").ok(),
            Some(Some(1_700_000_000_000))
        );
        assert!(time_field("since", "yesterday").is_err());
    }

    #[test]
    fn the_next_page_keeps_the_filters() {
        let f = AuditFilters {
            action: "secret.reveal".into(),
            org: "a c".into(),
            before: Some(9),
            ..AuditFilters::default()
        };
        assert_eq!(f.query(Some(40)), "action=secret.reveal&org=a+c&before=40");
        assert_eq!(f.query(None), "action=secret.reveal&org=a+c");
        assert!(
            f.to_query(None)
                .is_ok_and(|q| q.newest_first && q.before_seq == Some(9))
        );
        let bad = AuditFilters {
            outcome: "maybe".into(),
            ..AuditFilters::default()
        };
        assert!(bad.to_query(None).is_err());
    }
}
