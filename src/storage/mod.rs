//! Persistence, split by aggregate into stores. Every store is a trait of
//! its own, implemented once in SQL for [`SqlBackend`] over sqlx's `Any`
//! driver for the two dialects: SQLite (embedded default, WAL) in
//! `sqlite.rs`, PostgreSQL in `postgres.rs`. The queries are portable SQL
//! with `$N` placeholders, which both engines accept; each dialect owns its
//! connection setup and its migrations tree.
//!
//! | store | file | rows |
//! |---|---|---|
//! | [`IdentityStore`] | `identity.rs` | users, tokens, refresh tokens (login sessions), device codes, recovery codes; `purge_expired` of those |
//! | [`TenantStore`] | `tenants.rs` | organizations (with their first KEK), projects, environments, slug resolution; soft deletion and the purge of a deleted node with everything under it (an organization's KEKs too) |
//! | [`AccessStore`] | `access.rs` | memberships, groups, service accounts, grants |
//! | [`SecretStore`] | `secrets.rs` | secrets, versions (one, or a batch in one transaction), the inject cache (`current_values`, `forget_values`) |
//! | [`keystore::KeyStore`] | `keystore.rs` | KEK lifecycle, DEK re-wrap, keyring updates |
//! | [`kv::KvStore`] | `kv.rs` | KV v2 version state, metadata, mount config |
//! | [`audit::AuditStore`] | `audit.rs` | audit chain, checkpoints, audit key |
//! | [`env_vars::EnvVarStore`] | `env_vars.rs` | `coffer run` variable allow list |
//! | [`shares::ShareStore`] | `shares.rs` | one-time share links (client-side ciphertext), per-org share policy |
//! | [`breach::BreachPolicyStore`] | `breach.rs` | the organization policy of the leaked-password check |
//! | [`idempotency::IdempotencyStore`] | `idempotency.rs` | `Idempotency-Key` claims and first answers, per principal; their purge |
//! | [`approvals::ApprovalStore`] | `approvals.rs` | approval policies, change/access requests, votes, break-glass windows |
//! | [`webhooks::WebhookStore`] | `webhooks.rs` | an organization's webhooks, their durable delivery queue and log |
//! | [`jwt_auth::JwtAuthStore`] | `jwt_auth.rs` | JWT/OIDC login: an organization's trusted issuers and login roles |
//! | [`dbcreds::DbCredsStore`] | `dbcreds.rs` | database connections (sealed admin URL), roles, leases of dynamic credentials |
//! | [`sso::SsoStore`] | `sso.rs` | an organization's OIDC provider (client secret encrypted), pending SSO logins |
//! | [`ci_sync::CiSyncStore`] | `ci_sync.rs` | CI sync targets per environment, their durable job queue and dead letters, what was last written |
//!
//! [`Backend`] is the supertrait of all of them, which the services hold as
//! `Arc<dyn Backend>`; of its own it has only what belongs to no aggregate:
//! `kind`, the keyring row written at init (`keyring`, `init_keyring`), the
//! caches (`drop_caches`), the cluster (`notify`, `cluster`, `try_lock_job`)
//! and the whole-store backup (`snapshot`, `restore`). `sql.rs` holds
//! [`SqlBackend`] itself (pools, the tenant pool of PostgreSQL) and those
//! methods; `db.rs` the helpers every store shares (`query`, `uuid`,
//! `conflict`, the token INSERT).
//!
//! Data path (values never exist in clear here):
//! ```text
//! service ──rows with ciphertext / wrapped keys──► Backend ──SQL──► sqlite | postgres
//! ```
//! Invariants: the storage layer never sees a plaintext key or value; a
//! secret version and its secret row are written in one transaction; a write
//! that raced another write fails with [`StorageError::Conflict`] instead of
//! overwriting it; tenant methods take the organization id and never return
//! or touch another organization's rows. The conformance suite
//! (`tests/it/conformance/`, one module per store) runs against both
//! dialects.

pub mod access;
pub mod approvals; // protected environments (issue 17)
pub mod audit;
pub mod backup;
pub mod breach;
pub mod ci_sync; // GitHub Actions / GitLab CI sync targets and their job queue (issue 19)
pub mod cluster;
mod db;
pub mod dbcreds; // database credentials (issue 21)
pub mod env_vars;
pub mod idempotency;
pub mod identity;
pub mod jwt_auth; // JWT/OIDC workload-identity login (issue 19)
pub mod keystore;
pub mod kv;
mod lease;
mod postgres;
pub mod secrets;
pub mod shares;
pub mod sql;
mod sqlite;
pub mod sso;
pub mod tenants;
pub mod webhooks; // signed webhooks and their delivery queue (issue 17) // single sign-on with OIDC (issue 20)

use async_trait::async_trait;

pub use access::{AccessStore, GrantRow, GroupRow, ServiceAccountRow};
pub use identity::{DeviceRow, IdentityStore, RefreshRow, RefreshUse, TokenRow, UserRow};
pub use secrets::{CurrentValue, SecretRow, SecretStore, VersionRow};
pub use sql::SqlBackend;
pub use tenants::{EnvPath, EnvRow, KekRow, OrgRow, ProjectRow, Purged, TenantNode, TenantStore};

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

impl StorageError {
    /// The database refused a write for want of disk space: SQLite's
    /// `SQLITE_FULL` (13), PostgreSQL's `disk_full` (SQLSTATE 53100).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("13" | "53100"))
            }
            _ => false,
        }
    }
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

/// Every store coffer needs, plus the operations of no single aggregate
/// (see the module doc). Implementations must pass the conformance suite.
///
/// Tenant methods take the organization id and must never return or touch
/// another organization's rows (on PostgreSQL row-level security enforces
/// it a second time).
#[async_trait]
pub trait Backend:
    IdentityStore
    + TenantStore
    + AccessStore
    + SecretStore
    + keystore::KeyStore
    + audit::AuditStore
    + kv::KvStore
    + env_vars::EnvVarStore
    + shares::ShareStore
    + idempotency::IdempotencyStore
    + breach::BreachPolicyStore
    + approvals::ApprovalStore
    + webhooks::WebhookStore
    + jwt_auth::JwtAuthStore
    + dbcreds::DbCredsStore
    + sso::SsoStore
    + ci_sync::CiSyncStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// "sqlite" or "postgres".
    fn kind(&self) -> &'static str;
    /// The keyring row, if initialized.
    async fn keyring(&self) -> Result<Option<KeyringRow>>;
    /// Write the keyring row and the root token in one transaction;
    /// [`StorageError::AlreadyInitialized`] if a keyring exists.
    async fn init_keyring(&self, keyring: &KeyringRow, root_token: &TokenRow) -> Result<()>;
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
    /// Every row of [`backup::BACKUP_TABLES`], read in one consistent snapshot.
    async fn snapshot(&self) -> Result<backup::Snapshot>;
    /// Write a snapshot into this store, which must be empty, in one
    /// transaction; `progress` gets (table, rows) after each table.
    async fn restore(
        &self,
        snap: &backup::Snapshot,
        progress: &mut (dyn for<'s> FnMut(&'s str, usize) + Send),
    ) -> Result<()>;
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
