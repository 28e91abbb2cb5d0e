//! Extractors: the caller's token (from `X-Vault-Token` or
//! `Authorization: Bearer`) turned into a [`Principal`], and JSON bodies
//! whose rejections come back in the route's own error format.
//!
//! Authentication asks the service, which refuses first when sealed, so no
//! handler checks the seal itself.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, VaultError};
use crate::service::{Principal, ServiceError};

fn bearer(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ServiceError> {
    match bearer(parts) {
        Some(token) if !token.is_empty() => state.coffer.authenticate(token).await,
        // Still report "sealed" first when sealed, like every other route.
        _ => {
            state.coffer.require_unsealed()?;
            Err(ServiceError::Unauthenticated)
        }
    }
}

/// An authenticated caller of a native route.
#[derive(Debug)]
pub(crate) struct Auth(pub(crate) Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Auth(principal(parts, state).await?))
    }
}

/// An authenticated caller of a Vault-compatible route.
#[derive(Debug)]
pub(crate) struct VaultAuth(pub(crate) Principal);

impl FromRequestParts<AppState> for VaultAuth {
    type Rejection = VaultError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(VaultAuth(principal(parts, state).await?))
    }
}

fn invalid_body(r: JsonRejection) -> ServiceError {
    ServiceError::Invalid(format!("invalid request body: {}", r.body_text()))
}

/// A JSON body for native routes.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(r) => Err(ApiError(invalid_body(r))),
        }
    }
}

/// A JSON body for Vault routes; an empty body reads as `{}`, as the Vault
/// CLI sends none for some PUTs.
#[derive(Debug)]
pub(crate) struct VaultBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for VaultBody<T> {
    type Rejection = VaultError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            VaultError(ServiceError::Invalid(format!(
                "cannot read request body: {}",
                e.body_text()
            )))
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(VaultBody)
            .map_err(|e| VaultError(ServiceError::Invalid(format!("failed to parse JSON input: {e}"))))
    }
}
