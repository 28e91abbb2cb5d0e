//! Protected environments (issue 17, `service::approvals`): approval
//! policies, change and access requests, decisions, break-glass and its
//! review queue. Thin handlers: one service call each.

use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::{Reply, ok};
use super::audit::AuditNote;
use super::extract::{Auth, Body};
use crate::service::approvals::{AccessRequestInput, PolicyInput};

type OrgP = Path<String>;
type OrgIdP = Path<(String, String)>;
type PolicyP = Path<(String, String, String)>;

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// only requests in this status (pending, applied, …)
    status: Option<String>,
    /// break-glass: reviewed windows too
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Decision {
    #[serde(default)]
    comment: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Review {
    /// accept | flag
    decision: String,
    #[serde(default)]
    comment: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct BreakGlass {
    reason: String,
}

pub(super) async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Query(q): Query<ListQuery>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.list(&who, &org, q.status.as_deref()).await?)
}

pub(super) async fn request_access(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Body(b): Body<AccessRequestInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.request_access(&who, &org, b).await?)
}

pub(super) async fn show(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): OrgIdP,
    note: AuditNote,
) -> Reply<impl Serialize> {
    let view = s.coffer.approvals.show(&who, &org, &id).await?;
    let values = usize::from(view.current_value.is_some()) + usize::from(view.proposed_value.is_some());
    if values > 0 {
        note.values(values);
    }
    ok(view)
}

pub(super) async fn approve(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): OrgIdP,
    Body(b): Body<Decision>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.decide(&who, &org, &id, true, &b.comment).await?)
}

pub(super) async fn reject(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): OrgIdP,
    Body(b): Body<Decision>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.decide(&who, &org, &id, false, &b.comment).await?)
}

pub(super) async fn policies(State(s): State<AppState>, Auth(who): Auth, Path(org): OrgP) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.policies(&who, &org).await?)
}

pub(super) async fn get_policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): PolicyP,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.policy(&who, (&org, &p, &e)).await?)
}

pub(super) async fn set_policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): PolicyP,
    Body(b): Body<PolicyInput>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.set_policy(&who, (&org, &p, &e), b).await?)
}

pub(super) async fn delete_policy(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): PolicyP,
) -> Reply<impl Serialize> {
    s.coffer.approvals.delete_policy(&who, (&org, &p, &e)).await?;
    ok(serde_json::json!({}))
}

/// `POST …/environments/{env}/break-glass` (an environment route).
pub(super) async fn break_glass(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, p, e)): PolicyP,
    Body(b): Body<BreakGlass>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.break_glass(&who, (&org, &p, &e), &b.reason).await?)
}

pub(super) async fn break_glass_queue(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): OrgP,
    Query(q): Query<ListQuery>,
) -> Reply<impl Serialize> {
    ok(s.coffer.approvals.break_glass_queue(&who, &org, q.all).await?)
}

pub(super) async fn review(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): OrgIdP,
    Body(b): Body<Review>,
) -> Reply<impl Serialize> {
    ok(s.coffer
        .approvals
        .review(&who, &org, &id, &b.decision, &b.comment)
        .await?)
}
