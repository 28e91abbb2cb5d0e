//! The one mapping from [`ServiceError`] to HTTP. Two wire formats share it:
//! the native envelope `{"error":true,"code":…,"message":…,"data":null}` and
//! Vault's `{"errors":[…]}`. Internal details are logged with the request's
//! id and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::ServiceError;

/// Status and machine-readable code of an error. Exhaustive on purpose: a
/// new variant must decide its status here.
fn classify(e: &ServiceError) -> (StatusCode, &'static str) {
    match e {
        ServiceError::Sealed => (StatusCode::SERVICE_UNAVAILABLE, "sealed"),
        ServiceError::NotInitialized => (StatusCode::SERVICE_UNAVAILABLE, "not_initialized"),
        ServiceError::AlreadyInitialized => (StatusCode::BAD_REQUEST, "already_initialized"),
        ServiceError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        ServiceError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
        ServiceError::JwtRefused(_) => (StatusCode::UNAUTHORIZED, "jwt_refused"),
        ServiceError::TotpRequired => (StatusCode::UNAUTHORIZED, "totp_required"),
        ServiceError::InvalidTotp => (StatusCode::UNAUTHORIZED, "invalid_totp"),
        ServiceError::PasswordRequired(_) => (StatusCode::UNAUTHORIZED, "password_required"),
        ServiceError::SsoRequired => (StatusCode::FORBIDDEN, "sso_required"),
        ServiceError::SsoFailed(_) => (StatusCode::UNAUTHORIZED, "sso_failed"),
        ServiceError::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
        ServiceError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        ServiceError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        ServiceError::CertificateRequired => (StatusCode::UNAUTHORIZED, "certificate_required"),
        ServiceError::SourceNotAllowed => (StatusCode::FORBIDDEN, "source_not_allowed"),
        ServiceError::DeviceFlow(code) => (StatusCode::BAD_REQUEST, code),
        ServiceError::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        ServiceError::ApprovalRequired(_) => (StatusCode::FORBIDDEN, "approval_required"),
        ServiceError::ApprovalPending(_) => (StatusCode::ACCEPTED, "approval_pending"),
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        ServiceError::LimitExceeded(_) => (StatusCode::FORBIDDEN, "limit_exceeded"),
        ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        ServiceError::Unprocessable(code, _) => (StatusCode::UNPROCESSABLE_ENTITY, code),
        ServiceError::Unseal(_) => (StatusCode::BAD_REQUEST, "unseal_failed"),
        ServiceError::Decryption { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "decryption_failed"),
        ServiceError::AuditUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        ServiceError::Storage(cause) if cause.is_disk_full() => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
        ServiceError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The client-facing message: the error's Display, which carries no
/// secret; storage and internal causes are logged instead.
fn message(e: &ServiceError) -> String {
    match e {
        ServiceError::Storage(cause) => {
            tracing::error!(error = %cause, "storage error");
            if cause.is_disk_full() {
                "the database's disk is full: changes are refused until space is freed; see the server log".to_owned()
            } else {
                "storage is unavailable; see the server log".to_owned()
            }
        }
        ServiceError::Internal(cause) => {
            tracing::error!(error = %cause, "internal error");
            "internal error; see the server log".to_owned()
        }
        ServiceError::Decryption { .. } => {
            tracing::error!(error = %e, "stored ciphertext failed authentication");
            e.to_string()
        }
        _ => e.to_string(),
    }
}

/// The machine-readable code of an error response, for the audit record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// Failed authentications and decryption failures for `/metrics`.
fn count(e: &ServiceError) {
    match e {
        ServiceError::Unauthenticated
        | ServiceError::InvalidCredentials
        | ServiceError::JwtRefused(_)
        | ServiceError::InvalidTotp
        | ServiceError::CertificateRequired
        | ServiceError::SourceNotAllowed => {
            metrics::counter!("coffer_auth_failures_total", "reason" => classify(e).1).increment(1);
        }
        ServiceError::Decryption { .. } => metrics::counter!("coffer_decryption_failures_total").increment(1),
        _ => {}
    }
}

/// A [`ServiceError`] answered in the native envelope.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) ServiceError);

impl<E: Into<ServiceError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        count(&self.0);
        let (status, code) = classify(&self.0);
        let body = match &self.0 {
            // Not a failure: the change waits for approval (HTTP 202).
            ServiceError::ApprovalPending(id) => json!({ "error": false, "code": code, "message": message(&self.0),
                "data": { "request_id": id, "status": "pending" } }),
            _ => json!({ "error": true, "code": code, "message": message(&self.0), "data": null }),
        };
        let mut res = (status, Json(body)).into_response();
        retry_after(&self.0, &mut res);
        res.extensions_mut().insert(ErrorCode(code));
        res
    }
}

