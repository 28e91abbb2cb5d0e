//! Vault-compatible seal lifecycle: `/v1/sys/{health,init,seal-status,
//! unseal,seal,leader}` with Vault's raw JSON bodies and status codes, so
//! the Vault/OpenBao CLIs and client libraries can run a ceremony; and the
//! `sys/` reads clients make about the server (`sys/auth`, `sys/audit`,
//! `sys/key-status`, `sys/capabilities-self`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::VaultError;
use super::extract::{VaultAuth, VaultBody, VaultSelfAuth};
use super::vault_kv::fail;
use crate::seal::{SealKind, SealStatus};
use crate::service::ServiceError;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn server_time() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `cluster_name` / `cluster_id` fields, present once unsealed.
fn cluster(s: &SealStatus, body: &mut Map<String, Value>) {
    body.insert("cluster_name".into(), json!("coffer"));
    body.insert("cluster_id".into(), json!(s.cluster_id));
}

fn seal_status_body(state: &AppState, s: &SealStatus) -> Value {
    let mut body = json!({
        "type": s.kind.as_str(),
        "initialized": s.initialized,
        "sealed": s.sealed,
        "t": s.threshold,
        "n": s.shares,
        "progress": s.progress,
        // Vault shows no nonce until the first share of a ceremony.
        "nonce": if s.progress == 0 { "" } else { s.nonce.as_str() },
        "version": VERSION,
        "build_date": "",
        "migration": s.migration,
        "recovery_seal": s.kind == SealKind::Pkcs11,
        "storage_type": state.coffer.operator.storage_kind(),
    });
    if let (Some(reason), Some(map)) = (&s.reason, body.as_object_mut()) {
        // coffer's own field: why the HSM auto-unseal has not succeeded.
        map.insert("sealed_reason".into(), json!(reason));
    }
    if !s.sealed
        && let Some(map) = body.as_object_mut()
    {
        cluster(s, map);
    }
    body
}

/// `GET|HEAD /v1/sys/health`: 200 active, 503 sealed, 501 uninitialized;
/// each code can be overridden by query parameter, as Vault allows. An
/// override outside 200–599 is ignored: a 1xx is no final answer (hyper
/// turned 100–199 into an empty 500, and 101 broke the connection) and
/// 600–999 are no HTTP status (found by schemathesis, docs/reliability.md).
pub(super) async fn health(State(state): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = state.coffer.operator.seal_status_cached();
    let code = |name: &str, default: u16| {
        q.get(name)
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|c| (200..=599).contains(c))
            .unwrap_or(default)
    };
    let status = if !s.initialized {
        code("uninitcode", 501)
    } else if s.sealed {
        code("sealedcode", 503)
    } else {
        code("activecode", 200)
    };
    let mut body = json!({
        "initialized": s.initialized,
        "sealed": s.sealed,
        "standby": s.sealed,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": server_time(),
        "version": VERSION,
        "enterprise": false,
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
        "replication_primary_canary_age_ms": 0,
        "removed_from_cluster": false,
    });
    if let Some(map) = body.as_object_mut() {
        cluster(&s, map);
        if let Some(reason) = &s.reason {
            map.insert("sealed_reason".into(), json!(reason));
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, Json(body)).into_response()
}

/// `GET /v1/sys/init`.
pub(super) async fn init_status(State(state): State<AppState>) -> Result<Json<Value>, VaultError> {
    let s = state.coffer.operator.seal_status().await?;
    Ok(Json(json!({ "initialized": s.initialized })))
}

#[derive(Debug, Deserialize)]
pub(super) struct InitRequest {
    secret_shares: Option<u64>,
    secret_threshold: Option<u64>,
    #[serde(default)]
    pgp_keys: Option<Vec<String>>,
    #[serde(default)]
    root_token_pgp_key: Option<String>,
    /// pkcs11 mode (Vault's auto-unseal): the custodians' recovery shares
    recovery_shares: Option<u64>,
    recovery_threshold: Option<u64>,
    #[serde(default)]
    recovery_pgp_keys: Option<Vec<String>>,
}

