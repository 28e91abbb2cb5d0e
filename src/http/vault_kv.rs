//! Vault's KV v2 wire format on the `secret/` mount and the mount preflight
//! (`sys/internal/ui/mounts`, `sys/mounts`); their routes are in the route
//! table (`routes.rs`). Handlers parse the request, call one method of `service::kv` and shape Vault's answer:
//! the logical envelope, 204 on empty success, `{"errors":[…]}` otherwise.
//!
//! Axum has no method filter for Vault's `LIST` verb, so the mount has one
//! handler that dispatches on (operation, method); `GET ?list=true` is the
//! same as `LIST`, and `PUT` is the same as `POST`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::AppState;
use super::audit::AuditNote;
use super::error::VaultError;
use super::extract::VaultAuth;
use crate::service::ServiceError;
use crate::service::kv::{self, CustomMetadata, KvMetaInput, VersionOp};

/// The query of a `secret/` request, parsed once the way both the handler
/// and the audit layer read it (a key given twice: the last one counts).
pub(crate) type KvQuery = HashMap<String, String>;

/// Whether a `secret/` request lists: Vault's `LIST` verb, or a `GET` whose
/// `list` parameter is true as Go's `strconv.ParseBool` reads it (`1`, `t`,
/// `T`, `true`, `True`, `TRUE`). Another method ignores `list`, as Vault does.
/// A `list` that is not a Go boolean is an error naming the parameter.
fn list_flag(method: &Method, q: &KvQuery) -> Result<bool, ServiceError> {
    if method.as_str() == "LIST" {
        return Ok(true);
    }
    if *method != Method::GET {
        return Ok(false);
    }
    match q.get("list").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "True" | "TRUE") => Ok(true),
        Some("0" | "f" | "F" | "false" | "False" | "FALSE") => Ok(false),
        Some(_) => Err(ServiceError::Invalid(
            "list must be a boolean (true, false, 1, 0, t, f)".into(),
        )),
    }
}

/// Whether a `secret/` request lists (an invalid `list` does not: the
/// handler refuses it).
fn lists(method: &Method, q: &KvQuery) -> bool {
    list_flag(method, q).unwrap_or(false)
}

/// The audit action and organization of a request to the `secret/` mount:
/// `rest` is the decoded path below the mount (the `{*rest}` parameter the
/// handler gets) and `q` the decoded query, so the record names what the
/// handler acts on however the URI was spelled. Writes answer
/// `secret.update` here; the handler refines it when it knows more.
pub(crate) fn kv_target(method: &Method, rest: &str, q: &KvQuery) -> (&'static str, String) {
    let (op, path) = rest.split_once('/').unwrap_or((rest, ""));
    let m = method.as_str();
    let write = matches!(m, "POST" | "PUT" | "PATCH");
    let list = lists(method, q);
    let action = match (op, m) {
        ("metadata" | "data", _) if list => "secret.list",
        ("data", "GET") => "secret.reveal",
        ("data", "DELETE") | ("delete", _) => "secret.delete",
        ("data", _) if write => "secret.update",
        ("undelete", _) => "secret.undelete",
        ("destroy", _) => "secret.destroy",
        ("metadata", "DELETE") => "secret.purge",
        ("metadata", _) if write => "secret.update",
        ("metadata", _) | ("subkeys", _) => "secret.read",
        ("config", "GET") => "secret.read",
        ("config", _) => "secret.config",
        _ => "secret.unknown",
    };
    let org = if op == "config" {
        ""
    } else if list {
        match kv::folder(path) {
            Ok(kv::Folder::Org(o) | kv::Folder::Project(o, _) | kv::Folder::Env(o, _, _)) => o,
            Ok(kv::Folder::Root) | Err(_) => "",
        }
    } else {
        kv::key_path(path).map_or("", |(o, ..)| o)
    };
    (action, org.to_owned())
}

/// Vault's logical response envelope.
pub(super) fn envelope(status: StatusCode, mount_type: &str, data: Value, auth: Value, warnings: Value) -> Response {
    // Built by moving `data` and `auth` in (json! would copy them), and
    // wiped after serialization: they may hold plaintext or a token.
    let mut body = Map::new();
    body.insert("request_id".into(), Value::String(crate::ops::fresh_request_id()));
    body.insert("lease_id".into(), Value::String(String::new()));
    body.insert("renewable".into(), Value::Bool(false));
    body.insert("lease_duration".into(), Value::from(0));
    body.insert("data".into(), data);
    body.insert("wrap_info".into(), Value::Null);
    body.insert("warnings".into(), warnings);
    body.insert("auth".into(), auth);
    body.insert("mount_type".into(), Value::String(mount_type.to_owned()));
    (status, axum::Json(Wiped(Value::Object(body)))).into_response()
}

