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
mod sys;
pub mod tls;
pub mod transport;
mod vault_auth;
pub(crate) mod vault_kv;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::access::{ENV_ROUTES, EnvRoute};
use crate::service::Coffer;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// the service facade
    pub coffer: Coffer,
    /// served over TLS (for URLs the server hands out)
    pub tls: bool,
    /// the `/metrics` scrape token (reloaded on SIGHUP)
    pub metrics_token: metrics::MetricsToken,
}

/// The handler of one environment route of the access table. Every entry
/// of [`ENV_ROUTES`] must have one (a unit test checks), and environment
/// routes are registered only from that table, so none escapes its rule.
fn env_handler(r: &EnvRoute) -> Option<MethodRouter<AppState>> {
    Some(match (r.method, r.path) {
        ("GET", "") => get(api::get_env),
        ("GET", "/secrets") => get(api::list_secrets),
        ("POST", "/inject") => post(api::inject),
        ("GET", "/secrets/{key}") => get(api::get_secret),
        ("POST", "/secrets/{key}") => post(api::put_secret),
        ("PUT", "/secrets/{key}") => put(api::put_secret),
        ("DELETE", "/secrets/{key}") => delete(api::delete_secret),
        ("POST", "/secrets/{key}/restore") => post(api::restore),
        ("DELETE", "/secrets/{key}/permanent") => delete(api::purge_secret),
        ("GET", "/secrets/{key}/history") => get(api::history),
        ("POST", "/secrets/{key}/rollback") => post(api::rollback),
        ("GET", "/allowed-variables") => get(api::allowed_vars),
        ("PUT", "/allowed-variables/{key}") => put(api::allow_var),
        ("DELETE", "/allowed-variables/{key}") => delete(api::disallow_var),
        _ => return None,
    })
}

fn env_routes(mut router: Router<AppState>) -> Router<AppState> {
    let env = "/orgs/{org}/projects/{project}/environments/{env}";
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in ENV_ROUTES {
        if seen.contains(&(r.method, r.path)) {
            continue;
        }
        seen.push((r.method, r.path));
        match env_handler(r) {
            Some(h) => router = router.route(&format!("{env}{}", r.path), h),
            None => tracing::error!(method = r.method, path = r.path, "access table route without a handler"),
        }
    }
    router
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
        .route("/backup", get(sys::backup))
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
    let vault = Router::new()
        .nest("/sys", sys)
        .merge(vault_kv::routes())
        .fallback(sys::fallback);

    let org = "/orgs/{org}";
    let native = Router::new()
        .route("/orgs", get(api::list_orgs).post(api::create_org))
        .route(org, get(api::get_org))
        .route(&format!("{org}/keks"), get(keys::list))
        .route(&format!("{org}/keks/rotate"), post(keys::rotate))
        .route(&format!("{org}/keks/rewrap"), post(keys::rewrap))
        .route(&format!("{org}/keks/{{version}}"), delete(keys::destroy))
        .route(
            &format!("{org}/projects"),
            get(api::list_projects).post(api::create_project),
        )
        .route(&format!("{org}/projects/{{project}}"), get(api::get_project))
        .route(
            &format!("{org}/projects/{{project}}/environments"),
            get(api::list_envs).post(api::create_env),
        )
        .route(
            &format!("{org}/members"),
            get(identity::list_members).post(identity::set_member),
        )
        .route(&format!("{org}/members/{{email}}"), delete(identity::remove_member))
        .route(
            &format!("{org}/groups"),
            get(identity::list_groups).post(identity::create_group),
        )
        .route(
            &format!("{org}/groups/{{group}}/members"),
            post(identity::add_group_member),
        )
        .route(
            &format!("{org}/groups/{{group}}/members/{{email}}"),
            delete(identity::remove_group_member),
        )
        .route(
            &format!("{org}/service-accounts"),
            get(identity::list_service_accounts).post(identity::create_service_account),
        )
        .route(
            &format!("{org}/service-accounts/{{name}}"),
            delete(identity::delete_service_account),
        )
        .route(
            &format!("{org}/service-accounts/{{name}}/tokens"),
            get(identity::service_account_tokens).post(identity::service_account_token),
        )
        .route(
            &format!("{org}/grants"),
            get(identity::list_grants).post(identity::create_grant),
        )
        .route(&format!("{org}/grants/{{id}}"), delete(identity::delete_grant))
        .route("/users", post(identity::create_user))
        .route("/users/{email}", delete(identity::delete_user))
        .route("/users/{email}/revoke-sessions", post(identity::revoke_user_sessions))
        .route("/users/{email}/totp", delete(identity::reset_totp))
        .route("/users/{email}/disable", post(identity::disable_user))
        .route("/users/{email}/enable", post(identity::enable_user))
        .route("/auth/password", post(identity::change_password))
        .route("/auth/login", post(identity::login))
        .route("/auth/refresh", post(identity::refresh))
        .route("/auth/logout", post(identity::logout))
        .route("/auth/whoami", get(identity::whoami))
        .route("/auth/totp/enroll", post(identity::totp_enroll))
        .route("/auth/totp/verify", post(identity::totp_verify))
        .route("/auth/device/code", post(identity::device_code))
        .route("/auth/device/approve", post(identity::device_approve))
        .route("/auth/device/token", post(identity::device_token))
        .route("/tokens", get(identity::list_tokens).post(identity::create_token))
        .route("/tokens/{accessor}", delete(identity::revoke_token))
        .route("/audit/records", get(audit::search))
        .route("/audit/verify", get(audit::verify))
        .route("/audit/prune", post(audit::prune));
    let native = env_routes(native).fallback(api::fallback);

    Router::new()
        .nest("/v1", vault)
        .nest("/api/v1", native)
        .route("/metrics", get(metrics::metrics))
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_access_table_route_has_a_handler() {
        for r in crate::access::ENV_ROUTES {
            assert!(
                super::env_handler(r).is_some(),
                "{} {} has no handler",
                r.method,
                r.path
            );
        }
    }
}