fn share_count(field: &str, v: Option<u64>) -> Result<u8, ServiceError> {
    let v = v.ok_or_else(|| ServiceError::Invalid(format!("{field} is required")))?;
    u8::try_from(v)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ServiceError::Invalid(format!("{field} must be between 1 and 255, got {v}")))
}

/// `PUT|POST /v1/sys/init`: shares and root token, once.
pub(super) async fn init(
    State(state): State<AppState>,
    VaultBody(req): VaultBody<InitRequest>,
) -> Result<Json<Value>, VaultError> {
    if req.root_token_pgp_key.as_ref().is_some_and(|k| !k.is_empty()) {
        return Err(ServiceError::Invalid(
            "root_token_pgp_key is not supported; pgp_keys takes age X25519 recipients for the shares".into(),
        )
        .into());
    }
    let recovery = state.coffer.operator.seal_status_cached().kind == SealKind::Pkcs11;
    let (shares, threshold) = if recovery {
        (
            share_count("recovery_shares", req.recovery_shares.or(req.secret_shares))?,
            share_count("recovery_threshold", req.recovery_threshold.or(req.secret_threshold))?,
        )
    } else {
        (
            share_count("secret_shares", req.secret_shares)?,
            share_count("secret_threshold", req.secret_threshold)?,
        )
    };
    // pgp_keys / recovery_pgp_keys carry age X25519 recipients, one per share.
    let recipients = if recovery {
        req.recovery_pgp_keys.or(req.pgp_keys)
    } else {
        req.pgp_keys
    }
    .unwrap_or_default();
    let out = state
        .coffer
        .operator
        .init_encrypted(shares, threshold, &recipients)
        .await?;
    let keys: Vec<&str> = out.keys_hex.iter().map(|k| k.as_str()).collect();
    let keys_b64: Vec<&str> = out.keys_base64.iter().map(|k| k.as_str()).collect();
    Ok(Json(if recovery {
        // Vault's auto-unseal answer: no unseal keys, recovery keys instead.
        json!({
            "keys": [], "keys_base64": [],
            "recovery_keys": keys, "recovery_keys_base64": keys_b64,
            "root_token": out.root_token.as_str(),
        })
    } else {
        json!({ "keys": keys, "keys_base64": keys_b64, "root_token": out.root_token.as_str() })
    }))
}

/// `GET /v1/sys/seal-status`.
pub(super) async fn seal_status(State(state): State<AppState>) -> Result<Json<Value>, VaultError> {
    let s = state.coffer.operator.seal_status().await?;
    Ok(Json(seal_status_body(&state, &s)))
}

/// Its Debug never shows the share.
#[derive(Deserialize)]
pub(super) struct UnsealRequest {
    key: Option<zeroize::Zeroizing<String>>,
    #[serde(default)]
    reset: bool,
    /// Vault's seal migration flag (hvac always sends `false`).
    #[serde(default)]
    migrate: bool,
}

impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealRequest")
            .field("reset", &self.reset)
            .field("migrate", &self.migrate)
            .finish_non_exhaustive()
    }
}

/// `PUT|POST /v1/sys/unseal`: one share, or `reset`.
pub(super) async fn unseal(
    State(state): State<AppState>,
    VaultBody(req): VaultBody<UnsealRequest>,
) -> Result<Json<Value>, VaultError> {
    let status = if req.reset {
        state.coffer.operator.unseal_reset()
    } else {
        let key = req.key.ok_or_else(|| {
            ServiceError::Invalid("'key' must be specified in request body as JSON, or 'reset' set to true".into())
        })?;
        state.coffer.operator.unseal_migrate(&key, req.migrate).await?
    };
    Ok(Json(seal_status_body(&state, &status)))
}

