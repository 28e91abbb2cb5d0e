//! The CI sync page of an organization (issue 19, docs/ci-sync.md), for
//! its owners and admins: each environment's sync targets (GitHub Actions,
//! GitLab CI/CD) with their status (last success, last error, pending
//! jobs, dead letters, drift); a form to add a target (a token, or for
//! GitHub an App); per target "Run now", a new token (tried against the
//! target before it replaces the old one) and Remove with a confirmation.
//! Credential fields are write-only: never rendered back, not even after
//! a refused form. Every POST goes through `SessionForm` (CSRF).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::pages::{Viewer, crumbs, csrf_field, error_line, layout};
use super::{SessionForm, UiUser, error_page, html as page, see_other, seg};
use crate::http::AppState;
use crate::service::ServiceError;
use crate::service::ci_sync::{CredentialInput, TargetInput, TargetView};

/// `?project=P&environment=E`: one environment's targets.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EnvQuery {
    project: String,
    environment: String,
}

/// The add form. Its Debug leaves out the credential.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct AddForm {
    project: String,
    environment: String,
    provider: String,
    scope: String,
    owner: String,
    repo: String,
    github_environment: String,
    visibility: String,
    gitlab_id: String,
    environment_scope: String,
    masked: String,
    protected: String,
    api_url: String,
    overwrite_drift: String,
    timeout_ms: String,
    token: Zeroizing<String>,
    app_id: String,
    installation_id: String,
    private_key: Zeroizing<String>,
}

/// The new-token form of a target.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenForm {
    token: Zeroizing<String>,
    project: String,
    environment: String,
}

/// Run now / Remove (`confirm=yes`), with the environment to go back to.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TargetForm {
    confirm: String,
    project: String,
    environment: String,
}

fn back(org: &str, project: &str, environment: &str) -> String {
    let base = format!("/ui/orgs/{}/ci-sync", seg(org));
    if project.is_empty() || environment.is_empty() {
        base
    } else {
        format!("{base}?project={}&environment={}", seg(project), seg(environment))
    }
}

/// `GET /ui/orgs/{org}/ci-sync`
pub(crate) async fn page_get(
    State(s): State<AppState>,
    user: UiUser,
    Path(org): Path<String>,
    Query(q): Query<EnvQuery>,
) -> Response {
    render(&s, &user, &org, (&q.project, &q.environment), None).await
}