/// A [`ServiceError`] for a dashboard page: its status, code and the
/// native API's message (counted for `/metrics` like an API answer).
pub(crate) fn describe(e: &ServiceError) -> (StatusCode, &'static str, String) {
    count(e);
    let (status, code) = classify(e);
    (status, code, message(e))
}

/// A [`ServiceError`] answered as Vault does: `{"errors":[…]}` with Vault's
/// texts where clients match on them ("Vault is sealed").
#[derive(Debug)]
pub(crate) struct VaultError(pub(crate) ServiceError);

impl<E: Into<ServiceError>> From<E> for VaultError {
    fn from(e: E) -> Self {
        VaultError(e.into())
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        count(&self.0);
        let (status, _) = classify(&self.0);
        let (status, msg) = match &self.0 {
            ServiceError::Sealed => (status, "Vault is sealed".to_owned()),
            ServiceError::NotInitialized => (StatusCode::BAD_REQUEST, "Vault is not initialized".to_owned()),
            ServiceError::AlreadyInitialized => (status, "Vault is already initialized".to_owned()),
            // Vault's userpass answers a wrong name or password 400.
            ServiceError::InvalidCredentials => (StatusCode::BAD_REQUEST, "invalid username or password".to_owned()),
            // Vault's auth/jwt answers a refused token 400 with the reason.
            ServiceError::JwtRefused(_) => (StatusCode::BAD_REQUEST, message(&self.0)),
            // Vault answers a missing or bad token with 403.
            ServiceError::Unauthenticated
            | ServiceError::PermissionDenied
            | ServiceError::CertificateRequired
            | ServiceError::SourceNotAllowed => (StatusCode::FORBIDDEN, "permission denied".to_owned()),
            _ => (status, message(&self.0)),
        };
        let mut res = (status, Json(json!({ "errors": [msg] }))).into_response();
        retry_after(&self.0, &mut res);
        res.extensions_mut().insert(ErrorCode(classify(&self.0).1));
        res
    }
}

/// `Retry-After` on rate-limited and busy answers.
fn retry_after(e: &ServiceError, res: &mut Response) {
    if let ServiceError::RateLimited { retry_after_s } | ServiceError::Busy { retry_after_s } = e
        && let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_s.to_string())
    {
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
}

/// A request refused for its form — a method the route does not serve, a
/// body over the limit, a path, query or body that does not parse — before
/// any service call, in the route's own wire format (`vault`: `/v1/*`).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) vault: bool,
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Refusal {
    /// A body, query or path parameter that axum could not read: 413 for a
    /// body over the limit, else 400, with axum's description.
    pub(crate) fn rejected(vault: bool, status: StatusCode, what: &str, text: &str) -> Refusal {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal {
                vault,
                status,
                code: "too_large",
                message: format!("request body too large (limit {BODY_LIMIT} bytes)"),
            }
        } else {
            Refusal {
                vault,
                status: StatusCode::BAD_REQUEST,
                code: "invalid",
                message: format!("invalid {what}: {}", redact_input(text)),
            }
        }
    }
}

