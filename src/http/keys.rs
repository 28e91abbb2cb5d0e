//! Native key-lifecycle routes under `/api/v1/orgs/{org}/keks`: list,
//! rotate, re-wrap one batch, destroy a version. Root only; thin handlers.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, Body};
use crate::service::keys::{DEFAULT_REWRAP_BATCH, KekView, RewrapBatch};

#[derive(Debug, Serialize)]
pub(super) struct Envelope<T> {
    error: bool,
    message: &'static str,
    data: T,
}

type Reply<T> = Result<Json<Envelope<T>>, ApiError>;

fn ok<T: Serialize>(data: T) -> Reply<T> {
    Ok(Json(Envelope {
        error: false,
        message: "",
        data,
    }))
}

/// `GET /api/v1/orgs/{org}/keks`
pub(super) async fn list(State(s): State<AppState>, Auth(who): Auth, Path(org): Path<String>) -> Reply<Vec<KekView>> {
    ok(s.coffer.keys.list_keks(&who, &org).await?)
}

/// `POST /api/v1/orgs/{org}/keks/rotate`
pub(super) async fn rotate(State(s): State<AppState>, Auth(who): Auth, Path(org): Path<String>) -> Reply<KekView> {
    ok(s.coffer.keys.rotate_kek(&who, &org).await?)
}

#[derive(Debug, Deserialize)]
pub(super) struct RewrapRequest {
    batch: Option<usize>,
}

/// `POST /api/v1/orgs/{org}/keks/rewrap {"batch": N}`: one batch.
pub(super) async fn rewrap(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(req): Body<RewrapRequest>,
) -> Reply<RewrapBatch> {
    let batch = req.batch.unwrap_or(DEFAULT_REWRAP_BATCH);
    ok(s.coffer.keys.rewrap_batch(&who, &org, batch).await?)
}

/// `DELETE /api/v1/orgs/{org}/keks/{version}`: crypto-shred.
pub(super) async fn destroy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, version)): Path<(String, i64)>,
) -> Reply<serde_json::Value> {
    s.coffer.keys.destroy_kek(&who, &org, version).await?;
    ok(serde_json::json!({ "destroyed": version }))
}
