//! Secrets of an environment: typed, versioned, envelope-encrypted.
//!
//! Invariants: listing and history never decrypt; every write (create,
//! update, rollback) makes a new version under a fresh DEK wrapped by the
//! org's active KEK, in one storage transaction; a failed decryption is
//! reported with the secret and version, never as garbage.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::access::Access;
use super::values::ValueType;
use super::{Result, ServiceError, Unsealed, now_ms, rfc3339};
use crate::access::Permission;
use crate::keys::{self, Keyring, ValueRow};
use crate::secure_mem::KeyBytes;
use crate::storage::{CurrentValue, EnvPath, SecretRow, StorageError, VersionRow};

/// How often a write retries after losing a race to a write of another
/// server (writers in this server take turns: `write_queue.rs`).
pub(super) const WRITE_RETRIES: usize = 5;

/// A secret as the API shows it; `value` only when revealed (wiped when
/// dropped). Its Debug never shows the value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretView {
    /// variable name
    pub key: String,
    /// value type
    #[serde(rename = "type")]
    pub value_type: String,
    /// current version
    pub version: i64,
    /// the plaintext, present only on reveal
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub value: Option<Zeroizing<String>>,
    /// bytes of the value (known without decrypting)
    pub length: i64,
    /// free text
    pub description: String,
    /// soft-deleted
    pub deleted: bool,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339
    pub updated_at: String,
    /// who wrote the current version (an email, a service account's name,
    /// "root"; "" for versions written before names were recorded)
    pub updated_by: String,
    /// what the writer should know (a `password` value found in a breach
    /// corpus); only on a write's answer, never with a value in it
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A `password` value found in the breach corpus, by the organization's
/// policy (the message names the key, never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Breached {
    /// the write goes on, with this warning
    Warning(String),
    /// the write is refused (`block_breached_passwords`)
    Refused(String),
}

impl std::fmt::Debug for SecretView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretView")
            .field("key", &self.key)
            .field("value_type", &self.value_type)
            .field("version", &self.version)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("length", &self.length)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

/// One entry of a secret's history (no value).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    /// version number
    pub version: i64,
    /// value type of that version
    #[serde(rename = "type")]
    pub value_type: String,
    /// who wrote it: an email, a service account's name or "root" (the
    /// token accessor for versions written before names were recorded)
    pub created_by: String,
    /// "user", "service_account", "root"; "accessor" for those older versions
    pub created_by_kind: String,
    /// the writer's token accessor
    pub accessor: String,
    /// RFC 3339
    pub created_at: String,
    /// KEK version that wraps its DEK
    pub kek_version: i64,
}

/// How a version names its writer: `kind:name` (see [`VersionView`]).
pub(super) fn author_of(who: &Unsealed) -> String {
    format!("{}:{}", who.kind.as_str(), who.name)
}

/// (name, kind) of a stored author; the accessor when none was recorded.
fn author_view(author: &str, accessor: &str) -> (String, String) {
    match author.split_once(':') {
        Some((kind, name)) if !name.is_empty() => (name.to_owned(), kind.to_owned()),
        _ => (accessor.to_owned(), "accessor".to_owned()),
    }
}

/// One stored version as decryption sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sealed<'a> {
    pub(super) secret_id: Uuid,
    pub(super) version_id: Uuid,
    pub(super) version: i64,
    pub(super) kek_version: i64,
    pub(super) ciphertext: &'a [u8],
    pub(super) wrapped_dek: &'a [u8],
}

impl<'a> From<&'a VersionRow> for Sealed<'a> {
    fn from(v: &'a VersionRow) -> Self {
        Sealed {
            secret_id: v.secret_id,
            version_id: v.id,
            version: v.version,
            kek_version: v.kek_version,
            ciphertext: &v.ciphertext,
            wrapped_dek: &v.wrapped_dek,
        }
    }
}

impl<'a> From<&'a CurrentValue> for Sealed<'a> {
    fn from(v: &'a CurrentValue) -> Self {
        Sealed {
            secret_id: v.secret_id,
            version_id: v.version_id,
            version: v.version,
            kek_version: v.kek_version,
            ciphertext: &v.ciphertext,
            wrapped_dek: &v.wrapped_dek,
        }
    }
}

