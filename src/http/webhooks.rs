//! Signed webhooks (issue 17, `service::webhooks`): create, list, delete
//! an organization's hooks and read a hook's delivery log. Thin handlers:
//! one service call each.

use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::api::{Reply, ok};
use super::extract::{Auth, Body};
use crate::service::webhooks::WebhookInput;

pub(super) async fn list(State(s): State<AppState>, Auth(who): Auth, Path(org): Path<String>) -> Reply<impl Serialize> {
    ok(s.coffer.webhooks.list(&who, &org).await?)
}

pub(super) async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(b): Body<WebhookInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.webhooks.create(&who, &org, b).await?)
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    s.coffer.webhooks.delete(&who, &org, &id).await?;
    ok(serde_json::json!({}))
}

pub(super) async fn deliveries(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    ok(s.coffer.webhooks.deliveries(&who, &org, &id).await?)
}