/// A JSON answer whose strings are wiped when it is dropped (after
/// serialization).
struct Wiped(Value);

impl serde::Serialize for Wiped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        kv::wipe_value(std::mem::take(&mut self.0));
    }
}

fn ok(data: Value) -> Response {
    envelope(StatusCode::OK, "kv", data, Value::Null, Value::Null)
}

/// Errors as Vault answers them on a logical path: not found is a bare
/// 404 `{"errors":[]}`.
pub(super) fn fail(e: ServiceError) -> Response {
    match e {
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, axum::Json(json!({ "errors": [] }))).into_response(),
        other => VaultError(other).into_response(),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A JSON body (empty reads as `{}`), the error naming what is wrong.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ServiceError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| {
        ServiceError::Invalid(format!(
            "failed to parse JSON input: {}",
            super::error::redact_input(&e.to_string())
        ))
    })
}

/// An integer given as a JSON number or a numeric string (the CLIs send
/// flags as strings).
fn int(v: &Value, field: &str) -> Result<i64, ServiceError> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ServiceError::Invalid(format!("{field} must be an integer")))
}

fn boolean(v: &Value, field: &str) -> Result<bool, ServiceError> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ServiceError::Invalid(format!("{field} must be true or false")))
}

/// `versions` as `[1, 2]`, `["1", "2"]` or `"1,2"`.
fn versions(b: &Map<String, Value>) -> Result<Vec<i64>, ServiceError> {
    match b.get("versions") {
        None | Some(Value::Null) => Err(ServiceError::Invalid("no versions provided".into())),
        Some(Value::Array(a)) => a.iter().map(|v| int(v, "versions")).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| int(&Value::String(x.to_owned()), "versions"))
            .collect(),
        Some(v) => Ok(vec![int(v, "versions")?]),
    }
}

/// A data write; Debug shows the field names only.
#[derive(Deserialize)]
struct WriteBody {
    data: Option<Map<String, Value>>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

impl std::fmt::Debug for WriteBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBody")
            .field("keys", &self.data.as_ref().map(|d| d.keys().collect::<Vec<_>>()))
            .finish_non_exhaustive()
    }
}

fn cas(options: Option<&Map<String, Value>>) -> Result<Option<i64>, ServiceError> {
    options
        .and_then(|o| o.get("cas"))
        .filter(|v| !v.is_null())
        .map(|v| int(v, "options.cas"))
        .transpose()
}

/// The settings of a metadata write. `patch` (PATCH): `custom_metadata` is
/// a JSON merge patch of the stored one (a key set to null is removed, and
/// `"custom_metadata": null` removes them all); otherwise it replaces it.
fn meta_input(b: &Map<String, Value>, patch: bool) -> Result<KvMetaInput, ServiceError> {
    let get = |k: &str| b.get(k).filter(|v| !v.is_null());
    Ok(KvMetaInput {
        patch,
        max_versions: get("max_versions").map(|v| int(v, "max_versions")).transpose()?,
        cas_required: get("cas_required").map(|v| boolean(v, "cas_required")).transpose()?,
        delete_version_after: get("delete_version_after")
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(format!("{n}s")),
                _ => Err(ServiceError::Invalid(
                    "delete_version_after must be a duration string".into(),
                )),
            })
            .transpose()?,
        custom_metadata: match b.get("custom_metadata") {
            None => None,
            Some(Value::Null) if patch => Some(CustomMetadata::Replace(Map::new())),
            Some(Value::Null) => None,
            Some(Value::Object(m)) if patch => Some(CustomMetadata::Merge(m.clone())),
            Some(Value::Object(m)) => Some(CustomMetadata::Replace(m.clone())),
            Some(_) => {
                return Err(ServiceError::Invalid(
                    "custom_metadata must be an object of strings".into(),
                ));
            }
        },
    })
}

