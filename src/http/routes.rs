//! The route table: every route of the HTTP surface, registered once with
//! its handler and its audit. The router (`surface`), the audit layer
//! ([`route_audit`]), the `Allow` list of a refused method ([`allow_header`])
//! and the route listing in `docs/routes.md` (a unit test keeps it equal to
//! the table) all read it.
//!
//! The `routes!` table takes each method with a handler and an audit, so
//! a route without an audit entry does not compile. Environment routes are
//! registered from the access table [`ENV_ROUTES`], which gives each its
//! permission and action; `env_handler` names their handlers.

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post, put};

use super::{
    AppState, api, approvals, audit, ci_sync, dbcreds, generate_root, identity, jwt_auth, keys, metrics, openapi,
    rekey, shares, sso, sys, ui, vault_auth, vault_kv, webhooks,
};
use crate::access::{ENV_ROUTES, EnvRoute};

/// What a route is, for the audit layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAudit {
    /// read-only and unauthenticated: not recorded
    Public,
    /// recorded under this action
    Action(&'static str),
    /// the KV v2 mount: the action depends on the path below the mount
    /// and the method (`vault_kv::kv_target`)
    Kv,
}

use RouteAudit::{Action, Kv, Public};

/// The table's method name: `ANY` is every method, served by one handler.
macro_rules! method_name {
    (GET) => {
        "GET"
    };
    (POST) => {
        "POST"
    };
    (PUT) => {
        "PUT"
    };
    (DELETE) => {
        "DELETE"
    };
    (PATCH) => {
        "PATCH"
    };
    (ANY) => {
        "*"
    };
}

/// The axum method router of one method and its handler.
macro_rules! method_router {
    (GET, $h:path) => {
        axum::routing::get($h)
    };
    (POST, $h:path) => {
        axum::routing::post($h)
    };
    (PUT, $h:path) => {
        axum::routing::put($h)
    };
    (DELETE, $h:path) => {
        axum::routing::delete($h)
    };
    (PATCH, $h:path) => {
        axum::routing::patch($h)
    };
    (ANY, $h:path) => {
        axum::routing::any($h)
    };
}

/// The route table: per path, each method (or `|`-joined methods sharing a
/// handler) `=> handler, audit;`. Expands to [`ROUTE_ACTIONS`] and
/// `table_routes`, so the two cannot differ.
macro_rules! routes {
    ($( $path:literal { $( $($method:ident)|+ => $handler:path, $audit:expr; )+ } )*) => {
        /// Every route of the table (all but the environment routes, whose
        /// actions are in [`ENV_ROUTES`]): method (`*`: every method), full
        /// path template, audit. HEAD is looked up as GET.
        pub const ROUTE_ACTIONS: &[(&str, &str, RouteAudit)] = &[
            $( $( $( (method_name!($method), $path, $audit), )+ )+ )*
        ];

        /// The method router of every path of the table, in table order.
        fn table_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
            vec![
                $( ($path, MethodRouter::new() $( $( .merge(method_router!($method, $handler)) )+ )+ ), )*
            ]
        }
    };
}

