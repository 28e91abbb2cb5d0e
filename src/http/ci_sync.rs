//! CI sync targets (issue 19, `service::ci_sync`): add, list with status,
//! show, change its credential, remove, sync now, and a target's queue with its dead letters.
//! Thin handlers: one service call each. No answer carries a credential.

use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::{Reply, ok};
use super::extract::{Auth, Body};
use crate::service::ci_sync::{CredentialInput, TargetInput};

/// `GET …/ci-sync?project=P&environment=E`: one environment's targets.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    project: Option<String>,
    environment: Option<String>,
}

pub(super) async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(q): Query<ListQuery>,
) -> Reply<impl Serialize> {
    let env = q.project.as_deref().zip(q.environment.as_deref());
    ok(s.coffer.ci_sync.list(&who, &org, env).await?)
}

pub(super) async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<TargetInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.ci_sync.create(&who, &org, b).await?)
}

pub(super) async fn show(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    ok(s.coffer.ci_sync.get(&who, &org, &id).await?)
}

/// `PUT|PATCH …/ci-sync/{id}`: a new credential (token or GitHub App),
/// tried against the target before it replaces the sealed one.
pub(super) async fn set_credential(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
    Body(b): Body<CredentialInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.ci_sync.set_credential(&who, &org, &id, b).await?)
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.ci_sync.delete(&who, &org, &id).await?;
    ok(serde_json::json!({}))
}

pub(super) async fn run(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    ok(s.coffer.ci_sync.run(&who, &org, &id).await?)
}

pub(super) async fn jobs(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    ok(s.coffer.ci_sync.jobs(&who, &org, &id).await?)
}