/// A parser's message about a request without the request's own data:
/// serde quotes what it could not read (`invalid type: string "…"`,
/// `integer `…``, `unknown variant `…``), and a value sent in the wrong
/// field or with the wrong type would come back in the answer — and from
/// there into a CI log. Quoted strings and the quoted values after
/// `integer`, `floating point`, `character` and `variant` become `…`; field
/// names (`missing field `value``) and expectations stay.
pub(crate) fn redact_input(text: &str) -> String {
    const VALUE_MARKERS: [&str; 4] = ["integer ", "floating point ", "character ", "variant "];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['"', '`']) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let quote = if from.starts_with('"') { '"' } else { '`' };
        // The closing quote (serde escapes inner double quotes as \").
        let body = &from[1..];
        let mut end = None;
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            match c {
                '\\' if quote == '"' && !escaped => escaped = true,
                c if c == quote && !escaped => {
                    end = Some(j);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            // Unterminated: drop the rest rather than echo it.
            out.push(quote);
            out.push('…');
            return out;
        };
        let value = quote == '"' || VALUE_MARKERS.iter().any(|m| out.ends_with(m));
        out.push(quote);
        out.push_str(if value { "…" } else { &body[..end] });
        out.push(quote);
        rest = &body[end + quote.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// The largest request body accepted, in bytes (axum's default limit,
/// applied explicitly by the router).
pub(crate) const BODY_LIMIT: usize = 2 * 1024 * 1024;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = if self.vault {
            json!({ "errors": [self.message] })
        } else {
            json!({ "error": true, "code": self.code, "message": self.message, "data": null })
        };
        let mut res = (self.status, Json(body)).into_response();
        res.extensions_mut().insert(ErrorCode(self.code));
        res
    }
}

/// The answer to a method a route does not serve: 405 with `Allow` in the
/// route's format, or, for `OPTIONS`, 204 with `Allow`. `allow` lists the
/// methods of the route (HEAD and OPTIONS included).
pub(crate) fn method_refused(vault: bool, method: &axum::http::Method, allow: &str) -> Response {
    let mut res = if method == axum::http::Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        // A method name is a token (RFC 9110), safe to echo; cap its length.
        let name: String = method.as_str().chars().take(32).collect();
        Refusal {
            vault,
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!("method {name} not allowed on this route; allowed: {allow}"),
        }
        .into_response()
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(allow) {
        res.headers_mut().insert(axum::http::header::ALLOW, v);
    }
    res
}

/// axum's own rejections (a path, query or body its extractors cannot
/// read: `Path`, `Query`, `Bytes`, …) are plain text. This layer turns
/// every such refusal under `/v1` and `/api/v1` into the route's JSON
/// format, once, for every handler: 413 for a body over the limit, 400
/// otherwise (a 405 keeps its status and `Allow`).
pub(crate) async fn json_rejections(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let vault = path.starts_with("/v1/");
    let api = vault || path.starts_with("/api/v1/");
    let res = next.run(req).await;
    let plain = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !api || !plain || !res.status().is_client_error() {
        return res;
    }
    let (parts, body) = res.into_parts();
    // axum's rejection texts are short; a longer one is cut.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => "request refused".to_owned(),
    };
    let refusal = if parts.status == StatusCode::METHOD_NOT_ALLOWED {
        Refusal {
            vault,
            status: parts.status,
            code: "method_not_allowed",
            message: "method not allowed on this route".to_owned(),
        }
    } else {
        Refusal::rejected(vault, parts.status, "request", &text)
    };
    let mut out = refusal.into_response();
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        out.headers_mut().insert(axum::http::header::ALLOW, allow.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_input;

    #[test]
    fn parser_messages_keep_field_names_but_not_the_values_sent() {
        let cases = [
            (
                r#"value: invalid type: string "s3cret-pw", expected u64 at line 1 column 22"#,
                r#"value: invalid type: string "…", expected u64 at line 1 column 22"#,
            ),
            (
                "value: invalid type: integer `4111111111111111`, expected a string",
                "value: invalid type: integer `…`, expected a string",
            ),
            (
                "invalid type: floating point `3.14`, expected a string",
                "invalid type: floating point `…`, expected a string",
            ),
            (
                "type: unknown variant `hunter2`, expected one of `text`, `json`",
                "type: unknown variant `…`, expected one of `text`, `json`",
            ),
            (r#"invalid value: string "a \"q\" b""#, r#"invalid value: string "…""#),
            ("missing field `value`", "missing field `value`"),
            ("duplicate field `reveal`", "duplicate field `reveal`"),
            (r#"string "unterminated s3cret"#, r#"string "…"#),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_input(raw), want, "{raw}");
        }
    }
}