routes! {
    // Vault-compatible seal lifecycle
    "/v1/sys/health" { GET => sys::health, Public; }
    "/v1/sys/init" {
        GET => sys::init_status, Public;
        PUT | POST => sys::init, Action("seal.init");
    }
    "/v1/sys/seal-status" { GET => sys::seal_status, Public; }
    "/v1/sys/unseal" { POST | PUT => sys::unseal, Action("seal.unseal_share"); }
    "/v1/sys/seal" { POST | PUT => sys::seal, Action("seal.seal"); }
    "/v1/sys/leader" { GET => sys::leader, Public; }
    // scrape token checked by the handler; touches no secret
    "/metrics" { GET => metrics::metrics, Public; }
    "/v1/sys/backup" { GET => sys::backup, Action("backup.create"); }
    "/v1/sys/rotate-root" { POST | PUT => rekey::rotate_root, Action("key.rotate_root"); }
    // Vault's path answers raw JSON; OpenBao's (its CLI calls
    // sys/generate-root-token/*) answers in the logical envelope.
    "/v1/sys/generate-root/attempt" {
        GET => generate_root::status, Action("seal.generate_root_status");
        PUT | POST => generate_root::start, Action("seal.generate_root_start");
        DELETE => generate_root::cancel, Action("seal.generate_root_cancel");
    }
    "/v1/sys/generate-root/update" {
        PUT | POST => generate_root::update, Action("seal.generate_root_share");
    }
    "/v1/sys/generate-root-token/attempt" {
        GET => generate_root::status_env, Action("seal.generate_root_status");
        PUT | POST => generate_root::start_env, Action("seal.generate_root_start");
        DELETE => generate_root::cancel, Action("seal.generate_root_cancel");
    }
    "/v1/sys/generate-root-token/update" {
        PUT | POST => generate_root::update_env, Action("seal.generate_root_share");
    }
    "/v1/sys/rekey/init" {
        GET => rekey::status, Action("seal.rekey_status");
        PUT | POST => rekey::init, Action("seal.rekey_start");
        DELETE => rekey::cancel, Action("seal.rekey_cancel");
    }
    "/v1/sys/rekey/update" { PUT | POST => rekey::update, Action("seal.rekey_share"); }
    "/v1/sys/rekey/verify" {
        GET => rekey::verify_status, Action("seal.rekey_status");
        PUT | POST => rekey::verify, Action("seal.rekey_verify");
        DELETE => rekey::verify_reset, Action("seal.rekey_verify_reset");
    }
    "/v1/sys/rekey-recovery-key/init" {
        GET => rekey::status, Action("seal.rekey_status");
        PUT | POST => rekey::init, Action("seal.rekey_start");
        DELETE => rekey::cancel, Action("seal.rekey_cancel");
    }
    "/v1/sys/rekey-recovery-key/update" { PUT | POST => rekey::update, Action("seal.rekey_share"); }
    "/v1/sys/rekey-recovery-key/verify" {
        GET => rekey::verify_status, Action("seal.rekey_status");
        PUT | POST => rekey::verify, Action("seal.rekey_verify");
        DELETE => rekey::verify_reset, Action("seal.rekey_verify_reset");
    }
    // Vault-compatible KV v2 mount (one handler dispatches on operation and
    // method, Vault's LIST included), mounts preflight, tokens and logins
    "/v1/secret/{*rest}" { ANY => vault_kv::kv_mount, Kv; }
    "/v1/sys/internal/ui/mounts/{*path}" { GET => vault_kv::mount_preflight, Action("sys.mounts"); }
    "/v1/sys/mounts" { GET => vault_kv::mounts, Action("sys.mounts"); }
    // Vault's database engine wire (issue 21): database/creds/<org>/<role>
    "/v1/database/creds/{org}/{role}" { GET => dbcreds::vault_creds, Action("database.lease.create"); }
    "/v1/sys/leases/renew" { PUT | POST => dbcreds::vault_renew, Action("database.lease.renew"); }
    "/v1/sys/leases/revoke" { PUT | POST => dbcreds::vault_revoke, Action("database.lease.revoke"); }
    "/v1/sys/leases/revoke-prefix/{*prefix}" {
        PUT | POST => dbcreds::vault_revoke_prefix, Action("database.lease.revoke_prefix");
    }
    "/v1/sys/mounts/{*path}" { ANY => vault_kv::mount_change, Action("sys.mounts"); }
    // what clients ask about the server: reads only
    "/v1/sys/auth" { GET => sys::auth_methods, Action("sys.auth_list"); }
    "/v1/sys/audit" { GET => sys::audit_devices, Action("sys.audit_list"); }
    "/v1/sys/key-status" { GET => sys::key_status, Action("seal.key_status"); }
    "/v1/sys/capabilities-self" {
        POST | PUT => sys::capabilities_self, Action("sys.capabilities_list");
    }
    "/v1/auth/token/lookup-self" { GET | POST => vault_auth::lookup_self, Action("token.lookup"); }
    "/v1/auth/token/lookup-accessor" {
        POST | PUT => vault_auth::lookup_accessor, Action("token.lookup");
    }
    "/v1/auth/token/lookup" {
        GET | POST | PUT => vault_auth::lookup, Action("token.lookup");
    }
    "/v1/auth/token/renew" { POST | PUT => vault_auth::renew, Action("token.renew"); }
    "/v1/auth/token/renew-accessor" {
        POST | PUT => vault_auth::renew_accessor, Action("token.renew");
    }
    "/v1/auth/token/revoke" { POST | PUT => vault_auth::revoke, Action("token.revoke"); }
    "/v1/auth/token/revoke-accessor" {
        POST | PUT => vault_auth::revoke_accessor, Action("token.revoke");
    }
    "/v1/auth/token/create" { POST | PUT => vault_auth::create, Action("token.create"); }
    "/v1/auth/token/renew-self" { POST | PUT => vault_auth::renew_self, Action("token.renew"); }
    "/v1/auth/token/revoke-self" { POST | PUT => vault_auth::revoke_self, Action("token.revoke"); }
    "/v1/auth/cert/login" { POST | PUT => vault_auth::cert_login, Action("auth.login"); }
    "/v1/auth/userpass/login/{user}" {
        POST | PUT => vault_auth::userpass_login, Action("auth.login");
    }
    "/v1/auth/jwt/login" { POST | PUT => vault_auth::jwt_login, Action("auth.jwt_login"); }
    // native: organizations and what hangs off them
    "/api/v1/orgs" {
        GET => api::list_orgs, Action("org.list");
        POST => api::create_org, Action("org.create");
    }
    "/api/v1/orgs/{org}" {
        GET => api::get_org, Action("org.read");
        PATCH => api::rename_org, Action("org.rename");
        DELETE => api::delete_org, Action("org.delete");
    }
    // a deleted organization, project or environment: restore inside the
    // window, purge (owners; before the window ends only with ?now=true)
    "/api/v1/orgs/{org}/restore" { POST => api::restore_org, Action("org.restore"); }
    "/api/v1/orgs/{org}/permanent" { DELETE => api::purge_org, Action("org.purge"); }
    // the leaked-password policy (service/breach.rs): refuse or warn
    "/api/v1/orgs/{org}/breach-policy" {
        GET => api::breach_policy, Action("org.breach_policy_status");
        PUT => api::set_breach_policy, Action("org.breach_policy_set");
    }
    "/api/v1/orgs/{org}/keks" { GET => keys::list, Action("key.kek_list"); }
    "/api/v1/orgs/{org}/keks/rotate" { POST => keys::rotate, Action("key.kek_rotate"); }
    "/api/v1/orgs/{org}/keks/rewrap" { POST => keys::rewrap, Action("key.kek_rewrap"); }
    "/api/v1/orgs/{org}/keks/{version}" { DELETE => keys::destroy, Action("key.kek_destroy"); }
    "/api/v1/orgs/{org}/projects" {
        GET => api::list_projects, Action("project.list");
        POST => api::create_project, Action("project.create");
    }
    "/api/v1/orgs/{org}/projects/{project}" {
        GET => api::get_project, Action("project.read");
        PATCH => api::rename_project, Action("project.rename");
        DELETE => api::delete_project, Action("project.delete");
    }
    "/api/v1/orgs/{org}/projects/{project}/restore" {
        POST => api::restore_project, Action("project.restore");
    }
    "/api/v1/orgs/{org}/projects/{project}/permanent" {
        DELETE => api::purge_project, Action("project.purge");
    }
    // two environments compared: read on both (values: reveal on both)
    "/api/v1/orgs/{org}/projects/{project}/diff" { GET => api::diff_envs, Action("env.diff"); }
    // values copied from one environment to another: reveal on the source,
    // read and create/update on the target; a plan, then one transaction
    "/api/v1/orgs/{org}/projects/{project}/copy" { POST => api::copy_secrets, Action("env.copy"); }
    "/api/v1/orgs/{org}/projects/{project}/environments" {
        GET => api::list_envs, Action("env.list");
        POST => api::create_env, Action("env.create");
    }
    // The environment's own lifecycle is the organization admins', not an
    // environment permission's: these three are the only table routes
    // under ENV_PREFIX, and share no method and path with ENV_ROUTES.
    "/api/v1/orgs/{org}/projects/{project}/environments/{env}" {
        DELETE => api::delete_env, Action("env.delete");
    }
    "/api/v1/orgs/{org}/projects/{project}/environments/{env}/restore" {
        POST => api::restore_env, Action("env.restore");
    }
    "/api/v1/orgs/{org}/projects/{project}/environments/{env}/permanent" {
        DELETE => api::purge_env, Action("env.purge");
    }
    "/api/v1/orgs/{org}/members" {
        GET => identity::list_members, Action("member.list");
        POST => identity::set_member, Action("member.set");
    }
    "/api/v1/orgs/{org}/members/{email}" {
        DELETE => identity::remove_member, Action("member.remove");
    }
    "/api/v1/orgs/{org}/groups" {
        GET => identity::list_groups, Action("group.list");
        POST => identity::create_group, Action("group.create");
    }
    "/api/v1/orgs/{org}/groups/{group}/members" {
        POST => identity::add_group_member, Action("group.member_add");
    }
    "/api/v1/orgs/{org}/groups/{group}/members/{email}" {
        DELETE => identity::remove_group_member, Action("group.member_remove");
    }
    "/api/v1/orgs/{org}/service-accounts" {
        GET => identity::list_service_accounts, Action("service_account.list");
        POST => identity::create_service_account, Action("service_account.create");
    }
    "/api/v1/orgs/{org}/service-accounts/{name}" {
        DELETE => identity::delete_service_account, Action("service_account.delete");
    }
    "/api/v1/orgs/{org}/service-accounts/{name}/tokens" {
        GET => identity::service_account_tokens, Action("token.list");
        POST => identity::service_account_token, Action("token.create");
    }
    "/api/v1/orgs/{org}/grants" {
        GET => identity::list_grants, Action("grant.list");
        POST => identity::create_grant, Action("grant.create");
    }
    "/api/v1/orgs/{org}/grants/{id}" { DELETE => identity::delete_grant, Action("grant.delete"); }
    // === protected environments (issue 17, service/approvals.rs) ===
    "/api/v1/orgs/{org}/approvals" {
        GET => approvals::list, Action("approval.list");
        POST => approvals::request_access, Action("approval.request");
    }
    "/api/v1/orgs/{org}/approvals/{id}" { GET => approvals::show, Action("approval.read"); }
    "/api/v1/orgs/{org}/approvals/{id}/approve" { POST => approvals::approve, Action("approval.approve"); }
    "/api/v1/orgs/{org}/approvals/{id}/reject" { POST => approvals::reject, Action("approval.reject"); }
    "/api/v1/orgs/{org}/approval-policies" { GET => approvals::policies, Action("approval.policy_list"); }
    "/api/v1/orgs/{org}/approval-policies/{project}/{env}" {
        GET => approvals::get_policy, Action("approval.policy_read");
        PUT => approvals::set_policy, Action("approval.policy_set");
        DELETE => approvals::delete_policy, Action("approval.policy_delete");
    }
    "/api/v1/orgs/{org}/break-glass" { GET => approvals::break_glass_queue, Action("approval.break_glass_list"); }
    "/api/v1/orgs/{org}/break-glass/{id}/review" { POST => approvals::review, Action("approval.review"); }
    "/ui/orgs/{org}/approvals" { GET => ui::approvals::page_get, Action("approval.list"); }
    "/ui/orgs/{org}/approvals/{id}/approve" { POST => ui::approvals::approve, Action("approval.approve"); }
    "/ui/orgs/{org}/approvals/{id}/reject" { POST => ui::approvals::reject, Action("approval.reject"); }
    "/ui/orgs/{org}/break-glass/{id}/review" { POST => ui::approvals::review, Action("approval.review"); }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/approval-policy" {
        GET => ui::approvals::policy_get, Action("approval.policy_read");
        POST => ui::approvals::policy_set, Action("approval.policy_set");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/approval-policy/remove" {
        POST => ui::approvals::policy_remove, Action("approval.policy_delete");
    }
    "/ui/orgs/{org}/webhooks" {
        GET => ui::webhooks::page_get, Action("webhook.list");
        POST => ui::webhooks::create, Action("webhook.create");
    }
    "/ui/orgs/{org}/webhooks/{id}" { GET => ui::webhooks::deliveries, Action("webhook.deliveries"); }
    "/ui/orgs/{org}/webhooks/{id}/remove" { POST => ui::webhooks::remove, Action("webhook.delete"); }
    "/api/v1/orgs/{org}/webhooks" {
        GET => webhooks::list, Action("webhook.list");
        POST => webhooks::create, Action("webhook.create");
    }
    "/api/v1/orgs/{org}/webhooks/{id}" { DELETE => webhooks::delete, Action("webhook.delete"); }
    "/api/v1/orgs/{org}/webhooks/{id}/deliveries" { GET => webhooks::deliveries, Action("webhook.deliveries"); }
    // JWT/OIDC workload-identity login (issue 19)
    "/api/v1/auth/jwt/login" { POST => jwt_auth::login, Action("auth.jwt_login"); }
    "/api/v1/orgs/{org}/jwt/issuers" {
        GET => jwt_auth::list_issuers, Action("jwt.issuer_list");
        POST => jwt_auth::add_issuer, Action("jwt.issuer_create");
    }
    "/api/v1/orgs/{org}/jwt/issuers/{name}" { DELETE => jwt_auth::remove_issuer, Action("jwt.issuer_delete"); }
    "/api/v1/orgs/{org}/jwt/roles" {
        GET => jwt_auth::list_roles, Action("jwt.role_list");
        POST => jwt_auth::add_role, Action("jwt.role_create");
    }
    "/api/v1/orgs/{org}/jwt/roles/{name}" { DELETE => jwt_auth::remove_role, Action("jwt.role_delete"); }
    "/ui/orgs/{org}/jwt" { GET => ui::jwt_auth::page_get, Action("jwt.issuer_list"); }
    "/ui/orgs/{org}/jwt/issuers" { POST => ui::jwt_auth::add_issuer, Action("jwt.issuer_create"); }
    "/ui/orgs/{org}/jwt/issuers/{name}/remove" { POST => ui::jwt_auth::remove_issuer, Action("jwt.issuer_delete"); }
    "/ui/orgs/{org}/jwt/roles" { POST => ui::jwt_auth::add_role, Action("jwt.role_create"); }
    "/ui/orgs/{org}/jwt/roles/{name}/remove" { POST => ui::jwt_auth::remove_role, Action("jwt.role_delete"); }
    // database credentials (issue 21)
    "/api/v1/orgs/{org}/database/connections" {
        GET => dbcreds::list_connections, Action("database.connection.list");
        POST => dbcreds::create_connection, Action("database.connection.create");
    }
    "/api/v1/orgs/{org}/database/connections/{name}" {
        DELETE => dbcreds::delete_connection, Action("database.connection.delete");
    }
    "/api/v1/orgs/{org}/database/roles" {
        GET => dbcreds::list_roles, Action("database.role.list");
        POST => dbcreds::create_role, Action("database.role.create");
    }
    "/api/v1/orgs/{org}/database/roles/{name}" { DELETE => dbcreds::delete_role, Action("database.role.delete"); }
    "/api/v1/orgs/{org}/database/roles/{name}/rotate" { POST => dbcreds::rotate, Action("database.role.rotate"); }
    "/api/v1/orgs/{org}/database/creds/{role}" { POST => dbcreds::creds, Action("database.lease.create"); }
    "/api/v1/orgs/{org}/database/leases" { GET => dbcreds::list_leases, Action("database.lease.list"); }
    "/api/v1/orgs/{org}/database/leases/renew" { POST => dbcreds::renew, Action("database.lease.renew"); }
    "/api/v1/orgs/{org}/database/leases/revoke" { POST => dbcreds::revoke, Action("database.lease.revoke"); }
    "/api/v1/orgs/{org}/database/leases/revoke-prefix" {
        POST => dbcreds::revoke_prefix, Action("database.lease.revoke_prefix");
    }
    "/ui/orgs/{org}/database" { GET => ui::dbcreds::page_get, Action("database.connection.list"); }
    "/ui/orgs/{org}/database/connections" {
        POST => ui::dbcreds::add_connection, Action("database.connection.create");
    }
    "/ui/orgs/{org}/database/connections/{name}/remove" {
        POST => ui::dbcreds::remove_connection, Action("database.connection.delete");
    }
    "/ui/orgs/{org}/database/roles" { POST => ui::dbcreds::add_role, Action("database.role.create"); }
    "/ui/orgs/{org}/database/roles/{name}/remove" {
        POST => ui::dbcreds::remove_role, Action("database.role.delete");
    }
    "/ui/orgs/{org}/database/roles/{name}/rotate" {
        POST => ui::dbcreds::rotate_role, Action("database.role.rotate");
    }
    "/ui/orgs/{org}/database/leases/revoke" {
        POST => ui::dbcreds::revoke_lease, Action("database.lease.revoke");
    }
    "/ui/orgs/{org}/database/leases/revoke-prefix" {
        POST => ui::dbcreds::revoke_prefix, Action("database.lease.revoke_prefix");
    }
    // === CI sync targets (issue 19, service/ci_sync.rs) ===
    "/api/v1/orgs/{org}/ci-sync" {
        GET => ci_sync::list, Action("ci_sync.list");
        POST => ci_sync::create, Action("ci_sync.create");
    }
    "/api/v1/orgs/{org}/ci-sync/{id}" {
        GET => ci_sync::show, Action("ci_sync.read");
        PUT | PATCH => ci_sync::set_credential, Action("ci_sync.set_credential");
        DELETE => ci_sync::delete, Action("ci_sync.delete");
    }
    "/api/v1/orgs/{org}/ci-sync/{id}/run" { POST => ci_sync::run, Action("ci_sync.run"); }
    "/api/v1/orgs/{org}/ci-sync/{id}/jobs" { GET => ci_sync::jobs, Action("ci_sync.jobs"); }
    "/ui/orgs/{org}/ci-sync" {
        GET => ui::ci_sync::page_get, Action("ci_sync.list");
        POST => ui::ci_sync::create, Action("ci_sync.create");
    }
    "/ui/orgs/{org}/ci-sync/{id}/token" { POST => ui::ci_sync::set_token, Action("ci_sync.set_credential"); }
    "/ui/orgs/{org}/ci-sync/{id}/run" { POST => ui::ci_sync::run, Action("ci_sync.run"); }
    "/ui/orgs/{org}/ci-sync/{id}/remove" { POST => ui::ci_sync::remove, Action("ci_sync.delete"); }
    // === end CI sync targets ===
    // === end protected environments ===
    // === single sign-on (issue 20, docs/sso.md) ===
    "/api/v1/orgs/{org}/sso" {
        GET => sso::get_config, Action("sso.read");
        PUT => sso::set_config, Action("sso.set");
        DELETE => sso::delete_config, Action("sso.delete");
    }
    "/api/v1/auth/sso/{org}/start" { POST => sso::start, Action("auth.sso_start"); }
    "/api/v1/auth/sso/callback" { POST => sso::callback, Action("auth.sso_login"); }
    "/v1/auth/oidc/oidc/auth_url" { POST | PUT => sso::vault_auth_url, Action("auth.sso_start"); }
    "/v1/auth/oidc/oidc/callback" { GET | POST => sso::vault_callback, Action("auth.sso_login"); }
    "/ui/sso/start" { GET => ui::sso::start, Action("auth.sso_start"); }
    "/ui/sso/callback" { GET => ui::sso::callback, Action("auth.sso_login"); }
    // === end single sign-on ===
    // native: users, sessions, tokens
    "/api/v1/users" {
        GET => identity::list_users, Action("user.list");
        POST => identity::create_user, Action("user.create");
    }
    "/api/v1/users/{email}" {
        GET => identity::get_user, Action("user.read");
        DELETE => identity::delete_user, Action("user.delete");
    }
    "/api/v1/users/{email}/revoke-sessions" {
        POST => identity::revoke_user_sessions, Action("user.revoke_sessions");
    }
    "/api/v1/users/{email}/totp" { DELETE => identity::reset_totp, Action("user.totp_reset"); }
    "/api/v1/users/{email}/disable" { POST => identity::disable_user, Action("user.disable"); }
    "/api/v1/users/{email}/enable" { POST => identity::enable_user, Action("user.enable"); }
    "/api/v1/auth/password" { POST => identity::change_password, Action("auth.password_change"); }
    "/api/v1/auth/login" { POST => identity::login, Action("auth.login"); }
    "/api/v1/auth/refresh" { POST => identity::refresh, Action("auth.refresh"); }
    "/api/v1/auth/logout" { POST => identity::logout, Action("auth.logout"); }
    "/api/v1/auth/whoami" { GET => identity::whoami, Action("auth.whoami"); }
    "/api/v1/auth/totp/enroll" { POST => identity::totp_enroll, Action("auth.totp_enroll"); }
    "/api/v1/auth/totp/verify" { POST => identity::totp_verify, Action("auth.totp_verify"); }
    "/api/v1/auth/device/code" { POST => identity::device_code, Action("auth.device_code"); }
    "/api/v1/auth/device/approve" { POST => identity::device_approve, Action("auth.device_approve"); }
    "/api/v1/auth/device/deny" { POST => identity::device_deny, Action("auth.device_deny"); }
    "/api/v1/auth/device/token" { POST => identity::device_token, Action("auth.device_token"); }
    "/api/v1/tokens" {
        GET => identity::list_tokens, Action("token.list");
        POST => identity::create_token, Action("token.create");
    }
    "/api/v1/tokens/{accessor}" { DELETE => identity::revoke_token, Action("token.revoke"); }
    // === share links (docs/share-links.md) ===
    // the link id travels in the open body, never in a path a record keeps
    "/api/v1/orgs/{org}/shares" {
        GET => shares::list_org, Action("share.list");
        POST => shares::create, Action("share.create");
    }
    "/api/v1/orgs/{org}/share-policy" {
        GET => shares::policy, Action("share.policy_status");
        PUT => shares::set_policy, Action("share.policy_set");
    }
    "/api/v1/shares" { GET => shares::list_mine, Action("share.list"); }
    "/api/v1/shares/open" { POST => shares::open, Action("share.open"); }
    "/api/v1/shares/{handle}" { DELETE => shares::revoke, Action("share.revoke"); }
    "/s/{id}" { GET => ui::shares::page, Public; }
    "/ui/account/shares/{handle}/revoke" { POST => ui::shares::revoke, Action("share.revoke"); }
    // === end share links ===
    // native: the audit log itself
    "/api/v1/audit/records" { GET => audit::search, Action("audit.search"); }
    "/api/v1/audit/verify" { GET => audit::verify, Action("audit.verify"); }
    "/api/v1/audit/prune" { POST => audit::prune, Action("audit.prune"); }
    // the native API's OpenAPI 3.1 document (src/http/openapi.rs): public,
    // it describes routes and bodies, never data
    "/api/v1/openapi.json" { GET => openapi::spec, Public; }
    // the web dashboard (docs/dashboard.md): pages record what they show
    // under the API's action for it; every POST needs its CSRF token
    "/" { GET => ui::root, Public; }
    "/ui" { GET => ui::home, Public; }
    "/ui/assets/{name}" { GET => ui::asset, Public; }
    "/ui/init" { GET => ui::init_page, Public; POST => ui::init_submit, Action("seal.init"); }
    "/ui/unseal" { GET => ui::unseal_page, Public; POST => ui::unseal_submit, Action("seal.unseal_share"); }
    "/ui/unseal/reset" { POST => ui::unseal_reset, Action("seal.unseal_share"); }
    "/ui/login" { GET => ui::login_page, Public; POST => ui::login_submit, Action("auth.login"); }
    "/ui/logout" { POST => ui::logout, Action("auth.logout"); }
    "/ui/orgs" { GET => ui::orgs, Action("org.list"); }
    "/ui/orgs/{org}" { GET => ui::org, Action("project.list"); }
    "/ui/orgs/{org}/projects/{project}" { GET => ui::project, Action("env.list"); }
    "/ui/orgs/{org}/projects/{project}/envs/{env}" { GET => ui::env, Action("secret.list"); }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/reveal" {
        POST => ui::reveal, Action("secret.reveal");
    }
    // access (src/http/ui/access.rs): members, groups, service accounts,
    // the grants matrix; a new account token is in the POST's answer only
    "/ui/orgs/{org}/access" { GET => ui::access::access, Action("member.list"); }
    "/ui/orgs/{org}/access/members" { POST => ui::access::set_member, Action("member.set"); }
    "/ui/orgs/{org}/access/members/remove" { POST => ui::access::remove_member, Action("member.remove"); }
    "/ui/orgs/{org}/access/breach-policy" { POST => ui::access::set_breach_policy, Action("org.breach_policy_set"); }
    "/ui/orgs/{org}/access/groups" { POST => ui::access::create_group, Action("group.create"); }
    "/ui/orgs/{org}/access/groups/{group}/members" {
        POST => ui::access::add_group_member, Action("group.member_add");
    }
    "/ui/orgs/{org}/access/groups/{group}/members/remove" {
        POST => ui::access::remove_group_member, Action("group.member_remove");
    }
    "/ui/orgs/{org}/access/service-accounts" {
        POST => ui::access::create_service_account, Action("service_account.create");
    }
    "/ui/orgs/{org}/access/service-accounts/{name}/tokens" {
        POST => ui::access::service_account_token, Action("token.create");
    }
    "/ui/orgs/{org}/access/service-accounts/{name}/delete" {
        POST => ui::access::delete_service_account, Action("service_account.delete");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/grants" {
        GET => ui::access::grants, Action("grant.list");
        POST => ui::access::set_grant, Action("grant.create");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/grants/revoke" {
        POST => ui::access::revoke_grant, Action("grant.delete");
    }
    // my account (src/http/ui/account.rs): tokens, TOTP enrolment; a new
    // token, TOTP secret and recovery codes are in a POST's answer only
    "/ui/account" { GET => ui::account::account, Action("token.list"); }
    "/ui/account/tokens" { POST => ui::account::create_token, Action("token.create"); }
    "/ui/account/tokens/{accessor}/revoke" { POST => ui::account::revoke_token, Action("token.revoke"); }
    "/ui/account/totp/enroll" { POST => ui::account::totp_enroll, Action("auth.totp_enroll"); }
    "/ui/account/totp/verify" { POST => ui::account::totp_verify, Action("auth.totp_verify"); }
    // the Edit area (ui/edit.rs): the API's actions for the same changes;
    // a page that shows an empty form is recorded as a read of the
    // environment, a value check as `secret.validate` (a read)
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/new" {
        GET => ui::edit::new_page, Action("env.read");
        POST => ui::edit::new_submit, Action("secret.write");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/edit" {
        GET => ui::edit::edit_page, Action("secret.read");
        POST => ui::edit::edit_submit, Action("secret.write");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/validate" {
        POST => ui::edit::validate, Action("secret.validate");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/delete" {
        POST => ui::edit::delete, Action("secret.delete");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/restore" {
        POST => ui::edit::restore, Action("secret.restore");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/purge" {
        POST => ui::edit::purge, Action("secret.purge");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/history" {
        GET => ui::edit::history, Action("secret.history");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/history/diff" {
        POST => ui::edit::diff, Action("secret.reveal");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/secrets/{key}/rollback" {
        POST => ui::edit::rollback, Action("secret.rollback");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/import" {
        GET => ui::edit::import_page, Action("env.read");
        POST => ui::edit::import_plan, Action("env.push_plan");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/import/apply" {
        POST => ui::edit::import_apply, Action("env.push");
    }
    "/ui/orgs/{org}/projects/{project}/envs/{env}/export" {
        POST => ui::edit::export, Action("env.pull");
    }
    // GET: an empty form (nothing of the server's; without a session the
    // login form); `coffer login` points here
    "/device" { GET => ui::device_page, Public; POST => ui::device_approve, Action("auth.device_approve"); }
    // the code entered: which client asked and when (reads the pending code)
    "/device/confirm" { POST => ui::device_confirm, Action("auth.device_read"); }
    "/device/deny" { POST => ui::device_deny, Action("auth.device_deny"); }
    // a root token's dashboard session (a child token of it)
    "/ui/login/token" { GET => ui::token_login, Public; POST => ui::token_login_submit, Action("auth.login"); }
    // the audit log: search (root, or an organization's admin), verify (root)
    "/ui/audit" { GET => ui::audit, Action("audit.search"); }
    "/ui/audit/verify" { POST => ui::audit_verify, Action("audit.verify"); }
    "/ui/audit/{seq}" { GET => ui::audit_record, Action("audit.search"); }
    // keys and server (root): the confirmation page reads the seal status
    "/ui/server" { GET => ui::server, Action("key.kek_list"); }
    "/ui/server/seal" { GET => ui::seal_confirm, Action("seal.key_status"); POST => ui::seal, Action("seal.seal"); }
}

