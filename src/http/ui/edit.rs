//! The dashboard's Edit area (issue 16): create and update a secret with
//! type-aware inputs, delete / restore / purge with a confirmation,
//! history with a diff of two versions (values only through a reveal
//! fetch) and rollback, import of a `.env`/JSON/YAML file through the push
//! plan of `service::sync`, and export through its pull.
//!
//! Handlers are thin: each checks the CSRF token first, then calls the
//! secret service, which authorizes every action again; a page shows a
//! control only when the caller holds its permission
//! ([`crate::service::SecretService::env_perms`]). No stored value is in
//! a page: the value input is empty unless the person reveals the current
//! value into it (the reveal fetch), and the history diff's values arrive
//! in a POST answer recorded as a reveal. The import plan page carries
//! the file the person just gave back to them (hidden) for its Apply
//! form, in a `no-store` answer.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::super::AppState;
use super::super::audit::AuditNote;
use super::super::error::{ErrorCode, describe};
use super::pages::{Viewer, crumbs, csrf_field, error_line, layout};
use super::{CSRF_HEADER, SessionForm, UiUser, csrf_refused, error_page, html, see_other, seg};
use crate::access::{PermSet, Permission};
use crate::service::formats::Format;
use crate::service::values::ValueType;
use crate::service::{PushAction, PushRequest, PushView, SecretInput, ServiceError, SyncInput, VersionView};

type EnvP = Path<(String, String, String)>;
type SecretP = Path<(String, String, String, String)>;

/// The value types, in the order the type menu lists them.
const TYPES: [ValueType; 6] = [
    ValueType::Text,
    ValueType::Json,
    ValueType::Yaml,
    ValueType::Boolean,
    ValueType::Integer,
    ValueType::Password,
];

/// The dashboard path of an environment.
pub(super) fn env_url(org: &str, project: &str, env: &str) -> String {
    format!("/ui/orgs/{}/projects/{}/envs/{}", seg(org), seg(project), seg(env))
}

fn secret_url(org: &str, project: &str, env: &str, key: &str) -> String {
    format!("{}/secrets/{}", env_url(org, project, env), seg(key))
}

/// A JSON error answer (the fetches), with its code for the audit record.
fn json_error(e: &ServiceError) -> Response {
    let (status, code, message) = describe(e);
    let mut res = (
        status,
        axum::Json(json!({ "error": true, "code": code, "message": message })),
    )
        .into_response();
    res.extensions_mut().insert(ErrorCode(code));
    res
}

/// A page answer for a service error inside a form page.
fn with_code(status: StatusCode, code: &'static str, page: Markup) -> Response {
    let mut res = html(status, page);
    res.extensions_mut().insert(ErrorCode(code));
    res
}

/// A text area's text as the person saw it: browsers submit its line
/// breaks as CRLF whatever was typed or revealed into it (HTML's form
/// encoding), so they become LF again. The submitted copy is wiped.
fn textarea_text(submitted: Zeroizing<String>) -> Zeroizing<String> {
    if submitted.contains('\r') {
        Zeroizing::new(submitted.replace("\r\n", "\n"))
    } else {
        submitted
    }
}

fn header_csrf(headers: &HeaderMap) -> &str {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("")
}

// ---------------------------------------------------------------- create / update

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct SecretForm {
    key: String,
    value_type: String,
    value: Zeroizing<String>,
    description: String,
    /// the version the edit form was opened at: the save is refused if
    /// another one became current meanwhile (compare-and-set)
    base: String,
}

/// What the edit form shows of a secret (never its value).
struct EditState<'a> {
    /// None: a new secret
    key: Option<&'a str>,
    value_type: &'a str,
    description: &'a str,
    version: i64,
    perms: PermSet,
}

