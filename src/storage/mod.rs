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

pub mod keystore;
mod postgres;
pub mod sql;
mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

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
    /// "root" for now
    pub policy: String,
    /// human label
    pub display_name: String,
    /// unix ms
    pub created_at: i64,
    /// unix ms, None = no expiry
    pub expires_at: Option<i64>,
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
#[async_trait]
pub trait Backend: keystore::KeyStore + Send + Sync + std::fmt::Debug {
    /// "sqlite" or "postgres".
    fn kind(&self) -> &'static str;
    /// The keyring row, if initialized.
    async fn keyring(&self) -> Result<Option<KeyringRow>>;
    /// Write the keyring row and the root token in one transaction;
    /// [`StorageError::AlreadyInitialized`] if a keyring exists.
    async fn init_keyring(&self, keyring: &KeyringRow, root_token: &TokenRow) -> Result<()>;
    /// A token by the hash of its secret.
    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>>;

    /// Create an organization with its first KEK, in one transaction.
    async fn create_org(&self, org: &OrgRow, kek: &KekRow) -> Result<()>;
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
    /// Environments of a project, by slug.
    async fn list_envs(&self, project_id: Uuid) -> Result<Vec<EnvRow>>;
    /// Resolve `org/project/env` slugs in one query.
    async fn resolve_env(&self, org: &str, project: &str, env: &str) -> Result<Option<EnvPath>>;

    /// Secrets of an environment (including soft-deleted ones), by key.
    async fn list_secrets(&self, env_id: Uuid) -> Result<Vec<SecretRow>>;
    /// One secret by key.
    async fn secret(&self, env_id: Uuid, key: &str) -> Result<Option<SecretRow>>;
    /// One secret by key with its current version, in one query (the
    /// reveal path).
    async fn current_secret(&self, env_id: Uuid, key: &str) -> Result<Option<(SecretRow, VersionRow)>>;
    /// One version of a secret.
    async fn version(&self, secret_id: Uuid, version: i64) -> Result<Option<VersionRow>>;
    /// Every version of a secret, oldest first, without ciphertexts.
    async fn versions(&self, secret_id: Uuid) -> Result<Vec<VersionRow>>;
    /// The current version of every live secret of an environment, only the
    /// columns decryption needs: the inject query.
    async fn current_values(&self, env_id: Uuid) -> Result<std::sync::Arc<Vec<CurrentValue>>>;
    /// Forget cached rows (called on seal).
    fn drop_caches(&self);
    /// Append `version` and move `secret` to it, in one transaction.
    /// `expected_current` is the version the writer based its write on
    /// (0 = the secret must not exist yet); if another write got there first
    /// this fails with [`StorageError::Conflict`] and writes nothing.
    async fn put_version(&self, secret: &SecretRow, expected_current: i64, version: &VersionRow) -> Result<()>;
    /// Set or clear the soft-delete mark. False if no such secret.
    async fn set_deleted(&self, secret_id: Uuid, deleted_at: Option<i64>, now: i64) -> Result<bool>;
    /// Remove a secret and all its versions for good. False if no such secret.
    async fn purge_secret(&self, secret_id: Uuid) -> Result<bool>;
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