/// A write request. Its Debug never shows the value.
pub struct SecretInput {
    /// the value, always a string
    pub value: Zeroizing<String>,
    /// type name; None keeps the current type (text for a new secret)
    pub value_type: Option<String>,
    /// None keeps the current description
    pub description: Option<String>,
}

impl std::fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretInput")
            .field("value_type", &self.value_type)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Check a secret key: `[A-Za-z_][A-Za-z0-9_]*`, at most 256 characters.
pub(super) fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(
            "key must match [A-Za-z_][A-Za-z0-9_]* and be at most 256 characters".into(),
        ))
    }
}

fn view(s: &SecretRow, value: Option<Zeroizing<String>>) -> SecretView {
    SecretView {
        key: s.key.clone(),
        value_type: s.value_type.clone(),
        version: s.current_version,
        value,
        length: (s.ciphertext_len - crate::crypto::aead::OVERHEAD as i64).max(0),
        description: s.description.clone(),
        deleted: s.deleted_at.is_some(),
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
        updated_by: author_view(&s.author, "").0,
        warnings: Vec::new(),
    }
}

/// Secrets and their versions: read, reveal, write, history, rollback,
/// delete, inject.
#[derive(Debug, Clone)]
pub struct SecretService {
    pub(super) shared: Arc<super::Shared>,
    pub(super) secret_store: Arc<dyn crate::storage::SecretStore>,
    pub(super) tenant_store: Arc<dyn crate::storage::TenantStore>,
    pub(super) breach_store: Arc<dyn crate::storage::breach::BreachPolicyStore>,
    pub(super) access: crate::service::AccessService,
    pub(super) approval_store: Arc<dyn crate::storage::approvals::ApprovalStore>,
    /// approval steps are queued for webhooks (`approvals.rs`)
    pub(super) webhooks: super::webhooks::WebhookService,
}

impl SecretService {
    /// The KEK version `version` of an org, from the cache or unwrapped now.
    pub(super) async fn kek(&self, keyring: &Keyring, org_id: Uuid, version: i64) -> Result<Arc<KeyBytes>> {
        if let Some(k) = keyring.cached_kek(org_id, version) {
            return Ok(k);
        }
        let row =
            self.tenant_store.kek(org_id, version).await?.ok_or_else(|| {
                ServiceError::Internal(format!("KEK version {version} of an organization is missing"))
            })?;
        keyring
            .load_kek(org_id, version, &row.wrapped_key)
            .map_err(|_| ServiceError::Internal(format!("KEK version {version} of an organization does not decrypt")))
    }

