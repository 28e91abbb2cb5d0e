//! The Approvals page of an organization (issue 17, docs/approvals.md):
//! pending change and access requests with Approve/Reject forms (the values
//! diff only for a viewer holding reveal there), and the break-glass review
//! queue with Accept/Flag. Every POST goes through `SessionForm` (CSRF).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{Viewer, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, html as page, see_other};
use crate::http::AppState;
use crate::http::audit::AuditNote;
use crate::service::approvals::RequestView;

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
