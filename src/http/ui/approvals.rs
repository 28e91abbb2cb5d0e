//! The Approvals page of an organization (issue 17, docs/approvals.md):
//! pending change and access requests with Approve/Reject forms (the values
//! diff only for a viewer holding reveal there), and the break-glass review
//! queue with Accept/Flag; and an environment's approval policy editor
//! (actions, threshold, approver group, service-account exemption, TTLs).
//! Every POST goes through `SessionForm` (CSRF).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{Viewer, crumbs, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, html as page, see_other, seg};
use crate::http::AppState;
use crate::http::audit::AuditNote;
use crate::service::approvals::{PolicyInput, PolicyView, RequestView};

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct DecisionForm {
    comment: String,
    decision: String,
}

/// `GET /ui/orgs/{org}/approvals`
pub(crate) async fn page_get(
    State(s): State<AppState>,
    user: UiUser,
    Path(org): Path<String>,
    note: AuditNote,
) -> Response {
    render(&s, &user, &org, None, &note).await
}

async fn render(s: &AppState, user: &UiUser, org: &str, error: Option<&str>, note: &AuditNote) -> Response {
    let listed = async {
        let pending = s.coffer.approvals.list(&user.who, org, Some("pending")).await?;
        // Each pending request shown in full: the diff for revealers.
        let mut full = Vec::with_capacity(pending.len());
        for r in pending {
            full.push(s.coffer.approvals.show(&user.who, org, &r.id).await?);
        }
        let queue = s.coffer.approvals.break_glass_queue(&user.who, org, false).await?;
        Ok::<_, crate::service::ServiceError>((full, queue))
    }
    .await;
    match listed {
        Ok((pending, queue)) => {
            let values: usize = pending
                .iter()
                .map(|r| usize::from(r.current_value.is_some()) + usize::from(r.proposed_value.is_some()))
                .sum();
            if values > 0 {
                note.values(values);
            }
            page(
                StatusCode::OK,
                approvals_page(&user.viewer(), org, (&pending, &queue), error),
            )
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST /ui/orgs/{org}/approvals/{id}/approve` and `/reject`.
async fn decide(
    s: &AppState,
    user: &UiUser,
    (org, id): (&str, &str),
    approve: bool,
    comment: &str,
    note: &AuditNote,
) -> Response {
    match s.coffer.approvals.decide(&user.who, org, id, approve, comment).await {
        Ok(_) => see_other(&format!("/ui/orgs/{org}/approvals")),
        Err(e) => {
            let (_, _, message) = crate::http::error::describe(&e);
            let mut res = render(s, user, org, Some(&message), note).await;
            *res.status_mut() = crate::http::error::describe(&e).0;
            res
        }
    }
}

pub(crate) async fn approve(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    note: AuditNote,
    SessionForm(user, f): SessionForm<DecisionForm>,
) -> Response {
    decide(&s, &user, (&org, &id), true, &f.comment, &note).await
}

pub(crate) async fn reject(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    note: AuditNote,
    SessionForm(user, f): SessionForm<DecisionForm>,
) -> Response {
    decide(&s, &user, (&org, &id), false, &f.comment, &note).await
}

/// `POST /ui/orgs/{org}/break-glass/{id}/review`: accept or flag.
pub(crate) async fn review(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    note: AuditNote,
    SessionForm(user, f): SessionForm<DecisionForm>,
) -> Response {
    match s
        .coffer
        .approvals
        .review(&user.who, &org, &id, &f.decision, &f.comment)
        .await
    {
        Ok(_) => see_other(&format!("/ui/orgs/{org}/approvals")),
        Err(e) => {
            let (status, _, message) = crate::http::error::describe(&e);
            let mut res = render(&s, &user, &org, Some(&message), &note).await;
            *res.status_mut() = status;
            res
        }
    }
}

fn request_card(viewer: &Viewer<'_>, org: &str, r: &RequestView) -> Markup {
    html! {
        article.card.approval data-request=(r.id) {
            h2 { (r.kind) " " code { (r.project) "/" (r.environment) } @if !r.key.is_empty() { " " code { (r.key) } } }
            dl.record {
                dt { "Requested by" } dd { (r.author) }
                dt { "Type" } dd { (r.value_type) }
                dt { "Based on version" } dd { (r.base_version) }
                dt { "Approvals" } dd.approvals { (r.approvals) " of " (r.required) }
                dt { "Expires (UTC)" } dd { (r.expires_at) }
                @if !r.reason.is_empty() { dt { "Reason" } dd { (r.reason) } }
            }
            @if r.current_value.is_some() || r.proposed_value.is_some() {
                div.diff {
                    @if let Some(v) = &r.current_value { p { "Now: " } pre.diff-old { (v.as_str()) } }
                    @if let Some(v) = &r.proposed_value { p { "Proposed: " } pre.diff-new { (v.as_str()) } }
                }
            } @else if matches!(r.kind.as_str(), "write" | "rollback") {
                p.muted { "The values are shown only to approvers holding reveal here." }
            }
            @if r.can_decide {
                form.inline.approve method="post" action=(format!("/ui/orgs/{org}/approvals/{}/approve", r.id)) {
                    (csrf_field(viewer.csrf))
                    label { "Comment " input type="text" name="comment" maxlength="1000"; }
                    button type="submit" { "Approve" }
                }
                form.inline.reject method="post" action=(format!("/ui/orgs/{org}/approvals/{}/reject", r.id)) {
                    (csrf_field(viewer.csrf))
                    label { "Comment " input type="text" name="comment" maxlength="1000"; }
                    button.danger type="submit" { "Reject" }
                }
            }
        }
    }
}

fn approvals_page(
    viewer: &Viewer<'_>,
    org: &str,
    (pending, queue): (&[RequestView], &[RequestView]),
    error: Option<&str>,
) -> Markup {
    layout(
        "Approvals",
        Some(viewer),
        html! {
            h1 { "Approvals in " code { (org) } }
            p { "Changes to protected environments wait here for a second person. "
                "You never approve your own request." }
            (error_line(error))
            section #pending {
                h2 { "Pending requests" }
                @if pending.is_empty() { p.muted #no-pending { "Nothing waits for approval." } }
                @for r in pending { (request_card(viewer, org, r)) }
            }
            section #break-glass-queue {
                h2 { "Break-glass review queue" }
                @if queue.is_empty() { p.muted { "No break-glass use waits for review." } }
                @for r in queue {
                    article.card.break-glass data-request=(r.id) {
                        p { strong { (r.author) } " broke the glass on " code { (r.project) "/" (r.environment) }
                            " at " (r.created_at) ": " (r.reason) }
                        @if r.can_decide {
                            form.inline method="post" action=(format!("/ui/orgs/{org}/break-glass/{}/review", r.id)) {
                                (csrf_field(viewer.csrf))
                                label { "Comment " input type="text" name="comment" maxlength="1000"; }
                                button type="submit" name="decision" value="accept" { "Accept" }
                                button.danger type="submit" name="decision" value="flag" { "Flag" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The approval policy form of an environment.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct PolicyForm {
    write: String,
    delete: String,
    rollback: String,
    reveal: String,
    export: String,
    required: String,
    approver_group: String,
    sa_exempt: String,
    request_ttl_s: String,
    grant_ttl_s: String,
    break_glass_ttl_s: String,
}

type EnvSlugs = (String, String, String);

fn policy_base(org: &str, project: &str, env: &str) -> String {
    format!(
        "/ui/orgs/{}/projects/{}/envs/{}/approval-policy",
        seg(org),
        seg(project),
        seg(env)
    )
}

/// `GET /ui/orgs/{org}/projects/{project}/envs/{env}/approval-policy`
pub(crate) async fn policy_get(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, project, env)): Path<EnvSlugs>,
) -> Response {
    render_policy(&s, &user, (&org, &project, &env), None).await
}

async fn render_policy(
    s: &AppState,
    user: &UiUser,
    env: (&str, &str, &str),
    error: Option<(StatusCode, &str)>,
) -> Response {
    match s.coffer.approvals.policy(&user.who, env).await {
        Ok(policy) => page(
            error.map_or(StatusCode::OK, |(st, _)| st),
            policy_page(&user.viewer(), env, policy.as_ref(), error.map(|(_, m)| m)),
        ),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// A number field: empty is "the default".
fn number(name: &str, v: &str) -> Result<Option<i64>, crate::service::ServiceError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| crate::service::ServiceError::Invalid(format!("{name} must be a whole number")))
}

fn policy_input(f: &PolicyForm) -> Result<PolicyInput, crate::service::ServiceError> {
    let actions = [
        ("write", &f.write),
        ("delete", &f.delete),
        ("rollback", &f.rollback),
        ("reveal", &f.reveal),
        ("export", &f.export),
    ]
    .iter()
    .filter(|(_, v)| v.as_str() == "on")
    .map(|(n, _)| (*n).to_owned())
    .collect();
    let group = f.approver_group.trim();
    Ok(PolicyInput {
        actions,
        required: number("required", &f.required)?,
        approver_role: Some(if group.is_empty() { "admin" } else { "" }.to_owned()),
        approver_group: (!group.is_empty()).then(|| group.to_owned()),
        service_accounts_exempt: Some(f.sa_exempt == "on"),
        request_ttl_s: number("request_ttl_s", &f.request_ttl_s)?,
        grant_ttl_s: number("grant_ttl_s", &f.grant_ttl_s)?,
        break_glass_ttl_s: number("break_glass_ttl_s", &f.break_glass_ttl_s)?,
    })
}

/// `POST …/approval-policy`: set the policy (org admins).
pub(crate) async fn policy_set(
    State(s): State<AppState>,
    Path((org, project, env)): Path<EnvSlugs>,
    SessionForm(user, f): SessionForm<PolicyForm>,
) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    let done = match policy_input(&f) {
        Ok(input) => s.coffer.approvals.set_policy(&user.who, path, input).await.map(drop),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => see_other(&policy_base(&org, &project, &env)),
        Err(e) => {
            let (status, _, message) = crate::http::error::describe(&e);
            render_policy(&s, &user, path, Some((status, &message))).await
        }
    }
}

/// `POST …/approval-policy/remove`: the environment is no longer protected.
pub(crate) async fn policy_remove(
    State(s): State<AppState>,
    Path((org, project, env)): Path<EnvSlugs>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    match s.coffer.approvals.delete_policy(&user.who, path).await {
        Ok(()) => see_other(&policy_base(&org, &project, &env)),
        Err(e) => {
            let (status, _, message) = crate::http::error::describe(&e);
            render_policy(&s, &user, path, Some((status, &message))).await
        }
    }
}

fn policy_page(
    viewer: &Viewer<'_>,
    (org, project, env): (&str, &str, &str),
    policy: Option<&PolicyView>,
    error: Option<&str>,
) -> Markup {
    let base = policy_base(org, project, env);
    let has = |a: &str| policy.is_some_and(|p| p.actions.contains(&a));
    let group = policy.and_then(|p| p.approver_group.clone()).unwrap_or_default();
    layout(
        "Approval policy",
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            h1 { "Approval policy of " code { (project) "/" (env) } }
            (error_line(error))
            section #current-policy {
                @match policy {
                    None => p.muted #no-policy { "Not protected: every action applies at once." },
                    Some(p) => dl.record {
                        dt { "Needs approval" } dd #policy-actions { (p.actions.join(", ")) }
                        dt { "Approvals needed" } dd #policy-required { (p.required) }
                        dt { "Approvers" } dd #policy-approvers {
                            @if p.approver_role == "admin" { "org owners and admins" }
                            @if let Some(g) = &p.approver_group { @if p.approver_role == "admin" { " and " } "group " code { (g) } }
                        }
                        dt { "Service accounts inject without approval" } dd #policy-sa { @if p.service_accounts_exempt { "yes" } @else { "no" } }
                        dt { "Request expiry (s)" } dd { (p.request_ttl_s) }
                        dt { "Reveal/export grant (s)" } dd { (p.grant_ttl_s) }
                        dt { "Break-glass window (s)" } dd { (p.break_glass_ttl_s) }
                        dt { "Set by" } dd { (p.updated_by) " " time datetime=(p.updated_at) { (p.updated_at) } }
                    },
                }
            }
            section #edit-policy {
                h2 { "Edit (org owners and admins)" }
                form #policy-form method="post" action=(base) {
                    (csrf_field(viewer.csrf))
                    fieldset {
                        legend { "Actions that need a second person" }
                        @for a in ["write", "delete", "rollback", "reveal", "export"] {
                            label.check { input type="checkbox" name=(a) value="on" checked[has(a)]; " " (a) }
                        }
                    }
                    label for="policy-required-input" { "Approvals needed (1–5)" }
                    input #policy-required-input type="number" name="required" min="1" max="5"
                        value=(policy.map_or(1, |p| p.required));
                    label for="policy-group-input" { "Approver group (empty: org owners and admins)" }
                    input #policy-group-input type="text" name="approver_group" maxlength="100" value=(group);
                    label.check { input #policy-sa-input type="checkbox" name="sa_exempt" value="on"
                        checked[policy.is_none_or(|p| p.service_accounts_exempt)]; " Service accounts inject without approval" }
                    label for="policy-request-ttl" { "Request expiry (seconds)" }
                    input #policy-request-ttl type="number" name="request_ttl_s" min="1" value=(policy.map_or(86400, |p| p.request_ttl_s));
                    label for="policy-grant-ttl" { "Reveal/export grant (seconds)" }
                    input #policy-grant-ttl type="number" name="grant_ttl_s" min="1" value=(policy.map_or(3600, |p| p.grant_ttl_s));
                    label for="policy-glass-ttl" { "Break-glass window (seconds)" }
                    input #policy-glass-ttl type="number" name="break_glass_ttl_s" min="1" value=(policy.map_or(3600, |p| p.break_glass_ttl_s));
                    button type="submit" { "Save policy" }
                }
                @if policy.is_some() {
                    form.inline #policy-remove method="post" action={ (base) "/remove" } {
                        (csrf_field(viewer.csrf))
                        button.danger type="submit" { "Remove the policy" }
                    }
                }
            }
        },
    )
}