/// `GET …/envs/{env}/secrets/new`: the empty form.
pub(crate) async fn new_page(State(s): State<AppState>, user: UiUser, Path((org, project, env)): EnvP) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    match s.coffer.secrets.env_perms(&user.who, path).await {
        Ok(perms) if perms.has(Permission::Create) => {
            let st = EditState {
                key: None,
                value_type: "text",
                description: "",
                version: 0,
                perms,
            };
            html(StatusCode::OK, edit_form(&user.viewer(), path, &st, "", None))
        }
        Ok(_) => error_page(Some(&user.viewer()), &ServiceError::PermissionDenied),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET …/secrets/{key}/edit`: type and description filled in; the value
/// empty (the reveal button fills it on demand).
pub(crate) async fn edit_page(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, project, env, key)): SecretP,
) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    let loaded = async {
        let perms = s.coffer.secrets.env_perms(&user.who, path).await?;
        let secret = s.coffer.secrets.get_secret(&user.who, path, &key, false).await?;
        Ok::<_, ServiceError>((perms, secret))
    }
    .await;
    match loaded {
        Ok((perms, secret)) if perms.has(Permission::Update) => {
            let st = EditState {
                key: Some(&key),
                value_type: &secret.value_type,
                description: &secret.description,
                version: secret.version,
                perms,
            };
            html(StatusCode::OK, edit_form(&user.viewer(), path, &st, "", None))
        }
        Ok(_) => error_page(Some(&user.viewer()), &ServiceError::PermissionDenied),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST …/secrets/new`: create (or, for a key that exists, update).
pub(crate) async fn new_submit(
    State(s): State<AppState>,
    note: AuditNote,
    Path((org, project, env)): EnvP,
    SessionForm(user, f): SessionForm<SecretForm>,
) -> Response {
    let key = f.key.trim().to_owned();
    save(&s, &user, &note, (&org, &project, &env), &key, true, f).await
}

/// A new secret must not exist yet: "New secret" never overwrites one
/// (a soft-deleted key may be created again, which restores it).
async fn must_be_new(s: &AppState, user: &UiUser, path: (&str, &str, &str), key: &str) -> Result<(), ServiceError> {
    match s.coffer.secrets.get_secret(&user.who, path, key, false).await {
        Ok(_) => Err(ServiceError::Conflict(format!(
            "a secret named {key} exists already: edit it instead"
        ))),
        Err(ServiceError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `POST …/secrets/{key}/edit`: a new version.
pub(crate) async fn edit_submit(
    State(s): State<AppState>,
    note: AuditNote,
    Path((org, project, env, key)): SecretP,
    SessionForm(user, f): SessionForm<SecretForm>,
) -> Response {
    save(&s, &user, &note, (&org, &project, &env), &key, false, f).await
}

async fn save(
    s: &AppState,
    user: &UiUser,
    note: &AuditNote,
    path: (&str, &str, &str),
    key: &str,
    new: bool,
    f: SecretForm,
) -> Response {
    let value_type = f.value_type.trim().to_owned();
    let input = SecretInput {
        value: textarea_text(f.value),
        value_type: Some(value_type.clone()).filter(|t| !t.is_empty()),
        description: Some(f.description.clone()),
    };
    let base = f.base.trim().parse::<i64>().ok().filter(|_| !new);
    let written = match if new {
        must_be_new(s, user, path, key).await
    } else {
        Ok(())
    } {
        Ok(()) => match base {
            Some(base) => s
                .coffer
                .secrets
                .put_secret_cas(&user.who, path, key, input, Some(base))
                .await
                .map_err(|e| lost_update(e, base)),
            None => s.coffer.secrets.put_secret(&user.who, path, key, input).await,
        },
        Err(e) => Err(e),
    };
    match written {
        Ok(written) => {
            note.action(if written.version == 1 {
                "secret.create"
            } else {
                "secret.update"
            });
            see_other(&format!("{}#saved", env_url(path.0, path.1, path.2)))
        }
        Err(e) => {
            let (status, code, message) = describe(&e);
            // The form again, with what was typed but the value.
            let perms = s.coffer.secrets.env_perms(&user.who, path).await.unwrap_or_default();
            let st = EditState {
                key: (!new).then_some(key),
                value_type: if value_type.is_empty() { "text" } else { &value_type },
                description: &f.description,
                version: 0,
                perms,
            };
            let typed_key = if new { key } else { "" };
            with_code(
                status,
                code,
                edit_form(&user.viewer(), path, &st, typed_key, Some(&message)),
            )
        }
    }
}

/// A compare-and-set refusal as the edit form's message: someone saved
/// another version since the form was opened; nothing was written.
fn lost_update(e: ServiceError, base: i64) -> ServiceError {
    match e {
        ServiceError::Invalid(m) if m.starts_with("check-and-set") => ServiceError::Conflict(format!(
            "this secret changed since you opened it at version {base}: nothing was saved; \
             open it again to edit the current version"
        )),
        e => e,
    }
}

#[derive(Deserialize)]
pub(crate) struct ValidateBody {
    #[serde(rename = "type")]
    value_type: String,
    value: Zeroizing<String>,
}

/// `POST …/envs/{env}/validate` (fetch, `X-CSRF-Token`, JSON
/// `{type, value}`): whether a value fits its type, with the service's
/// message (which never quotes the value). The edit form asks as you type
/// (debounced) for YAML; JSON is checked in the page too.
pub(crate) async fn validate(headers: HeaderMap, user: UiUser, body: Bytes) -> Response {
    if !user.csrf_ok(header_csrf(&headers)) {
        return csrf_refused(true);
    }
    let Ok(b) = serde_json::from_slice::<ValidateBody>(&body) else {
        return json_error(&ServiceError::Invalid("give {\"type\": …, \"value\": …}".into()));
    };
    let Some(t) = ValueType::parse(&b.value_type) else {
        return json_error(&ServiceError::Invalid(format!("type {:?} is unknown", b.value_type)));
    };
    match t.validate(&b.value) {
        Ok(()) => axum::Json(json!({ "valid": true, "message": "" })).into_response(),
        Err(m) => axum::Json(json!({ "valid": false, "message": m })).into_response(),
    }
}

/// One control of the value, shown for the types in `types`; the others
/// are rendered disabled and hidden (a disabled control is not sent).
fn value_control(id: &str, types: &str, active: bool, label: &str, control: Markup) -> Markup {
    html! {
        div.value-control data-types=(types) hidden[!active] {
            label for=(id) { (label) }
            (control)
        }
    }
}

fn edit_form(
    viewer: &Viewer<'_>,
    path: (&str, &str, &str),
    st: &EditState<'_>,
    typed_key: &str,
    error: Option<&str>,
) -> Markup {
    let (org, project, env) = path;
    let base = env_url(org, project, env);
    let (title, action) = match st.key {
        Some(k) => (
            format!("Edit {k}"),
            format!("{}/edit", secret_url(org, project, env, k)),
        ),
        None => ("New secret".to_owned(), format!("{base}/secrets/new")),
    };
    let t = st.value_type;
    let is = |names: &[&str]| names.contains(&t);
    let text_like = is(&["text", "json", "yaml"]) || ValueType::parse(t).is_none();
    let may_reveal = st.perms.has(Permission::Reveal);
    layout(
        &title,
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            p { a href=(base) { "← Secrets in " (env) } }
            h1 { (title) }
            @if let Some(k) = st.key {
                p.muted { "Version " (st.version) ". Saving makes version " (st.version + 1) "; "
                    a href={ (secret_url(org, project, env, k)) "/history" } { "history" } "." }
            }
            (error_line(error))
            form.card #secret-form method="post" action=(action) data-validate={ (base) "/validate" } {
                (csrf_field(viewer.csrf))
                @if st.key.is_some() {
                    input type="hidden" name="base" value=(st.version);
                }
                @if st.key.is_none() {
                    label for="key" { "Key" }
                    input #key type="text" name="key" value=(typed_key) required maxlength="256"
                        pattern="[A-Za-z_][A-Za-z0-9_]*" autocomplete="off" spellcheck="false"
                        title="letters, digits and _, not starting with a digit";
                }
                label for="value_type" { "Type" }
                select #value_type name="value_type" {
                    @for vt in TYPES {
                        option value=(vt.as_str()) selected[vt.as_str() == t] { (vt.as_str()) }
                    }
                }
                (value_control("value-text", "text json yaml", text_like, "Value", html! {
                    textarea #value-text name="value" rows="6" spellcheck="false" autocomplete="off"
                        disabled[!text_like] required[st.key.is_none()] {}
                }))
                (value_control("value-password", "password", is(&["password"]), "Value (masked)", html! {
                    input #value-password type="password" name="value" autocomplete="new-password"
                        disabled[!is(&["password"])];
                }))
                (value_control("value-boolean", "boolean", is(&["boolean"]), "Value", html! {
                    select #value-boolean name="value" required disabled[!is(&["boolean"])] {
                        option value="" { "— choose —" }
                        option value="true" { "true" }
                        option value="false" { "false" }
                    }
                }))
                (value_control("value-integer", "integer", is(&["integer"]), "Value (a whole number)", html! {
                    input #value-integer type="text" name="value" inputmode="numeric" pattern="-?[0-9]{1,19}"
                        autocomplete="off" required disabled[!is(&["integer"])];
                }))
                p #value-check.muted aria-live="polite" {}
                @if let (Some(k), true) = (st.key, may_reveal) {
                    button.secondary #reveal-into type="button" hidden data-js
                        data-reveal={ (secret_url(org, project, env, k)) "/reveal" } {
                        "Reveal the current value into the field"
                    }
                    p.muted { "The field is empty until you reveal (recorded as a reveal). Saving an empty field saves an empty value." }
                }
                label for="description" { "Description" }
                textarea #description name="description" rows="2" maxlength="1000" { (st.description) }
                div.row {
                    button type="submit" { "Save" }
                    a href=(base) { "Cancel" }
                }
            }
            @if let (Some(k), true) = (st.key, st.perms.has(Permission::Delete)) {
                form.card.danger #delete-form method="post" action={ (secret_url(org, project, env, k)) "/delete" } {
                    (csrf_field(viewer.csrf))
                    h2 { "Delete " (k) }
                    p { "It disappears from lists, reads and injects; its history stays and it can be restored." }
                    label.check { input #delete-confirm type="checkbox" name="confirm" value="yes" required; " I understand" }
                    button.danger type="submit" { "Delete " (k) }
                }
            }
        },
    )
}

