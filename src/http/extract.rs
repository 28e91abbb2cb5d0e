//! Extractors: the caller's token (from `X-Vault-Token` or
//! `Authorization: Bearer`) turned into an [`Unsealed`] handle (the principal and the keyring), and JSON bodies
//! whose rejections come back in the route's own error format.
//!
//! Authentication asks the service, which refuses first when sealed, so no
//! handler checks the seal itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::audit::AuditNote;
use super::error::{ApiError, Refusal, VaultError};
use crate::service::{Caller, ClientCert, ServiceError, Unsealed};

/// The verified client certificate of a mutual-TLS connection, put into
/// every request's extensions by the TLS accept loop.
#[derive(Debug, Clone)]
pub(crate) struct PeerCert(pub(crate) Arc<ClientCert>);

/// Transport facts about a request: TCP peer and client certificate.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    pub(crate) source: Option<IpAddr>,
    pub(crate) cert: Option<Arc<ClientCert>>,
}

impl Peer {
    fn of(parts: &Parts) -> Peer {
        Peer {
            source: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip()),
            cert: parts.extensions.get::<PeerCert>().map(|p| p.0.clone()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer::of(parts))
    }
}

/// The organization of a native route, for certificate-only
/// authentication: its decoded `{org}` parameter — the organization the
/// handler acts on — never the raw path segment (`%61cme` is `acme`).
fn org_hint<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    params
        .into_iter()
        .find(|(name, _)| *name == "org")
        .map(|(_, org)| org)
        .filter(|org| !org.is_empty())
}

fn bearer(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `self_only_ok`: also accept a self-only token (Vault's `default` policy),
/// for the routes where a token looks itself up, renews or revokes itself.
async fn principal(parts: &mut Parts, state: &AppState, self_only_ok: bool) -> Result<Unsealed, ServiceError> {
    // Not UTF-8 once decoded: no hint (the handler's Path refuses it).
    let params = RawPathParams::from_request_parts(parts, state).await.ok();
    let peer = Peer::of(parts);
    let caller = Caller {
        token: bearer(parts),
        source: peer.source,
        cert: peer.cert.as_deref(),
        org_hint: params.as_ref().and_then(org_hint),
    };
    // Sealed is reported first, like on every other route.
    let who = if self_only_ok {
        state.coffer.identity.authenticate_self(&caller).await?
    } else {
        state.coffer.identity.authenticate(&caller).await?
    };
    if let Some(note) = parts.extensions.get::<AuditNote>() {
        note.principal(&who);
    }
    Ok(who)
}

/// The caller of a native route, for layers that run before the handler
/// (`idempotency.rs`); the handler's own extractor authenticates again.
pub(crate) async fn authenticated(parts: &mut Parts, state: &AppState) -> Result<Unsealed, ServiceError> {
    principal(parts, state, false).await
}

/// An authenticated caller with its transport facts.
#[derive(Debug)]
pub(crate) struct AuthPeer(pub(crate) Unsealed, pub(crate) Peer);

impl FromRequestParts<AppState> for AuthPeer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(AuthPeer(principal(parts, state, false).await?, Peer::of(parts)))
    }
}

/// An authenticated caller of a native route.
#[derive(Debug)]
pub(crate) struct Auth(pub(crate) Unsealed);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Auth(principal(parts, state, false).await?))
    }
}

/// An authenticated caller of a Vault-compatible route.
#[derive(Debug)]
pub(crate) struct VaultAuth(pub(crate) Unsealed);

impl FromRequestParts<AppState> for VaultAuth {
    type Rejection = VaultError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(VaultAuth(principal(parts, state, false).await?))
    }
}

/// An authenticated caller of a Vault `auth/token/*-self` route: a
/// self-only token (Vault's `default` policy) is accepted here, and only here.
#[derive(Debug)]
pub(crate) struct VaultSelfAuth(pub(crate) Unsealed);

impl FromRequestParts<AppState> for VaultSelfAuth {
    type Rejection = VaultError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(VaultSelfAuth(principal(parts, state, true).await?))
    }
}

/// A JSON body for native routes. A body over the limit is refused with
/// 413, any other unreadable body with 400, in the native envelope.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Refusal;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(r) => Err(Refusal::rejected(false, r.status(), "request body", &r.body_text())),
        }
    }
}

/// A JSON body for Vault routes; an empty body reads as `{}`, as the Vault
/// CLI sends none for some PUTs. Refusals as for [`Body`], in Vault's format.
#[derive(Debug)]
pub(crate) struct VaultBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for VaultBody<T> {
    type Rejection = Refusal;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Refusal::rejected(true, e.status(), "request body", &e.body_text()))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(VaultBody).map_err(|e| {
            Refusal::rejected(
                true,
                axum::http::StatusCode::BAD_REQUEST,
                "request body",
                &format!("failed to parse JSON input: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn org_hint_is_the_decoded_org_parameter() {
        assert_eq!(super::org_hint([("org", "acme"), ("project", "p")]), Some("acme"));
        assert_eq!(super::org_hint([("project", "p"), ("org", "acme")]), Some("acme"));
        assert_eq!(super::org_hint([("org", "")]), None);
        assert_eq!(
            super::org_hint([("rest", "data/acme/p/e/K")]),
            None,
            "Vault routes name no org"
        );
        assert_eq!(super::org_hint([]), None);
    }
}