/// The one handler of the `secret/` mount.
pub(super) async fn kv_mount(
    State(s): State<AppState>,
    method: Method,
    Path(rest): Path<String>,
    Query(q): Query<KvQuery>,
    note: AuditNote,
    VaultAuth(who): VaultAuth,
    bytes: Bytes,
) -> Response {
    let (op, path) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
    let list = match list_flag(&method, &q) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let version = match q.get("version").map(|v| v.parse::<i64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return fail(ServiceError::Invalid("version must be an integer".into())),
    };
    let c = &s.coffer;
    let res: Result<Response, ServiceError> = async {
        let m = method.as_str();
        match (op, m) {
            ("config", "GET") => Ok(ok(to_value(&c.kv.kv_config(&who).await?))),
            ("config", "POST" | "PUT") => {
                let b: Map<String, Value> = body(&bytes)?;
                let i = meta_input(&b, false)?;
                c.kv.kv_set_config(&who, i.max_versions, i.cas_required, i.delete_version_after)
                    .await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ("metadata" | "data", _) if list => {
                let keys = c.kv.kv_list(&who, kv::folder(path)?).await?;
                Ok(ok(json!({ "keys": keys })))
            }
            ("data", "GET") => {
                let mut r = c.kv.kv_read(&who, kv::key_path(path)?, version).await?;
                let status = if r.data.is_some() {
                    note.values(1);
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                // Moved, not copied: the plaintext exists once, wiped after the answer.
                let mut data = Map::new();
                data.insert("data".into(), r.data.take().map_or(Value::Null, Value::Object));
                data.insert("metadata".into(), to_value(&r.metadata));
                let data = Value::Object(data);
                Ok(envelope(status, "kv", data, Value::Null, Value::Null))
            }
            ("data", "POST" | "PUT") => {
                let b: WriteBody = body(&bytes)?;
                let data = b.data.ok_or_else(|| ServiceError::Invalid("no data provided".into()))?;
                let meta =
                    c.kv.kv_write(&who, kv::key_path(path)?, &data, cas(b.options.as_ref())?)
                        .await?;
                Ok(ok(to_value(&meta)))
            }
            ("data", "PATCH") => {
                let b: WriteBody = body(&bytes)?;
                let data = b.data.ok_or_else(|| ServiceError::Invalid("no data provided".into()))?;
                let meta =
                    c.kv.kv_patch(&who, kv::key_path(path)?, &data, cas(b.options.as_ref())?)
                        .await?;
                Ok(ok(to_value(&meta)))
            }
            ("data", "DELETE") => {
                c.kv.kv_mark(&who, kv::key_path(path)?, None, VersionOp::Delete).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ("delete" | "undelete" | "destroy", "POST" | "PUT") => {
                let b: Map<String, Value> = body(&bytes)?;
                let v = versions(&b)?;
                let kind = match op {
                    "delete" => VersionOp::Delete,
                    "undelete" => VersionOp::Undelete,
                    _ => VersionOp::Destroy,
                };
                c.kv.kv_mark(&who, kv::key_path(path)?, Some(&v), kind).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ("metadata", "GET") => Ok(ok(to_value(&c.kv.kv_metadata(&who, kv::key_path(path)?).await?))),
            ("metadata", "POST" | "PUT" | "PATCH") => {
                let b: Map<String, Value> = body(&bytes)?;
                let input = meta_input(&b, m == "PATCH")?;
                c.kv.kv_write_metadata(&who, kv::key_path(path)?, input).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ("metadata", "DELETE") => {
                c.kv.kv_purge(&who, kv::key_path(path)?).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ("subkeys", "GET") => {
                let depth = match q.get("depth").map(|d| d.parse::<u32>()) {
                    None => 0,
                    Some(Ok(d)) => d,
                    Some(Err(_)) => return Err(ServiceError::Invalid("depth must be a whole number".into())),
                };
                let (sub, meta) = c.kv.kv_subkeys(&who, kv::key_path(path)?, version, depth).await?;
                let status = if sub.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                let data = json!({ "subkeys": sub, "metadata": to_value(&meta) });
                Ok(envelope(status, "kv", data, Value::Null, Value::Null))
            }
            ("config" | "data" | "metadata" | "delete" | "undelete" | "destroy" | "subkeys", _) => Ok(unsupported()),
            _ => Err(ServiceError::Invalid(format!(
                "secret/{op}: the KV v2 mount has data/, metadata/, delete/, undelete/, destroy/, subkeys/ and config"
            ))),
        }
    }
    .await;
    res.unwrap_or_else(fail)
}

fn unsupported() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({ "errors": ["1 error occurred:\n\t* unsupported operation\n\n"] })),
    )
        .into_response()
}

/// The one mount coffer has, as Vault describes a KV v2 mount.
fn mount_description() -> Value {
    json!({
        "type": "kv",
        "description": "coffer secrets: secret/<org>/<project>/<environment>/<KEY>",
        "accessor": "kv_coffer",
        "uuid": "00000000-0000-0000-0000-00000000c0ff",
        "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false },
        "options": { "version": "2" },
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "deprecation_status": "supported",
    })
}

/// `GET sys/mounts/secret/tune`: the mount's settings as Vault reads them
/// (no leases: KV v2 answers carry none).
fn mount_tune() -> Map<String, Value> {
    let d = mount_description();
    ["default_lease_ttl", "max_lease_ttl", "force_no_cache"]
        .into_iter()
        .map(|k| (k.to_owned(), d["config"][k].clone()))
        .chain(
            ["description", "options"]
                .into_iter()
                .map(|k| (k.to_owned(), d[k].clone())),
        )
        .collect()
}

/// `GET sys/internal/ui/mounts/<path>`: the CLIs' preflight ("is this a KV
/// v2 mount, and where does it start?").
pub(super) async fn mount_preflight(
    State(s): State<AppState>,
    VaultAuth(_who): VaultAuth,
    Path(path): Path<String>,
) -> Response {
    if let Err(e) = s.coffer.operator.require_unsealed() {
        return fail(e);
    }
    if path != "secret" && !path.starts_with("secret/") {
        return VaultError(ServiceError::Invalid(format!(
            "preflight capability check returned 403, please ensure client's policies grant access to path \"{path}\": coffer has one mount, secret/"
        )))
        .into_response();
    }
    let mut d = mount_description();
    if let Value::Object(m) = &mut d {
        m.insert("path".into(), json!("secret/"));
    }
    envelope(StatusCode::OK, "", d, Value::Null, Value::Null)
}

/// `GET sys/mounts`: the one mount.
pub(super) async fn mounts(VaultAuth(_who): VaultAuth) -> Response {
    let d = json!({ "secret/": mount_description() });
    let mut body = d.clone();
    if let Value::Object(m) = &mut body {
        // Vault answers the table both at the top level and under `data`.
        m.insert("data".into(), d);
        m.insert("request_id".into(), json!(crate::ops::fresh_request_id()));
        m.insert("lease_id".into(), json!(""));
        m.insert("renewable".into(), json!(false));
        m.insert("lease_duration".into(), json!(0));
        m.insert("wrap_info".into(), Value::Null);
        m.insert("warnings".into(), Value::Null);
        m.insert("auth".into(), Value::Null);
        m.insert("mount_type".into(), json!(""));
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `sys/mounts/<path>`: reading `secret` describes it, reading
/// `secret/tune` its settings; enabling, tuning or disabling any mount is
/// refused.
pub(super) async fn mount_change(method: Method, VaultAuth(_who): VaultAuth, Path(path): Path<String>) -> Response {
    if method == Method::GET && path.trim_matches('/') == "secret" {
        return envelope(StatusCode::OK, "", mount_description(), Value::Null, Value::Null);
    }
    if method == Method::GET && path.trim_matches('/') == "secret/tune" {
        return super::sys::sys_table(mount_tune(), Value::Null);
    }
    VaultError(ServiceError::Invalid(format!(
        "coffer serves exactly one mount, secret/ (KV version 2); mounts cannot be enabled, tuned or disabled (sys/mounts/{path})"
    )))
    .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::{KvQuery, kv_target};

    #[test]
    fn audit_targets() {
        let list = Method::from_bytes(b"LIST").expect("method");
        let listing: KvQuery = [("list".to_owned(), "true".to_owned())].into();
        let none = KvQuery::new();
        let flag = |v: &str| -> KvQuery { [("list".to_owned(), v.to_owned())].into() };
        for (m, p, q, want, org) in [
            (Method::GET, "data/a/b/c/K", &none, "secret.reveal", "a"),
            (Method::GET, "data//a/b/c/K/", &none, "secret.reveal", "a"),
            (Method::POST, "data/a/b/c/K", &none, "secret.update", "a"),
            (Method::PATCH, "data/a/b/c/K", &none, "secret.update", "a"),
            (Method::DELETE, "data/a/b/c/K", &none, "secret.delete", "a"),
            (Method::PUT, "delete/a/b/c/K", &none, "secret.delete", "a"),
            (Method::PUT, "undelete/a/b/c/K", &none, "secret.undelete", "a"),
            (Method::PUT, "destroy/a/b/c/K", &none, "secret.destroy", "a"),
            (Method::DELETE, "metadata/a/b/c/K", &none, "secret.purge", "a"),
            (Method::GET, "metadata/a/b/c/K", &none, "secret.read", "a"),
            (list.clone(), "metadata/a/", &none, "secret.list", "a"),
            (Method::GET, "metadata/a/b", &listing, "secret.list", "a"),
            (Method::GET, "data/", &listing, "secret.list", ""),
            (Method::GET, "metadata/a/", &flag("1"), "secret.list", "a"),
            (Method::GET, "metadata/a/", &flag("T"), "secret.list", "a"),
            (Method::GET, "metadata/a/", &flag("True"), "secret.list", "a"),
            (Method::GET, "metadata/a/b/c/K", &flag("0"), "secret.read", "a"),
            (Method::GET, "metadata/a/b/c/K", &flag("yes"), "secret.read", "a"),
            (Method::POST, "data/a/b/c/K", &flag("true"), "secret.update", "a"),
            (Method::GET, "subkeys/a/b/c/K", &none, "secret.read", "a"),
            (Method::POST, "config", &none, "secret.config", ""),
            (Method::GET, "nope/a/b/c/K", &none, "secret.unknown", "a"),
        ] {
            assert_eq!(kv_target(&m, p, q), (want, org.to_owned()), "{m} {p}");
        }
    }
}