    /// The plaintext of one stored version, wiped when dropped: the
    /// decrypted bytes move into the string (no copy is left behind).
    pub(super) async fn decrypt(
        &self,
        keyring: &Keyring,
        path: &EnvPath,
        key: &str,
        v: Sealed<'_>,
    ) -> Result<Zeroizing<String>> {
        let kek = self.kek(keyring, path.org_id, v.kek_version).await?;
        let row = ValueRow {
            org_id: path.org_id,
            env_id: path.env_id,
            secret_id: v.secret_id,
            version_id: v.version_id,
            version: v.version,
        };
        let failed = || ServiceError::Decryption {
            key: key.to_owned(),
            version: v.version,
        };
        let mut plain = keys::decrypt_value(&kek, &row, v.ciphertext, v.wrapped_dek).map_err(|_| failed())?;
        match String::from_utf8(std::mem::take(&mut *plain)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err(failed())
            }
        }
    }

    /// Decrypt an environment's current value of one key.
    pub(super) async fn decrypt_current(
        &self,
        keyring: &Keyring,
        path: &EnvPath,
        v: &CurrentValue,
    ) -> Result<Zeroizing<String>> {
        self.decrypt(keyring, path, &v.key, v.into()).await
    }

    /// Decrypt one stored version (the KV mount reads any version).
    pub(super) async fn decrypt_version(
        &self,
        keyring: &Keyring,
        path: &EnvPath,
        key: &str,
        v: &VersionRow,
    ) -> Result<Zeroizing<String>> {
        self.decrypt(keyring, path, key, v.into()).await
    }

    pub(super) async fn live_secret(&self, path: &EnvPath, key: &str) -> Result<SecretRow> {
        match self.secret_store.secret(path.org_id, path.env_id, key).await? {
            Some(s) if s.deleted_at.is_none() => Ok(s),
            _ => Err(ServiceError::NotFound(format!("secret {key}"))),
        }
    }

    /// Metadata of every live secret; never decrypts.
    pub async fn list_secrets(&self, who: &Unsealed, org: &str, project: &str, env: &str) -> Result<Vec<SecretView>> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Read)
            .await?;
        let rows = self.secret_store.list_secrets(path.org_id, path.env_id).await?;
        Ok(rows
            .iter()
            .filter(|s| s.deleted_at.is_none())
            .map(|s| view(s, None))
            .collect())
    }

    /// What `who` may do in an environment it may read (the dashboard
    /// shows each control only then; every action is authorized again).
    pub async fn env_perms(&self, who: &Unsealed, env: (&str, &str, &str)) -> Result<crate::access::PermSet> {
        let (path, access) = self.access.env_access(who, env).await?;
        access.require(&path, Permission::Read)?;
        Ok(access.perms(path.project_id, path.env_id))
    }

    /// The soft-deleted secrets of an environment (restorable), metadata
    /// only (*read*).
    pub async fn deleted_secrets(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
    ) -> Result<Vec<SecretView>> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Read)
            .await?;
        let rows = self.secret_store.list_secrets(path.org_id, path.env_id).await?;
        Ok(rows
            .iter()
            .filter(|s| s.deleted_at.is_some())
            .map(|s| view(s, None))
            .collect())
    }

    /// The values of two versions of a live secret (*reveal*; the
    /// dashboard's history diff): each a reveal.
    pub async fn reveal_versions(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
        versions: [i64; 2],
    ) -> Result<[Zeroizing<String>; 2]> {
        let keyring = who.keyring();
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Reveal)
            .await?;
        let secret = self.live_secret(&path, key).await?;
        let mut out: [Zeroizing<String>; 2] = Default::default();
        for (slot, version) in out.iter_mut().zip(versions) {
            let row = self
                .secret_store
                .version(path.org_id, secret.id, version)
                .await?
                .filter(|v| !v.ciphertext.is_empty())
                .ok_or_else(|| ServiceError::NotFound(format!("version {version} of secret {key}")))?;
            *slot = self.decrypt(keyring, &path, key, (&row).into()).await?;
        }
        Ok(out)
    }

    /// One secret; decrypted only when `reveal`.
    pub async fn get_secret(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
        reveal: bool,
    ) -> Result<SecretView> {
        let keyring = who.keyring();
        let needed = if reveal { Permission::Reveal } else { Permission::Read };
        let path = self.access.authorize_env(who, (org, project, env), needed).await?;
        if !reveal {
            return Ok(view(&self.live_secret(&path, key).await?, None));
        }
        let (secret, v) = match self.secret_store.current_secret(path.org_id, path.env_id, key).await? {
            Some((s, v)) if s.deleted_at.is_none() => (s, v),
            _ => return Err(ServiceError::NotFound(format!("secret {key}"))),
        };
        self.approval_for_read(who, org, &path, super::approvals::ACT_REVEAL)
            .await?;
        let value = self.decrypt(keyring, &path, key, (&v).into()).await?;
        Ok(view(&secret, Some(value)))
    }

    /// One secret's value with its references (`${…}`) resolved (reveal
    /// here, and reveal on every other environment a reference reads).
    pub async fn reveal_resolved(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
    ) -> Result<SecretView> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Reveal)
            .await?;
        let secret = self.live_secret(&path, key).await?;
        let values = self.plaintexts(who.keyring(), &path).await?;
        let mut resolver = super::references::Resolver::new(self, who, org, (project, env, values));
        let value = resolver.resolve_key(project, env, key).await?;
        Ok(view(&secret, Some(value)))
    }

    /// Create or update: a new version with a fresh DEK.
    pub async fn put_secret(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
        input: SecretInput,
    ) -> Result<SecretView> {
        self.put_secret_cas(who, (org, project, env), key, input, None).await
    }

    /// Create or update with Vault's check-and-set: `cas` is the version the
    /// caller expects to be current (0: the key must not exist), checked in
    /// the same optimistic loop as the write itself.
    pub(crate) async fn put_secret_cas(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
        input: SecretInput,
        cas: Option<i64>,
    ) -> Result<SecretView> {
        let keyring = who.keyring();
        check_key(key)?;
        if let Some(d) = &input.description
            && d.len() > 1000
        {
            return Err(ServiceError::Invalid(
                "description must be at most 1000 characters".into(),
            ));
        }
        let (path, access) = self.access.env_access(who, (org, project, env)).await?;
        let warnings = self.breach_warnings(&path, key, &input).await?;
        // protected environments: a request instead of a version
        if let Some(id) = self
            .approval_for_write(who, (org, &path, &access), key, &input, (cas, None))
            .await?
        {
            return Err(ServiceError::ApprovalPending(id));
        }
        let mut written = self
            .write_version(keyring, who, (&path, &access), key, &input, cas)
            .await?;
        written.warnings = warnings;
        Ok(written)
    }

    /// The leaked-password check of a write (`breach.rs`): for a `password`
    /// value found in the breach corpus, a warning, or 422 when the
    /// organization's policy refuses breached passwords. Nothing when the
    /// check is off, the type is another, or the check failed open.
    async fn breach_warnings(&self, path: &EnvPath, key: &str, input: &SecretInput) -> Result<Vec<String>> {
        let checker = self.shared.breach();
        if !checker.enabled() {
            return Ok(Vec::new());
        }
        let password = match input.value_type.as_deref() {
            Some(t) => t == ValueType::Password.as_str(),
            None => self
                .secret_store
                .secret(path.org_id, path.env_id, key)
                .await?
                .is_some_and(|s| s.value_type == ValueType::Password.as_str()),
        };
        if !password {
            return Ok(Vec::new());
        }
        match self.breach_verdict(path.org_id, key, &input.value).await? {
            Some(Breached::Refused(msg)) => Err(ServiceError::Unprocessable("breached_password", msg)),
            Some(Breached::Warning(msg)) => Ok(vec![msg]),
            None => Ok(Vec::new()),
        }
    }

    /// Ask the breach corpus about the `password` value of `key` (the
    /// caller knows the type): `None` when clean, unchecked (check off or
    /// failed open); else the organization's policy decides whether it is
    /// a warning or a refusal. The messages name the key, never the value.
    pub(super) async fn breach_verdict(&self, org_id: Uuid, key: &str, value: &str) -> Result<Option<Breached>> {
        let super::breach::Verdict::Breached(n) = self.shared.breach().check(value).await else {
            return Ok(None);
        };
        if self.breach_store.block_breached_passwords(org_id).await? {
            return Ok(Some(Breached::Refused(format!(
                "the value of {key} appears in a public breach corpus (Have I Been Pwned: seen {n} times) \
                 and this organization refuses breached passwords; choose another value"
            ))));
        }
        Ok(Some(Breached::Warning(format!(
            "the value of {key} appears in a public breach corpus (Have I Been Pwned: seen {n} times); \
             choose another value"
        ))))
    }

    async fn write_version(
        &self,
        keyring: &Keyring,
        who: &Unsealed,
        (path, access): (&EnvPath, &Access),
        key: &str,
        input: &SecretInput,
        cas: Option<i64>,
    ) -> Result<SecretView> {
        // From the read of the current version to the commit: writers of
        // this key in this server wait here instead of losing the
        // compare-and-set below (the retries cover other servers).
        let _turn = self.shared.writes.turn(path.env_id, key).await;
        for _ in 0..WRITE_RETRIES {
            let existing = self.secret_store.secret(path.org_id, path.env_id, key).await?;
            if let Some(expected) = cas
                && existing.as_ref().map_or(0, |s| s.current_version) != expected
            {
                return Err(ServiceError::Invalid(
                    "check-and-set parameter did not match the current version".into(),
                ));
            }
            // Checked on every attempt: a key created meanwhile needs update.
            access.require(
                path,
                if existing.is_some() {
                    Permission::Update
                } else {
                    Permission::Create
                },
            )?;
            let (secret, expected, version) = self.prepare_version(keyring, who, path, existing, key, input).await?;
            match self.secret_store.put_version(&secret, expected, &version).await {
                Ok(()) => {
                    self.shared.broadcast(super::cluster::Event::Env(path.env_id));
                    return Ok(view(&secret, None));
                }
                Err(StorageError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "secret {key} is being written by others; try again"
        )))
    }

    /// The rows of a new version of `key` holding `input` (a fresh DEK,
    /// under the organization's active KEK): the secret row moved to it,
    /// the version it was based on (0: a new secret) and the version row.
    pub(super) async fn prepare_version(
        &self,
        keyring: &Keyring,
        who: &Unsealed,
        path: &EnvPath,
        existing: Option<SecretRow>,
        key: &str,
        input: &SecretInput,
    ) -> Result<(SecretRow, i64, VersionRow)> {
        let kek = self.kek(keyring, path.org_id, path.kek_version).await?;
        let type_name = match (&input.value_type, &existing) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => s.value_type.clone(),
            (None, None) => ValueType::Text.as_str().to_owned(),
        };
        let value_type = ValueType::parse(&type_name).ok_or_else(|| {
            ServiceError::Invalid(format!(
                "type {type_name:?} is unknown; use one of text, json, yaml, boolean, integer, password"
            ))
        })?;
        value_type
            .validate(&input.value)
            .map_err(|msg| ServiceError::Invalid(format!("value of {key} is not a valid {type_name}: {msg}")))?;
        let now = now_ms();
        let (secret, expected) = match existing {
            Some(mut s) => {
                let expected = s.current_version;
                s.current_version += 1;
                s.value_type = type_name.clone();
                if let Some(d) = &input.description {
                    s.description = d.clone();
                }
                s.deleted_at = None;
                s.updated_at = now;
                (s, expected)
            }
            None => (
                SecretRow {
                    id: Uuid::new_v4(),
                    org_id: path.org_id,
                    env_id: path.env_id,
                    key: key.to_owned(),
                    value_type: type_name.clone(),
                    description: input.description.clone().unwrap_or_default(),
                    current_version: 1,
                    deleted_at: None,
                    created_at: now,
                    updated_at: now,
                    ciphertext_len: 0,
                    author: String::new(),
                },
                0,
            ),
        };
        let row = ValueRow {
            org_id: path.org_id,
            env_id: path.env_id,
            secret_id: secret.id,
            version_id: Uuid::new_v4(),
            version: secret.current_version,
        };
        let sealed = keys::encrypt_value(&kek, &row, input.value.as_bytes())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let version = VersionRow {
            id: row.version_id,
            org_id: path.org_id,
            secret_id: secret.id,
            version: secret.current_version,
            value_type: type_name,
            ciphertext: sealed.ciphertext,
            wrapped_dek: sealed.wrapped_dek,
            kek_version: path.kek_version,
            created_by: who.accessor.clone(),
            author: author_of(who),
            created_at: now,
        };
        let secret = SecretRow {
            ciphertext_len: version.ciphertext.len() as i64,
            author: version.author.clone(),
            ..secret
        };
        Ok((secret, expected, version))
    }

    /// Version list, oldest first; never decrypts.
    pub async fn history(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
    ) -> Result<Vec<VersionView>> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Read)
            .await?;
        let secret = self.live_secret(&path, key).await?;
        Ok(self
            .secret_store
            .versions(path.org_id, secret.id)
            .await?
            .into_iter()
            .map(|v| {
                let (created_by, created_by_kind) = author_view(&v.author, &v.created_by);
                VersionView {
                    version: v.version,
                    value_type: v.value_type,
                    created_by,
                    created_by_kind,
                    accessor: v.created_by,
                    created_at: rfc3339(v.created_at),
                    kek_version: v.kek_version,
                }
            })
            .collect())
    }

    /// Make a new version holding the value and type of `version`.
    pub async fn rollback(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
        version: i64,
    ) -> Result<SecretView> {
        let keyring = who.keyring();
        let (path, access) = self.access.env_access(who, (org, project, env)).await?;
        if !access.held(path.project_id, path.env_id).has(Permission::Update) {
            return Err(ServiceError::PermissionDenied);
        }
        let secret = self.live_secret(&path, key).await?;
        let old = self
            .secret_store
            .version(path.org_id, secret.id, version)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("version {version} of secret {key}")))?;
        if old.ciphertext.is_empty() {
            // Destroyed through the KV API: its key material is gone.
            return Err(ServiceError::NotFound(format!(
                "version {version} of secret {key} (destroyed)"
            )));
        }
        let value = self.decrypt(keyring, &path, key, (&old).into()).await?;
        let input = SecretInput {
            value,
            value_type: Some(old.value_type),
            description: None,
        };
        // protected environments: a request instead of a version
        if let Some(id) = self
            .approval_for_write(who, (org, &path, &access), key, &input, (None, Some(version)))
            .await?
        {
            return Err(ServiceError::ApprovalPending(id));
        }
        self.write_version(keyring, who, (&path, &access), key, &input, None)
            .await
    }

    /// Soft delete: the secret disappears from lists and reads; history stays.
    pub async fn delete_secret(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
    ) -> Result<()> {
        let (path, access) = self.access.env_access(who, (org, project, env)).await?;
        if !access.held(path.project_id, path.env_id).has(Permission::Delete) {
            return Err(ServiceError::PermissionDenied);
        }
        let secret = self.live_secret(&path, key).await?;
        // protected environments: a request instead of the delete
        if let Some(id) = self.approval_for_delete(who, (org, &path, &access), &secret).await? {
            return Err(ServiceError::ApprovalPending(id));
        }
        self.secret_store
            .set_deleted(path.org_id, secret.id, Some(now_ms()), now_ms())
            .await?;
        self.shared.broadcast(super::cluster::Event::Env(path.env_id));
        Ok(())
    }

    /// Undo a soft delete.
    pub async fn restore_secret(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        key: &str,
    ) -> Result<SecretView> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Delete)
            .await?;
        let mut secret = self
            .secret_store
            .secret(path.org_id, path.env_id, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("secret {key}")))?;
        if secret.deleted_at.is_none() {
            return Err(ServiceError::Conflict(format!("secret {key} is not deleted")));
        }
        let now = now_ms();
        self.secret_store.set_deleted(path.org_id, secret.id, None, now).await?;
        self.shared.broadcast(super::cluster::Event::Env(path.env_id));
        secret.deleted_at = None;
        secret.updated_at = now;
        Ok(view(&secret, None))
    }

    /// Remove a secret and all its versions for good.
    pub async fn purge_secret(&self, who: &Unsealed, (org, project, env): (&str, &str, &str), key: &str) -> Result<()> {
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Delete)
            .await?;
        let secret = self
            .secret_store
            .secret(path.org_id, path.env_id, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("secret {key}")))?;
        self.secret_store.purge_secret(path.org_id, secret.id).await?;
        self.shared.broadcast(super::cluster::Event::Env(path.env_id));
        Ok(())
    }

    /// Every live value of an environment, decrypted, in one query, minus
    /// the program-loading variables ([`crate::env_policy`]) the
    /// environment has not explicitly allowed.
    pub async fn inject(&self, who: &Unsealed, (org, project, env): (&str, &str, &str)) -> Result<Injected> {
        let keyring = who.keyring();
        let path = self
            .access
            .authorize_env(who, (org, project, env), Permission::Export)
            .await?;
        self.approval_for_read(who, org, &path, super::approvals::ACT_EXPORT)
            .await?;
        let mut values = BTreeMap::new();
        for v in self.secret_store.current_values(path.org_id, path.env_id).await?.iter() {
            let value = self.decrypt(keyring, &path, &v.key, v.into()).await?;
            values.insert(v.key.clone(), value);
        }
        // References (`${…}`) resolve here, each referenced environment
        // under the caller's own permission there.
        let referring: Vec<String> = values
            .iter()
            .filter(|(_, v)| super::references::has_reference(v))
            .map(|(k, _)| k.clone())
            .collect();
        if !referring.is_empty() {
            let mut resolver = super::references::Resolver::new(self, who, org, (project, env, values.clone()));
            for key in referring {
                let resolved = resolver.resolve_key(project, env, &key).await?;
                values.insert(key, resolved);
            }
        }
        let dangerous = dangerous_names(&values);
        // The allow list is read only when a refused name is present.
        let allowed = self.access.allowed_among(&path, &dangerous).await?;
        let refused: Vec<&String> = dangerous.iter().filter(|n| !allowed.contains(n)).collect();
        for name in &refused {
            values.remove(*name);
        }
        if !refused.is_empty() {
            // Names only: the values never reach a log.
            tracing::warn!(
                org,
                project,
                env,
                keys = %refused.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(","),
                "inject: not returning variables that change how programs load or start"
            );
        }
        Ok(Injected { values, allowed })
    }
}

