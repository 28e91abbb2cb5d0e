//! Native API under `/api/v1`: organizations, projects, environments and
//! secrets. Each handler extracts, calls one service method and wraps the
//! result in the envelope `{"error":false,"message":"","data":…}`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::AppState;
use super::audit::AuditNote;
use super::error::ApiError;
use super::extract::{Auth, Body};
use crate::service::{SecretInput, SyncInput};

/// The success envelope, serialized straight from the typed data (no
/// intermediate `serde_json::Value` tree).
#[derive(Debug, Serialize)]
pub(super) struct Envelope<T> {
    error: bool,
    message: &'static str,
    data: T,
}

pub(super) type Reply<T> = Result<Json<Envelope<T>>, ApiError>;

pub(super) fn ok<T: Serialize>(data: T) -> Reply<T> {
    Ok(Json(Envelope {
        error: false,
        message: "",
        data,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct NewOrg {
    slug: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct NewEnv {
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    protected: bool,
}

/// Its Debug never shows the value.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct WriteSecret {
    #[schema(value_type = String)]
    value: Zeroizing<String>,
    #[serde(rename = "type")]
    value_type: Option<String>,
    description: Option<String>,
}

impl std::fmt::Debug for WriteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSecret")
            .field("value_type", &self.value_type)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct Rollback {
    version: i64,
}

#[derive(Debug, Deserialize)]
pub(super) struct RevealQuery {
    #[serde(default)]
    reveal: bool,
    /// with `reveal`: resolve the value's `${…}` references
    #[serde(default)]
    resolve: bool,
}

/// Whether a secret read asks for the value: the handler's own parse of
/// the query (decoded, `reveal` a strict bool), which the audit layer uses
/// to name the request before the handler runs. A query the handler
/// refuses reveals nothing.
pub(super) fn reveal_requested(uri: &axum::http::Uri) -> bool {
    Query::<RevealQuery>::try_from_uri(uri).is_ok_and(|Query(q)| q.reveal)
}

type OrgP = Path<String>;
type ProjectP = Path<(String, String)>;
type EnvP = Path<(String, String, String)>;
type SecretP = Path<(String, String, String, String)>;

/// `?deleted=true`: list what was deleted (and is restorable) instead.
#[derive(Debug, Deserialize)]
pub(super) struct DeletedQuery {
    #[serde(default)]
    deleted: bool,
}

/// `?now=true`: purge before the deletion window ends.
#[derive(Debug, Deserialize)]
pub(super) struct PurgeQuery {
    #[serde(default)]
    now: bool,
}

/// A list of live nodes, or of deleted ones.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Listing<T> {
    Live(Vec<T>),
    Deleted(Vec<crate::service::DeletedView>),
}

pub(super) async fn list_orgs(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(q): Query<DeletedQuery>,
) -> Reply<impl Serialize> {
    if q.deleted {
        return ok(Listing::Deleted(s.coffer.tenants.deleted_orgs(&who).await?));
    }
    ok(Listing::Live(s.coffer.tenants.list_orgs(&who).await?))
}

pub(super) async fn delete_org(State(s): State<AppState>, Auth(who): Auth, Path(org): OrgP) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.delete_org(&who, &org).await?)
}

pub(super) async fn restore_org(State(s): State<AppState>, Auth(who): Auth, Path(org): OrgP) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.restore_org(&who, &org).await?)
}

pub(super) async fn purge_org(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Query(q): Query<PurgeQuery>,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.purge_org(&who, &org, q.now).await?)
}

pub(super) async fn delete_project(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.delete_project(&who, &org, &p).await?)
}

pub(super) async fn restore_project(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.restore_project(&who, &org, &p).await?)
}

pub(super) async fn purge_project(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
    Query(q): Query<PurgeQuery>,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.purge_project(&who, &org, &p, q.now).await?)
}

pub(super) async fn delete_env(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.delete_env(&who, (&org, &p, &e)).await?)
}

pub(super) async fn restore_env(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.restore_env(&who, (&org, &p, &e)).await?)
}

pub(super) async fn purge_env(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
    Query(q): Query<PurgeQuery>,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.purge_env(&who, (&org, &p, &e), q.now).await?)
}

pub(super) async fn create_org(
    State(s): State<AppState>,
    Auth(who): Auth,
    Body(b): Body<NewOrg>,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.create_org(&who, &b.slug, &b.name).await?)
}

/// A rename: a new slug, a new display name, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct Rename {
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub(super) async fn rename_org(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Body(b): Body<Rename>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .tenants
        .rename_org(&who, &org, b.slug.as_deref(), b.name.as_deref())
        .await?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BreachPolicy {
    block_breached_passwords: bool,
}

/// `GET /orgs/{org}/breach-policy`
pub(super) async fn breach_policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.breach_policy(&who, &org).await?)
}

/// `PUT /orgs/{org}/breach-policy`
pub(super) async fn set_breach_policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Body(b): Body<BreachPolicy>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .tenants
        .set_breach_policy(&who, &org, b.block_breached_passwords)
        .await?)
}

