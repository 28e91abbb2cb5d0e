//! Vault's token and login endpoints (`auth/token/*`, `auth/userpass/login/*`,
//! `auth/cert/login`): thin handlers over `service::vault`. Routes are
//! registered in the route table (`routes.rs`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::AppState;
use super::audit::AuditNote;
use super::extract::{Peer, VaultAuth, VaultBody, VaultSelfAuth};
use super::vault_kv::{envelope, fail};
use crate::service::vault::VaultLogin;

/// The caller's own token, as sent (lookup-self echoes it as `id`).
fn sent_token(h: &HeaderMap) -> String {
    if let Some(t) = h.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return t.trim().to_owned();
    }
    h.get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
        .unwrap_or_default()
}

fn data(v: Value) -> Response {
    envelope(StatusCode::OK, "token", v, Value::Null, Value::Null)
}

/// Vault's `auth` block of a login or token creation.
pub(super) fn auth_block(l: VaultLogin, warnings: Value) -> Response {
    let auth = json!({
        "client_token": l.token.as_str(),
        "accessor": l.accessor,
        "policies": l.policies,
        "token_policies": l.policies,
        "identity_policies": null,
        "metadata": l.metadata,
        "lease_duration": l.lease_duration,
        "renewable": false,
        "entity_id": "",
        "token_type": "service",
        "orphan": l.orphan,
        "mfa_requirement": null,
        "num_uses": 0,
    });
    envelope(StatusCode::OK, "token", Value::Null, auth, warnings)
}

pub(super) async fn lookup_self(
    State(s): State<AppState>,
    headers: HeaderMap,
    VaultSelfAuth(who): VaultSelfAuth,
) -> Response {
    let token = Zeroizing::new(sent_token(&headers));
    match s.coffer.vault.vault_lookup_self(&who, &token).await {
        Ok(info) => data(serde_json::to_value(&info).unwrap_or(Value::Null)),
        Err(e) => fail(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AccessorBody {
    #[serde(default)]
    accessor: String,
}

/// `{token}` of `auth/token/{lookup,renew,revoke}` (`increment` is read
/// and ignored: coffer tokens keep their expiry). Debug leaves out the token.
#[derive(Deserialize)]
pub(super) struct TokenBody {
    #[serde(default)]
    token: Zeroizing<String>,
}

impl std::fmt::Debug for TokenBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBody").finish_non_exhaustive()
    }
}

/// The warning of a renewal: the expiry does not move.
fn renew_warning() -> Value {
    json!(["coffer tokens keep the expiry they were issued with; renewing does not extend it"])
}

/// A revocation's answer: 204, or (nothing the caller may revoke: unknown,
/// or not its to revoke) 200 with the warning Vault gives for an unknown
/// accessor, so a token left alive says so.
fn revoked(done: bool) -> Response {
    if done {
        return StatusCode::NO_CONTENT.into_response();
    }
    envelope(
        StatusCode::OK,
        "token",
        Value::Null,
        Value::Null,
        json!(["No token found with this token ID or accessor that this token may revoke; nothing was revoked"]),
    )
}

/// `auth/token/lookup` `{token}`; without one, the caller's own token as
/// Vault does (lookup-self).
pub(super) async fn lookup(
    State(s): State<AppState>,
    headers: HeaderMap,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<TokenBody>,
) -> Response {
    let res = if b.token.is_empty() {
        let own = Zeroizing::new(sent_token(&headers));
        s.coffer.vault.vault_lookup_self(&who, &own).await
    } else {
        s.coffer.vault.vault_lookup_token(&who, &b.token).await
    };
    match res {
        Ok(info) => data(serde_json::to_value(&info).unwrap_or(Value::Null)),
        Err(e) => fail(e),
    }
}

pub(super) async fn renew(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<TokenBody>,
) -> Response {
    match s.coffer.vault.vault_renew_token(&who, &b.token).await {
        Ok(l) => auth_block(l, renew_warning()),
        Err(e) => fail(e),
    }
}

pub(super) async fn renew_accessor(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<AccessorBody>,
) -> Response {
    match s.coffer.vault.vault_renew_accessor(&who, &b.accessor).await {
        Ok(l) => auth_block(l, renew_warning()),
        Err(e) => fail(e),
    }
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<TokenBody>,
) -> Response {
    match s.coffer.vault.vault_revoke_token(&who, &b.token).await {
        Ok(done) => revoked(done),
        Err(e) => fail(e),
    }
}

pub(super) async fn revoke_accessor(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<AccessorBody>,
) -> Response {
    match s.coffer.vault.vault_revoke_accessor(&who, &b.accessor).await {
        Ok(done) => revoked(done),
        Err(e) => fail(e),
    }
}

pub(super) async fn lookup_accessor(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<AccessorBody>,
) -> Response {
    match s.coffer.vault.vault_lookup_accessor(&who, &b.accessor).await {
        Ok(info) => data(serde_json::to_value(&info).unwrap_or(Value::Null)),
        Err(e) => fail(e),
    }
}

/// `ttl` as Vault accepts it: seconds or a duration string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Ttl {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateBody {
    #[serde(default)]
    display_name: String,
    ttl: Option<Ttl>,
    #[serde(default)]
    policies: Vec<String>,
}

