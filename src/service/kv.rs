//! The KV v2 mapping: the Vault-compatible `secret/` mount over coffer
//! secrets. The entry `secret/<org>/<project>/<env>/<KEY>` *is* the coffer
//! secret `KEY` of that environment and KV versions are its versions; every
//! read and write goes through the secrets service (same encryption, same
//! transactions, same grants). No HTTP types here.
//!
//! Value mapping (docs/vault-api.md): a text-like secret reads as
//! `{"value": "…"}`, a JSON secret holding an object reads as that object;
//! writing `{"value": "<string>"}` alone stores text (an existing scalar
//! type such as `password` is kept), any other map stores a JSON secret.
//!
//! Permissions: data reads and subkeys (which decrypt) need reveal;
//! metadata and lists need read; writes need create/update; delete,
//! undelete, destroy and purge need delete, and so does lowering a key's
//! `max_versions` (the next write deletes the history above it).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::secrets::check_key;
use super::values::ValueType;
use super::{PrincipalKind, Result, SecretInput, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::Permission;
use crate::storage::kv::{KvConfigRow, KvMetaRow, KvVersionOp, KvVersionRow};
use crate::storage::{EnvPath, SecretRow};

/// Rounds of the secrets service's write loop a KV write runs before it
/// answers 409 (each round is itself several optimistic attempts).
const KV_WRITE_ROUNDS: u64 = 5;

/// Largest `versions` list a delete/undelete/destroy accepts.
const MAX_VERSIONS_PER_CALL: usize = 1000;

/// A key path `<org>/<project>/<env>/<KEY>` split into its parts.
pub type KeyPath<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Split a KV key path; the error says what shape is expected.
pub fn key_path(path: &str) -> Result<KeyPath<'_>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [o, p, e, k] if [o, p, e, k].iter().all(|s| !s.is_empty()) => Ok((o, p, e, k)),
        _ => Err(ServiceError::Invalid(format!(
            "KV path {path:?} is not <org>/<project>/<environment>/<KEY>: coffer's KV mount \
             maps secret/<org>/<project>/<environment>/<KEY> onto its secrets"
        ))),
    }
}

/// What `kv_mark` does to the listed versions (`DELETE data/…`,
/// `delete|undelete|destroy/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOp {
    /// soft delete (reversible)
    Delete,
    /// undo a soft delete (not of a destroyed version)
    Undelete,
    /// erase the ciphertext and wrapped DEK for good
    Destroy,
}

impl From<VersionOp> for KvVersionOp {
    fn from(op: VersionOp) -> Self {
        match op {
            VersionOp::Delete => KvVersionOp::Delete,
            VersionOp::Undelete => KvVersionOp::Undelete,
            VersionOp::Destroy => KvVersionOp::Destroy,
        }
    }
}

/// A folder a LIST names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder<'a> {
    /// the mount: organizations
    Root,
    /// an organization: projects
    Org(&'a str),
    /// a project: environments
    Project(&'a str, &'a str),
    /// an environment: keys
    Env(&'a str, &'a str, &'a str),
}

/// Parse a LIST path (trailing `/` optional).
pub fn folder(path: &str) -> Result<Folder<'_>> {
    let t = path.trim_matches('/');
    if t.is_empty() {
        return Ok(Folder::Root);
    }
    let parts: Vec<&str> = t.split('/').collect();
    if parts.iter().any(|s| s.is_empty()) {
        return Err(ServiceError::Invalid(format!("KV path {path:?} has an empty segment")));
    }
    Ok(match parts.as_slice() {
        [o] => Folder::Org(o),
        [o, p] => Folder::Project(o, p),
        [o, p, e] => Folder::Env(o, p, e),
        _ => {
            return Err(ServiceError::Invalid(format!(
                "KV path {path:?} is deeper than <org>/<project>/<environment>/: keys are not folders"
            )));
        }
    })
}