pub(super) async fn rename_project(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
    Body(b): Body<Rename>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .tenants
        .rename_project(&who, &org, &p, b.slug.as_deref(), b.name.as_deref())
        .await?)
}

/// An environment change: slug, name, protection, each optional.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct EnvUpdate {
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    protected: Option<bool>,
}

pub(super) async fn update_env(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
    Body(b): Body<EnvUpdate>,
) -> Reply<impl Serialize> {
    let change = crate::service::EnvChange {
        slug: b.slug.as_deref(),
        name: b.name.as_deref(),
        protected: b.protected,
    };
    ok(s.coffer.tenants.update_env(&who, (&org, &p, &e), change).await?)
}

pub(super) async fn get_org(State(s): State<AppState>, Auth(who): Auth, Path(org): OrgP) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.get_org(&who, &org).await?)
}

pub(super) async fn list_projects(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Query(q): Query<DeletedQuery>,
) -> Reply<impl Serialize> {
    if q.deleted {
        return ok(Listing::Deleted(s.coffer.tenants.deleted_projects(&who, &org).await?));
    }
    ok(Listing::Live(s.coffer.tenants.list_projects(&who, &org).await?))
}

pub(super) async fn create_project(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Body(b): Body<NewOrg>,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.create_project(&who, &org, &b.slug, &b.name).await?)
}

pub(super) async fn get_project(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.get_project(&who, &org, &p).await?)
}

pub(super) async fn list_envs(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
    Query(q): Query<DeletedQuery>,
) -> Reply<impl Serialize> {
    if q.deleted {
        return ok(Listing::Deleted(s.coffer.tenants.deleted_envs(&who, &org, &p).await?));
    }
    ok(Listing::Live(s.coffer.tenants.list_envs(&who, &org, &p).await?))
}

pub(super) async fn create_env(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
    Body(b): Body<NewEnv>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .tenants
        .create_env(&who, &org, &p, &b.slug, &b.name, b.protected)
        .await?)
}

pub(super) async fn get_env(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
) -> Reply<impl Serialize> {
    ok(s.coffer.tenants.get_env(&who, &org, &p, &e).await?)
}

/// `GET …/projects/{project}/diff?a=ENV&b=ENV[&values=true]`.
#[derive(Debug, Deserialize)]
pub(super) struct DiffQuery {
    a: String,
    b: String,
    #[serde(default)]
    values: bool,
}

pub(super) async fn diff_envs(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
    Query(q): Query<DiffQuery>,
    note: AuditNote,
) -> Reply<impl Serialize> {
    let diff = s.coffer.secrets.diff(&who, (&org, &p), (&q.a, &q.b), q.values).await?;
    note.values(diff.value_count());
    ok(diff)
}

/// `POST …/projects/{project}/copy`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct CopyBody {
    from: String,
    to: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn copy_secrets(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p)): ProjectP,
    Body(b): Body<CopyBody>,
) -> Reply<impl Serialize> {
    let req = crate::service::CopyRequest {
        from: &b.from,
        to: &b.to,
        keys: &b.keys,
        all: b.all,
        dry_run: b.dry_run,
    };
    ok(s.coffer.secrets.copy(&who, (&org, &p), req).await?)
}

pub(super) async fn list_secrets(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
) -> Reply<impl Serialize> {
    ok(s.coffer.secrets.list_secrets(&who, &org, &p, &e).await?)
}

pub(super) async fn get_secret(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
    Query(q): Query<RevealQuery>,
    note: AuditNote,
) -> Reply<impl Serialize> {
    if q.reveal {
        note.action("secret.reveal");
    }
    let secret = if q.reveal && q.resolve {
        s.coffer.secrets.reveal_resolved(&who, (&org, &p, &e), &key).await?
    } else {
        s.coffer
            .secrets
            .get_secret(&who, (&org, &p, &e), &key, q.reveal)
            .await?
    };
    if q.reveal {
        note.values(1);
    }
    ok(secret)
}

pub(super) async fn put_secret(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
    note: AuditNote,
    Body(b): Body<WriteSecret>,
) -> Reply<impl Serialize> {
    let input = SecretInput {
        value: b.value,
        value_type: b.value_type,
        description: b.description,
    };
    let written = s.coffer.secrets.put_secret(&who, (&org, &p, &e), &key, input).await?;
    note.action(if written.version == 1 {
        "secret.create"
    } else {
        "secret.update"
    });
    ok(written)
}

pub(super) async fn delete_secret(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
) -> Reply<impl Serialize> {
    s.coffer.secrets.delete_secret(&who, (&org, &p, &e), &key).await?;
    ok(json!({ "key": key, "deleted": true }))
}

pub(super) async fn purge_secret(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
) -> Reply<impl Serialize> {
    s.coffer.secrets.purge_secret(&who, (&org, &p, &e), &key).await?;
    ok(json!({ "key": key, "purged": true }))
}