pub(super) async fn create(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<CreateBody>,
) -> Response {
    let ttl = match b.ttl {
        None => None,
        Some(Ttl::Seconds(n)) => Some(n.to_string()),
        Some(Ttl::Text(t)) => Some(t),
    };
    match s
        .coffer
        .vault
        .vault_create_token(&who, &b.display_name, ttl.as_deref(), &b.policies)
        .await
    {
        Ok(l) => auth_block(l, Value::Null),
        Err(e) => fail(e),
    }
}

pub(super) async fn renew_self(
    State(s): State<AppState>,
    headers: HeaderMap,
    VaultSelfAuth(who): VaultSelfAuth,
) -> Response {
    let token = Zeroizing::new(sent_token(&headers));
    match s.coffer.vault.vault_renew_self(&who, &token).await {
        Ok(l) => auth_block(l, renew_warning()),
        Err(e) => fail(e),
    }
}

pub(super) async fn revoke_self(State(s): State<AppState>, VaultSelfAuth(who): VaultSelfAuth) -> Response {
    match s.coffer.identity.revoke_self(&who).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(e),
    }
}

/// Debug leaves out the password and the code.
#[derive(Deserialize)]
pub(super) struct UserpassBody {
    #[serde(default)]
    password: Zeroizing<String>,
    totp: Option<String>,
    passcode: Option<String>,
}

impl std::fmt::Debug for UserpassBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserpassBody").finish_non_exhaustive()
    }
}

/// `X-Vault-MFA: <method>:<code>` (or the code alone).
fn mfa_header(h: &HeaderMap) -> Option<String> {
    let v = h.get("x-vault-mfa")?.to_str().ok()?.trim();
    let code = v.rsplit_once(':').map_or(v, |(_, c)| c);
    (!code.is_empty()).then(|| code.to_owned())
}

pub(super) async fn userpass_login(
    State(s): State<AppState>,
    peer: Peer,
    Path(user): Path<String>,
    headers: HeaderMap,
    note: AuditNote,
    VaultBody(b): VaultBody<UserpassBody>,
) -> Response {
    note.tried(&user);
    let totp = b.totp.or(b.passcode).or_else(|| mfa_header(&headers));
    match s
        .coffer
        .vault
        .vault_userpass_login(peer.source, &user, b.password, totp.as_deref())
        .await
    {
        Ok(l) => auth_block(l, Value::Null),
        Err(e) => fail(e),
    }
}

pub(super) async fn cert_login(State(s): State<AppState>, peer: Peer) -> Response {
    match s.coffer.vault.vault_cert_login(peer.source, peer.cert.as_deref()).await {
        Ok(l) => auth_block(l, Value::Null),
        Err(e) => fail(e),
    }
}

/// `auth/jwt/login` `{role, jwt}` (issue 19): the organization is the
/// `X-Vault-Namespace` header, the body's `org`, or the only one with a
/// role of that name.
pub(super) async fn jwt_login(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    note: AuditNote,
    VaultBody(b): VaultBody<super::jwt_auth::LoginBody>,
) -> Response {
    let namespace = headers
        .get("x-vault-namespace")
        .and_then(|v| v.to_str().ok())
        .map(|n| n.trim().trim_matches('/').to_owned())
        .filter(|n| !n.is_empty());
    let org = namespace.or(b.org);
    let mut attempt = crate::service::jwt_auth::JwtAttempt::default();
    let res = s
        .coffer
        .jwt
        .login(peer.source, org.as_deref(), &b.role, &b.jwt, &mut attempt)
        .await;
    note.jwt_login(&attempt, res.as_ref().ok().map(|l| l.accessor.as_str()));
    match res {
        Ok(l) => {
            let metadata = [
                ("coffer_kind".to_owned(), l.kind.as_str().to_owned()),
                ("coffer_name".to_owned(), l.service_account.clone()),
                ("org".to_owned(), l.org.clone()),
                ("role".to_owned(), l.role.clone()),
            ]
            .into();
            auth_block(
                VaultLogin {
                    policies: crate::service::vault::policies(l.kind, false),
                    lease_duration: l.expires_in,
                    metadata,
                    orphan: true,
                    accessor: l.accessor,
                    token: l.access_token,
                },
                Value::Null,
            )
        }
        Err(e) => fail(e),
    }
}
