//! JWT/OIDC workload-identity login (issue 19, `service::jwt_auth`): the
//! native login, and an organization's issuers and roles. Thin handlers:
//! one service call each. Vault's `auth/jwt/login` is in `vault_auth.rs`.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AppState;
use super::api::{Reply, ok};
use super::audit::AuditNote;
use super::extract::{Auth, Body, Peer};
use crate::service::jwt_auth::{IssuerInput, JwtAttempt, RoleInput};

/// `{org?, role, jwt}`. Debug leaves out the token.
#[derive(Deserialize)]
pub(super) struct LoginBody {
    #[serde(default)]
    pub(super) org: Option<String>,
    #[serde(default)]
    pub(super) role: String,
    #[serde(default)]
    pub(super) jwt: Zeroizing<String>,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("org", &self.org)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

pub(super) async fn login(
    State(s): State<AppState>,
    peer: Peer,
    note: AuditNote,
    Body(b): Body<LoginBody>,
) -> Reply<impl Serialize> {
    let mut attempt = JwtAttempt::default();
    let res = s
        .coffer
        .jwt
        .login(peer.source, b.org.as_deref(), &b.role, &b.jwt, &mut attempt)
        .await;
    note.jwt_login(&attempt, res.as_ref().ok().map(|l| l.accessor.as_str()));
    ok(res?)
}

pub(super) async fn list_issuers(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.jwt.list_issuers(&who, &org).await?)
}

pub(super) async fn add_issuer(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<IssuerInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.jwt.add_issuer(&who, &org, b).await?)
}

pub(super) async fn remove_issuer(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.jwt.remove_issuer(&who, &org, &name).await?;
    ok(serde_json::json!({}))
}

pub(super) async fn list_roles(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.jwt.list_roles(&who, &org).await?)
}

pub(super) async fn add_role(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<RoleInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.jwt.add_role(&who, &org, b).await?)
}

pub(super) async fn remove_role(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.jwt.remove_role(&who, &org, &name).await?;
    ok(serde_json::json!({}))
}
