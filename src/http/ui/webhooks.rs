//! The Webhooks page of an organization (issue 17, docs/webhooks.md), for
//! its owners and admins: the hooks (URL, events, format), a form to add
//! one (event checkboxes, the Slack-compatible body as an option), Remove,
//! and each hook's delivery log. A hook's signing secret is shown once, in
//! the answer to the POST that created it (dashboard answers are not
//! cached), never again. Every POST goes through `SessionForm` (CSRF).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{Viewer, crumbs, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, html as page, see_other, seg};
use crate::http::AppState;
use crate::service::webhooks::{DeliveryView, EVENTS, WebhookCreated, WebhookInput, WebhookView};

/// The add form: `url`, `format`, and one checkbox per event, named by it.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct HookForm {
    url: String,
    format: String,
    #[serde(flatten)]
    checked: HashMap<String, String>,
}

/// `GET /ui/orgs/{org}/webhooks`
pub(crate) async fn page_get(State(s): State<AppState>, user: UiUser, Path(org): Path<String>) -> Response {
    render(&s, &user, &org, None, None).await
}

async fn render(
    s: &AppState,
    user: &UiUser,
    org: &str,
    created: Option<&WebhookCreated>,
    error: Option<(StatusCode, &str)>,
) -> Response {
    match s.coffer.webhooks.list(&user.who, org).await {
        Ok(hooks) => page(
            error.map_or(StatusCode::OK, |(st, _)| st),
            hooks_page(&user.viewer(), org, &hooks, created, error.map(|(_, m)| m)),
        ),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST /ui/orgs/{org}/webhooks`: add a hook; the answer shows its secret once.
pub(crate) async fn create(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<HookForm>,
) -> Response {
    let input = WebhookInput {
        url: f.url,
        events: EVENTS
            .iter()
            .filter(|e| f.checked.get(**e).is_some_and(|v| v == "on"))
            .map(|e| (*e).to_owned())
            .collect(),
        format: Some(f.format),
    };
    match s.coffer.webhooks.create(&user.who, &org, input).await {
        Ok(created) => render(&s, &user, &org, Some(&created), None).await,
        Err(e) => {
            let (status, _, message) = crate::http::error::describe(&e);
            render(&s, &user, &org, None, Some((status, &message))).await
        }
    }
}

/// `POST /ui/orgs/{org}/webhooks/{id}/remove`
pub(crate) async fn remove(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    match s.coffer.webhooks.delete(&user.who, &org, &id).await {
        Ok(()) => see_other(&format!("/ui/orgs/{}/webhooks", seg(&org))),
        Err(e) => {
            let (status, _, message) = crate::http::error::describe(&e);
            render(&s, &user, &org, None, Some((status, &message))).await
        }
    }
}

/// `GET /ui/orgs/{org}/webhooks/{id}`: the hook's delivery log.
pub(crate) async fn deliveries(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    match s.coffer.webhooks.deliveries(&user.who, &org, &id).await {
        Ok(log) => page(StatusCode::OK, log_page(&user.viewer(), &org, &id, &log)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

fn hooks_page(
    viewer: &Viewer<'_>,
    org: &str,
    hooks: &[WebhookView],
    created: Option<&WebhookCreated>,
    error: Option<&str>,
) -> Markup {
    let base = format!("/ui/orgs/{}/webhooks", seg(org));
    layout(
        "Webhooks",
        Some(viewer),
        html! {
            (crumbs(Some(org), None))
            h1 { "Webhooks of " code { (org) } }
            p { "Signed deliveries of approval steps, break-glass and security signals. Never a value in a body." }
            (error_line(error))
            @if let Some(c) = created {
                section.card #webhook-created {
                    h2 { "Hook added" }
                    p { "Its signing secret, shown this once: copy it into the receiver now." }
                    pre.secret-value #webhook-secret { (c.secret.as_str()) }
                    p.muted { "The receiver checks " code { "Coffer-Signature" } " with it (docs/webhooks.md)." }
                }
            }
            section #webhooks {
                h2 { "Hooks" }
                @if hooks.is_empty() {
                    p.muted #no-webhooks { "No webhook yet." }
                } @else {
                    div.table-wrap {
                        table #webhook-table {
                            thead { tr {
                                th scope="col" { "URL" }
                                th scope="col" { "Events" }
                                th scope="col" { "Format" }
                                th scope="col" { "Added" }
                                th scope="col" { span.muted { "Actions" } }
                            } }
                            tbody {
                                @for h in hooks {
                                    tr data-webhook=(h.id) {
                                        th scope="row" { code { (h.url) } }
                                        td { (h.events.join(", ")) }
                                        td { (h.format) }
                                        td { (h.created_by) " " time datetime=(h.created_at) { (h.created_at) } }
                                        td.actions {
                                            a.deliveries-link href={ (base) "/" (h.id) } { "Delivery log" }
                                            form.inline method="post" action={ (base) "/" (h.id) "/remove" } {
                                                (csrf_field(viewer.csrf))
                                                button.danger.remove-webhook type="submit" { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section #add-webhook {
                h2 { "Add a hook" }
                form #webhook-form method="post" action=(base) {
                    (csrf_field(viewer.csrf))
                    label for="webhook-url" { "URL (http or https)" }
                    input #webhook-url type="url" name="url" required maxlength="2000";
                    fieldset {
                        legend { "Events (none checked: all of them)" }
                        @for e in EVENTS {
                            label.check { input type="checkbox" name=(e) value="on"; " " code { (e) } }
                        }
                    }
                    label for="webhook-format" { "Body" }
                    select #webhook-format name="format" {
                        option value="coffer" selected { "coffer JSON" }
                        option value="slack" { "Slack-compatible ({\"text\": …})" }
                    }
                    button type="submit" { "Add hook" }
                }
            }
        },
    )
}

fn log_page(viewer: &Viewer<'_>, org: &str, id: &str, log: &[DeliveryView]) -> Markup {
    layout(
        "Webhook deliveries",
        Some(viewer),
        html! {
            (crumbs(Some(org), None))
            h1 { "Delivery log" }
            p { a href={ "/ui/orgs/" (seg(org)) "/webhooks" } { "Back to the webhooks" } " · hook " code { (id) } }
            @if log.is_empty() {
                p.muted #no-deliveries { "Nothing delivered yet." }
            } @else {
                div.table-wrap {
                    table #delivery-table {
                        thead { tr {
                            th scope="col" { "Event" }
                            th scope="col" { "Status" }
                            th scope="col" { "Attempts" }
                            th scope="col" { "Last answer" }
                            th scope="col" { "Queued" }
                        } }
                        tbody {
                            @for d in log {
                                tr data-delivery=(d.id) {
                                    th scope="row" { code { (d.event) } }
                                    td.status { (d.status) }
                                    td { (d.attempts) }
                                    td { @if let Some(st) = d.last_status { (st) " " } @if let Some(e) = &d.last_error { span.muted { (e) } } }
                                    td { time datetime=(d.created_at) { (d.created_at) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
