//! HTTP: axum routers, thin. Handlers extract, call one service method and
//! map the error once (`error.rs`). `/v1/sys/*` speaks Vault's wire format;
//! `/api/v1/*` is the native API. TLS termination lives in `tls.rs`.

mod api;
mod approvals; // protected environments (issue 17)
pub mod audit;
mod ci_sync; // CI sync targets (issue 19)
mod dbcreds; // database credentials (issue 21)
mod error;
mod extract;
mod generate_root;
mod idempotency;
mod identity;
pub mod integrity;
mod jwt_auth; // JWT/OIDC workload-identity login (issue 19)
mod keys;
pub mod metrics;
mod openapi; // the native API's OpenAPI document (issue 22)
pub mod proxy;
mod rekey;
pub mod routes;
mod shares;
mod sso; // single sign-on with OIDC (issue 20)
mod sys;
pub mod tls;
pub mod transport;
mod ui;
mod vault_auth;
pub(crate) mod vault_kv;
mod webhooks; // signed webhooks (issue 17)

use axum::Router;

use crate::service::Coffer;

/// The request header of idempotency keys (`idempotency.rs`), which the CLI sends.
pub const IDEMPOTENCY_KEY_HEADER: &str = idempotency::KEY_HEADER;

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

/// The whole HTTP surface. `limits` and `trusted_proxies` are the
/// connection limits and the proxies whose `X-Forwarded-For` is believed.
///
/// The middleware is one composed stack applied once, not one
/// `Router::layer` per middleware: axum wraps every route in a boxed
/// service per `layer` call, and a request then clones the nested boxes
/// once per level and again per `from_fn` level (O(levels²) allocations;
/// 79 boxed clones per request measured with eleven levels). Composed with
/// `ServiceBuilder`, the levels are plain structs around one box.
/// Outermost first; everything runs after routing, so the audit and
/// metrics layers see the matched route.
pub fn router(state: AppState, limits: crate::config::ConnLimits, trusted_proxies: proxy::TrustedProxies) -> Router {
    let stack = tower::ServiceBuilder::new()
        // Every layer and handler sees the client behind a trusted proxy.
        .layer(axum::middleware::from_fn_with_state(trusted_proxies, proxy::layer))
        .layer(axum::middleware::from_fn_with_state(limits, transport::layer))
        .layer(axum::middleware::from_fn(crate::ops::request_id_layer))
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::layer))
        // Before any handler: a tampered signed request is refused here —
        // and, being inside the audit layer, recorded.
        .layer(axum::middleware::from_fn(integrity::verify))
        .layer(axum::extract::DefaultBodyLimit::max(error::BODY_LIMIT))
        // Native API only (it checks the matched route): a retry with the
        // same `Idempotency-Key` gets the first answer, inside the audit
        // layer (a replay is recorded too) and outside the JSON rejections
        // (the stored answer is the one the client got).
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        // Inside the audit layer, so records see the final status.
        .layer(axum::middleware::from_fn(error::json_rejections));
    routes::surface()
        .route_layer(axum::middleware::from_fn(crate::ops::metrics_layer))
        .layer(stack)
        .with_state(state)
}

/// Secrets and shares must not be cached by anything between us and the
/// client. Only the dashboard's fingerprinted script and stylesheet
/// (marked [`ui::Cacheable`]) keep their own long cache.
async fn no_store(mut res: axum::response::Response) -> axum::response::Response {
    if res.extensions().get::<ui::Cacheable>().is_some() {
        return res;
    }
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}
