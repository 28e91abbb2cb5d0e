//! `GET /metrics`: Prometheus text, behind a bearer scrape token read from
//! `[metrics] token_file` (re-read on SIGHUP). Without a token file the
//! endpoint answers 404: metrics are off unless an operator turns them on.

use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// The scrape token, kept as its SHA-256 so comparison is constant-time
/// and length-independent; `None`: metrics are off.
#[derive(Clone, Default)]
pub struct MetricsToken(Arc<RwLock<Option<[u8; 32]>>>);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

impl MetricsToken {
    /// Read the token file (trimmed; must not be empty), or turn metrics
    /// off with `None`.
    pub fn load(&self, file: Option<&Path>) -> anyhow::Result<()> {
        let digest = match file {
            None => None,
            Some(p) => {
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("metrics.token_file {}: {e}", p.display()))?,
                );
                let token = text.trim();
                if token.len() < 16 {
                    anyhow::bail!(
                        "metrics.token_file {}: the token must be at least 16 characters",
                        p.display()
                    );
                }
                Some(Sha256::digest(token.as_bytes()).into())
            }
        };
        if let Ok(mut slot) = self.0.write() {
            *slot = digest;
        }
        Ok(())
    }

    fn check(&self, headers: &HeaderMap) -> Option<bool> {
        let expected = (*self.0.read().ok()?)?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        Some(bool::from(given.ct_eq(&expected)))
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.metrics_token.check(&headers) {
        None => (StatusCode::NOT_FOUND, "metrics are off: set [metrics] token_file\n").into_response(),
        Some(false) => {
            metrics::counter!("coffer_auth_failures_total", "reason" => "metrics_token").increment(1);
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid scrape token is required (Authorization: Bearer …)\n",
            )
                .into_response()
        }
        Some(true) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            crate::ops::render(&state.coffer),
        )
            .into_response(),
    }
}