/// Metadata of one version, as Vault's `data/` answers carry it.
#[derive(Debug, Clone, Serialize)]
pub struct KvVersionMeta {
    /// RFC 3339
    pub created_time: String,
    /// the key's custom metadata, null when none
    pub custom_metadata: Value,
    /// RFC 3339, "" when not deleted
    pub deletion_time: String,
    /// key material erased
    pub destroyed: bool,
    /// version number
    pub version: i64,
}

/// A `data/` read: the value unless deleted or destroyed. Its Debug shows
/// the metadata only, never the value.
pub struct KvRead {
    /// the mapped value; None for a deleted or destroyed version
    pub data: Option<Map<String, Value>>,
    /// the version's metadata
    pub metadata: KvVersionMeta,
}

impl Drop for KvRead {
    fn drop(&mut self) {
        if let Some(m) = self.data.take() {
            wipe_value(Value::Object(m));
        }
    }
}

/// Wipe every string (object keys too) of a JSON tree holding plaintext,
/// then free it: decrypted KV data never lingers in freed memory.
pub fn wipe_value(v: Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(mut s) => s.zeroize(),
        Value::Array(a) => a.into_iter().for_each(wipe_value),
        Value::Object(m) => {
            for (mut k, v) in m {
                k.zeroize();
                wipe_value(v);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl std::fmt::Debug for KvRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvRead")
            .field("has_data", &self.data.is_some())
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// One version in a metadata answer.
#[derive(Debug, Clone, Serialize)]
pub struct KvVersionState {
    /// RFC 3339
    pub created_time: String,
    /// RFC 3339 or ""
    pub deletion_time: String,
    /// key material erased
    pub destroyed: bool,
}

/// Vault's `metadata/` answer.
#[derive(Debug, Serialize)]
pub struct KvMetadata {
    /// writes must carry `options.cas`
    pub cas_required: bool,
    /// RFC 3339
    pub created_time: String,
    /// Vault 1.x field; coffer does not version metadata (0)
    pub current_metadata_version: i64,
    /// latest version (0 before the first write)
    pub current_version: i64,
    /// string → string, null when none
    pub custom_metadata: Value,
    /// Go duration, stored as given
    pub delete_version_after: String,
    /// 0 = the mount's setting
    pub max_versions: i64,
    /// Vault 1.x field; always false
    pub metadata_cas_required: bool,
    /// oldest version still held
    pub oldest_version: i64,
    /// RFC 3339
    pub updated_time: String,
    /// per version, keyed by its number
    pub versions: BTreeMap<String, KvVersionState>,
}

/// Fields of a metadata write; None keeps the stored value.
#[derive(Debug, Default)]
pub struct KvMetaInput {
    /// 0 = the mount's setting
    pub max_versions: Option<i64>,
    /// require `options.cas`
    pub cas_required: Option<bool>,
    /// Go duration string
    pub delete_version_after: Option<String>,
    /// the custom metadata, replaced or merged
    pub custom_metadata: Option<CustomMetadata>,
    /// a PATCH: the key must already have metadata or a version
    pub patch: bool,
}

/// How a metadata write changes `custom_metadata`.
#[derive(Debug)]
pub enum CustomMetadata {
    /// POST/PUT: these are the key's custom metadata now
    Replace(Map<String, Value>),
    /// PATCH: a JSON merge patch (RFC 7396) of the stored ones, a key set
    /// to null removed
    Merge(Map<String, Value>),
}

/// The mount configuration as Vault's `secret/config` shows it.
#[derive(Debug, Serialize)]
pub struct KvConfig {
    /// versions kept per key (0 = 10)
    pub max_versions: i64,
    /// every write must carry `options.cas`
    pub cas_required: bool,
    /// Go duration string
    pub delete_version_after: String,
}

/// A value as the KV API shows it (see the module doc).
fn to_kv(value_type: &str, value: &str) -> Map<String, Value> {
    if value_type == ValueType::Json.as_str()
        && let Ok(Value::Object(m)) = serde_json::from_str(value)
    {
        return m;
    }
    let mut m = Map::new();
    m.insert("value".into(), Value::String(value.to_owned()));
    m
}

/// A KV map as a coffer value and type: `{"value": "<string>"}` alone is
/// text (keeping an existing non-JSON type), anything else is JSON.
fn from_kv(data: &Map<String, Value>, existing: Option<&str>) -> Result<(Zeroizing<String>, String)> {
    if data.len() == 1
        && let Some(Value::String(s)) = data.get("value")
    {
        let t = match existing {
            Some(t) if t != ValueType::Json.as_str() => t.to_owned(),
            _ => ValueType::Text.as_str().to_owned(),
        };
        return Ok((Zeroizing::new(s.clone()), t));
    }
    let text = serde_json::to_string(data).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok((Zeroizing::new(text), ValueType::Json.as_str().to_owned()))
}

/// RFC 7396 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The structure of a value with every leaf replaced by null, `depth`
/// levels deep (0 = all), as Vault's `subkeys/`.
fn subkeys(v: &Map<String, Value>, depth: u32, level: u32) -> Map<String, Value> {
    v.iter()
        .map(|(k, v)| {
            let inner = match v {
                Value::Object(m) if depth == 0 || level < depth => Value::Object(subkeys(m, depth, level + 1)),
                _ => Value::Null,
            };
            (k.clone(), inner)
        })
        .collect()
}

/// Does a key's `max_versions` going from `old` to `new` keep fewer
/// versions than before? 0 at the key means the mount's `config`, and 0
/// there means every version.
fn lowers_max_versions(old: i64, new: i64, config: i64) -> bool {
    let effective = |m: i64| if m > 0 { m } else { config };
    let (old, new) = (effective(old), effective(new));
    new > 0 && (old == 0 || new < old)
}

fn custom(meta: Option<&KvMetaRow>) -> Value {
    custom_of(meta.map(|m| m.custom_metadata.as_str()))
}

/// Stored custom metadata as Vault shows it: null when none.
fn custom_of(json: Option<&str>) -> Value {
    json.and_then(|j| serde_json::from_str::<Map<String, Value>>(j).ok())
        .filter(|m| !m.is_empty())
        .map_or(Value::Null, Value::Object)
}

/// The deletion time of version `v` of `s` (the current version's is the
/// secret's own soft delete).
fn deletion(s: &SecretRow, v: &KvVersionRow) -> Option<i64> {
    if v.version == s.current_version {
        s.deleted_at
    } else {
        v.deleted_at
    }
}

/// Vault's KV v2 engine over coffer's secrets.
#[derive(Debug, Clone)]
pub struct KvService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) kv_store: Arc<dyn crate::storage::kv::KvStore>,
    pub(super) secret_store: Arc<dyn crate::storage::SecretStore>,
    pub(super) access: crate::service::AccessService,
    pub(super) secrets: crate::service::SecretService,
    pub(super) tenants: crate::service::TenantService,
}

impl KvService {
    async fn kv_secret(&self, path: &EnvPath, key: &str) -> Result<SecretRow> {
        self.secret_store
            .secret(path.org_id, path.env_id, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("secret {key}")))
    }

    /// `GET data/<path>[?version=N]` (reveal).
    pub async fn kv_read(&self, who: &Unsealed, (o, p, e, key): KeyPath<'_>, version: Option<i64>) -> Result<KvRead> {
        let keyring = who.keyring();
        let path = self.access.authorize_env(who, (o, p, e), Permission::Reveal).await?;
        let (secret, row, custom_json) = match version.filter(|v| *v > 0) {
            // The common case, one query: current version and custom metadata.
            None => self
                .kv_store
                .kv_current(path.org_id, path.env_id, key)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("secret {key}")))?,
            Some(n) => {
                let s = self.kv_secret(&path, key).await?;
                let v = self
                    .secret_store
                    .version(path.org_id, s.id, n)
                    .await?
                    .ok_or_else(|| ServiceError::NotFound(format!("version {n} of secret {key}")))?;
                let m = self.kv_store.kv_metadata(path.org_id, path.env_id, key).await?;
                (s, v, m.map(|m| m.custom_metadata))
            }
        };
        let deleted_at = if row.version == secret.current_version {
            secret.deleted_at
        } else {
            self.kv_store
                .kv_versions(path.org_id, secret.id)
                .await?
                .into_iter()
                .find(|v| v.version == row.version)
                .and_then(|v| v.deleted_at)
        };
        let destroyed = row.ciphertext.is_empty();
        let metadata = KvVersionMeta {
            created_time: rfc3339(row.created_at),
            custom_metadata: custom_of(custom_json.as_deref()),
            deletion_time: deleted_at.map(rfc3339).unwrap_or_default(),
            destroyed,
            version: row.version,
        };
        let data = if destroyed || deleted_at.is_some() {
            None
        } else {
            let value = self.secrets.decrypt_version(keyring, &path, key, &row).await?;
            Some(to_kv(&row.value_type, &value))
        };
        Ok(KvRead { data, metadata })
    }

    /// `PUT|POST data/<path>` with `options.cas` (create/update).
    pub async fn kv_write(
        &self,
        who: &Unsealed,
        (o, p, e, key): KeyPath<'_>,
        data: &Map<String, Value>,
        cas: Option<i64>,
    ) -> Result<KvVersionMeta> {
        check_key(key)?;
        let (path, access) = self.access.env_access(who, (o, p, e)).await?;
        let existing = self.secret_store.secret(path.org_id, path.env_id, key).await?;
        // Refused before anything about the key (cas_required) is told; the
        // write itself checks again.
        access.require(
            &path,
            if existing.is_some() {
                Permission::Update
            } else {
                Permission::Create
            },
        )?;
        let meta = self.kv_store.kv_metadata(path.org_id, path.env_id, key).await?;
        let config = self.kv_store.kv_config().await?;
        let cas_required = meta.as_ref().is_some_and(|m| m.cas_required) || config.cas_required;
        if cas_required && cas.is_none() {
            return Err(ServiceError::Invalid(
                "check-and-set parameter required for this call (options.cas)".into(),
            ));
        }
        let (value, value_type) = from_kv(data, existing.as_ref().map(|s| s.value_type.as_str()))?;
        let input = SecretInput {
            value,
            value_type: Some(value_type),
            description: None,
        };
        let view = self.put_kv_retrying(who, (o, p, e), key, input, cas).await?;
        // max_versions: the key's, else the mount's; 0 keeps every version
        // (coffer's history; Vault's default would be 10).
        let max = meta.as_ref().map_or(0, |m| m.max_versions);
        let max = if max > 0 { max } else { config.max_versions };
        if max > 0 && view.version > max {
            let id = self.kv_secret(&path, key).await?.id;
            self.kv_store.kv_prune(path.org_id, id, view.version - max + 1).await?;
        }
        Ok(KvVersionMeta {
            created_time: view.updated_at,
            custom_metadata: custom(meta.as_ref()),
            deletion_time: String::new(),
            destroyed: false,
            version: view.version,
        })
    }

    /// A write that, after the secrets service lost its optimistic retries
    /// to other writers of the same key, tries again after a short random
    /// pause: Vault clients do not expect a 409 for concurrent writes.
    async fn put_kv_retrying(
        &self,
        who: &Unsealed,
        env: (&str, &str, &str),
        key: &str,
        input: SecretInput,
        cas: Option<i64>,
    ) -> Result<super::SecretView> {
        for attempt in 1..=KV_WRITE_ROUNDS {
            let again = SecretInput {
                value: input.value.clone(),
                value_type: input.value_type.clone(),
                description: None,
            };
            match self.secrets.put_secret_cas(who, env, key, again, cas).await {
                Err(ServiceError::Conflict(_)) if attempt < KV_WRITE_ROUNDS => {
                    let jitter = u64::from(super::random_bytes::<1>()?[0] % 8);
                    tokio::time::sleep(std::time::Duration::from_millis((1 + jitter) * attempt)).await;
                }
                other => return other,
            }
        }
        Err(ServiceError::Conflict(format!(
            "secret {key} is being written by others; try again"
        )))
    }

    /// `PATCH data/<path>`: JSON merge patch of the current value (reveal
    /// and update), written as a new version with check-and-set.
    pub async fn kv_patch(
        &self,
        who: &Unsealed,
        kp: KeyPath<'_>,
        patch: &Map<String, Value>,
        cas: Option<i64>,
    ) -> Result<KvVersionMeta> {
        let mut current = self.kv_read(who, kp, None).await?;
        let Some(data) = current.data.take() else {
            return Err(ServiceError::NotFound(format!(
                "secret {} (its latest version is deleted)",
                kp.3
            )));
        };
        if let Some(c) = cas
            && c != current.metadata.version
        {
            return Err(ServiceError::Invalid(
                "check-and-set parameter did not match the current version".into(),
            ));
        }
        let mut merged = Value::Object(data);
        merge_patch(&mut merged, &Value::Object(patch.clone()));
        let Value::Object(merged) = merged else {
            wipe_value(merged);
            return Err(ServiceError::Invalid("a patch must be a JSON object".into()));
        };
        let written = self.kv_write(who, kp, &merged, Some(current.metadata.version)).await;
        wipe_value(Value::Object(merged));
        written
    }

    /// `DELETE data/<path>` (latest version) and `delete|undelete|destroy/<path>`.
    /// A key with no version (never written, purged, or metadata only) is
    /// a successful no-op, as in Vault: the request is idempotent, yet
    /// still needs delete on the environment (and is audited by the layer).
    pub async fn kv_mark(
        &self,
        who: &Unsealed,
        (o, p, e, key): KeyPath<'_>,
        versions: Option<&[i64]>,
        op: VersionOp,
    ) -> Result<()> {
        let path = self.access.authorize_env(who, (o, p, e), Permission::Delete).await?;
        match versions {
            Some([]) => return Err(ServiceError::Invalid("no versions provided".into())),
            Some(v) if v.len() > MAX_VERSIONS_PER_CALL => {
                return Err(ServiceError::Invalid(format!(
                    "at most {MAX_VERSIONS_PER_CALL} versions per call"
                )));
            }
            _ => {}
        }
        let Some(secret) = self.secret_store.secret(path.org_id, path.env_id, key).await? else {
            return Ok(());
        };
        let latest = [secret.current_version];
        let versions = versions.unwrap_or(&latest[..]);
        self.kv_store
            .kv_mark(path.org_id, secret.id, versions, op.into(), now_ms())
            .await?;
        Ok(())
    }

    /// `GET metadata/<path>` (read).
    pub async fn kv_metadata(&self, who: &Unsealed, (o, p, e, key): KeyPath<'_>) -> Result<KvMetadata> {
        let path = self.access.authorize_env(who, (o, p, e), Permission::Read).await?;
        let secret = self.secret_store.secret(path.org_id, path.env_id, key).await?;
        let meta = self.kv_store.kv_metadata(path.org_id, path.env_id, key).await?;
        if secret.is_none() && meta.is_none() {
            return Err(ServiceError::NotFound(format!("secret {key}")));
        }
        let versions = match &secret {
            Some(s) => self.kv_store.kv_versions(path.org_id, s.id).await?,
            None => Vec::new(),
        };
        let (created, updated) = match (&secret, &meta) {
            (Some(s), _) => (s.created_at, s.updated_at),
            (None, Some(m)) => (m.created_at, m.updated_at),
            (None, None) => (0, 0),
        };
        let updated = updated.max(meta.as_ref().map_or(0, |m| m.updated_at));
        Ok(KvMetadata {
            cas_required: meta.as_ref().is_some_and(|m| m.cas_required),
            created_time: rfc3339(created),
            current_metadata_version: 0,
            current_version: secret.as_ref().map_or(0, |s| s.current_version),
            custom_metadata: custom(meta.as_ref()),
            delete_version_after: meta
                .as_ref()
                .map_or_else(|| "0s".to_owned(), |m| m.delete_version_after.clone()),
            max_versions: meta.as_ref().map_or(0, |m| m.max_versions),
            metadata_cas_required: false,
            oldest_version: versions.first().map_or(0, |v| v.version),
            updated_time: rfc3339(updated),
            versions: versions
                .iter()
                .map(|v| {
                    let del = secret.as_ref().and_then(|s| deletion(s, v));
                    (
                        v.version.to_string(),
                        KvVersionState {
                            created_time: rfc3339(v.created_at),
                            deletion_time: del.map(rfc3339).unwrap_or_default(),
                            destroyed: v.destroyed,
                        },
                    )
                })
                .collect(),
        })
    }

    /// `PUT|POST|PATCH metadata/<path>` (update; create when the key is new;
    /// delete as well when it lowers the number of versions kept). PATCH
    /// merges `custom_metadata` into the stored one and answers not found
    /// for a key with neither metadata nor a version, as Vault does.
    pub async fn kv_write_metadata(
        &self,
        who: &Unsealed,
        (o, p, e, key): KeyPath<'_>,
        input: KvMetaInput,
    ) -> Result<()> {
        check_key(key)?;
        let (path, access) = self.access.env_access(who, (o, p, e)).await?;
        // Read, merge, write: concurrent patches of one key in this server
        // take turns, so none loses another's change.
        let _turn = self.shared.writes.turn(path.env_id, key).await;
        let exists = self.secret_store.secret(path.org_id, path.env_id, key).await?.is_some();
        access.require(&path, if exists { Permission::Update } else { Permission::Create })?;
        if let Some(m) = input.max_versions
            && m < 0
        {
            return Err(ServiceError::Invalid("max_versions must be 0 or more".into()));
        }
        let now = now_ms();
        let old = self.kv_store.kv_metadata(path.org_id, path.env_id, key).await?;
        if input.patch && !exists && old.is_none() {
            // Vault: a metadata patch needs something to patch.
            return Err(ServiceError::NotFound(format!("secret {key}")));
        }
        let custom = match input.custom_metadata {
            None => None,
            Some(CustomMetadata::Replace(c)) => Some(c),
            Some(CustomMetadata::Merge(p)) => {
                let mut merged = Value::Object(match custom(old.as_ref()) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                });
                merge_patch(&mut merged, &Value::Object(p));
                match merged {
                    Value::Object(m) => Some(m),
                    _ => Some(Map::new()),
                }
            }
        };
        if let Some(c) = &custom {
            if c.len() > 64 {
                return Err(ServiceError::Invalid("custom_metadata holds at most 64 keys".into()));
            }
            if let Some((k, _)) = c.iter().find(|(k, v)| !v.is_string() || k.len() > 128) {
                return Err(ServiceError::Invalid(format!(
                    "custom_metadata.{k}: keys are at most 128 characters and values must be strings"
                )));
            }
        }
        if let Some(new) = input.max_versions {
            let config = self.kv_store.kv_config().await?;
            let old_max = old.as_ref().map_or(0, |m| m.max_versions);
            if lowers_max_versions(old_max, new, config.max_versions) {
                access.require(&path, Permission::Delete)?;
            }
        }
        let row = KvMetaRow {
            org_id: path.org_id,
            env_id: path.env_id,
            key: key.to_owned(),
            max_versions: input
                .max_versions
                .unwrap_or_else(|| old.as_ref().map_or(0, |m| m.max_versions)),
            cas_required: input
                .cas_required
                .unwrap_or_else(|| old.as_ref().is_some_and(|m| m.cas_required)),
            delete_version_after: input
                .delete_version_after
                .or_else(|| old.as_ref().map(|m| m.delete_version_after.clone()))
                .unwrap_or_else(|| "0s".to_owned()),
            custom_metadata: match custom {
                Some(c) => Value::Object(c).to_string(),
                None => old
                    .as_ref()
                    .map_or_else(|| "{}".to_owned(), |m| m.custom_metadata.clone()),
            },
            created_at: old.as_ref().map_or(now, |m| m.created_at),
            updated_at: now,
        };
        self.kv_store.put_kv_metadata(&row).await?;
        Ok(())
    }

    /// `DELETE metadata/<path>`: every version and the metadata, for good (delete).
    pub async fn kv_purge(&self, who: &Unsealed, (o, p, e, key): KeyPath<'_>) -> Result<()> {
        let path = self.access.authorize_env(who, (o, p, e), Permission::Delete).await?;
        if let Some(s) = self.secret_store.secret(path.org_id, path.env_id, key).await? {
            self.secret_store.purge_secret(path.org_id, s.id).await?;
        }
        self.kv_store.delete_kv_metadata(path.org_id, path.env_id, key).await?;
        Ok(())
    }

    /// `LIST metadata/<folder>`: organizations, projects, environments or
    /// keys, with or without a version (read); folders end in `/`. An empty folder is "not found", as
    /// in Vault.
    pub async fn kv_list(&self, who: &Unsealed, f: Folder<'_>) -> Result<Vec<String>> {
        let keys: Vec<String> = match f {
            Folder::Root => self
                .tenants
                .list_orgs(who)
                .await?
                .into_iter()
                .map(|o| o.slug + "/")
                .collect(),
            Folder::Org(o) => self
                .tenants
                .list_projects(who, o)
                .await?
                .into_iter()
                .map(|p| p.slug + "/")
                .collect(),
            Folder::Project(o, p) => self
                .tenants
                .list_envs(who, o, p)
                .await?
                .into_iter()
                .map(|e| e.slug + "/")
                .collect(),
            Folder::Env(o, p, e) => {
                let path = self.access.authorize_env(who, (o, p, e), Permission::Read).await?;
                // Keys with a version and keys with metadata only, as Vault
                // lists every key that has metadata.
                let mut keys: Vec<String> = self
                    .secret_store
                    .list_secrets(path.org_id, path.env_id)
                    .await?
                    .into_iter()
                    .map(|s| s.key)
                    .chain(self.kv_store.kv_metadata_keys(path.org_id, path.env_id).await?)
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                keys
            }
        };
        if keys.is_empty() {
            return Err(ServiceError::NotFound("folder".into()));
        }
        Ok(keys)
    }

    /// `GET subkeys/<path>`: the value's structure, leaves null (reveal:
    /// the server decrypts the value to learn it).
    pub async fn kv_subkeys(
        &self,
        who: &Unsealed,
        (o, p, e, key): KeyPath<'_>,
        version: Option<i64>,
        depth: u32,
    ) -> Result<(Option<Map<String, Value>>, KvVersionMeta)> {
        let keyring = who.keyring();
        // The structure is learnt by decrypting: reveal, never read alone.
        let path = self.access.authorize_env(who, (o, p, e), Permission::Reveal).await?;
        let secret = self.kv_secret(&path, key).await?;
        let n = version.filter(|v| *v > 0).unwrap_or(secret.current_version);
        let row = self
            .secret_store
            .version(path.org_id, secret.id, n)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("version {n} of secret {key}")))?;
        let states = self.kv_store.kv_versions(path.org_id, secret.id).await?;
        let deleted_at = states
            .iter()
            .find(|v| v.version == n)
            .and_then(|v| deletion(&secret, v));
        let destroyed = row.ciphertext.is_empty();
        let meta = self.kv_store.kv_metadata(path.org_id, path.env_id, key).await?;
        let metadata = KvVersionMeta {
            created_time: rfc3339(row.created_at),
            custom_metadata: custom(meta.as_ref()),
            deletion_time: deleted_at.map(rfc3339).unwrap_or_default(),
            destroyed,
            version: n,
        };
        if destroyed || deleted_at.is_some() {
            return Ok((None, metadata));
        }
        // Decrypted in the server to learn the structure; no value leaves it.
        let value = self.secrets.decrypt_version(keyring, &path, key, &row).await?;
        Ok((Some(subkeys(&to_kv(&row.value_type, &value), depth, 1)), metadata))
    }

    /// `GET secret/config` (any authenticated caller).
    pub async fn kv_config(&self, _who: &Unsealed) -> Result<KvConfig> {
        let c = self.kv_store.kv_config().await?;
        Ok(KvConfig {
            max_versions: c.max_versions,
            cas_required: c.cas_required,
            delete_version_after: c.delete_version_after,
        })
    }

    /// `PUT|POST secret/config` (root: it applies to every organization).
    pub async fn kv_set_config(
        &self,
        who: &Unsealed,
        max_versions: Option<i64>,
        cas_required: Option<bool>,
        delete_version_after: Option<String>,
    ) -> Result<()> {
        if who.kind != PrincipalKind::Root {
            return Err(ServiceError::PermissionDenied);
        }
        let old = self.kv_store.kv_config().await?;
        let c = KvConfigRow {
            max_versions: max_versions.unwrap_or(old.max_versions),
            cas_required: cas_required.unwrap_or(old.cas_required),
            delete_version_after: delete_version_after.unwrap_or(old.delete_version_after),
        };
        if c.max_versions < 0 {
            return Err(ServiceError::Invalid("max_versions must be 0 or more".into()));
        }
        self.kv_store.put_kv_config(&c).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn value_mapping_round_trips() {
        assert_eq!(Value::Object(to_kv("text", "s3cret")), json!({"value": "s3cret"}));
        assert_eq!(Value::Object(to_kv("json", r#"{"a":1}"#)), json!({"a": 1}));
        // A JSON array is not a map: it reads as a value.
        assert_eq!(Value::Object(to_kv("json", "[1]")), json!({"value": "[1]"}));
        let (v, t) = from_kv(&obj(json!({"value": "x"})), None).expect("text");
        assert_eq!((v.as_str(), t.as_str()), ("x", "text"));
        let (_, t) = from_kv(&obj(json!({"value": "x"})), Some("password")).expect("keeps type");
        assert_eq!(t, "password");
        let (_, t) = from_kv(&obj(json!({"value": "x"})), Some("json")).expect("json to text");
        assert_eq!(t, "text");
        let (v, t) = from_kv(&obj(json!({"value": "x", "b": 2})), None).expect("json");
        assert_eq!(t, "json");
        assert_eq!(
            serde_json::from_str::<Value>(&v).ok(),
            Some(json!({"value": "x", "b": 2}))
        );
        let (_, t) = from_kv(&obj(json!({"value": 5})), None).expect("number is json");
        assert_eq!(t, "json");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let r = KvRead {
            data: Some(obj(json!({"value": "hunter2"}))),
            metadata: KvVersionMeta {
                created_time: String::new(),
                custom_metadata: Value::Null,
                deletion_time: String::new(),
                destroyed: false,
                version: 1,
            },
        };
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn lowering_max_versions() {
        // (old key value, new key value, mount value) → lowers?
        for (old, new, config, lowers) in [
            (0, 5, 0, true),
            (10, 5, 0, true),
            (5, 10, 0, false),
            (5, 5, 0, false),
            (5, 0, 0, false),
            (0, 5, 10, true),
            (0, 20, 10, false),
            (5, 0, 3, true),
            (5, 0, 10, false),
        ] {
            assert_eq!(
                lowers_max_versions(old, new, config),
                lowers,
                "{old} -> {new} (mount {config})"
            );
        }
    }

    #[test]
    fn subkeys_nulls_leaves_to_depth() {
        let v = obj(json!({"a": 1, "b": {"c": {"d": 2}}}));
        assert_eq!(
            Value::Object(subkeys(&v, 0, 1)),
            json!({"a": null, "b": {"c": {"d": null}}})
        );
        assert_eq!(Value::Object(subkeys(&v, 1, 1)), json!({"a": null, "b": null}));
    }

    #[test]
    fn paths() {
        assert_eq!(
            key_path("acme/web/prod/DB_URL").ok(),
            Some(("acme", "web", "prod", "DB_URL"))
        );
        assert!(key_path("acme/web/prod").is_err());
        assert!(key_path("acme/web/prod/a/b").is_err());
        assert_eq!(folder("").ok(), Some(Folder::Root));
        assert_eq!(folder("acme/").ok(), Some(Folder::Org("acme")));
        assert_eq!(folder("acme/web/prod/").ok(), Some(Folder::Env("acme", "web", "prod")));
        assert!(folder("acme/web/prod/KEY/").is_err());
        assert!(folder("acme//x").is_err());
    }
}