/// An inject answer: the values, and which of them the program-loading
/// policy would refuse but the environment allows (`coffer run` sets
/// exactly those). Its Debug shows names only.
pub struct Injected {
    /// name → plaintext value
    pub values: BTreeMap<String, Zeroizing<String>>,
    /// refused names this environment allows, each also in `values`
    pub allowed: Vec<String>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// The names of an inject answer `coffer run` must not set unless allowed
/// (see [`crate::env_policy`]), in order.
fn dangerous_names<V>(values: &BTreeMap<String, V>) -> Vec<String> {
    values
        .keys()
        .filter(|k| crate::env_policy::is_dangerous(k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    #[test]
    fn debug_never_shows_a_value() {
        let view = super::SecretView {
            key: "DB".into(),
            value_type: "text".into(),
            version: 1,
            value: Some(Zeroizing::new("s3cret-view-value".into())),
            length: 17,
            description: String::new(),
            deleted: false,
            created_at: String::new(),
            updated_at: String::new(),
            updated_by: String::new(),
            warnings: Vec::new(),
        };
        let input = super::SecretInput {
            value: Zeroizing::new("s3cret-input-value".into()),
            value_type: None,
            description: None,
        };
        let injected = super::Injected {
            values: [("DB".to_owned(), Zeroizing::new("s3cret-inject-value".to_owned()))].into(),
            allowed: Vec::new(),
        };
        for dbg in [format!("{view:?}"), format!("{input:?}"), format!("{injected:?}")] {
            assert!(!dbg.contains("s3cret"), "{dbg}");
        }
        // The wire form still carries the value.
        let json = serde_json::to_string(&view).unwrap_or_default();
        assert!(json.contains("s3cret-view-value"), "{json}");
    }

    #[test]
    fn inject_drops_program_loading_variables() {
        let values: std::collections::BTreeMap<String, String> = [
            ("DATABASE_URL", "postgres://x"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("PATH", "/tmp/evil"),
            ("DYLD_INSERT_LIBRARIES", "/tmp/evil.dylib"),
            ("PATH_PREFIX", "/srv"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let refused = super::dangerous_names(&values);
        assert_eq!(refused, ["DYLD_INSERT_LIBRARIES", "LD_PRELOAD", "PATH"]);
    }

    #[test]
    fn keys() {
        for ok in ["DB_URL", "_x", "a1", "A"] {
            assert!(super::check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "DB-URL", "a b", "ключ"] {
            assert!(super::check_key(bad).is_err(), "{bad}");
        }
    }
}