/// Prefix of the environment routes of [`ENV_ROUTES`].
pub const ENV_PREFIX: &str = "/api/v1/orgs/{org}/projects/{project}/environments/{env}";

/// The native API's mount point.
const NATIVE: &str = "/api/v1";
/// The Vault-compatible API's mount point.
const VAULT: &str = "/v1";

/// Every native (method, full path template) the router serves: the
/// table's `/api/v1` routes, then the access table's environment routes
/// (each once), in table order. The OpenAPI document is built from it.
pub fn native_routes() -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = ROUTE_ACTIONS
        .iter()
        .filter(|(m, p, _)| *m != "*" && p.starts_with("/api/v1/"))
        .map(|(m, p, _)| (*m, (*p).to_owned()))
        .collect();
    for r in ENV_ROUTES {
        let path = format!("{ENV_PREFIX}{}", r.path);
        if !out.iter().any(|(m, p)| *m == r.method && *p == path) {
            out.push((r.method, path));
        }
    }
    out
}

/// The handler of one environment route of the access table. Every entry
/// of [`ENV_ROUTES`] must have one (a unit test checks), and environment
/// routes are registered only from that table, so none escapes its rule.
fn env_handler(r: &EnvRoute) -> Option<MethodRouter<AppState>> {
    Some(match (r.method, r.path) {
        ("GET", "") => get(api::get_env),
        ("PATCH", "") => patch(api::update_env),
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
        ("POST", "/sync/push") => post(api::sync_push),
        ("GET", "/sync/pull") => get(api::sync_pull),
        ("POST", "/sync/diff") => post(api::sync_diff),
        ("POST", "/break-glass") => post(approvals::break_glass),
        _ => return None,
    })
}

