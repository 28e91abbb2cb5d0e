//! Vault's `sys/rekey/*` (and the auto-unseal twin `sys/rekey-recovery-key/*`)
//! and coffer's `sys/rotate-root`, with Vault's raw JSON bodies. Every route
//! needs the root token (OpenBao's authenticated behaviour). Thin handlers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::VaultError;
use super::extract::{VaultAuth, VaultBody};
use crate::seal::{RekeyStatus, VerifyStatus};
use crate::service::ServiceError;
use crate::service::rekey::RekeyOutcome;

fn status_body(s: &RekeyStatus) -> Value {
    json!({
        "started": s.started,
        "nonce": s.nonce,
        "t": s.t,
        "n": s.n,
        "progress": s.progress,
        "required": s.required,
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": s.verification_required,
        "verification_nonce": s.verification_nonce,
    })
}

fn verify_body(s: &VerifyStatus) -> Value {
    if s.complete {
        return json!({ "nonce": s.nonce, "complete": true });
    }
    json!({ "nonce": s.nonce, "started": s.started, "t": s.t, "n": s.n, "progress": s.progress })
}

/// `GET sys/rekey/init`
pub(super) async fn status(State(s): State<AppState>, VaultAuth(who): VaultAuth) -> Result<Json<Value>, VaultError> {
    Ok(Json(status_body(&s.coffer.operator.rekey_status(&who)?)))
}

#[derive(Debug, Deserialize)]
pub(super) struct InitRequest {
    secret_shares: Option<u64>,
    secret_threshold: Option<u64>,
    #[serde(default)]
    pgp_keys: Option<Vec<String>>,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    require_verification: bool,
}

fn count(field: &str, v: Option<u64>) -> Result<u8, ServiceError> {
    let v = v.ok_or_else(|| ServiceError::Invalid(format!("{field} is required")))?;
    u8::try_from(v)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ServiceError::Invalid(format!("{field} must be between 1 and 255, got {v}")))
}

/// `PUT|POST sys/rekey/init`
pub(super) async fn init(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(req): VaultBody<InitRequest>,
) -> Result<Json<Value>, VaultError> {
    if req.backup {
        return Err(ServiceError::Invalid("backup is not supported: coffer never stores shares".into()).into());
    }
    let shares = count("secret_shares", req.secret_shares)?;
    let threshold = count("secret_threshold", req.secret_threshold)?;
    // pgp_keys carries age X25519 recipients (see keys/shares.rs).
    let recipients = req.pgp_keys.unwrap_or_default();
    let st = s
        .coffer
        .operator
        .rekey_init(&who, shares, threshold, req.require_verification, recipients)?;
    Ok(Json(status_body(&st)))
}

/// `DELETE sys/rekey/init`: 204
pub(super) async fn cancel(State(s): State<AppState>, VaultAuth(who): VaultAuth) -> Result<StatusCode, VaultError> {
    s.coffer.operator.rekey_cancel(&who)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Its Debug never shows the share.
#[derive(Deserialize)]
pub(super) struct KeyRequest {
    key: Option<zeroize::Zeroizing<String>>,
    #[serde(default)]
    nonce: String,
}

impl std::fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRequest")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl KeyRequest {
    fn key(self) -> Result<(zeroize::Zeroizing<String>, String), ServiceError> {
        let key = self
            .key
            .ok_or_else(|| ServiceError::Invalid("'key' must be specified in request body as JSON".into()))?;
        Ok((key, self.nonce))
    }
}

/// `PUT|POST sys/rekey/update`
pub(super) async fn update(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(req): VaultBody<KeyRequest>,
) -> Result<Json<Value>, VaultError> {
    let (key, nonce) = req.key()?;
    Ok(Json(match s.coffer.operator.rekey_update(&who, &key, &nonce).await? {
        RekeyOutcome::Progress(st) => status_body(&st),
        RekeyOutcome::Complete(r) => {
            let keys: Vec<&str> = r.keys_hex.iter().map(|k| k.as_str()).collect();
            let keys_b64: Vec<&str> = r.keys_base64.iter().map(|k| k.as_str()).collect();
            json!({
                "complete": true,
                "keys": keys,
                "keys_base64": keys_b64,
                "nonce": r.nonce,
                "pgp_fingerprints": if r.recipients.is_empty() { Value::Null } else { json!(r.recipients) },
                "backup": false,
                "verification_required": r.verification_required,
                "verification_nonce": r.verification_nonce,
            })
        }
    }))
}

/// `GET sys/rekey/verify`
pub(super) async fn verify_status(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
) -> Result<Json<Value>, VaultError> {
    Ok(Json(verify_body(&s.coffer.operator.rekey_verify_status(&who)?)))
}

/// `DELETE sys/rekey/verify`: restart the verification round
pub(super) async fn verify_reset(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
) -> Result<Json<Value>, VaultError> {
    Ok(Json(verify_body(&s.coffer.operator.rekey_verify_reset(&who)?)))
}

/// `PUT|POST sys/rekey/verify`
pub(super) async fn verify(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(req): VaultBody<KeyRequest>,
) -> Result<Json<Value>, VaultError> {
    let (key, nonce) = req.key()?;
    Ok(Json(verify_body(
        &s.coffer.operator.rekey_verify_update(&who, &key, &nonce).await?,
    )))
}

/// Its Debug never shows the share.
#[derive(Deserialize)]
pub(super) struct RotateRequest {
    key: Option<zeroize::Zeroizing<String>>,
    #[serde(default)]
    reset: bool,
}

impl std::fmt::Debug for RotateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateRequest")
            .field("reset", &self.reset)
            .finish_non_exhaustive()
    }
}

/// `PUT|POST sys/rotate-root {key?, reset?}`: new root key, every KEK
/// re-wrapped. Shamir mode: one current share per call, the K-th rotates.
pub(super) async fn rotate_root(
    State(s): State<AppState>,
    VaultAuth(who): VaultAuth,
    VaultBody(req): VaultBody<RotateRequest>,
) -> Result<Json<Value>, VaultError> {
    let key = req.key;
    let st = s
        .coffer
        .operator
        .rotate_root(&who, key.as_deref().map(String::as_str), req.reset)
        .await?;
    Ok(Json(json!({
        "complete": st.keks_rewrapped.is_some(),
        "progress": st.progress,
        "required": st.required,
        "keks_rewrapped": st.keks_rewrapped,
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rekey_requests_debug_never_show_the_share() {
        let k: super::KeyRequest =
            serde_json::from_str(r#"{"key":"abcdef0123456789share","nonce":"n1"}"#).expect("body");
        let r: super::RotateRequest = serde_json::from_str(r#"{"key":"abcdef0123456789share"}"#).expect("body");
        for dbg in [format!("{k:?}"), format!("{r:?}")] {
            assert!(!dbg.contains("0123456789share"), "{dbg}");
        }
    }
}
