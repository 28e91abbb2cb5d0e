//! HTTP: axum routers, thin. Handlers extract, call one service method and
//! map the error once (`error.rs`). `/v1/sys/*` speaks Vault's wire format;
//! `/api/v1/*` is the native API. TLS termination lives in `tls.rs`.

mod api;
mod error;
mod extract;
mod generate_root;
mod keys;
mod rekey;
mod sys;
pub mod tls;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::service::Coffer;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// the service facade
    pub coffer: Coffer,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let mut sys = Router::new()
        .route("/health", get(sys::health))
        .route("/init", get(sys::init_status).put(sys::init).post(sys::init))
        .route("/seal-status", get(sys::seal_status))
        .route("/unseal", post(sys::unseal).put(sys::unseal))
        .route("/seal", post(sys::seal).put(sys::seal))
        .route("/leader", get(sys::leader))
        .route("/rotate-root", post(rekey::rotate_root).put(rekey::rotate_root));
    // Vault's path answers raw JSON; OpenBao's (its CLI calls
    // sys/generate-root-token/*) answers in the logical envelope.
    sys = sys
        .route(
            "/generate-root/attempt",
            get(generate_root::status)
                .put(generate_root::start)
                .post(generate_root::start)
                .delete(generate_root::cancel),
        )
        .route(
            "/generate-root/update",
            put(generate_root::update).post(generate_root::update),
        )
        .route(
            "/generate-root-token/attempt",
            get(generate_root::status_env)
                .put(generate_root::start_env)
                .post(generate_root::start_env)
                .delete(generate_root::cancel),
        )
        .route(
            "/generate-root-token/update",
            put(generate_root::update_env).post(generate_root::update_env),
        );
    for base in ["/rekey", "/rekey-recovery-key"] {
        sys = sys
            .route(
                &format!("{base}/init"),
                get(rekey::status)
                    .put(rekey::init)
                    .post(rekey::init)
                    .delete(rekey::cancel),
            )
            .route(&format!("{base}/update"), put(rekey::update).post(rekey::update))
            .route(
                &format!("{base}/verify"),
                get(rekey::verify_status)
                    .put(rekey::verify)
                    .post(rekey::verify)
                    .delete(rekey::verify_reset),
            );
    }
    let vault = Router::new().nest("/sys", sys).fallback(sys::fallback);

    let env = "/orgs/{org}/projects/{project}/environments/{env}";
    let secret = format!("{env}/secrets/{{key}}");
    let native = Router::new()
        .route("/orgs", get(api::list_orgs).post(api::create_org))
        .route("/orgs/{org}", get(api::get_org))
        .route("/orgs/{org}/keks", get(keys::list))
        .route("/orgs/{org}/keks/rotate", post(keys::rotate))
        .route("/orgs/{org}/keks/rewrap", post(keys::rewrap))
        .route("/orgs/{org}/keks/{version}", delete(keys::destroy))
        .route(
            "/orgs/{org}/projects",
            get(api::list_projects).post(api::create_project),
        )
        .route("/orgs/{org}/projects/{project}", get(api::get_project))
        .route(
            "/orgs/{org}/projects/{project}/environments",
            get(api::list_envs).post(api::create_env),
        )
        .route(env, get(api::get_env))
        .route(&format!("{env}/secrets"), get(api::list_secrets))
        .route(&format!("{env}/inject"), post(api::inject))
        .route(
            &secret,
            get(api::get_secret)
                .post(api::put_secret)
                .put(api::put_secret)
                .delete(api::delete_secret),
        )
        .route(&format!("{secret}/permanent"), delete(api::purge_secret))
        .route(&format!("{secret}/history"), get(api::history))
        .route(&format!("{secret}/rollback"), post(api::rollback))
        .route(&format!("{secret}/restore"), post(api::restore))
        .fallback(api::fallback);

    Router::new()
        .nest("/v1", vault)
        .nest("/api/v1", native)
        .layer(axum::middleware::map_response(no_store))
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
