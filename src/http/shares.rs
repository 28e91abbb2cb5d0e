//! Native share-link routes (docs/share-links.md): create and list under an
//! organization, the organization's share policy, my links, revoke, and the
//! one anonymous route, `POST /api/v1/shares/open`, which takes the link id
//! in its body (not the path, so no record or access log holds it) and
//! answers a spent, expired, revoked or unknown link with one and the same
//! 404. Thin handlers over `service::shares`.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AppState;
use super::api::{Reply, ok};
use super::extract::{Auth, Body};
use crate::service::shares::{ShareInput, SharePolicyChange};

/// `POST /api/v1/orgs/{org}/shares`
pub(super) async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(input): Body<ShareInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.shares.create(&who, &org, input).await?)
}

/// `GET /api/v1/orgs/{org}/shares` (administrators)
pub(super) async fn list_org(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.shares.list_org(&who, &org).await?)
}

/// `GET /api/v1/shares`: my live links.
pub(super) async fn list_mine(State(s): State<AppState>, Auth(who): Auth) -> Reply<impl Serialize> {
    ok(s.coffer.shares.list_mine(&who).await?)
}

/// `DELETE /api/v1/shares/{handle}`
pub(super) async fn revoke(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(handle): Path<String>,
) -> Reply<impl Serialize> {
    s.coffer.shares.revoke(&who, &handle).await?;
    ok(serde_json::json!({ "handle": handle, "revoked": true }))
}

/// `GET /api/v1/orgs/{org}/share-policy`
pub(super) async fn policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
) -> Reply<impl Serialize> {
    ok(s.coffer.shares.policy(&who, &org).await?)
}

/// `PUT /api/v1/orgs/{org}/share-policy`
pub(super) async fn set_policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Body(change): Body<SharePolicyChange>,
) -> Reply<impl Serialize> {
    ok(s.coffer.shares.set_policy(&who, &org, change).await?)
}

/// `POST /api/v1/shares/open` body. No Debug of the id.
#[derive(Deserialize)]
pub(super) struct OpenBody {
    id: Zeroizing<String>,
}

/// `POST /api/v1/shares/open`: one view (anonymous).
pub(super) async fn open(State(s): State<AppState>, Body(body): Body<OpenBody>) -> Reply<impl Serialize> {
    ok(s.coffer.shares.open(&s.coffer.audit, &body.id).await?)
}
