//! Vault's `sys/generate-root/{attempt,update}` with Vault's raw JSON
//! bodies (unauthenticated, as in Vault: the quorum is the authority).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::VaultError;
use super::extract::VaultBody;
use crate::service::ServiceError;
use crate::service::generate_root::GenerateRootView;

fn body(v: &GenerateRootView) -> Value {
    json!({
        "started": v.started,
        "nonce": v.nonce,
        "progress": v.progress,
        "required": v.required,
        "complete": v.complete,
        "encoded_token": v.encoded_token,
        "encoded_root_token": v.encoded_token,
        "pgp_fingerprint": "",
        "otp": v.otp,
        "otp_length": v.otp_length,
    })
}

/// OpenBao's `sys/generate-root-token/*` answers in the logical envelope
/// (its CLI reads `data`); Vault's `sys/generate-root/*` answers raw.
fn envelope(v: Value) -> Value {
    json!({
        "request_id": uuid::Uuid::new_v4().to_string(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": v,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    })
}

/// `GET sys/generate-root-token/attempt`
pub(super) async fn status_env(state: State<AppState>) -> Result<Json<Value>, VaultError> {
    Ok(Json(envelope(status(state).await?.0)))
}

/// `PUT|POST sys/generate-root-token/attempt`
pub(super) async fn start_env(state: State<AppState>, req: VaultBody<StartRequest>) -> Result<Json<Value>, VaultError> {
    Ok(Json(envelope(start(state, req).await?.0)))
}

/// `PUT|POST sys/generate-root-token/update`
pub(super) async fn update_env(
    state: State<AppState>,
    req: VaultBody<UpdateRequest>,
) -> Result<Json<Value>, VaultError> {
    Ok(Json(envelope(update(state, req).await?.0)))
}

/// `GET sys/generate-root/attempt`
pub(super) async fn status(State(s): State<AppState>) -> Result<Json<Value>, VaultError> {
    Ok(Json(body(&s.coffer.operator.generate_root_status()?)))
}

/// Its Debug never shows the one-time pad.
#[derive(Deserialize)]
pub(super) struct StartRequest {
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    pgp_key: Option<String>,
}

impl std::fmt::Debug for StartRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartRequest")
            .field("otp", &self.otp.as_ref().map(|_| "<redacted>"))
            .field("pgp_key", &self.pgp_key)
            .finish()
    }
}

/// `PUT|POST sys/generate-root/attempt`
pub(super) async fn start(
    State(s): State<AppState>,
    VaultBody(req): VaultBody<StartRequest>,
) -> Result<Json<Value>, VaultError> {
    if req.pgp_key.as_ref().is_some_and(|k| !k.is_empty()) {
        return Err(ServiceError::Invalid("pgp_key is not supported; use the OTP flow".into()).into());
    }
    Ok(Json(body(&s.coffer.operator.generate_root_start(req.otp)?)))
}

/// `DELETE sys/generate-root/attempt`: 204
pub(super) async fn cancel(State(s): State<AppState>) -> Result<StatusCode, VaultError> {
    s.coffer.operator.generate_root_cancel()?;
    Ok(StatusCode::NO_CONTENT)
}

/// Its Debug never shows the share.
#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    key: Option<zeroize::Zeroizing<String>>,
    #[serde(default)]
    nonce: String,
}

impl std::fmt::Debug for UpdateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateRequest")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// `PUT|POST sys/generate-root/update`
pub(super) async fn update(
    State(s): State<AppState>,
    VaultBody(req): VaultBody<UpdateRequest>,
) -> Result<Json<Value>, VaultError> {
    let key = req
        .key
        .ok_or_else(|| ServiceError::Invalid("'key' must be specified in request body as JSON".into()))?;
    Ok(Json(body(
        &s.coffer.operator.generate_root_update(&key, &req.nonce).await?,
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn generate_root_requests_debug_never_show_the_share_or_pad() {
        let u: super::UpdateRequest =
            serde_json::from_str(r#"{"key":"abcdef0123456789share","nonce":"n1"}"#).expect("body");
        let s: super::StartRequest = serde_json::from_str(r#"{"otp":"otp0123456789pad"}"#).expect("body");
        for dbg in [format!("{u:?}"), format!("{s:?}")] {
            assert!(
                !dbg.contains("0123456789share") && !dbg.contains("0123456789pad"),
                "{dbg}"
            );
        }
    }
}