/// `PUT|POST /v1/sys/seal`: root token; 204.
pub(super) async fn seal(State(state): State<AppState>, VaultAuth(who): VaultAuth) -> Result<StatusCode, VaultError> {
    state.coffer.operator.seal(&who)?;
    tracing::warn!(accessor = %who.accessor, "sealed by API request");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sys/backup`: root token; the signed backup file (JSON lines) in
/// `file`, with the rows per table.
pub(super) async fn backup(
    State(state): State<AppState>,
    VaultAuth(who): VaultAuth,
) -> Result<Json<Value>, VaultError> {
    let b = state.coffer.operator.backup(&who).await?;
    tracing::warn!(accessor = %who.accessor, bytes = b.bytes.len(), "backup taken by API request");
    let file = String::from_utf8(b.bytes).map_err(|_| ServiceError::Internal("backup is not UTF-8".into()))?;
    let tables: Vec<Value> = b.counts.iter().map(|(t, n)| json!({ "name": t, "rows": n })).collect();
    Ok(Json(json!({ "file": file, "tables": tables })))
}

/// `GET /v1/sys/leader`: a single active node, no HA. Uninitialized counts as
/// sealed, as in Vault: `vault/bao status` calls this and tolerates only an
/// error containing "Vault is sealed"; any other error fails the command.
pub(super) async fn leader(State(state): State<AppState>) -> Result<Json<Value>, VaultError> {
    state.coffer.operator.require_unsealed().map_err(|e| match e {
        ServiceError::NotInitialized => ServiceError::Sealed,
        e => e,
    })?;
    Ok(Json(json!({
        "ha_enabled": false,
        "is_self": true,
        "active_time": "0001-01-01T00:00:00Z",
        "leader_address": "",
        "leader_cluster_address": "",
        "performance_standby": false,
        "performance_standby_last_remote_wal": 0,
        "raft_committed_index": 0,
        "raft_applied_index": 0,
    })))
}

/// A `sys/` read as Vault answers it: the logical envelope, `data`'s keys
/// repeated at the top level (Vault's older clients read them there).
pub(super) fn sys_table(data: Map<String, Value>, warnings: Value) -> Response {
    let mut body = data.clone();
    body.insert("request_id".into(), json!(crate::ops::fresh_request_id()));
    body.insert("lease_id".into(), json!(""));
    body.insert("renewable".into(), json!(false));
    body.insert("lease_duration".into(), json!(0));
    body.insert("data".into(), Value::Object(data));
    body.insert("wrap_info".into(), Value::Null);
    body.insert("warnings".into(), warnings);
    body.insert("auth".into(), Value::Null);
    (StatusCode::OK, Json(Value::Object(body))).into_response()
}

/// One auth method of `sys/auth`, as Vault describes a mount.
fn auth_method(kind: &str, uuid: &str, description: &str) -> Value {
    json!({
        "type": kind,
        "description": description,
        "accessor": format!("auth_{kind}_coffer"),
        "uuid": uuid,
        "config": {
            "default_lease_ttl": 0,
            "max_lease_ttl": 0,
            "force_no_cache": false,
            "token_type": "default-service",
        },
        // Vault: null for the token method, {} for a mounted one
        "options": if kind == "token" { Value::Null } else { json!({}) },
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
    })
}

/// `GET sys/auth`: the three login methods coffer has, always on (they
/// cannot be enabled, tuned or disabled).
pub(super) async fn auth_methods(VaultAuth(_who): VaultAuth) -> Response {
    let mut d = Map::new();
    d.insert(
        "token/".into(),
        auth_method(
            "token",
            "00000000-0000-0000-0000-0000c0ff0a01",
            "token based credentials: coffer tokens",
        ),
    );
    d.insert(
        "userpass/".into(),
        auth_method(
            "userpass",
            "00000000-0000-0000-0000-0000c0ff0a02",
            "coffer users: POST auth/userpass/login/<email> with the password (TOTP in X-Vault-MFA)",
        ),
    );
    d.insert(
        "cert/".into(),
        auth_method(
            "cert",
            "00000000-0000-0000-0000-0000c0ff0a03",
            "coffer service accounts by client certificate (needs a mutual-TLS listener: listener.tls_client_ca)",
        ),
    );
    sys_table(d, Value::Null)
}

/// `GET sys/audit` (root): coffer records every audited request in its own
/// hash-chained, signed log in the database, always (device `coffer/`),
/// and copies each record to the configured file and syslog sinks.
pub(super) async fn audit_devices(State(state): State<AppState>, VaultAuth(who): VaultAuth) -> Response {
    let a = match state.coffer.vault.vault_audit_devices(&who) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let device = |kind: &str, path: &str, description: &str, options: Value| json!({ "type": kind, "description": description, "options": options, "local": true, "path": path });
    let mut d = Map::new();
    let mut warnings = Value::Null;
    if a.enabled {
        d.insert(
            "coffer/".into(),
            device(
                "coffer",
                "coffer/",
                "coffer's audit log: every audited request, hash-chained and signed, in the database \
                 (GET /api/v1/audit/records, /api/v1/audit/verify); cannot be disabled",
                json!({}),
            ),
        );
        if let Some(file) = a.file {
            d.insert(
                "file/".into(),
                device(
                    "file",
                    "file/",
                    "a copy of each record as a JSON line",
                    json!({ "file_path": file }),
                ),
            );
        }
        if let Some(socket) = a.syslog {
            d.insert(
                "syslog/".into(),
                device(
                    "syslog",
                    "syslog/",
                    "a copy of each record to the local syslog",
                    json!({ "socket": socket }),
                ),
            );
        }
    } else {
        warnings = json!(["[audit] enabled = false: this server records nothing"]);
    }
    sys_table(d, warnings)
}

/// `GET sys/key-status` (root).
pub(super) async fn key_status(State(state): State<AppState>, VaultAuth(who): VaultAuth) -> Response {
    match state.coffer.operator.vault_key_status(&who).await {
        Ok(k) => {
            let mut d = Map::new();
            d.insert("term".into(), json!(1));
            d.insert("install_time".into(), json!(crate::service::rfc3339(k.installed_at)));
            sys_table(
                d,
                json!([
                    "coffer does not number root-key generations: term is always 1 and install_time is when \
                     coffer was initialized, also after sys/rotate-root (rotations are in the audit log as \
                     key.rotate_root); encryptions are not counted"
                ]),
            )
        }
        Err(e) => fail(e),
    }
}

/// `paths` as Vault takes it: a list, or a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Paths {
    List(Vec<String>),
    Text(String),
}

#[derive(Debug, Deserialize)]
pub(super) struct CapabilitiesBody {
    paths: Option<Paths>,
    /// Vault's older single-path form; answered also as `capabilities`
    path: Option<String>,
}

/// `POST sys/capabilities-self` `{paths}` or `{path}`: any token, a
/// self-only one included.
pub(super) async fn capabilities_self(
    State(state): State<AppState>,
    VaultSelfAuth(who): VaultSelfAuth,
    VaultBody(b): VaultBody<CapabilitiesBody>,
) -> Response {
    let mut paths: Vec<String> = match b.paths {
        Some(Paths::List(l)) => l,
        Some(Paths::Text(t)) => t.split(',').map(|p| p.trim().to_owned()).collect(),
        None => Vec::new(),
    };
    paths.retain(|p| !p.is_empty());
    let single = b.path.filter(|p| !p.is_empty());
    if let Some(p) = &single {
        paths.push(p.clone());
    }
    if paths.is_empty() {
        return fail(ServiceError::Invalid("paths must be supplied".into()));
    }
    match state.coffer.vault.vault_capabilities(&who, &paths).await {
        Ok(caps) => {
            let mut d: Map<String, Value> = caps.into_iter().map(|(p, c)| (p, json!(c))).collect();
            if let Some(c) = single.and_then(|p| d.get(&p).cloned()) {
                d.insert("capabilities".into(), c);
            }
            sys_table(d, Value::Null)
        }
        Err(e) => fail(e),
    }
}

/// Any other `/v1/` path: 503 while sealed (clients match the text), else 404.
pub(super) async fn fallback(State(state): State<AppState>, uri: axum::http::Uri) -> VaultError {
    match state.coffer.operator.require_unsealed() {
        Err(e) => VaultError(e),
        Ok(()) => VaultError(ServiceError::NotFound(format!(
            "no handler for route {:?}; path",
            uri.path()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unseal_request_debug_never_shows_the_share() {
        let r: super::UnsealRequest = serde_json::from_str(r#"{"key":"abcdef0123456789share"}"#).expect("body");
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("0123456789share"), "{dbg}");
    }
}