// ---------------------------------------------------------------- delete / restore / purge

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfirmForm {
    confirm: String,
    version: String,
}

fn unconfirmed() -> ServiceError {
    ServiceError::Invalid("tick \"I understand\" to confirm".into())
}

/// `POST …/secrets/{key}/delete` (with `confirm=yes`): soft delete.
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path((org, project, env, key)): SecretP,
    SessionForm(user, f): SessionForm<ConfirmForm>,
) -> Response {
    if f.confirm != "yes" {
        return error_page(Some(&user.viewer()), &unconfirmed());
    }
    match s
        .coffer
        .secrets
        .delete_secret(&user.who, (&org, &project, &env), &key)
        .await
    {
        Ok(()) => see_other(&format!("{}#deleted", env_url(&org, &project, &env))),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST …/secrets/{key}/restore`: undo a soft delete.
pub(crate) async fn restore(
    State(s): State<AppState>,
    Path((org, project, env, key)): SecretP,
    SessionForm(user, _): SessionForm<ConfirmForm>,
) -> Response {
    match s
        .coffer
        .secrets
        .restore_secret(&user.who, (&org, &project, &env), &key)
        .await
    {
        Ok(_) => see_other(&env_url(&org, &project, &env)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST …/secrets/{key}/purge` (with `confirm=yes`): gone for good.
pub(crate) async fn purge(
    State(s): State<AppState>,
    Path((org, project, env, key)): SecretP,
    SessionForm(user, f): SessionForm<ConfirmForm>,
) -> Response {
    if f.confirm != "yes" {
        return error_page(Some(&user.viewer()), &unconfirmed());
    }
    match s
        .coffer
        .secrets
        .purge_secret(&user.who, (&org, &project, &env), &key)
        .await
    {
        Ok(()) => see_other(&env_url(&org, &project, &env)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

// ---------------------------------------------------------------- history, diff, rollback

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PairQuery {
    a: Option<i64>,
    b: Option<i64>,
}

/// `GET …/secrets/{key}/history[?a=N&b=M]`: the versions, metadata of two
/// compared, rollback per version.
pub(crate) async fn history(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, project, env, key)): SecretP,
    Query(q): Query<PairQuery>,
) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    let loaded = async {
        let perms = s.coffer.secrets.env_perms(&user.who, path).await?;
        let versions = s.coffer.secrets.history(&user.who, path, &key).await?;
        Ok::<_, ServiceError>((perms, versions))
    }
    .await;
    match loaded {
        Ok((perms, versions)) => {
            let last = versions.last().map_or(0, |v| v.version);
            let b = q.b.unwrap_or(last);
            let a =
                q.a.unwrap_or_else(|| versions.iter().rev().nth(1).map_or(last, |v| v.version));
            html(
                StatusCode::OK,
                history_page(&user.viewer(), (path, &key), &versions, (a, b), perms),
            )
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

fn history_page(
    viewer: &Viewer<'_>,
    ((org, project, env), key): ((&str, &str, &str), &str),
    versions: &[VersionView],
    (a, b): (i64, i64),
    perms: PermSet,
) -> Markup {
    let url = secret_url(org, project, env, key);
    let current = versions.last().map_or(0, |v| v.version);
    let va = versions.iter().find(|v| v.version == a);
    let vb = versions.iter().find(|v| v.version == b);
    let may_update = perms.has(Permission::Update);
    layout(
        &format!("History of {key}"),
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            p { a href=(env_url(org, project, env)) { "← Secrets in " (env) } }
            h1 { "History of " code { (key) } }
            div.table-wrap {
                table #versions {
                    thead { tr {
                        th scope="col" { "Version" }
                        th scope="col" { "Type" }
                        th scope="col" { "By" }
                        th scope="col" { "At" }
                        th scope="col" { span.muted { "Rollback" } }
                    } }
                    tbody {
                        @for v in versions.iter().rev() {
                            tr data-version=(v.version) {
                                th scope="row" { (v.version) @if v.version == current { " " span.badge { "current" } } }
                                td { (v.value_type) }
                                td { (v.created_by) }
                                td { time datetime=(v.created_at) { (v.created_at) } }
                                td.actions {
                                    @if may_update && v.version != current {
                                        form.rollback method="post" action={ (url) "/rollback" } {
                                            (csrf_field(viewer.csrf))
                                            input type="hidden" name="version" value=(v.version);
                                            label.check {
                                                input type="checkbox" name="confirm" value="yes" required;
                                                " I understand"
                                            }
                                            button.secondary type="submit" { "Roll back to v" (v.version) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if may_update {
                p.muted { "A rollback writes a new version holding that version's value and type; nothing is removed." }
            }
            h2 { "Compare two versions" }
            form.card.row #compare method="get" action={ (url) "/history" } {
                label for="cmp-a" { "From" }
                select #cmp-a name="a" {
                    @for v in versions { option value=(v.version) selected[v.version == a] { "v" (v.version) } }
                }
                label for="cmp-b" { "to" }
                select #cmp-b name="b" {
                    @for v in versions { option value=(v.version) selected[v.version == b] { "v" (v.version) } }
                }
                button.secondary type="submit" { "Compare" }
            }
            @if let (Some(va), Some(vb)) = (va, vb) {
                div.table-wrap {
                    table #meta-diff {
                        thead { tr { th scope="col" { "" } th scope="col" { "v" (va.version) } th scope="col" { "v" (vb.version) } } }
                        tbody {
                            @for (name, x, y) in [("Type", &va.value_type, &vb.value_type),
                                                  ("By", &va.created_by, &vb.created_by),
                                                  ("At", &va.created_at, &vb.created_at)] {
                                tr.changed[x != y] { th scope="row" { (name) } td { (x) } td { (y) } }
                            }
                        }
                    }
                }
                @if perms.has(Permission::Reveal) {
                    p {
                        button #diff-values type="button" hidden data-js
                            data-url={ (url) "/history/diff" } data-a=(va.version) data-b=(vb.version) {
                            "Reveal both values and show their difference"
                        }
                    }
                    p.muted { "Values are fetched only when you press it; that is recorded as a reveal (of two values)." }
                    div #value-diff aria-live="polite" {}
                } @else {
                    p.muted #no-value-diff { "You may compare metadata, not the values." }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct DiffBody {
    a: i64,
    b: i64,
}

/// `POST …/secrets/{key}/history/diff` (fetch, `X-CSRF-Token`, JSON
/// `{a, b}`): both values revealed (recorded as `secret.reveal`, two
/// values) as a line diff `{lines: [{op, text}]}` (`op`: " ", "-", "+").
pub(crate) async fn diff(
    State(s): State<AppState>,
    headers: HeaderMap,
    user: UiUser,
    note: AuditNote,
    Path((org, project, env, key)): SecretP,
    body: Bytes,
) -> Response {
    if !user.csrf_ok(header_csrf(&headers)) {
        return csrf_refused(true);
    }
    let Ok(b) = serde_json::from_slice::<DiffBody>(&body) else {
        return json_error(&ServiceError::Invalid("give {\"a\": VERSION, \"b\": VERSION}".into()));
    };
    match s
        .coffer
        .secrets
        .reveal_versions(&user.who, (&org, &project, &env), &key, [b.a, b.b])
        .await
    {
        Ok([va, vb]) => {
            note.values(2);
            let lines: Vec<_> = line_diff(&va, &vb)
                .into_iter()
                .map(|(op, text)| json!({ "op": op.to_string(), "text": text }))
                .collect();
            axum::Json(json!({ "a": b.a, "b": b.b, "lines": lines })).into_response()
        }
        Err(e) => json_error(&e),
    }
}

/// Largest line-count product the diff aligns (LCS); beyond it every line
/// of `a` is shown removed and every line of `b` added.
const DIFF_CELLS: usize = 4_000_000;

/// A line diff of `a` to `b`: (' ' kept, '-' removed, '+' added, line).
pub(super) fn line_diff<'a>(a: &'a str, b: &'a str) -> Vec<(char, &'a str)> {
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    let (n, m) = (x.len(), y.len());
    if n.saturating_mul(m) > DIFF_CELLS {
        return x.iter().map(|l| ('-', *l)).chain(y.iter().map(|l| ('+', *l))).collect();
    }
    // lcs[i][j]: longest common subsequence of x[i..] and y[j..].
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if x[i] == y[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(n + m));
    while i < n && j < m {
        if x[i] == y[j] {
            out.push((' ', x[i]));
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            out.push(('-', x[i]));
            i += 1;
        } else {
            out.push(('+', y[j]));
            j += 1;
        }
    }
    out.extend(x[i..].iter().map(|l| ('-', *l)));
    out.extend(y[j..].iter().map(|l| ('+', *l)));
    out
}

/// `POST …/secrets/{key}/rollback` (`version`, `confirm=yes`).
pub(crate) async fn rollback(
    State(s): State<AppState>,
    Path((org, project, env, key)): SecretP,
    SessionForm(user, f): SessionForm<ConfirmForm>,
) -> Response {
    if f.confirm != "yes" {
        return error_page(Some(&user.viewer()), &unconfirmed());
    }
    let Ok(version) = f.version.trim().parse::<i64>() else {
        return error_page(
            Some(&user.viewer()),
            &ServiceError::Invalid("version must be a whole number".into()),
        );
    };
    match s
        .coffer
        .secrets
        .rollback(&user.who, (&org, &project, &env), &key, version)
        .await
    {
        Ok(_) => see_other(&format!("{}/history", secret_url(&org, &project, &env, &key))),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

// ---------------------------------------------------------------- import / export

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct ImportForm {
    format: String,
    content: Zeroizing<String>,
    /// apply: the plan's versions, `KEY=VERSION,…`
    base: String,
}

fn format_of(name: &str) -> Result<Format, ServiceError> {
    match name {
        "" | "env" => Ok(Format::Env),
        "json" => Ok(Format::Json),
        "yaml" => Ok(Format::Yaml),
        other => Err(ServiceError::Invalid(format!(
            "format {other:?} is unknown; use env, json or yaml"
        ))),
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Env => "env",
        Format::Json => "json",
        Format::Yaml => "yaml",
    }
}

/// `GET …/envs/{env}/import`: a file (read into the text area by the
/// script) or pasted text, and its format.
pub(crate) async fn import_page(State(s): State<AppState>, user: UiUser, Path((org, project, env)): EnvP) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    match s.coffer.secrets.env_perms(&user.who, path).await {
        Ok(perms) if may_import(perms) => html(StatusCode::OK, import_form(&user.viewer(), path, "env", "", None)),
        Ok(_) => error_page(Some(&user.viewer()), &ServiceError::PermissionDenied),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// An import plans from the plaintexts (*reveal*) and writes new keys
/// (*create*) or versions (*update*).
fn may_import(p: PermSet) -> bool {
    p.has(Permission::Reveal) && (p.has(Permission::Create) || p.has(Permission::Update))
}

fn import_form(
    viewer: &Viewer<'_>,
    (org, project, env): (&str, &str, &str),
    format: &str,
    content: &str,
    error: Option<&str>,
) -> Markup {
    let base = env_url(org, project, env);
    layout(
        "Import",
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            p { a href=(base) { "← Secrets in " (env) } }
            h1 { "Import into " (env) }
            p { "The plan comes first: which keys would be created, updated or left unchanged, and which cannot be written. Nothing is written until you apply it. Keys the environment has but the file lacks are left alone." }
            (error_line(error))
            form.card #import-form method="post" action={ (base) "/import" } {
                (csrf_field(viewer.csrf))
                label for="import-format" { "Format" }
                select #import-format name="format" {
                    @for f in ["env", "json", "yaml"] { option value=(f) selected[f == format] { (f) } }
                }
                div data-js hidden {
                    label for="import-file" { "File" }
                    input #import-file type="file" accept=".env,.json,.yaml,.yml,text/plain,application/json";
                }
                label for="import-content" { "Content" }
                textarea #import-content name="content" rows="12" spellcheck="false" autocomplete="off" required { (content) }
                button type="submit" { "Show the plan" }
            }
        },
    )
}

/// `POST …/envs/{env}/import`: the push plan (`env.push_plan`), and an
/// Apply form carrying the file and the plan's versions.
pub(crate) async fn import_plan(
    State(s): State<AppState>,
    Path((org, project, env)): EnvP,
    SessionForm(user, f): SessionForm<ImportForm>,
) -> Response {
    push(&s, &user, (&org, &project, &env), f, false).await
}

/// `POST …/envs/{env}/import/apply`: the plan written (`env.push`), all or
/// nothing, only over the versions the shown plan was based on.
pub(crate) async fn import_apply(
    State(s): State<AppState>,
    Path((org, project, env)): EnvP,
    SessionForm(user, f): SessionForm<ImportForm>,
) -> Response {
    push(&s, &user, (&org, &project, &env), f, true).await
}

/// `KEY=VERSION,…` of a plan's Apply form.
fn parse_base(text: &str) -> Result<std::collections::BTreeMap<String, i64>, ServiceError> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .and_then(|(k, v)| Some((k.to_owned(), v.parse::<i64>().ok()?)))
                .ok_or_else(|| ServiceError::Invalid("the plan's versions are malformed: plan again".into()))
        })
        .collect()
}

async fn push(s: &AppState, user: &UiUser, path: (&str, &str, &str), f: ImportForm, apply: bool) -> Response {
    let format = match format_of(&f.format) {
        Ok(fm) => fm,
        Err(e) => return error_page(Some(&user.viewer()), &e),
    };
    let base = if apply {
        match parse_base(&f.base) {
            Ok(b) => Some(b),
            Err(e) => return error_page(Some(&user.viewer()), &e),
        }
    } else {
        None
    };
    let text = textarea_text(f.content);
    let content = text.clone();
    let req = PushRequest {
        input: SyncInput::Content(format, text),
        apply,
        base,
    };
    match s.coffer.secrets.sync_push(&user.who, path, req).await {
        Ok(plan) => html(StatusCode::OK, plan_page(&user.viewer(), path, format, &content, &plan)),
        Err(e) => {
            let (status, code, message) = describe(&e);
            with_code(
                status,
                code,
                import_form(&user.viewer(), path, format_name(format), &content, Some(&message)),
            )
        }
    }
}

fn action_name(a: PushAction) -> &'static str {
    match a {
        PushAction::Create => "create",
        PushAction::Update => "update",
        PushAction::Unchanged => "unchanged",
        PushAction::Error => "error",
        PushAction::Refused => "refused",
    }
}

fn plan_page(
    viewer: &Viewer<'_>,
    (org, project, env): (&str, &str, &str),
    format: Format,
    content: &str,
    plan: &PushView,
) -> Markup {
    let base = env_url(org, project, env);
    let versions: Vec<String> = plan.keys.iter().map(|k| format!("{}={}", k.key, k.version)).collect();
    let writes = plan.created + plan.updated;
    layout(
        "Import plan",
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            p { a href=(base) { "← Secrets in " (env) } }
            h1 { @if plan.applied { "Imported into " } @else { "Import plan for " } (env) }
            @if plan.applied {
                p.notice #plan-applied role="status" { "Applied: " (plan.created) " created, " (plan.updated) " updated, in one transaction." }
            }
            ul.counts #plan-counts {
                li { span #plan-created { (plan.created) } " created" }
                li { span #plan-updated { (plan.updated) } " updated" }
                li { span #plan-unchanged { (plan.unchanged) } " unchanged" }
                li { span #plan-errors { (plan.errors) } " errors" }
            }
            div.table-wrap {
                table #plan {
                    thead { tr {
                        th scope="col" { "Key" }
                        th scope="col" { "Action" }
                        th scope="col" { "Version" }
                        th scope="col" { "Line" }
                        th scope="col" { "Problem" }
                    } }
                    tbody {
                        @for k in &plan.keys {
                            tr data-key=(k.key) data-action=(action_name(k.action)) class=(action_name(k.action)) {
                                th scope="row" { code { (k.key) } }
                                td { (action_name(k.action)) }
                                td { (k.version) }
                                td { @if let Some(l) = k.line { (l) } }
                                td.error-text { @if let Some(e) = &k.error { (e) } @else if let Some(w) = &k.warning { (w) } }
                            }
                        }
                    }
                }
            }
            @if !plan.applied {
                @if plan.errors > 0 {
                    p.error #plan-blocked role="alert" { "Fix the keys with errors and plan again: a push with errors writes nothing." }
                } @else if writes == 0 {
                    p.muted { "Nothing to write: the environment already holds these values." }
                } @else {
                    form.card #apply-form method="post" action={ (base) "/import/apply" } {
                        (csrf_field(viewer.csrf))
                        input type="hidden" name="format" value=(format_name(format));
                        input type="hidden" name="base" value=(versions.join(","));
                        textarea name="content" hidden aria-hidden="true" tabindex="-1" { (content) }
                        p { "Applying writes " (writes) " key(s) in one transaction, only if none of them changed since this plan." }
                        button type="submit" { "Apply" }
                    }
                }
                p { a href={ (base) "/import" } { "Start over" } }
            }
        },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ExportForm {
    format: String,
}

/// `POST …/envs/{env}/export` (`format`): the environment as a file, an
/// attachment (`no-store`); recorded as `env.pull` with its value count.
pub(crate) async fn export(
    State(s): State<AppState>,
    note: AuditNote,
    Path((org, project, env)): EnvP,
    SessionForm(user, f): SessionForm<ExportForm>,
) -> Response {
    let format = match format_of(&f.format) {
        Ok(fm) => fm,
        Err(e) => return error_page(Some(&user.viewer()), &e),
    };
    match s
        .coffer
        .secrets
        .sync_pull(&user.who, (&org, &project, &env), format)
        .await
    {
        Ok(pulled) => {
            note.values(pulled.count);
            let (kind, ext) = match format {
                Format::Env => ("text/plain; charset=utf-8", "env"),
                Format::Json => ("application/json", "json"),
                Format::Yaml => ("application/yaml", "yaml"),
            };
            // The slug is [a-z0-9-]; anything else becomes `_`.
            let name: String = env
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect();
            let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\""))
                .unwrap_or(HeaderValue::from_static("attachment"));
            let mut res = pulled.content.as_str().to_owned().into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            h.insert(header::CONTENT_DISPOSITION, disposition);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_keeps_common_lines_and_marks_changes() {
        let d = line_diff("a\nb\nc", "a\nB\nc\nd");
        assert_eq!(d, vec![(' ', "a"), ('-', "b"), ('+', "B"), (' ', "c"), ('+', "d")]);
        assert_eq!(line_diff("", "x"), vec![('+', "x")]);
        assert_eq!(line_diff("same", "same"), vec![(' ', "same")]);
        // Too large to align: all removed, then all added.
        let big = "x\n".repeat(2100);
        let d = line_diff(&big, &big);
        assert_eq!(d.len(), 4200);
        assert!(d[..2100].iter().all(|(op, _)| *op == '-'));
    }

    #[test]
    fn text_areas_send_crlf_which_becomes_lf() {
        let t = textarea_text(Zeroizing::new("a\r\nb\r\n".into()));
        assert_eq!(t.as_str(), "a\nb\n");
        assert_eq!(textarea_text(Zeroizing::new("lone\rcr".into())).as_str(), "lone\rcr");
    }

    #[test]
    fn the_plan_base_parses_or_is_refused() {
        let b = parse_base("A=1,B_2=0").unwrap_or_default();
        assert_eq!(b.get("A"), Some(&1));
        assert_eq!(b.get("B_2"), Some(&0));
        assert!(parse_base("").is_ok_and(|b| b.is_empty()));
        assert!(parse_base("A=x").is_err() && parse_base("A").is_err());
    }

    #[test]
    fn formats_parse_by_name() {
        assert!(matches!(format_of(""), Ok(Format::Env)));
        assert!(matches!(format_of("yaml"), Ok(Format::Yaml)));
        assert!(format_of("toml").is_err());
        for f in [Format::Env, Format::Json, Format::Yaml] {
            assert!(format_of(format_name(f)).is_ok_and(|g| g == f));
        }
    }
}
