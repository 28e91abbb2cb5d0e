//! Persistence behind one [`Backend`] trait, implemented once in SQL
//! ([`sql::SqlBackend`]) over sqlx's `Any` driver for the two dialects:
//! SQLite (embedded default, WAL) in `sqlite.rs`, PostgreSQL in `postgres.rs`.
//! The queries are portable SQL with `$N` placeholders, which both engines
//! accept; each dialect owns its connection setup and its migrations tree.
//!
//! Data path (values never exist in clear here):
//! ```text
//! service ──rows with ciphertext / wrapped keys──► Backend ──SQL──► sqlite | postgres
//! ```
//! Invariants: the storage layer never sees a plaintext key or value; a
//! secret version and its secret row are written in one transaction; a write
//! that raced another write fails with [`StorageError::Conflict`] instead of
//! overwriting it. The conformance suite in `conformance.rs` runs against
//! both dialects
//! (`tests/it/conformance.rs`).

pub mod audit;
pub mod backup;
pub mod cluster;
pub mod env_vars;
mod identity;
pub mod keystore;
pub mod kv;
mod postgres;
pub mod sql;
mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

pub use identity::{DeviceRow, GrantRow, GroupRow, RefreshRow, RefreshUse, ServiceAccountRow, UserRow};
pub use sql::SqlBackend;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A unique key already exists, or a compare-and-set lost a race.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The keyring was initialized already.
    #[error("already initialized")]
    AlreadyInitialized,
    /// A stored row does not have the expected shape.
    #[error("corrupt row in {table}: {what}")]
    Corrupt {
        /// table name
        table: &'static str,
        /// what is wrong
        what: String,
    },
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A restore was refused (target not empty, other schema version…).
    #[error("{0}")]
    Restore(String),
    /// A quota counted in storage is used up (the caller names it).
    #[error("limit reached")]
    LimitReached,
    /// The storage URL is not usable.
    #[error("invalid storage url: {0}")]
    Url(String),
}

/// Result alias of this layer.
pub type Result<T> = std::result::Result<T, StorageError>;

/// The single keyring row written by init.
#[derive(Debug, Clone)]
pub struct KeyringRow {
    /// "shamir"
    pub seal_type: String,
    /// N
    pub secret_shares: i64,
    /// K
    pub secret_threshold: i64,
    /// root key encrypted by the unseal key
    pub encrypted_root: Vec<u8>,
    /// HMAC of a constant under the root key
    pub verify_tag: Vec<u8>,
    /// unix ms
    pub created_at: i64,
}

/// An API token, stored by hash only.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// public accessor
    pub accessor: String,
    /// SHA-256 of the token
    pub token_hash: Vec<u8>,
    /// principal kind: root | user | service_account
    pub policy: String,
    /// human label
    pub display_name: String,
    /// unix ms
    pub created_at: i64,
    /// unix ms, None = no expiry
    pub expires_at: Option<i64>,
    /// the user or service account (None for root)
    pub principal_id: Option<Uuid>,
    /// organization of a service-account token
    pub org_id: Option<Uuid>,
    /// hex SHA-256 of the SPKI of the client certificate the token is bound to
    pub bound_spki: Option<String>,
    /// login session (refresh family) the token belongs to
    pub family_id: Option<String>,
    /// the token this one was derived from (revoking that one revokes this)
    pub parent_accessor: Option<String>,
    /// unix ms of the password login behind the token (None: no login)
    pub auth_at: Option<i64>,
}

/// An organization.
#[derive(Debug, Clone)]
pub struct OrgRow {
    /// id
    pub id: Uuid,
    /// url slug
    pub slug: String,
    /// display name
    pub name: String,
    /// unix ms
    pub created_at: i64,
}

/// A wrapped org KEK version.
#[derive(Debug, Clone)]
pub struct KekRow {
    /// organization
    pub org_id: Uuid,
    /// version, from 1
    pub version: i64,
    /// the KEK wrapped by the root key
    pub wrapped_key: Vec<u8>,
    /// unix ms
    pub created_at: i64,
}