pub(super) async fn history(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
) -> Reply<impl Serialize> {
    ok(s.coffer.secrets.history(&who, (&org, &p, &e), &key).await?)
}

pub(super) async fn rollback(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
    Body(b): Body<Rollback>,
) -> Reply<impl Serialize> {
    ok(s.coffer.secrets.rollback(&who, (&org, &p, &e), &key, b.version).await?)
}

pub(super) async fn restore(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, key)): SecretP,
) -> Reply<impl Serialize> {
    ok(s.coffer.secrets.restore_secret(&who, (&org, &p, &e), &key).await?)
}

/// The inject answer: the envelope, plus `allowed_variables`, the names in
/// `data` that `coffer run` would refuse but this environment allows (the
/// CLI sets exactly those; docs/cli.md). No Debug: it holds the values.
#[derive(Serialize)]
pub(super) struct InjectEnvelope {
    error: bool,
    message: &'static str,
    data: std::collections::BTreeMap<String, Zeroizing<String>>,
    allowed_variables: Vec<String>,
}

pub(super) async fn inject(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
    note: AuditNote,
) -> Result<Json<InjectEnvelope>, ApiError> {
    let injected = s.coffer.secrets.inject(&who, (&org, &p, &e)).await?;
    note.values(injected.values.len());
    Ok(Json(InjectEnvelope {
        error: false,
        message: "",
        data: injected.values,
        allowed_variables: injected.allowed,
    }))
}

pub(super) async fn allowed_vars(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.allowed_vars(&who, (&org, &p, &e)).await?)
}

pub(super) async fn allow_var(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, name)): SecretP,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.allow_var(&who, (&org, &p, &e), &name).await?)
}

pub(super) async fn disallow_var(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e, name)): SecretP,
) -> Reply<impl Serialize> {
    let was = s.coffer.access.disallow_var(&who, (&org, &p, &e), &name).await?;
    ok(json!({ "name": name, "removed": was }))
}

/// `POST …/sync/push` and `…/sync/diff`: the file, as text in a format
/// (`content`, `format`: env, json, yaml) or as a map of names to strings
/// (`values`); push's `apply` and `base`. Its Debug never shows a value.
#[derive(Deserialize)]
pub(super) struct SyncBody {
    content: Option<Zeroizing<String>>,
    #[serde(default)]
    format: crate::service::formats::Format,
    values: Option<std::collections::BTreeMap<String, Zeroizing<String>>>,
    #[serde(default)]
    apply: bool,
    base: Option<std::collections::BTreeMap<String, i64>>,
}

impl std::fmt::Debug for SyncBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncBody")
            .field("format", &self.format)
            .field("apply", &self.apply)
            .finish_non_exhaustive()
    }
}

impl SyncBody {
    fn input(&mut self) -> Result<SyncInput, ApiError> {
        match (self.content.take(), self.values.take()) {
            (Some(text), None) => Ok(SyncInput::Content(self.format, text)),
            (None, Some(map)) => Ok(SyncInput::Values(map)),
            _ => Err(ApiError(crate::service::ServiceError::Invalid(
                "give the file as `content` (with `format`: env, json or yaml) or as `values` (a map), not both".into(),
            ))),
        }
    }
}

pub(super) async fn sync_push(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
    note: AuditNote,
    Body(mut b): Body<SyncBody>,
) -> Reply<impl Serialize> {
    if !b.apply {
        note.action("env.push_plan");
    }
    let req = crate::service::PushRequest {
        input: b.input()?,
        apply: b.apply,
        base: b.base.take(),
    };
    ok(s.coffer.secrets.sync_push(&who, (&org, &p, &e), req).await?)
}

pub(super) async fn sync_diff(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
    Body(mut b): Body<SyncBody>,
) -> Reply<impl Serialize> {
    let input = b.input()?;
    ok(s.coffer.secrets.sync_diff(&who, (&org, &p, &e), &input).await?)
}

/// `GET …/sync/pull?format=env|json|yaml`.
#[derive(Debug, Deserialize)]
pub(super) struct PullQuery {
    #[serde(default)]
    format: crate::service::formats::Format,
}

pub(super) async fn sync_pull(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): EnvP,
    Query(q): Query<PullQuery>,
    note: AuditNote,
) -> Reply<impl Serialize> {
    let pulled = s.coffer.secrets.sync_pull(&who, (&org, &p, &e), q.format).await?;
    note.values(pulled.count);
    ok(pulled)
}

/// Unknown native path: 503 while sealed, else 404, in the envelope.
pub(super) async fn fallback(State(s): State<AppState>, uri: axum::http::Uri) -> ApiError {
    match s.coffer.operator.require_unsealed() {
        Err(e) => ApiError(e),
        Ok(()) => ApiError(crate::service::ServiceError::NotFound(format!("route {}", uri.path()))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_secret_debug_never_shows_the_value() {
        let b: super::WriteSecret =
            serde_json::from_str(r#"{"value":"s3cret-write-value","type":"text"}"#).expect("body");
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("s3cret") && dbg.contains("text"), "{dbg}");
    }
}