fn env_routes(mut router: Router<AppState>) -> Router<AppState> {
    let env = ENV_PREFIX.strip_prefix(NATIVE).unwrap_or(ENV_PREFIX);
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

/// Every route of the tables, with the Vault and native fallbacks; the
/// layers are added by `http::router`.
pub(super) fn surface() -> Router<AppState> {
    let (mut vault, mut native, mut root) = (Router::new(), Router::new(), Router::new());
    let mut dashboard = Router::new();
    for (path, handler) in table_routes() {
        if is_dashboard(path) {
            dashboard = dashboard.route(path, handler);
        } else if let Some(p) = path.strip_prefix(NATIVE) {
            native = native.route(p, handler);
        } else if let Some(p) = path.strip_prefix(VAULT) {
            vault = vault.route(p, handler);
        } else {
            root = root.route(path, handler);
        }
    }
    root.merge(dashboard.layer(axum::middleware::map_response(ui::security_headers)))
        .nest(VAULT, vault.fallback(sys::fallback))
        .nest(NATIVE, env_routes(native).fallback(api::fallback))
}

/// A dashboard route: its answers carry the dashboard's CSP and headers.
fn is_dashboard(path: &str) -> bool {
    path == "/"
        || path == "/ui"
        || path.starts_with("/ui/")
        || path == "/device"
        || path.starts_with("/device/")
        || path.starts_with("/s/")
}

/// The audit of a matched route; None = a method the route does not serve.
pub fn route_audit(method: &Method, path: &str) -> Option<RouteAudit> {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    if let Some(rest) = path.strip_prefix(ENV_PREFIX)
        && let Some(r) = ENV_ROUTES.iter().find(|r| r.method == method && r.path == rest)
    {
        return Some(Action(r.action()));
    }
    ROUTE_ACTIONS
        .iter()
        .find(|(m, p, _)| (*m == method || *m == "*") && *p == path)
        .map(|(_, _, a)| *a)
}

/// The `Allow` header of a route template: the methods the tables give it
/// (HEAD with GET, and OPTIONS, answered by the audit layer), in a fixed
/// order.
pub fn allow_header(path: &str) -> String {
    let env_methods = path
        .strip_prefix(ENV_PREFIX)
        .into_iter()
        .flat_map(|rest| ENV_ROUTES.iter().filter(move |r| r.path == rest).map(|r| r.method));
    let methods: Vec<&str> = ROUTE_ACTIONS
        .iter()
        .filter(|(_, p, _)| *p == path)
        .map(|(m, _, _)| *m)
        .chain(env_methods)
        .collect();
    let has = |m: &str| methods.contains(&m);
    let allow: Vec<&str> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .into_iter()
        .filter(|m| has(m) || (*m == "HEAD" && has("GET")))
        .chain(["OPTIONS"])
        .collect();
    allow.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Target;

    #[test]
    fn every_access_table_route_has_a_handler() {
        for r in ENV_ROUTES {
            assert!(env_handler(r).is_some(), "{} {} has no handler", r.method, r.path);
        }
    }

    #[test]
    fn env_routes_and_heads_resolve() {
        assert_eq!(
            route_audit(&Method::GET, &format!("{ENV_PREFIX}/secrets/{{key}}")),
            Some(Action("secret.read"))
        );
        assert_eq!(route_audit(&Method::HEAD, "/v1/sys/health"), Some(Public));
        assert_eq!(route_audit(&Method::PATCH, "/api/v1/orgs"), None);
        assert_eq!(
            route_audit(&Method::PATCH, "/api/v1/orgs/{org}"),
            Some(Action("org.rename"))
        );
        assert_eq!(allow_header("/api/v1/orgs/{org}"), "GET, HEAD, PATCH, DELETE, OPTIONS");
        // The environment itself: its ENV_ROUTES methods and its lifecycle.
        assert_eq!(allow_header(ENV_PREFIX), "GET, HEAD, PATCH, DELETE, OPTIONS");
        assert_eq!(route_audit(&Method::DELETE, ENV_PREFIX), Some(Action("env.delete")));
        assert_eq!(route_audit(&Method::GET, ENV_PREFIX), Some(Action("env.read")));
        assert_eq!(allow_header("/api/v1/orgs"), "GET, HEAD, POST, OPTIONS");
    }

    #[test]
    fn every_env_route_has_an_action() {
        for r in ENV_ROUTES {
            assert_ne!(r.action(), "env.unknown", "{} {} has no action", r.method, r.path);
        }
    }

    /// The router is built from `table_routes` and [`ENV_ROUTES`] only;
    /// [`ROUTE_ACTIONS`] comes from the same table, so every registered
    /// (method, path) has its audit. This checks what the macro cannot: no
    /// (method, path) twice, `*` alone on its path, no table path under the
    /// environment prefix, each path in one of the three mounts, and that
    /// the router builds (axum panics on overlapping routes).
    #[test]
    fn the_router_serves_exactly_the_table() {
        let mut paths: Vec<&str> = Vec::new();
        for (i, (m, p, _)) in ROUTE_ACTIONS.iter().enumerate() {
            assert!(
                !ROUTE_ACTIONS[..i].iter().any(|(m2, p2, _)| m2 == m && p2 == p),
                "{m} {p} twice"
            );
            assert!(
                *m != "*" || ROUTE_ACTIONS.iter().all(|(m2, p2, _)| p2 != p || *m2 == "*"),
                "{p}: `ANY` must be the path's only method"
            );
            // Under the environment prefix only the environment's own
            // lifecycle (organization admins), never a route of ENV_ROUTES.
            if let Some(rest) = p.strip_prefix(ENV_PREFIX) {
                assert!(
                    ["", "/restore", "/permanent"].contains(&rest),
                    "{p}: environment routes come from ENV_ROUTES"
                );
                assert!(
                    !ENV_ROUTES.iter().any(|r| r.method == *m && r.path == rest),
                    "{m} {p} is in ENV_ROUTES too"
                );
            }
            if !paths.contains(p) {
                paths.push(p);
            }
        }
        let registered: Vec<&str> = table_routes().into_iter().map(|(p, _)| p).collect();
        assert_eq!(registered, paths);
        let _ = surface();
    }

    /// `docs/routes.md` lists the tables. After changing a route, run
    /// `UPDATE_ROUTE_DOCS=1 cargo test --lib routes` to rewrite it.
    #[test]
    fn docs_list_every_route() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/routes.md");
        let want = markdown();
        if std::env::var_os("UPDATE_ROUTE_DOCS").is_some() {
            std::fs::write(file, &want).expect("write docs/routes.md");
        }
        let have = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            have == want,
            "docs/routes.md differs from the route table; run `UPDATE_ROUTE_DOCS=1 cargo test --lib routes`"
        );
    }

    /// The route listing of `docs/routes.md`.
    fn markdown() -> String {
        let mut out = String::from(
            "# Routes\n\n\
             Generated from the route table (`src/http/routes.rs`) and the access table\n\
             (`ENV_ROUTES` in `src/access.rs`); a unit test keeps this file equal to them\n\
             (`UPDATE_ROUTE_DOCS=1 cargo test --lib routes` rewrites it). `HEAD` is served\n\
             wherever `GET` is; any other method a route does not list answers 405 with\n\
             `Allow` (`OPTIONS`: 204), unrecorded. Audit actions: [audit.md](audit.md).\n\n\
             | method | path | audit action |\n|---|---|---|\n",
        );
        // One row per path and audit, its methods joined.
        let mut rows: Vec<(String, &str, String)> = Vec::new();
        for (m, p, a) in ROUTE_ACTIONS {
            let audit = match a {
                Public => "— (public, not recorded)".to_owned(),
                Action(action) => format!("`{action}`"),
                Kv => "by operation and method: [vault-api.md](vault-api.md)".to_owned(),
            };
            let m = if *m == "*" { "any" } else { m };
            match rows.iter_mut().find(|(_, p2, a2)| p2 == p && *a2 == audit) {
                Some((ms, _, _)) => {
                    ms.push('/');
                    ms.push_str(m);
                }
                None => rows.push((m.to_owned(), p, audit)),
            }
        }
        for (m, p, a) in rows {
            out.push_str(&format!("| {m} | `{p}` | {a} |\n"));
        }
        out.push_str(&format!(
            "\n## Environment routes\n\n\
             Below `{ENV_PREFIX}`; each needs the\n\
             permission on the environment ([access.md](access.md)).\n\n\
             | method | path | audit action | permission |\n|---|---|---|---|\n"
        ));
        for r in ENV_ROUTES {
            let path = match r.query {
                "" => r.path.to_owned(),
                q => format!("{}?{q}", r.path),
            };
            let action = if r.query.contains("reveal=true") {
                "secret.reveal"
            } else {
                r.action()
            };
            let permission = match (r.admin, r.target) {
                (true, _) => "admin (every permission)",
                (false, Target::New) => "create (a new key)",
                (false, _) => r.permission.as_str(),
            };
            out.push_str(&format!(
                "| {} | `…/environments/{{env}}{path}` | `{action}` | {permission} |\n",
                r.method
            ));
        }
        out
    }
}
