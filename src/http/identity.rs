//! Native identity routes: users, login sessions, TOTP, device flow,
//! tokens, members, groups, service accounts, grants (docs/access.md).
//! Thin: extract, call one service method, wrap in the envelope.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::AppState;
use super::api::{Reply, ok};
use super::audit::AuditNote;
use super::extract::{Auth, AuthPeer, Body, Peer};
use crate::service::{GrantInput, ServiceAccountInput};

#[derive(Deserialize)]
pub(super) struct NewUser {
    email: String,
    password: Zeroizing<String>,
}

#[derive(Deserialize)]
pub(super) struct Login {
    email: String,
    password: Zeroizing<String>,
    totp: Option<String>,
    recovery_code: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Refresh {
    refresh_token: Zeroizing<String>,
}

#[derive(Deserialize)]
pub(super) struct Code {
    code: String,
}

#[derive(Deserialize)]
pub(super) struct Approve {
    user_code: String,
    /// the approver's password (not needed within 5 minutes of a login)
    password: Option<Zeroizing<String>>,
    totp: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Deny {
    user_code: String,
}

#[derive(Deserialize)]
pub(super) struct DeviceToken {
    device_code: Zeroizing<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct NewToken {
    #[serde(default)]
    name: String,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    bind_certificate: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct SaToken {
    ttl_seconds: Option<u64>,
    bind_spki_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Member {
    email: String,
    role: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Email {
    email: String,
}

#[derive(Serialize)]
pub(super) struct RecoveryCodes {
    recovery_codes: Vec<Zeroizing<String>>,
}

pub(super) async fn create_user(
    State(s): State<AppState>,
    Auth(who): Auth,
    Body(b): Body<NewUser>,
) -> Reply<impl Serialize> {
    let (id, email) = s.coffer.identity.create_user(&who, &b.email, b.password).await?;
    ok(json!({ "id": id.to_string(), "email": email }))
}

pub(super) async fn login(
    State(s): State<AppState>,
    peer: Peer,
    note: AuditNote,
    Body(b): Body<Login>,
) -> Reply<impl Serialize> {
    note.tried(&b.email);
    ok(s.coffer
        .identity
        .login(
            peer.source,
            &b.email,
            b.password,
            b.totp.as_deref(),
            b.recovery_code.as_deref(),
        )
        .await?)
}

pub(super) async fn refresh(State(s): State<AppState>, peer: Peer, Body(b): Body<Refresh>) -> Reply<impl Serialize> {
    ok(s.coffer.identity.refresh(peer.source, &b.refresh_token).await?)
}

pub(super) async fn logout(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl Serialize> {
    s.coffer.identity.logout(&who).await?;
    ok(json!({ "revoked": true }))
}

pub(super) async fn whoami(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl Serialize> {
    ok(s.coffer.identity.whoami(&who).await?)
}

pub(super) async fn totp_enroll(
    State(s): State<AppState>,
    AuthPeer(who, peer): AuthPeer,
    Body(b): Body<Password>,
) -> Reply<impl Serialize> {
    ok(s.coffer.identity.totp_enroll(&who, peer.source, b.password).await?)
}

pub(super) async fn totp_verify(
    State(s): State<AppState>,
    Auth(who): Auth,
    Body(b): Body<Code>,
) -> Reply<impl Serialize> {
    ok(RecoveryCodes {
        recovery_codes: s.coffer.identity.totp_verify(&who, &b.code).await?,
    })
}

pub(super) async fn device_code(State(s): State<AppState>, peer: Peer, headers: HeaderMap) -> Reply<impl Serialize> {
    // Where the approval page lives: this server, as the client addressed it.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    let scheme = if s.tls { "https" } else { "http" };
    // Which client asked, for the approval page.
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    ok(s.coffer
        .identity
        .device_code(format!("{scheme}://{host}/device"), agent, peer.source)
        .await?)
}

pub(super) async fn device_approve(
    State(s): State<AppState>,
    AuthPeer(who, peer): AuthPeer,
    Body(b): Body<Approve>,
) -> Reply<impl Serialize> {
    s.coffer
        .identity
        .device_approve(&who, peer.source, &b.user_code, b.password, b.totp.as_deref())
        .await?;
    ok(json!({ "approved": true }))
}

/// `POST /api/v1/auth/device/deny {"user_code"}`: refuse a pending
/// device login; the CLI polling it stops with "denied".
pub(super) async fn device_deny(
    State(s): State<AppState>,
    Auth(who): Auth,
    Body(b): Body<Deny>,
) -> Reply<impl Serialize> {
    s.coffer.identity.device_deny(&who, &b.user_code).await?;
    ok(json!({ "denied": true }))
}

pub(super) async fn device_token(
    State(s): State<AppState>,
    peer: Peer,
    Body(b): Body<DeviceToken>,
) -> Reply<impl Serialize> {
    ok(s.coffer.identity.device_token(peer.source, &b.device_code).await?)
}

pub(super) async fn create_token(
    State(s): State<AppState>,
    AuthPeer(who, peer): AuthPeer,
    Body(b): Body<NewToken>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .identity
        .create_token(&who, &b.name, b.ttl_seconds, peer.cert.as_deref(), b.bind_certificate)
        .await?)
}

pub(super) async fn list_tokens(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl Serialize> {
    ok(s.coffer.identity.list_tokens(&who).await?)
}

pub(super) async fn revoke_token(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(accessor): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.identity.revoke_token(&who, &accessor).await?;
    ok(json!({ "revoked": true }))
}

#[derive(Deserialize)]
pub(super) struct PasswordChange {
    old_password: Zeroizing<String>,
    new_password: Zeroizing<String>,
}

#[derive(Deserialize)]
pub(super) struct Password {
    password: Option<Zeroizing<String>>,
}

pub(super) async fn change_password(
    State(s): State<AppState>,
    AuthPeer(who, peer): AuthPeer,
    Body(b): Body<PasswordChange>,
) -> Reply<impl Serialize> {
    let n = s
        .coffer
        .identity
        .change_password(&who, peer.source, b.old_password, b.new_password)
        .await?;
    ok(json!({ "changed": true, "revoked_tokens": n }))
}

pub(super) async fn reset_totp(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(email): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.identity.reset_totp(&who, &email).await?;
    ok(json!({ "totp_enabled": false }))
}

pub(super) async fn list_users(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl Serialize> {
    ok(s.coffer.identity.list_users(&who).await?)
}

pub(super) async fn get_user(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(email): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.identity.get_user(&who, &email).await?)
}

pub(super) async fn disable_user(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(email): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.identity.set_user_disabled(&who, &email, true).await?;
    ok(json!({ "disabled": true }))
}

pub(super) async fn enable_user(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(email): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.identity.set_user_disabled(&who, &email, false).await?;
    ok(json!({ "disabled": false }))
}

pub(super) async fn delete_user(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(email): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.identity.delete_user(&who, &email).await?;
    ok(json!({ "deleted": true }))
}

pub(super) async fn revoke_user_sessions(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(email): Path<String>,
) -> Reply<impl Serialize> {
    let n = s.coffer.identity.revoke_user_sessions(&who, &email).await?;
    ok(json!({ "revoked_tokens": n }))
}

pub(super) async fn list_members(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.list_members(&who, &org).await?)
}

pub(super) async fn set_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<Member>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.set_member(&who, &org, &b.email, &b.role).await?)
}

pub(super) async fn remove_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, email)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.access.remove_member(&who, &org, &email).await?;
    ok(json!({ "removed": true }))
}

pub(super) async fn create_group(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<Named>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.create_group(&who, &org, &b.name).await?)
}

pub(super) async fn list_groups(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.list_groups(&who, &org).await?)
}

pub(super) async fn add_group_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, group)): Path<(String, String)>,
    Body(b): Body<Email>,
) -> Reply<impl Serialize> {
    s.coffer.access.add_group_member(&who, &org, &group, &b.email).await?;
    ok(json!({ "group": group, "email": b.email }))
}

pub(super) async fn remove_group_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, group, email)): Path<(String, String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.access.remove_group_member(&who, &org, &group, &email).await?;
    ok(json!({ "removed": true }))
}

pub(super) async fn create_service_account(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<ServiceAccountInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.create_service_account(&who, &org, b).await?)
}

pub(super) async fn list_service_accounts(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.list_service_accounts(&who, &org).await?)
}

pub(super) async fn delete_service_account(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.access.delete_service_account(&who, &org, &name).await?;
    ok(json!({ "deleted": true }))
}

pub(super) async fn service_account_token(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
    Body(b): Body<SaToken>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .access
        .service_account_token(&who, &org, &name, b.ttl_seconds, b.bind_spki_sha256.as_deref())
        .await?)
}

pub(super) async fn service_account_tokens(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.service_account_tokens(&who, &org, &name).await?)
}

pub(super) async fn create_grant(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<GrantInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.create_grant(&who, &org, b).await?)
}

pub(super) async fn list_grants(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.access.list_grants(&who, &org).await?)
}

pub(super) async fn delete_grant(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.access.delete_grant(&who, &org, &id).await?;
    ok(json!({ "revoked": true }))
}
