//! The `Idempotency-Key` layer of the native API (docs/api.md,
//! "Idempotency keys"); the logic is `service::idempotency`.
//!
//! On a POST, PUT, PATCH or DELETE of a `/api/v1` route that changes
//! something, with the header and an authenticated caller:
//! - the header must be 1–255 visible ASCII characters, else 400;
//! - the request body is read (up to the body limit) and fingerprinted;
//! - the first request with a key runs; its answer, when it is a final one
//!   (any status but 401, 408, 409, 429 and 5xx, which release the key so
//!   a retry runs again) of at most [`MAX_STORED_ANSWER`] bytes with a known
//!   length, is stored before it is sent;
//! - a retry with the key and the same request gets that answer with
//!   `Idempotent-Replayed: true`; with another request, 422; while the
//!   first still runs it waits up to 10 s, then 409.
//!
//! Ignored (the request runs as without the header): other methods, routes
//! that only read (`secret.inject`, `env.diff`, `env.file_diff`: running
//! them twice has no second effect, and a stored answer must not outlive a
//! withdrawn permission), and requests without a valid token (logins, the
//! device flow, refresh: their handlers answer as always). Larger answers
//! and answers of unknown length (streams) are sent unbuffered and not
//! kept: the key is released.

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, BODY_LIMIT, Refusal};
use super::routes::{RouteAudit, route_audit};
use crate::service::idempotency::{Begin, check_key, fingerprint};

/// The request header.
pub(super) const KEY_HEADER: &str = "idempotency-key";
/// The header marking a replayed answer.
pub(super) const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Largest answer body kept for replay (bytes).
pub(super) const MAX_STORED_ANSWER: u64 = 1024 * 1024;

/// Statuses whose answer is not final: the key is released, a retry runs.
fn keeps(status: StatusCode) -> bool {
    !(status.is_server_error()
        || matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::CONFLICT
                | StatusCode::TOO_MANY_REQUESTS
        ))
}

/// Whether this request takes part: a changing method on a native route
/// that changes something.
fn applies(req: &Request) -> bool {
    let method = req.method();
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return false;
    }
    let Some(path) = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str) else {
        return false;
    };
    path.starts_with("/api/v1/")
        && match route_audit(method, path) {
            Some(RouteAudit::Action(action)) => !super::audit::reads_only(action),
            _ => false,
        }
}

/// The layer (see the module doc).
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(raw) = req.headers().get(KEY_HEADER) else {
        return next.run(req).await;
    };
    if !applies(&req) {
        return next.run(req).await;
    }
    let key = match check_key(raw.as_bytes()) {
        Ok(k) => k.to_owned(),
        Err(e) => return ApiError(e).into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let Ok(who) = super::extract::authenticated(&mut parts, &state).await else {
        // No valid token: the handler answers as it would without the header.
        return next.run(Request::from_parts(parts, body)).await;
    };
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return Refusal::rejected(false, StatusCode::PAYLOAD_TOO_LARGE, "request body", "").into_response();
        }
    };
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let fp = fingerprint(parts.method.as_str(), pq, &bytes);
    let ticket = match state.coffer.idempotency.begin(&who, &key, fp).await {
        Ok(Begin::Run(t)) => t,
        Ok(Begin::Replay(answer)) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let mut res = Response::new(Body::from(answer.body.to_vec()));
            *res.status_mut() = status;
            if let Ok(ct) = HeaderValue::from_str(&answer.content_type)
                && !answer.content_type.is_empty()
            {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res.headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            return res;
        }
        Err(e) => return ApiError(e).into_response(),
    };

    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;

    let status = res.status();
    let size = res.body().size_hint();
    let small = size
        .upper()
        .is_some_and(|u| u <= MAX_STORED_ANSWER && u == size.lower());
    if !keeps(status) || !small {
        if let Err(e) = state.coffer.idempotency.release(ticket).await {
            tracing::warn!(error = %e, "idempotency key not released");
        }
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::try_from(MAX_STORED_ANSWER).unwrap_or(usize::MAX)).await else {
        // The body failed while being read: nothing usable to send or keep.
        if let Err(e) = state.coffer.idempotency.release(ticket).await {
            tracing::warn!(error = %e, "idempotency key not released");
        }
        return ApiError(crate::service::ServiceError::Internal("answer body unreadable".into())).into_response();
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Stored before it is sent: a retry after a dropped connection finds it.
    if let Err(e) = state
        .coffer
        .idempotency
        .finish(ticket, status.as_u16(), &content_type, &body)
        .await
    {
        // The effect happened; the client gets its answer, a retry may
        // get 409 (still claimed) until the claim goes stale.
        tracing::warn!(error = %e, "idempotency answer not stored");
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_final_answers_are_kept() {
        for s in [200, 201, 204, 400, 403, 404, 413, 422] {
            assert!(keeps(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [401, 408, 409, 429, 500, 503] {
            assert!(!keeps(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
