//! Database credentials (issue 21, `service::dbcreds`): connections,
//! roles, dynamic credentials and their leases, static rotation, on the
//! native API and on Vault's wire (`database/creds/<org>/<role>`,
//! `sys/leases/renew`, `sys/leases/revoke`, `sys/leases/revoke-prefix`).
//! Thin handlers: one service call each.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::api::{Reply, ok};
use super::error::VaultError;
use super::extract::{Auth, Body, VaultAuth, VaultBody};
use crate::service::dbcreds::{ConnectionInput, Credentials, LeaseView, RoleInput};

pub(super) async fn list_connections(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.dbcreds.list_connections(&who, &org).await?)
}

pub(super) async fn create_connection(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<ConnectionInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.dbcreds.create_connection(&who, &org, b).await?)
}

pub(super) async fn delete_connection(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.dbcreds.delete_connection(&who, &org, &name).await?;
    ok(json!({}))
}

pub(super) async fn list_roles(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.dbcreds.list_roles(&who, &org).await?)
}

pub(super) async fn create_role(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<RoleInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.dbcreds.create_role(&who, &org, b).await?)
}

pub(super) async fn delete_role(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.dbcreds.delete_role(&who, &org, &name).await?;
    ok(json!({}))
}

pub(super) async fn rotate(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, name)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    ok(s.coffer.dbcreds.rotate(&who, &org, &name).await?)
}

/// `POST …/database/creds/{role}` body.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CredsInput {
    /// seconds (the role's default TTL when absent)
    ttl: Option<i64>,
}

pub(super) async fn creds(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, role)): Path<(String, String)>,
    Body(b): Body<CredsInput>,
) -> Reply<Credentials> {
    ok(s.coffer.dbcreds.creds(&who, &org, &role, b.ttl).await?)
}

pub(super) async fn list_leases(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.dbcreds.list_leases(&who, &org).await?)
}

/// A lease operation's body (native and Vault).
#[derive(Debug, Default, Deserialize)]
pub(super) struct LeaseInput {
    #[serde(default)]
    lease_id: String,
    increment: Option<i64>,
    #[serde(default)]
    prefix: String,
}

/// The org of a native lease route must be the lease's.
fn same_org(org: &str, lease_id: &str) -> Result<(), crate::service::ServiceError> {
    let of = crate::service::dbcreds::lease_org(lease_id)?;
    if of == org {
        Ok(())
    } else {
        Err(crate::service::ServiceError::Invalid(format!(
            "lease {lease_id:?} is not of organization {org}"
        )))
    }
}

pub(super) async fn renew(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<LeaseInput>,
) -> Reply<LeaseView> {
    same_org(&org, &b.lease_id)?;
    ok(s.coffer.dbcreds.renew(&who, &b.lease_id, b.increment).await?)
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<LeaseInput>,
) -> Reply<impl Serialize> {
    same_org(&org, &b.lease_id)?;
    s.coffer.dbcreds.revoke(&who, &b.lease_id).await?;
    ok(json!({}))
}

pub(super) async fn revoke_prefix(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<LeaseInput>,
) -> Reply<impl Serialize> {
    same_org(&org, &b.prefix)?;
    ok(s.coffer.dbcreds.revoke_prefix(&who, &b.prefix).await?)
}

/// Vault's logical envelope with a lease.
fn leased(lease_id: &str, duration: i64, renewable: bool, data: Value) -> Response {
    let body = json!({
        "request_id": crate::ops::fresh_request_id(),
        "lease_id": lease_id,
        "renewable": renewable,
        "lease_duration": duration,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": "database",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `GET /v1/database/creds/<org>/<role>`.
pub(super) async fn vault_creds(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    Path((org, role)): Path<(String, String)>,
) -> Result<Response, VaultError> {
    let c = s.coffer.dbcreds.creds(&who, &org, &role, None).await?;
    Ok(leased(
        &c.lease_id,
        c.lease_duration,
        c.renewable,
        json!({ "username": c.username, "password": c.password.as_str() }),
    ))
}

/// `PUT /v1/sys/leases/renew` `{lease_id, increment}`.
pub(super) async fn vault_renew(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<LeaseInput>,
) -> Result<Response, VaultError> {
    let l = s.coffer.dbcreds.renew(&who, &b.lease_id, b.increment).await?;
    Ok(leased(&l.lease_id, l.lease_duration, l.renewable, Value::Null))
}

/// `PUT /v1/sys/leases/revoke` `{lease_id}`: 204.
pub(super) async fn vault_revoke(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(b): VaultBody<LeaseInput>,
) -> Result<Response, VaultError> {
    s.coffer.dbcreds.revoke(&who, &b.lease_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/sys/leases/revoke-prefix/<prefix>`: 204.
pub(super) async fn vault_revoke_prefix(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    Path(prefix): Path<String>,
) -> Result<Response, VaultError> {
    let out = s.coffer.dbcreds.revoke_prefix(&who, &prefix).await?;
    if out.failed.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(VaultError(crate::service::ServiceError::Conflict(format!(
            "{} leases were not revoked; the expiry job retries them",
            out.failed.len()
        ))))
    }
}
