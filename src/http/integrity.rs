//! Request integrity: an HMAC over each CLI request, checked before any
//! handler runs.
//!
//! The `coffer` CLI sends, on every request that carries a token:
//! - `X-Coffer-Timestamp`: Unix seconds when the request was signed;
//! - `X-Coffer-Signature`: hex HMAC-SHA256 of
//!   `METHOD "\n" PATH?QUERY "\n" TIMESTAMP "\n" BODY`, keyed by
//!   `SHA-256("coffer-request-signing-v1" || token)`.
//!
//! The key is derived from the bearer token the request presents, so the
//! server stores nothing new. A signature that does not match is refused
//! with 401 `request_signature_invalid`; a timestamp more than
//! [`MAX_SKEW_SECS`] away from the server's clock with 401
//! `request_timestamp_stale`; both before any handler (and so any change)
//! runs. Requests without `X-Coffer-Signature` are accepted unchanged:
//! Vault clients and other HTTP clients cannot sign (docs/cli.md).

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-coffer-timestamp";
/// Header carrying the hex HMAC.
pub const SIGNATURE_HEADER: &str = "x-coffer-signature";
/// Largest accepted distance between the request's timestamp and now.
pub const MAX_SKEW_SECS: i64 = 60;
/// Largest body a signed request may have (the server's JSON limit is smaller).
const MAX_SIGNED_BODY: usize = 4 * 1024 * 1024;

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(token: &str, method: &str, path_and_query: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut kdf = Sha256::new();
    kdf.update(b"coffer-request-signing-v1");
    kdf.update(token.as_bytes());
    let key: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(kdf.finalize().into());
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match <HmacSha256 as KeyInit>::new_from_slice(key.as_slice()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    for part in [method.as_bytes(), path_and_query.as_bytes(), timestamp.as_bytes()] {
        mac.update(part);
        mac.update(b"\n");
    }
    mac.update(body);
    mac
}

/// The hex signature of a request (used by the CLI).
pub fn sign(token: &str, method: &str, path_and_query: &str, timestamp: &str, body: &[u8]) -> String {
    hex::encode(
        mac(token, method, path_and_query, timestamp, body)
            .finalize()
            .into_bytes(),
    )
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = json!({ "error": true, "code": code, "message": message, "data": null });
    let mut res = (status, axum::Json(body)).into_response();
    // The audit layer records the refusal with this reason.
    res.extensions_mut().insert(super::error::ErrorCode(code));
    res
}

fn token_of(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = h.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why signature headers were refused: the error code and its message.
pub type HeaderRefusal = (&'static str, &'static str);

/// Check the two signature headers of a request at Unix time `now`: the
/// signature must be hex, the timestamp Unix seconds within
/// [`MAX_SKEW_SECS`] of `now`. Returns the signature bytes; the HMAC itself
/// is checked by [`verify`] once the body is read.
pub fn check_headers(signature: &str, timestamp: Option<&str>, now: i64) -> Result<Vec<u8>, HeaderRefusal> {
    let sig = hex::decode(signature.trim())
        .map_err(|_| ("request_signature_invalid", "X-Coffer-Signature is not a hex HMAC"))?;
    let ts = timestamp.ok_or((
        "request_timestamp_stale",
        "a signed request needs X-Coffer-Timestamp (Unix seconds)",
    ))?;
    let ts_secs = ts
        .parse::<i64>()
        .map_err(|_| ("request_timestamp_stale", "X-Coffer-Timestamp is not Unix seconds"))?;
    if (now.saturating_sub(ts_secs)).unsigned_abs() > MAX_SKEW_SECS.unsigned_abs() {
        return Err((
            "request_timestamp_stale",
            "the request's timestamp is more than 60 seconds from the server's clock (replayed, or a wrong clock)",
        ));
    }
    Ok(sig)
}

/// Middleware: verify a signed request before anything else sees it.
pub async fn verify(req: Request, next: Next) -> Response {
    let Some(sig) = req.headers().get(SIGNATURE_HEADER) else {
        return next.run(req).await;
    };
    let Ok(sig) = sig.to_str() else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "request_signature_invalid",
            "X-Coffer-Signature is not a hex HMAC",
        );
    };
    let ts = req
        .headers()
        .get(TIMESTAMP_HEADER)
        .map(|v| v.to_str().unwrap_or("not text"))
        .map(str::to_owned);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let sig = match check_headers(sig, ts.as_deref(), now) {
        Ok(sig) => sig,
        Err((code, message)) => return refuse(StatusCode::UNAUTHORIZED, code, message),
    };
    let ts = ts.unwrap_or_default();
    let Some(token) = token_of(&req).map(|t| zeroize::Zeroizing::new(t.to_owned())) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "request_signature_invalid",
            "a signed request must carry the token its signature is keyed by",
        );
    };
    let method = req.method().as_str().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_SIGNED_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            );
        }
    };
    let expected = mac(&token, &method, &pq, &ts, &bytes).finalize().into_bytes();
    if !bool::from(expected.as_slice().ct_eq(sig.as_slice())) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "request_signature_invalid",
            "the request's signature does not match its method, path, timestamp and body (altered in transit?)",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signature_covers_every_part() {
        let base = sign("t", "POST", "/a?b=1", "100", b"{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, sign("u", "POST", "/a?b=1", "100", b"{}"));
        assert_ne!(base, sign("t", "PUT", "/a?b=1", "100", b"{}"));
        assert_ne!(base, sign("t", "POST", "/a?b=2", "100", b"{}"));
        assert_ne!(base, sign("t", "POST", "/a?b=1", "101", b"{}"));
        assert_ne!(base, sign("t", "POST", "/a?b=1", "100", b"{ }"));
        assert_eq!(base, sign("t", "POST", "/a?b=1", "100", b"{}"));
    }

    #[test]
    fn headers_are_checked_before_the_body() {
        assert_eq!(check_headers(" 0aff ", Some("1000"), 1000), Ok(vec![0x0a, 0xff]));
        assert_eq!(
            check_headers("zz", Some("1000"), 1000).unwrap_err().0,
            "request_signature_invalid"
        );
        assert_eq!(
            check_headers("00", None, 1000).unwrap_err().0,
            "request_timestamp_stale"
        );
        assert_eq!(
            check_headers("00", Some("x"), 1000).unwrap_err().0,
            "request_timestamp_stale"
        );
        assert!(check_headers("00", Some("940"), 1000).is_ok());
        assert!(check_headers("00", Some("939"), 1000).is_err());
        assert!(check_headers("00", Some("1061"), 1000).is_err());
        // The far ends of i64 neither overflow nor pass.
        assert!(check_headers("00", Some(&i64::MIN.to_string()), i64::MAX).is_err());
        assert!(check_headers("00", Some(&i64::MAX.to_string()), i64::MIN).is_err());
    }
}
