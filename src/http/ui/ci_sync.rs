//! The CI sync page of an organization (issue 19, docs/ci-sync.md): each
//! environment's sync targets (GitHub Actions, GitLab CI/CD) with their
//! status: last success, last error, pending jobs, dead letters, drift.
//! Read-only (targets are managed with `coffer sync` or the API); org
//! admins only, like the API. Never shows a credential.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{Viewer, layout};
use super::{UiUser, error_page, html as page};
use crate::http::AppState;
use crate::service::ci_sync::TargetView;

/// `?project=P&environment=E`: one environment's targets.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EnvQuery {
    project: String,
    environment: String,
}

/// `GET /ui/orgs/{org}/ci-sync`
pub(crate) async fn page_get(
    State(s): State<AppState>,
    user: UiUser,
    Path(org): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Response {
    let env =
        (!q.project.is_empty() && !q.environment.is_empty()).then_some((q.project.as_str(), q.environment.as_str()));
    match s.coffer.ci_sync.list(&user.who, &org, env).await {
        Ok(targets) => page(StatusCode::OK, sync_page(&user.viewer(), &org, &targets)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

fn place(t: &TargetView) -> String {
    let l = &t.location;
    match (t.provider.as_str(), t.scope.as_str()) {
        ("github", "organization") => format!("organization {}", l.owner),
        ("github", "environment") => format!("{}/{} environment {}", l.owner, l.repo, l.github_environment),
        ("github", _) => format!("{}/{}", l.owner, l.repo),
        _ => format!("{} {} (scope {})", t.scope, l.gitlab_id, l.environment_scope),
    }
}

fn sync_page(viewer: &Viewer<'_>, org: &str, targets: &[TargetView]) -> Markup {
    layout(
        "CI sync",
        Some(viewer),
        html! {
            h1 { "CI sync in " code { (org) } }
            p { "Environments pushed to GitHub Actions secrets and GitLab CI/CD variables. "
                "Manage targets with " code { "coffer sync" } "." }
            @if targets.is_empty() { p.muted #no-targets { "No sync targets." } }
            @else {
                table #sync-targets {
                    thead { tr {
                        th { "Environment" } th { "Target" } th { "Last success" } th { "Pending" }
                        th { "Dead letters" } th { "Drift" } th { "Last error" }
                    } }
                    tbody {
                        @for t in targets {
                            tr data-target=(t.id) {
                                td { code { (t.project) "/" (t.environment) } }
                                td { (t.provider) " " (place(t)) }
                                td.last-success { (t.last_success_at.as_deref().unwrap_or("never")) }
                                td.pending { (t.pending) }
                                td.dead { (t.dead) }
                                td.drift {
                                    @if t.drift.is_empty() { "none" }
                                    @for d in &t.drift { code { (d.key) } " " (d.reason) " " }
                                }
                                td.last-error { (t.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    )
}
