//! HTTP: axum routers, thin. Handlers extract, call one service method and
//! map the error once (`error.rs`). `/v1/sys/*` speaks Vault's wire format;
//! `/api/v1/*` is the native API. TLS termination lives in `tls.rs`.

mod api;
pub mod audit;
mod error;
mod extract;
mod generate_root;
mod identity;
pub mod integrity;
mod keys;
pub mod metrics;
pub mod proxy;
mod rekey;
pub mod routes;
mod sys;
pub mod tls;
pub mod transport;
mod vault_auth;
pub(crate) mod vault_kv;

use axum::Router;

use crate::service::Coffer;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// the services (behind one `Arc`: axum clones the state per request)
    pub coffer: std::sync::Arc<Coffer>,
    /// served over TLS (for URLs the server hands out)
    pub tls: bool,
    /// the `/metrics` scrape token (reloaded on SIGHUP)
    pub metrics_token: metrics::MetricsToken,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    routes::surface()
        .route_layer(axum::middleware::from_fn(crate::ops::metrics_layer))
        // Inside the audit layer, so records see the final status.
        .layer(axum::middleware::from_fn(error::json_rejections))
        .layer(axum::extract::DefaultBodyLimit::max(error::BODY_LIMIT))
        // After routing, before any handler: a tampered signed request is
        // refused here — and, being inside the audit layer, recorded.
        .layer(axum::middleware::from_fn(integrity::verify))
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::layer))
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn(crate::ops::request_id_layer))
        .with_state(state)
}

/// Secrets and shares must not be cached by anything between us and the client.
async fn no_store(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}