/// A project of an organization.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// url slug, unique per org
    pub slug: String,
    /// display name
    pub name: String,
    /// unix ms
    pub created_at: i64,
}

/// An environment of a project.
#[derive(Debug, Clone)]
pub struct EnvRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// project
    pub project_id: Uuid,
    /// url slug, unique per project
    pub slug: String,
    /// display name
    pub name: String,
    /// protected environments (production) get stricter rules later
    pub protected: bool,
    /// unix ms
    pub created_at: i64,
}

/// The ids an `org/project/env` slug path resolves to, plus the org's
/// active KEK version (what new secret versions are encrypted under).
#[derive(Debug, Clone, Copy)]
pub struct EnvPath {
    /// organization
    pub org_id: Uuid,
    /// project
    pub project_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// active KEK version of the org
    pub kek_version: i64,
}

/// A secret's metadata row.
#[derive(Debug, Clone)]
pub struct SecretRow {
    /// id
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// environment
    pub env_id: Uuid,
    /// variable name
    pub key: String,
    /// value type of the current version
    pub value_type: String,
    /// free text
    pub description: String,
    /// latest version number
    pub current_version: i64,
    /// unix ms when soft-deleted
    pub deleted_at: Option<i64>,
    /// unix ms
    pub created_at: i64,
    /// unix ms
    pub updated_at: i64,
    /// ciphertext bytes of the current version (gives the value's length
    /// without decrypting); 0 when not loaded
    pub ciphertext_len: i64,
}

/// One immutable version of a secret (ciphertext + wrapped DEK).
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// row id (AAD of the wrapped DEK)
    pub id: Uuid,
    /// organization
    pub org_id: Uuid,
    /// secret
    pub secret_id: Uuid,
    /// version number, from 1
    pub version: i64,
    /// value type of this version
    pub value_type: String,
    /// value encrypted by the DEK
    pub ciphertext: Vec<u8>,
    /// DEK wrapped by the org KEK
    pub wrapped_dek: Vec<u8>,
    /// which KEK version wrapped the DEK
    pub kek_version: i64,
    /// token accessor of the writer
    pub created_by: String,
    /// unix ms
    pub created_at: i64,
}

/// What inject needs of a live secret's current version: its blobs and the
/// ids their AADs bind them to.
#[derive(Debug, Clone)]
pub struct CurrentValue {
    /// variable name
    pub key: String,
    /// secret
    pub secret_id: Uuid,
    /// the secret_versions row id
    pub version_id: Uuid,
    /// version number
    pub version: i64,
    /// which KEK version wrapped the DEK
    pub kek_version: i64,
    /// value encrypted by the DEK
    pub ciphertext: Vec<u8>,
    /// DEK wrapped by the org KEK
    pub wrapped_dek: Vec<u8>,
}