async fn render(s: &AppState, user: &UiUser, org: &str, env: (&str, &str), error: Option<&ServiceError>) -> Response {
    let filter = (!env.0.is_empty() && !env.1.is_empty()).then_some(env);
    match s.coffer.ci_sync.list(&user.who, org, filter).await {
        Ok(targets) => {
            let described = error.map(crate::http::error::describe);
            page(
                described.as_ref().map_or(StatusCode::OK, |(st, _, _)| *st),
                sync_page(
                    &user.viewer(),
                    org,
                    env,
                    &targets,
                    described.as_ref().map(|(_, _, m)| m.as_str()),
                ),
            )
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// After a change: back to the page; a refusal: the page with the
/// service's message (a caller who may not even list: the error page).
async fn done(s: &AppState, user: &UiUser, org: &str, env: (&str, &str), res: Result<(), ServiceError>) -> Response {
    match res {
        Ok(()) => see_other(&back(org, env.0, env.1)),
        Err(e @ ServiceError::PermissionDenied) => error_page(Some(&user.viewer()), &e),
        Err(e) => render(s, user, org, env, Some(&e)).await,
    }
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn id_value(s: &str) -> Option<Value> {
    opt(s).map(Value::String)
}

/// `POST /ui/orgs/{org}/ci-sync`: add a target.
pub(crate) async fn create(
    State(s): State<AppState>,
    Path(org): Path<String>,
    SessionForm(user, f): SessionForm<AddForm>,
) -> Response {
    let timeout_ms = match opt(&f.timeout_ms).map(|t| t.parse::<i64>()) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            let e = ServiceError::Invalid("timeout_ms must be a number of milliseconds".into());
            return render(&s, &user, &org, (&f.project, &f.environment), Some(&e)).await;
        }
    };
    let github = f.provider == "github";
    let input = TargetInput {
        project: f.project.clone(),
        environment: f.environment.clone(),
        provider: f.provider.clone(),
        scope: opt(&f.scope),
        owner: f.owner,
        repo: f.repo,
        github_environment: f.github_environment,
        visibility: f.visibility,
        gitlab_id: f.gitlab_id,
        environment_scope: f.environment_scope,
        masked: Some(f.masked == "on"),
        protected: f.protected == "on",
        api_url: opt(&f.api_url),
        token: f.token,
        app_id: if github { id_value(&f.app_id) } else { None },
        installation_id: if github { id_value(&f.installation_id) } else { None },
        private_key: if github { f.private_key } else { Zeroizing::default() },
        overwrite_drift: f.overwrite_drift == "on",
        timeout_ms,
    };
    let res = s.coffer.ci_sync.create(&user.who, &org, input).await.map(|_| ());
    done(&s, &user, &org, (&f.project, &f.environment), res).await
}

/// `POST /ui/orgs/{org}/ci-sync/{id}/token`: a new token, tried first.
pub(crate) async fn set_token(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<TokenForm>,
) -> Response {
    let input = CredentialInput {
        token: f.token,
        ..CredentialInput::default()
    };
    let res = s
        .coffer
        .ci_sync
        .set_credential(&user.who, &org, &id, input)
        .await
        .map(|_| ());
    done(&s, &user, &org, (&f.project, &f.environment), res).await
}

/// `POST /ui/orgs/{org}/ci-sync/{id}/run`: sync now.
pub(crate) async fn run(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<TargetForm>,
) -> Response {
    let res = s.coffer.ci_sync.run(&user.who, &org, &id).await.map(|_| ());
    done(&s, &user, &org, (&f.project, &f.environment), res).await
}

/// `POST /ui/orgs/{org}/ci-sync/{id}/remove` (with `confirm=yes`).
pub(crate) async fn remove(
    State(s): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    SessionForm(user, f): SessionForm<TargetForm>,
) -> Response {
    let res = if f.confirm == "yes" {
        s.coffer.ci_sync.delete(&user.who, &org, &id).await
    } else {
        Err(ServiceError::Invalid(
            "tick \"I understand\" to confirm the removal".into(),
        ))
    };
    done(&s, &user, &org, (&f.project, &f.environment), res).await
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

fn auth_of(t: &TargetView) -> String {
    if t.auth == "github_app" {
        format!(
            "GitHub App {} (installation {})",
            t.location.app_id, t.location.installation_id
        )
    } else {
        "token".to_owned()
    }
}

fn env_fields(project: &str, environment: &str) -> Markup {
    html! {
        input type="hidden" name="project" value=(project);
        input type="hidden" name="environment" value=(environment);
    }
}

fn sync_page(
    viewer: &Viewer<'_>,
    org: &str,
    (project, environment): (&str, &str),
    targets: &[TargetView],
    error: Option<&str>,
) -> Markup {
    let base = format!("/ui/orgs/{}/ci-sync", seg(org));
    layout(
        "CI sync",
        Some(viewer),
        html! {
            (crumbs(Some(org), None))
            h1 { "CI sync in " code { (org) } }
            p { "Environments pushed to GitHub Actions secrets and GitLab CI/CD variables. "
                "Also with " code { "coffer sync" } "." }
            (error_line(error))
            @if targets.is_empty() { p.muted #no-targets { "No sync targets." } }
            @else {
                div.table-wrap {
                    table #sync-targets {
                        thead { tr {
                            th { "Environment" } th { "Target" } th { "Auth" } th { "Last success" } th { "Pending" }
                            th { "Dead letters" } th { "Drift" } th { "Last error" } th { span.muted { "Actions" } }
                        } }
                        tbody {
                            @for t in targets {
                                tr data-target=(t.id) {
                                    td { code { (t.project) "/" (t.environment) } }
                                    td { (t.provider) " " (place(t)) }
                                    td.auth { (auth_of(t)) }
                                    td.last-success { (t.last_success_at.as_deref().unwrap_or("never")) }
                                    td.pending { (t.pending) }
                                    td.dead { (t.dead) }
                                    td.drift {
                                        @if t.drift.is_empty() { "none" }
                                        @for d in &t.drift { code { (d.key) } " " (d.reason) " " }
                                    }
                                    td.last-error { (t.last_error.as_deref().unwrap_or("")) }
                                    td.actions {
                                        form.inline.run-target method="post" action={ (base) "/" (t.id) "/run" } {
                                            (csrf_field(viewer.csrf))
                                            (env_fields(project, environment))
                                            button.secondary type="submit" { "Run now" }
                                        }
                                        @if t.auth != "github_app" {
                                            form.inline.token-target method="post" action={ (base) "/" (t.id) "/token" } {
                                                (csrf_field(viewer.csrf))
                                                (env_fields(project, environment))
                                                label { "New token "
                                                    input type="password" name="token" required autocomplete="new-password" maxlength="4096";
                                                }
                                                button.secondary type="submit" { "Replace token" }
                                            }
                                        }
                                        form.inline.remove-target method="post" action={ (base) "/" (t.id) "/remove" } {
                                            (csrf_field(viewer.csrf))
                                            (env_fields(project, environment))
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
            section #add-target {
                h2 { "Add a target" }
                form.card #target-form method="post" action=(base) autocomplete="off" {
                    (csrf_field(viewer.csrf))
                    label for="target-project" { "Project" }
                    input #target-project type="text" name="project" required maxlength="63" value=(project);
                    label for="target-environment" { "Environment" }
                    input #target-environment type="text" name="environment" required maxlength="63" value=(environment);
                    label for="target-provider" { "Provider" }
                    select #target-provider name="provider" {
                        option value="github" selected { "GitHub Actions secrets" }
                        option value="gitlab" { "GitLab CI/CD variables" }
                    }
                    label for="target-scope" { "Scope (GitHub: repository, environment, organization; GitLab: project, group; empty: repository/project)" }
                    input #target-scope type="text" name="scope" maxlength="20";
                    label for="target-api-url" { "API URL (empty: https://api.github.com or https://gitlab.com)" }
                    input #target-api-url type="url" name="api_url" maxlength="2000";
                    fieldset {
                        legend { "GitHub" }
                        label for="target-owner" { "Owner (or organization)" }
                        input #target-owner type="text" name="owner" maxlength="255";
                        label for="target-repo" { "Repository" }
                        input #target-repo type="text" name="repo" maxlength="255";
                        label for="target-gh-env" { "Deployment environment (scope environment)" }
                        input #target-gh-env type="text" name="github_environment" maxlength="255";
                        label for="target-visibility" { "Organization secrets' visibility (all, private, selected)" }
                        input #target-visibility type="text" name="visibility" maxlength="20";
                    }
                    fieldset {
                        legend { "GitLab" }
                        label for="target-gitlab-id" { "Project or group id (or full path)" }
                        input #target-gitlab-id type="text" name="gitlab_id" maxlength="255";
                        label for="target-env-scope" { "Environment scope (empty: *)" }
                        input #target-env-scope type="text" name="environment_scope" maxlength="255";
                        label.check { input type="checkbox" name="masked" value="on" checked; " Masked" }
                        label.check { input type="checkbox" name="protected" value="on"; " Protected" }
                    }
                    fieldset {
                        legend { "Credential (write-only: never shown again)" }
                        label for="target-token" { "Token (GitHub fine-grained token, GitLab token with the api scope)" }
                        input #target-token type="password" name="token" autocomplete="new-password" maxlength="4096";
                        p.muted { "Or, for GitHub, a GitHub App instead of a token:" }
                        label for="target-app-id" { "App id" }
                        input #target-app-id type="text" name="app_id" inputmode="numeric" maxlength="20";
                        label for="target-installation-id" { "Installation id" }
                        input #target-installation-id type="text" name="installation_id" inputmode="numeric" maxlength="20";
                        label for="target-private-key" { "App private key (PEM)" }
                        textarea #target-private-key name="private_key" rows="3" maxlength="16384" autocomplete="off" {}
                    }
                    label.check { input type="checkbox" name="overwrite_drift" value="on"; " Overwrite values changed by hand at the target" }
                    label for="target-timeout" { "Request timeout in ms (empty: 10000)" }
                    input #target-timeout type="text" name="timeout_ms" inputmode="numeric" maxlength="6";
                    button type="submit" { "Add target" }
                }
            }
        },
    )
}
