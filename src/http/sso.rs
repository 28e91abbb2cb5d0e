//! Single sign-on (issue 20, docs/sso.md): thin handlers over
//! `service::sso`. The organization's provider settings (native API, org
//! admins); the CLI's start and callback (native API); Vault's
//! `auth/oidc/oidc/auth_url` and `auth/oidc/oidc/callback` (the wire
//! `bao login -method=oidc role=<org>` speaks). The dashboard's start and
//! callback are in `ui/sso.rs`. Routes are registered in the route table.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::AppState;
use super::api::{Reply, ok};
use super::audit::AuditNote;
use super::extract::{Auth, Body, VaultBody};
use super::vault_kv::{envelope, fail};
use crate::service::ServiceError;
use crate::service::sso::{SsoConfigInput, SsoPurpose};

pub(super) async fn get_config(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.sso.config(&who, &org).await?)
}

pub(super) async fn set_config(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<SsoConfigInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.sso.set_config(&who, &org, b).await?)
}

pub(super) async fn delete_config(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.sso.delete_config(&who, &org).await?;
    ok(json!({ "deleted": true }))
}

/// The CLI's start: where the person signs in.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Start {
    redirect_uri: String,
    client_nonce: String,
}

pub(super) async fn start(
    State(s): State<AppState>,
    Path(org): Path<String>,
    Body(b): Body<Start>,
) -> Reply<impl Serialize> {
    let url = s
        .coffer
        .sso
        .begin(&org, &b.redirect_uri, &b.client_nonce, SsoPurpose::Api)
        .await?;
    ok(json!({ "auth_url": url }))
}

/// What the provider sent to the loopback redirect, plus the client's
/// nonce. Debug leaves out the code.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct Callback {
    state: String,
    code: Zeroizing<String>,
    client_nonce: String,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback").finish_non_exhaustive()
    }
}

pub(super) async fn callback(
    State(s): State<AppState>,
    note: AuditNote,
    Body(b): Body<Callback>,
) -> Reply<impl Serialize> {
    let login = s
        .coffer
        .sso
        .finish(&b.state, &b.code, &b.client_nonce, SsoPurpose::Api)
        .await?;
    note.tried(&login.email);
    ok(json!({
        "access_token": login.session.access_token.as_str(),
        "refresh_token": login.session.refresh_token.as_str(),
        "token_type": login.session.token_type,
        "expires_in": login.session.expires_in,
        "accessor": login.session.accessor,
        "email": login.email,
        "org": login.org,
        "created": login.created,
        "groups": login.groups,
    }))
}

/// Vault's `auth_url` body: `role` names the organization.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct VaultAuthUrl {
    role: String,
    redirect_uri: String,
    client_nonce: String,
}

pub(super) async fn vault_auth_url(State(s): State<AppState>, VaultBody(b): VaultBody<VaultAuthUrl>) -> Response {
    if b.role.trim().is_empty() {
        return fail(ServiceError::Invalid(
            "role is required: it names the organization (bao login -method=oidc role=<org>)".into(),
        ));
    }
    match s
        .coffer
        .sso
        .begin(b.role.trim(), &b.redirect_uri, &b.client_nonce, SsoPurpose::Api)
        .await
    {
        Ok(url) => envelope(
            StatusCode::OK,
            "oidc",
            json!({ "auth_url": url }),
            Value::Null,
            Value::Null,
        ),
        Err(e) => fail(e),
    }
}

/// Vault's callback: the loopback listener's query, read from the query
/// string (GET, Vault's CLI) or a JSON body (POST).
pub(super) async fn vault_callback(
    State(s): State<AppState>,
    note: AuditNote,
    headers: HeaderMap,
    Query(q): Query<Callback>,
    body: axum::body::Bytes,
) -> Response {
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let b = if q.state.is_empty() && !body.is_empty() && (json_body || body.first() == Some(&b'{')) {
        match serde_json::from_slice::<Callback>(&body) {
            Ok(b) => b,
            Err(_) => {
                return fail(ServiceError::Invalid(
                    "the callback body must be JSON: state, code, client_nonce".into(),
                ));
            }
        }
    } else {
        q
    };
    match s
        .coffer
        .sso
        .finish(&b.state, &b.code, &b.client_nonce, SsoPurpose::Api)
        .await
    {
        Ok(login) => {
            note.tried(&login.email);
            super::vault_auth::auth_block(s.coffer.sso.vault_login(login), Value::Null)
        }
        Err(e) => fail(e),
    }
}