/// The storage operations coffer needs. Implementations must pass
/// `conformance::run_all`.
///
/// Tenant methods take the organization id and must never return or touch
/// another organization's rows (on PostgreSQL row-level security enforces
/// it a second time).
#[async_trait]
pub trait Backend:
    keystore::KeyStore + audit::AuditStore + kv::KvStore + env_vars::EnvVarStore + Send + Sync + std::fmt::Debug
{
    /// "sqlite" or "postgres".
    fn kind(&self) -> &'static str;
    /// The keyring row, if initialized.
    async fn keyring(&self) -> Result<Option<KeyringRow>>;
    /// Write the keyring row and the root token in one transaction;
    /// [`StorageError::AlreadyInitialized`] if a keyring exists.
    async fn init_keyring(&self, keyring: &KeyringRow, root_token: &TokenRow) -> Result<()>;

    // ---- tokens (global) ----
    /// A token by the hash of its secret.
    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>>;
    /// A token by its public accessor.
    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>>;
    /// Store a new token.
    async fn create_token(&self, token: &TokenRow) -> Result<()>;
    /// Tokens of one principal, or every token (None).
    async fn list_tokens(&self, principal_id: Option<Uuid>) -> Result<Vec<TokenRow>>;
    /// Delete every token of a login session, spend its refresh tokens and
    /// deny the device logins approved into it but not yet collected.
    async fn revoke_family(&self, family_id: &str) -> Result<()>;
    /// Delete a token and every token derived from it, transitively (by
    /// `parent_accessor`); returns how many went.
    async fn delete_token_tree(&self, accessor: &str) -> Result<u64>;
    /// End every session of a user: delete each of the user's tokens (and
    /// what was derived from them), spend the refresh tokens, deny device
    /// logins approved but not yet collected — except login session
    /// `keep_family`. Returns how many tokens went.
    async fn revoke_user_sessions(&self, user_id: Uuid, keep_family: Option<&str>) -> Result<u64>;

    // ---- users and login sessions (global) ----
    /// Create a user; conflict if the email exists.
    async fn create_user(&self, user: &UserRow) -> Result<()>;
    /// A user by lower-cased email.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>>;
    /// A user by id.
    async fn user(&self, id: Uuid) -> Result<Option<UserRow>>;
    /// Record the failed-login count and lock of a user.
    async fn set_login_state(&self, user_id: Uuid, failed_logins: i64, locked_until: i64) -> Result<()>;
    /// Replace a user's password hash.
    async fn set_password(&self, user_id: Uuid, password_hash: &str) -> Result<()>;
    /// Disable or enable a user.
    async fn set_user_disabled(&self, user_id: Uuid, disabled: bool) -> Result<bool>;
    /// Delete a user with every row naming it (memberships, group
    /// memberships and grants in every org, tokens, sessions, recovery
    /// codes, device logins), in one transaction. False if no such user.
    async fn delete_user(&self, user_id: Uuid) -> Result<bool>;
    /// Add one failed login to a user's count, atomically (parallel
    /// failures each count, on every server); returns the new count
    /// (0: no such user).
    async fn count_login_failure(&self, user_id: Uuid) -> Result<i64>;
    /// Lock a user until `until` (unix ms) unless a longer lock is set.
    async fn lock_user_until(&self, user_id: Uuid, until: i64) -> Result<()>;
    /// Set the (encrypted) TOTP secret and whether it is required.
    async fn set_totp(&self, user_id: Uuid, secret: Option<&[u8]>, enabled: bool) -> Result<()>;
    /// Accept TOTP step `step` if it is newer than the last accepted one;
    /// false if it was used (atomic, across servers).
    async fn use_totp_step(&self, user_id: Uuid, step: i64) -> Result<bool>;
    /// Replace the user's recovery codes (hashes).
    async fn set_recovery_codes(&self, user_id: Uuid, hashes: &[Vec<u8>]) -> Result<()>;
    /// Use up a recovery code; false if it is not (or no longer) valid.
    async fn use_recovery_code(&self, user_id: Uuid, hash: &[u8]) -> Result<bool>;
    /// Store a refresh token.
    async fn create_refresh(&self, refresh: &RefreshRow) -> Result<()>;
    /// Spend a refresh token (atomic: of two concurrent uses one is `Reused`).
    async fn spend_refresh(&self, hash: &[u8]) -> Result<RefreshUse>;
    /// Store a device authorization.
    async fn create_device(&self, device: &DeviceRow) -> Result<()>;
    /// A device authorization by its user code.
    async fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRow>>;
    /// A device authorization by the hash of its device code; records the poll time.
    async fn poll_device(&self, device_hash: &[u8], now: i64) -> Result<Option<DeviceRow>>;
    /// Approve a pending, unexpired device authorization for `user_id`,
    /// joining login session `family_id`.
    async fn approve_device(
        &self,
        user_code: &str,
        user_id: Uuid,
        family_id: &str,
        auth_at: i64,
        now: i64,
    ) -> Result<bool>;
    /// Move an approved device authorization to done (once).
    async fn finish_device(&self, device_hash: &[u8]) -> Result<bool>;

    // ---- memberships (global directory) ----
    /// Add a member or change the role.
    async fn set_membership(&self, org_id: Uuid, user_id: Uuid, role: &str, now: i64) -> Result<()>;
    /// Remove a member with the member's grants and group memberships in the org.
    async fn remove_membership(&self, org_id: Uuid, user_id: Uuid) -> Result<bool>;
    /// The role of a user in an org.
    async fn membership(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<String>>;
    /// Members of an org: (user, role), by email.
    async fn members(&self, org_id: Uuid) -> Result<Vec<(UserRow, String)>>;
    /// Organizations a user belongs to, with the role.
    async fn orgs_of(&self, user_id: Uuid) -> Result<Vec<(OrgRow, String)>>;

    // ---- organizations and the tenant tree ----
    /// Create an organization with its first KEK, in one transaction.
    /// `creator`: the user creating it and how many organizations a user
    /// may create; their count goes up in the same transaction, and
    /// [`StorageError::LimitReached`] (nothing written) once it is at the limit.
    async fn create_org(&self, org: &OrgRow, kek: &KekRow, creator: Option<(Uuid, u64)>) -> Result<()>;
    /// All organizations, by slug.
    async fn list_orgs(&self) -> Result<Vec<OrgRow>>;
    /// One organization by slug.
    async fn org(&self, slug: &str) -> Result<Option<OrgRow>>;
    /// One wrapped KEK version.
    async fn kek(&self, org_id: Uuid, version: i64) -> Result<Option<KekRow>>;
    /// Create a project.
    async fn create_project(&self, project: &ProjectRow) -> Result<()>;
    /// Projects of an org, by slug.
    async fn list_projects(&self, org_id: Uuid) -> Result<Vec<ProjectRow>>;
    /// One project by slug.
    async fn project(&self, org_id: Uuid, slug: &str) -> Result<Option<ProjectRow>>;
    /// Create an environment.
    async fn create_env(&self, env: &EnvRow) -> Result<()>;
    /// Environments of an org (every project), by project and slug.
    async fn list_envs(&self, org_id: Uuid) -> Result<Vec<EnvRow>>;
    /// Resolve `org/project/env` slugs.
    async fn resolve_env(&self, org: &str, project: &str, env: &str) -> Result<Option<EnvPath>>;

    // ---- groups, service accounts, grants (tenant) ----
    /// Create a group.
    async fn create_group(&self, group: &GroupRow) -> Result<()>;
    /// Groups of an org with their members' emails.
    async fn groups(&self, org_id: Uuid) -> Result<Vec<(GroupRow, Vec<String>)>>;
    /// Add a user to a group.
    async fn add_group_member(&self, org_id: Uuid, group_id: Uuid, user_id: Uuid) -> Result<()>;
    /// Remove a user from a group.
    async fn remove_group_member(&self, org_id: Uuid, group_id: Uuid, user_id: Uuid) -> Result<bool>;
    /// Ids of the groups of a user in an org.
    async fn user_groups(&self, org_id: Uuid, user_id: Uuid) -> Result<Vec<Uuid>>;
    /// Create a service account.
    async fn create_service_account(&self, sa: &ServiceAccountRow) -> Result<()>;
    /// Service accounts of an org, by name.
    async fn service_accounts(&self, org_id: Uuid) -> Result<Vec<ServiceAccountRow>>;
    /// One service account by id.
    async fn service_account(&self, org_id: Uuid, id: Uuid) -> Result<Option<ServiceAccountRow>>;
    /// Delete a service account with its grants and tokens, in one transaction.
    async fn delete_service_account(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// Create a grant.
    async fn create_grant(&self, grant: &GrantRow) -> Result<()>;
    /// Every grant of an org.
    async fn grants(&self, org_id: Uuid) -> Result<Vec<GrantRow>>;
    /// Delete a grant.
    async fn delete_grant(&self, org_id: Uuid, id: Uuid) -> Result<bool>;

    // ---- secrets (tenant) ----
    /// Secrets of an environment (including soft-deleted ones), by key.
    async fn list_secrets(&self, org_id: Uuid, env_id: Uuid) -> Result<Vec<SecretRow>>;
    /// One secret by key.
    async fn secret(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<SecretRow>>;
    /// One secret by key with its current version, in one query (the
    /// reveal path).
    async fn current_secret(&self, org_id: Uuid, env_id: Uuid, key: &str) -> Result<Option<(SecretRow, VersionRow)>>;
    /// One version of a secret.
    async fn version(&self, org_id: Uuid, secret_id: Uuid, version: i64) -> Result<Option<VersionRow>>;
    /// Every version of a secret, oldest first, without ciphertexts.
    async fn versions(&self, org_id: Uuid, secret_id: Uuid) -> Result<Vec<VersionRow>>;
    /// The current version of every live secret of an environment, only the
    /// columns decryption needs: the inject query.
    async fn current_values(&self, org_id: Uuid, env_id: Uuid) -> Result<std::sync::Arc<Vec<CurrentValue>>>;
    /// Forget cached rows (called on seal).
    fn drop_caches(&self);
    /// Broadcast `payload` to every server on this store (PostgreSQL
    /// NOTIFY; no-op on SQLite, where one process owns the file).
    async fn notify(&self, payload: &str) -> Result<()>;
    /// PostgreSQL: how to LISTEN and take job locks (None on SQLite).
    fn cluster(&self) -> Option<cluster::ClusterLink>;
    /// Take background job `job`'s lock if no other server holds it
    /// (always granted on SQLite).
    async fn try_lock_job(&self, job: &str) -> Result<Option<cluster::JobLock>>;
    /// Drop the cached inject rows of one environment.
    fn forget_values(&self, env_id: Uuid);
    /// Delete expired tokens, refresh tokens and device codes; returns how
    /// many rows went.
    async fn purge_expired(&self, now: i64) -> Result<u64>;
    /// Every row of [`backup::BACKUP_TABLES`], read in one consistent snapshot.
    async fn snapshot(&self) -> Result<backup::Snapshot>;
    /// Write a snapshot into this store, which must be empty, in one
    /// transaction; `progress` gets (table, rows) after each table.
    async fn restore(
        &self,
        snap: &backup::Snapshot,
        progress: &mut (dyn for<'s> FnMut(&'s str, usize) + Send),
    ) -> Result<()>;
    /// Append `version` and move `secret` to it, in one transaction.
    /// `expected_current` is the version the writer based its write on
    /// (0 = the secret must not exist yet); if another write got there first
    /// this fails with [`StorageError::Conflict`] and writes nothing.
    async fn put_version(&self, secret: &SecretRow, expected_current: i64, version: &VersionRow) -> Result<()>;
    /// Set or clear the soft-delete mark. False if no such secret.
    async fn set_deleted(&self, org_id: Uuid, secret_id: Uuid, deleted_at: Option<i64>, now: i64) -> Result<bool>;
    /// Remove a secret and all its versions for good. False if no such secret.
    async fn purge_secret(&self, org_id: Uuid, secret_id: Uuid) -> Result<bool>;
}

/// Open the backend a storage URL names (`sqlite://PATH` or `postgres://…`)
/// and run its migrations.
pub async fn open(url: &str) -> Result<SqlBackend> {
    if url.starts_with("sqlite:") {
        sqlite::open(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::open(url).await
    } else {
        Err(StorageError::Url(
            "expected sqlite://PATH or postgres://USER@HOST/DB".to_owned(),
        ))
    }
}
